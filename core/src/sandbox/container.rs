//! The container one execution gets, and the guard that removes it on every path.
//!
//! The workspace travels through a fresh anonymous volume at `/mnt` (the root
//! filesystem is read-only, and Docker's archive API writes into volumes, not tmpfs
//! mounts): `/mnt/data` is the workspace, `/mnt/code` holds the program. Removing the
//! container with `v=true` removes the volume with it.

use super::config::{LanguageConfig, SandboxConfig};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
    ResourcesUlimits,
};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use std::collections::HashMap;
use std::time::Duration;

/// Label on every sandbox container and volume (orphans are found by it).
pub const LABEL: &str = "chorus.sandbox";
/// Label naming the instance that started a container.
pub const LABEL_INSTANCE: &str = "chorus.sandbox.instance";

/// Where the volume is mounted; the workspace is `MOUNT/data`.
pub const MOUNT: &str = "/mnt";
pub const WORKDIR: &str = "/mnt/data";

/// The create request of one execution's container.
pub fn spec(
    config: &SandboxConfig,
    language: &LanguageConfig,
    program_name: &str,
    instance: &str,
) -> ContainerCreateBody {
    let labels: HashMap<String, String> = [
        (LABEL.to_string(), "1".to_string()),
        (LABEL_INSTANCE.to_string(), instance.to_string()),
    ]
    .into();
    let mut cmd = language.command.clone();
    cmd.push(format!("{MOUNT}/code/{program_name}"));
    let memory = (config.memory_mb * 1024 * 1024) as i64;
    let fsize = config.workspace_quota_bytes() as i64;
    ContainerCreateBody {
        image: Some(language.image.clone()),
        cmd: Some(cmd),
        user: Some(config.user.clone()),
        working_dir: Some(WORKDIR.into()),
        env: Some(vec![
            "HOME=/tmp".into(),
            "PYTHONDONTWRITEBYTECODE=1".into(),
            "MPLCONFIGDIR=/tmp".into(),
        ]),
        labels: Some(labels.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            memory: Some(memory),
            // Equal to `memory`: no swap on top of the limit.
            memory_swap: Some(memory),
            nano_cpus: Some((config.cpus * 1e9) as i64),
            pids_limit: Some(config.pids_limit),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            ipc_mode: Some("private".into()),
            tmpfs: Some(
                [(
                    "/tmp".to_string(),
                    format!("rw,nosuid,nodev,size={}m,mode=1777", config.tmp_mb),
                )]
                .into(),
            ),
            mounts: Some(vec![Mount {
                target: Some(MOUNT.into()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(labels),
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            // No single file beyond the quota, even while the program runs.
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("fsize".into()),
                soft: Some(fsize),
                hard: Some(fsize),
            }]),
            // Output goes only to our attach stream, never to a log file on the host.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Owns a created container: [`ContainerGuard::remove`] removes it (and its volume);
/// dropping the guard without that (a cancelled or panicking execution) removes it
/// from a background task.
pub struct ContainerGuard {
    docker: Docker,
    /// The container's name until Docker confirmed the creation, then its id.
    id: String,
    armed: bool,
    /// Docker answered the create request. Until then a dropped guard cannot know
    /// whether the container exists (the request may still land), so it keeps trying.
    confirmed: bool,
}

impl ContainerGuard {
    /// A guard for the container about to be created under `name`, taken before the
    /// create request, so that a future dropped while Docker creates it (a stopped
    /// run) still removes it.
    pub fn before_create(docker: Docker, name: String) -> Self {
        Self {
            docker,
            id: name,
            armed: true,
            confirmed: false,
        }
    }

    /// Docker created the container: `id` is it.
    pub fn created(&mut self, id: String) {
        self.id = id;
        self.confirmed = true;
        crate::telemetry::metrics::sandbox_containers(1.0);
    }

    /// The create request failed: there is nothing to remove.
    pub fn not_created(mut self) {
        self.armed = false;
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Kills and removes the container and its volume, and waits for it.
    pub async fn remove(mut self) {
        self.armed = false;
        remove_or_retry(&self.docker, &self.id).await;
        if self.confirmed {
            crate::telemetry::metrics::sandbox_containers(-1.0);
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (docker, id, confirmed) = (self.docker.clone(), self.id.clone(), self.confirmed);
        match tokio::runtime::Handle::try_current() {
            // Detached on purpose: the owner is gone; the removal is bounded by
            // Docker's request timeout, and start-up reaping catches what it misses.
            Ok(rt) => {
                rt.spawn(async move {
                    if confirmed {
                        remove_or_retry(&docker, &id).await;
                        crate::telemetry::metrics::sandbox_containers(-1.0);
                        return;
                    }
                    // The create request may still be landing: look for the name a
                    // few times before deciding nothing was made.
                    for _ in 0..PENDING_CREATE_CHECKS {
                        match remove(&docker, &id).await {
                            Removal::Missing => {}
                            Removal::Removed => return,
                            Removal::Failed => return remove_or_retry(&docker, &id).await,
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(container = %id, "sandbox container left for the start-up reaper")
            }
        }
    }
}

/// How many times (every 500 ms) a guard dropped during the create request looks for
/// the container.
const PENDING_CREATE_CHECKS: usize = 20;

/// What became of a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Docker has no such container.
    Missing,
    /// Docker could not be reached, or refused: the container may still be there.
    Failed,
}

/// Force-removes a container with its anonymous volume; logs instead of failing.
pub async fn remove(docker: &Docker, id: &str) -> Removal {
    match try_remove(docker, id).await {
        Ok(removal) => removal,
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot remove sandbox container");
            Removal::Failed
        }
    }
}

async fn try_remove(docker: &Docker, id: &str) -> Result<Removal, bollard::errors::Error> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => {
            tracing::debug!(container = %id, "sandbox container removed");
            Ok(Removal::Removed)
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(Removal::Missing),
        Err(e) => Err(e),
    }
}

/// How often, and for how long, a removal that failed is tried again.
const REMOVE_RETRY_EVERY: Duration = Duration::from_secs(1);
const REMOVE_RETRY_FOR: Duration = Duration::from_secs(15 * 60);

/// Removes the container; when that fails (the engine unreachable: an execution its
/// outage cut short) keeps trying from a background task, so the container does not
/// outlive the outage (a restart's reaper catches what this gives up on).
pub async fn remove_or_retry(docker: &Docker, id: &str) {
    if remove(docker, id).await != Removal::Failed {
        return;
    }
    let (docker, id) = (docker.clone(), id.to_string());
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        while started.elapsed() < REMOVE_RETRY_FOR {
            tokio::time::sleep(REMOVE_RETRY_EVERY).await;
            match try_remove(&docker, &id).await {
                Ok(_) => {
                    tracing::info!(container = %id, "sandbox container removed once Docker answered again");
                    return;
                }
                Err(e) => {
                    tracing::debug!(container = %id, error = %e, "sandbox container removal retried")
                }
            }
        }
        tracing::warn!(container = %id, "sandbox container left for the start-up reaper");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_isolates_the_container() {
        let config = SandboxConfig::default();
        let python = config.language("python").unwrap().1;
        let spec = spec(&config, python, "main.py", "inst-1");
        let host = spec.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            host.security_opt.as_deref(),
            Some(&["no-new-privileges".to_string()][..])
        );
        assert_eq!(host.memory, host.memory_swap);
        assert_eq!(host.pids_limit, Some(config.pids_limit));
        assert_eq!(spec.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            spec.cmd.as_deref().unwrap().last().unwrap(),
            "/mnt/code/main.py"
        );
        let labels = spec.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL], "1");
        assert_eq!(labels[LABEL_INSTANCE], "inst-1");
    }
}
