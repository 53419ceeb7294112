//! The destinations resttap loads into, by name: the one place that knows them all. `--destination`
//! is parsed here into a [`DestinationSpec`], and [`DestinationSpec::open`] gives the pipeline
//! and the commands a [`Destination`]; adding a destination touches this file and its own crate.
//!
//! | name | where | credentials |
//! |---|---|---|
//! | `duckdb`, `duckdb:PATH` | a DuckDB file (`<pipeline>.duckdb` by default) | none |
//! | `postgres`, `postgresql://...` | a PostgreSQL database | `DESTINATION__POSTGRES__CREDENTIALS`, or `[destination.postgres]` in `.dlt/secrets.toml`, as dlt reads them |
//! | `filesystem`, `file:///path`, `s3://bucket/prefix` | a lake: Parquet files and Delta tables | `bucket_url` from `DESTINATION__FILESYSTEM__BUCKET_URL` or `[destination.filesystem]` in `.dlt/config.toml` / `.dlt/secrets.toml`; S3 keys in `[destination.filesystem.credentials]` |

use std::path::PathBuf;

use resttap_config::SecretSources;
use resttap_lake::{LakeLocation, S3Credentials, Secret};
use resttap_load::{Destination, LoadError};
use resttap_postgres::{Access, PgCredentials};

/// Where the data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSpec {
    /// A DuckDB file.
    DuckDb(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgCredentials),
    /// A lake (dlt's `filesystem` destination).
    Lake(LakeLocation),
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
        if spec.starts_with("file://") || spec.starts_with("s3://") {
            return LakeLocation::parse(spec, s3_credentials(secrets)?).map(DestinationSpec::Lake);
        }
        if spec == "filesystem" {
            return lake(secrets);
        }
        match spec.split_once(':') {
            None if spec == "duckdb" => Ok(DestinationSpec::DuckDb(PathBuf::from(format!("{pipeline}.duckdb")))),
            Some(("duckdb", path)) if !path.is_empty() => Ok(DestinationSpec::DuckDb(PathBuf::from(path))),
            None if spec == "postgres" || spec == "postgresql" => {
                postgres_credentials(secrets).map(DestinationSpec::Postgres)
            }
            _ => Err(format!(
                "unknown destination `{spec}`: use `duckdb`, `duckdb:PATH`, `postgres` (credentials as dlt reads them), `postgresql://user:password@host:port/database`, `filesystem` (bucket_url as dlt reads it), `file:///path` or `s3://bucket/prefix`"
            )),
        }
    }

    /// Whether tables of `format` can merge here (plain Parquet files cannot: dlt appends).
    pub fn merges(&self, format: resttap_schema::TableFormat) -> bool {
        !matches!(self, DestinationSpec::Lake(_)) || format == resttap_schema::TableFormat::Delta
    }

    /// A description for messages (never a password).
    pub fn describe(&self) -> String {
        match self {
            DestinationSpec::DuckDb(p) => p.display().to_string(),
            DestinationSpec::Postgres(c) => c.describe(),
            DestinationSpec::Lake(l) => l.describe(),
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
            (DestinationSpec::Lake(l), purpose) => {
                let access =
                    if purpose == Purpose::Read { resttap_lake::Access::Read } else { resttap_lake::Access::Load };
                Ok(Box::new(resttap_lake::Lake::open(l, dataset, access)?))
            }
        }
    }
}

/// A value of dlt's configuration: `secrets` (the environment, `secrets.toml`), then
/// `config.toml` beside `secrets.toml`.
fn config_value(secrets: &SecretSources, name: &str) -> Result<Option<String>, String> {
    if let Some(v) = secrets.lookup(name).map_err(|e| e.to_string())? {
        return Ok(Some(v.expose().to_string()));
    }
    let config = secrets.secrets_file().with_file_name("config.toml");
    let sources = SecretSources { secrets_toml: Some(config), ignore_env: true, ..Default::default() };
    Ok(sources.lookup(name).map_err(|e| e.to_string())?.map(|v| v.expose().to_string()))
}

/// dlt's `destination.filesystem.credentials` for S3.
fn s3_credentials(secrets: &SecretSources) -> Result<S3Credentials, String> {
    let get = |k: &str| config_value(secrets, &format!("destination.filesystem.credentials.{k}"));
    Ok(S3Credentials {
        access_key_id: get("aws_access_key_id")?,
        secret_access_key: get("aws_secret_access_key")?.map(Secret::new),
        session_token: get("aws_session_token")?.map(Secret::new),
        region: get("region_name")?,
        endpoint_url: get("endpoint_url")?,
    })
}

/// `--destination filesystem`: dlt's `destination.filesystem.bucket_url`.
fn lake(secrets: &SecretSources) -> Result<DestinationSpec, String> {
    let Some(url) = config_value(secrets, "destination.filesystem.bucket_url")? else {
        return Err(format!(
            "--destination filesystem needs a bucket_url: set DESTINATION__FILESYSTEM__BUCKET_URL=s3://bucket/prefix (or file:///path), \
             or write `[destination.filesystem]` `bucket_url = \"...\"` to {} or config.toml beside it; or pass --destination s3://bucket/prefix",
            secrets.secrets_file().display()
        ));
    };
    LakeLocation::parse(&url, s3_credentials(secrets)?).map(DestinationSpec::Lake)
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
        let e = DestinationSpec::parse("filesystem", "p", &s).unwrap_err();
        assert!(e.contains("DESTINATION__FILESYSTEM__BUCKET_URL"), "{e}");
        assert_eq!(
            DestinationSpec::parse("file:///x/lake", "p", &s).unwrap(),
            DestinationSpec::Lake(LakeLocation::Local("/x/lake".into()))
        );
    }

    #[test]
    fn the_lake_comes_from_config_toml_and_its_keys_from_secrets_toml() {
        let (d, s) = sources(Some(
            "[destination.filesystem.credentials]\naws_access_key_id = \"AK\"\naws_secret_access_key = \"SK\"\nendpoint_url = \"http://127.0.0.1:5000\"\n",
        ));
        std::fs::write(d.path().join("config.toml"), "[destination.filesystem]\nbucket_url = \"s3://b/p\"\n").unwrap();
        let DestinationSpec::Lake(l) = DestinationSpec::parse("filesystem", "p", &s).unwrap() else { panic!() };
        let LakeLocation::S3 { bucket, prefix, credentials } = &l else { panic!("{l:?}") };
        assert_eq!((bucket.as_str(), prefix.as_str()), ("b", "p"));
        assert_eq!(credentials.secret_access_key.as_ref().unwrap().expose(), "SK");
        assert!(!format!("{l:?} {}", l.describe()).contains("SK"));
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
