//! The destinations resttap loads into, by name: the one place that knows them all. `--destination`
//! is parsed here into a [`DestinationSpec`], and [`DestinationSpec::open`] gives the pipeline
//! and the commands a [`Destination`]; adding a destination touches this file and its own crate.
//!
//! | name | where | credentials |
//! |---|---|---|
//! | `duckdb`, `duckdb:PATH` | a DuckDB file (`<pipeline>.duckdb` by default) | none |
//! | `postgres`, `postgresql://...` | a PostgreSQL database | `DESTINATION__POSTGRES__CREDENTIALS`, or `[destination.postgres]` in `.dlt/secrets.toml`, as dlt reads them |

use std::path::PathBuf;

use resttap_config::SecretSources;
use resttap_load::{Destination, LoadError};
use resttap_postgres::{Access, PgCredentials};

/// Where the data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    /// A DuckDB file.
    DuckDb(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgCredentials),
}

/// Why the data is read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// `resttap schema`, `resttap state` without `--reset`: nothing is written.
    Read,
    /// A run, or `resttap state --reset`: of the whole dataset (`None`), or of these root
    /// tables only (`run --resources`; where the destination can, runs of disjoint tables load
    /// side by side: PostgreSQL).
    Write(Option<Vec<String>>),
}

/// The keys of dlt's split form of PostgreSQL credentials.
const PG_PARTS: [&str; 8] =
    ["host", "port", "username", "password", "database", "sslmode", "sslrootcert", "connect_timeout"];

impl DestinationSpec {
    /// Parses `--destination`: `duckdb` (→ `<pipeline>.duckdb`), `duckdb:PATH`, `postgres`
    /// (credentials from `secrets`: dlt's `destination.postgres.credentials`, a connection string
    /// or its split form), `postgresql://...`.
    pub fn parse(spec: &str, pipeline: &str, secrets: &SecretSources) -> Result<Self, String> {
        if spec.starts_with("postgresql://") || spec.starts_with("postgres://") {
            return PgCredentials::from_url(spec).map(DestinationSpec::Postgres).map_err(|e| e.0);
        }
        match spec.split_once(':') {
            None if spec == "duckdb" => Ok(DestinationSpec::DuckDb(PathBuf::from(format!("{pipeline}.duckdb")))),
            Some(("duckdb", path)) if !path.is_empty() => Ok(DestinationSpec::DuckDb(PathBuf::from(path))),
            None if spec == "postgres" || spec == "postgresql" => {
                postgres_credentials(secrets).map(DestinationSpec::Postgres)
            }
            _ => Err(format!(
                "unknown destination `{spec}`: use `duckdb`, `duckdb:PATH`, `postgres` (credentials as dlt reads them) or `postgresql://user:password@host:port/database`"
            )),
        }
    }

    /// A description for messages (never a password).
    pub fn describe(&self) -> String {
        match self {
            DestinationSpec::DuckDb(p) => p.display().to_string(),
            DestinationSpec::Postgres(c) => c.describe(),
        }
    }

    /// Opens the dataset `dataset`. A [`Purpose::Read`] of a DuckDB file that does not exist
    /// fails, rather than creating it; a [`Purpose::Write`] holds the destination's lock. Blocks:
    /// call it from `spawn_blocking`.
    pub fn open(&self, dataset: &str, purpose: Purpose) -> Result<Box<dyn Destination>, LoadError> {
        match (self, purpose) {
            (DestinationSpec::DuckDb(path), Purpose::Read) => {
                Ok(Box::new(resttap_duckdb::DuckDb::open_read_only(path, dataset)?))
            }
            (DestinationSpec::DuckDb(path), Purpose::Write(_)) => {
                let mut db = resttap_duckdb::DuckDb::open(path, dataset)?;
                db.set_commit_memory(
                    std::env::var("RESTTAP_DUCKDB_COMMIT_MEMORY").ok().filter(|v| !v.trim().is_empty()),
                );
                Ok(Box::new(db))
            }
            (DestinationSpec::Postgres(c), purpose) => {
                let access = match purpose {
                    Purpose::Read => Access::Read,
                    Purpose::Write(None) => Access::Load,
                    Purpose::Write(Some(tables)) => Access::LoadTables(tables),
                };
                Ok(Box::new(resttap_postgres::Postgres::open(c, dataset, access)?))
            }
        }
    }
}

/// dlt's `destination.postgres.credentials`: a connection string, or a table of its parts.
fn postgres_credentials(secrets: &SecretSources) -> Result<PgCredentials, String> {
    let key = "destination.postgres.credentials";
    let whole = secrets.lookup(key).map_err(|e| e.to_string())?;
    if let Some(url) = whole {
        return PgCredentials::from_url(url.expose()).map_err(|e| e.0);
    }
    let mut parts = Vec::new();
    for part in PG_PARTS {
        if let Some(v) = secrets.lookup(&format!("{key}.{part}")).map_err(|e| e.to_string())? {
            parts.push((part, v.expose().to_string()));
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "--destination postgres needs credentials: set DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/database, \
             or write them to {} as `[destination.postgres]` `credentials = \"postgresql://...\"` (or `[destination.postgres.credentials]` \
             with host, port, username, password, database)",
            secrets.secrets_file().display()
        ));
    }
    PgCredentials::from_parts(&|k| parts.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(toml: Option<&str>) -> (tempfile::TempDir, SecretSources) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        if let Some(t) = toml {
            std::fs::write(&path, t).unwrap();
        }
        (dir, SecretSources { secrets_toml: Some(path), ignore_env: true, ..Default::default() })
    }

    #[test]
    fn destinations_are_named_as_in_dlt() {
        let (_d, s) = sources(None);
        assert_eq!(DestinationSpec::parse("duckdb", "p", &s).unwrap(), DestinationSpec::DuckDb("p.duckdb".into()));
        assert_eq!(
            DestinationSpec::parse("duckdb:/x/y.db", "p", &s).unwrap(),
            DestinationSpec::DuckDb("/x/y.db".into())
        );
        let DestinationSpec::Postgres(c) = DestinationSpec::parse("postgresql://u:pw@h:1/d", "p", &s).unwrap() else {
            panic!()
        };
        assert_eq!(c.describe(), "postgresql://u@h:1/d");
        let e = DestinationSpec::parse("snowflake", "p", &s).unwrap_err();
        assert!(e.contains("unknown destination `snowflake`"), "{e}");
        let e = DestinationSpec::parse("postgres", "p", &s).unwrap_err();
        assert!(e.contains("DESTINATION__POSTGRES__CREDENTIALS") && e.contains("secrets.toml"), "{e}");
    }

    #[test]
    fn postgres_credentials_come_from_secrets_toml_whole_or_split() {
        let (_d, s) =
            sources(Some("[destination.postgres]\ncredentials = \"postgresql://a:b@c:5/d?sslmode=require\"\n"));
        let DestinationSpec::Postgres(c) = DestinationSpec::parse("postgres", "p", &s).unwrap() else { panic!() };
        assert_eq!((c.describe(), c.sslmode), ("postgresql://a@c:5/d".into(), resttap_postgres::SslMode::Require));
        let (_d, s) = sources(Some(
            "[destination.postgres.credentials]\nhost = \"h\"\nport = 6\nusername = \"u\"\npassword = \"pw\"\ndatabase = \"db\"\n",
        ));
        let DestinationSpec::Postgres(c) = DestinationSpec::parse("postgres", "p", &s).unwrap() else { panic!() };
        assert_eq!(c.describe(), "postgresql://u@h:6/db");
        assert_eq!(c.password.unwrap().expose(), "pw");
    }
}
