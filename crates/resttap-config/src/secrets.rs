//! Secrets: `{secrets.NAME}` placeholders, where their values come from, and a type that never
//! prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: call only where it is sent to the API.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where secret values are looked up, in order: explicit overrides (used by `resttap demo`), the
/// environment (`{secrets.api_key}` → `API_KEY`, dots as `__`), then `.dlt/secrets.toml` in
/// the working directory (dlt's format: dotted names are TOML tables).
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    /// Values that win over every other source.
    pub overrides: BTreeMap<String, Secret>,
    /// The `secrets.toml` to read; `None` for `.dlt/secrets.toml` in the working directory.
    pub secrets_toml: Option<PathBuf>,
    /// Skip the process environment (tests).
    pub ignore_env: bool,
}

/// The environment variable that holds secret `name`.
pub fn env_var_name(name: &str) -> String {
    name.to_uppercase().replace('.', "__")
}

impl SecretSources {
    fn toml_path(&self) -> PathBuf {
        self.secrets_toml.clone().unwrap_or_else(|| Path::new(".dlt").join("secrets.toml"))
    }

    /// Looks up one value by its dotted name (`destination.postgres.credentials`): an override,
    /// the environment (`DESTINATION__POSTGRES__CREDENTIALS`), then `secrets.toml`. `None` when
    /// no source has it (or `secrets.toml` has a table there, not a value).
    pub fn lookup(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(v) = self.overrides.get(name) {
            return Ok(Some(v.clone()));
        }
        if !self.ignore_env
            && let Ok(v) = std::env::var(env_var_name(name))
        {
            return Ok(Some(Secret::new(v)));
        }
        let path = self.toml_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ConfigError::SecretsFile { path, message: e.to_string() }),
        };
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::SecretsFile { path: path.clone(), message: e.to_string() })?;
        Ok(lookup_dotted(&table, name).map(Secret::new))
    }

    /// The path of the `secrets.toml` read, for messages.
    pub fn secrets_file(&self) -> PathBuf {
        self.toml_path()
    }

    /// Looks up every name (`names` maps each secret name to the config key that uses it
    /// first): the values found, and an error for each name that has none (or for a secrets
    /// file that cannot be read, after which it is not read again).
    pub(crate) fn resolve_all(&self, names: &BTreeMap<String, String>) -> (Secrets, Vec<ConfigError>) {
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        let mut toml: Option<Option<toml::Table>> = None;
        for (name, key) in names {
            if let Some(v) = self.overrides.get(name) {
                out.insert(name.clone(), v.clone());
                continue;
            }
            let var = env_var_name(name);
            if !self.ignore_env
                && let Ok(v) = std::env::var(&var)
            {
                out.insert(name.clone(), Secret::new(v));
                continue;
            }
            let path = self.toml_path();
            let table = match &toml {
                Some(t) => t.clone(),
                None => {
                    let loaded = match std::fs::read_to_string(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        read => match read
                            .map_err(|e| e.to_string())
                            .and_then(|text| text.parse::<toml::Table>().map_err(|e| e.to_string()))
                        {
                            Ok(table) => Some(table),
                            Err(message) => {
                                errors.push(ConfigError::SecretsFile { path: path.clone(), message });
                                None
                            }
                        },
                    };
                    toml = Some(loaded.clone());
                    loaded
                }
            };
            let found = table.as_ref().and_then(|t| lookup_dotted(t, name));
            match found {
                Some(v) => {
                    out.insert(name.clone(), Secret::new(v));
                }
                None => errors.push(ConfigError::MissingSecret {
                    name: name.clone(),
                    key: key.clone(),
                    env_var: var,
                    secrets_file: path,
                }),
            }
        }
        (Secrets(out), errors)
    }
}

fn lookup_dotted(table: &toml::Table, name: &str) -> Option<String> {
    let mut parts = name.split('.').peekable();
    let mut cur = table;
    while let Some(part) = parts.next() {
        let v = cur.get(part)?;
        if parts.peek().is_none() {
            return match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
        }
        cur = v.as_table()?;
    }
    None
}

/// The resolved secrets of one configuration, by name.
#[derive(Debug, Clone, Default)]
pub struct Secrets(BTreeMap<String, Secret>);

impl Secrets {
    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }

    /// Every value, for redaction.
    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.0.values()
    }
}

/// One piece of a string template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (doubled braces already undoubled).
    Text(String),
    /// `{namespace.rest}`: `("secrets", "api_key")`.
    Placeholder(String, String),
}

/// Splits a string into literal text and `{namespace.name}` placeholders. `{{` and `}}` are
/// literal braces, as in dlt (Python's `str.format`).
pub fn parse_template(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|x| x.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|x| x.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let rest = &s[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!("unclosed `{{` at character {}; write `{{{{` for a literal brace", i + 1));
                };
                let inner = rest[..end].trim();
                let Some((ns, name)) = inner.split_once('.') else {
                    return Err(format!(
                        "placeholder `{{{inner}}}` must look like `{{secrets.NAME}}`; write `{{{{` and `}}}}` for literal braces"
                    ));
                };
                if name.is_empty() || ns.is_empty() {
                    return Err(format!("placeholder `{{{inner}}}` has an empty name"));
                }
                out.extend((!text.is_empty()).then(|| Piece::Text(std::mem::take(&mut text))));
                out.push(Piece::Placeholder(ns.to_string(), name.to_string()));
                for _ in 0..rest[..=end].chars().count() {
                    chars.next();
                }
            }
            '}' => return Err(format!("unmatched `}}` at character {}; write `}}}}` for a literal brace", i + 1)),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// A string from the config rendered with its secrets. `Debug` hides it when it holds a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    value: String,
    secret: bool,
}

impl Rendered {
    /// A value built from other rendered parts; `secret` marks it as holding a secret.
    pub fn new(value: String, secret: bool) -> Self {
        Rendered { value, secret }
    }

    /// The text to send.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether a secret went into it.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret { f.write_str("\"***\"") } else { write!(f, "{:?}", self.value) }
    }
}

/// Renders a template string: `{secrets.NAME}` becomes the secret's value, doubled braces
/// become single ones. The config loader has already checked that every placeholder is known.
pub fn render(template: &str, secrets: &Secrets) -> Rendered {
    render_with(template, secrets, &|_, _| None)
}

/// Like [`render`]; other placeholders (`{incremental.start_value}`) take the value `values`
/// gives for `(namespace, name)`, or stay as written when it gives none.
pub fn render_with(template: &str, secrets: &Secrets, values: &dyn Fn(&str, &str) -> Option<String>) -> Rendered {
    let Ok(pieces) = parse_template(template) else {
        return Rendered { value: template.to_string(), secret: false };
    };
    let mut value = String::with_capacity(template.len());
    let mut secret = false;
    for p in pieces {
        match p {
            Piece::Text(t) => value.push_str(&t),
            Piece::Placeholder(ns, name) if ns == "secrets" => {
                if let Some(s) = secrets.get(&name) {
                    value.push_str(s.expose());
                    secret = true;
                }
            }
            Piece::Placeholder(ns, name) => {
                if let Some(v) = values(&ns, &name) {
                    value.push_str(&v);
                    continue;
                }
                value.push('{');
                value.push_str(&ns);
                value.push('.');
                value.push_str(&name);
                value.push('}');
            }
        }
    }
    Rendered { value, secret }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        let mut m = BTreeMap::new();
        m.insert("api_key".to_string(), s);
        let secrets = Secrets(m);
        assert!(!format!("{secrets:?}").contains("hunter2"));
        let r = render("Bearer {secrets.api_key}", &secrets);
        assert_eq!(r.expose(), "Bearer hunter2");
        assert_eq!(format!("{r:?}"), "\"***\"");
    }

    #[test]
    fn templates() {
        assert_eq!(parse_template("a{{b}}c").unwrap(), vec![Piece::Text("a{b}c".into())]);
        assert_eq!(
            parse_template("x {secrets.api_key}!").unwrap(),
            vec![
                Piece::Text("x ".into()),
                Piece::Placeholder("secrets".into(), "api_key".into()),
                Piece::Text("!".into())
            ]
        );
        assert!(parse_template("{oops").unwrap_err().contains("unclosed"));
        assert!(parse_template("{oops}").unwrap_err().contains("{secrets.NAME}"));
        assert!(parse_template("a}b").unwrap_err().contains("unmatched"));
    }

    #[test]
    fn lookup_order_env_then_toml() {
        let dir = std::env::temp_dir().join(format!("resttap-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secrets.toml");
        std::fs::write(&file, "api_key = \"from-toml\"\n[sources.rest_api]\ntoken = \"nested\"\n").unwrap();
        let src = SecretSources { secrets_toml: Some(file.clone()), ignore_env: true, ..Default::default() };
        let mut names = BTreeMap::new();
        names.insert("api_key".to_string(), "client.auth.token".to_string());
        names.insert("sources.rest_api.token".to_string(), "client.headers.X".to_string());
        let (s, missing) = src.resolve_all(&names);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(s.get("api_key").unwrap().expose(), "from-toml");
        assert_eq!(s.get("sources.rest_api.token").unwrap().expose(), "nested");
        names.insert("missing_one".to_string(), "client.base_url".to_string());
        names.insert("missing_two".to_string(), "client.headers.Y".to_string());
        let (_, missing) = src.resolve_all(&names);
        assert_eq!(missing.len(), 2, "every missing name is reported: {missing:?}");
        let err = missing[0].to_string();
        assert!(
            err.contains("MISSING_ONE") && err.contains("secrets.toml") && err.contains("client.base_url"),
            "{err}"
        );
        assert_eq!(env_var_name("sources.rest_api.token"), "SOURCES__REST_API__TOKEN");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
