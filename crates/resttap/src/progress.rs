//! Live per-resource progress on a terminal: pages, records and retries, redrawn ten times a
//! second. Nothing is drawn when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::ResourceProgress;

/// Draws progress lines until dropped.
pub struct Progress {
    multi: MultiProgress,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing for `resources` if stderr is a terminal.
    pub fn start(resources: &[ResourceProgress]) -> Progress {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        if multi.is_hidden() {
            return Progress { multi, task: None };
        }
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}").expect("valid template");
        let width = resources.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let bars: Vec<(ProgressBar, ResourceProgress)> = resources
            .iter()
            .map(|r| {
                let b = multi.add(
                    ProgressBar::new_spinner().with_style(style.clone()).with_prefix(format!("{:width$}", r.name)),
                );
                (b, r.clone())
            })
            .collect();
        let task = tokio::spawn(async move {
            loop {
                for (bar, r) in &bars {
                    let c = &r.counters;
                    bar.set_message(format!(
                        "{:>6} pages {:>9} records {:>4} retries {:>8.1} MB",
                        c.pages.load(Relaxed),
                        c.records.load(Relaxed),
                        c.retries.load(Relaxed),
                        c.bytes.load(Relaxed) as f64 / 1e6
                    ));
                    bar.tick();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { multi, task: Some(task) }
    }

    /// Stops drawing and clears the lines.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = self.multi.clear();
    }
}
