#![allow(dead_code)]

//! Independent readers of a lake for the tests: delta-rs's Python package (`deltalake`),
//! pyarrow and DuckDB in a virtualenv under the build directory (created on first use, pinned
//! versions, as bench/run.py does for dlt), through `crates/resttap-lake/tests/read_lake.py`;
//! dlt 1.31 itself (`tests/dlt_run.py`);
//! and an S3-compatible server (moto's) on loopback that the tests start themselves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What the virtualenv holds.
const PACKAGES: [&str; 4] = ["deltalake==1.6.6", "pyarrow==26.0.1", "duckdb==2.0.1", "moto[server]==5.2.5"];
/// dlt's own virtualenv, shared with bench/run.py (`dlt-venv`; moto's botocore and dlt's s3fs
/// want different versions, so dlt lives apart).
const DLT_PACKAGES: [&str; 2] = ["dlt[duckdb,postgres,filesystem,deltalake]==1.31.0", "pyyaml"];

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache/resttap-target")
    })
}

static PYTHON: OnceLock<PathBuf> = OnceLock::new();
static DLT_PYTHON: OnceLock<PathBuf> = OnceLock::new();

/// The python of virtualenv `name` under the build directory with `packages` installed (once per
/// machine; test binaries that start together wait for each other on a lock file).
fn venv(name: &str, packages: &[&str]) -> PathBuf {
    let venv = target_dir().join(name);
    let py = venv.join("bin/python");
    std::fs::create_dir_all(target_dir()).unwrap();
    let lock = std::fs::File::create(target_dir().join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    let stamp = venv.join("resttap-packages.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(&packages.join("\n")) {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv {} failed: the lake tests read with Python's deltalake", venv.display());
        let out = Command::new(venv.join("bin/pip")).args(["install", "-q"]).args(packages).output().unwrap();
        assert!(
            out.status.success(),
            "pip install {packages:?} failed (the lake tests need PyPI once per machine):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, packages.join("\n")).unwrap();
    }
    py
}

/// The readers' python.
pub fn python() -> &'static Path {
    PYTHON.get_or_init(|| venv("lake-venv", &PACKAGES))
}

/// dlt's python.
pub fn dlt_python() -> &'static Path {
    DLT_PYTHON.get_or_init(|| venv("dlt-venv", &DLT_PACKAGES))
}

/// A file of `crates/resttap-lake/tests`, found from the crate directory `cargo test` gives
/// the test when it runs (the build directory is shared between clones: the compile-time value
/// can name another clone).
fn lake_test_file(name: &str) -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir).join("../resttap-lake/tests").join(name)
}

fn script() -> PathBuf {
    lake_test_file("read_lake.py")
}

/// dlt 1.31 loading `config` from the API at `base_url` into `destination` (a bucket URL,
/// `duckdb:PATH` or `postgres:URL`) as pipeline `name` (`tests/dlt_run.py`).
pub fn dlt_load(config: &Path, base_url: &str, token: &str, destination: &str, pipelines_dir: &Path, name: &str) {
    let out = dlt_run(config, base_url, token, destination, pipelines_dir, name);
    assert!(
        out.status.success(),
        "dlt_run.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`dlt_load`], which may fail: its output.
pub fn dlt_run(
    config: &Path,
    base_url: &str,
    token: &str,
    destination: &str,
    pipelines_dir: &Path,
    name: &str,
) -> std::process::Output {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Command::new(dlt_python())
        .arg(Path::new(&dir).join("tests/dlt_run.py"))
        .arg(config)
        .args([base_url, token, destination])
        .arg(pipelines_dir)
        .arg(name)
        .output()
        .unwrap()
}

/// Runs each of `sqls` over the dataset at `url` (`file:///...` or `s3://...`); the first
/// column of each one's rows, as text.
pub fn query(url: &str, env: &[(String, String)], sqls: &[&str]) -> Vec<Vec<String>> {
    let out = Command::new(python())
        .arg(script())
        .arg(url)
        .args(sqls)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "read_lake.py {url} {sqls:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut results = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line == "\u{1e}" {
            results.push(std::mem::take(&mut cur));
        } else {
            cur.push(line.to_string());
        }
    }
    results
}

/// An S3-compatible server (moto) on a free loopback port, ended with the test process.
pub struct S3 {
    pub endpoint: String,
    _watcher: std::process::Child,
}

pub const S3_KEY: &str = "testing-key";
pub const S3_SECRET: &str = "testing-secret-do-not-print";

static S3_SERVER: OnceLock<S3> = OnceLock::new();
static S3_STRICT: OnceLock<S3> = OnceLock::new();

/// The shared S3 server, started on first use. It takes any keys.
pub fn s3() -> &'static S3 {
    S3_SERVER.get_or_init(|| start_s3(""))
}

/// An S3 server that checks keys as S3 does, and knows none: every request is refused
/// (`InvalidAccessKeyId`), as S3 refuses wrong keys.
pub fn s3_strict() -> &'static S3 {
    S3_STRICT.get_or_init(|| start_s3("INITIAL_NO_AUTH_ACTION_COUNT=0"))
}

fn start_s3(env: &str) -> S3 {
    {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let moto = python().with_file_name("moto_server");
        // the shell ends the server when this process's stdin closes (the test process ends)
        let watcher = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{env} {} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid",
                moto.display()
            ))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto_server did not start on {endpoint}");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3 { endpoint, _watcher: watcher }
    }
}

impl S3 {
    /// The environment a reader (and resttap) needs for this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), S3_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Creates bucket `name`.
    pub fn bucket(&self, name: &str) {
        let code = format!(
            "import pyarrow.fs as f; f.S3FileSystem(access_key='{S3_KEY}', secret_key='{S3_SECRET}', region='us-east-1', endpoint_override='{}', scheme='http', allow_bucket_creation=True).create_dir('{name}')",
            self.endpoint
        );
        let out = Command::new(python()).args(["-c", &code]).output().unwrap();
        assert!(out.status.success(), "creating bucket {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
