use serde_json::{Value, json};

use super::*;

const FORUMS: &str = r##"
openapi: 3.1.0
info: {title: Forum API, version: "1"}
servers: [{url: "https://{region}.example.com/v1", variables: {region: {default: eu}}}]
security: [{bearer: []}]
components:
  securitySchemes:
    bearer: {type: http, scheme: bearer}
  parameters:
    cursor: {name: cursor, in: query, schema: {type: string}}
  schemas:
    Forum:
      type: object
      properties:
        id: {type: integer}
        name: {type: [string, "null"]}
    Page:
      type: object
      properties:
        pagination:
          type: object
          properties:
            cursor: {type: [string, "null"]}
paths:
  /v1/forums:
    get:
      summary: List forums
      parameters: [{$ref: '#/components/parameters/cursor'}]
      responses:
        200:
          description: ok
          content:
            application/json:
              schema:
                allOf:
                  - $ref: '#/components/schemas/Page'
                  - type: object
                    properties:
                      forums: {type: array, items: {$ref: '#/components/schemas/Forum'}}
    post:
      responses: {"201": {description: created}}
  /v1/forums/{forum_id}:
    get:
      parameters: [{name: forum_id, in: path, required: true, schema: {type: integer}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/Forum'}}}}
  /v1/forums/{forum_id}/topics:
    get:
      parameters:
        - {name: forum_id, in: path, required: true, schema: {type: integer}}
        - {name: page, in: query, schema: {type: integer, default: 1}}
        - {name: per_page, in: query, schema: {type: integer, default: 25, maximum: 100}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  topics:
                    type: array
                    items: {type: object, properties: {topic_id: {type: string}, title: {type: string}}}
                  meta: {type: object, properties: {total_pages: {type: integer}}}
  /v1/users/{user_id}/posts:
    get:
      parameters: [{name: user_id, in: path, required: true, schema: {type: string}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: array, items: {type: object}}}}}
  /v1/events:
    get:
      parameters:
        - {name: offset, in: query, schema: {type: integer}}
        - {name: limit, in: query, schema: {type: integer, maximum: 50}}
        - {name: kind, in: query, required: true, schema: {type: string, enum: [all, some]}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  data: {type: array, items: {type: object, properties: {uuid: {type: string, format: uuid}}}}
                  total: {type: integer}
  /v1/links:
    get:
      responses:
        "200":
          description: ok
          headers: {Link: {schema: {type: string}}}
          content: {application/json: {schema: {type: array, items: {type: object, properties: {id: {type: string}}}}}}
  /v1/next:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  items: {type: array, items: {type: object, properties: {next_id: {type: string}}}}
                  links: {type: object, properties: {next: {type: string, format: uri}}}
  /v1/search:
    get:
      parameters: [{name: q, in: query, required: true, schema: {type: string}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: array, items: {type: object}}}}}
"##;

fn parsed(g: &Generated) -> Value {
    serde_norway::from_str(&g.yaml).unwrap()
}

fn resource<'a>(cfg: &'a Value, name: &str) -> &'a Value {
    cfg["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn maps_lists_paginators_keys_and_children() {
    let g = generate(FORUMS, &Options::default()).unwrap();
    let cfg = parsed(&g);
    assert_eq!(cfg["client"]["base_url"], "https://eu.example.com/v1");
    assert_eq!(cfg["client"]["auth"], json!({"type": "bearer", "token": "{secrets.sources.forum_api.token}"}));
    assert_eq!(g.secrets, ["sources.forum_api.token"]);

    let forums = resource(&cfg, "forums");
    assert_eq!(forums["primary_key"], "id");
    assert_eq!(forums["endpoint"]["data_selector"], "forums");
    assert_eq!(
        forums["endpoint"]["paginator"],
        json!({"type": "cursor", "cursor_param": "cursor", "cursor_path": "pagination.cursor"})
    );

    let topics = resource(&cfg, "forum_topics");
    assert_eq!(topics["endpoint"]["path"], "/v1/forums/{forum_id}/topics");
    assert_eq!(
        topics["endpoint"]["params"]["forum_id"],
        json!({"type": "resolve", "resource": "forums", "field": "id"})
    );
    assert_eq!(topics["primary_key"], "topic_id");
    assert_eq!(
        topics["endpoint"]["paginator"],
        json!({"type": "page_number", "page_param": "page", "base_page": 1, "total_path": "meta.total_pages"})
    );

    let events = resource(&cfg, "events");
    assert_eq!(events["primary_key"], "uuid");
    assert_eq!(events["endpoint"]["params"]["kind"], "all");
    assert_eq!(
        events["endpoint"]["paginator"],
        json!({"type": "offset", "limit": 50, "offset_param": "offset", "limit_param": "limit", "total_path": "total"})
    );
    let links = resource(&cfg, "links");
    assert_eq!(links["endpoint"]["data_selector"], "$");
    assert_eq!(links["endpoint"]["paginator"], json!({"type": "header_link"}));
    let next = resource(&cfg, "next");
    assert_eq!(next["endpoint"]["paginator"], json!({"type": "json_link", "next_url_path": "links.next"}));
    assert_eq!(next["primary_key"], "next_id");

    let reasons: Vec<(&str, &str)> = g.skipped.iter().map(|s| (s.method_path.as_str(), s.reason.as_str())).collect();
    assert!(reasons.contains(&("POST /v1/forums", "not a GET endpoint (resttap reads with GET)")), "{reasons:?}");
    assert!(reasons.iter().any(|(m, r)| *m == "GET /v1/forums/{forum_id}" && r.contains("single record")));
    assert!(reasons.iter().any(|(m, r)| *m == "GET /v1/users/{user_id}/posts" && r.contains("no parent list")));
    assert!(reasons.iter().any(|(m, r)| *m == "GET /v1/search" && r.contains("`q`")));
    assert!(g.yaml.contains("# Endpoints not mapped:\n#   "), "{}", g.yaml);
    assert!(g.yaml.contains("  # GET /v1/forums — List forums\n"), "{}", g.yaml);
}

#[test]
fn base_url_option_wins_and_missing_one_is_an_error() {
    let g = generate(FORUMS, &Options { base_url: Some("http://127.0.0.1:9/".into()) }).unwrap();
    assert_eq!(parsed(&g)["client"]["base_url"], "http://127.0.0.1:9");
    let no_servers =
        FORUMS.replace("servers: [{url: \"https://{region}.example.com/v1\", variables: {region: {default: eu}}}]", "");
    let e = generate(&no_servers, &Options::default()).unwrap_err();
    assert!(matches!(e, OpenApiError::NoBaseUrl));
    assert!(e.to_string().contains("--base-url"));
    let relative = FORUMS.replace("https://{region}.example.com/v1", "/api");
    assert!(matches!(generate(&relative, &Options::default()), Err(OpenApiError::RelativeBaseUrl(u)) if u == "/api"));
    // a server variable the spec does not declare is not sent as a placeholder
    let undeclared = FORUMS.replace(", variables: {region: {default: eu}}", "");
    assert!(
        matches!(generate(&undeclared, &Options::default()), Err(OpenApiError::RelativeBaseUrl(u)) if u.contains("{region}"))
    );
}

#[test]
fn braces_in_header_defaults_are_sent_as_written() {
    let spec = FORUMS.replace(
        "parameters: [{$ref: '#/components/parameters/cursor'}]",
        "parameters: [{$ref: '#/components/parameters/cursor'}, {name: X-Filter, in: header, required: true, schema: {type: string, default: '{\"a\": 1}'}}]",
    );
    let g = generate(&spec, &Options::default()).unwrap();
    let cfg = parsed(&g);
    assert_eq!(resource(&cfg, "forums")["endpoint"]["headers"]["X-Filter"], "{{\"a\": 1}}", "{}", g.yaml);
}

#[test]
fn auth_schemes() {
    let with = |schemes: &str| {
        let s = FORUMS
            .replace("    bearer: {type: http, scheme: bearer}", schemes)
            .replace("security: [{bearer: []}]", "security: [{main: []}]");
        parsed(&generate(&s, &Options::default()).unwrap())["client"]["auth"].clone()
    };
    assert_eq!(
        with("    main: {type: apiKey, in: query, name: api_token}"),
        json!({"type": "api_key", "name": "api_token", "api_key": "{secrets.sources.forum_api.api_key}", "location": "query"})
    );
    assert_eq!(
        with("    main: {type: http, scheme: basic}"),
        json!({"type": "http_basic", "username": "{secrets.sources.forum_api.username}", "password": "{secrets.sources.forum_api.password}"})
    );
    assert_eq!(
        with(
            "    main: {type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://auth.example.com/token', scopes: {}}}}"
        )["type"],
        "oauth2_client_credentials"
    );
    assert_eq!(with("    main: {type: openIdConnect, openIdConnectUrl: 'https://x'}"), Value::Null);
}

#[test]
fn errors_are_typed() {
    assert!(matches!(
        generate("swagger: '2.0'\npaths: {}", &Options::default()),
        Err(OpenApiError::UnsupportedVersion(_))
    ));
    let none = "openapi: 3.0.0\nservers: [{url: 'https://x'}]\npaths:\n  /a:\n    post: {responses: {'200': {description: ok}}}\n";
    assert!(matches!(generate(none, &Options::default()), Err(OpenApiError::NothingToLoad { skipped: 1 })));
}
