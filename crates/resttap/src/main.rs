//! The `resttap` command line.

use std::path::{Path, PathBuf};

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resttap::destinations::{DestinationSpec, Purpose};
use resttap::pipeline::{self, RunError, RunOptions};
use resttap::progress::{self, Progress};
use resttap::report;
use resttap_config::{ConfigError, Overrides, SecretSources};

#[derive(Parser)]
#[command(
    name = "resttap",
    version,
    about = "Load REST APIs into DuckDB, PostgreSQL or a lake (Parquet, Delta) from a dlt rest_api_source configuration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `json`: every line on stderr is a JSON object (the run's start, each resource's
    /// progress and completion with counts and timings, retries and other log lines, errors),
    /// and a run's summary is one on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How a run reports.
#[derive(Clone, Copy)]
struct Output {
    quiet: bool,
    json: bool,
    heartbeat: std::time::Duration,
}

/// `--heartbeat`: a duration above zero (`30s`, `5m`, `PT1M`).
fn heartbeat(text: &str) -> Result<std::time::Duration, String> {
    match resttap_config::duration::parse_duration(text)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

#[derive(clap::Args)]
struct Target {
    /// Pipeline name [default for `run`: the config file's name without extension].
    #[arg(long)]
    pipeline: Option<String>,
    /// `duckdb` (the file <pipeline>.duckdb), `duckdb:PATH`, `postgres` (credentials in
    /// DESTINATION__POSTGRES__CREDENTIALS or .dlt/secrets.toml, as dlt reads them) or
    /// `postgresql://user:password@host:port/database`.
    #[arg(long, default_value = "duckdb")]
    destination: String,
    /// Dataset (DuckDB or PostgreSQL schema) name [default: <pipeline>_dataset].
    #[arg(long)]
    dataset: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Extract every resource of CONFIG and load it, in one transaction.
    Run {
        /// The configuration: a .yaml/.yml, .json or .toml file with dlt's rest_api_source structure.
        config: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Use this base URL instead of the config's `client.base_url`.
        #[arg(long)]
        base_url: Option<String>,
        /// Resources fetched at the same time.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Request chains of a child resource in flight at a time (one per parent record).
        #[arg(long, default_value_t = 8)]
        fanout: usize,
        /// Pages of one resource requested at once when the paginator knows them ahead
        /// (offsets or page numbers with a total) [default: the config's
        /// `client.page_concurrency`, else 4].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        page_concurrency: Option<u16>,
        /// Load only these resources (comma-separated, dlt's `with_resources`); the parents of
        /// a selected child are fetched to feed it, not loaded.
        #[arg(long, value_delimiter = ',')]
        resources: Vec<String>,
        /// Commit part-way, every N records (`50000`) or every so long (`5m`, `PT1H`), so that a
        /// killed or failed backfill resumes after its last checkpoint. For incremental
        /// resources whose records come by ascending cursor (`row_order: asc`) or in
        /// `incremental.window`s, loaded by append or merge; others are refused.
        #[arg(long, value_name = "N|DURATION", value_parser = resttap::loader::CheckpointEvery::parse)]
        checkpoint_every: Option<resttap::loader::CheckpointEvery>,
        /// When stderr is not a terminal, a line saying what is still running every so long.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = heartbeat)]
        heartbeat: std::time::Duration,
        /// No progress lines and no summary: only warnings, errors and the exit status.
        #[arg(long)]
        quiet: bool,
    },
    /// Check CONFIG: validate it, then request each resource's first page (a child resource's:
    /// for its parent's first record) and show the records, the data selector and paginator,
    /// and the tables and columns a first load would create. Writes nothing anywhere. Exit
    /// status 0, 1 if a request failed, 2 for a configuration error.
    Check {
        /// The configuration (.yaml/.yml, .json or .toml).
        config: PathBuf,
        /// Use this base URL instead of the config's `client.base_url`.
        #[arg(long)]
        base_url: Option<String>,
        /// Validate only: no request is made.
        #[arg(long)]
        offline: bool,
        /// Only these resources (comma-separated); their parents are requested to feed them.
        #[arg(long, value_delimiter = ',')]
        resources: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a configuration for an OpenAPI 3.0/3.1 spec's list endpoints (YAML or JSON spec):
    /// data selectors, paginators, primary keys, auth and parent/child resources, as
    /// dlt-init-openapi does. Lists the endpoints it could not map, with the reason.
    Init {
        /// The spec file.
        #[arg(long, value_name = "SPEC")]
        openapi: PathBuf,
        /// Write the configuration here (a .yaml file) instead of to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The API's base URL [default: the spec's first server].
        #[arg(long)]
        base_url: Option<String>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the destination's tables with their columns, types and nullability.
    Schema {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the dataset's loads, newest first: load id, time, status (0 = done), schema, and the
    /// rows of each load still in each root table (a later merge or replace may have removed some;
    /// nested tables have no _dlt_load_id).
    Loads {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the pipeline: destination, dataset, tables with their rows, the newest load, and the
    /// position of each incremental resource.
    Info {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the pipeline's state (incremental positions), or reset it.
    State {
        #[command(flatten)]
        target: Target,
        /// Forget the stored positions (of --resource only, if given): the next run starts from
        /// each resource's `initial_value` again.
        #[arg(long)]
        reset: bool,
        /// With --reset: the resource to reset.
        #[arg(long, requires = "reset")]
        resource: Option<String>,
    },
    /// Serve the bundled mock feedback API (for demos, tests and benchmarks).
    MockApi {
        #[command(flatten)]
        args: resttap_mock::MockArgs,
    },
    /// Benchmark floor: fetch every page of the mock API's six resources, following cursors,
    /// and discard them (no parsing, no loading).
    #[command(hide = true)]
    FetchFloor {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        token: String,
    },
    /// Benchmark floor: write every table of a loaded DuckDB file into a new one, from copies
    /// in memory, as DuckDB's own `CREATE TABLE ... AS SELECT` in one transaction; prints the
    /// time of that alone (the least any loader spends on DuckDB's side for these rows).
    #[command(hide = true)]
    InsertFloor {
        /// A loaded file.
        #[arg(long)]
        from: PathBuf,
        /// The file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Benchmark floor: the rows of a lake dataset's tables, read into memory, written again by
    /// the parquet crate alone, one file per table; prints the time of the writing alone.
    #[command(hide = true)]
    ParquetFloor {
        /// A dataset folder of a local lake.
        #[arg(long)]
        from: PathBuf,
        /// The folder to write into.
        #[arg(long)]
        to: PathBuf,
    },
    /// Print a shell completion script: `resttap completions bash > ~/.local/share/bash-completion/completions/resttap`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Serve the mock API on a free port and load the seed configuration into demo.duckdb.
    Demo {
        /// Records in the two large resources.
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// Where to write.
        #[arg(long, default_value = "demo.duckdb")]
        output: PathBuf,
        /// No progress lines and no summary: only warnings, errors and the exit status.
        #[arg(long)]
        quiet: bool,
    },
}

// Records are parsed into many small allocations; mimalloc makes them markedly cheaper than
// glibc's malloc (measured: see the benchmark notes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod memory;

/// The seed configuration shipped in examples/, used by `resttap demo`.
const SEED_CONFIG: &str = include_str!("../../../examples/analytics-api.yaml");

/// `--log-format json`: what is said on stderr is said as JSON objects.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Says `message` on stderr: as is, or as `{"event": event, "message": ...}`.
fn say(event: &str, message: &str) {
    if json_logs() {
        eprintln!("{}", serde_json::json!({ "event": event, "message": message }));
    } else {
        eprintln!("{message}");
    }
}

/// Says an error on stderr (`error: ...`, or an `error` event).
fn say_error(message: &str) {
    if json_logs() {
        say("error", message);
    } else {
        eprintln!("error: {message}");
    }
}

fn print_error(e: &dyn std::error::Error) {
    say_error(&resttap::error_chain(e));
}

/// Pipeline, dataset and destination from the options; a usage error is printed and becomes
/// exit status 2.
fn target(t: &Target, default_pipeline: Option<&str>) -> Result<(String, String, DestinationSpec), ExitCode> {
    let resolve = || -> Result<_, String> {
        let pipeline = t.pipeline.clone().or(default_pipeline.map(String::from)).ok_or("--pipeline is required")?;
        let dataset = t.dataset.clone().unwrap_or_else(|| pipeline::default_dataset(&pipeline));
        let dest = DestinationSpec::parse(&t.destination, &pipeline, &SecretSources::default())?;
        Ok((pipeline, dataset, dest))
    };
    resolve().map_err(|m| {
        say_error(&m);
        ExitCode::from(2)
    })
}

async fn run_and_report(config: resttap_config::Config, opts: RunOptions, out: Output) -> ExitCode {
    if out.json && !out.quiet {
        let resources: Vec<&str> =
            config.api.resources.iter().filter(|r| r.selected).map(|r| r.name.as_str()).collect();
        let start = serde_json::json!({
            "event": "run_start",
            "pipeline": opts.pipeline,
            "dataset": opts.dataset,
            "destination": opts.destination.describe(),
            "config": config.path.display().to_string(),
            "resources": resources,
        });
        eprintln!("{start}");
    }
    let mode = progress::Mode::choose(out.quiet, out.json);
    let mut shown = None;
    let result =
        pipeline::run(config, opts, |p, client| shown = Some(Progress::start(p, client, mode, out.heartbeat))).await;
    if let Some(p) = shown {
        p.finish();
    }
    match result {
        Ok(summary) => {
            for d in &summary.detections {
                if out.json {
                    eprintln!("{}", serde_json::json!({"event": "warning", "message": d}));
                } else {
                    eprintln!("warning: {d}");
                }
            }
            match (out.quiet, out.json) {
                (true, _) => {}
                (false, true) => println!("{}", report::summary_json(&summary)),
                (false, false) => print!("{}", report::summary(&summary)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let committed = match &e {
                RunError::Load(resttap_load::LoadError::Locked { .. }) => None,
                RunError::AfterCheckpoints { committed, last_load_id, .. } => Some(format!(
                    "{committed} checkpoint(s) were committed before the failure, the last as load {last_load_id}; what came after it was not: run again to resume from there"
                )),
                _ => Some("nothing was committed: the dataset is as the last successful run left it".into()),
            };
            if out.json {
                let event = serde_json::json!({
                    "event": "error",
                    "message": resttap::error_chain(&e),
                    "committed": committed,
                });
                eprintln!("{event}");
            } else {
                print_error(&e);
                if let Some(c) = committed {
                    eprintln!("{c}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn state_command(
    spec: &DestinationSpec,
    pipeline: &str,
    dataset: &str,
    reset: bool,
    resource: Option<&str>,
) -> Result<String, String> {
    if let DestinationSpec::DuckDb(path) = spec
        && reset
        && !path.exists()
    {
        return Err(format!("{} does not exist", path.display()));
    }
    let mut db =
        spec.open(dataset, if reset { Purpose::Write(None) } else { Purpose::Read }).map_err(|e| e.to_string())?;
    let Some(mut state) = db.load_state(pipeline).map_err(|e| e.to_string())? else {
        return Ok(format!("pipeline `{pipeline}` has no stored state in {} (dataset {dataset})\n", db.location()));
    };
    if !reset {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&state.to_json()).expect("serializable")));
    }
    match resource {
        Some(r) => {
            if state.resources.remove(r).is_none() {
                let known: Vec<&str> = state.resources.keys().map(String::as_str).collect();
                return Err(format!(
                    "pipeline `{pipeline}` has no state for resource `{r}` (it has: {})",
                    known.join(", ")
                ));
            }
        }
        None => state.resources.clear(),
    }
    state.version += 1;
    state.dataset_name = dataset.to_string();
    db.save_state(&state).map_err(|e| e.to_string())?;
    Ok(format!(
        "reset the state of {} (version {}); the next run starts from initial_value\n",
        resource.map_or(format!("every resource of pipeline `{pipeline}`"), |r| format!("resource `{r}`")),
        state.version
    ))
}

/// `resttap schema`: the dataset's tables, or why there are none.
fn schema_command(spec: &DestinationSpec, dataset: &str) -> Result<Vec<resttap_load::TableInfo>, String> {
    let mut db = spec.open(dataset, Purpose::Read).map_err(|e| e.to_string())?;
    let tables = db.describe().map_err(|e| e.to_string())?;
    if tables.is_empty() {
        return Err(format!(
            "{} has no dataset `{dataset}` (or it has no tables); check --pipeline and --dataset",
            db.location()
        ));
    }
    Ok(tables)
}

/// A command's text on stdout, or its error; the exit status.
fn printed(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Runs a blocking destination command off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("internal error: {e}"))?
}

/// `resttap init --openapi`: the configuration to stdout or FILE, what was left out and the
/// secrets to set to stderr. Exit 2 for a spec that cannot be used or a FILE that exists.
fn init_command(spec: &Path, output: Option<&Path>, base_url: Option<String>, force: bool) -> ExitCode {
    let usage = |m: String| {
        say_error(&m);
        ExitCode::from(2)
    };
    if let Some(out) = output
        && out.exists()
        && !force
    {
        return usage(format!("{} exists: pass --force to replace it", out.display()));
    }
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read the spec {}: {e}", spec.display())),
    };
    let generated = match resttap_openapi::generate(&text, &resttap_openapi::Options { base_url }) {
        Ok(g) => g,
        Err(e) => return usage(format!("{}: {}", spec.display(), resttap::error_chain(&e))),
    };
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &generated.yaml) {
                say_error(&format!("cannot write {}: {e}", out.display()));
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", generated.yaml),
    }
    for s in &generated.skipped {
        say("skipped", &format!("skipped {}: {}", s.method_path, s.reason));
    }
    let written = output.map(|o| format!(" written to {}", o.display())).unwrap_or_default();
    let n = (generated.resources.len(), generated.skipped.len());
    say("generated", &format!("{} resource(s){written}, {} endpoint(s) skipped", n.0, n.1));
    for name in &generated.secrets {
        let var = resttap_config::env_var_name(name);
        say(
            "secret",
            &format!("set the secret `{name}`: the environment variable {var} or `{name}` in .dlt/secrets.toml"),
        );
    }
    let shown = output.map_or("CONFIG".to_string(), |o| o.display().to_string());
    say(
        "next",
        &format!("next: `resttap check {shown}` requests each resource's first page and shows what a run would load"),
    );
    ExitCode::SUCCESS
}

/// The configuration at `path`, with `--base-url` and `--resources` applied; a configuration
/// error is printed and becomes exit status 2.
fn load_config(
    path: &Path,
    base_url: Option<String>,
    resources: &[String],
) -> Result<resttap_config::Config, ExitCode> {
    let mut cfg =
        resttap_config::load_file(path, &Overrides { base_url }, &SecretSources::default()).map_err(config_error)?;
    if !resources.is_empty() {
        cfg.select_resources(resources).map_err(config_error)?;
    }
    Ok(cfg)
}

fn config_error(e: ConfigError) -> ExitCode {
    print_error(&e);
    ExitCode::from(2)
}

/// Rows a table collects before they go to the loader: small batches keep memory flat (measured
/// with the row group size in `resttap-duckdb`: 8192 -> 2048 saved ~20 MB of peak RSS at no
/// cost in time).
const BATCH_ROWS: usize = 2048;

async fn main_inner(cli: Cli) -> ExitCode {
    let json = cli.log_format == LogFormat::Json;
    JSON_LOGS.store(json, std::sync::atomic::Ordering::Relaxed);
    let out = Output { quiet: false, json, heartbeat: progress::HEARTBEAT };
    match cli.command {
        Command::Run {
            config,
            target: t,
            base_url,
            concurrency,
            fanout,
            page_concurrency,
            resources,
            checkpoint_every,
            heartbeat,
            quiet,
        } => {
            let out = Output { heartbeat, quiet, ..out };
            let stem = config.file_stem().and_then(|s| s.to_str()).map(String::from);
            let (pipeline, dataset, destination) = match target(&t, stem.as_deref()) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let mut cfg = match load_config(&config, base_url, &resources) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(n) = page_concurrency {
                cfg.api.client.page_concurrency = usize::from(n);
            }
            let only = !resources.is_empty();
            run_and_report(
                cfg,
                RunOptions {
                    pipeline,
                    dataset,
                    destination,
                    concurrency,
                    fanout,
                    batch_rows: BATCH_ROWS,
                    only,
                    checkpoint: checkpoint_every,
                },
                out,
            )
            .await
        }
        Command::Init { openapi, output, base_url, force } => {
            init_command(&openapi, output.as_deref(), base_url, force)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "resttap", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Check { config, base_url, offline, resources, json } => {
            let mut cfg = match load_config(&config, base_url, &resources) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if offline {
                let names: Vec<&str> = cfg.api.resources.iter().map(|r| r.name.as_str()).collect();
                if json {
                    let valid = serde_json::json!({ "config": config.display().to_string(), "valid": true, "resources": names });
                    println!("{valid}");
                } else {
                    println!("{}: valid; {} resource(s): {}", config.display(), names.len(), names.join(", "));
                }
                return ExitCode::SUCCESS;
            }
            // the selected resources, and the parents that feed them
            let mut names: Vec<String> =
                cfg.api.resources.iter().filter(|r| r.selected).map(|r| r.name.clone()).collect();
            let mut i = 0;
            while let Some(n) = names.get(i) {
                let parent = cfg.api.resources.iter().find(|r| &r.name == n).and_then(|r| r.parent.clone());
                if let Some(p) = parent.filter(|p| !names.contains(p)) {
                    names.push(p);
                }
                i += 1;
            }
            cfg.api.resources.retain(|r| names.contains(&r.name));
            let checks = match resttap::check::check(&cfg).await {
                Ok(c) => c,
                Err(e) => {
                    print_error(&e);
                    return ExitCode::FAILURE;
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&checks).expect("serializable"));
            } else {
                print!("{}", report::check(&checks));
            }
            if checks.iter().any(|c| c.failed()) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Command::Schema { target: t, json } => {
            let (_, dataset, destination) = match target(&t, None) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let tables = match blocking(move || schema_command(&destination, &dataset)).await {
                Ok(t) => t,
                Err(e) => {
                    say_error(&e.to_string());
                    return ExitCode::FAILURE;
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&tables).expect("serializable"));
            } else {
                print!("{}", report::schema_table(&tables));
            }
            ExitCode::SUCCESS
        }
        Command::Loads { target: t, json } => {
            let (_, dataset, destination) = match target(&t, None) {
                Ok(x) => x,
                Err(code) => return code,
            };
            printed(blocking(move || resttap::inspect::loads_command(&destination, &dataset, json)).await)
        }
        Command::Info { target: t, json } => {
            let (pipeline, dataset, destination) = match target(&t, None) {
                Ok(x) => x,
                Err(code) => return code,
            };
            printed(blocking(move || resttap::inspect::info_command(&destination, &pipeline, &dataset, json)).await)
        }
        Command::State { target: t, reset, resource } => {
            let (pipeline, dataset, destination) = match target(&t, None) {
                Ok(x) => x,
                Err(code) => return code,
            };
            printed(
                blocking(move || state_command(&destination, &pipeline, &dataset, reset, resource.as_deref())).await,
            )
        }
        Command::MockApi { args } => match args.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::FetchFloor { base_url, token } => match resttap::floor::fetch_all(&base_url, &token).await {
            Ok((pages, bytes)) => {
                println!("fetched {pages} pages, {bytes} bytes");
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::InsertFloor { from, to } => match resttap_duckdb::insert_floor(&from, &to) {
            Ok(f) => {
                let cpu = f.cpu.map_or("-".to_string(), |c| format!("{:.3}", c.as_secs_f64()));
                println!("tables={} rows={} wall_s={:.3} cpu_s={cpu}", f.tables, f.rows, f.wall.as_secs_f64());
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::ParquetFloor { from, to } => {
            match tokio::task::spawn_blocking(move || resttap_lake::parquet_floor(&from, &to))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            {
                Ok(f) => {
                    let cpu = f.cpu.map_or("-".to_string(), |c| format!("{:.3}", c.as_secs_f64()));
                    println!("tables={} rows={} wall_s={:.3} cpu_s={cpu}", f.tables, f.rows, f.wall.as_secs_f64());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say_error(&e.to_string());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { records, output, quiet } => {
            let out = Output { quiet, ..out };
            let opts = resttap_mock::MockOptions { records, ..Default::default() };
            let token = opts.token.clone();
            let (addr, _server) = match resttap_mock::spawn("127.0.0.1:0".parse().expect("valid address"), opts).await {
                Ok(x) => x,
                Err(e) => {
                    print_error(&e);
                    return ExitCode::FAILURE;
                }
            };
            if !quiet {
                say("mock_api", &format!("mock API serving on http://{addr}"));
            }
            let mut secrets = SecretSources::default();
            secrets.overrides.insert("api_key".into(), resttap_config::Secret::new(token));
            let overrides = Overrides { base_url: Some(format!("http://{addr}")) };
            let cfg = match resttap_config::load_str(
                SEED_CONFIG,
                resttap_config::Format::Yaml,
                Path::new("examples/analytics-api.yaml"),
                &overrides,
                &secrets,
            ) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            let shown = output.display().to_string();
            let opts = RunOptions {
                pipeline: "demo".into(),
                dataset: pipeline::default_dataset("demo"),
                destination: DestinationSpec::DuckDb(output),
                concurrency: 8,
                fanout: 8,
                batch_rows: BATCH_ROWS,
                only: false,
                checkpoint: None,
            };
            let code = run_and_report(cfg, opts, out).await;
            if code == ExitCode::SUCCESS && !out.quiet && !out.json {
                eprintln!(
                    "next: `resttap info --pipeline demo --destination duckdb:{shown}` shows the dataset, `resttap schema ...` its columns; in DuckDB, \
                     `SELECT * FROM demo_dataset.suggestions` (tables are <dataset>.<table>, nested lists <table>__<field>, \
                     dlt's columns _dlt_load_id and _dlt_id on every row)"
                );
            }
            code
        }
    }
}

fn main() -> ExitCode {
    memory::tune();
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RESTTAP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_target(false);
    if cli.log_format == LogFormat::Json {
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        // colour for a terminal only: a file or a pipe gets plain text
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(main_inner(cli))
}
