//! The lake destination through the binary: S3 (moto's server on loopback), plain Parquet
//! tables as dlt makes them, and bad input (wrong keys, a missing bucket, an unusable path, a
//! full disk), every table read back by independent readers (`common::lake`).

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// `resttap run` into `destination` from `cwd` (where `.dlt/` may be).
fn run_lake(config: &Path, mock: &Mock, destination: &str, cwd: &Path) -> Output {
    run_to_command(config, mock, destination, cwd, TOKEN).output().unwrap()
}

/// A scratch directory whose `.dlt/secrets.toml` holds the S3 server's keys as dlt names them.
fn with_s3_secrets(s3: &lake::S3, secret: &str) -> Scratch {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path(".dlt")).unwrap();
    s.write(
        ".dlt/secrets.toml",
        &format!(
            "[destination.filesystem.credentials]\naws_access_key_id = \"{}\"\naws_secret_access_key = \"{secret}\"\nregion_name = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            lake::S3_KEY,
            s3.endpoint
        ),
    );
    s
}

/// The seed config with `line` added to `resource_defaults`.
fn seed_with_default(s: &Scratch, line: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(seed_config()).unwrap();
    s.write("seed.yaml", &text.replacen("resource_defaults:\n", &format!("resource_defaults:\n  {line}\n"), 1))
}

#[test]
fn s3_delta_tables_load_merge_and_resume_from_the_bucket() {
    let s3 = lake::s3();
    s3.bucket("lake-e2e");
    let s = with_s3_secrets(s3, lake::S3_SECRET);
    let config = seed_with_default(&s, "table_format: delta");
    let mock = Mock::start(&["--records", "300", "--growth", "4"]);
    let out = run_lake(&config, &mock, "s3://lake-e2e/raw", s.dir.path());
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("loaded into s3://lake-e2e/raw"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains(lake::S3_SECRET), "the secret key is never printed");
    let url = "s3://lake-e2e/raw/t_dataset";
    let q = |sql: &[&str]| lake::query(url, &s3.env(), sql);
    let n = |t: &str| resttap_mock::data::record_count(t, 300, 0, 4).to_string();
    assert_eq!(
        q(&["SELECT count(*) FROM t_dataset.suggestions", "SELECT count(*) FROM t_dataset.forums__tags"]),
        [vec![n("suggestions")], vec![list_rows("forums", 300, 0, 4, "tags").to_string()]]
    );
    // changed records merge by primary key; the state lives in the bucket
    mock.set_revision(1);
    assert_ok(&run_lake(&config, &mock, "s3://lake-e2e/raw", s.dir.path()));
    let after = q(&[
        "SELECT count(*) - count(DISTINCT id) FROM t_dataset.suggestions",
        "SELECT count(*) FROM t_dataset.suggestions",
        "SELECT count(*) FROM t_dataset._dlt_loads",
        "SELECT count(*) FROM t_dataset.suggestions WHERE title LIKE '%(rev %'",
    ]);
    assert_eq!(after[0], ["0"]);
    assert_eq!(after[1], [resttap_mock::data::record_count("suggestions", 300, 1, 4).to_string()]);
    assert_eq!(after[2], ["2"]);
    assert_ne!(after[3], ["0"], "revised records arrived");
    // `resttap schema` reads the bucket
    let schema = std::process::Command::new(bin())
        .args(["schema", "--pipeline", "t", "--destination", "s3://lake-e2e/raw"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_ok(&schema);
    assert!(text(&schema).0.contains(&format!("suggestions ({} rows)", after[1][0])), "{}", text(&schema).0);
}

#[test]
fn s3_a_load_killed_between_two_tables_is_finished_by_the_next_run_and_a_second_run_is_refused() {
    let s3 = lake::s3();
    s3.bucket("lake-kill");
    let s = with_s3_secrets(s3, lake::S3_SECRET);
    let config = seed_with_default(&s, "table_format: delta");
    let mock = Mock::start(&["--records", "300"]);
    let url = "s3://lake-kill/t_dataset";
    assert_ok(&run_lake(&config, &mock, "s3://lake-kill", s.dir.path()));
    mock.set_revision(1);
    let killed = run_to_command(&config, &mock, "s3://lake-kill", s.dir.path(), TOKEN)
        .env("RESTTAP_CRASH_AT", "between_tables")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let q = |sql: &[&str]| lake::query(url, &s3.env(), sql);
    let dup = "SELECT count(*) - count(DISTINCT id) FROM t_dataset.suggestions";
    assert_eq!(q(&["SELECT count(*) FROM t_dataset._dlt_loads", dup]), [vec!["1".to_string()], vec!["0".to_string()]]);
    // the killed run's lease names a process of this machine that is gone: taken over at once;
    // the next run finishes the killed load first, then loads its own
    assert_ok(&run_lake(&config, &mock, "s3://lake-kill", s.dir.path()));
    assert_eq!(q(&["SELECT count(*) FROM t_dataset._dlt_loads", dup]), [vec!["3".to_string()], vec!["0".to_string()]]);
    // a live run's lease refuses a second run
    let slow = Mock::start(&["--records", "2000", "--slow-ms", "300"]);
    let fresh = with_s3_secrets(s3, lake::S3_SECRET);
    s3.bucket("lake-lease");
    let mut first = run_to_command(&config, &slow, "s3://lake-lease", fresh.dir.path(), TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while slow.requests() == 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = run_lake(&config, &slow, "s3://lake-lease", fresh.dir.path());
    assert_eq!(second.status.code(), Some(1));
    assert!(text(&second).1.contains("in use by another process"), "{}", text(&second).1);
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn s3_state_resumes_on_a_fresh_machine() {
    let s3 = lake::s3();
    s3.bucket("lake-state");
    let mock = Mock::start(&["--records", "200"]);
    let incremental = repo_root().join("examples/analytics-api-incremental.yaml");
    let first = with_s3_secrets(s3, lake::S3_SECRET);
    assert_ok(&run_lake(&incremental, &mock, "s3://lake-state", first.dir.path()));
    // another directory (nothing local but the keys): resumes from the stored position
    let fresh = with_s3_secrets(s3, lake::S3_SECRET);
    let before = mock.requests();
    assert_ok(&run_lake(&incremental, &mock, "s3://lake-state", fresh.dir.path()));
    assert_eq!(mock.requests() - before, 6, "one page per resource: resumed from the bucket");
}

#[test]
fn s3_wrong_keys_and_a_missing_bucket_say_where_and_print_no_secret() {
    let s3 = lake::s3();
    s3.bucket("lake-keys");
    let mock = Mock::start(&["--records", "50"]);
    let wrong = with_s3_secrets(s3, "wrong-secret-do-not-print");
    // moto checks nothing by default: a missing bucket is what a real S3 refuses the same way
    let out = run_lake(&seed_config(), &mock, "s3://no-such-bucket/x", wrong.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("s3://no-such-bucket/x"), "the location is named: {stderr}");
    assert!(stderr.to_lowercase().contains("bucket"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("wrong-secret-do-not-print"), "{stderr}");
    assert_eq!(mock.requests(), 0, "the destination is checked before the API is read");
}

#[test]
fn s3_wrong_keys_are_refused_with_what_to_check_and_no_secret() {
    let s3 = lake::s3_strict();
    let mock = Mock::start(&["--records", "50"]);
    let s = with_s3_secrets(s3, "wrong-secret-do-not-print");
    let out = run_lake(&seed_config(), &mock, "s3://any-bucket/raw", s.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("s3://any-bucket/raw"), "the location is named: {stderr}");
    assert!(stderr.contains("InvalidAccessKeyId") && stderr.contains("aws_secret_access_key"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("wrong-secret-do-not-print"), "{stderr}");
    assert_eq!(mock.requests(), 0);
}

#[test]
fn plain_parquet_tables_are_as_dlt_makes_them() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "300"]);
    let dest = format!("file://{}", s.path("lake").display());
    let url = format!("{dest}/t_dataset");
    // merge on plain files appends, as dlt does, and says so
    for _ in 0..2 {
        let out = run_lake(&seed_config(), &mock, &dest, s.dir.path());
        assert_ok(&out);
        assert!(text(&out).1.contains("merge on plain Parquet tables appends, as dlt does"), "{}", text(&out).1);
    }
    let n = resttap_mock::data::record_count("suggestions", 300, 0, 2);
    let got = lake::query(
        &url,
        &[],
        &[
            "SELECT count(*) FROM t_dataset.suggestions",
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'forums__tags' ORDER BY ordinal_position",
        ],
    );
    assert_eq!(got[0], [(2 * n).to_string()]);
    assert_eq!(
        got[1],
        ["value", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"],
        "dlt's columns of an appended nested table"
    );
    let dir = s.path("lake/t_dataset/suggestions");
    let files = || {
        let mut v: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(files().len(), 2, "one file per table per load: {:?}", files());
    assert!(!dir.join("_delta_log").exists());
    // replace: the table's earlier files go, root and nested, once the new ones are in
    let config = seed_with_default(&s, "write_disposition: replace");
    let config_text = std::fs::read_to_string(&config).unwrap().replacen("  write_disposition: merge\n", "", 1);
    let config = s.write("replace.yaml", &config_text);
    assert_ok(&run_lake(&config, &mock, &dest, s.dir.path()));
    assert_eq!(files().len(), 1, "{:?}", files());
    let got = lake::query(
        &url,
        &[],
        &[
            "SELECT count(*) FROM t_dataset.suggestions",
            "SELECT count(*) FROM t_dataset.forums__tags",
            "SELECT count(*) FROM t_dataset._dlt_loads",
        ],
    );
    assert_eq!(got[0], [n.to_string()]);
    assert_eq!(got[1], [list_rows("forums", 300, 0, 2, "tags").to_string()]);
    assert_eq!(got[2], ["3"]);
}

#[test]
fn an_unusable_path_says_which_and_changes_nothing() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "50"]);
    s.write("not-a-dir", "a file");
    let dest = format!("file://{}/not-a-dir/lake", s.dir.path().display());
    let out = run_lake(&seed_config(), &mock, &dest, s.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("not-a-dir/lake"), "the path is named: {stderr}");
    assert_eq!(std::fs::read_to_string(s.path("not-a-dir")).unwrap(), "a file");
}

#[test]
fn a_full_disk_under_a_lake_says_so_and_leaves_every_table_as_it_was() {
    let disk = SmallDisk::mount("4m");
    let s = Scratch::new();
    let config = seed_with_default(&s, "table_format: delta");
    let dest = format!("file://{}/lake", disk.dir.path().display());
    let url = format!("{dest}/t_dataset");
    let small = Mock::start(&["--records", "100"]);
    assert_ok(&run_lake(&config, &small, &dest, s.dir.path()));
    let before = lake::query(
        &url,
        &[],
        &["SELECT count(*) FROM t_dataset.suggestions", "SELECT count(*) FROM t_dataset._dlt_loads"],
    );
    let before_files = walk(disk.dir.path());
    let big = Mock::start(&["--records", "60000"]);
    let out = run_lake(&config, &big, &dest, s.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.to_lowercase().contains("no space left"), "{stderr}");
    assert!(stderr.contains(&disk.dir.path().display().to_string()), "the place is named: {stderr}");
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert_eq!(
        lake::query(
            &url,
            &[],
            &["SELECT count(*) FROM t_dataset.suggestions", "SELECT count(*) FROM t_dataset._dlt_loads"]
        ),
        before
    );
    // the failed load's files are gone: room for the next run
    let left: Vec<_> = walk(disk.dir.path())
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or_default();
            name.contains('#') || name.ends_with(".tmp") || (name.ends_with(".parquet") && !before_files.contains(p))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_ok(&run_lake(&config, &small, &dest, s.dir.path()));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn resttap_continues_a_lake_dlt_loaded_from_dlts_state() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "200"]);
    let incremental = repo_root().join("examples/analytics-api-incremental.yaml");
    let dest = format!("file://{}", s.path("lake").display());
    lake::dlt_load(&incremental, &mock.url, TOKEN, &dest, &s.path("dlt-pipelines"), "t");
    let url = format!("{dest}/t_dataset");
    let before = lake::query(&url, &[], &["SELECT count(*) FROM t_dataset.suggestions"]);
    assert_eq!(before[0], [resttap_mock::data::record_count("suggestions", 200, 0, 2).to_string()]);
    let requests = mock.requests();
    let out = run_lake(&incremental, &mock, &dest, s.dir.path());
    assert_ok(&out);
    assert_eq!(mock.requests() - requests, 6, "one page per resource: resumed from dlt's stored position");
    let after = lake::query(
        &url,
        &[],
        &[
            "SELECT count(*) FROM t_dataset._dlt_loads",
            "SELECT count(DISTINCT _dlt_load_id) FROM t_dataset.suggestions",
        ],
    );
    assert_eq!(after[0], ["2"], "dlt's load and resttap's");
    assert!(after[1] == ["1"] || after[1] == ["2"], "{after:?}");
}

/// The other way: dlt 1.31, with no local pipeline state, attaches to a lake resttap loaded
/// (its `_dlt_pipeline_state/` and `_dlt_version/` files) and continues from resttap's position.
#[test]
fn dlt_continues_a_lake_resttap_loaded_from_resttaps_state() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "200"]);
    let incremental = repo_root().join("examples/analytics-api-incremental.yaml");
    let dest = format!("file://{}", s.path("lake").display());
    assert_ok(&run_lake(&incremental, &mock, &dest, s.dir.path()));
    let n = resttap_mock::data::record_count("suggestions", 200, 0, 2);
    mock.set_revision(1);
    let requests = mock.requests();
    lake::dlt_load(&incremental, &mock.url, TOKEN, &dest, &s.path("fresh-pipelines"), "t");
    assert_eq!(mock.requests() - requests, 6, "one page per resource: resumed from resttap's stored position");
    let url = format!("{dest}/t_dataset");
    let after = lake::query(
        &url,
        &[],
        &["SELECT count(*) FROM t_dataset._dlt_loads", "SELECT count(*) FROM t_dataset.suggestions"],
    );
    assert_eq!(after[0], ["2"], "resttap's load and dlt's");
    // plain Parquet appends (dlt's too): the changed and added records once more, no more
    let changed = (1..=n).filter(|id| resttap_mock::data::changed_in(*id, 1)).count() as u64;
    let grown = resttap_mock::data::record_count("suggestions", 200, 1, 2) - n;
    assert_eq!(after[1], [(n + changed + grown).to_string()]);
}

/// What Delta tables cannot merge here (scd2, insert-only, the merge hints) is refused before
/// any request, naming the resource and where it runs; nothing is written.
#[test]
fn a_merge_the_lake_cannot_run_is_refused_before_anything_is_written() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "100"]);
    let yaml = std::fs::read_to_string(seed_config()).unwrap().replacen(
        "  write_disposition: merge\n",
        "  write_disposition: {disposition: merge, strategy: scd2}\n  table_format: delta\n",
        1,
    );
    let config = s.write("scd2.yaml", &yaml);
    let dest = format!("file://{}", s.path("lake").display());
    let out = run_lake(&config, &mock, &dest, s.dir.path());
    let (_, err) = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("resource `forums`") && err.contains("scd2") && err.contains("DuckDB and PostgreSQL"),
        "{err}"
    );
    assert_eq!(mock.requests(), 0, "refused before any request");
    assert!(!s.path("lake/t_dataset/forums").exists());
}

/// Column types the lake does not write yet (decimal, wei, binary, time) are refused the same
/// way: before any request, naming the resource, the column and where they load.
#[test]
fn hint_types_the_lake_does_not_write_are_refused_before_any_request() {
    let s = Scratch::new();
    let mock = Mock::start(&["--records", "10"]);
    let config = repo_root().join("crates/resttap/tests/typed.yaml");
    let dest = format!("file://{}", s.path("lake").display());
    let out = run_lake(&config, &mock, &dest, s.dir.path());
    let (_, err) = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("resource `payments`") && err.contains("column `amount`") && err.contains("DuckDB and PostgreSQL"),
        "{err}"
    );
    assert_eq!(mock.requests(), 0, "refused before any request");
    assert!(!s.path("lake/t_dataset/payments").exists());
}
