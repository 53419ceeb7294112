#![allow(dead_code)]

//! A real PostgreSQL server for the tests: started once per test binary from the machine's
//! PostgreSQL binaries (`initdb` into a temporary directory, `postgres` on a free loopback port,
//! TLS with a certificate signed by a CA made for it, password authentication), stopped when the
//! test process ends. Each test gets a database of its own. Without the binaries the tests fail
//! and say how to install them: they never skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The superuser the server is created with, and its password.
pub const USER: &str = "resttap";
pub const PASSWORD: &str = "pg-pass-w0rd-for-tests";

/// A running server.
pub struct Pg {
    pub port: u16,
    bin: PathBuf,
    /// The CA certificate (PEM) that signed the server's certificate (for `sslrootcert`).
    pub ca: PathBuf,
    dir: PathBuf,
    /// The shell that runs the server and ends it with this process (never waited for: it
    /// outlives every test).
    _watcher: std::process::Child,
}

static SERVER: OnceLock<Pg> = OnceLock::new();
static DBS: AtomicUsize = AtomicUsize::new(0);

/// The shared server, started on first use.
pub fn server() -> &'static Pg {
    SERVER.get_or_init(start)
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("RESTTAP_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries were not found under /usr/lib/postgresql/*/bin (or RESTTAP_PG_BIN): \
             the PostgreSQL tests need a real server. Install it (`apt-get install -y postgresql`; .ci/run does)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when the tests run as root (PostgreSQL refuses root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA and a server certificate it signs, for `localhost` and 127.0.0.1.
fn certificates(dir: &Path) {
    let sh = |script: &str| run_ok(Command::new("sh").arg("-c").arg(script).current_dir(dir), "openssl");
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=resttap-test-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null");
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    sh(
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf 2>/dev/null",
    );
}

fn start() -> Pg {
    let bin = bindir();
    let dir = std::env::temp_dir().join(format!("resttap-pg-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    std::fs::write(dir.join("pw"), PASSWORD).unwrap();
    if is_root() {
        run_ok(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir), "chown");
    }
    run_ok(Command::new("chmod").args(["600"]).arg(dir.join("server.key")), "chmod");
    let data = dir.join("data");
    run_ok(
        as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("pw").display())),
        "initdb",
    );
    let port = free_port();
    // the server lives as long as this process: a watcher ends it when the tests are done
    let server = format!(
        "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key \
         -c max_connections=200 -c shared_buffers=128MB -c log_min_messages=fatal",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let watch = format!(
        "{server} >{log} 2>&1 & pid=$!; while [ -d /proc/{me} ] && kill -0 $pid 2>/dev/null; do sleep 0.3; done; kill -INT $pid 2>/dev/null",
        log = dir.join("server.log").display(),
        me = std::process::id()
    );
    let mut sh = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", &watch]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &watch]);
        c
    };
    let watcher = sh.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pg = Pg { port, ca: dir.join("ca.crt"), bin, dir: dir.clone(), _watcher: watcher };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if pg.psql_raw("postgres", "SELECT 1").is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test PostgreSQL server did not start:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    pg
}

impl Pg {
    /// `postgresql://resttap:PASSWORD@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// The same without the password, as resttap names the place in messages.
    pub fn shown(&self, db: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database.
    pub fn new_db(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), DBS.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// psql on `db` as the superuser, `sql` to run, `options` before it.
    fn psql_command(&self, db: &str, options: &[&str], sql: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-h", "127.0.0.1", "-U", USER, "-d", db])
            .args(options)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PASSWORD)
            .env("PGSSLMODE", "disable");
        c
    }

    fn psql_raw(&self, db: &str, sql: &str) -> Result<String, String> {
        let out =
            self.psql_command(db, &["-A", "-t", "-v", "ON_ERROR_STOP=1"], sql).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` in `db` with psql (an independent reader); its output, rows as lines, columns
    /// joined by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.psql_raw(db, sql).unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// One number.
    pub fn count(&self, db: &str, sql: &str) -> i64 {
        let out = self.psql(db, sql);
        out.trim().parse().unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
    }
}
