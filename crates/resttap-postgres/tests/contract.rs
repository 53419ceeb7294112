//! The destination contract (`resttap_load::contract`) against a real PostgreSQL server
//! (started by the same harness as the command line's tests), read back with psql.

#[path = "../../resttap/tests/common/pg.rs"]
mod pg;

use resttap_load::Destination;
use resttap_load::contract::Harness;
use resttap_postgres::{Access, PgCredentials, Postgres};

/// A new database, the destination on it (dataset `ds`), and psql to read it.
struct Pg {
    // declared first: dropped (disconnected) before the runtime it runs on
    dest: Postgres,
    db: String,
    _rt: tokio::runtime::Runtime,
}

fn harness() -> Pg {
    let server = pg::server();
    let db = server.new_db();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let creds = PgCredentials::from_url(&server.url(&db)).unwrap();
    let dest = {
        let _in = rt.enter();
        Postgres::open(&creds, "ds", Access::Load).unwrap()
    };
    Pg { dest, db, _rt: rt }
}

impl Harness for Pg {
    fn dest(&mut self) -> &mut dyn Destination {
        &mut self.dest
    }

    fn rows(&mut self, sql: &str) -> Vec<String> {
        let out = pg::server().psql(&self.db, sql);
        if out.is_empty() { Vec::new() } else { out.lines().map(String::from).collect() }
    }
}

resttap_load::contract_tests!(harness());

mod strategies {
    use super::*;

    resttap_load::contract_tests!(@strategies harness());
}

#[test]
fn a_second_connection_for_loading_is_refused_while_the_first_holds_the_dataset() {
    let h = harness();
    let server = pg::server();
    let creds = PgCredentials::from_url(&server.url(&h.db)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _in = rt.enter();
    let started = std::time::Instant::now();
    let err = Postgres::open(&creds, "ds", Access::Load).unwrap_err();
    assert!(started.elapsed() >= resttap_postgres::LOCK_WAIT, "it waited for a lingering session first");
    let msg = err.to_string();
    assert!(msg.contains("in use by another process") && msg.contains("holds the lock of dataset `ds`"), "{msg}");
    assert!(msg.contains("(resttap, from 127.0.0.1, since "), "the holder is named: {msg}");
    // reading needs no lock; another dataset has its own
    assert!(Postgres::open(&creds, "ds", Access::Read).is_ok());
    assert!(Postgres::open(&creds, "other", Access::Load).is_ok());
    drop(h);
    // the lock goes with the connection
    assert!(Postgres::open(&creds, "ds", Access::Load).is_ok());
}
