//! resttap: load REST APIs into analytical databases from a declarative configuration — the
//! same configuration, tables and columns as dlt's `rest_api_source`, in a single fast binary.
//!
//! The data flows one way through the workspace's crates:
//! `resttap-config` (the file) → `resttap-http` (requests) → `resttap-paginate` (pages) →
//! `resttap-extract` (records) → `resttap-normalize` (rows, `resttap-schema`) →
//! `resttap-load` (the destination contract, dlt's protocol) → `resttap-duckdb`,
//! `resttap-postgres` (the destinations, chosen by name in [`destinations`]). This crate wires
//! them into a run ([`pipeline`]) and is the command line.

pub mod destinations;
pub mod floor;
pub mod loader;
pub mod pipeline;
pub mod progress;
pub mod report;
