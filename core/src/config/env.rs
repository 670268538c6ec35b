//! The environment's part of loading: `CHORUS_SECTION__KEY` overrides applied to the
//! parsed TOML tree, then `${VAR}` interpolated in every string.

use super::{ConfigError, invalid};
use std::collections::BTreeMap;

/// Applies `CHORUS_SECTION__KEY=value` variables: the name after the prefix, split on
/// `__` and lower-cased, is the key path (numbers index arrays); the value is read as
/// a TOML value when it parses as one, else as a string.
pub(super) fn apply_env_overrides(
    root: &mut toml::Value,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix("CHORUS_") else {
            continue;
        };
        if !path.contains("__") && !KNOWN_TOP_LEVEL.contains(&path.to_ascii_lowercase().as_str()) {
            continue;
        }
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        set_path(root, &parts, parsed).map_err(|expected| invalid(name, value, &expected))?;
    }
    Ok(())
}

const KNOWN_TOP_LEVEL: &[&str] = &["data_dir"];

fn set_path(node: &mut toml::Value, parts: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = parts.split_first().ok_or("a key path")?;
    match node {
        toml::Value::Table(table) => {
            if rest.is_empty() {
                table.insert(first.clone(), value);
                return Ok(());
            }
            let child = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            set_path(child, rest, value)
        }
        toml::Value::Array(items) => {
            let index: usize = first
                .parse()
                .map_err(|_| format!("an array index at `{first}`"))?;
            let len = items.len();
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("an existing array element (there are {len})"))?;
            if rest.is_empty() {
                *item = value;
                return Ok(());
            }
            set_path(item, rest, value)
        }
        _ => Err(format!("a table or array at `{first}`")),
    }
}

/// Replaces `${VAR}` in every string with the variable's value.
pub(super) fn interpolate_env(
    node: &mut toml::Value,
    env: &BTreeMap<String, String>,
    key: &mut String,
) -> Result<(), ConfigError> {
    match node {
        toml::Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').ok_or_else(|| {
                    invalid(key.clone(), s.clone(), "`${VAR}` with a closing brace")
                })?;
                let var = &after[..end];
                let val = env.get(var).ok_or_else(|| ConfigError::MissingEnv {
                    key: key.clone(),
                    var: var.to_string(),
                })?;
                out.push_str(val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
                interpolate_env(v, env, key)?;
                key.truncate(len);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                interpolate_env(v, env, key)?;
                key.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}
