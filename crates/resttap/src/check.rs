//! `resttap check`: one request per resource (a child resource: for one record of its parent's
//! first page), and what a run would make of it: the records found, the data selector and
//! paginator in use (auto-detected ones named), and the tables and columns it would create.
//! Nothing is written anywhere.

use std::collections::HashMap;
use std::sync::Arc;

use resttap_config::{Config, Resource};
use resttap_extract::incremental::Incremental;
use resttap_extract::{Context, Counters, Extractor, included_from_parent, parent_values};
use resttap_http::Client;
use resttap_normalize::{Normalizer, RowIds};
use resttap_schema::Schema;
use serde_json::Value;

use crate::pipeline::normalizer_config;

/// What the request of one resource showed.
#[derive(Debug, serde::Serialize)]
pub struct ResourceCheck {
    pub name: String,
    /// The parent whose first record the request was made for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether a run loads it (`selected: false`: fetched only to feed its children).
    pub loaded: bool,
    /// The data selector in use: as configured, or as detected on the page.
    pub data_selector: String,
    /// The paginator in use: its type, or what was detected.
    pub paginator: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How the request went.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A page came back.
    Page {
        status: u16,
        url: String,
        /// The records on the page (after `processing_steps`, before the incremental filter).
        records: usize,
        /// The next page's URL, if the paginator would ask for one.
        next_page: Option<String>,
        /// The tables a first load of these records would create, the root table first (none
        /// for a resource that is not loaded).
        tables: Vec<TableCheck>,
        /// Why a run would stop on these records (a schema contract, a primary key of the
        /// wrong type), if it would.
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// `response_actions` ignore the response.
    Ignored,
    /// The request could not be made: the parent brought no record to make it for.
    NotRequested { reason: String },
    /// The request failed (HTTP status, connection, body that is not JSON...).
    Failed { error: String },
}

/// A table a run would create.
#[derive(Debug, serde::Serialize)]
pub struct TableCheck {
    pub name: String,
    /// `name type [NOT NULL]`, in the order a run creates them.
    pub columns: Vec<ColumnCheck>,
}

#[derive(Debug, serde::Serialize)]
pub struct ColumnCheck {
    pub name: String,
    /// dlt's type name (`bigint`, `text`, `timestamp`, ...).
    pub data_type: String,
    pub nullable: bool,
}

impl ResourceCheck {
    /// Whether the request failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

/// Makes each resource's first request, parents before their children, one at a time.
/// Fails only when the HTTP client cannot be built; a failed request is that resource's
/// [`Outcome::Failed`].
pub async fn check(config: &Config) -> Result<Vec<ResourceCheck>, resttap_http::HttpError> {
    let client = Client::from_config(&config.api.client, config.secrets.clone())?;
    let mut first_records: HashMap<String, Option<Value>> = HashMap::new();
    let mut out: Vec<ResourceCheck> = Vec::new();
    for res in parents_first(&config.api.resources) {
        let paginator = res.endpoint.paginator.as_ref().or(config.api.client.paginator.as_ref());
        let mut check = ResourceCheck {
            name: res.name.clone(),
            parent: res.parent.clone(),
            loaded: res.selected,
            data_selector: res.endpoint.data_selector.clone().unwrap_or_else(|| "(auto-detect)".into()),
            paginator: paginator.map_or("(auto-detect)", |p| p.type_name()).to_string(),
            outcome: Outcome::Ignored,
        };
        let (outcome, first) = match context(res, &first_records) {
            Ok((ctx, included)) => probe(&client, config, res, &ctx, &included, &mut check).await,
            Err(reason) => (Outcome::NotRequested { reason }, None),
        };
        check.outcome = outcome;
        first_records.insert(res.name.clone(), first);
        out.push(check);
    }
    // in the configuration's order
    let order: Vec<&str> = config.api.resources.iter().map(|r| r.name.as_str()).collect();
    out.sort_by_key(|c| order.iter().position(|n| *n == c.name));
    Ok(out)
}

/// The resources, each parent before its children (the configuration checked that parents
/// form no loop).
fn parents_first(all: &[Resource]) -> Vec<&Resource> {
    let mut out: Vec<&Resource> = Vec::with_capacity(all.len());
    while out.len() < all.len() {
        let before = out.len();
        for r in all {
            let done = |n: &str| out.iter().any(|o| o.name == n);
            if !done(&r.name) && r.parent.as_deref().is_none_or(done) {
                out.push(r);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// The request's context as a first run has it: the incremental start (its first window),
/// and the parent's first record, with the fields `include_from_parent` adds to each record.
fn context(
    res: &Resource,
    first_records: &HashMap<String, Option<Value>>,
) -> Result<(Context, Vec<(String, Value)>), String> {
    let inc = res.endpoint.incremental.as_ref().map(|c| Incremental::new(c, None, &res.primary_key));
    let mut ctx = Context::new(inc.as_ref());
    if let (Some(inc), Some(cfg)) = (&inc, &res.endpoint.incremental)
        && let Some(windows) = inc.windows(resttap_schema::timestamp::now_micros())?
        && let Some((start, end)) = windows.first()
    {
        ctx = ctx.for_window(cfg, start, end);
    }
    if let Some(p) = &res.parent {
        let Some(Some(record)) = first_records.get(p) else {
            return Err(format!("its parent `{p}` brought no record to make the request for"));
        };
        ctx = ctx.with_parent(parent_values(res, record).map_err(|e| e.to_string())?);
        return Ok((ctx, included_from_parent(res, record).map_err(|e| e.to_string())?));
    }
    Ok((ctx, Vec::new()))
}

/// The request, and the parent record its children are requested for.
async fn probe(
    client: &Client,
    config: &Config,
    res: &Resource,
    ctx: &Context,
    included: &[(String, Value)],
    check: &mut ResourceCheck,
) -> (Outcome, Option<Value>) {
    let failed = |e: &dyn std::error::Error| Outcome::Failed { error: crate::error_chain(e) };
    let extractor = match Extractor::start(client.clone(), &config.api.client, res, Arc::new(Counters::default()), ctx)
    {
        Ok(x) => x,
        Err(e) => return (failed(&e), None),
    };
    let page = match extractor.probe().await {
        Ok(Some(p)) => p,
        Ok(None) => return (Outcome::Ignored, None),
        Err(e) => return (failed(&e), None),
    };
    for d in &page.detected {
        if let Some(sel) = d.strip_prefix("data_selector ") {
            check.data_selector = format!("{} (auto-detected)", sel.trim_matches('`'));
        } else if let Some(p) = d.strip_prefix("paginator ") {
            check.paginator = format!("{p} (auto-detected)");
        }
    }
    let mut records = page.records;
    for r in &mut records {
        if let Value::Object(m) = r {
            m.extend(included.iter().cloned());
        }
    }
    let records: Vec<Value> = match &res.processing_steps {
        Some(steps) => match resttap_config::steps::compile(steps) {
            Ok(steps) => records.into_iter().filter_map(|r| resttap_extract::steps::apply(&steps, r)).collect(),
            Err(e) => {
                let error = format!("processing_steps{}: {}", e.key, e.message);
                return (Outcome::Failed { error }, None);
            }
        },
        None => records,
    };
    let (tables, refused) = if res.selected { tables(res, &records) } else { (Vec::new(), None) };
    let first = records.first().cloned();
    let outcome = Outcome::Page {
        status: page.status,
        url: page.url,
        records: records.len(),
        next_page: page.next_page,
        tables,
        refused,
    };
    (outcome, first)
}

/// The tables a first load of `records` would create, and why it would stop, if it would.
fn tables(res: &Resource, records: &[Value]) -> (Vec<TableCheck>, Option<String>) {
    let cfg = normalizer_config(res, Arc::from("check"), usize::MAX, RowIds::Random, None);
    let mut normalizer = Normalizer::new(cfg, &Schema::default());
    let mut refused = normalizer.refuses_root().map(|e| e.to_string());
    let mut sink = Vec::new();
    for r in records {
        if refused.is_some() {
            break;
        }
        if let Err(e) = normalizer.push(r, &mut sink) {
            refused = Some(e.to_string());
        }
        sink.clear();
    }
    let tables = normalizer
        .schema()
        .tables
        .iter()
        .map(|t| TableCheck {
            name: t.name.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| ColumnCheck {
                    name: c.name.clone(),
                    data_type: c.data_type.dlt_name().into(),
                    nullable: c.nullable,
                })
                .collect(),
        })
        .collect();
    (tables, refused)
}
