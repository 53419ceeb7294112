//! One run of a pipeline: every selected resource extracted concurrently, normalized as its
//! pages arrive, staged in the destination through a bounded queue ([`crate::loader`]), and
//! committed at the end in one transaction — or not at all. With `--checkpoint-every`, also
//! part-way, at checkpoints a failed run resumes from.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resttap_config::{Config, PaginatorConfig, Resource};
use resttap_extract::incremental::{Incremental, MissingCursor};
use resttap_extract::{Context, Counters, ExtractError, Extractor, Json, Node, included_from_parent, parent_values};
use resttap_http::{Client, HttpError};
use resttap_load::{CommitReport, LoadError, PipelineState, ResourceLoad};
use resttap_normalize::{NormalizeError, Normalizer, NormalizerConfig, TableBatch};
use resttap_schema::merge::MergeStrategy;
use resttap_schema::naming::{normalize_identifier, normalize_path, normalize_table_name};
use resttap_schema::{DataType, Schema, WriteDisposition};
use resttap_state::ResourceState;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::loader::{CheckpointEvery, Clock, Known, Loader, Mark, Msg};

pub use crate::destinations::DestinationSpec;
use crate::destinations::Purpose;

/// What a run needs besides the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub pipeline: String,
    pub dataset: String,
    pub destination: DestinationSpec,
    /// Resources fetched at the same time.
    pub concurrency: usize,
    /// Rows a table collects before it is staged.
    pub batch_rows: usize,
    /// Request chains of one child resource in flight at a time (one per parent record).
    pub fanout: usize,
    /// The config's selection was narrowed (`run --resources`): the load claims only its
    /// resources' root tables, so that a destination that can lets runs of other resources
    /// load side by side.
    pub only: bool,
    /// `--checkpoint-every`: commit part-way, so that a failed run resumes.
    pub checkpoint: Option<CheckpointEvery>,
}

/// The default dataset name of a pipeline (dlt's `<pipeline>_dataset`, normalized).
pub fn default_dataset(pipeline: &str) -> String {
    normalize_identifier(&format!("{pipeline}_dataset"))
}

/// Why a run failed. Nothing was committed in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("resource `{resource}`: {source}")]
    Normalize {
        resource: String,
        #[source]
        source: NormalizeError,
    },
    #[error("resource `{resource}`: {source}")]
    Incremental {
        resource: String,
        #[source]
        source: MissingCursor,
    },
    /// `incremental.window` cannot split the range.
    #[error("resource `{resource}`: {message}")]
    Window { resource: String, message: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[from] HttpError),
    /// The destination cannot do what the configuration asks of a resource.
    #[error("resource `{resource}`: {message}")]
    Unsupported { resource: String, message: String },
    /// `--checkpoint-every` with resources whose checkpoints could not be resumed safely.
    #[error(
        "cannot commit at checkpoints (--checkpoint-every):\n{}\nload these resources in a run of their own without --checkpoint-every (run --resources ...)",
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Checkpoint { problems: Vec<String> },
    /// A run that failed after committing checkpoints: they stay, and the next run resumes
    /// after the last.
    #[error("{source}")]
    AfterCheckpoints {
        committed: usize,
        last_load_id: String,
        #[source]
        source: Box<RunError>,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Per-resource live counters, for progress display.
#[derive(Debug, Clone)]
pub struct ResourceProgress {
    pub name: String,
    pub counters: Arc<Counters>,
    /// When the run set out to fetch it (it may wait for its turn, `--concurrency`).
    pub since: Instant,
    /// Set when the resource has fetched everything: how long it took since `since`.
    finished: Arc<std::sync::OnceLock<Duration>>,
}

impl ResourceProgress {
    /// How long the resource took to fetch everything, once it has.
    pub fn done(&self) -> Option<Duration> {
        self.finished.get().copied()
    }
}

/// What one resource did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSummary {
    pub name: String,
    /// Its root table, when it is loaded (not for a parent that only feeds its children).
    pub table: Option<String>,
    pub pages: u64,
    pub records: u64,
    pub retries: u64,
}

/// The outcome of a successful run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub pipeline: String,
    pub dataset: String,
    pub destination: String,
    pub load_id: String,
    pub report: CommitReport,
    pub resources: Vec<ResourceSummary>,
    pub elapsed: Duration,
    /// Auto-detections made (paginator or data selector), one line each.
    pub detections: Vec<String>,
    /// Responses 429 received (each retried or failed).
    pub throttled: u64,
    /// Time requests spent waiting for their turn under rate limits, all together.
    pub rate_limit_wait: Duration,
    /// Loads committed at checkpoints before the last (`report` counts their rows too).
    pub checkpoints: usize,
}

/// Refuses column types the destination does not write yet, before any request.
fn check_types(r: &Resource, destination: &crate::destinations::DestinationSpec) -> Result<(), RunError> {
    if !matches!(destination, crate::destinations::DestinationSpec::Lake(_)) {
        return Ok(());
    }
    let nested = r.nested_hints.iter().flatten().flat_map(|(_, h)| h.columns.iter().flatten());
    let lake_lacks =
        |t: &DataType| matches!(t, DataType::Decimal(_) | DataType::Wei | DataType::Binary | DataType::Time);
    if let Some((col, t)) =
        r.columns.iter().flatten().chain(nested).find_map(|(c, h)| h.typed.filter(lake_lacks).map(|t| (c, t)))
    {
        return Err(RunError::Unsupported {
            resource: r.name.clone(),
            message: format!(
                "column `{col}` is hinted `{t}`, which the filesystem destination does not write yet; decimal, wei, binary and time columns load into DuckDB and PostgreSQL"
            ),
        });
    }
    Ok(())
}

/// Refuses a merge the destination cannot run, and warns of hints the strategy ignores (as dlt
/// does), before any request.
fn check_merge(r: &Resource, destination: &crate::destinations::DestinationSpec) -> Result<(), RunError> {
    let m = &r.merge;
    let ignored = |hint: &str| {
        tracing::warn!(
            "resource `{}`: `{hint}` has no effect under merge strategy {}, as in dlt",
            r.name,
            m.strategy.name()
        )
    };
    match m.strategy {
        MergeStrategy::Scd2(_) => {
            if m.hard_delete.is_some() {
                ignored("hard_delete");
            }
            if m.dedup_sort.is_some() {
                ignored("dedup_sort");
            }
        }
        MergeStrategy::Upsert | MergeStrategy::InsertOnly if !m.merge_key.is_empty() => ignored("merge_key"),
        _ => {}
    }
    if matches!(destination, crate::destinations::DestinationSpec::Lake(_)) {
        let by_key = matches!(m.strategy, MergeStrategy::DeleteInsert | MergeStrategy::Upsert)
            && m.merge_key.is_empty()
            && m.hard_delete.is_none()
            && m.dedup_sort.is_none();
        if !by_key {
            return Err(RunError::Unsupported {
                resource: r.name.clone(),
                message: format!(
                    "the filesystem destination merges Delta tables by primary key (strategies delete-insert and upsert, without merge_key, hard_delete or dedup_sort); merge strategy {} and these hints run on DuckDB and PostgreSQL",
                    m.strategy.name()
                ),
            });
        }
    }
    Ok(())
}

/// Refuses `--checkpoint-every` for the resources whose checkpoints could not be resumed
/// without losing or doubling records, all of them at once, before any request. A checkpoint
/// needs a place to resume from — a cursor that rises through the records (`row_order: asc`)
/// or windows read in order — and a load that can be split: `append`, or `merge` by primary
/// key. Not (yet) child resources: their parents' records would have to wait for every
/// child's chain at each checkpoint.
fn check_checkpoints(active: &[Resource]) -> Result<(), RunError> {
    use resttap_config::{LastValueFunc, RowOrder};
    let mut problems = Vec::new();
    for r in active {
        let mut say = |why: String| problems.push(format!("resource `{}`: {why}", r.name));
        if r.parent.is_some() || active.iter().any(|c| c.parent.as_deref() == Some(&r.name)) {
            say("child resources and their parents do not take part in checkpoints yet".into());
            continue;
        }
        let Some(inc) = &r.endpoint.incremental else {
            say("has no `endpoint.incremental`: a run could not tell where to resume".into());
            continue;
        };
        if inc.last_value_func != LastValueFunc::Max {
            say("`incremental.last_value_func` must be max: a checkpoint resumes after the greatest cursor value committed".into());
        } else if inc.window.is_none() && inc.row_order != Some(RowOrder::Asc) {
            say(format!(
                "resttap can resume only where every record before the checkpoint has a smaller cursor: set `incremental.row_order: asc` if the API returns records by ascending `{}`, or split the range with `incremental.window`",
                inc.cursor_path
            ));
        }
        match r.write_disposition {
            WriteDisposition::Replace => {
                say("`write_disposition: replace` cannot commit part of a load: the next part would replace it".into())
            }
            WriteDisposition::Merge => match &r.merge.strategy {
                MergeStrategy::Scd2(_) => say(
                    "merge strategy scd2 cannot commit part of a load: the next part would retire the records of the one before"
                        .into(),
                ),
                _ if !r.merge.merge_key.is_empty() => say(
                    "`merge_key` cannot commit part of a load: the next part would delete the rows of the one before that share its keys"
                        .into(),
                ),
                _ => {}
            },
            _ => {}
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(RunError::Checkpoint { problems }) }
}

/// `e`, saying which checkpoints the failed run committed (when it committed any).
fn after_checkpoints(checkpoints: &[CommitReport], e: RunError) -> RunError {
    match checkpoints.last() {
        Some(last) => RunError::AfterCheckpoints {
            committed: checkpoints.len(),
            last_load_id: last.load_id.clone(),
            source: Box::new(e),
        },
        None => e,
    }
}

/// dlt's load id: Unix time in seconds with a fraction.
pub fn new_load_id() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}", t.as_secs_f64())
}

/// What a resource leaves besides what it told the loader.
struct ResourceOutcome {
    name: String,
    detections: Vec<String>,
}

pub use resttap_load::crash_point;

/// Where a resource's records come from.
enum Source {
    /// Its own endpoint.
    Root,
    /// One request chain per record of its parent, received here.
    Child { parents: mpsc::Receiver<Value>, fanout: usize },
}

/// What happens to each record of a resource: the incremental filter, the processing steps,
/// its children, then normalization (when the resource is selected).
struct Sink {
    resource: String,
    incremental: Option<Incremental>,
    /// The resource's stored state, which its incremental position goes over.
    prior: ResourceState,
    steps: Vec<resttap_config::steps::Step>,
    children: Vec<mpsc::Sender<Value>>,
    normalizer: Option<Normalizer>,
    out: Vec<TableBatch>,
    tx: mpsc::Sender<Msg>,
    clock: Arc<Clock>,
    /// Records the clock has been told of.
    counted: u64,
}

/// The loader stopped (it failed, and says why).
fn loader_gone<T>(_: T) -> RunError {
    RunError::Internal("the destination stopped accepting rows".into())
}

impl Sink {
    /// Whether the incremental filter (if any) keeps `rec`.
    fn admits<N: Node>(&mut self, rec: &N) -> Result<bool, RunError> {
        match &mut self.incremental {
            Some(inc) => {
                inc.keep(rec).map_err(|source| RunError::Incremental { resource: self.resource.clone(), source })
            }
            None => Ok(true),
        }
    }

    fn normalize<N: Node>(&mut self, rec: &N) -> Result<(), RunError> {
        if let Some(n) = &mut self.normalizer {
            n.push(rec, &mut self.out)
                .map_err(|source| RunError::Normalize { resource: self.resource.clone(), source })?;
        }
        Ok(())
    }

    /// A record read from the page text: for a resource without processing steps or children
    /// (see [`borrowed_ok`]), the incremental filter and the normalizer are all there is.
    fn borrowed(&mut self, rec: &Json<'_>) -> Result<(), RunError> {
        if self.admits(rec)? { self.normalize(rec) } else { Ok(()) }
    }

    async fn record(&mut self, rec: Value) -> Result<(), RunError> {
        if !self.admits(&rec)? {
            return Ok(());
        }
        let rec = if self.steps.is_empty() {
            rec
        } else {
            match resttap_extract::steps::apply(&self.steps, rec) {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        for child in &self.children {
            // a child that stopped has failed; its task reports why
            let _ = child.send(rec.clone()).await;
        }
        self.normalize(&rec)
    }

    async fn flush(&mut self) -> Result<(), RunError> {
        for b in self.out.drain(..) {
            self.tx.send(Msg::Rows(b)).await.map_err(loader_gone)?;
        }
        Ok(())
    }

    /// A place the resource can resume from (a page or a window read in full): when a
    /// checkpoint is due, everything so far goes to the loader, and the resource waits for the
    /// commit; its next rows belong to the next load.
    async fn boundary(&mut self) -> Result<(), RunError> {
        if !self.clock.enabled() {
            return Ok(());
        }
        let n = self.normalizer.as_ref().map_or(0, Normalizer::records);
        self.clock.count(n - self.counted);
        self.counted = n;
        if !self.clock.due() {
            return Ok(());
        }
        let (reply, committed) = oneshot::channel();
        self.mark(Some(reply)).await?;
        let next = committed.await.map_err(loader_gone)?;
        if let Some(n) = &mut self.normalizer {
            n.set_load_id(next);
        }
        Ok(())
    }

    /// Hands over every row still buffered, then the resource's schema and state with them
    /// (`reply: None`: the resource has finished).
    async fn mark(&mut self, reply: Option<oneshot::Sender<Arc<str>>>) -> Result<(), RunError> {
        let rest = self.normalizer.as_mut().map(Normalizer::finish).unwrap_or_default();
        self.out.extend(rest);
        self.flush().await?;
        // unchanged: the stored state stays as it is (and a load that moved nothing writes none)
        let state = self.incremental.as_ref().map(|inc| {
            let mut st = self.prior.clone();
            inc.save(&mut st, reply.is_none());
            st
        });
        let state = state.filter(|st| *st != self.prior);
        let mark = Mark {
            resource: self.resource.clone(),
            schema: self.normalizer.as_ref().map(|n| n.schema().clone()).unwrap_or_default(),
            keys_unique: self.normalizer.as_ref().is_some_and(Normalizer::keys_rising),
            state,
            reply,
        };
        self.tx.send(Msg::Mark(mark)).await.map_err(loader_gone)
    }
}

/// What one parent record's request chain brought: its records, and what auto-detection chose.
struct Chain {
    records: Vec<Value>,
    detected: Vec<String>,
}

/// Request chains started and not yet consumed; aborted if the resource stops early.
struct Inflight(VecDeque<tokio::task::JoinHandle<Result<Chain, RunError>>>);

impl Drop for Inflight {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// All pages of one parent record's request chain, with `include_from_parent` fields added
/// (`_<parent>_<field>`, as dlt names them).
async fn fetch_chain(
    client: Client,
    config: Arc<Config>,
    res: Arc<Resource>,
    counters: Arc<Counters>,
    ctx: Context,
    parent: Value,
) -> Result<Chain, RunError> {
    let ctx = ctx.with_parent(parent_values(&res, &parent)?);
    let included = included_from_parent(&res, &parent)?;
    fetch_all(client, config, res, counters, ctx, included).await
}

/// All pages of one request chain (a parent record's, or a window's), with `included` fields
/// added to each record.
async fn fetch_all(
    client: Client,
    config: Arc<Config>,
    res: Arc<Resource>,
    counters: Arc<Counters>,
    ctx: Context,
    included: Vec<(String, Value)>,
) -> Result<Chain, RunError> {
    let mut extractor = Extractor::start(client, &config.api.client, &res, counters, &ctx)?;
    let mut records = Vec::new();
    while let Some(page) = extractor.next_page().await? {
        records.extend(page.records.into_iter().map(|mut r| {
            if let Value::Object(m) = &mut r {
                for (k, v) in &included {
                    m.insert(k.clone(), v.clone());
                }
            }
            r
        }));
    }
    Ok(Chain { records, detected: std::mem::take(&mut extractor.detected) })
}

/// The records of a finished request chain; what its auto-detection chose goes into
/// `detections`, once per line.
async fn finished(
    chain: tokio::task::JoinHandle<Result<Chain, RunError>>,
    resource: &str,
    detections: &mut Vec<String>,
) -> Result<Vec<Value>, RunError> {
    let chain = chain.await.map_err(|e| RunError::Internal(e.to_string()))??;
    for d in chain.detected {
        let line = format!("resource `{resource}`: auto-detected {d}");
        if !detections.contains(&line) {
            detections.push(line);
        }
    }
    Ok(chain.records)
}

#[allow(clippy::too_many_arguments)]
async fn run_resource(
    client: Client,
    config: Arc<Config>,
    res: Resource,
    counters: Arc<Counters>,
    existing: Arc<Schema>,
    clock: Arc<Clock>,
    batch_rows: usize,
    tx: mpsc::Sender<Msg>,
    prior: ResourceState,
    source: Source,
    children: Vec<mpsc::Sender<Value>>,
) -> Result<ResourceOutcome, RunError> {
    let (table, primary_key) = table_and_key(&res);
    let wd = res.write_disposition;
    if wd == WriteDisposition::Merge && primary_key.is_empty() && res.selected {
        tracing::warn!(resource = %res.name, "write_disposition merge without primary_key: rows are appended, as dlt does");
    }
    let load = res.selected.then(|| ResourceLoad {
        resource: res.name.clone(),
        root_table: table.clone(),
        write_disposition: wd,
        primary_key: primary_key.clone(),
        keys_unique: false,
        table_format: res.table_format.unwrap_or_default(),
        merge: res.merge.clone(),
        contract: res.contract.unwrap_or_default(),
    });
    // the loader counts the resource in from here, and says which load its rows go to
    let (reply, load_id) = oneshot::channel();
    tx.send(Msg::Start { resource: res.name.clone(), load, reply }).await.map_err(loader_gone)?;
    let load_id = load_id.await.map_err(loader_gone)?;
    let (row_ids, validity) = resttap_load::merge::row_ids(&res.merge, wd == WriteDisposition::Merge, &load_id);
    let normalizer = res
        .selected
        .then(|| Normalizer::new(normalizer_config(&res, load_id, batch_rows, row_ids, validity), &existing));
    if let Some(e) = normalizer.as_ref().and_then(Normalizer::refuses_root) {
        return Err(RunError::Normalize { resource: res.name.clone(), source: e });
    }
    let steps = match &res.processing_steps {
        Some(s) => resttap_config::steps::compile(s)
            .map_err(|e| RunError::Internal(format!("processing_steps{}: {}", e.key, e.message)))?,
        None => Vec::new(),
    };
    let incremental = res.endpoint.incremental.as_ref().map(|c| {
        Incremental::new(c, prior.incremental.get(&c.cursor_path), &res.primary_key)
            .resuming(prior.backfill.get(&c.cursor_path))
    });
    let ctx = Context::new(incremental.as_ref());
    let mut sink = Sink {
        resource: res.name.clone(),
        incremental,
        prior,
        steps,
        children,
        normalizer,
        out: Vec::new(),
        tx,
        clock,
        counted: 0,
    };
    let mut detections = Vec::new();
    let now = resttap_schema::timestamp::now_micros();
    let windows = match &sink.incremental {
        Some(inc) => inc.windows(now).map_err(|message| RunError::Window { resource: res.name.clone(), message })?,
        None => None,
    };
    match source {
        Source::Root if windows.is_some() => {
            // `incremental.window`: each window's request chain on its own, several at once,
            // read in window order
            let windows = windows.unwrap_or_default();
            let inc_cfg = res.endpoint.incremental.clone().expect("windows come from incremental");
            let last = windows.len().saturating_sub(1);
            let res = Arc::new(res.clone());
            let mut pending = windows.into_iter().enumerate();
            let mut inflight = Inflight(VecDeque::new());
            let mut bounds = VecDeque::new();
            // `page_concurrency` windows are fetched at a time; twice as many are queued, so that
            // a slow window at the head does not keep the others from starting
            let at_once = config.api.client.page_concurrency.max(1);
            let permits = Arc::new(Semaphore::new(at_once));
            loop {
                while inflight.0.len() < 2 * at_once {
                    let Some((i, (start, end))) = pending.next() else { break };
                    let wctx = ctx.for_window(&inc_cfg, &start, &end);
                    let chain = fetch_all(
                        client.clone(),
                        Arc::clone(&config),
                        Arc::clone(&res),
                        Arc::clone(&counters),
                        wctx,
                        Vec::new(),
                    );
                    let permits = Arc::clone(&permits);
                    inflight.0.push_back(tokio::spawn(async move {
                        let _turn = permits.acquire_owned().await.map_err(|e| RunError::Internal(e.to_string()))?;
                        chain.await
                    }));
                    bounds.push_back((start, (i < last).then_some(end)));
                }
                let (Some(chain), Some((start, end))) = (inflight.0.pop_front(), bounds.pop_front()) else { break };
                for rec in finished(chain, &res.name, &mut detections).await? {
                    let inside = sink.incremental.as_ref().is_none_or(|i| i.in_window(&rec, &start, end.as_ref()));
                    if inside {
                        sink.record(rec).await?;
                    }
                }
                sink.flush().await?;
                sink.boundary().await?;
            }
        }
        Source::Root => {
            let mut extractor = Extractor::start(client, &config.api.client, &res, counters, &ctx)?;
            let mut first_page = true;
            // without processing steps or children, records are read from the page's text
            let borrowed = borrowed_ok(&res, &config, &sink, &extractor);
            loop {
                let more = if borrowed {
                    extractor.next_page_borrowed(|records| records.iter().try_for_each(|r| sink.borrowed(r))).await?
                } else {
                    match extractor.next_page().await? {
                        Some(page) => {
                            for rec in page.records {
                                sink.record(rec).await?;
                            }
                            true
                        }
                        None => false,
                    }
                };
                if !more {
                    break;
                }
                sink.flush().await?;
                sink.boundary().await?;
                if first_page {
                    crash_point("after_first_page");
                    first_page = false;
                }
            }
            detections.extend(extractor.detected.iter().map(|d| format!("resource `{}`: auto-detected {d}", res.name)));
        }
        Source::Child { mut parents, fanout } => {
            let res = Arc::new(res.clone());
            let mut inflight = Inflight(VecDeque::new());
            let mut open = true;
            loop {
                while open && inflight.0.len() < fanout.max(1) {
                    match parents.recv().await {
                        Some(parent) => inflight.0.push_back(tokio::spawn(fetch_chain(
                            client.clone(),
                            Arc::clone(&config),
                            Arc::clone(&res),
                            Arc::clone(&counters),
                            ctx.clone(),
                            parent,
                        ))),
                        None => open = false,
                    }
                }
                let Some(chain) = inflight.0.pop_front() else { break };
                for rec in finished(chain, &res.name, &mut detections).await? {
                    sink.record(rec).await?;
                }
                sink.flush().await?;
            }
        }
    }
    sink.mark(None).await?;
    Ok(ResourceOutcome { name: res.name.clone(), detections })
}

/// A resource's root table and primary key (its `primary_key` and the columns hinted
/// `primary_key: true`), normalized as dlt names columns.
pub(crate) fn table_and_key(res: &Resource) -> (String, Vec<String>) {
    let table = normalize_table_name(res.table());
    let mut primary_key: Vec<String> = res.primary_key.iter().map(|k| normalize_path(k)).collect();
    for (col, hint) in res.columns.iter().flatten() {
        let col = normalize_path(col);
        if hint.primary_key == Some(true) && !primary_key.contains(&col) {
            primary_key.push(col);
        }
    }
    (table, primary_key)
}

/// How a resource's records become rows: its table, key, nesting, hints and contract.
pub(crate) fn normalizer_config(
    res: &Resource,
    load_id: Arc<str>,
    batch_rows: usize,
    row_ids: resttap_normalize::RowIds,
    validity: Option<resttap_normalize::Validity>,
) -> NormalizerConfig {
    let (table, primary_key) = table_and_key(res);
    NormalizerConfig {
        nested_hints: nested_hints(res, &table),
        table,
        write_disposition: res.write_disposition,
        primary_key,
        max_nesting: res.max_table_nesting,
        load_id,
        batch_rows,
        hints: column_hints(res),
        row_ids,
        validity,
        contract: res.contract.unwrap_or_default(),
    }
}

/// Whether a resource's pages can be normalized straight from their text (see
/// [`Extractor::next_page_borrowed`]): only the incremental filter and the normalizer read its
/// records (no processing steps or children), its data selector is a plain key path, and no
/// paginator path or stop condition can reach into the records.
fn borrowed_ok(res: &Resource, config: &Config, sink: &Sink, extractor: &Extractor) -> bool {
    let Some(first_key) = extractor.records_path().and_then(|k| k.first()) else { return false };
    if !sink.steps.is_empty() || !sink.children.is_empty() || sink.normalizer.is_none() {
        return false;
    }
    let paginator = res.endpoint.paginator.as_ref().or(config.api.client.paginator.as_ref());
    let texts: Vec<&str> = match paginator {
        Some(PaginatorConfig::Cursor { cursor_path, has_more_path, .. }) => {
            std::iter::once(cursor_path.as_str()).chain(has_more_path.as_deref()).collect()
        }
        Some(PaginatorConfig::JsonLink { next_url_path, .. }) => vec![next_url_path],
        Some(
            PaginatorConfig::Offset { total_path, has_more_path, .. }
            | PaginatorConfig::PageNumber { total_path, has_more_path, .. },
        ) => total_path.as_deref().into_iter().chain(has_more_path.as_deref()).collect(),
        _ => Vec::new(),
    };
    let stop = paginator.and_then(PaginatorConfig::stop_condition);
    !texts.into_iter().chain(stop).any(|t| t.contains(first_key.as_str()))
}

/// The `columns` hints of a resource, with normalized names; a merge key's columns must have
/// values, as dlt's `merge_key` hint makes them `nullable: false`.
fn column_hints(res: &Resource) -> Vec<resttap_normalize::ColumnHint> {
    let mut hints = typed_hints(res.columns.iter().flatten());
    if res.write_disposition == WriteDisposition::Merge {
        for k in &res.merge.merge_key {
            match hints.iter_mut().find(|h| h.name == *k) {
                Some(h) => h.nullable = Some(false),
                None => hints.push(resttap_normalize::ColumnHint {
                    name: k.clone(),
                    data_type: None,
                    nullable: Some(false),
                    primary_key: false,
                }),
            }
        }
    }
    hints
}

/// The normalizer's form of `columns` hints (typed by the config loader).
fn typed_hints<'a>(
    columns: impl Iterator<Item = &'a (String, resttap_config::model::ColumnHint)>,
) -> Vec<resttap_normalize::ColumnHint> {
    columns
        .map(|(name, h)| resttap_normalize::ColumnHint {
            name: normalize_path(name),
            data_type: h.typed,
            nullable: h.nullable,
            primary_key: h.primary_key == Some(true),
        })
        .collect()
}

/// `nested_hints`' columns by nested table: `<table>__<path>`, as dlt names them.
fn nested_hints(res: &Resource, table: &str) -> Vec<(String, Vec<resttap_normalize::ColumnHint>)> {
    res.nested_hints
        .iter()
        .flatten()
        .map(|(path, h)| (format!("{table}__{}", normalize_path(path)), typed_hints(h.columns.iter().flatten())))
        .collect()
}

/// Runs `config` into the destination. `progress` receives the counters of each resource
/// before extraction starts.
pub async fn run(
    config: Config,
    opts: RunOptions,
    progress: impl FnOnce(&[ResourceProgress], &Client),
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let mut config = config;
    let load_id = new_load_id();

    // the destination lives on one blocking thread; it stages what the resources send. It opens
    // while the HTTP client is built (reading the system's root certificates: ~8 ms)
    let spec = opts.destination.clone();
    let dataset = opts.dataset.clone();
    let lid = load_id.clone();
    let pipeline_name = opts.pipeline.clone();
    let scope = opts.only.then(|| {
        config.api.resources.iter().filter(|r| r.selected).map(|r| normalize_table_name(r.table())).collect::<Vec<_>>()
    });
    let opening = tokio::task::spawn_blocking(move || -> Result<_, LoadError> {
        let mut d = spec.open(&dataset, Purpose::Write(scope))?;
        let existing = d.existing_schema()?;
        let contracts = d.stored_schema()?.map(|s| resttap_load::dlt::stored_contracts(&s)).unwrap_or_default();
        let mut state = d.load_state(&pipeline_name)?.unwrap_or_else(|| PipelineState::new(&pipeline_name));
        state.dataset_name = dataset.clone();
        d.begin(&lid)?;
        Ok((d, existing, contracts, state))
    });
    let client = Client::from_config(&config.api.client, config.secrets.clone());
    let (dest, existing, contracts, prior_state) = opening.await.map_err(|e| RunError::Internal(e.to_string()))??;
    let client = client?;
    // a resource that declares no contract keeps the one its table was loaded under, as in dlt
    for r in config.api.resources.iter_mut().filter(|r| r.contract.is_none()) {
        let table = normalize_table_name(r.table());
        r.contract = contracts.iter().find(|(t, _)| *t == table).map(|(_, c)| *c);
    }
    let config = Arc::new(config);
    let existing = Arc::new(existing);

    let clock = Arc::new(Clock::new(opts.checkpoint));
    let (tx, mut rx) = mpsc::channel::<Msg>(16);
    let mut loader = Loader {
        dest,
        known: Known::default(),
        load_id: Arc::from(load_id.as_str()),
        order: config.api.resources.iter().map(|r| r.name.clone()).collect(),
        state: prior_state.clone(),
        clock: Arc::clone(&clock),
        checkpoints: Vec::new(),
    };
    let loading = tokio::task::spawn_blocking(move || {
        let staged = loader.run(&mut rx);
        (loader, staged)
    });

    // a resource runs when it is selected or feeds a selected resource (dlt's `selected: false`)
    let all = &config.api.resources;
    let feeds_selected = |r: &Resource| {
        let mut stack = vec![r.name.as_str()];
        while let Some(n) = stack.pop() {
            for c in all.iter().filter(|c| c.parent.as_deref() == Some(n)) {
                if c.selected {
                    return true;
                }
                stack.push(&c.name);
            }
        }
        false
    };
    let mut active: Vec<Resource> = all.iter().filter(|r| r.selected || feeds_selected(r)).cloned().collect();
    for r in &mut active {
        // plain files cannot merge: append, as dlt does (its tables then have no `_dlt_root_id`)
        if r.write_disposition == WriteDisposition::Merge
            && r.selected
            && !opts.destination.merges(r.table_format.unwrap_or_default())
        {
            tracing::warn!(
                "resource `{}`: merge on plain Parquet tables appends, as dlt does; set `table_format: delta` to merge by primary key",
                r.name
            );
            r.write_disposition = WriteDisposition::Append;
        }
        if r.selected {
            check_types(r, &opts.destination)?;
        }
        if r.write_disposition == WriteDisposition::Merge && r.selected {
            check_merge(r, &opts.destination)?;
        }
    }
    if clock.enabled() {
        check_checkpoints(&active)?;
    }
    let shared: Vec<ResourceProgress> = active
        .iter()
        .map(|r| ResourceProgress {
            name: r.name.clone(),
            counters: Arc::new(Counters::default()),
            since: Instant::now(),
            finished: Arc::default(),
        })
        .collect();
    progress(&shared, &client);
    // one bounded channel per parent → child edge
    let mut senders: HashMap<String, Vec<mpsc::Sender<Value>>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Value>> = HashMap::new();
    for r in &active {
        if let Some(p) = &r.parent {
            let (ptx, prx) = mpsc::channel::<Value>(1024);
            senders.entry(p.clone()).or_default().push(ptx);
            receivers.insert(r.name.clone(), prx);
        }
    }
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (res, p) in active.into_iter().zip(shared.iter()) {
        let (client, config, counters, finished, since, existing, clock, tx) = (
            client.clone(),
            Arc::clone(&config),
            Arc::clone(&p.counters),
            Arc::clone(&p.finished),
            p.since,
            Arc::clone(&existing),
            Arc::clone(&clock),
            tx.clone(),
        );
        let batch_rows = opts.batch_rows;
        let prior = prior_state.resources.get(&res.name).cloned().unwrap_or_default();
        let children = senders.remove(&res.name).unwrap_or_default();
        // children wait for their parent's records, so only roots take one of the permits
        let (source, limit) = match receivers.remove(&res.name) {
            Some(parents) => (Source::Child { parents, fanout: opts.fanout }, None),
            None => (Source::Root, Some(Arc::clone(&limit))),
        };
        tasks.spawn(async move {
            let _permit = match limit {
                Some(l) => Some(l.acquire_owned().await.map_err(|e| RunError::Internal(e.to_string()))?),
                None => None,
            };
            let outcome =
                run_resource(client, config, res, counters, existing, clock, batch_rows, tx, prior, source, children)
                    .await?;
            let _ = finished.set(since.elapsed());
            Ok(outcome)
        });
    }
    drop(tx);

    let mut outcomes = Vec::new();
    let mut failure: Option<RunError> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break,
                Some(Ok(Ok(o))) => outcomes.push(o),
                Some(Ok(Err(e))) => { failure.get_or_insert(e); tasks.abort_all(); }
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => { failure.get_or_insert(RunError::Internal(e.to_string())); tasks.abort_all(); }
            },
            _ = &mut ctrl_c, if failure.is_none() => { failure = Some(RunError::Interrupted); tasks.abort_all(); }
        }
    }
    let (mut loader, staged) = loading.await.map_err(|e| RunError::Internal(e.to_string()))?;
    // a staging failure explains the resource errors it caused, so it comes first
    let failure = match (staged, failure) {
        (Err(e), _) => Some(RunError::Load(e)),
        (Ok(()), f) => f,
    };
    if let Some(e) = failure {
        let e = after_checkpoints(&loader.checkpoints, e);
        tokio::task::spawn_blocking(move || loader.dest.abort())
            .await
            .map_err(|e| RunError::Internal(e.to_string()))?;
        return Err(e);
    }

    // in the config's resource order
    let order: Vec<&str> = config.api.resources.iter().map(|r| r.name.as_str()).collect();
    outcomes.sort_by_key(|o| order.iter().position(|n| *n == o.name));
    let detections: Vec<String> = outcomes.iter().flat_map(|o| o.detections.iter().cloned()).collect();
    let plan = loader.plan();
    let load_id = plan.load_id.clone();
    crash_point("before_commit");
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "extracted and staged");
    let (loader, report) = tokio::task::spawn_blocking(move || {
        let report = loader.dest.commit(&plan);
        (loader, report)
    })
    .await
    .map_err(|e| RunError::Internal(e.to_string()))?;
    let report = match report {
        Ok(r) => loader.total(r),
        Err(e) => return Err(after_checkpoints(&loader.checkpoints, e.into())),
    };
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "committed");
    let resources = shared
        .iter()
        .map(|p| {
            use std::sync::atomic::Ordering::Relaxed;
            ResourceSummary {
                name: p.name.clone(),
                table: loader.known.root_table(&p.name).map(str::to_string),
                pages: p.counters.pages.load(Relaxed),
                records: p.counters.records.load(Relaxed),
                retries: p.counters.retries.load(Relaxed),
            }
        })
        .collect();
    Ok(RunSummary {
        pipeline: opts.pipeline,
        dataset: opts.dataset,
        destination: opts.destination.describe(),
        load_id,
        report,
        resources,
        elapsed: started.elapsed(),
        detections,
        throttled: client.throttled(),
        rate_limit_wait: client.rate_limit_wait(),
        checkpoints: loader.checkpoints.len(),
    })
}
