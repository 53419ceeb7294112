//! One run of a pipeline: every selected resource extracted concurrently, normalized as its
//! pages arrive, staged in the destination through a bounded queue, and committed at the end in
//! one transaction — or not at all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resttap_config::{Config, Resource};
use resttap_duckdb::DuckDb;
use resttap_extract::incremental::{Incremental, MissingCursor};
use resttap_extract::{Counters, ExtractError, Extractor};
use resttap_http::{Client, HttpError};
use resttap_load::{CommitReport, Destination, LoadError, LoadPlan, PipelineState, ResourceLoad};
use resttap_normalize::{NormalizeError, Normalizer, NormalizerConfig, TableBatch};
use resttap_schema::naming::{normalize_identifier, normalize_table_name};
use resttap_schema::{Schema, WriteDisposition};
use resttap_state::IncrementalState;
use tokio::sync::{Semaphore, mpsc};

/// Where the data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    /// A DuckDB file.
    DuckDb(PathBuf),
}

impl DestinationSpec {
    /// Parses `duckdb` (→ `<pipeline>.duckdb`) or `duckdb:PATH`.
    pub fn parse(spec: &str, pipeline: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            None if spec == "duckdb" => Ok(DestinationSpec::DuckDb(PathBuf::from(format!("{pipeline}.duckdb")))),
            Some(("duckdb", path)) if !path.is_empty() => Ok(DestinationSpec::DuckDb(PathBuf::from(path))),
            _ => Err(format!("unknown destination `{spec}`: use `duckdb` or `duckdb:PATH`")),
        }
    }

    /// A description for messages.
    pub fn describe(&self) -> String {
        match self {
            DestinationSpec::DuckDb(p) => p.display().to_string(),
        }
    }
}

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
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[from] HttpError),
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
}

/// The outcome of a successful run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub pipeline: String,
    pub dataset: String,
    pub destination: String,
    pub load_id: String,
    pub report: CommitReport,
    pub resources: Vec<(String, u64, u64, u64)>,
    pub elapsed: Duration,
    /// Auto-detections made (paginator or data selector), one line each.
    pub detections: Vec<String>,
}

/// dlt's load id: Unix time in seconds with a fraction.
pub fn new_load_id() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}", t.as_secs_f64())
}

/// Opens the destination named by `spec` for `dataset`.
pub fn open_destination(spec: &DestinationSpec, dataset: &str) -> Result<Box<dyn Destination>, LoadError> {
    match spec {
        DestinationSpec::DuckDb(path) => Ok(Box::new(DuckDb::open(path, dataset)?)),
    }
}

struct ResourceOutcome {
    load: ResourceLoad,
    schema: Schema,
    detections: Vec<String>,
    /// The new incremental position: (cursor_path, state).
    incremental: Option<(String, IncrementalState)>,
}

/// Ends the process on the spot when `RESTTAP_CRASH_AT` names this point. Only the crash-safety
/// tests set it; `abort` runs no destructor and flushes nothing, like a power cut.
pub fn crash_point(name: &str) {
    if std::env::var("RESTTAP_CRASH_AT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

async fn run_resource(
    client: Client,
    config: Arc<Config>,
    res: Resource,
    counters: Arc<Counters>,
    existing: Arc<Schema>,
    load_id: Arc<str>,
    batch_rows: usize,
    tx: mpsc::Sender<TableBatch>,
    prior: Option<IncrementalState>,
) -> Result<ResourceOutcome, RunError> {
    let table = normalize_table_name(res.table());
    let primary_key: Vec<String> = res.primary_key.iter().map(|k| normalize_identifier(k)).collect();
    let wd = res.write_disposition;
    if wd == WriteDisposition::Merge && primary_key.is_empty() {
        tracing::warn!(resource = %res.name, "write_disposition merge without primary_key: rows are appended, as dlt does");
    }
    let mut normalizer = Normalizer::new(
        NormalizerConfig {
            table: table.clone(),
            write_disposition: wd,
            primary_key: primary_key.clone(),
            max_nesting: res.max_table_nesting,
            load_id,
            batch_rows,
        },
        &existing,
    );
    let steps = match &res.processing_steps {
        Some(s) => resttap_config::steps::compile(s)
            .map_err(|e| RunError::Internal(format!("processing_steps{}: {}", e.key, e.message)))?,
        None => Vec::new(),
    };
    let mut incremental =
        res.endpoint.incremental.as_ref().map(|c| Incremental::new(c, prior.as_ref(), &res.primary_key));
    let mut extractor = Extractor::start(client, &config.api.client, &res, counters, incremental.as_ref())?;
    let mut out = Vec::new();
    let mut first_page = true;
    let closed = || RunError::Internal("the destination stopped accepting rows".into());
    while let Some(page) = extractor.next_page().await? {
        for rec in page.records {
            if let Some(inc) = &mut incremental {
                if !inc.keep(&rec).map_err(|source| RunError::Incremental { resource: res.name.clone(), source })? {
                    continue;
                }
            }
            let rec = if steps.is_empty() {
                rec
            } else {
                match resttap_extract::steps::apply(&steps, rec) {
                    Some(r) => r,
                    None => continue,
                }
            };
            normalizer
                .push(&rec, &mut out)
                .map_err(|source| RunError::Normalize { resource: res.name.clone(), source })?;
        }
        for b in out.drain(..) {
            tx.send(b).await.map_err(|_| closed())?;
        }
        if first_page {
            crash_point("after_first_page");
            first_page = false;
        }
    }
    for b in normalizer.finish() {
        tx.send(b).await.map_err(|_| closed())?;
    }
    let detections = extractor.detected.iter().map(|d| format!("resource `{}`: auto-detected {d}", res.name)).collect();
    Ok(ResourceOutcome {
        load: ResourceLoad { resource: res.name.clone(), root_table: table, write_disposition: wd, primary_key },
        schema: normalizer.schema().clone(),
        detections,
        incremental: incremental
            .as_ref()
            .and_then(|i| i.state())
            .map(|st| (res.endpoint.incremental.as_ref().expect("incremental").cursor_path.clone(), st)),
    })
}

/// Runs `config` into the destination. `progress` receives the counters of each resource
/// before extraction starts.
pub async fn run(
    config: Config,
    opts: RunOptions,
    progress: impl FnOnce(&[ResourceProgress]),
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let client = Client::new(
        config.api.client.retry.clone(),
        Duration::from_secs_f64(config.api.client.timeout),
        config.secrets.clone(),
    )?;
    let load_id = new_load_id();

    // the destination lives on one blocking thread; it stages what the resources send
    let spec = opts.destination.clone();
    let dataset = opts.dataset.clone();
    let lid = load_id.clone();
    let pipeline_name = opts.pipeline.clone();
    let (mut dest, existing, prior_state) = tokio::task::spawn_blocking(move || -> Result<_, LoadError> {
        let mut d = open_destination(&spec, &dataset)?;
        let existing = d.existing_schema()?;
        let state = d.load_state(&pipeline_name)?.unwrap_or_else(|| PipelineState::new(&pipeline_name));
        d.begin(&lid)?;
        Ok((d, existing, state))
    })
    .await
    .map_err(|e| RunError::Internal(e.to_string()))??;
    let existing = Arc::new(existing);

    let (tx, mut rx) = mpsc::channel::<TableBatch>(16);
    let loader = tokio::task::spawn_blocking(move || -> (Box<dyn Destination>, Result<(), LoadError>) {
        while let Some(batch) = rx.blocking_recv() {
            if let Err(e) = dest.stage(&batch) {
                return (dest, Err(e));
            }
        }
        (dest, Ok(()))
    });

    let selected: Vec<Resource> = config.api.resources.iter().filter(|r| r.selected).cloned().collect();
    let shared: Vec<ResourceProgress> = selected
        .iter()
        .map(|r| ResourceProgress { name: r.name.clone(), counters: Arc::new(Counters::default()) })
        .collect();
    progress(&shared);
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let load_id_arc: Arc<str> = Arc::from(load_id.as_str());
    let mut tasks = tokio::task::JoinSet::new();
    for (res, p) in selected.into_iter().zip(shared.iter()) {
        let (client, config, counters, existing, lid, tx, limit) = (
            client.clone(),
            Arc::clone(&config),
            Arc::clone(&p.counters),
            Arc::clone(&existing),
            Arc::clone(&load_id_arc),
            tx.clone(),
            Arc::clone(&limit),
        );
        let batch_rows = opts.batch_rows;
        let prior = res.endpoint.incremental.as_ref().and_then(|c| {
            prior_state.resources.get(&res.name).and_then(|r| r.incremental.get(&c.cursor_path)).cloned()
        });
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.map_err(|e| RunError::Internal(e.to_string()))?;
            run_resource(client, config, res, counters, existing, lid, batch_rows, tx, prior).await
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
    let (mut dest, staged) = loader.await.map_err(|e| RunError::Internal(e.to_string()))?;
    // a staging failure explains the resource errors it caused, so it comes first
    let failure = match (staged, failure) {
        (Err(e), _) => Some(RunError::Load(e)),
        (Ok(()), f) => f,
    };
    if let Some(e) = failure {
        tokio::task::spawn_blocking(move || dest.abort()).await.map_err(|e| RunError::Internal(e.to_string()))?;
        return Err(e);
    }

    // keep the config's resource order in the plan and the report
    let order: Vec<&str> = config.api.resources.iter().map(|r| r.name.as_str()).collect();
    outcomes.sort_by_key(|o| order.iter().position(|n| *n == o.load.resource));
    let mut schema = Schema::default();
    let mut detections = Vec::new();
    for o in &outcomes {
        schema.tables.extend(o.schema.tables.iter().cloned());
        detections.extend(o.detections.iter().cloned());
    }
    let mut state = prior_state.clone();
    for o in &outcomes {
        if let Some((cursor, st)) = &o.incremental {
            state.resources.entry(o.load.resource.clone()).or_default().incremental.insert(cursor.clone(), st.clone());
        }
    }
    let state_changed = state.content_hash() != prior_state.content_hash();
    if state_changed {
        state.version = prior_state.version + 1;
    }
    let plan = LoadPlan {
        load_id: load_id.clone(),
        schema_name: "rest_api".into(),
        schema,
        resources: outcomes.iter().map(|o| o.load.clone()).collect(),
        state: state_changed.then_some(state),
    };
    crash_point("before_commit");
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "extracted and staged");
    let report = tokio::task::spawn_blocking(move || dest.commit(&plan))
        .await
        .map_err(|e| RunError::Internal(e.to_string()))??;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "committed");
    let resources = shared
        .iter()
        .map(|p| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                p.name.clone(),
                p.counters.pages.load(Relaxed),
                p.counters.records.load(Relaxed),
                p.counters.retries.load(Relaxed),
            )
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
    })
}
