//! Where a PostgreSQL dataset lives: dlt's credentials, as a connection string
//! (`postgresql://user:password@host:port/database?sslmode=require`) or dlt's split form (host,
//! port, username, password, database), parsed once into a typed value whose password never
//! prints.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The password itself, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// libpq's `sslmode`, over rustls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (libpq's
    /// default).
    #[default]
    Prefer,
    /// TLS, the certificate not checked.
    Require,
    /// TLS, the certificate chain checked against the root certificates (`sslrootcert`, else
    /// the system's), not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, CredentialsError> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(CredentialsError(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// A PostgreSQL database to load into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgCredentials {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Option<Password>,
    pub database: String,
    pub sslmode: SslMode,
    /// Root certificates (PEM) for `verify-ca` and `verify-full`.
    pub sslrootcert: Option<PathBuf>,
    /// dlt's default: 15 s.
    pub connect_timeout: Duration,
}

/// Why credentials cannot be used (the message never holds the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

/// dlt's connection timeout for PostgreSQL, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 15;

impl PgCredentials {
    /// Parses `postgresql://[user[:password]@]host[:port]/database[?sslmode=..&sslrootcert=..&connect_timeout=..]`
    /// (`postgres://` too). Percent-encoded parts are decoded.
    pub fn from_url(text: &str) -> Result<Self, CredentialsError> {
        let err = |m: &str| CredentialsError(format!("the PostgreSQL connection string {}: {m}", redact_url(text)));
        let url = url::Url::parse(text).map_err(|e| err(&e.to_string()))?;
        if !matches!(url.scheme(), "postgresql" | "postgres") {
            return Err(err("must start with postgresql://"));
        }
        let decode =
            |s: &str| percent_decode(s).ok_or_else(|| err("has a part that is not valid percent-encoded UTF-8"));
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| err("names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let database = decode(url.path().trim_start_matches('/'))?;
        if database.is_empty() {
            return Err(err("names no database (postgresql://user:password@host:5432/DATABASE)"));
        }
        let mut c = PgCredentials {
            host,
            port: url.port().unwrap_or(5432),
            username: decode(url.username())?,
            password: url.password().map(decode).transpose()?.map(Password::new),
            database,
            sslmode: SslMode::default(),
            sslrootcert: None,
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT),
        };
        if c.username.is_empty() {
            return Err(err("names no user (postgresql://USER:password@host:5432/database)"));
        }
        for (k, v) in url.query_pairs() {
            c.set_option(&k, &v).map_err(|e| err(&e.0))?;
        }
        Ok(c)
    }

    /// dlt's split form: `host`, `port`, `username`, `password`, `database`, and the options
    /// (`sslmode`, `sslrootcert`, `connect_timeout`). `get` gives each key's value, if set.
    pub fn from_parts(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, CredentialsError> {
        let need = |k: &str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CredentialsError(format!("the PostgreSQL credentials have no `{k}`")))
        };
        let port = match get("port") {
            Some(p) => p.parse().map_err(|_| CredentialsError(format!("the PostgreSQL port `{p}` is not a number")))?,
            None => 5432,
        };
        let mut c = PgCredentials {
            host: need("host")?,
            port,
            username: need("username")?,
            password: get("password").map(Password::new),
            database: need("database")?,
            sslmode: SslMode::default(),
            sslrootcert: None,
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT),
        };
        for k in ["sslmode", "sslrootcert", "connect_timeout"] {
            if let Some(v) = get(k) {
                c.set_option(k, &v)?;
            }
        }
        Ok(c)
    }

    fn set_option(&mut self, key: &str, value: &str) -> Result<(), CredentialsError> {
        match key {
            "sslmode" => self.sslmode = SslMode::parse(value)?,
            "sslrootcert" => self.sslrootcert = Some(PathBuf::from(value)),
            "connect_timeout" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| CredentialsError(format!("connect_timeout `{value}` is not a number of seconds")))?;
                self.connect_timeout = Duration::from_secs(secs.max(1));
            }
            other => {
                return Err(CredentialsError(format!(
                    "option `{other}` is not supported (resttap takes sslmode, sslrootcert and connect_timeout)"
                )));
            }
        }
        Ok(())
    }

    /// `postgresql://user@host:port/database`, for messages: never the password.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("postgresql://{}@{host}:{}/{}", self.username, self.port, self.database)
    }
}

/// A connection string as messages show it: the scheme, then `***` for everything up to the last
/// `@` (user and password, however they are written or encoded), the host part, and `?…` for a
/// query (which may hold a password too). Nothing else of the input is echoed.
pub fn redact_url(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let rest = match rest.rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((before, _)) => format!("{before}?…"),
        None => rest,
    };
    if scheme.is_empty() { rest } else { format!("{scheme}://{rest}") }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_becomes_typed_credentials() {
        let c = PgCredentials::from_url(
            "postgresql://loader:p%40ss+w0rd@db.example.com:6543/analytics?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(c.host, "db.example.com");
        assert_eq!(c.port, 6543);
        assert_eq!(c.username, "loader");
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss+w0rd");
        assert_eq!(c.database, "analytics");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.describe(), "postgresql://loader@db.example.com:6543/analytics");
        assert!(!format!("{c:?}").contains("w0rd"));
        let d = PgCredentials::from_url("postgres://u@localhost/db").unwrap();
        assert_eq!((d.port, d.sslmode, d.password), (5432, SslMode::Prefer, None));
    }

    #[test]
    fn bad_connection_strings_say_what_is_wrong_without_the_password() {
        for (text, says) in [
            ("mysql://u:hunter2@h/db", "must start with postgresql://"),
            ("postgresql://u:hunter2@h/", "names no database"),
            ("postgresql://:hunter2@h/db", "names no user"),
            ("postgresql://u:hunter2@h/db?sslmode=sometimes", "sslmode `sometimes`"),
            ("postgresql://u:hunter2@h/db?target_session_attrs=any", "option `target_session_attrs` is not supported"),
            ("postgresql://u:hunter2@h:99999/db", "invalid port"),
            ("postgresql://u@h/db?password=hunter2", "option `password` is not supported"),
            ("postgresql://u:12/hunter2@h/db", ""),
        ] {
            let e = match PgCredentials::from_url(text) {
                Err(e) => e.0,
                Ok(c) => format!("{c:?} {}", c.describe()),
            };
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_split_form_needs_host_user_and_database() {
        let parts = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let c = PgCredentials::from_parts(&parts(&[
            ("host", "h"),
            ("username", "u"),
            ("password", "pw"),
            ("database", "d"),
            ("port", "5433"),
            ("sslmode", "disable"),
        ]))
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.sslmode), ("h", 5433, SslMode::Disable));
        let e = PgCredentials::from_parts(&parts(&[("host", "h"), ("username", "u")])).unwrap_err();
        assert_eq!(e.0, "the PostgreSQL credentials have no `database`");
    }
}
