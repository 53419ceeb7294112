//! The loader's side of a run: the one thread that owns the destination, stages what the
//! resources send, and commits — at the end, and at checkpoints (`run --checkpoint-every`).
//!
//! # Checkpoints
//!
//! A checkpoint is a load of its own (its own load id, `_dlt_loads` row and state), committed
//! part-way through a run, so that a run killed or failed after it resumes from there. Every
//! resource's rows up to a point it chose, and its state at that point, must go in together:
//!
//! - Resources count the records they normalize on a shared [`Clock`]; once it says a
//!   checkpoint is due (N records, or a time, since the last commit), each resource at its next
//!   boundary — a page read in full for a resource whose cursor rises page by page
//!   (`row_order: asc`), a window read in full for `incremental.window` — hands over every row
//!   it buffered and sends a [`Msg::Mark`] with its schema and state so far, then waits.
//! - When every resource that has started and not finished is waiting, the loader commits what
//!   it staged (all of it is covered by the marks, as marks travel behind the rows on the same
//!   channel), begins the next load and tells the waiting resources its load id.
//! - Only resources whose boundaries make a safe place to resume take part: the pipeline refuses
//!   `--checkpoint-every` for the others before any request ([`crate::pipeline`]).
//!
//! Without `--checkpoint-every` nothing is ever due and the run is one load, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resttap_load::{CommitReport, Destination, LoadError, LoadPlan, PipelineState, ResourceLoad, TableReport};
use resttap_normalize::TableBatch;
use resttap_schema::Schema;
use resttap_state::ResourceState;
use tokio::sync::{mpsc, oneshot};

/// `run --checkpoint-every`: how often a run commits what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// After at least this many records (of all resources together).
    Records(u64),
    /// After at least this long since the last commit.
    Time(Duration),
}

impl CheckpointEvery {
    /// Parses `--checkpoint-every`: a number of records (`50000`), or a duration (`5m`, `90s`,
    /// `PT1H`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return match t.replace('_', "").parse::<u64>() {
                Ok(0) | Err(_) => Err(format!("`{text}`: give a number of records above 0, or a duration such as 5m")),
                Ok(n) => Ok(CheckpointEvery::Records(n)),
            };
        }
        match resttap_config::duration::parse_duration(t) {
            Ok(d) if !d.is_zero() => Ok(CheckpointEvery::Time(d)),
            Ok(_) => Err(format!("`{text}`: a checkpoint interval must be longer than zero")),
            Err(e) => Err(format!("`{text}` is neither a number of records nor a duration: {e}")),
        }
    }
}

/// When the next checkpoint is due, shared by the resources and the loader.
#[derive(Debug)]
pub struct Clock {
    every: Option<CheckpointEvery>,
    records: AtomicU64,
    since: std::sync::Mutex<Instant>,
}

impl Clock {
    pub fn new(every: Option<CheckpointEvery>) -> Self {
        Clock { every, records: AtomicU64::new(0), since: std::sync::Mutex::new(Instant::now()) }
    }

    /// Whether the run commits at checkpoints at all.
    pub fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// Counts `n` more records normalized.
    pub fn count(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether a checkpoint is due. Once it is, it stays due until the loader commits.
    pub fn due(&self) -> bool {
        match self.every {
            None => false,
            Some(CheckpointEvery::Records(n)) => self.records.load(Ordering::Relaxed) >= n,
            Some(CheckpointEvery::Time(d)) => self.since.lock().map(|s| s.elapsed() >= d).unwrap_or(true),
        }
    }

    fn reset(&self) {
        self.records.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.since.lock() {
            *s = Instant::now();
        }
    }
}

/// What a resource tells the loader, in order on one channel.
pub enum Msg {
    /// A resource starts; `reply` receives the load id its rows get.
    Start { resource: String, load: Option<ResourceLoad>, reply: oneshot::Sender<Arc<str>> },
    /// Rows to stage.
    Rows(TableBatch),
    /// Every row of `resource` so far has been sent; with them, its tables and its state are
    /// these. `reply`: the resource waits for a checkpoint's commit, and learns the next load's
    /// id; `None`: the resource has finished.
    Mark(Mark),
}

pub struct Mark {
    pub resource: String,
    pub schema: Schema,
    /// See [`ResourceLoad::keys_unique`].
    pub keys_unique: bool,
    /// The resource's state to store (`None`: it has none, the stored one stays).
    pub state: Option<ResourceState>,
    pub reply: Option<oneshot::Sender<Arc<str>>>,
}

/// What the resources have told the loader.
#[derive(Default)]
pub struct Known {
    loads: BTreeMap<String, ResourceLoad>,
    schemas: BTreeMap<String, Schema>,
    states: BTreeMap<String, ResourceState>,
    /// Started and not finished.
    running: BTreeSet<String>,
    /// Every resource that started.
    started: BTreeSet<String>,
    /// Running, or finished in the load being staged: the resources the next commit is for.
    in_load: BTreeSet<String>,
    waiting: Vec<(String, oneshot::Sender<Arc<str>>)>,
}

impl Known {
    fn take(&mut self, m: Mark) {
        self.schemas.insert(m.resource.clone(), m.schema);
        if let Some(l) = self.loads.get_mut(&m.resource) {
            l.keys_unique = m.keys_unique;
        }
        if let Some(st) = m.state {
            self.states.insert(m.resource.clone(), st);
        }
        match m.reply {
            Some(reply) => self.waiting.push((m.resource, reply)),
            None => {
                self.running.remove(&m.resource);
            }
        }
    }

    /// The root table of a resource that started, when it is loaded.
    pub fn root_table(&self, resource: &str) -> Option<&str> {
        self.loads.get(resource).map(|l| l.root_table.as_str())
    }

    /// A checkpoint can commit: someone waits for it, and every running resource does.
    fn barrier_complete(&self) -> bool {
        !self.waiting.is_empty() && self.running.iter().all(|r| self.waiting.iter().any(|(w, _)| w == r))
    }
}

/// The loader's part of a run, on its own blocking thread.
pub struct Loader {
    pub dest: Box<dyn Destination>,
    pub known: Known,
    pub load_id: Arc<str>,
    /// The resources in the configuration's order (a plan lists tables parents first).
    pub order: Vec<String>,
    /// The state the last commit left (or the run started with).
    pub state: PipelineState,
    pub clock: Arc<Clock>,
    /// What each checkpoint committed, in order.
    pub checkpoints: Vec<CommitReport>,
}

impl Loader {
    /// Stages everything the resources send, committing at checkpoints, until every sender is
    /// gone. An `Err` leaves the load being staged uncommitted (the caller aborts it).
    pub fn run(&mut self, rx: &mut mpsc::Receiver<Msg>) -> Result<(), LoadError> {
        let (start, mut waited) = (Instant::now(), Duration::ZERO);
        loop {
            let mut ended = false;
            let mut checkpoint = false;
            let Loader { dest, known, load_id, .. } = self;
            let mut next = || {
                loop {
                    let t = Instant::now();
                    let msg = rx.blocking_recv();
                    waited += t.elapsed();
                    match msg {
                        None => {
                            ended = true;
                            return None;
                        }
                        Some(Msg::Rows(b)) => return Some(b),
                        Some(Msg::Start { resource, load, reply }) => {
                            known.running.insert(resource.clone());
                            known.started.insert(resource.clone());
                            known.in_load.insert(resource.clone());
                            if let Some(l) = load {
                                known.loads.insert(resource, l);
                            }
                            let _ = reply.send(Arc::clone(load_id));
                        }
                        Some(Msg::Mark(m)) => {
                            known.take(m);
                            if known.barrier_complete() {
                                checkpoint = true;
                                return None;
                            }
                        }
                    }
                }
            };
            dest.stage_all(&mut std::iter::from_fn(&mut next))?;
            if ended {
                break;
            }
            if checkpoint {
                self.checkpoint()?;
            }
        }
        tracing::debug!(busy_ms = (start.elapsed() - waited).as_millis() as u64, "staging done");
        Ok(())
    }

    /// Commits what is staged as a load of its own, begins the next, and lets the waiting
    /// resources go on.
    fn checkpoint(&mut self) -> Result<(), LoadError> {
        let plan = self.plan();
        let report = self.dest.commit(&plan)?;
        if let Some(st) = plan.state {
            self.state = st;
        }
        tracing::info!(load_id = %self.load_id, "checkpoint committed");
        self.checkpoints.push(report);
        crate::pipeline::crash_point("after_checkpoint");
        let mut next = crate::pipeline::new_load_id();
        while *next == *self.load_id {
            std::thread::sleep(Duration::from_millis(1));
            next = crate::pipeline::new_load_id();
        }
        self.load_id = Arc::from(next.as_str());
        self.dest.begin(&next)?;
        self.clock.reset();
        self.known.in_load = self.known.running.clone();
        for (_, reply) in self.known.waiting.drain(..) {
            let _ = reply.send(Arc::clone(&self.load_id));
        }
        Ok(())
    }

    /// The plan of the load being staged: the tables of every resource so far, the loads of the
    /// resources in it, and the state as its marks left it.
    pub fn plan(&self) -> LoadPlan {
        let known = &self.known;
        let mut schema = Schema::default();
        for r in self.order.iter().filter_map(|r| known.schemas.get(r)) {
            schema.tables.extend(r.tables.iter().cloned());
        }
        let mut state = self.state.clone();
        for (r, st) in &known.states {
            state.resources.insert(r.clone(), st.clone());
        }
        let changed = state.content_hash() != self.state.content_hash();
        if changed {
            state.version = self.state.version + 1;
        }
        let resources = self
            .order
            .iter()
            .filter(|r| known.in_load.contains(*r))
            .filter_map(|r| known.loads.get(r).cloned())
            .collect();
        LoadPlan {
            load_id: self.load_id.to_string(),
            schema_name: "rest_api".into(),
            schema,
            resources,
            state: changed.then_some(state),
            state_resources: self.order.iter().filter(|r| known.started.contains(*r)).cloned().collect(),
        }
    }

    /// The rows of every commit of the run, the checkpoints' and `last`, per table.
    pub fn total(&self, last: CommitReport) -> CommitReport {
        let mut tables: Vec<TableReport> = Vec::new();
        for t in self.checkpoints.iter().chain(std::iter::once(&last)).flat_map(|r| &r.tables) {
            match tables.iter_mut().find(|x| x.table == t.table) {
                Some(x) => x.rows += t.rows,
                None => tables.push(t.clone()),
            }
        }
        CommitReport { load_id: last.load_id, tables }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_intervals_are_records_or_durations() {
        assert_eq!(CheckpointEvery::parse("50000"), Ok(CheckpointEvery::Records(50_000)));
        assert_eq!(CheckpointEvery::parse("10_000"), Ok(CheckpointEvery::Records(10_000)));
        assert_eq!(CheckpointEvery::parse("5m"), Ok(CheckpointEvery::Time(Duration::from_secs(300))));
        assert_eq!(CheckpointEvery::parse("PT1H"), Ok(CheckpointEvery::Time(Duration::from_secs(3600))));
        for bad in ["0", "0s", "", "five", "-3"] {
            assert!(CheckpointEvery::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_checkpoint_is_due_after_its_records_and_stays_due_until_the_commit() {
        let c = Clock::new(Some(CheckpointEvery::Records(10)));
        c.count(9);
        assert!(!c.due());
        c.count(1);
        assert!(c.due() && c.due());
        c.reset();
        assert!(!c.due());
        assert!(!Clock::new(None).due(), "without --checkpoint-every nothing is due");
        let t = Clock::new(Some(CheckpointEvery::Time(Duration::from_millis(20))));
        assert!(!t.due());
        std::thread::sleep(Duration::from_millis(25));
        assert!(t.due());
    }
}
