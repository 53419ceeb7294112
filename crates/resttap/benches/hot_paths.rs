//! Micro-benchmarks of the hot paths: a JSON page to normalized Arrow batches, and batches into
//! DuckDB staging tables. Run with `cargo bench -p resttap --bench hot_paths`.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resttap_duckdb::DuckDb;
use resttap_load::Destination;
use resttap_normalize::{Normalizer, NormalizerConfig, TableBatch};
use resttap_schema::{Schema, WriteDisposition};

fn page(resource: &str, n: u64) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (1..=n).map(|id| resttap_mock::data::record(resource, id, 0)).collect();
    serde_json::to_vec(&serde_json::json!({ resource: items, "pagination": {"cursor": "x"} })).unwrap()
}

fn normalize(body: &[u8], resource: &str) -> Vec<TableBatch> {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let records = v[resource].take();
    let mut n = Normalizer::new(
        NormalizerConfig {
            table: resource.into(),
            write_disposition: WriteDisposition::Merge,
            primary_key: vec!["id".into()],
            max_nesting: None,
            load_id: Arc::from("1"),
            batch_rows: 100_000,
            hints: vec![],
            nested_hints: vec![],
            row_ids: resttap_normalize::RowIds::Random,
            validity: None,
            contract: Default::default(),
        },
        &Schema::default(),
    );
    let mut out = Vec::new();
    for r in records.as_array().unwrap() {
        n.push(r, &mut out).unwrap();
    }
    out.extend(n.finish());
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_paths");
    for resource in ["suggestions", "feedback_records"] {
        let body = page(resource, 1000);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("parse_and_normalize_1000_{resource}"), |b| b.iter(|| normalize(&body, resource)));
        let batches = normalize(&body, resource);
        let dir = tempfile::tempdir().unwrap();
        let mut db = DuckDb::open(&dir.path().join("b.duckdb"), "bench").unwrap();
        g.bench_function(format!("stage_1000_{resource}_into_duckdb"), |b| {
            b.iter(|| {
                db.begin("1").unwrap();
                for batch in &batches {
                    db.stage(batch).unwrap();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
