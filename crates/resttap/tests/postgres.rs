//! The PostgreSQL destination beyond the shared contract (`contract.rs`): the same tables as the
//! DuckDB destination (dlt's PostgreSQL types), dlt's ways of giving credentials, TLS as libpq's
//! `sslmode` says, and each fault ending in an error that names host and database, never the
//! password, with the dataset as it was. The server is real (`common::pg`), read with psql.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::pg::{self, PASSWORD};
use common::*;

fn pg_run(mock: &Mock, s: &Scratch, destination: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = run_to_command(&seed_config(), mock, destination, s.dir.path(), TOKEN);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_no_password(o: &Output) {
    let (out, err) = text(o);
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD), "the password was printed:\n{out}\n{err}");
}

/// A dataset table's columns as `name type nullable`, PostgreSQL's type names.
fn pg_columns(db: &str, table: &str) -> Vec<String> {
    pg::server()
        .psql(
            db,
            &format!(
                "SELECT column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', '') || ' ' || is_nullable \
                 FROM information_schema.columns WHERE table_schema = 't_dataset' AND table_name = '{table}' ORDER BY ordinal_position"
            ),
        )
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_seed_loads_into_postgres_with_the_tables_and_types_of_the_duckdb_load() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "300"]);
    let s = Scratch::new();
    let db = server.new_db();
    let out = pg_run(&mock, &s, &server.url(&db), &[]);
    assert_ok(&out);
    assert_no_password(&out);
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let duck = open(&s.db());
    let mut st = duck
        .prepare("SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' ORDER BY 1")
        .unwrap();
    let duck_tables: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let pg_tables: Vec<String> = server
        .psql(&db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' ORDER BY 1")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(pg_tables, duck_tables);
    let pg_type = |duck: &str| match duck {
        "VARCHAR" => "character varying",
        "BIGINT" => "bigint",
        "DOUBLE" => "double precision",
        "BOOLEAN" => "boolean",
        "TIMESTAMP WITH TIME ZONE" => "timestamp with time zone",
        "JSON" => "jsonb",
        "DATE" => "date",
        other => panic!("unexpected DuckDB type {other}"),
    };
    for t in &duck_tables {
        let mut st = duck
            .prepare("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 't_dataset' AND table_name = ? ORDER BY ordinal_position")
            .unwrap();
        let expected: Vec<String> = st
            .query_map([t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .map(|(n, ty, null)| {
                // dlt sizes the load id columns of its own tables
                let len =
                    if (t == "_dlt_loads" && n == "load_id") || (t == "_dlt_pipeline_state" && n == "_dlt_load_id") {
                        "(64)"
                    } else {
                        ""
                    };
                format!("{n} {}{len} {null}", pg_type(&ty))
            })
            .collect();
        assert_eq!(pg_columns(&db, t), expected, "{t}");
        if t.starts_with("_dlt") {
            continue;
        }
        let rows = count(&duck, &format!("SELECT count(*) FROM t_dataset.\"{t}\""));
        assert_eq!(server.count(&db, &format!("SELECT count(*) FROM t_dataset.\"{t}\"")), rows, "{t}");
        // the same values: per column, the non-null count and a digest of the text of each value
        for (name, ty) in pg_columns(&db, t).iter().map(|l| {
            let p: Vec<&str> = l.splitn(2, ' ').collect();
            (p[0].to_string(), p[1].to_string())
        }) {
            if name.starts_with("_dlt_") {
                continue;
            }
            let q = format!("\"{name}\"");
            let pg_n = server.count(&db, &format!("SELECT count({q}) FROM t_dataset.\"{t}\""));
            assert_eq!(pg_n, count(&duck, &format!("SELECT count({q}) FROM t_dataset.\"{t}\"")), "{t}.{name}");
            if ty.starts_with("bigint") || ty.starts_with("double") {
                let pg_sum = server.psql(&db, &format!("SELECT coalesce(sum({q})::text, '') FROM t_dataset.\"{t}\""));
                let duck_sum: String = duck
                    .query_row(&format!("SELECT coalesce(sum({q})::VARCHAR, '') FROM t_dataset.\"{t}\""), [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(pg_sum.parse::<f64>().ok(), duck_sum.parse::<f64>().ok(), "{t}.{name}");
            }
            if ty.starts_with("timestamp") {
                // both print a timestamptz in UTC as `2024-01-01 00:00:00.123+00`
                let pg_range = server.psql(
                    &db,
                    &format!("SET timezone = 'UTC'; SELECT coalesce(min({q})::text || ' ' || max({q})::text, '') FROM t_dataset.\"{t}\""),
                );
                let duck_range: String = duck
                    .query_row(
                        &format!(
                            "SELECT coalesce(min({q})::VARCHAR || ' ' || max({q})::VARCHAR, '') FROM t_dataset.\"{t}\""
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(pg_range, duck_range, "{t}.{name}");
            }
        }
    }
    // dlt's unique index on _dlt_id, on every data table and the state table
    for t in duck_tables.iter().filter(|t| !["_dlt_loads", "_dlt_version"].contains(&t.as_str())) {
        let n = server.count(
            &db,
            &format!("SELECT count(*) FROM pg_indexes WHERE schemaname = 't_dataset' AND tablename = '{t}' AND indexdef LIKE 'CREATE UNIQUE INDEX%(_dlt_id)'"),
        );
        assert_eq!(n, 1, "{t}");
    }
}

#[test]
fn credentials_come_from_the_environment_or_secrets_toml_as_in_dlt_and_never_print() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "50"]);
    // DESTINATION__POSTGRES__CREDENTIALS, debug logging on
    let s = Scratch::new();
    let db = server.new_db();
    let out = pg_run(
        &mock,
        &s,
        "postgres",
        &[("DESTINATION__POSTGRES__CREDENTIALS", &server.url(&db)), ("RESTTAP_LOG", "trace")],
    );
    assert_ok(&out);
    assert_no_password(&out);
    assert_eq!(server.count(&db, "SELECT count(*) FROM t_dataset.suggestions"), 50);
    // .dlt/secrets.toml, the split form
    let s = Scratch::new();
    let db = server.new_db();
    std::fs::create_dir_all(s.path(".dlt")).unwrap();
    std::fs::write(
        s.path(".dlt/secrets.toml"),
        format!(
            "[destination.postgres.credentials]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\npassword = \"{PASSWORD}\"\ndatabase = \"{db}\"\nsslmode = \"disable\"\n",
            server.port,
            pg::USER
        ),
    )
    .unwrap();
    let out = pg_run(&mock, &s, "postgres", &[]);
    assert_ok(&out);
    assert_no_password(&out);
    assert_eq!(server.count(&db, "SELECT count(*) FROM t_dataset.suggestions"), 50);
    // nothing in the database holds the password or the API token
    let dump = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "PGPASSWORD={PASSWORD} $(dirname $(ls /usr/lib/postgresql/*/bin/pg_dump | tail -1))/pg_dump -h 127.0.0.1 -p {} -U {} {db}",
            server.port,
            pg::USER
        ))
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("suggestions"));
    assert!(!dump.contains(PASSWORD) && !dump.contains(TOKEN));
    // no credentials at all: a usage error that says where they go
    let s = Scratch::new();
    let out = pg_run(&mock, &s, "postgres", &[]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("DESTINATION__POSTGRES__CREDENTIALS") && stderr.contains("secrets.toml"), "{stderr}");
}

#[test]
fn tls_follows_libpq_sslmode() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "20"]);
    let ca = server.ca.display().to_string();
    let base = |host: &str, db: &str| format!("postgresql://{}:{PASSWORD}@{host}:{}/{db}", pg::USER, server.port);
    for (host, query, ok) in [
        ("127.0.0.1", "sslmode=require".to_string(), true),
        ("127.0.0.1", "sslmode=prefer".to_string(), true),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}"), true),
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}"), true),
        // the certificate names localhost and 127.0.0.1: verify-ca checks the chain only
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        // another CA: the chain does not verify
        ("localhost", "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt".to_string(), false),
        // libpq: `require` with a root certificate checks the chain, as verify-ca
        ("127.0.0.1", "sslmode=require&sslrootcert=/etc/ssl/certs/ca-certificates.crt".to_string(), false),
        ("127.0.0.1", format!("sslmode=require&sslrootcert={ca}"), true),
    ] {
        let s = Scratch::new();
        let db = server.new_db();
        let out = pg_run(&mock, &s, &format!("{}?{query}", base(host, &db)), &[]);
        assert_no_password(&out);
        if ok {
            assert_ok(&out);
            let ssl = server.count(&db, "SELECT count(*) FROM t_dataset.suggestions");
            assert_eq!(ssl, 20, "{query}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{query}");
            let (_, stderr) = text(&out);
            assert!(
                stderr.contains(&format!(
                    "cannot open the destination postgresql://{}@{host}:{}/{db}",
                    pg::USER,
                    server.port
                )),
                "{stderr}"
            );
            assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
        }
    }
}

#[test]
fn connection_faults_name_host_and_database_and_never_the_password() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "20"]);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = server.new_db();
    let url = |user: &str, pw: &str, port: u16, db: &str| {
        format!("postgresql://{user}:{pw}@127.0.0.1:{port}/{db}?sslmode=disable&connect_timeout=3")
    };
    server.psql(&db, "CREATE ROLE weak LOGIN PASSWORD 'weak-pw'; REVOKE CREATE ON DATABASE postgres FROM PUBLIC");
    server.psql(&db, &format!("REVOKE CREATE ON DATABASE {db} FROM PUBLIC"));
    for (destination, says) in [
        (url(pg::USER, PASSWORD, free, &db), "Connection refused".to_string()),
        (url(pg::USER, "wrong-pass", server.port, &db), "password authentication failed".to_string()),
        (url(pg::USER, PASSWORD, server.port, "no_such_db"), "database \"no_such_db\" does not exist".to_string()),
        (url("weak", "weak-pw", server.port, &db), "permission denied for database".to_string()),
    ] {
        let s = Scratch::new();
        let out = pg_run(&mock, &s, &destination, &[]);
        assert_eq!(out.status.code(), Some(1), "{destination}");
        let (_, stderr) = text(&out);
        let place = destination.split('@').nth(1).unwrap().split('?').next().unwrap();
        assert!(stderr.contains(place), "{stderr}");
        assert!(stderr.contains(&says), "{says}: {stderr}");
        assert!(
            !stderr.contains(PASSWORD) && !stderr.contains("wrong-pass") && !stderr.contains("weak-pw"),
            "{stderr}"
        );
    }
    assert_eq!(server.count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't_dataset%'"), 0);
}

#[test]
fn statement_timeouts_and_conflicting_column_types_leave_the_dataset_as_it_was() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "200"]);
    let s = Scratch::new();
    let db = server.new_db();
    assert_ok(&pg_run(&mock, &s, &server.url(&db), &[]));
    let before = server.psql(&db, "SELECT count(*), max(_dlt_load_id) FROM t_dataset.suggestions");
    // a role whose statements time out at once
    server.psql(
        &db,
        "CREATE ROLE hasty LOGIN SUPERUSER PASSWORD 'hasty-pw'; ALTER ROLE hasty SET statement_timeout = '1ms'",
    );
    mock.set_revision(1);
    let hasty = format!("postgresql://hasty:hasty-pw@127.0.0.1:{}/{db}?sslmode=disable", server.port);
    let out = pg_run(&mock, &s, &hasty, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("statement timeout"), "{stderr}");
    assert!(
        stderr.contains(&format!("hasty@127.0.0.1:{}/{db}", server.port)) && !stderr.contains("hasty-pw"),
        "{stderr}"
    );
    assert_eq!(server.psql(&db, "SELECT count(*), max(_dlt_load_id) FROM t_dataset.suggestions"), before);
    // a column the dataset has with another type than resttap writes
    server.psql(&db, "ALTER TABLE t_dataset.forums ALTER COLUMN name TYPE integer USING length(name)");
    let forums = server.psql(&db, "SELECT count(*), sum(name) FROM t_dataset.forums");
    let out = pg_run(&mock, &s, &server.url(&db), &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("column `name` has type integer in the dataset, but resttap writes text (varchar) there"),
        "{stderr}"
    );
    assert!(stderr.contains("t_dataset.forums"), "{stderr}");
    assert_eq!(server.psql(&db, "SELECT count(*), sum(name) FROM t_dataset.forums"), forums);
    assert_eq!(server.psql(&db, "SELECT count(*), max(_dlt_load_id) FROM t_dataset.suggestions"), before);
    assert_eq!(
        server.count(&db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset_staging'"),
        0
    );
}

#[test]
fn a_connection_ended_by_the_server_mid_load_fails_and_changes_nothing() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "3000", "--slow-ms", "30"]);
    let s = Scratch::new();
    let db = server.new_db();
    assert_ok(&pg_run(&mock, &s, &server.url(&db), &[]));
    let before = server.psql(&db, "SELECT count(*), max(_dlt_load_id) FROM t_dataset.suggestions");
    mock.set_revision(1);
    let child = run_to_command(&seed_config(), &mock, &server.url(&db), s.dir.path(), TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // once the load has written rows (a COPY went through), its backend is ended
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ended = 0;
    while ended == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        ended = server.count(
            &db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'resttap' \
             AND xact_start IS NOT NULL AND backend_xid IS NOT NULL",
        );
    }
    assert_eq!(ended, 1, "the load's session was found and ended");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains(&server.shown(&db)), "{stderr}");
    assert!(stderr.contains("terminat") || stderr.contains("connection"), "{stderr}");
    assert_eq!(server.psql(&db, "SELECT count(*), max(_dlt_load_id) FROM t_dataset.suggestions"), before);
    // and the next run loads the new revision
    assert_ok(&pg_run(&mock, &s, &server.url(&db), &[]));
    assert!(server.count(&db, "SELECT count(*) FROM t_dataset.suggestions WHERE title LIKE '%(rev 1)'") > 0);
}

#[test]
fn a_name_longer_than_postgres_keeps_is_refused_by_name_before_anything_is_written() {
    let server = pg::server();
    let mock = Mock::start(&["--records", "20"]);
    let s = Scratch::new();
    let db = server.new_db();
    let long = "a_field_whose_name_is_far_longer_than_the_sixty_three_bytes_postgres_keeps";
    let cfg = std::fs::read_to_string(seed_config()).unwrap().replacen(
        "\n  - name: external_accounts",
        &format!("\n    processing_steps:\n      - map: {{set: {{{long}: 1}}}}\n  - name: external_accounts"),
        1,
    );
    assert!(cfg.contains(long), "the step went in");
    let out = run_to_command(&s.write("c.yaml", &cfg), &mock, &server.url(&db), s.dir.path(), TOKEN).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!("the column name `{long}` is {} bytes long, and PostgreSQL keeps 63", long.len())),
        "{stderr}"
    );
    assert_eq!(server.count(&db, "SELECT count(*) FROM pg_namespace WHERE nspname = 't_dataset'"), 0);
}

#[test]
fn runs_of_disjoint_resources_load_side_by_side_and_an_overlapping_one_is_refused() {
    let server = pg::server();
    // 15 pages of 0.4 s per resource: the runs overlap, and outlast the third's 3 s wait
    let mock = Mock::start(&["--records", "1500", "--slow-ms", "400"]);
    let s = Scratch::new();
    let db = server.new_db();
    let config = repo_root().join("examples/analytics-api-incremental.yaml");
    let spawn = |resources: &str| {
        run_to_command(&config, &mock, &server.url(&db), s.dir.path(), TOKEN)
            .args(["--resources", resources])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // both start on an empty database: their schemas are created one after the other
    let a = spawn("suggestions");
    let b = spawn("feedback_records");
    let started = Instant::now();
    while mock.requests() < 4 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let overlapping = run_to_command(&config, &mock, &server.url(&db), s.dir.path(), TOKEN)
        .args(["--resources", "forums,suggestions"])
        .output()
        .unwrap();
    assert_eq!(overlapping.status.code(), Some(1));
    let (_, stderr) = text(&overlapping);
    assert!(
        stderr.contains("in use by another process")
            && stderr.contains("holds the lock of table `t_dataset.suggestions`"),
        "{stderr}"
    );
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out);
    }
    assert_eq!(server.count(&db, "SELECT count(*) FROM t_dataset.suggestions"), 1500);
    assert_eq!(server.count(&db, "SELECT count(*) FROM t_dataset.feedback_records"), 1500);
    assert_eq!(
        server.count(
            &db,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name = 'forums'"
        ),
        0
    );
    assert_eq!(server.count(&db, "SELECT count(*) FROM t_dataset._dlt_loads"), 2);
    // the state holds both runs' positions, whichever committed last
    let state = std::process::Command::new(bin())
        .args(["state", "--pipeline", "t", "--destination", &server.url(&db)])
        .output()
        .unwrap();
    assert_ok(&state);
    let st: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    for r in ["suggestions", "feedback_records"] {
        assert!(
            st.pointer(&format!("/sources/rest_api/resources/{r}/incremental/updated_at/last_value")).is_some(),
            "{r}: {st}"
        );
    }
    assert_eq!(st["_state_version"], 2, "{st}");
}

/// The switch both ways on PostgreSQL: resttap loads revision 0 of the incremental seed; dlt
/// 1.31 with no local state attaches (resttap's `_dlt_version` and `_dlt_pipeline_state`),
/// loads revision 1 from resttap's position; resttap loads revision 2 from dlt's. Every record
/// once; each run only what changed.
#[test]
fn dlt_continues_what_resttap_loaded_and_resttap_what_dlt_loaded() {
    let server = pg::server();
    let db = server.new_db();
    let url = server.url(&db);
    let mock = Mock::start(&["--records", "200", "--page-size", "50"]);
    let s = Scratch::new();
    let config = repo_root().join("examples/analytics-api-incremental.yaml");
    let resttap = || run_to_command(&config, &mock, &url, s.dir.path(), TOKEN).output().unwrap();
    let rows = |sql: &str| server.psql(&db, sql).trim().to_string();
    let check = |rev: u64, who: &str| {
        let last = rows("SELECT load_id FROM t_dataset._dlt_loads ORDER BY load_id DESC LIMIT 1");
        for t in ["forums", "suggestions", "feedback_records"] {
            let want = resttap_mock::data::record_count(t, 200, rev, 2);
            let got = rows(&format!("SELECT count(*) || ' ' || count(DISTINCT id) FROM t_dataset.{t}"));
            assert_eq!(got, format!("{want} {want}"), "{t} after {who} loaded revision {rev}");
            let this: u64 =
                rows(&format!("SELECT count(*) FROM t_dataset.{t} WHERE _dlt_load_id = '{last}'")).parse().unwrap();
            assert!(rev == 0 || (this > 0 && this * 2 < want), "{t}: {who}'s load wrote {this} of {want} rows");
        }
    };
    assert_ok(&resttap());
    check(0, "resttap");
    mock.set_revision(1);
    common::lake::dlt_load(&config, &mock.url, TOKEN, &format!("postgres:{url}"), &s.path("fresh-pipelines"), "t");
    check(1, "dlt");
    mock.set_revision(2);
    assert_ok(&resttap());
    check(2, "resttap");
    assert_eq!(rows("SELECT count(*) FROM t_dataset._dlt_loads"), "3");
}

/// The hint types on PostgreSQL, against dlt 1.31 loading the same API into a database of its
/// own: `numeric(p,s)` (and dlt's defaults `numeric(38,9)`, wei's `numeric(156,78)`), `bytea`,
/// `time without time zone`, the same values and variant columns, revision after revision.
#[test]
fn decimal_wei_binary_and_time_hints_load_as_dlt_loads_them() {
    let server = pg::server();
    let (dlt_db, our_db) = (server.new_db(), server.new_db());
    let mock = Mock::start(&["--records", "10"]);
    let s = Scratch::new();
    let config = repo_root().join("crates/resttap/tests/typed.yaml");
    let columns = |db: &str, t: &str| {
        server.psql(db, &format!(
            "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull FROM pg_attribute a \
             WHERE a.attrelid = 't_dataset.{t}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ))
    };
    let rows = |db: &str, t: &str, skip: &[&str]| {
        let cols: Vec<String> = columns(db, t)
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .filter(|c| !skip.contains(&c.as_str()))
            .map(|c| format!("coalesce(\"{c}\"::text, '∅')"))
            .collect();
        server.psql(db, &format!("SELECT {} FROM t_dataset.\"{t}\" ORDER BY 1", cols.join(" || '|' || ")))
    };
    for rev in 0..2 {
        mock.set_revision(rev);
        common::lake::dlt_load(
            &config,
            &mock.url,
            TOKEN,
            &format!("postgres:{}", server.url(&dlt_db)),
            &s.path("pipelines"),
            "t",
        );
        assert_ok(&run_to_command(&config, &mock, &server.url(&our_db), s.dir.path(), TOKEN).output().unwrap());
        for t in ["payments", "payments__lines"] {
            assert_eq!(columns(&our_db, t), columns(&dlt_db, t), "columns of {t} after revision {rev}");
            let skip = ["_dlt_load_id", "_dlt_id", "_dlt_parent_id", "_dlt_root_id"];
            assert_eq!(rows(&our_db, t, &skip), rows(&dlt_db, t, &skip), "rows of {t} after revision {rev}");
        }
    }
    let cols = columns(&our_db, "payments");
    for want in [
        "amount numeric(10,2)",
        "fee numeric(38,9)",
        "balance_wei numeric(156,78)",
        "receipt bytea",
        "due time without time zone",
    ] {
        assert!(cols.contains(want), "{want} not in {cols}");
    }
    assert_eq!(
        server
            .psql(
                &our_db,
                "SELECT convert_from(receipt, 'UTF8') || ' ' || due::text FROM t_dataset.payments WHERE id = 1"
            )
            .trim(),
        "hello 07:30:00"
    );
}
