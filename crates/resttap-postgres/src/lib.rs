//! The PostgreSQL destination.
//!
//! The dataset is a PostgreSQL schema (`<pipeline>_dataset` by default); its tables, columns and
//! types are those of dlt 1.31's `postgres` destination (`varchar`, `bigint`, `double precision`,
//! `boolean`, `timestamp with time zone`, `date`, `jsonb`; `_dlt_id` `UNIQUE`). A load is one
//! transaction on one connection, opened by [`Destination::begin`]:
//!
//! - Rows go in by binary `COPY` ([`copy`]), a table's rows about [`COPY_BYTES`] at a time, so
//!   memory stays bounded whatever the load's size. A table the dataset did not have is created
//!   in the transaction and written in place: nobody else can see it before the commit. Rows
//!   for a table the dataset has go to a table of the same name in `<dataset>_staging` (dlt's
//!   staging schema), created `UNLOGGED` in the transaction, so that the dataset's tables are
//!   neither locked nor changed while extraction goes on.
//! - The commit adds new columns, applies each resource's write disposition with set-based SQL
//!   (`replace`: the resource's tables truncated; `merge`: the last of a load's duplicate keys
//!   kept, then older rows with the load's keys deleted with their nested rows), moves the
//!   staged rows in, drops the staging tables, writes `_dlt_loads`, `_dlt_version` and the
//!   pipeline state, and commits.
//! - Anything that fails — a statement, the connection, the process — rolls the whole
//!   transaction back: the dataset is as the last successful load left it, and nothing is left
//!   in the staging schema.
//! - A session advisory lock on the dataset, held from [`Postgres::open`] with
//!   [`Access::Load`] until the connection closes, refuses a second run on the same dataset.
//!   With [`Access::LoadTables`] (`run --resources`) the dataset's lock is shared and each root
//!   table's exclusive: runs of disjoint resources load side by side, their commits (and a first
//!   load's creation of the schemas) ordered by a transaction-level lock, each merging its
//!   resources' state over the latest ([`resttap_load::dlt::merge_state`]).
//!
//! The [`Destination`] methods block on the Tokio runtime that was current when the destination
//! was opened; call them from `spawn_blocking` threads.

pub mod copy;
pub mod credentials;
mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use resttap_load::dlt::{self, SystemRows};
use resttap_load::{
    ColumnInfo, CommitReport, Destination, LoadError, LoadInfo, LoadPlan, LoadRows, PipelineState, ResourceLoad,
    TableInfo, TableReport,
};
use resttap_normalize::TableBatch;
use resttap_schema::{Column, DataType, Precision, Schema, Table, WriteDisposition, cols};
use tokio::runtime::Handle;

pub use credentials::{CredentialsError, Password, PgCredentials, SslMode};

/// Encoded rows a table collects before they are sent in one `COPY` (and the most one table
/// holds in memory).
pub const COPY_BYTES: usize = 1 << 20;

/// Rows a load adds to an existing table before its unique index may be rebuilt instead of
/// maintained row by row ([`Postgres::index_to_rebuild`]).
pub const REBUILD_MIN_ROWS: u64 = 10_000;

/// Bytes of a unique `_dlt_id` index per entry (measured: 7 MB for 100,000 entries).
const INDEX_ENTRY_BYTES: u64 = 70;

/// `work_mem` for the commit's statements (hash joins over the load's keys).
pub const COMMIT_WORK_MEM: &str = "64MB";

/// How long [`Postgres::open`] waits for another session's lock on the dataset before it gives
/// up: long enough for the server to end the session of a run killed a moment ago.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Identifiers and literals as both SQL destinations write them.
pub use resttap_load::sql::{ident, literal};

/// dlt's wei precision on PostgreSQL (twice the 78 digits of Ethereum's amounts, half after
/// the point).
const WEI: (u16, u16) = (156, 78);

/// The PostgreSQL type of a dlt type, as dlt's postgres destination maps it.
pub fn sql_type(t: DataType) -> String {
    match t {
        DataType::Text => "varchar".into(),
        DataType::Bigint => "bigint".into(),
        DataType::Double => "double precision".into(),
        DataType::Bool => "boolean".into(),
        DataType::Timestamp => "timestamp with time zone".into(),
        DataType::Json => "jsonb".into(),
        DataType::Date => "date".into(),
        DataType::Decimal(p) => {
            let (precision, scale) = p.or(Precision::DEFAULT);
            format!("numeric({precision},{scale})")
        }
        DataType::Wei => format!("numeric({},{})", WEI.0, WEI.1),
        DataType::Binary => "bytea".into(),
        DataType::Time => "time without time zone".into(),
    }
}

/// The dlt type of a column as the listing names it (`information_schema.columns.data_type`,
/// with a numeric's precision and scale), as dlt reads it back: a numeric of dlt's default
/// precision is a plain `decimal`, one of its wei precision `wei`.
fn from_sql_type(t: &str) -> Option<DataType> {
    Some(match t {
        "character varying" | "text" => DataType::Text,
        "bigint" => DataType::Bigint,
        "double precision" => DataType::Double,
        "boolean" => DataType::Bool,
        "timestamp with time zone" => DataType::Timestamp,
        "jsonb" => DataType::Json,
        "date" => DataType::Date,
        "bytea" => DataType::Binary,
        "time without time zone" => DataType::Time,
        _ => resttap_load::sql::decimal_type(t.strip_prefix("numeric")?, WEI)?,
    })
}

/// What a connection is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Reading (`resttap schema`, `resttap state`): no lock.
    Read,
    /// Loading or changing the state of the whole dataset: the dataset's advisory lock is taken
    /// exclusively, or the open fails with [`LoadError::Locked`].
    Load,
    /// Loading these root tables only (`resttap run --resources`): the dataset's lock is shared
    /// and each table's taken exclusively, so that runs of disjoint resources load side by side
    /// (their commits one after the other, the pipeline state merged).
    LoadTables(Vec<String>),
}

/// A column the dataset has: its name and `information_schema` type.
#[derive(Debug, Clone)]
struct Existing {
    name: String,
    sql_type: String,
    nullable: bool,
}

/// Where this load writes a table's rows.
#[derive(Debug, Clone)]
struct Target {
    /// `"schema"."table"`.
    qualified: String,
    /// In the staging schema (the table existed when the load began).
    staged: bool,
    /// Its columns, with the types this load writes.
    columns: Vec<Column>,
}

/// One table's encoded rows not yet sent.
struct Pending {
    columns: Vec<Column>,
    buf: BytesMut,
    rows: usize,
    copy_sql: String,
    ctx: String,
}

/// A dataset in a PostgreSQL database.
pub struct Postgres {
    rt: Handle,
    client: tokio_postgres::Client,
    location: String,
    dataset: String,
    staging: String,
    /// The dataset's tables when the load began, with their columns.
    existing_at_begin: HashMap<String, Vec<Existing>>,
    /// The tables this load wrote, and where.
    written: BTreeMap<String, Target>,
    /// Rows this load wrote, per table.
    appended: HashMap<String, u64>,
    in_txn: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("location", &self.location)
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error as a message: the server's (severity, SQLSTATE, message, detail, hint),
/// or the client's with its causes (connection refused, TLS, timeout).
pub fn error_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            m.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!("; hint: {h}"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !m.contains(&s) {
            m.push_str(": ");
            m.push_str(&s);
        }
        cur = c.source();
    }
    if e.is_closed() {
        m.push_str(" (the connection to the server was lost)");
    }
    m
}

fn werr(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    let context = context.into();
    move |e| LoadError::Write { context, message: error_message(&e) }
}

impl Postgres {
    /// Connects to the database of `creds` for dataset `dataset`; with [`Access::Load`], takes
    /// the dataset's advisory lock. Must be called within a Tokio runtime.
    pub fn open(creds: &PgCredentials, dataset: &str, access: Access) -> Result<Self, LoadError> {
        let rt = Handle::current();
        let location = creds.describe();
        let open_err = |message: String| LoadError::Open { location: location.clone(), message };
        let tls = tls::connector(creds).map_err(|m| open_err(format!("TLS: {m}")))?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&creds.host)
            .port(creds.port)
            .user(&creds.username)
            .dbname(&creds.database)
            .application_name("resttap")
            .connect_timeout(creds.connect_timeout)
            .ssl_mode(match creds.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        if let Some(p) = &creds.password {
            cfg.password(p.expose());
        }
        let client = block_on(&rt, async {
            match tls {
                Some(tls) => {
                    let (client, conn) = cfg.connect(tls).await?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
                None => {
                    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
            }
        })
        .map_err(|e: tokio_postgres::Error| {
            let mut m = error_message(&e);
            if e.as_db_error().is_some_and(|d| d.code().code() == "28P01") {
                m.push_str(" (check the password in DESTINATION__POSTGRES__CREDENTIALS or .dlt/secrets.toml)");
            }
            open_err(m)
        })?;
        // the load's transaction stays open while extraction runs, idle between its batches:
        // a server-wide idle_in_transaction_session_timeout must not end it
        block_on(&rt, client.batch_execute("SET idle_in_transaction_session_timeout = 0"))
            .map_err(|e| open_err(error_message(&e)))?;
        let pg = Postgres {
            rt,
            client,
            location: location.clone(),
            dataset: dataset.to_string(),
            staging: dlt::staging_dataset(dataset),
            existing_at_begin: HashMap::new(),
            written: BTreeMap::new(),
            appended: HashMap::new(),
            in_txn: false,
        };
        if access != Access::Read {
            pg.lock(&access).map_err(|e| match e {
                LoadError::Write { message, .. } => open_err(message),
                other => other,
            })?;
        }
        Ok(pg)
    }

    /// Takes the dataset's advisory lock (session-level: it goes with the connection, also
    /// when the process dies). A holder that is still there after [`LOCK_WAIT`] (a run killed a
    /// moment ago leaves its server session to end first) is named in the error.
    fn lock(&self, access: &Access) -> Result<(), LoadError> {
        let dataset = self.dataset.as_str();
        match access {
            Access::Read => Ok(()),
            Access::Load => {
                self.take("pg_try_advisory_lock(hashtext('resttap'), hashtext($1))", dataset, "dataset", dataset)
            }
            Access::LoadTables(tables) => {
                self.take(
                    "pg_try_advisory_lock_shared(hashtext('resttap'), hashtext($1))",
                    dataset,
                    "dataset",
                    dataset,
                )?;
                for t in tables {
                    let key = format!("{dataset}.{t}");
                    self.take("pg_try_advisory_lock(hashtext('resttap-table'), hashtext($1))", &key, "table", &key)?;
                }
                Ok(())
            }
        }
    }

    /// Takes one advisory lock (`call` with `$1` = `key`), waiting up to [`LOCK_WAIT`]; then
    /// names the session that holds it.
    fn take(&self, call: &str, key: &str, what: &str, shown: &str) -> Result<(), LoadError> {
        let sql = format!("SELECT {call}");
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            let row =
                self.block(self.client.query_one(sql.as_str(), &[&key])).map_err(werr("taking the dataset's lock"))?;
            if row.get::<_, bool>(0) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let class = if what == "table" { "resttap-table" } else { "resttap" };
        let holder = self
            .block(self.client.query_opt(
                "SELECT format('session %s (%s, from %s, since %s)', a.pid, coalesce(nullif(a.application_name, ''), 'no name'), \
                 coalesce(host(a.client_addr), 'a local socket'), date_trunc('second', a.backend_start)) \
                 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() \
                 AND l.classid::int = hashtext($2) AND l.objid::int = hashtext($1) LIMIT 1",
                &[&key, &class],
            ))
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|| "another session".into());
        Err(LoadError::Locked {
            location: self.location.clone(),
            message: format!("{holder} holds the lock of {what} `{shown}`"),
        })
    }

    /// Orders this load's commit (and a first load's creation of its schemas) after any other
    /// run's on the dataset: a transaction-level lock, released at COMMIT or ROLLBACK.
    fn serialize(&self) -> Result<(), LoadError> {
        self.batch(
            &format!("SELECT pg_advisory_xact_lock(hashtext('resttap-commit'), hashtext({}))", literal(&self.dataset)),
            "waiting for another run's commit on the dataset",
        )
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        block_on(&self.rt, f)
    }

    fn q(&self, table: &str) -> String {
        qualified(&self.dataset, table)
    }

    /// Runs statements (no result); `ctx` says what for, in the error.
    fn batch(&self, sql: &str, ctx: &str) -> Result<(), LoadError> {
        tracing::trace!(sql, "postgres");
        self.block(self.client.batch_execute(sql)).map_err(werr(format!("{ctx} ({})", self.location)))
    }

    /// Runs one statement; returns the rows it changed and logs how long it took.
    fn exec(&self, sql: &str, ctx: &str) -> Result<u64, LoadError> {
        let t = std::time::Instant::now();
        let n = self.block(self.client.execute(sql, &[])).map_err(werr(format!("{ctx} ({})", self.location)))?;
        tracing::debug!(rows = n, elapsed_ms = t.elapsed().as_millis() as u64, "{ctx}");
        Ok(n)
    }

    fn schema_exists(&self, schema: &str) -> Result<bool, LoadError> {
        let row = self
            .block(self.client.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = $1", &[&schema]))
            .map_err(werr(format!("looking for schema {schema} ({})", self.location)))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Creates `schema` unless it exists (asked first: `CREATE SCHEMA IF NOT EXISTS` needs the
    /// privilege to create schemas even when there is nothing to create).
    fn ensure_schema(&self, schema: &str) -> Result<(), LoadError> {
        if self.schema_exists(schema)? {
            return Ok(());
        }
        // another run may be creating it too (its transaction not yet committed): after its
        // commit the schema is there
        if self.in_txn {
            self.serialize()?;
            if self.schema_exists(schema)? {
                return Ok(());
            }
        }
        self.batch(&format!("CREATE SCHEMA {}", ident(schema)), &format!("creating schema {schema}"))
    }

    /// Every table of the dataset with its columns, in order.
    fn listing(&self) -> Result<Vec<(String, Vec<Existing>)>, LoadError> {
        let rows = self
            .block(self.client.query(
                "SELECT table_name::text, column_name::text, \
                 CASE WHEN data_type = 'numeric' THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) ELSE data_type::text END, \
                 is_nullable = 'YES' FROM information_schema.columns \
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                &[&self.dataset],
            ))
            .map_err(werr(format!("reading the dataset's columns ({})", self.location)))?;
        let mut out: Vec<(String, Vec<Existing>)> = Vec::new();
        for r in rows {
            let (t, name, sql_type, nullable): (String, String, String, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if out.last().is_none_or(|last| last.0 != t) {
                out.push((t, Vec::new()));
            }
            out.last_mut().expect("pushed").1.push(Existing { name, sql_type, nullable });
        }
        Ok(out)
    }

    /// The rows of `table` (a full count).
    fn count(&self, sql: &str, ctx: &str) -> Result<u64, LoadError> {
        let row = self.block(self.client.query_one(sql, &[])).map_err(werr(format!("{ctx} ({})", self.location)))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Creates a system table when the dataset lacks it.
    fn ensure_system_table(&self, name: &str) -> Result<(), LoadError> {
        let defs: Vec<String> = dlt::system_columns(name)
            .iter()
            .map(|c| {
                let ty = match dlt::system_text_length(name, &c.name) {
                    Some(n) => format!("varchar({n})"),
                    None => sql_type(c.data_type).to_string(),
                };
                column_def(name, &c.name, &ty, c.nullable)
            })
            .collect();
        self.batch(
            &format!("CREATE TABLE IF NOT EXISTS {} ({})", self.q(name), defs.join(", ")),
            &format!("creating {name}"),
        )
    }

    /// Makes `target` (a table this load writes) have `columns`: created with them when it is
    /// new, else widened by those it lacks. A column the dataset has with another type than
    /// resttap writes is an error naming both.
    fn prepare_target(&mut self, table: &str, columns: &[Column]) -> Result<(), LoadError> {
        let ctx = format!("writing rows of table {}.{table}", self.dataset);
        check_lengths(table, columns)?;
        if let Some(t) = self.written.get(table) {
            let missing: Vec<&Column> =
                columns.iter().filter(|c| !t.columns.iter().any(|k| k.name == c.name)).collect();
            if !missing.is_empty() {
                if let Some(existing) = self.existing_at_begin.get(table) {
                    let missing: Vec<Column> = missing.iter().map(|c| (*c).clone()).collect();
                    check_types(&self.dataset, table, existing, &missing)?;
                }
                let adds: Vec<String> = missing
                    .iter()
                    .map(|c| format!("ADD COLUMN {} {}", ident(&c.name), sql_type(c.data_type)))
                    .collect();
                self.batch(&format!("ALTER TABLE {} {}", t.qualified, adds.join(", ")), &ctx)?;
                let t = self.written.get_mut(table).expect("present");
                t.columns.extend(missing.into_iter().cloned());
            }
            return Ok(());
        }
        let staged = self.existing_at_begin.contains_key(table);
        if let Some(existing) = self.existing_at_begin.get(table) {
            check_types(&self.dataset, table, existing, columns)?;
        }
        let qualified = if staged {
            self.ensure_schema(&self.staging.clone())?;
            let q = qualified(&self.staging, table);
            // a staging table dlt (or anyone) left is replaced by this load's own
            let defs: Vec<String> =
                columns.iter().map(|c| format!("{} {}", ident(&c.name), sql_type(c.data_type))).collect();
            self.batch(
                &format!("DROP TABLE IF EXISTS {q}; CREATE UNLOGGED TABLE {q} ({})", defs.join(", ")),
                &format!("creating staging table {}.{table}", self.staging),
            )?;
            q
        } else {
            let q = self.q(table);
            // the unique index on _dlt_id is added at the commit, once the rows are in
            let defs: Vec<String> =
                columns.iter().map(|c| column_def("", &c.name, &sql_type(c.data_type), c.nullable)).collect();
            self.batch(&format!("CREATE TABLE {q} ({})", defs.join(", ")), &ctx)?;
            q
        };
        self.written.insert(table.to_string(), Target { qualified, staged, columns: columns.to_vec() });
        Ok(())
    }

    /// Sends a table's pending rows in one `COPY`.
    fn flush(&self, p: &mut Pending) -> Result<(), LoadError> {
        if p.rows == 0 {
            return Ok(());
        }
        let mut data = std::mem::replace(&mut p.buf, BytesMut::with_capacity(COPY_BYTES + (64 << 10)));
        data.put_slice(copy::TRAILER);
        p.buf.put_slice(copy::HEADER);
        let rows = std::mem::take(&mut p.rows);
        let data: Bytes = data.freeze();
        let sent = self.block(async {
            let sink = self.client.copy_in::<_, Bytes>(p.copy_sql.as_str()).await?;
            futures::pin_mut!(sink);
            sink.send(data).await?;
            sink.as_mut().finish().await
        });
        let n = sent.map_err(werr(format!("{} ({})", p.ctx, self.location)))?;
        if n != rows as u64 {
            return Err(LoadError::Write {
                context: format!("{} ({})", p.ctx, self.location),
                message: format!("COPY took {n} rows of {rows}"),
            });
        }
        resttap_load::crash_point("mid_copy");
        Ok(())
    }

    /// Applies one resource's write disposition to the dataset's existing tables (the deletes);
    /// the rows themselves move in afterwards. Returns the rows it dropped from this load's own
    /// (duplicate keys), per table.
    fn apply(&self, res: &ResourceLoad, plan: &LoadPlan) -> Result<HashMap<String, u64>, LoadError> {
        let root = res.root_table.as_str();
        let tables: Vec<&Table> = resource_tables(&plan.schema, root).collect();
        let existed = |t: &str| self.existing_at_begin.contains_key(t);
        let ctx = |what: &str| format!("{what} for resource {} (table {}.{root})", res.resource, self.dataset);
        if res.write_disposition == WriteDisposition::Replace {
            let old: Vec<String> = tables.iter().filter(|t| existed(&t.name)).map(|t| self.q(&t.name)).collect();
            if !old.is_empty() {
                self.exec(&format!("TRUNCATE {}", old.join(", ")), &ctx("replacing rows"))?;
            }
        }
        if res.write_disposition != WriteDisposition::Merge || !self.written.contains_key(root) {
            return Ok(HashMap::new());
        }
        let steps = resttap_load::merge::plan(res, plan, &tables, &Sides { db: self });
        resttap_load::merge::execute(&steps, self)
    }

    fn commit_inner(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError> {
        // the commit's statements each run once over whole tables: JIT compiling them cost
        // 80-150 ms apiece, and hash joins of 100,000 keys spilled to disk under the default
        // work_mem (4MB) (EXPLAIN ANALYZE, N=100,000 merge run: nested delete 456 -> 187 ms)
        self.batch(&format!("SET LOCAL jit = off; SET LOCAL work_mem = '{COMMIT_WORK_MEM}'"), "preparing the commit")?;
        self.serialize()?;
        self.ensure_schema(&self.dataset.clone())?;
        // existing tables the load did not write still get the columns their schema has (hints);
        // a table two resources share is in the plan twice
        let mut evolved: HashSet<String> = HashSet::new();
        for t in &plan.schema.tables {
            if self.written.contains_key(&t.name) {
                continue;
            }
            if let Some(known) = self.existing_at_begin.get(&t.name) {
                let adds: Vec<String> = t
                    .columns
                    .iter()
                    .filter(|c| !known.iter().any(|k| k.name == c.name))
                    .filter(|c| evolved.insert(format!("{}\u{0}{}", t.name, c.name)))
                    .map(|c| format!("ADD COLUMN {} {}", ident(&c.name), sql_type(c.data_type)))
                    .collect();
                if !adds.is_empty() {
                    let ctx = format!("evolving table {}.{}", self.dataset, t.name);
                    self.batch(&format!("ALTER TABLE {} {}", self.q(&t.name), adds.join(", ")), &ctx)?;
                }
            }
        }
        // staged tables: the dataset's table gets the columns the load brought, with the types
        // they were staged with
        for (table, target) in self.written.iter().filter(|(_, t)| t.staged) {
            let known = &self.existing_at_begin[table];
            let adds: Vec<String> = target
                .columns
                .iter()
                .filter(|c| !known.iter().any(|k| k.name == c.name))
                .map(|c| format!("ADD COLUMN {} {}", ident(&c.name), sql_type(c.data_type)))
                .collect();
            if !adds.is_empty() {
                let ctx = format!("evolving table {}.{table}", self.dataset);
                self.batch(&format!("ALTER TABLE {} {}", self.q(table), adds.join(", ")), &ctx)?;
            }
        }
        // (no ANALYZE of the staged tables: with JIT off and this work_mem the planner's guess
        // of their size gave hash joins anyway; ANALYZE took 165 ms a 100,000-row table and
        // saved 60 ms in the delete it served)
        let mut dropped: HashMap<String, u64> = HashMap::new();
        for res in &plan.resources {
            let t = std::time::Instant::now();
            for (table, n) in self.apply(res, plan)? {
                *dropped.entry(table).or_default() += n;
            }
            tracing::debug!(resource = %res.resource, elapsed_ms = t.elapsed().as_millis() as u64, "applied");
        }
        // the staged rows move in; tables created by this load get dlt's unique index now that
        // their rows are in (one index build instead of one insert per row into it)
        let mut drop_staging = Vec::new();
        for (table, target) in &self.written {
            let ctx = format!("moving the staged rows into {}.{table}", self.dataset);
            if target.staged {
                let list = target.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
                let sql = format!("INSERT INTO {} ({list}) SELECT {list} FROM {}", self.q(table), target.qualified);
                let rows = self
                    .appended
                    .get(table)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(dropped.get(table).copied().unwrap_or(0));
                let rebuild = self.index_to_rebuild(table, rows)?;
                if let Some((name, _)) = &rebuild {
                    let sql = format!("ALTER TABLE {} DROP CONSTRAINT {}", self.q(table), ident(name));
                    self.batch(
                        &sql,
                        &format!("dropping the unique index of {}.{table} for the rebuild", self.dataset),
                    )?;
                }
                self.exec(&sql, &ctx)?;
                if let Some((name, definition)) = &rebuild {
                    let sql = format!("ALTER TABLE {} ADD CONSTRAINT {} {definition}", self.q(table), ident(name));
                    self.exec(&sql, &format!("rebuilding the unique index of {}.{table}", self.dataset))?;
                }
                drop_staging.push(target.qualified.clone());
            } else if target.columns.iter().any(|c| dlt::unique_column(table, &c.name))
                && !dlt::versioned_root(plan, table)
            {
                let sql = format!("ALTER TABLE {} ADD UNIQUE ({})", target.qualified, ident(cols::ID));
                self.batch(&sql, &format!("indexing {}.{table}", self.dataset))?;
            }
        }
        if !drop_staging.is_empty() {
            self.batch(&format!("DROP TABLE {}", drop_staging.join(", ")), "dropping the staging tables")?;
        }
        resttap_load::crash_point("in_commit");
        let mut rows = SystemRows::for_plan(plan);
        // another run of the pipeline (other resources) may have committed its state since this
        // one read it: this load's resources' positions go over the latest state
        if let Some(ours) = &plan.state {
            let latest = self.load_state(&ours.pipeline_name)?;
            rows.state =
                dlt::merge_state(latest, ours, &plan.state_resources).map(|s| dlt::StateRow::new(&s, &plan.load_id));
        }
        self.write_system_rows(&rows)?;
        let tables = self
            .written
            .keys()
            .map(|t| TableReport {
                table: t.clone(),
                rows: self.appended.get(t).copied().unwrap_or(0).saturating_sub(dropped.get(t).copied().unwrap_or(0)),
            })
            .collect::<Vec<_>>();
        // the report lists tables in the plan's order (parents before children)
        let order: Vec<&str> = plan.schema.tables.iter().map(|t| t.name.as_str()).collect();
        let mut tables = tables;
        tables.sort_by_key(|t| order.iter().position(|n| *n == t.table).unwrap_or(usize::MAX));
        Ok(CommitReport { load_id: plan.load_id.clone(), tables })
    }

    /// The name of `table`'s unique constraint on `_dlt_id`, when adding `rows` rows is cheaper
    /// by dropping it and building it again over the whole table than by inserting into it:
    /// measured (N=100,000 merge run, 100,000 rows into a table of 100,000): the insert took
    /// 0.46 s with the index, 0.13 s without it, 0.30 s with the index built again afterwards;
    /// maintaining it costs ~3.3 µs a new row, building it ~0.85 µs a row of the table, so the
    /// rebuild wins from a quarter of the table's rows. The table's size is read from its
    /// index (~70 bytes an entry, dead entries of the rows this merge deleted included). The
    /// rebuild locks the table (ACCESS EXCLUSIVE) until the commit ends, so it is kept to large
    /// loads ([`REBUILD_MIN_ROWS`]).
    /// Returns the constraint's name and definition (`pg_get_constraintdef`), to add it again
    /// as it was; a deferrable one, or one a foreign key depends on, is left alone.
    fn index_to_rebuild(&self, table: &str, rows: u64) -> Result<Option<(String, String)>, LoadError> {
        if rows < REBUILD_MIN_ROWS {
            return Ok(None);
        }
        let row = self
            .block(self.client.query_opt(
                "SELECT con.conname::text, pg_get_constraintdef(con.oid), pg_relation_size(con.conindid) FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 \
                 WHERE n.nspname = $1 AND c.relname = $2 AND con.contype = 'u' AND con.conkey = ARRAY[a.attnum] \
                 AND NOT con.condeferrable \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = con.conindid) \
                 ORDER BY con.oid LIMIT 1",
                &[&self.dataset, &table, &cols::ID],
            ))
            .map_err(werr(format!("reading the indexes of {}.{table} ({})", self.dataset, self.location)))?;
        Ok(row.and_then(|r| {
            let (name, definition, bytes): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            (rows.saturating_mul(INDEX_ENTRY_BYTES * 4) >= bytes.max(0) as u64).then_some((name, definition))
        }))
    }

    fn write_system_rows(&self, rows: &SystemRows) -> Result<(), LoadError> {
        self.ensure_system_table(dlt::LOADS)?;
        let l = &rows.load;
        self.block(self.client.execute(
            &format!("INSERT INTO {} VALUES ($1, $2, $3, now(), $4)", self.q(dlt::LOADS)),
            &[&l.load_id, &l.schema_name, &l.status, &l.schema_version_hash],
        ))
        .map_err(werr(format!("recording the load in _dlt_loads ({})", self.location)))?;
        self.ensure_system_table(dlt::VERSION)?;
        let v = &rows.version;
        let ctx = format!("recording the schema in _dlt_version ({})", self.location);
        self.block(self.client.execute(
            &format!(
                "INSERT INTO {t} SELECT coalesce(max(version), 0) + 1, $1::bigint, now(), $2::varchar, $3::varchar, $4::varchar \
                 FROM {t} HAVING NOT coalesce(bool_or(version_hash = $3::varchar), false)",
                t = self.q(dlt::VERSION)
            ),
            &[&v.engine_version, &v.schema_name, &v.version_hash, &v.schema],
        ))
        .map_err(werr(ctx))?;
        if let Some(state) = &rows.state {
            self.write_state(state)?;
        }
        Ok(())
    }

    fn write_state(&self, row: &dlt::StateRow) -> Result<(), LoadError> {
        self.ensure_system_table(dlt::PIPELINE_STATE)?;
        self.block(self.client.execute(
            &format!("INSERT INTO {} VALUES ($1, $2, $3, $4, now(), $5, $6, $7)", self.q(dlt::PIPELINE_STATE)),
            &[
                &row.version,
                &row.engine_version,
                &row.pipeline_name,
                &row.state,
                &row.version_hash,
                &row.load_id,
                &row.id,
            ],
        ))
        .map_err(werr(format!("writing the pipeline state ({})", self.location)))?;
        Ok(())
    }

    fn table_exists(&self, table: &str) -> Result<bool, LoadError> {
        let row = self
            .block(self.client.query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
                &[&self.dataset, &table],
            ))
            .map_err(werr(format!("looking for table {table} ({})", self.location)))?;
        Ok(row.get::<_, i64>(0) > 0)
    }
}

/// Runs the connection until it closes; its errors reach the client's next call.
async fn drive<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %error_message(&e), "postgres connection closed");
    }
}

/// Waits for `f` on `rt`, from a thread that is not one of its async workers (see the
/// crate's documentation).
fn block_on<F: Future>(rt: &Handle, f: F) -> F::Output {
    rt.block_on(f)
}

/// The two sides of a PostgreSQL load: the rows a table held when the load began are in the
/// dataset's table; the load's rows of a table that existed are in its staging table until the
/// commit moves them in, and those of a table the load created are in that table.
struct Sides<'a> {
    db: &'a Postgres,
}

impl resttap_load::merge::Rows for Sides<'_> {
    fn older(&self, table: &str) -> Option<String> {
        self.db.existing_at_begin.contains_key(table).then(|| self.db.q(table))
    }

    fn loaded(&self, table: &str) -> Option<String> {
        let t = self.db.written.get(table)?;
        Some(format!("(SELECT *, ctid AS {} FROM {})", resttap_load::merge::POSITION, t.qualified))
    }

    fn target(&self, table: &str, side: resttap_load::merge::Side) -> Option<resttap_load::merge::Target> {
        use resttap_load::merge::{Side, Target};
        match side {
            Side::Old => self.older(table).map(|table| Target { table, filter: None }),
            Side::New => self.db.written.get(table).map(|t| Target { table: t.qualified.clone(), filter: None }),
        }
    }

    fn position(&self) -> &'static str {
        "ctid"
    }
}

impl resttap_load::merge::Sql for Postgres {
    fn run(&self, sql: &str, context: &str) -> Result<u64, LoadError> {
        self.exec(sql, context)
    }

    fn count(&self, sql: &str, context: &str) -> Result<u64, LoadError> {
        Postgres::count(self, sql, context)
    }

    fn sample(&self, sql: &str, context: &str) -> Result<Option<String>, LoadError> {
        let row =
            self.block(self.client.query_opt(sql, &[])).map_err(werr(format!("{context} ({})", self.location)))?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    }
}

/// `"name" type [UNIQUE] [NOT NULL]`, as dlt writes a column (`_dlt_id` unique: with `table`
/// empty, the index comes later).
fn column_def(table: &str, name: &str, sql_type: &str, nullable: bool) -> String {
    let unique = if !table.is_empty() && dlt::unique_column(table, name) { " UNIQUE" } else { "" };
    format!("{} {sql_type}{unique}{}", ident(name), if nullable { "" } else { " NOT NULL" })
}

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1): longer ones are cut silently.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Refuses a table or column name PostgreSQL would cut to 63 bytes (the next load would then
/// not find it under its full name). dlt shortens such names with a hash; resttap does not yet.
fn check_lengths(table: &str, columns: &[Column]) -> Result<(), LoadError> {
    let long = std::iter::once(("table", table))
        .chain(columns.iter().map(|c| ("column", c.name.as_str())))
        .find(|(_, n)| n.len() > MAX_IDENTIFIER_BYTES);
    match long {
        None => Ok(()),
        Some((what, name)) => Err(LoadError::Write {
            context: format!("writing rows of table {table}"),
            message: format!(
                "the {what} name `{name}` is {} bytes long, and PostgreSQL keeps {MAX_IDENTIFIER_BYTES}: resttap does not shorten names as dlt does yet; \
                 lower `max_table_nesting` or rename the field with a processing step (`map: {{rename: ...}}`)",
                name.len()
            ),
        }),
    }
}

/// A column of a table the load writes that the dataset has with another type.
fn check_types(dataset: &str, table: &str, existing: &[Existing], columns: &[Column]) -> Result<(), LoadError> {
    for c in columns {
        if let Some(e) = existing.iter().find(|e| e.name == c.name)
            && from_sql_type(&e.sql_type).map(sql_type) != Some(sql_type(c.data_type))
        {
            return Err(LoadError::Write {
                context: format!("writing rows of table {dataset}.{table}"),
                message: format!(
                    "column `{}` has type {} in the dataset, but resttap writes {} ({}) there; change the column to {} or drop it, then run again",
                    c.name,
                    e.sql_type,
                    c.data_type,
                    sql_type(c.data_type),
                    sql_type(c.data_type)
                ),
            });
        }
    }
    Ok(())
}

/// A resource's tables in `schema`: its root table, then its nested tables, parents first.
fn resource_tables<'a>(schema: &'a Schema, root: &'a str) -> impl Iterator<Item = &'a Table> + 'a {
    schema.table(root).into_iter().chain(schema.descendants(root))
}

/// `"schema"."table"`.
fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

impl Destination for Postgres {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn describe(&mut self) -> Result<Vec<TableInfo>, LoadError> {
        let mut out = Vec::new();
        for (name, columns) in self.listing()? {
            let rows =
                self.count(&format!("SELECT count(*) FROM {}", self.q(&name)), &format!("counting rows of {name}"))?;
            let columns = columns
                .into_iter()
                .map(|c| ColumnInfo { name: c.name, data_type: c.sql_type, nullable: c.nullable })
                .collect();
            out.push(TableInfo { name, rows, columns });
        }
        Ok(out)
    }

    fn loads(&mut self) -> Result<Vec<LoadInfo>, LoadError> {
        if !self.table_exists(dlt::LOADS)? {
            return Ok(Vec::new());
        }
        let ctx = format!("reading _dlt_loads ({})", self.location);
        let sql = format!(
            "SELECT load_id::text, coalesce(schema_name, '')::text, status::bigint, \
             round(extract(epoch FROM inserted_at) * 1000000)::bigint FROM {} ORDER BY inserted_at DESC, load_id DESC",
            self.q(dlt::LOADS)
        );
        let rows = self.block(self.client.query(&sql, &[])).map_err(werr(&ctx))?;
        let mut loads: Vec<LoadInfo> = rows
            .iter()
            .map(|r| LoadInfo {
                load_id: r.get(0),
                schema_name: r.get(1),
                status: r.get(2),
                inserted_at: resttap_schema::timestamp::format_timestamp(r.get(3)),
                tables: Vec::new(),
            })
            .collect();
        let listing = format!("listing the tables with _dlt_load_id ({})", self.location);
        let tables: Vec<String> = self
            .block(self.client.query(
                "SELECT table_name::text FROM information_schema.columns WHERE table_schema = $1 AND column_name = $2 \
                 ORDER BY table_name",
                &[&self.dataset, &cols::LOAD_ID],
            ))
            .map_err(werr(listing))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let index: HashMap<String, usize> = loads.iter().enumerate().map(|(i, l)| (l.load_id.clone(), i)).collect();
        for table in tables.iter().filter(|t| !dlt::SYSTEM_TABLES.contains(&t.as_str())) {
            let ctx = format!("counting the rows of each load in {}.{table} ({})", self.dataset, self.location);
            let sql = format!(
                "SELECT {id}::text, count(*) FROM {q} WHERE {id} IS NOT NULL GROUP BY {id}",
                id = ident(cols::LOAD_ID),
                q = self.q(table)
            );
            for r in self.block(self.client.query(&sql, &[])).map_err(werr(ctx))? {
                let (load_id, n): (String, i64) = (r.get(0), r.get(1));
                if let Some(&i) = index.get(&load_id) {
                    loads[i].tables.push(LoadRows { table: table.clone(), rows: n.max(0) as u64 });
                }
            }
        }
        resttap_load::sort_loads(&mut loads);
        Ok(loads)
    }

    fn existing_schema(&mut self) -> Result<Schema, LoadError> {
        let listing = self
            .listing()?
            .into_iter()
            .map(|(table, columns)| {
                let columns = columns
                    .into_iter()
                    .filter_map(|c| match from_sql_type(&c.sql_type) {
                        Some(data_type) => Some(Column { name: c.name, data_type, nullable: c.nullable, primary_key: false }),
                        None => {
                            tracing::warn!(table = %table, column = %c.name, sql_type = %c.sql_type, "column type not produced by resttap");
                            None
                        }
                    })
                    .collect();
                (table, columns)
            })
            .collect();
        Ok(dlt::schema_from_listing(listing))
    }

    fn stored_schema(&mut self) -> Result<Option<String>, LoadError> {
        if !self.table_exists(dlt::VERSION)? {
            return Ok(None);
        }
        let sql =
            format!("SELECT schema FROM {} ORDER BY inserted_at DESC, version DESC LIMIT 1", self.q(dlt::VERSION));
        let row = self
            .block(self.client.query_opt(&sql, &[]))
            .map_err(werr(format!("reading _dlt_version ({})", self.location)))?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    }

    fn load_state(&mut self, pipeline: &str) -> Result<Option<PipelineState>, LoadError> {
        if !self.table_exists(dlt::PIPELINE_STATE)? {
            return Ok(None);
        }
        let row = self
            .block(self.client.query_opt(
                &format!(
                    "SELECT state::text FROM {} WHERE pipeline_name = $1 ORDER BY version DESC, created_at DESC LIMIT 1",
                    self.q(dlt::PIPELINE_STATE)
                ),
                &[&pipeline],
            ))
            .map_err(werr(format!("reading the pipeline state ({})", self.location)))?;
        row.map(|r| {
            PipelineState::decode(&r.get::<_, String>(0)).map_err(|e| LoadError::Write {
                context: format!("reading the pipeline state ({})", self.location),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    fn save_state(&mut self, state: &PipelineState) -> Result<(), LoadError> {
        let load_id = format!(
            "{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
        );
        self.batch("BEGIN", "starting a transaction")?;
        let result = self
            .ensure_schema(&self.dataset.clone())
            .and_then(|()| self.write_state(&dlt::StateRow::new(state, &load_id)))
            .and_then(|()| self.batch("COMMIT", "committing the state"));
        if result.is_err() {
            let _ = self.block(self.client.batch_execute("ROLLBACK"));
        }
        result
    }

    fn begin(&mut self, _load_id: &str) -> Result<(), LoadError> {
        self.abort();
        self.existing_at_begin = self.listing()?.into_iter().collect();
        self.batch("BEGIN", "starting the load transaction")?;
        self.in_txn = true;
        Ok(())
    }

    fn stage_all(&mut self, batches: &mut dyn Iterator<Item = TableBatch>) -> Result<(), LoadError> {
        if !self.in_txn {
            self.begin("")?;
        }
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        for batch in batches {
            let same = pending
                .get(&batch.table)
                .is_some_and(|p| p.columns.iter().map(|c| &c.name).eq(batch.columns.iter().map(|c| &c.name)));
            if !same {
                // the columns changed: what is pending goes in before the table grows
                if let Some(mut p) = pending.remove(&batch.table) {
                    self.flush(&mut p)?;
                }
                if seen.insert(batch.table.clone()) && !self.written.contains_key(&batch.table) {
                    self.ensure_schema(&self.dataset.clone())?;
                }
                self.prepare_target(&batch.table, &batch.columns)?;
                let target = &self.written[&batch.table];
                let list = batch.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
                let mut buf = BytesMut::with_capacity(COPY_BYTES + (64 << 10));
                buf.put_slice(copy::HEADER);
                pending.insert(
                    batch.table.clone(),
                    Pending {
                        columns: batch.columns.clone(),
                        buf,
                        rows: 0,
                        // a table created in this transaction takes its rows frozen: readers
                        // after the commit need not set hint bits on every page (writing it again)
                        copy_sql: format!(
                            "COPY {} ({list}) FROM STDIN (FORMAT binary{})",
                            target.qualified,
                            if target.staged { "" } else { ", FREEZE" }
                        ),
                        ctx: format!("writing rows of table {}.{}", self.dataset, batch.table),
                    },
                );
            }
            let p = pending.get_mut(&batch.table).expect("inserted above");
            copy::encode_rows(&p.columns, &batch.batch, &mut p.buf)
                .map_err(|e| LoadError::Write { context: p.ctx.clone(), message: e.to_string() })?;
            p.rows += batch.batch.num_rows();
            *self.appended.entry(batch.table.clone()).or_default() += batch.batch.num_rows() as u64;
            if p.buf.len() >= COPY_BYTES || batch.last {
                let mut p = pending.remove(&batch.table).expect("present");
                self.flush(&mut p)?;
                pending.insert(batch.table.clone(), p);
            }
        }
        for p in pending.values_mut() {
            self.flush(p)?;
        }
        Ok(())
    }

    fn commit(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError> {
        if !self.in_txn {
            self.begin(&plan.load_id)?;
        }
        match self.commit_inner(plan) {
            Ok(report) => {
                let t = std::time::Instant::now();
                let committed = self.batch("COMMIT", "committing the load");
                self.in_txn = false;
                self.written.clear();
                self.appended.clear();
                committed?;
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "COMMIT");
                Ok(report)
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    fn abort(&mut self) {
        if self.in_txn {
            let _ = self.block(self.client.batch_execute("ROLLBACK"));
            self.in_txn = false;
        }
        self.written.clear();
        self.appended.clear();
    }
}
