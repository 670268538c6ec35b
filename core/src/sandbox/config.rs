//! The `[sandbox]` config section: which images run which language, and the limits
//! every execution gets. Validated once at load, like the rest of [`crate::config`].

use chorus_model::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The image `scripts/sandbox-image` builds (a minimal Debian with Python 3 and bash).
pub const DEFAULT_IMAGE: &str = "chorus-sandbox:1";

/// Limits and images of the code sandbox.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Offer the `code_interpreter` tool when Docker is reachable. Off by default:
    /// running models' code is a choice for the operator to make.
    pub enabled: bool,
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://HOST:2375`). Default:
    /// `$DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// Allow a `tcp://` or `http://` endpoint. Chorus speaks plain HTTP to it (no
    /// TLS), and whoever can reach or watch that port controls the Docker host, so it
    /// is refused unless this says the network is trusted; prefer the local socket (a
    /// remote engine through an SSH-forwarded socket).
    pub allow_insecure_tcp: bool,
    /// Language name → image and command. Defaults: `python` and `shell`.
    pub languages: BTreeMap<String, LanguageConfig>,
    /// Memory limit of one execution, in MiB (swap is not allowed on top).
    pub memory_mb: u64,
    /// CPU limit of one execution, in CPUs (0.5 = half a core).
    pub cpus: f64,
    /// Most processes and threads one execution may have at once.
    pub pids_limit: i64,
    /// Wall-clock limit of one execution, in seconds; the container is killed then.
    pub timeout_secs: u64,
    /// Size of the writable `/tmp` (memory-backed), in MiB.
    pub tmp_mb: u64,
    /// Bytes of stdout and of stderr kept per execution; the rest is counted and dropped.
    pub max_output_bytes: usize,
    /// Executions running at once on this instance; more wait in a queue.
    pub max_concurrent: usize,
    /// Longest wait in that queue, in seconds, before the execution is refused.
    pub queue_timeout_secs: u64,
    /// Size limit of one conversation's workspace, in MiB. It caps everything an
    /// execution writes to `/mnt` (a tmpfs volume of this size, plus the program;
    /// writes past it fail with `ENOSPC`), and those writes count against `memory_mb`.
    pub workspace_quota_mb: u64,
    /// Longest accepted program, in bytes.
    pub max_code_bytes: usize,
    /// `UID:GID` the code runs as inside the container (never root).
    pub user: String,
}

/// How one language runs: the program is written to a file with `extension` and its
/// path is appended to `command`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LanguageConfig {
    /// Image with the interpreter; it needs nothing else (no shell, no tar). Its
    /// `command` given `/dev/stdin` as the program must wait on it (interpreters do):
    /// that is the holder that keeps the workspace volume mounted (container.rs).
    pub image: String,
    /// Command and arguments; the program's path is appended.
    pub command: Vec<String>,
    /// File extension of the program, without the dot.
    pub extension: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let mut languages = BTreeMap::new();
        languages.insert(
            "python".to_string(),
            LanguageConfig {
                image: DEFAULT_IMAGE.into(),
                command: vec!["python3".into(), "-u".into()],
                extension: "py".into(),
            },
        );
        languages.insert(
            "shell".to_string(),
            LanguageConfig {
                image: DEFAULT_IMAGE.into(),
                command: vec!["bash".into()],
                extension: "sh".into(),
            },
        );
        Self {
            enabled: false,
            docker_host: None,
            allow_insecure_tcp: false,
            languages,
            memory_mb: 512,
            cpus: 1.0,
            pids_limit: 128,
            timeout_secs: 60,
            tmp_mb: 64,
            max_output_bytes: 64 * 1024,
            max_concurrent: 4,
            queue_timeout_secs: 300,
            workspace_quota_mb: 100,
            max_code_bytes: 256 * 1024,
            user: "1000:1000".into(),
        }
    }
}

fn invalid(key: &str, value: impl ToString, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("sandbox.{key}"),
        value: value.to_string(),
        expected: expected.into(),
    }
}

impl SandboxConfig {
    /// Checks every limit and language; errors name the key, value and expectation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_mb < 16 {
            return Err(invalid("memory_mb", self.memory_mb, "at least 16 MiB"));
        }
        if !(self.cpus > 0.0 && self.cpus.is_finite()) {
            return Err(invalid("cpus", self.cpus, "a positive number of CPUs"));
        }
        if self.pids_limit < 4 {
            return Err(invalid("pids_limit", self.pids_limit, "at least 4"));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("timeout_secs", 0, "at least 1 second"));
        }
        if self.tmp_mb == 0 {
            return Err(invalid("tmp_mb", 0, "at least 1 MiB"));
        }
        if self.max_output_bytes < 1024 {
            return Err(invalid(
                "max_output_bytes",
                self.max_output_bytes,
                "at least 1024 bytes",
            ));
        }
        if self.max_concurrent == 0 {
            return Err(invalid("max_concurrent", 0, "at least 1"));
        }
        if self.workspace_quota_mb == 0 {
            return Err(invalid("workspace_quota_mb", 0, "at least 1 MiB"));
        }
        if self.max_code_bytes == 0 {
            return Err(invalid("max_code_bytes", 0, "at least 1 byte"));
        }
        let numeric_user = self
            .user
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
        if !matches!(numeric_user, Some((uid, _)) if uid != 0) {
            return Err(invalid(
                "user",
                &self.user,
                "UID:GID with a non-zero UID, e.g. 1000:1000 (code never runs as root)",
            ));
        }
        if let Some(host) = &self.docker_host
            && !["unix://", "tcp://", "http://"]
                .iter()
                .any(|p| host.starts_with(p))
        {
            return Err(invalid(
                "docker_host",
                host,
                "a unix://PATH, tcp://HOST:PORT or http://HOST:PORT address",
            ));
        }
        if let Some(host) = &self.docker_host
            && self.enabled
            && !host.starts_with("unix://")
            && !self.allow_insecure_tcp
        {
            return Err(invalid(
                "docker_host",
                host,
                "a unix:// socket: a TCP endpoint is plain HTTP without TLS, and anyone who \
                 reaches it controls the Docker host (forward the remote socket over SSH, or \
                 set sandbox.allow_insecure_tcp = true on a trusted network)",
            ));
        }
        for (name, lang) in &self.languages {
            let key = |field: &str| format!("languages.{name}.{field}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    &format!("languages.{name}"),
                    name,
                    "a language name of letters, digits and `_`",
                ));
            }
            if lang.image.trim().is_empty() {
                return Err(invalid(&key("image"), "", "an image name"));
            }
            if lang.command.is_empty() || lang.command[0].trim().is_empty() {
                return Err(invalid(
                    &key("command"),
                    "[]",
                    "a command, e.g. [\"python3\"]",
                ));
            }
            if lang.extension.is_empty()
                || !lang.extension.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(invalid(
                    &key("extension"),
                    &lang.extension,
                    "a file extension of letters and digits, e.g. py",
                ));
            }
        }
        Ok(())
    }

    /// The configured language a model's name refers to: exact, or a common synonym
    /// (`python3`, `py` → `python`; `bash`, `sh` → `shell`).
    pub fn language(&self, name: &str) -> Option<(&str, &LanguageConfig)> {
        let name = name.trim().to_ascii_lowercase();
        let canonical = match name.as_str() {
            n if self.languages.contains_key(n) => n,
            "python3" | "py" => "python",
            "bash" | "sh" => "shell",
            n => n,
        };
        self.languages
            .get_key_value(canonical)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The workspace quota in bytes.
    pub fn workspace_quota_bytes(&self) -> u64 {
        self.workspace_quota_mb * 1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_synonyms_resolve() {
        let c = SandboxConfig::default();
        c.validate().unwrap();
        assert_eq!(c.language("Python3").unwrap().0, "python");
        assert_eq!(c.language("bash").unwrap().0, "shell");
        assert!(c.language("cobol").is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        let c = SandboxConfig {
            user: "0:0".into(),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sandbox.user") && e.contains("0:0"), "{e}");

        let mut c = SandboxConfig::default();
        c.languages.get_mut("python").unwrap().extension = "p/y".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sandbox.languages.python.extension"), "{e}");

        let c = SandboxConfig {
            docker_host: Some("/var/run/docker.sock".into()),
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("docker_host")
        );
    }

    #[test]
    fn a_plain_tcp_engine_needs_an_explicit_allowance() {
        for host in ["tcp://10.0.0.5:2375", "http://docker.internal:2375"] {
            let c = SandboxConfig {
                enabled: true,
                docker_host: Some(host.into()),
                ..Default::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("sandbox.docker_host") && e.contains("allow_insecure_tcp"),
                "{e}"
            );
            SandboxConfig {
                allow_insecure_tcp: true,
                ..c.clone()
            }
            .validate()
            .unwrap();
            // A disabled sandbox connects to nothing.
            SandboxConfig {
                enabled: false,
                ..c
            }
            .validate()
            .unwrap();
        }
        SandboxConfig {
            docker_host: Some("unix:///run/user/1000/docker.sock".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
    }
}
