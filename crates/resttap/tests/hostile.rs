//! Broken responses end with a clear error naming the resource, the URL and what was wrong, and
//! leave the dataset as it was: an HTML page with 200, a body over `client.max_response_bytes`,
//! a server that does not answer within `client.read_timeout`, a gzip body that does not inflate,
//! a primary key of another type halfway.

mod common;

use common::*;

fn one_resource(mock: &Mock, path: &str, client_extra: &str) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
  retry: {{max_retries: 1, backoff_factor: 0.01}}
{client_extra}
resources:
  - name: forums
    primary_key: id
    endpoint:
      path: {path}
      data_selector: forums
      paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
"#,
        url = mock.url
    )
}

fn fails_with(cfg: &str, mock: &Mock, says: &[&str]) {
    let s = Scratch::new();
    let out = run(&s.write("c.yaml", cfg), mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    for w in says {
        assert!(stderr.contains(w), "{w:?} not in:\n{stderr}");
    }
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    if s.db().exists() {
        let c = open(&s.db());
        assert_eq!(count(&c, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'forums'"), 0);
    }
}

#[test]
fn an_html_page_with_200_names_its_content_type_and_an_excerpt() {
    let mock = Mock::start(&["--records", "50"]);
    fails_with(
        &one_resource(&mock, "/login", ""),
        &mock,
        &["resource `forums`", &format!("{}/login", mock.url), "Content-Type: text/html", "Please sign in"],
    );
}

#[test]
fn a_primary_key_of_another_type_halfway_is_an_error_not_a_null_key() {
    // found by fuzzing (fuzz/corpus/normalizer): the text id went to `id__v_text` and left the
    // key column null; dlt 1.31's load fails on the NOT NULL constraint
    let mock = Mock::start(&["--records", "50"]);
    fails_with(
        &one_resource(&mock, "/mixed-keys", ""),
        &mock,
        &["resource `forums`", "primary key column `id`", "`bigint`", "forum-3"],
    );
}

#[test]
fn a_gzip_body_that_does_not_inflate_names_the_url_and_what_was_wrong() {
    let mock = Mock::start(&["--records", "50"]);
    fails_with(
        &one_resource(&mock, "/broken-gzip", ""),
        &mock,
        &["resource `forums`", &format!("{}/broken-gzip", mock.url), "decod"],
    );
}

#[test]
fn a_body_over_the_limit_is_refused_as_it_arrives() {
    let mock = Mock::start(&["--records", "500", "--page-size", "50"]);
    fails_with(
        &one_resource(&mock, "/v1/forums", "  max_response_bytes: 2000"),
        &mock,
        &[
            "resource `forums`",
            "larger than client.max_response_bytes (2000 bytes)",
            &format!("{}/v1/forums", mock.url),
        ],
    );
    // within the limit it loads
    let s = Scratch::new();
    let cfg = one_resource(&mock, "/v1/forums", "  max_response_bytes: 10000000");
    assert_ok(&run(&s.write("c.yaml", &cfg), &mock, &s.db(), TOKEN, &[]));
}

#[test]
fn a_server_that_does_not_answer_times_out_by_the_read_timeout() {
    let mock = Mock::start(&["--records", "50", "--slow-ms", "3000"]);
    let started = std::time::Instant::now();
    fails_with(
        &one_resource(&mock, "/v1/forums", "  read_timeout: 0.3\n  timeout: 60"),
        &mock,
        &["resource `forums`", "timed out", "after 2 attempt(s)"],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the read timeout, not the total one: {:?}",
        started.elapsed()
    );
}

/// Runs `cfg` with every log level on and checks that `secret` shows nowhere: not in stdout, not
/// in the logs, not in the database file's bytes.
fn never_shows(cfg: &str, mock: &Mock, token: &str, secret: &str) -> (bool, String) {
    let s = Scratch::new();
    let mut cmd =
        run_to_command(&s.write("c.yaml", cfg), mock, &format!("duckdb:{}", s.db().display()), s.dir.path(), token);
    let out = cmd.env("RESTTAP_LOG", "trace").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "the secret was printed:\n{stderr}");
    if s.db().exists() {
        let bytes = std::fs::read(s.db()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in the database file");
    }
    (out.status.success(), stderr)
}

#[test]
fn secrets_stay_out_of_logs_at_every_level_and_out_of_the_dataset() {
    let mock = Mock::start(&["--records", "50", "--page-size", "10"]);
    // an API key in the query string, over several pages
    let cfg = format!(
        r#"
client:
  base_url: {url}
  auth: {{type: api_key, name: api_key, api_key: "{{secrets.api_key}}", location: query}}
resources:
  - name: forums
    primary_key: id
    endpoint: {{path: /v1/forums, data_selector: forums, paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}}}
"#,
        url = mock.url
    );
    let (ok, stderr) = never_shows(&cfg, &mock, TOKEN, TOKEN);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("TRACE"), "every level was on:\n{stderr}");
    // an OAuth2 token endpoint that rejects the client secret, and one whose token works
    let oauth = |secret: &str| {
        format!(
            r#"
client:
  base_url: {url}
  auth: {{type: oauth2_client_credentials, access_token_url: "{url}/oauth/token", client_id: demo, client_secret: "{secret}"}}
resources:
  - name: forums
    primary_key: id
    endpoint: {{path: /v1/forums, data_selector: forums, paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}}}
"#,
            url = mock.url
        )
    };
    let (ok, stderr) = never_shows(&oauth("{secrets.api_key}"), &mock, "wrong-client-secret", "wrong-client-secret");
    assert!(!ok && stderr.contains("the OAuth2 token endpoint") && stderr.contains("HTTP 401"), "{stderr}");
    let (ok, stderr) = never_shows(&oauth("{secrets.api_key}"), &mock, TOKEN, TOKEN);
    assert!(ok, "{stderr}");
}

#[test]
fn a_full_disk_under_duckdb_says_so_naming_the_file_and_leaves_the_dataset_as_it_was() {
    let disk = SmallDisk::mount("6m");
    let db = disk.dir.path().join("full.duckdb");
    let small = Mock::start(&["--records", "100"]);
    assert_ok(&run(&seed_config(), &small, &db, TOKEN, &[]));
    let big = Mock::start(&["--records", "60000"]);
    let out = run(&seed_config(), &big, &db, TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.to_lowercase().contains("no space left"), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "the file is named: {stderr}");
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    drop(big);
    // room again: the dataset opens as the first load left it
    let _ = std::fs::remove_file(disk.dir.path().join("full.duckdb.tmp"));
    let c = open(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 100);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
}
