#!/usr/bin/env python3
"""resttap's benchmark: the transfer floor, resttap and dlt 1.31 on the same mock API, same run.

usage: python3 bench/run.py [--sizes 10000,100000,1000000] [--dlt-max 100000] [--repeat 3]
                           [--destination duckdb|postgres|delta|parquet]

For each N the mock serves N records of feedback_records and suggestions and N/10 of the four
other resources, 100 per page, pre-rendered, with keep-alive. Measured for each tool: wall time,
CPU time (user+sys), peak RSS (of that process alone, from wait4) and records/s. The floor and
resttap run --repeat times, interleaved, and report the run of median wall time (with the range
of wall times: the machine is shared and single runs vary); dlt runs once. Then resttap runs
--repeat times more over its last first load ("merge run": every record again, merged by
primary key, as a scheduled run of the seed does). Then, --repeat times, a first load from a
mock that lists the records in a scrambled id order and a merge run over it from the same mock
one revision on (a fifth of the records changed): changed records in no key order. Where dlt runs, the floor and resttap run
--repeat times again after it and their medians are taken over both sets, before and after
dlt's run, since the host's speed drifts over dlt's minute or two. After resttap's first
loads, `resttap insert-floor` --repeat times: DuckDB itself writing the tables of the last first
load into a new file (CREATE TABLE AS from copies in memory, one transaction, resttap's
settings), the least any loader into DuckDB spends on DuckDB's side; its own timing of that
part (RSS: not meaningful, it holds the copies). Printed and written to
bench-results/<UTC time>.md.

With `--destination postgres` the same workload goes into a PostgreSQL server the harness starts
for itself (initdb into a temporary directory, default settings, a loopback port): resttap's
first loads (each into an empty database) and merge runs, dlt 1.31's postgres destination, and
the COPY floor: the tables of resttap's last first load written out by the server
(`COPY ... TO` files, binary) and read back by PostgreSQL alone, the fastest way it has: in one
transaction (the timed part) each table created anew, `COPY ... FROM` with FREEZE, and dlt's
unique index on `_dlt_id` built once its rows are in. And the merge floor: PostgreSQL alone
merging those rows again over the dataset by delete-insert (staged by COPY, older rows
deleted by key, staged rows inserted, indexes rebuilt), in one transaction.

With `--scenario real-api` the limit is the API, not the loader: the seed workload (N=6000: 144
pages) behind 20 ms of latency and a limit of 20 requests a second, announced in each header
style the mock speaks (IETF `RateLimit`, `RateLimit-*`, GitHub's `X-RateLimit-*`, the seed's
`X-Rate-Limit-*`) and not announced at all (resttap with `client.rate_limit` declared); resttap
and dlt 1.31 in turn, --repeat times, interleaved. Reported: wall time, requests made, 429s,
and wall time over the rate floor (successful requests / rate). Then an offset resource of 100
pages behind 30 ms, against (pages / page concurrency) x latency; and a windowed backfill
(2000 suggestions, `incremental.window: PT8H`, one page a window) behind 30 ms, against
(requests / 4) x latency, dlt paging the same range without windows.

With `--destination delta` (or `parquet`) the workload goes into a local lake (the seed with
`table_format: delta`, or plain Parquet files): resttap's first loads (each into an empty
folder) and merge runs over the last one, dlt 1.31's filesystem destination with the same
table format, and the Parquet floor (`resttap parquet-floor`): the rows of resttap's last first
load read into memory, then written again by the parquet crate alone, one file per table, with
resttap's settings; its own timing of the writing.
"""
import argparse
import datetime
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/resttap-target"))
BIN = TARGET / "release/resttap"
VENV = TARGET / "dlt-venv"
TOKEN = "bench-token"
CONFIG = ROOT / "examples/analytics-api.yaml"


def measure(cmd, env=None, cwd=None):
    """Runs cmd; returns (wall s, cpu s, peak RSS MB, stdout, stderr, exit code)."""
    import time

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, out.read(), err.read(), p.returncode


def ensure_dlt():
    py = VENV / "bin/python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(py), "-c", "import dlt, yaml; assert dlt.__version__ == '1.31.0'"], capture_output=True).returncode != 0:
        subprocess.run([str(VENV / "bin/pip"), "install", "-q", "dlt[duckdb,postgres]==1.31.0", "pyyaml"], check=True)
    if subprocess.run([str(py), "-c", "import psycopg2, deltalake, pyarrow, fsspec"], capture_output=True).returncode != 0:
        subprocess.run([str(VENV / "bin/pip"), "install", "-q", "dlt[duckdb,postgres,filesystem,deltalake]==1.31.0"], check=True)
    return py


def start_mock(n):
    return start_mock_with(["--records", str(n), "--page-size", "100", "--prerender"])


def shuffled_merges(n, env, tmp, repeat):
    """Changed records in no key order: mocks listing the records scrambled (`--shuffle`) at
    revision 0 and 1 (a fifth of the records changed, two added, all listed again); each time a
    first load from the first into a new file, then a merge run from the second over it."""
    mocks = [start_mock_with(["--records", str(n), "--page-size", "100", "--prerender", "--shuffle", "--revision", str(r)]) for r in (0, 1)]
    db = pathlib.Path(tmp) / "s.duckdb"
    out = {"resttap shuffled first load": [], "resttap shuffled merge run": []}
    try:
        for _ in range(max(1, repeat)):
            for f in pathlib.Path(tmp).glob("s.duckdb*"):
                shutil.rmtree(f) if f.is_dir() else f.unlink()
            for (_, url), name in zip(mocks, out):
                cmd = [str(BIN), "run", str(CONFIG), "--base-url", url, "--pipeline", "bench", "--destination", f"duckdb:{db}"]
                out[name].append(run_checked(name, cmd, env, tmp))
    finally:
        for p, _ in mocks:
            p.kill()
            p.wait()
    return out


def run_checked(name, cmd, env, cwd):
    """One measured run; stops the benchmark if it fails. Returns (wall s, CPU s, RSS MB)."""
    wall, cpu, rss, out, err, code = measure(cmd, env=env, cwd=cwd)
    if code != 0:
        raise SystemExit(f"{name} failed ({code}):\n{out}\n{err}")
    return wall, cpu, rss


def drop_from_page_cache(path):
    """Have the kernel read the binary again as exec reads it. A file the linker has just written
    sits in the page cache in large folios, and a fault in the executable's text maps a whole
    folio: the same binary then shows up to ~7 MB more resident file pages than after it was read
    back from disk, as an installed binary is (measured with /proc/PID/status RssFile)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def insert_floor(tmp):
    """One `resttap insert-floor` from the last first load (tmp/r.duckdb): (wall s, CPU s, None)."""
    target = tmp / "f.duckdb"
    for f in tmp.glob("f.duckdb*"):
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    _, _, _, out, err, code = measure([str(BIN), "insert-floor", "--from", str(tmp / "r.duckdb"), "--to", str(target)])
    m = re.search(r"wall_s=([0-9.]+) cpu_s=([0-9.]+)", out)
    if code != 0 or not m:
        raise SystemExit(f"insert-floor failed ({code}):\n{out}\n{err}")
    return float(m.group(1)), float(m.group(2)), None


def median_rows(samples, n, recs, lines):
    """The run of median wall time of each tool in `samples` (name -> [(wall, CPU, RSS)]), as
    results and as table rows appended to `lines` (and printed); CPU or RSS may be None."""
    results = {}
    for name, runs_of in samples.items():
        ordered = sorted(runs_of, key=lambda run: run[0])
        wall, cpu, rss = ordered[len(ordered) // 2]
        results[name] = (wall, cpu, rss)
        spread = " / ".join(f"{w:.2f}" for w, _, _ in runs_of)
        shown_cpu = "-" if cpu is None else f"{cpu:.2f}"
        shown_rss = "-" if rss is None else f"{rss:.0f}"
        lines.append(f"| {n} | {recs} | {name} | {wall:.2f} | {shown_cpu} | {shown_rss} | {recs / wall:,.0f} | {spread} |")
        print(lines[-1], flush=True)
    return results


def total_records(n):
    return 2 * n + 4 * max(1, n // 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dlt-max", type=int, default=100000, help="largest N dlt is run at")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the floor and of resttap per N")
    ap.add_argument("--destination", default="duckdb", choices=["duckdb", "postgres", "delta", "parquet"])
    ap.add_argument("--scenario", default="load", choices=["load", "real-api"],
                    help="real-api: rate limits and latency instead of the loads at --sizes")
    args = ap.parse_args()
    if args.scenario == "real-api":
        return bench_real_api(args)
    if args.destination == "postgres":
        return bench_postgres(args)
    if args.destination in ("delta", "parquet"):
        return bench_lake(args)
    # --workspace, as the tests build: `-p` resolves features differently and rebuilds DuckDB
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    drop_from_page_cache(BIN)
    sizes = [int(s) for s in args.sizes.split(",")]
    py = ensure_dlt() if any(n <= args.dlt_max for n in sizes) else None
    lines = [f"# resttap benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    lines += [f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; mock pre-rendered, 100 records/page", ""]
    lines += ["| N | records | tool | wall s | CPU s | peak RSS MB | records/s | runs: wall s |", "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for n in sizes:
        mock, url = start_mock(n)
        recs = total_records(n)
        results = {}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "API_KEY": TOKEN}
                # warm the server's page cache and the OS, not measured
                measure([str(BIN), "fetch-floor", "--base-url", url, "--token", TOKEN])
                runs = [("floor", [str(BIN), "fetch-floor", "--base-url", url, "--token", TOKEN]),
                        ("resttap", [str(BIN), "run", str(CONFIG), "--base-url", url, "--pipeline", "bench", "--destination", f"duckdb:{tmp}/r.duckdb"])]
                samples = {name: [] for name, _ in runs}

                def first_loads():
                    for _ in range(max(1, args.repeat)):
                        for name, cmd in runs:
                            # every resttap run is a first load into a new file
                            for f in pathlib.Path(tmp).glob("r.duckdb*"):
                                shutil.rmtree(f) if f.is_dir() else f.unlink()
                            samples[name].append(run_checked(name, cmd, env, tmp))

                first_loads()
                # DuckDB's own insert path for the rows the last first load wrote (see
                # `resttap insert-floor`): its timed part only, from its output
                samples["DuckDB insert floor"] = [insert_floor(pathlib.Path(tmp)) for _ in range(max(1, args.repeat))]
                # the run a user repeats: the same data again over the last first load, every
                # record merged (delete-insert by primary key), each run over the one before
                merge_cmd = runs[1][1]
                samples["resttap merge run"] = [run_checked("resttap merge run", merge_cmd, env, tmp) for _ in range(max(1, args.repeat))]
                samples.update(shuffled_merges(n, env, tmp, args.repeat))
                if py and n <= args.dlt_max:
                    cmd = [str(py), str(ROOT / "bench/dlt_seed.py"), str(CONFIG), url, TOKEN, f"{tmp}/d.duckdb"]
                    samples["dlt 1.31"] = [run_checked("dlt 1.31", cmd, env, tmp)]
                    # the host's speed drifts over dlt's minute or two: the floor and resttap
                    # run as many times again after it, so their medians span the same spell
                    first_loads()
                results.update(median_rows(samples, n, recs, lines))
        finally:
            mock.kill()
            mock.wait()
        r = results["resttap"]
        ratio = f"N={n}: resttap/floor wall {r[0] / results['floor'][0]:.2f}x"
        f = results["DuckDB insert floor"]
        ratio += f"; resttap/DuckDB insert floor wall {r[0] / f[0]:.2f}x, CPU {r[1] / f[1]:.2f}x"
        m = results["resttap merge run"]
        ratio += f"; merge run/first load wall {m[0] / r[0]:.2f}x, RSS {m[2] / r[2]:.2f}x"
        sf, sm = results["resttap shuffled first load"], results["resttap shuffled merge run"]
        ratio += f"; shuffled: merge run/first load wall {sm[0] / sf[0]:.2f}x, RSS {sm[2] / sf[2]:.2f}x"
        if "dlt 1.31" in results:
            d = results["dlt 1.31"]
            ratio += f"; dlt/resttap wall {d[0] / r[0]:.0f}x, CPU {d[1] / r[1]:.0f}x, RSS {d[2] / r[2]:.0f}x"
        ratios.append(ratio)
    lines += [""] + [f"- {r}" for r in ratios]
    text = "\n".join(lines) + "\n"
    print("\n".join(ratios))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.md"
    path.write_text(text)
    print(f"written to {path}")


def mock_stats(url):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/admin/stats") as r:
        return json.load(r)


def start_mock_with(args):
    p = subprocess.Popen([str(BIN), "mock-api", "--token", TOKEN, *args], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.match(r"listening on (http://\S+)", line)
    if not m:
        p.kill()
        raise SystemExit(f"mock did not start: {line!r}")
    return p, m.group(1)


# the client and defaults of the scenarios' one-resource configurations
ONE_RESOURCE = """
client:
  base_url: http://127.0.0.1:8787
  auth: {type: bearer, token: "{secrets.api_key}"}
resource_defaults: {primary_key: id, write_disposition: merge}
resources:
"""

OFFSET_CONFIG = ONE_RESOURCE + """  - name: suggestions
    endpoint:
      path: /styles/offset/suggestions
      data_selector: items
      paginator: {type: offset, limit: 100, total_path: total}
"""

WINDOWED_CONFIG = ONE_RESOURCE + """  - name: suggestions
    endpoint:
      path: /v1/suggestions
      data_selector: suggestions
      params: {sort: updated_at}
      paginator: {type: cursor, cursor_param: cursor, cursor_path: pagination.cursor}
      incremental:
        cursor_path: updated_at
        initial_value: "2024-01-01T00:00:00Z"
        end_value: "2024-01-20T00:00:00Z"
        start_param: updated_after
        end_param: updated_before
        window: PT8H
"""


def concurrency_scenario(py, args, lines, summary, title, mock_args, config_text, dlt_config_text, latency_ms):
    """resttap (config_text) and dlt (dlt_config_text) in turn, --repeat times, against a mock
    started with mock_args; reported against (requests / 4 at once) x latency."""
    mock, url = start_mock_with(mock_args)
    lines += ["", title, "", "| tool | wall s (median) | requests | target: 1.3 x requests / 4 x latency | runs: wall s |", "|---|---|---|---|---|"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "API_KEY": TOKEN}
            config, plain = pathlib.Path(tmp) / "resttap.yaml", pathlib.Path(tmp) / "dlt.yaml"
            config.write_text(config_text)
            plain.write_text(dlt_config_text)
            cmds = {
                "resttap": lambda i: [str(BIN), "run", str(config), "--base-url", url, "--pipeline", "bench", "--destination", f"duckdb:{tmp}/r{i}.duckdb"],
                "dlt 1.31": lambda i: [str(py), str(ROOT / "bench/dlt_seed.py"), str(plain), url, TOKEN, f"{tmp}/d{i}.duckdb"],
            }
            samples = {name: [] for name in cmds}
            for i in range(max(1, args.repeat)):
                for name, cmd in cmds.items():
                    before = mock_stats(url)["requests"]
                    wall, _, _ = run_checked(name, cmd(i), env, tmp)
                    samples[name].append((wall, mock_stats(url)["requests"] - before))
    finally:
        mock.kill()
        mock.wait()
    for name, runs_of in samples.items():
        wall, requests = sorted(runs_of)[len(runs_of) // 2]
        spread = " / ".join(f"{w:.2f}" for w, _ in runs_of)
        ideal = requests / 4 * latency_ms / 1000
        lines.append(f"| {name} | {wall:.2f} | {requests} | {1.3 * ideal:.2f} | {spread} |")
        print(lines[-1], flush=True)
        if name == "resttap":
            summary.append(f"{title.split(':')[0].split(',')[0]}: resttap {wall:.2f} s for {requests} requests, {wall / ideal:.2f}x (requests / 4) x latency (target 1.3x)")


def bench_real_api(args):
    """The seed workload against a rate-limited API with latency, resttap and dlt in turn."""
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    py = ensure_dlt()
    rate, latency_ms, n = 20, 20, 6000
    lines = [f"# resttap benchmark, real-API scenario, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    lines += [f"machine: {os.cpu_count()} cores; mock: N={n} (seed workload, 100 records/page), {latency_ms} ms latency, {rate} requests/s in fixed 1 s windows", ""]
    lines += ["| limit announced as | tool | wall s (median) | requests | 429s | 429 share | wall / rate floor | runs: wall s |", "|---|---|---|---|---|---|---|---|"]
    summary = []
    for style in ["ietf", "ratelimit-fields", "github", "x-rate-limit", "none"]:
        mock, url = start_mock_with(["--records", str(n), "--page-size", "100", "--prerender", "--slow-ms", str(latency_ms),
                                     "--rate-limit", str(rate), "--rate-limit-style", style])
        samples = {"resttap": [], "dlt 1.31": []}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "API_KEY": TOKEN}
                config = CONFIG
                if style == "none":
                    # resttap is told the budget the API does not announce; dlt has no way to be
                    text = CONFIG.read_text().replace("client:\n", f"client:\n  rate_limit: {{requests: {rate}, per: 1s}}\n", 1)
                    config = pathlib.Path(tmp) / "seed.yaml"
                    config.write_text(text)
                cmds = {
                    "resttap": lambda i: [str(BIN), "run", str(config), "--base-url", url, "--pipeline", "bench", "--destination", f"duckdb:{tmp}/r{i}.duckdb"],
                    "dlt 1.31": lambda i: [str(py), str(ROOT / "bench/dlt_seed.py"), str(CONFIG), url, TOKEN, f"{tmp}/d{i}.duckdb"],
                }
                for i in range(max(1, args.repeat)):
                    for name, cmd in cmds.items():
                        # the window the run before left spent: start in a fresh one
                        import time
                        time.sleep(1.1)
                        before = mock_stats(url)
                        wall, _, _ = run_checked(name, cmd(i), env, tmp)
                        after = mock_stats(url)
                        requests = after["requests"] - before["requests"]
                        refused = after["rate_limited"] - before["rate_limited"]
                        samples[name].append((wall, requests, refused))
        finally:
            mock.kill()
            mock.wait()
        for name, runs_of in samples.items():
            ordered = sorted(runs_of)
            wall, requests, refused = ordered[len(ordered) // 2]
            floor = (requests - refused) / rate
            spread = " / ".join(f"{w:.2f}" for w, _, _ in runs_of)
            lines.append(f"| {style} | {name} | {wall:.2f} | {requests} | {refused} | {refused / requests:.1%} | {wall / floor:.2f}x | {spread} |")
            print(lines[-1], flush=True)
            if name == "resttap":
                summary.append(f"{style}: resttap {wall / floor:.2f}x the rate floor, {refused} 429s of {requests} requests ({refused / requests:.1%})")
    # pages known ahead: 100 pages of an offset resource behind 30 ms, no rate limit
    concurrency_scenario(py, args, lines, summary, "offset resource, 100 pages of 100 behind 30 ms (no rate limit)",
                         ["--records", "10000", "--prerender", "--slow-ms", "30"], OFFSET_CONFIG, OFFSET_CONFIG, 30)
    # a windowed backfill: the range split into windows of 8 hours, each one page; dlt pages the
    # same range without windows
    concurrency_scenario(py, args, lines, summary,
                         "windowed backfill: 2000 suggestions, `incremental.window: PT8H` (resttap) behind 30 ms; dlt pages the whole range",
                         ["--records", "2000", "--page-size", "100", "--prerender", "--slow-ms", "30"],
                         WINDOWED_CONFIG, WINDOWED_CONFIG.replace("        window: PT8H\n", ""), 30)
    lines += [""] + [f"- {s}" for s in summary]
    text = "\n".join(lines) + "\n"
    print("\n".join(summary))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-real-api.md"
    path.write_text(text)
    print(f"written to {path}")


class PgServer:
    """A PostgreSQL server of the benchmark's own: initdb into a temporary directory (as the
    postgres user when run as root), default settings, a free loopback port, trust auth."""

    def __init__(self):
        bins = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
        if not bins:
            raise SystemExit("PostgreSQL's server binaries are not installed (apt-get install -y postgresql)")
        self.bin = bins[-1].parent
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="resttap-bench-pg-"))
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "bench", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            self.user_cmd([str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port), "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import time

        for _ in range(300):
            if self.psql("postgres", "SELECT 1", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the benchmark's PostgreSQL server did not start")

    def user_cmd(self, cmd):
        return ["runuser", "-u", "postgres", "--"] + cmd if self.root else cmd

    def as_user(self, cmd, **kw):
        return subprocess.run(self.user_cmd(cmd), **kw)

    def url(self, db):
        # trust auth takes any password; dlt requires one
        return f"postgresql://bench:bench@127.0.0.1:{self.port}/{db}?sslmode=disable"

    def psql(self, db, sql, check=True):
        return subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", "bench", "-d", db, "-c", sql],
            capture_output=True, text=True, check=check,
        )

    def fresh_db(self, name):
        self.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql("postgres", f"CREATE DATABASE {name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def copy_floor(pg, db, dataset, repeat):
    """PostgreSQL alone writing the rows of `dataset` again, the fastest way it has: binary files
    written by COPY TO, then in one transaction (timed) the tables created anew (the same
    columns and NOT NULLs), COPY FROM with FREEZE, and the unique indexes on _dlt_id built
    once the rows are in, as dlt's tables have them."""
    import time

    tables = [t for t in pg.psql(db, f"SELECT tablename FROM pg_tables WHERE schemaname = '{dataset}' ORDER BY 1").stdout.split()]
    unique = set(pg.psql(db, f"SELECT tablename FROM pg_indexes WHERE schemaname = '{dataset}' AND indexdef LIKE 'CREATE UNIQUE INDEX%(_dlt_id)'").stdout.split())
    files = pg.dir / "floor"
    files.mkdir(exist_ok=True)
    if pg.root:
        shutil.chown(files, "postgres", "postgres")
    for t in tables:
        pg.psql(db, f"COPY {dataset}.\"{t}\" TO '{files}/{t}.bin' (FORMAT binary)")
    out = []
    for _ in range(max(1, repeat)):
        pg.psql(db, "DROP SCHEMA IF EXISTS floor CASCADE; CREATE SCHEMA floor")
        script = "BEGIN;"
        for t in tables:
            script += f"CREATE TABLE floor.\"{t}\" (LIKE {dataset}.\"{t}\" INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
            script += f"COPY floor.\"{t}\" FROM '{files}/{t}.bin' (FORMAT binary, FREEZE);"
            if t in unique:
                script += f"ALTER TABLE floor.\"{t}\" ADD UNIQUE (_dlt_id);"
        script += "COMMIT;"
        t0 = time.perf_counter()
        pg.psql(db, script)
        out.append((time.perf_counter() - t0, None, None))
    rows = sum(int(pg.psql(db, f"SELECT count(*) FROM floor.\"{t}\"").stdout) for t in tables)
    return out, rows


def merge_floor(pg, db, dataset, repeat):
    """PostgreSQL alone merging the last load's rows again over the dataset, as a delete-insert
    merge must (the files of `copy_floor`): in one transaction (timed) the rows copied into
    UNLOGGED staging tables, the older rows with the staged keys deleted (nested rows first,
    through their root rows), the staged rows inserted, each table's unique index on _dlt_id
    dropped before and built again after; JIT off and work_mem 64MB, as resttap's commit."""
    import time

    tables = [t for t in pg.psql(db, f"SELECT tablename FROM pg_tables WHERE schemaname = '{dataset}' AND tablename NOT LIKE '\\_dlt\\_%' ORDER BY 1").stdout.split()]
    files = pg.dir / "floor"
    out = []
    for _ in range(max(1, repeat)):
        script = "BEGIN; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; CREATE SCHEMA IF NOT EXISTS mstage;"
        for t in tables:
            script += f"CREATE UNLOGGED TABLE mstage.\"{t}\" (LIKE {dataset}.\"{t}\"); COPY mstage.\"{t}\" FROM '{files}/{t}.bin' (FORMAT binary);"
        roots = [t for t in tables if "__" not in t]
        for r in roots:
            for n in [t for t in tables if t.startswith(r + "__")]:
                script += f"DELETE FROM {dataset}.\"{n}\" WHERE _dlt_root_id IN (SELECT d._dlt_id FROM {dataset}.\"{r}\" d JOIN mstage.\"{r}\" s ON d.id = s.id);"
            script += f"DELETE FROM {dataset}.\"{r}\" d USING mstage.\"{r}\" s WHERE d.id = s.id;"
        for t in tables:
            con = pg.psql(db, f"SELECT conname FROM pg_constraint WHERE conrelid = '{dataset}.\"{t}\"'::regclass AND contype = 'u'").stdout.strip()
            if con:
                script += f"ALTER TABLE {dataset}.\"{t}\" DROP CONSTRAINT \"{con}\";"
            script += f"INSERT INTO {dataset}.\"{t}\" SELECT * FROM mstage.\"{t}\";"
            if con:
                script += f"ALTER TABLE {dataset}.\"{t}\" ADD CONSTRAINT \"{con}\" UNIQUE (_dlt_id);"
        script += "DROP SCHEMA mstage CASCADE; COMMIT;"
        t0 = time.perf_counter()
        pg.psql(db, script)
        out.append((time.perf_counter() - t0, None, None))
    return out


def bench_postgres(args):
    """The seed workload into PostgreSQL: resttap's first loads and merge runs, dlt 1.31, and the
    COPY floor, in one run."""
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    drop_from_page_cache(BIN)
    sizes = [int(s) for s in args.sizes.split(",")]
    py = ensure_dlt() if any(n <= args.dlt_max for n in sizes) else None
    pg = PgServer()
    lines = [f"# resttap benchmark into PostgreSQL, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    version = pg.psql("postgres", "SELECT version()").stdout.strip()
    lines += [f"machine: {os.cpu_count()} cores; {version}, default settings, loopback; mock pre-rendered, 100 records/page", ""]
    lines += ["| N | records | tool | wall s | CPU s | peak RSS MB | records/s | runs: wall s |", "|---|---|---|---|---|---|---|---|"]
    ratios = []
    try:
        for n in sizes:
            mock, url = start_mock(n)
            recs = total_records(n)
            samples = {}
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    env = {**os.environ, "API_KEY": TOKEN}
                    measure([str(BIN), "fetch-floor", "--base-url", url, "--token", TOKEN])
                    run = [str(BIN), "run", str(CONFIG), "--base-url", url, "--pipeline", "bench", "--destination", pg.url("r")]
                    samples["resttap"] = []
                    for _ in range(max(1, args.repeat)):
                        pg.fresh_db("r")
                        samples["resttap"].append(run_checked("resttap", run, env, tmp))
                    floor, rows = copy_floor(pg, "r", "bench_dataset", args.repeat)
                    samples[f"COPY floor ({rows} rows)"] = floor
                    samples["resttap merge run"] = [run_checked("resttap merge run", run, env, tmp) for _ in range(max(1, args.repeat))]
                    samples["merge floor"] = merge_floor(pg, "r", "bench_dataset", args.repeat)
                    if py and n <= args.dlt_max:
                        pg.fresh_db("d")
                        cmd = [str(py), str(ROOT / "bench/dlt_seed.py"), str(CONFIG), url, TOKEN, pg.url("d"), f"{tmp}/dlt-pipelines"]
                        samples["dlt 1.31"] = [run_checked("dlt 1.31", cmd, env, tmp)]
                    results = median_rows(samples, n, recs, lines)
            finally:
                mock.kill()
                mock.wait()
            r = results["resttap"]
            f = next(v for k, v in results.items() if k.startswith("COPY floor"))
            m = results["resttap merge run"]
            mf = results["merge floor"]
            ratio = f"N={n}: resttap/COPY floor wall {r[0] / f[0]:.2f}x; merge run/first load wall {m[0] / r[0]:.2f}x, RSS {m[2] / r[2]:.2f}x; merge run/merge floor {m[0] / mf[0]:.2f}x, merge floor/COPY floor {mf[0] / f[0]:.2f}x"
            if "dlt 1.31" in results:
                d = results["dlt 1.31"]
                ratio += f"; dlt/resttap wall {d[0] / r[0]:.0f}x, CPU {d[1] / r[1]:.0f}x, RSS {d[2] / r[2]:.1f}x"
            ratios.append(ratio)
    finally:
        pg.stop()
    lines += [""] + [f"- {r}" for r in ratios]
    text = "\n".join(lines) + "\n"
    print("\n".join(ratios))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-postgres.md"
    path.write_text(text)
    print(f"written to {path}")


def parquet_floor(dataset, out):
    """One `resttap parquet-floor` over a lake dataset folder: (wall s, CPU s, None)."""
    shutil.rmtree(out, ignore_errors=True)
    _, _, _, stdout, err, code = measure([str(BIN), "parquet-floor", "--from", str(dataset), "--to", str(out)])
    m = re.search(r"wall_s=([0-9.]+) cpu_s=([0-9.]+)", stdout)
    if code != 0 or not m:
        raise SystemExit(f"parquet-floor failed ({code}):\n{stdout}\n{err}")
    return float(m.group(1)), float(m.group(2)), None


def bench_lake(args):
    """The seed workload into a local lake (Delta tables or plain Parquet): resttap's first
    loads and merge runs, dlt 1.31's filesystem destination, and the Parquet floor, in one run."""
    fmt = args.destination
    subprocess.run(["cargo", "build", "--release", "-q", "--workspace"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    drop_from_page_cache(BIN)
    sizes = [int(s) for s in args.sizes.split(",")]
    py = ensure_dlt() if any(n <= args.dlt_max for n in sizes) else None
    lines = [f"# resttap benchmark into a local lake ({fmt}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    lines += [f"machine: {os.cpu_count()} cores; local disk; mock pre-rendered, 100 records/page", ""]
    lines += ["| N | records | tool | wall s | CPU s | peak RSS MB | records/s | runs: wall s |", "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for n in sizes:
        mock, url = start_mock(n)
        recs = total_records(n)
        samples = {}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                tmp = pathlib.Path(tmp)
                env = {**os.environ, "API_KEY": TOKEN}
                config = CONFIG
                if fmt == "delta":
                    config = tmp / "seed-delta.yaml"
                    config.write_text(CONFIG.read_text().replace("resource_defaults:\n", "resource_defaults:\n  table_format: delta\n", 1))
                measure([str(BIN), "fetch-floor", "--base-url", url, "--token", TOKEN])
                lake = tmp / "r"
                run = [str(BIN), "run", str(config), "--base-url", url, "--pipeline", "bench", "--destination", f"file://{lake}"]

                def first_loads():
                    for _ in range(max(1, args.repeat)):
                        shutil.rmtree(lake, ignore_errors=True)
                        samples.setdefault("resttap", []).append(run_checked("resttap", run, env, tmp))

                first_loads()
                samples["Parquet floor"] = [parquet_floor(lake / "bench_dataset", tmp / "floor") for _ in range(max(1, args.repeat))]
                samples["resttap merge run"] = [run_checked("resttap merge run", run, env, tmp) for _ in range(max(1, args.repeat))]
                if py and n <= args.dlt_max:
                    cmd = [str(py), str(ROOT / "bench/dlt_seed.py"), str(CONFIG), url, TOKEN, f"file://{tmp}/d", f"{tmp}/dlt-pipelines", fmt]
                    samples["dlt 1.31"] = [run_checked("dlt 1.31", cmd, env, tmp)]
                    # the host drifts over dlt's run: resttap again after it, medians over both
                    first_loads()
                results = median_rows(samples, n, recs, lines)
        finally:
            mock.kill()
            mock.wait()
        r = results["resttap"]
        f = results["Parquet floor"]
        m = results["resttap merge run"]
        ratio = f"N={n}: resttap/Parquet floor wall {r[0] / f[0]:.2f}x; merge run/first load wall {m[0] / r[0]:.2f}x, RSS {m[2] / r[2]:.2f}x; resttap RSS {r[2]:.0f} MB"
        if "dlt 1.31" in results:
            d = results["dlt 1.31"]
            ratio += f"; dlt/resttap wall {d[0] / r[0]:.0f}x, CPU {d[1] / r[1]:.0f}x, RSS {d[2] / r[2]:.1f}x"
        ratios.append(ratio)
    lines += [""] + [f"- {r}" for r in ratios]
    text = "\n".join(lines) + "\n"
    print("\n".join(ratios))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{fmt}.md"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
