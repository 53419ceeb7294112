//! The configuration model: the same structure and key names as dlt's `rest_api_source` dict.
//!
//! Strings that may hold `{secrets.NAME}` placeholders are kept as written ([`Template`]); they
//! are rendered with [`crate::Secrets`] only where a request is built, so no secret value is
//! stored in this model.

use std::collections::BTreeMap;

pub use resttap_schema::contract::{ContractMode, SchemaContract};
pub use resttap_schema::merge::{MergeSpec, MergeStrategy, Scd2, SortOrder};
pub use resttap_schema::{DataType, Precision, TableFormat, WriteDisposition};
use serde::Deserialize;
use serde_json::Value;

/// A string as written in the config; may contain `{secrets.NAME}` placeholders.
pub type Template = String;

/// The whole configuration: `client`, `resource_defaults`, `resources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    pub client: ClientConfig,
    /// Merged into every resource already; kept for display.
    #[serde(default)]
    pub resource_defaults: Option<Value>,
    pub resources: Vec<Resource>,
}

/// `client`: where and how to send requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub base_url: Template,
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub paginator: Option<PaginatorConfig>,
    /// dlt's `requests.Session`: a Python object, not applicable in a file (rejected).
    #[serde(default)]
    pub session: Option<Value>,
    /// resttap extension: the retry policy (defaults: the seed's policy).
    #[serde(default)]
    pub retry: RetryConfig,
    /// resttap extension: seconds before a request times out (default 60, as dlt).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// resttap extension: seconds a response may go without sending anything before the
    /// request fails as timed out (default 30), within `timeout` for the whole request.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: f64,
    /// resttap extension: the largest response body accepted, in bytes (default 256 MiB). A
    /// larger one is refused as it arrives (or at once, by its `Content-Length`), not buffered.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// resttap extension: what happens when a next link, a `Link` header or a redirect leads to
    /// another origin (scheme, host, port) than the request's credentials belong to.
    #[serde(default)]
    pub cross_origin: CrossOrigin,
    /// resttap extension: a request budget for an API that does not announce its own in
    /// response headers (budgets it announces are followed either way).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// resttap extension: pages of one resource requested at once when the paginator knows
    /// them ahead (offsets and page numbers with a total); default 4, 1 for one at a time.
    #[serde(default = "default_page_concurrency")]
    pub page_concurrency: usize,
}

/// `client.rate_limit` (a resttap extension): at most `requests` per `per` to each host, with
/// up to `burst` of them at once after a pause (default: `requests`, the whole budget).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests: u32,
    /// A duration (`1s`, `500ms`, `1m`, seconds as a number, or ISO 8601); default one second.
    #[serde(default = "one_second", deserialize_with = "crate::duration::deserialize_duration")]
    pub per: std::time::Duration,
    #[serde(default)]
    pub burst: Option<u32>,
}

fn one_second() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

/// The default of `client.page_concurrency`.
pub const DEFAULT_PAGE_CONCURRENCY: usize = 4;

fn default_page_concurrency() -> usize {
    DEFAULT_PAGE_CONCURRENCY
}

/// `client.cross_origin` (a resttap extension). Credentials (auth headers and query
/// parameters, OAuth2 tokens, headers rendered from secrets) are only ever sent to the origin of
/// the resource's first request (`client.base_url` joined with `endpoint.path`) and an OAuth2
/// token endpoint's own origin; this says what becomes of a request to any other origin.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CrossOrigin {
    /// Sent without the credentials, with a warning naming the other origin (the default).
    #[default]
    Follow,
    /// Not sent: the resource fails, naming the other origin.
    Refuse,
}

fn default_timeout() -> f64 {
    60.0
}

fn default_read_timeout() -> f64 {
    30.0
}

/// The default of `client.max_response_bytes`: 256 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 << 20;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// `client.retry` (a resttap extension): which failures are retried and how long to wait.
///
/// The wait before retry `n` (1-based) is `backoff_factor * 2^(n-1)` seconds, capped at
/// `max_delay`; a `Retry-After` header, when present, is used instead, capped the same way.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// Seconds; the base of the exponential backoff (default 2).
    pub backoff_factor: f64,
    /// Upper bound of one wait, in seconds (default 60).
    pub max_delay: f64,
    /// HTTP statuses that are retried (default 429, 500, 502, 503, 504). Connection errors and
    /// timeouts are always retried.
    pub statuses: Vec<u16>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_retries: 3, backoff_factor: 2.0, max_delay: 60.0, statuses: vec![429, 500, 502, 503, 504] }
    }
}

/// `auth`: how requests authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token: Template },
    /// An API key in a header or query parameter.
    ApiKey {
        #[serde(default = "default_api_key_name")]
        name: String,
        api_key: Template,
        #[serde(default)]
        location: ApiKeyLocation,
    },
    /// HTTP basic auth.
    HttpBasic { username: Template, password: Template },
    /// OAuth2 client credentials: a token from `access_token_url`, cached and refreshed.
    Oauth2ClientCredentials {
        access_token_url: Template,
        client_id: Template,
        client_secret: Template,
        #[serde(default)]
        access_token_request_data: Option<Value>,
        #[serde(default)]
        default_token_expiration: Option<u64>,
    },
}

fn default_api_key_name() -> String {
    "Authorization".into()
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
    Cookie,
}

/// `paginator`: how to get from one page to the next.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaginatorConfig {
    /// A cursor from the response body sent back as a query parameter.
    Cursor {
        #[serde(default = "default_cursor_path")]
        cursor_path: String,
        #[serde(default)]
        cursor_param: Option<String>,
        #[serde(default)]
        cursor_body_path: Option<String>,
        #[serde(default)]
        stop_after_empty_page: bool,
        #[serde(default)]
        has_more_path: Option<String>,
        /// resttap extension accepted on every paginator: stop when this is true for a response body.
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// The next page's URL from the response body.
    JsonLink {
        #[serde(default = "default_next_url_path")]
        next_url_path: String,
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// The next page's URL from the `Link` header.
    HeaderLink {
        #[serde(default = "default_links_next_key")]
        links_next_key: String,
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// A cursor from a response header.
    HeaderCursor {
        #[serde(default = "default_next")]
        cursor_key: String,
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// Offset and limit parameters.
    Offset {
        limit: u64,
        #[serde(default)]
        offset: u64,
        #[serde(default = "default_offset_param")]
        offset_param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        #[serde(default)]
        offset_body_path: Option<String>,
        #[serde(default)]
        limit_body_path: Option<String>,
        /// Where the total number of items is; `null` for none (default `total`).
        #[serde(default = "default_total_path")]
        total_path: Option<String>,
        #[serde(default)]
        maximum_offset: Option<u64>,
        #[serde(default = "yes")]
        stop_after_empty_page: bool,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// Page numbers.
    PageNumber {
        #[serde(default)]
        base_page: u64,
        /// The first page to request (default `base_page`).
        #[serde(default)]
        page: Option<u64>,
        #[serde(default = "default_page_param")]
        page_param: String,
        #[serde(default)]
        page_body_path: Option<String>,
        /// Where the total number of pages is; `null` for none (default `total`).
        #[serde(default = "default_total_path")]
        total_path: Option<String>,
        #[serde(default)]
        maximum_page: Option<u64>,
        #[serde(default = "yes")]
        stop_after_empty_page: bool,
        #[serde(default)]
        has_more_path: Option<String>,
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// One request, no pagination.
    SinglePage {
        #[serde(default)]
        stop_condition: Option<String>,
    },
    /// Detect from the first response, as dlt's detectors do.
    Auto {
        #[serde(default)]
        stop_condition: Option<String>,
    },
}

fn default_cursor_path() -> String {
    "cursors.next".into()
}
fn default_next_url_path() -> String {
    "next".into()
}
fn default_links_next_key() -> String {
    "next".into()
}
fn default_next() -> String {
    "next".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_total_path() -> Option<String> {
    Some("total".into())
}

impl PaginatorConfig {
    /// The type name as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            PaginatorConfig::Cursor { .. } => "cursor",
            PaginatorConfig::JsonLink { .. } => "json_link",
            PaginatorConfig::HeaderLink { .. } => "header_link",
            PaginatorConfig::HeaderCursor { .. } => "header_cursor",
            PaginatorConfig::Offset { .. } => "offset",
            PaginatorConfig::PageNumber { .. } => "page_number",
            PaginatorConfig::SinglePage { .. } => "single_page",
            PaginatorConfig::Auto { .. } => "auto",
        }
    }

    /// The `stop_condition`, whatever the type.
    pub fn stop_condition(&self) -> Option<&str> {
        match self {
            PaginatorConfig::Cursor { stop_condition, .. }
            | PaginatorConfig::JsonLink { stop_condition, .. }
            | PaginatorConfig::HeaderLink { stop_condition, .. }
            | PaginatorConfig::HeaderCursor { stop_condition, .. }
            | PaginatorConfig::Offset { stop_condition, .. }
            | PaginatorConfig::PageNumber { stop_condition, .. }
            | PaginatorConfig::SinglePage { stop_condition }
            | PaginatorConfig::Auto { stop_condition } => stop_condition.as_deref(),
        }
    }
}

/// HTTP methods dlt's REST API source sends.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

/// `endpoint`: the request of a resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Relative to `client.base_url`, or an absolute URL. Defaults to the resource name.
    #[serde(default)]
    pub path: Option<Template>,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub json: Option<Value>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    #[serde(default)]
    pub paginator: Option<PaginatorConfig>,
    /// JSONPath (RFC 9535; dlt's shorthand without `$` accepted) to the list of records.
    #[serde(default)]
    pub data_selector: Option<String>,
    #[serde(default)]
    pub response_actions: Option<Vec<ResponseAction>>,
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

impl Endpoint {
    /// Every `{resources.<parent>.<field>}` placeholder in the path, params, json, data and
    /// headers, as `(parent, field)`.
    pub fn parent_refs(&self) -> std::collections::BTreeSet<(String, String)> {
        fn walk(v: &Value, out: &mut std::collections::BTreeSet<(String, String)>) {
            match v {
                Value::String(s) => text(s, out),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(m) => m.iter().for_each(|(k, x)| {
                    text(k, out);
                    walk(x, out)
                }),
                _ => {}
            }
        }
        fn text(s: &str, out: &mut std::collections::BTreeSet<(String, String)>) {
            for p in crate::secrets::parse_template(s).unwrap_or_default() {
                if let crate::secrets::Piece::Placeholder(ns, name) = p
                    && let (true, Some((r, f))) = (ns == "resources", name.split_once('.'))
                {
                    out.insert((r.to_string(), f.to_string()));
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        self.path.iter().for_each(|p| text(p, &mut out));
        self.params.values().for_each(|v| walk(v, &mut out));
        self.json.iter().chain(self.data.iter()).for_each(|v| walk(v, &mut out));
        self.headers.values().for_each(|h| text(h, &mut out));
        out
    }
}

/// `endpoint.incremental`: load only what is new since the last run (dlt's semantics).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// JSONPath (dlt's shorthand accepted) to the cursor field in each record.
    pub cursor_path: String,
    /// Where the first run starts.
    #[serde(default)]
    pub initial_value: Option<Value>,
    /// Where every run stops (a backfill window); with it, the stored position is not advanced.
    #[serde(default)]
    pub end_value: Option<Value>,
    /// Query parameter that receives the start value.
    #[serde(default)]
    pub start_param: Option<String>,
    /// Query parameter that receives the end value.
    #[serde(default)]
    pub end_param: Option<String>,
    /// Start this much before the stored value (seconds for date-times, units for numbers).
    #[serde(default)]
    pub lag: Option<f64>,
    #[serde(default)]
    pub row_order: Option<RowOrder>,
    #[serde(default)]
    pub on_cursor_value_missing: OnCursorValueMissing,
    #[serde(default = "closed")]
    pub range_start: RangeBound,
    #[serde(default = "open")]
    pub range_end: RangeBound,
    #[serde(default)]
    pub last_value_func: LastValueFunc,
    /// Accepted for compatibility; resttap hashes the resource's primary key, or the record.
    #[serde(default)]
    pub primary_key: Option<Value>,
    /// Accepted for compatibility; no effect.
    #[serde(default)]
    pub allow_external_schedulers: Option<bool>,
    /// resttap extension: the range from the start (stored or `initial_value`) to `end_value`
    /// (or now) split into windows of this size, each requested with its own start and end and
    /// paginated on its own, several at once (`client.page_concurrency`). A duration for
    /// date-time cursors (`PT1H`, `P1D`, `6h`, seconds as a number); units for numeric ones.
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt_duration")]
    pub window: Option<std::time::Duration>,
}

fn closed() -> RangeBound {
    RangeBound::Closed
}
fn open() -> RangeBound {
    RangeBound::Open
}

/// Whether a range bound includes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeBound {
    Open,
    Closed,
}

/// What to do with a record that has no cursor value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCursorValueMissing {
    #[default]
    Raise,
    Include,
    Exclude,
}

/// Which direction "newer" is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastValueFunc {
    #[default]
    Max,
    Min,
}

/// The order the API returns records in, if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOrder {
    Asc,
    Desc,
}

/// One of `endpoint.response_actions`: a response that matches is ignored (no records, and
/// pagination of that request chain ends), as dlt's `action: ignore`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseAction {
    /// The HTTP status to match (a number, or a string of digits).
    #[serde(default)]
    pub status_code: Option<Value>,
    /// A substring the response body must contain.
    #[serde(default)]
    pub content: Option<String>,
    /// Only `ignore` (dlt's Python hooks have no meaning in a file).
    pub action: String,
}

impl ResponseAction {
    /// The status as a number, if one is given.
    pub fn status(&self) -> Option<u16> {
        match &self.status_code {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Whether a response with `status` and `body` matches.
    pub fn matches(&self, status: u16, body: &[u8]) -> bool {
        let status_ok = self.status_code.is_none() || self.status() == Some(status);
        let content_ok = self.content.as_ref().is_none_or(|c| String::from_utf8_lossy(body).contains(c.as_str()));
        status_ok && content_ok
    }
}

/// A column hint (`columns:` of a resource).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnHint {
    /// The column's name again, as dlt's column schemas carry it (dlt needs it in
    /// `nested_hints`); when given it must be the key's.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    /// A decimal's digits in all (dlt's default: 38).
    #[serde(default)]
    pub precision: Option<u16>,
    /// A decimal's digits after the point (dlt's default: 9).
    #[serde(default)]
    pub scale: Option<u16>,
    /// `data_type` with `precision` and `scale`, parsed by the loader.
    #[serde(skip)]
    pub typed: Option<DataType>,
    #[serde(default)]
    pub nullable: Option<bool>,
    #[serde(default)]
    pub primary_key: Option<bool>,
    /// Kept for documentation; no effect on the destination.
    #[serde(default)]
    pub description: Option<String>,
    /// The column is (part of) the merge key.
    #[serde(default)]
    pub merge_key: Option<bool>,
    /// A record with this column `true` (bool) or not null (other types) is deleted by a merge.
    #[serde(default)]
    pub hard_delete: Option<bool>,
    /// Which of a load's records with one primary key a merge keeps: `desc` the highest value
    /// of this column, `asc` the lowest.
    #[serde(default)]
    pub dedup_sort: Option<SortOrder>,
}

/// One resource: a table fed by one endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: String,
    pub endpoint: Endpoint,
    #[serde(default, deserialize_with = "one_or_many")]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub write_disposition: WriteDisposition,
    /// The rest of `write_disposition: {disposition: merge, strategy: ..., ...}`: the strategy
    /// and its options as written; the loader parses them into [`Resource::merge`].
    #[serde(default)]
    pub merge_options: Option<serde_json::Map<String, Value>>,
    /// The merge strategy and the hints that steer it (`merge_key`, `hard_delete`,
    /// `dedup_sort`), with normalized column names; set by the loader.
    #[serde(skip)]
    pub merge: MergeSpec,
    #[serde(default)]
    pub table_name: Option<String>,
    #[serde(default)]
    pub max_table_nesting: Option<u32>,
    #[serde(default = "yes")]
    pub selected: bool,
    /// Column hints, in the order written (hinted columns come first in the table, as in dlt).
    #[serde(default, deserialize_with = "ordered_hints")]
    pub columns: Option<Vec<(String, ColumnHint)>>,
    #[serde(default)]
    pub include_from_parent: Option<Vec<String>>,
    #[serde(default)]
    pub processing_steps: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub merge_key: Vec<String>,
    /// Accepted for compatibility: resttap always fetches independent resources concurrently.
    #[serde(default)]
    pub parallelized: Option<bool>,
    /// Accepted for compatibility, no effect: resttap stages Arrow batches, not files.
    #[serde(default)]
    pub file_format: Option<Value>,
    /// Accepted for compatibility, no effect: table references are metadata in dlt's schema.
    #[serde(default)]
    pub references: Option<Value>,
    /// `schema_contract` as written; the loader parses it into [`Resource::contract`].
    #[serde(default)]
    pub schema_contract: Option<Value>,
    /// The schema contract, expanded; set by the loader. `None`: the resource declares none,
    /// and the one the dataset stores for its table applies (dlt's contracts outlive the
    /// configuration that set them), else everything evolves.
    #[serde(skip)]
    pub contract: Option<SchemaContract>,
    /// dlt's `table_format`: `delta` makes a lake's tables Delta tables (`native`: plain
    /// Parquet); other destinations have one format and ignore it, as dlt's SQL destinations do.
    #[serde(default)]
    pub table_format: Option<TableFormat>,
    /// Hints for the nested tables of the records' list fields, by field (`lines`: table
    /// `<table>__lines`), in the order written.
    #[serde(default, deserialize_with = "ordered_nested")]
    pub nested_hints: Option<Vec<(String, NestedHints)>>,
    /// Not supported yet (rejected).
    #[serde(default)]
    pub parent_table_name: Option<Value>,
    /// The resource this one takes `{resources.<parent>.<field>}` values from; set by the loader.
    #[serde(skip)]
    pub parent: Option<String>,
}

/// dlt's hints for one nested table (`nested_hints`): resttap takes `columns`; the others dlt
/// has are refused by the loader as not supported yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NestedHints {
    #[serde(default, deserialize_with = "ordered_hints")]
    pub columns: Option<Vec<(String, ColumnHint)>>,
    #[serde(default)]
    pub primary_key: Option<Value>,
    #[serde(default)]
    pub merge_key: Option<Value>,
    #[serde(default)]
    pub write_disposition: Option<Value>,
    #[serde(default)]
    pub schema_contract: Option<Value>,
    #[serde(default)]
    pub parent_table_name: Option<Value>,
    #[serde(default)]
    pub table_format: Option<Value>,
    #[serde(default)]
    pub file_format: Option<Value>,
    #[serde(default)]
    pub references: Option<Value>,
}

fn yes() -> bool {
    true
}

fn ordered_hints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, ColumnHint)>>, D::Error> {
    ordered(d, "a mapping of column names to hints")
}

fn ordered_nested<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, NestedHints)>>, D::Error> {
    ordered(d, "a mapping of nested table paths to their hints")
}

/// A mapping's entries as a list, in the order written.
fn ordered<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    expecting: &'static str,
) -> Result<Option<Vec<(String, T)>>, D::Error> {
    struct Entries<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Entries<T> {
        type Value = Option<Vec<(String, T)>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, T>()? {
                out.push((k, v));
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Entries(expecting, std::marker::PhantomData))
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a column name or a list of column names")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Resource {
    /// The destination table name before naming normalization.
    pub fn table(&self) -> &str {
        self.table_name.as_deref().unwrap_or(&self.name)
    }
}
