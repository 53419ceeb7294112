//! `resttap init --openapi` on real SaaS specs (crates/resttap-openapi/tests/fixtures, sources
//! and licences in SOURCES.md there): each generated configuration is accepted by `check
//! --offline` and loads into DuckDB, from a mock shaped like its spec, every record the mock
//! serves.

mod common;

use std::process::Command;

use common::*;

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root().join("crates/resttap-openapi/tests/fixtures").join(name)
}

/// Generates the configuration of `spec` with the binary, loads it from the spec's mock, and
/// checks every table against the records the mock serves.
fn init_and_load(spec: &str, per_endpoint: usize) {
    let path = fixture(spec);
    let spec_text = std::fs::read_to_string(&path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, _server) = rt.block_on(resttap_openapi::mock::serve(&spec_text, per_endpoint)).unwrap();
    let expected = resttap_openapi::mock::expected_counts(&spec_text, per_endpoint).unwrap();
    let base = format!("http://{addr}");
    let options = resttap_openapi::Options { base_url: Some(base.clone()) };
    let secrets = resttap_openapi::generate(&spec_text, &options).unwrap().secrets;
    let s = Scratch::new();
    let out = Command::new(bin())
        .args(["init", "--openapi"])
        .arg(&path)
        .args(["-o", "api.yaml", "--base-url", &base])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let (_, stderr) = text(&out);
    assert!(stderr.contains(&format!("{} resource(s) written to api.yaml", expected.len())), "{stderr}");
    let command = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args).current_dir(s.dir.path()).env_remove("RESTTAP_LOG");
        for name in &secrets {
            c.env(resttap_config::env_var_name(name), resttap_openapi::mock::SECRET);
        }
        c.output().unwrap()
    };
    assert_ok(&command(&["check", "api.yaml", "--offline"]));
    let out = command(&["run", "api.yaml", "--pipeline", "api", "--destination", "duckdb:api.duckdb"]);
    assert_ok(&out);
    let c = open(&s.path("api.duckdb"));
    let mut loaded = 0;
    for (resource, n) in &expected {
        let table = resttap_schema::naming::normalize_table_name(resource);
        let rows = if *n == 0 { 0 } else { count(&c, &format!("SELECT count(*) FROM api_dataset.\"{table}\"")) };
        assert_eq!(rows as usize, *n, "{spec}: resource {resource}\n{}", text(&out).0);
        loaded += n;
    }
    assert!(loaded > 0, "{spec}: the mock served records");
}

#[test]
fn clerk_offset_pages_bearer_auth_and_children_load() {
    init_and_load("clerk-backend-2025-03-12.yaml", 7);
}

#[test]
fn twilio_next_links_basic_auth_and_grandchildren_load() {
    init_and_load("twilio-studio-v2.json", 4);
}

#[test]
fn intercom_cursors_and_page_numbers_load() {
    init_and_load("intercom-2.11.yaml", 7);
}

#[test]
fn ory_link_headers_load_and_a_spec_without_servers_needs_a_base_url() {
    init_and_load("ory-hydra.json", 7);
    let s = Scratch::new();
    let out = Command::new(bin())
        .args(["init", "--openapi"])
        .arg(fixture("ory-hydra.json"))
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--base-url"), "{}", text(&out).1);
    // the file is not replaced without --force
    std::fs::write(s.path("api.yaml"), "mine").unwrap();
    let out = Command::new(bin())
        .args(["init", "--openapi"])
        .arg(fixture("intercom-2.11.yaml"))
        .args(["-o", "api.yaml"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(s.path("api.yaml")).unwrap(), "mine");
}
