//! The one error type of configuration, shared by every section's validation: each
//! subsystem (providers, MCP, sandbox, SSO, every surface) owns and validates its own
//! section, and the top-level config only aggregates them.

use std::path::PathBuf;

/// A configuration that cannot be used, with enough detail to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file is not valid TOML: {0}")]
    Syntax(String),
    #[error("config key `{key}`: {message}")]
    Shape { key: String, message: String },
    #[error("config key `{key}` has value {value:?}, expected {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    #[error("config key `{key}` refers to environment variable `{var}`, which is not set")]
    MissingEnv { key: String, var: String },
    #[error("config key `{key}` is required: {why}")]
    Missing { key: String, why: String },
}

/// A [`ConfigError::Invalid`]: the key, the value found, and what was expected.
pub fn invalid(key: impl Into<String>, value: impl Into<String>, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}
