//! Generates a resttap configuration (the structure of dlt's `rest_api_source` dict) from an
//! OpenAPI 3.0 or 3.1 spec, as dlt-init-openapi does for dlt:
//!
//! - every GET endpoint whose success response is JSON with a list of records (the body itself,
//!   or an array property: `data_selector`) becomes a resource, named from its path
//!   (`/v1/pets` -> `pets`, `/forums/{forum_id}/topics` -> `forum_topics`);
//! - its paginator comes from its query parameters and response fields: offset/limit (with a
//!   total or a has-more flag), page numbers (with a page count, or until an empty page),
//!   cursors, next links in the body, `Link` headers; the most common one goes to
//!   `client.paginator`;
//! - the primary key is `id`, else a field named like the resource's key (`<singular>_id`,
//!   `uuid`, `sid`, ...), else none (the resource is appended);
//! - an endpoint under a list endpoint (`/forums/{forum_id}/topics` under `/forums`) becomes a
//!   child resource: `params: {forum_id: {type: resolve, resource: forums, field: id}}`;
//! - auth from the security schemes: http bearer, http basic, apiKey (header, query, cookie) and
//!   OAuth2 client credentials, with `{secrets.sources.<source>.<name>}` placeholders
//!   (environment `SOURCES__<SOURCE>__<NAME>`, as dlt names source secrets).
//!
//! Endpoints that cannot be mapped are returned in [`Generated::skipped`] with the reason, and
//! listed in a comment at the end of the YAML.
//!
//! With the `mock` feature, [`mock`] serves an API shaped like the spec, for tests.

mod analyze;
mod naming;
mod render;
mod spec;

#[cfg(feature = "mock")]
pub mod mock;

/// Options of [`generate`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The API's base URL; when `None`, the spec's first server URL.
    pub base_url: Option<String>,
}

/// A generated configuration.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The configuration in YAML, with comments.
    pub yaml: String,
    /// The resources' names, in the configuration's order.
    pub resources: Vec<String>,
    /// The endpoints not mapped to a resource, and why.
    pub skipped: Vec<Skipped>,
    /// The secret names the configuration's placeholders use (`sources.stripe.token`): each is
    /// read from the environment (`SOURCES__STRIPE__TOKEN`) or `.dlt/secrets.toml`.
    pub secrets: Vec<String>,
}

/// An endpoint the configuration leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The method and path, `GET /pets/{id}`.
    pub method_path: String,
    /// Why it was left out.
    pub reason: String,
}

/// Why no configuration could be generated.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The text starts with `{` but is not valid JSON.
    #[error("the spec is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The text is not valid YAML.
    #[error("the spec is not valid YAML: {0}")]
    Yaml(#[source] serde_norway::Error),
    /// The document is not an OpenAPI document.
    #[error("not an OpenAPI document: {0}")]
    NotOpenApi(String),
    /// Swagger 2.0, or an OpenAPI version other than 3.0 and 3.1.
    #[error("{0} is not supported: only OpenAPI 3.0 and 3.1 (convert Swagger 2.0 specs to OpenAPI 3 first)")]
    UnsupportedVersion(String),
    /// Neither `Options::base_url` nor a server URL in the spec.
    #[error("the spec declares no server URL: pass the API's base URL (`--base-url https://api.example.com`)")]
    NoBaseUrl,
    /// The spec's first server URL is relative.
    #[error(
        "the spec's server URL `{0}` is not an absolute http(s) URL (or has a variable the spec does not declare): pass the API's base URL (`--base-url https://api.example.com/...`)"
    )]
    RelativeBaseUrl(String),
    /// No GET endpoint returns a list of records.
    #[error("no endpoint of the spec could be mapped to a resource ({skipped} endpoints skipped)")]
    NothingToLoad {
        /// How many endpoints were skipped.
        skipped: usize,
    },
}

/// Generates the configuration for `spec_text` (OpenAPI 3.0/3.1, JSON or YAML).
pub fn generate(spec_text: &str, opts: &Options) -> Result<Generated, OpenApiError> {
    let plan = analyze::plan(spec_text, opts)?;
    Ok(Generated {
        yaml: render::yaml(&plan),
        secrets: plan.secret_names(),
        resources: plan.resources.iter().map(|r| r.name.clone()).collect(),
        skipped: plan.skipped,
    })
}

#[cfg(test)]
mod tests;
