//! Every fixture (a real SaaS API's OpenAPI spec, see fixtures/SOURCES.md) generates a
//! configuration that resttap's own loader accepts, with the resources expected of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use resttap_config::{AuthConfig, Format, Overrides, PaginatorConfig, Resource, Secret, SecretSources, load_str};
use resttap_openapi::{Generated, Options, generate};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const FIXTURES: &[(&str, Option<&str>)] = &[
    ("clerk-backend-2025-03-12.yaml", None),
    ("twilio-studio-v2.json", None),
    ("intercom-2.11.yaml", None),
    // the spec has no `servers`: the base URL must be given
    ("ory-hydra.json", Some("https://project.projects.oryapis.com")),
];

/// Generates and loads a fixture; every secret is given a value.
fn load(name: &str, base_url: Option<&str>) -> (Generated, resttap_config::Config) {
    let g = generate(&fixture(name), &Options { base_url: base_url.map(String::from) }).unwrap();
    if let Ok(dir) = std::env::var("RESTTAP_OPENAPI_DUMP") {
        std::fs::write(Path::new(&dir).join(format!("{name}.config.yaml")), &g.yaml).unwrap();
    }
    let overrides: BTreeMap<String, Secret> = g.secrets.iter().map(|s| (s.clone(), Secret::new("x"))).collect();
    let sources =
        SecretSources { overrides, secrets_toml: Some(PathBuf::from("/nonexistent/secrets.toml")), ignore_env: true };
    let cfg = load_str(&g.yaml, Format::Yaml, Path::new(name), &Overrides::default(), &sources)
        .unwrap_or_else(|e| panic!("{name}: resttap refuses the generated config: {e}\n{}", g.yaml));
    (g, cfg)
}

fn res<'a>(cfg: &'a resttap_config::Config, name: &str) -> &'a Resource {
    cfg.api.resources.iter().find(|r| r.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = cfg.api.resources.iter().map(|r| r.name.as_str()).collect();
        panic!("no resource `{name}` (have: {names:?})")
    })
}

#[test]
fn every_fixture_generates_a_config_resttap_loads() {
    for (name, base) in FIXTURES {
        let (g, cfg) = load(name, *base);
        assert!(cfg.api.resources.len() >= 3, "{name}: {} resources", cfg.api.resources.len());
        assert!(g.yaml.contains("# Endpoints not mapped:"), "{name}");
        eprintln!("{name}: {} resources, {} skipped", cfg.api.resources.len(), g.skipped.len());
    }
}

/// The paginator a resource runs with (its own, else the client's).
fn paginator<'a>(cfg: &'a resttap_config::Config, r: &'a Resource) -> &'a PaginatorConfig {
    r.endpoint.paginator.as_ref().or(cfg.api.client.paginator.as_ref()).expect("a paginator")
}

fn pk(r: &Resource) -> Vec<&str> {
    r.primary_key.iter().map(String::as_str).collect()
}

#[test]
fn clerk_offset_limit_with_total_count_bearer_and_children() {
    let (g, cfg) = load("clerk-backend-2025-03-12.yaml", None);
    assert_eq!(cfg.api.client.base_url, "https://api.clerk.com/v1");
    assert!(
        matches!(&cfg.api.client.auth, Some(AuthConfig::Bearer { token }) if token == "{secrets.sources.clerk_backend_api.token}")
    );
    assert_eq!(g.secrets, ["sources.clerk_backend_api.token"]);

    let orgs = res(&cfg, "organizations");
    assert_eq!(orgs.endpoint.data_selector.as_deref(), Some("data"));
    assert_eq!(pk(orgs), ["id"]);
    match paginator(&cfg, orgs) {
        PaginatorConfig::Offset { limit, offset_param, limit_param, total_path, .. } => {
            assert_eq!((*limit, offset_param.as_str(), limit_param.as_str()), (10, "offset", "limit"));
            assert_eq!(total_path.as_deref(), Some("total_count"));
        }
        other => panic!("{other:?}"),
    }
    // a top-level array: `$`, offset pages without a total
    let users = res(&cfg, "users");
    assert_eq!(users.endpoint.data_selector.as_deref(), Some("$"));
    assert!(matches!(paginator(&cfg, users), PaginatorConfig::Offset { total_path: None, .. }));
    // a child: one request chain per organization
    // `organization_memberships` is `/organization_memberships`'s name
    assert_eq!(res(&cfg, "organization_memberships").parent, None);
    let members = res(&cfg, "organizations_memberships");
    assert_eq!(members.parent.as_deref(), Some("organizations"));
    assert_eq!(members.endpoint.path.as_deref(), Some("/organizations/{resources.organizations.id}/memberships"));
    // a path parameter with an enum and no parent: its first value
    assert_eq!(res(&cfg, "templates").endpoint.path.as_deref(), Some("/templates/email"));
    assert!(g.skipped.iter().any(|s| s.method_path == "GET /users/{user_id}" && s.reason.contains("single record")));
    assert!(g.skipped.iter().any(|s| s.method_path == "POST /users"));
}

#[test]
fn twilio_next_links_basic_auth_and_grandchildren() {
    let (g, cfg) = load("twilio-studio-v2.json", None);
    assert!(matches!(&cfg.api.client.auth, Some(AuthConfig::HttpBasic { .. })));
    assert_eq!(g.secrets, ["sources.twilio_studio.username", "sources.twilio_studio.password"]);
    let flows = res(&cfg, "flows");
    assert_eq!(flows.endpoint.data_selector.as_deref(), Some("flows"));
    assert_eq!(pk(flows), ["sid"]);
    assert!(
        matches!(paginator(&cfg, flows), PaginatorConfig::JsonLink { next_url_path, .. } if next_url_path == "meta.next_page_url")
    );
    let execs = res(&cfg, "flow_executions");
    assert_eq!(execs.parent.as_deref(), Some("flows"));
    assert_eq!(execs.endpoint.path.as_deref(), Some("/v2/Flows/{resources.flows.sid}/Executions"));
    // a grandchild: both path parameters from the execution records
    let steps = res(&cfg, "flow_execution_steps");
    assert_eq!(steps.parent.as_deref(), Some("flow_executions"));
    assert_eq!(
        steps.endpoint.path.as_deref(),
        Some("/v2/Flows/{resources.flow_executions.flow_sid}/Executions/{resources.flow_executions.sid}/Steps")
    );
}

#[test]
fn intercom_cursors_and_page_numbers() {
    let (_, cfg) = load("intercom-2.11.yaml", None);
    let contacts = res(&cfg, "contacts");
    assert_eq!(contacts.endpoint.data_selector.as_deref(), Some("data"));
    assert_eq!(pk(contacts), ["id"]);
    match paginator(&cfg, contacts) {
        PaginatorConfig::Cursor { cursor_param, cursor_path, .. } => {
            assert_eq!(cursor_param.as_deref(), Some("starting_after"));
            assert_eq!(cursor_path, "pages.next.starting_after");
        }
        other => panic!("{other:?}"),
    }
    let companies = res(&cfg, "companies");
    match paginator(&cfg, companies) {
        PaginatorConfig::PageNumber { page_param, base_page, total_path, .. } => {
            assert_eq!((page_param.as_str(), *base_page), ("page", 1));
            assert_eq!(total_path.as_deref(), Some("pages.total_pages"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(res(&cfg, "conversations").endpoint.data_selector.as_deref(), Some("conversations"));
    let notes = res(&cfg, "contact_notes");
    assert_eq!(notes.parent.as_deref(), Some("contacts"));
    assert_eq!(notes.endpoint.path.as_deref(), Some("/contacts/{resources.contacts.id}/notes"));
    assert!(matches!(paginator(&cfg, res(&cfg, "admins")), PaginatorConfig::SinglePage { .. }));
}

#[test]
fn ory_hydra_link_headers_and_top_level_arrays() {
    let (_, cfg) = load("ory-hydra.json", Some("https://project.projects.oryapis.com"));
    let clients = res(&cfg, "admin_clients");
    assert_eq!(clients.endpoint.data_selector.as_deref(), Some("$"));
    assert_eq!(pk(clients), ["client_id"]);
    assert!(matches!(paginator(&cfg, clients), PaginatorConfig::HeaderLink { .. }));
    assert_eq!(pk(res(&cfg, "admin_trust_grant_jwt_bearer_issuers")), ["id"]);
}

#[test]
fn ory_hydra_needs_a_base_url() {
    let e = generate(&fixture("ory-hydra.json"), &Options::default()).unwrap_err();
    assert!(matches!(e, resttap_openapi::OpenApiError::NoBaseUrl), "{e}");
}
