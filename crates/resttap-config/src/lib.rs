//! resttap's configuration: the structure of dlt's `rest_api_source` dict (`client`,
//! `resource_defaults`, `resources`), read from YAML, JSON or TOML, checked strictly before any
//! request is made.
//!
//! - Unknown keys and wrong types are errors naming the key path
//!   (`resources[2].endpoint.paginator.cursor_pth`) with the nearest valid key suggested.
//! - `resource_defaults` are merged into every resource as in dlt (recursively, the resource
//!   winning); dlt's shorthands are expanded (a resource or endpoint given as a string, a
//!   paginator given by its type name, `auth: {token: ...}` for bearer auth, a
//!   `write_disposition` dict).
//! - `{secrets.NAME}` placeholders are resolved from the environment (`API_KEY` for
//!   `{secrets.api_key}`) or `.dlt/secrets.toml`; values are [`Secret`]s that never print.
//!
//! resttap extensions: `client.retry` ([`RetryConfig`]), `client.timeout`, and
//! `stop_condition` on paginators (see `resttap-expr`).

mod columns;
mod contract;
pub mod duration;
mod error;
mod load;
mod merge;
pub mod model;
mod secrets;
pub mod steps;

pub use error::{ConfigError, suggest};
pub use load::{Config, Format, Overrides, load_file, load_str, py_str, to_jsonpath};
pub use model::*;
pub use secrets::{Rendered, Secret, SecretSources, Secrets, env_var_name, render, render_with};
