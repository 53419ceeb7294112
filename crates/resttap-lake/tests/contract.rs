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
