//! Configuration errors. Each names the file and, where there is one, the path of the offending
//! key (`resources[2].endpoint.paginator.cursor_pth`), and says what to do.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file extension does not say which format it is.
    #[error("cannot tell the format of config file {path}: use a .yaml, .yml, .json or .toml extension")]
    UnknownFormat { path: PathBuf },
    /// The file is not valid YAML/JSON/TOML.
    #[error("{path}: invalid {format}: {message}")]
    Syntax { path: PathBuf, format: &'static str, message: String },
    /// A key is unknown, has the wrong type, or a value is invalid.
    #[error("{path}: {key}: {message}{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Invalid { path: PathBuf, key: String, message: String, suggestion: Option<String> },
    /// A `{secrets.NAME}` placeholder has no value anywhere resttap looked.
    #[error(
        "secret `{name}` (used at {key}) is not set: set the environment variable {env_var} or add `{name}` to {}",
        secrets_file.display()
    )]
    MissingSecret { name: String, key: String, env_var: String, secrets_file: PathBuf },
    /// Several of the above, in the order found: keys and types first, then secrets.
    #[error("{} problems in config file {}:{}", errors.len(), path.display(), errors.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
    Many { path: PathBuf, errors: Vec<ConfigError> },
    /// `secrets.toml` exists but cannot be read.
    #[error("cannot read secrets file {}: {message}", path.display())]
    SecretsFile { path: PathBuf, message: String },
}

impl ConfigError {
    /// The config key path this error is about, if any (of the first, for several).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::MissingSecret { key, .. } => Some(key),
            ConfigError::Many { errors, .. } => errors.first().and_then(ConfigError::key),
            _ => None,
        }
    }

    /// The problems one load of `path` found, as one error: itself when there is one.
    pub(crate) fn all(path: &std::path::Path, mut errors: Vec<ConfigError>) -> ConfigError {
        match errors.len() {
            1 => errors.remove(0),
            _ => ConfigError::Many { path: path.to_path_buf(), errors },
        }
    }

    /// Each problem this error stands for.
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many { errors, .. } => errors.iter().collect(),
            other => vec![other],
        }
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(word, c);
        let limit = (c.len().max(word.len()) / 3).max(2);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("cursor_pth", ["cursor_path", "cursor_param", "type"]).as_deref(), Some("cursor_path"));
        assert_eq!(suggest("data_selecter", ["data_selector", "path"]).as_deref(), Some("data_selector"));
        assert_eq!(suggest("zzz", ["cursor_path", "type"]), None);
    }
}
