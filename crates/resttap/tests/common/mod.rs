//! The end-to-end harness: runs the real `resttap` binary against the mock API, which it starts
//! as a child process (`resttap mock-api`) on a free loopback port.

#![allow(dead_code)]

pub mod lake;
pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const TOKEN: &str = "s3cret-t0ken-for-tests";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_resttap")
}

pub fn repo_root() -> PathBuf {
    manifest_dir().join("../..").canonicalize().unwrap()
}

pub fn seed_config() -> PathBuf {
    repo_root().join("examples/analytics-api.yaml")
}

/// A running mock API; killed on drop.
pub struct Mock {
    child: Child,
    pub url: String,
    pub addr: String,
}

impl Mock {
    pub fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(bin())
            .args(["mock-api", "--listen", "127.0.0.1:0", "--token", TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected mock output {line:?}"))
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Mock { child, url, addr }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", self.addr, body.len()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = resp.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Requests the mock received on /v1/.
    pub fn requests(&self) -> u64 {
        let (_, body) = self.request("GET", "/admin/stats", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["requests"].as_u64().unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.request("GET", "/admin/stats", "").1).unwrap()
    }

    /// Sends an admin request without a body; returns the status.
    pub fn admin(&self, method: &str, path: &str) -> u16 {
        self.request(method, path, "").0
    }

    pub fn set_revision(&self, rev: u64) {
        assert_eq!(self.request("POST", &format!("/admin/revision/{rev}"), "").0, 204);
    }

    pub fn set_faults(&self, json: &str) {
        let (status, body) = self.request("PUT", "/admin/faults", json);
        assert_eq!(status, 204, "{body}");
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory with a config and a database.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("out.duckdb")
    }

    /// Writes the seed config with `extra` lines inserted under `client:`.
    pub fn seed_with_client(&self, extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(seed_config()).unwrap();
        let text = text.replacen("client:\n", &format!("client:\n{extra}"), 1);
        let p = self.path("seed.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `resttap run CONFIG` against `mock` into `db`, with the token in the environment.
fn run_command(config: &Path, mock: &Mock, db: &Path, token: &str, extra: &[&str]) -> Command {
    let mut cmd = run_to_command(config, mock, &format!("duckdb:{}", db.display()), db.parent().unwrap(), token);
    cmd.args(extra);
    cmd
}

/// `resttap run CONFIG --destination DESTINATION` against `mock`, in `cwd`, with the token in the
/// environment and resttap's own variables cleared.
pub fn run_to_command(config: &Path, mock: &Mock, destination: &str, cwd: &Path, token: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg(config)
        .args(["--base-url", &mock.url, "--pipeline", "t"])
        .arg("--destination")
        .arg(destination)
        .env("API_KEY", token)
        .env_remove("RESTTAP_LOG")
        .env_remove("RESTTAP_DUCKDB_COMMIT_MEMORY")
        .env_remove("RESTTAP_CRASH_AT")
        .env_remove("DESTINATION__POSTGRES__CREDENTIALS")
        .env_remove("DESTINATION__FILESYSTEM__BUCKET_URL")
        .current_dir(cwd);
    cmd
}

/// Runs `resttap run CONFIG` against `mock` into `db`, with the token in the environment.
pub fn run(config: &Path, mock: &Mock, db: &Path, token: &str, extra: &[&str]) -> Output {
    run_command(config, mock, db, token, extra).output().unwrap()
}

/// Starts `resttap run CONFIG` as [`run`] does, its output discarded; with `crash_at`, it
/// aborts at that point (`RESTTAP_CRASH_AT`).
pub fn spawn_run(config: &Path, mock: &Mock, db: &Path, crash_at: Option<&str>) -> Child {
    let mut cmd = run_command(config, mock, db, TOKEN, &[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(point) = crash_at {
        cmd.env("RESTTAP_CRASH_AT", point);
    }
    cmd.spawn().unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub fn assert_ok(o: &Output) {
    let (out, err) = text(o);
    assert!(o.status.success(), "resttap failed ({:?})\nstdout:\n{out}\nstderr:\n{err}", o.status);
}

pub fn open(db: &Path) -> duckdb::Connection {
    duckdb::Connection::open_with_flags(
        db,
        duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap(),
    )
    .unwrap()
}

pub fn count(conn: &duckdb::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Expected rows of a nested table: the sum of list lengths at `field` over the mock's records.
pub fn list_rows(resource: &str, records: u64, revision: u64, growth: u64, field: &str) -> i64 {
    let n = resttap_mock::data::record_count(resource, records, revision, growth);
    (1..=n)
        .map(|id| resttap_mock::data::record(resource, id, revision)[field].as_array().map_or(0, |a| a.len() as i64))
        .sum()
}

/// A stable fingerprint of a table's user data (system columns left out; columns by name, since
/// their order follows the order records arrived in), for comparing runs.
pub fn fingerprint(conn: &duckdb::Connection, table: &str) -> String {
    let cols: Vec<String> = {
        let mut st = conn
            .prepare("SELECT column_name FROM information_schema.columns WHERE table_schema='t_dataset' AND table_name=? AND column_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY column_name")
            .unwrap();
        st.query_map([table], |r| r.get::<_, String>(0)).unwrap().map(|c| format!("\"{}\"", c.unwrap())).collect()
    };
    let list = cols.join(", ");
    conn.query_row(
        &format!("SELECT count(*)::VARCHAR || ':' || coalesce(sum(hash({list}))::VARCHAR, '') FROM (SELECT {list} FROM t_dataset.\"{table}\")"),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The crate's directory as `cargo test` reports it when the test runs: the build directory is
/// shared between clones, so the compile-time value can name another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
}

/// A small tmpfs mounted for one test (the tests run as root in CI); unmounted on drop.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}
