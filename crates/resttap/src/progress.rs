//! What a run says while it runs, on stderr, in one of three forms ([`Mode`]):
//! - on a terminal, live lines per resource (pages, records, records/s, retries, MB, time its
//!   requests waited on rate limits) and the run's, redrawn ten times a second with indicatif
//!   and cleared before the summary;
//! - elsewhere (a file, a pipe, a scheduler's log), plain lines without control characters: one
//!   per resource when it has fetched everything, and a heartbeat line every so long
//!   ([`HEARTBEAT`] unless `run --heartbeat` says) while the run goes on;
//! - with `--log-format json`, the same events as JSON objects, one per line.
//!
//! With `--quiet`, nothing.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use resttap_http::Client;

use crate::pipeline::ResourceProgress;

/// How often a run not on a terminal says it is still going, by default.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// The form progress takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines (stderr is a terminal).
    Terminal,
    /// A line per finished resource and a heartbeat (stderr is not a terminal).
    Lines,
    /// JSON objects, a line each.
    Json,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// The mode for the options, and for whether stderr is a terminal.
    pub fn choose(quiet: bool, json: bool) -> Mode {
        match (quiet, json) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Json,
            (false, false) if std::io::stderr().is_terminal() => Mode::Terminal,
            (false, false) => Mode::Lines,
        }
    }
}

/// Reports progress until [`Progress::finish`].
pub struct Progress {
    multi: Option<MultiProgress>,
    task: Option<tokio::task::JoinHandle<()>>,
    lines: Option<Arc<Mutex<Lines>>>,
}

/// One resource's figures at a moment.
fn figures(r: &ResourceProgress) -> serde_json::Value {
    let c = &r.counters;
    let records = c.records.load(Relaxed);
    let secs = r.done().unwrap_or_else(|| r.since.elapsed()).as_secs_f64();
    serde_json::json!({
        "resource": r.name,
        "pages": c.pages.load(Relaxed),
        "records": records,
        "records_per_s": if secs > 0.0 { (records as f64 / secs).round() } else { 0.0 },
        "retries": c.retries.load(Relaxed),
        "bytes": c.bytes.load(Relaxed),
        "rate_limit_wait_s": (c.rate_limit_us.load(Relaxed) as f64 / 1e5).round() / 10.0,
        "seconds": (secs * 100.0).round() / 100.0,
    })
}

/// Plain or JSON lines: which resources were reported finished.
struct Lines {
    resources: Vec<ResourceProgress>,
    reported: Vec<bool>,
    json: bool,
    started: Instant,
    /// Set by [`Progress::finish`]: the task says nothing more (it may be past its sleep).
    stopped: bool,
}

impl Lines {
    /// Writes a line for each resource that finished since the last call.
    fn finished(&mut self) {
        for (r, reported) in self.resources.iter().zip(self.reported.iter_mut()) {
            if *reported || r.done().is_none() {
                continue;
            }
            *reported = true;
            let f = figures(r);
            if self.json {
                let mut f = f;
                f["event"] = "resource_done".into();
                eprintln!("{f}");
            } else {
                eprintln!(
                    "resource {}: {} records in {} pages ({} retries, {:.1} s waiting on rate limits) in {:.1} s",
                    r.name,
                    f["records"],
                    f["pages"],
                    f["retries"],
                    f["rate_limit_wait_s"].as_f64().unwrap_or_default(),
                    f["seconds"].as_f64().unwrap_or_default()
                );
            }
        }
    }

    /// The heartbeat: every resource still running, with its figures so far.
    fn heartbeat(&self, client: &Client) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let running: Vec<&ResourceProgress> = self.resources.iter().filter(|r| r.done().is_none()).collect();
        let waited = client.rate_limit_wait().as_secs_f64();
        if self.json {
            let event = serde_json::json!({
                "event": "progress",
                "elapsed_s": (elapsed * 10.0).round() / 10.0,
                "rate_limit_wait_s": (waited * 10.0).round() / 10.0,
                "running": running.iter().map(|r| figures(r)).collect::<Vec<_>>(),
            });
            eprintln!("{event}");
        } else {
            let parts: Vec<String> =
                running.iter().map(|r| format!("{} {} records", r.name, r.counters.records.load(Relaxed))).collect();
            eprintln!(
                "still running after {elapsed:.0} s ({waited:.1} s waiting on rate limits): {}",
                parts.join(", ")
            );
        }
    }
}

impl Progress {
    /// Starts reporting on `resources` in `mode`; `client` tells the run's rate-limit waits.
    pub fn start(resources: &[ResourceProgress], client: &Client, mode: Mode, heartbeat: Duration) -> Progress {
        let started = Instant::now();
        match mode {
            Mode::Quiet => Progress { multi: None, task: None, lines: None },
            Mode::Terminal => Self::terminal(resources, client),
            Mode::Lines | Mode::Json => {
                let lines = Arc::new(Mutex::new(Lines {
                    resources: resources.to_vec(),
                    reported: vec![false; resources.len()],
                    json: mode == Mode::Json,
                    started,
                    stopped: false,
                }));
                let (client, shared) = (client.clone(), Arc::clone(&lines));
                let task = tokio::spawn(async move {
                    let mut beat = started + heartbeat;
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let mut l = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        if l.stopped {
                            return;
                        }
                        l.finished();
                        if Instant::now() >= beat {
                            l.heartbeat(&client);
                            beat += heartbeat;
                        }
                    }
                });
                Progress { multi: None, task: Some(task), lines: Some(lines) }
            }
        }
    }

    fn terminal(resources: &[ResourceProgress], client: &Client) -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}").expect("valid template");
        let width = resources.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let bars: Vec<(ProgressBar, ResourceProgress)> = resources
            .iter()
            .map(|r| {
                let bar =
                    ProgressBar::new_spinner().with_style(style.clone()).with_prefix(format!("{:width$}", r.name));
                (multi.add(bar), r.clone())
            })
            .collect();
        let waits = multi.add(ProgressBar::new_spinner().with_style(style));
        let client = client.clone();
        let task = tokio::spawn(async move {
            loop {
                for (bar, r) in &bars {
                    let f = figures(r);
                    let state = if r.done().is_some() { "done" } else { "" };
                    bar.set_message(format!(
                        "{:>6} pages {:>9} records {:>8}/s {:>4} retries {:>8.1} MB {:>6.1} s rate-limited {state}",
                        f["pages"],
                        f["records"],
                        f["records_per_s"],
                        f["retries"],
                        r.counters.bytes.load(Relaxed) as f64 / 1e6,
                        r.counters.rate_limit_us.load(Relaxed) as f64 / 1e6,
                    ));
                    bar.tick();
                }
                let waited = client.rate_limit_wait();
                if !waited.is_zero() {
                    waits.set_message(format!("waiting on rate limits: {:.1} s in all", waited.as_secs_f64()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { multi: Some(multi), task: Some(task), lines: None }
    }

    /// Stops reporting: clears the live lines, or reports the resources that finished since
    /// the last report (so that each is reported once, before the summary).
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
        if let Some(lines) = &self.lines {
            let mut l = lines.lock().unwrap_or_else(PoisonError::into_inner);
            l.stopped = true;
            l.finished();
        }
    }
}
