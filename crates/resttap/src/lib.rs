//! resttap: load REST APIs into analytical databases from a declarative configuration — the
//! same configuration, tables and columns as dlt's `rest_api_source`, in a single fast binary.
//!
//! The data flows one way through the workspace's crates:
//! `resttap-config` (the file) → `resttap-http` (requests) → `resttap-paginate` (pages) →
//! `resttap-extract` (records) → `resttap-normalize` (rows, `resttap-schema`) →
//! `resttap-load` (the destination contract, dlt's protocol) → `resttap-duckdb`,
//! `resttap-postgres` (the destinations, chosen by name in [`destinations`]). This crate wires
//! them into a run ([`pipeline`]) and is the command line.

pub mod check;
pub mod destinations;
pub mod floor;
pub mod inspect;
pub mod loader;
pub mod pipeline;
pub mod progress;
pub mod report;

/// An error and its causes, one line each after the first (a cause the message already
/// contains is left out).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(&format!("\n  caused by: {s}"));
        }
        cur = c.source();
    }
    msg
}
