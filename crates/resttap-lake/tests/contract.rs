//! The destination contract (`resttap_load::contract`) against a local lake of Delta tables,
//! read back by delta-rs's Python package and DuckDB (`read_lake.py`), not by resttap's code.

#[path = "../../resttap/tests/common/lake.rs"]
mod lake;

use resttap_lake::{Access, Lake, LakeLocation, S3Credentials};
use resttap_load::Destination;
use resttap_load::contract::Harness;
use resttap_schema::TableFormat;

struct Local {
    // declared first: dropped before the runtime it runs on
    dest: Lake,
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn harness() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let loc = LakeLocation::Local(dir.path().to_path_buf());
    let dest = {
        let _in = rt.enter();
        Lake::open(&loc, "ds", Access::Load).unwrap()
    };
    Local { dest, dir, _rt: rt }
}

impl Harness for Local {
    fn dest(&mut self) -> &mut dyn Destination {
        &mut self.dest
    }

    fn rows(&mut self, sql: &str) -> Vec<String> {
        let url = format!("file://{}/ds", self.dir.path().display());
        lake::query(&url, &[], &[sql]).remove(0)
    }

    fn table_format(&self) -> TableFormat {
        TableFormat::Delta
    }
}

resttap_load::contract_tests!(harness());

#[test]
fn a_second_load_of_the_dataset_is_refused_while_one_holds_it() {
    let h = harness();
    let loc = LakeLocation::Local(h.dir.path().to_path_buf());
    let _in = h._rt.enter();
    let Err(e) = Lake::open(&loc, "ds", Access::Load) else { panic!("a second writer was let in") };
    assert!(e.to_string().contains("in use by another process"), "{e}");
    assert!(Lake::open(&loc, "ds", Access::Read).is_ok(), "readers are not locked out");
    let _ = S3Credentials::default();
}

/// `upsert` on Delta tables: dlt's key-hash ids, kept from load to load, nested rows replaced
/// (dlt's own Delta upsert keeps the old ones); a key that comes twice is refused.
#[test]
fn upsert_keeps_dlts_ids_on_delta_tables() {
    use resttap_load::LoadError;
    use resttap_load::contract::load_with;
    use resttap_schema::WriteDisposition::Merge;
    use resttap_schema::merge::{MergeSpec, MergeStrategy};
    use serde_json::json;
    let mut h = harness();
    let spec = MergeSpec { strategy: MergeStrategy::Upsert, ..MergeSpec::default() };
    let upsert = |h: &mut Local, records: &[serde_json::Value]| {
        load_with(h.dest(), Merge, &spec, vec![], records, 2, TableFormat::Delta)
    };
    upsert(&mut h, &[json!({"id": 5, "v": "a", "tags": ["x", "y"]}), json!({"id": 6, "v": "b", "tags": ["z"]})])
        .unwrap();
    upsert(&mut h, &[json!({"id": 6, "v": "b2", "tags": ["z2"]}), json!({"id": 7, "v": "c"})]).unwrap();
    assert_eq!(
        h.rows("SELECT CAST(id AS VARCHAR) || '=' || v || '=' || _dlt_id FROM ds.items ORDER BY id"),
        ["5=a=k2m2W4pvOwjKag", "6=b2=GVkOEPGs6KtYtg", format!("7=c={}", one_key_hash(7)).as_str()]
    );
    assert_eq!(
        h.rows("SELECT value || '=' || _dlt_root_id FROM ds.items__tags ORDER BY value"),
        ["x=k2m2W4pvOwjKag", "y=k2m2W4pvOwjKag", "z2=GVkOEPGs6KtYtg"]
    );
    let err = upsert(&mut h, &[json!({"id": 8}), json!({"id": 8})]).unwrap_err();
    assert!(matches!(err, LoadError::Data { .. }) && err.to_string().contains("twice"), "{err}");
    assert_eq!(h.rows("SELECT CAST(count(*) AS VARCHAR) FROM ds.items"), ["3"]);
}

/// dlt's upsert id of `{"id": n}`.
fn one_key_hash(n: i64) -> String {
    let v = serde_json::json!(n);
    resttap_normalize::hash::key_hash(&mut [("id", &v)], &mut Vec::new()).as_str().to_string()
}
