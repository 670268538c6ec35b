//! The containers one execution gets, and the guard that removes them on every path.
//!
//! The workspace travels through a memory-backed volume at `/mnt` (the root
//! filesystem is read-only): `/mnt/data` is the workspace, `/mnt/code` holds the
//! program. The volume is a local-driver `tmpfs` of a fixed size and number of files
//! ([`workspace_volume_options`]), so what a program writes there is capped in total,
//! not only per file: past the cap a write fails with "No space left on device", and
//! nothing lands on the Docker host's disk.
//!
//! A tmpfs volume lives only while it is mounted, and Docker's archive API mounts it
//! only for the length of one call on a container that is not running. So each
//! execution has two containers: the **holder**, started first, which keeps the
//! volume mounted from the upload to the download (it runs the language's command on
//! `/dev/stdin`, an open pipe nothing is written to, so it waits; it runs nothing
//! else), and the **program**'s container, which mounts the holder's volume by name.
//! The workspace is uploaded to and downloaded from the holder. Removing the program's
//! container, then the holder with `v=true`, removes the volume.

use super::config::{LanguageConfig, SandboxConfig};
use super::workspace::MAX_FILES;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerCreateResponse, HostConfig, HostConfigLogConfig, Mount,
    MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, ResourcesUlimits,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Label on every sandbox container and volume (orphans are found by it).
pub const LABEL: &str = "chorus.sandbox";
/// Label naming the instance that started a container.
pub const LABEL_INSTANCE: &str = "chorus.sandbox.instance";
/// Label naming the execution (shared by its holder and its program's container):
/// what the admin console lists and kills.
pub const LABEL_EXECUTION: &str = "chorus.sandbox.execution";
/// Label naming the run whose tool call started the execution (absent outside a run).
pub const LABEL_RUN: &str = "chorus.sandbox.run";
/// Label naming the account whose workspace the execution uses.
pub const LABEL_ACCOUNT: &str = "chorus.sandbox.account";
/// Label saying which of an execution's containers this is: `holder` or `program`.
pub const LABEL_ROLE: &str = "chorus.sandbox.role";

/// What labels an execution's containers and volume: every engine's containers are
/// listed by them, so the console sees every instance's executions.
#[derive(Clone, Debug)]
pub struct Tags<'a> {
    pub instance: &'a str,
    /// The execution's name (`chorus-sbx-…`), also the program container's name.
    pub execution: &'a str,
    pub run: Option<&'a str>,
    pub account: &'a str,
}

/// Where the volume is mounted; the workspace is `MOUNT/data`.
pub const MOUNT: &str = "/mnt";
pub const WORKDIR: &str = "/mnt/data";

/// What the holder's command reads as its program: a pipe that stays open and empty.
const HOLD: &str = "/dev/stdin";

/// Files and directories `/mnt` may hold: the workspace's limit and a few for `/mnt`,
/// `code/`, the program and `data/`.
pub fn volume_files() -> usize {
    MAX_FILES + 8
}

/// Bytes `/mnt` may hold: the workspace quota and room for a program of
/// `program_bytes` (rounded up to 64 KiB, the largest page size a host may have: tmpfs
/// counts whole pages).
pub fn volume_bytes(config: &SandboxConfig, program_bytes: usize) -> u64 {
    const PAGE: u64 = 64 * 1024;
    config.workspace_quota_bytes() + (program_bytes as u64).div_ceil(PAGE).max(1) * PAGE
}

/// The local driver's options of the workspace volume: a tmpfs of
/// [`volume_bytes`] and [`volume_files`] (its pages count against the program's memory
/// limit as it writes them, never against the host's disk).
pub fn workspace_volume_options(
    config: &SandboxConfig,
    program_bytes: usize,
) -> HashMap<String, String> {
    [
        ("type".to_string(), "tmpfs".to_string()),
        ("device".to_string(), "tmpfs".to_string()),
        (
            "o".to_string(),
            format!(
                "size={},nr_inodes={},mode=1777,nosuid,nodev",
                volume_bytes(config, program_bytes),
                volume_files()
            ),
        ),
    ]
    .into()
}

fn labels(tags: &Tags<'_>, role: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = [
        (LABEL.to_string(), "1".to_string()),
        (LABEL_INSTANCE.to_string(), tags.instance.to_string()),
        (LABEL_EXECUTION.to_string(), tags.execution.to_string()),
        (LABEL_ACCOUNT.to_string(), tags.account.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
    ]
    .into();
    if let Some(run) = tags.run {
        labels.insert(LABEL_RUN.to_string(), run.to_string());
    }
    labels
}

/// The isolation every container of an execution gets, with `mount` at `/mnt`.
fn isolated(config: &SandboxConfig, mount: Mount) -> HostConfig {
    let memory = (config.memory_mb * 1024 * 1024) as i64;
    let fsize = config.workspace_quota_bytes() as i64;
    HostConfig {
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
        mounts: Some(vec![mount]),
        // No single file beyond the quota, even in /tmp.
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
    }
}

/// The create request of an execution's holder: a new workspace volume at `/mnt`,
/// kept mounted while it waits on [`HOLD`].
pub fn holder_spec(
    config: &SandboxConfig,
    language: &LanguageConfig,
    tags: &Tags<'_>,
    program_bytes: usize,
) -> ContainerCreateBody {
    let mut cmd = language.command.clone();
    cmd.push(HOLD.into());
    let mount = Mount {
        target: Some(MOUNT.into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels(tags, "holder")),
            no_copy: Some(true),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(workspace_volume_options(config, program_bytes)),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(language.image.clone()),
        cmd: Some(cmd),
        user: Some(config.user.clone()),
        working_dir: Some("/tmp".into()),
        env: Some(vec!["HOME=/tmp".into()]),
        labels: Some(labels(tags, "holder")),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        attach_stdin: Some(false),
        // Open and never written: the command waits on it.
        open_stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(isolated(config, mount)),
        ..Default::default()
    }
}

/// The create request of one execution's program, on the holder's `volume`.
pub fn spec(
    config: &SandboxConfig,
    language: &LanguageConfig,
    program_name: &str,
    tags: &Tags<'_>,
    volume: &str,
) -> ContainerCreateBody {
    let mut cmd = language.command.clone();
    cmd.push(format!("{MOUNT}/code/{program_name}"));
    let mount = Mount {
        target: Some(MOUNT.into()),
        source: Some(volume.into()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        ..Default::default()
    };
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
        labels: Some(labels(tags, "program")),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(isolated(config, mount)),
        ..Default::default()
    }
}

/// The answer to a create request.
type Created = Result<ContainerCreateResponse, bollard::errors::Error>;

/// One container a guard owns.
struct Owned {
    /// The container's name until Docker confirmed the creation, then its id.
    id: String,
    /// The create request, while it runs. It runs in a task of its own, so an
    /// execution dropped meanwhile (a stopped run) does not cut it off: whoever
    /// discards the guard waits for its answer and removes what it made.
    request: Option<JoinHandle<Created>>,
    /// Docker answered the create request with the container's id.
    confirmed: bool,
}

/// Owns the containers of one execution (the holder, then the program's):
/// [`ContainerGuard::remove`] removes them, newest first, and with them the volume;
/// dropping the guard without that (a cancelled or panicking execution) removes them
/// from a background task, in the same order.
pub struct ContainerGuard {
    docker: Docker,
    owned: Vec<Owned>,
    armed: bool,
}

/// A container of a [`ContainerGuard`], by the order it was created in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

impl ContainerGuard {
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            owned: Vec::new(),
            armed: true,
        }
    }

    /// Creates a container named `name` and owns it from before the request is sent,
    /// so that no path (an error, a dropped execution) leaves it behind. On an error
    /// Docker answered nothing was made; on one it did not (the connection lost), the
    /// container may exist and the guard removes it by name.
    pub async fn create(
        &mut self,
        name: String,
        spec: ContainerCreateBody,
    ) -> Result<Slot, bollard::errors::Error> {
        let docker = self.docker.clone();
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.owned.push(Owned {
            id: name,
            request: None,
            confirmed: false,
        });
        let slot = Slot(self.owned.len() - 1);
        let request = self.owned[slot.0].request.insert(tokio::spawn(async move {
            docker.create_container(Some(options), spec).await
        }));
        let created = request.await.unwrap_or_else(|e| Err(request_lost(e)));
        let owned = &mut self.owned[slot.0];
        owned.request = None;
        match created {
            Ok(created) => {
                owned.id = created.id;
                owned.confirmed = true;
                crate::telemetry::metrics::sandbox_containers(1.0);
                Ok(slot)
            }
            Err(e) => {
                if docker_answered(&e) {
                    self.owned.pop();
                }
                Err(e)
            }
        }
    }

    pub fn id(&self, slot: Slot) -> &str {
        &self.owned[slot.0].id
    }

    /// Kills and removes the containers (newest first) and the volume, and waits. The
    /// removal runs in a task of its own: an execution dropped while it waits does
    /// not stop it half-way.
    pub async fn remove(mut self) {
        self.armed = false;
        let owned = std::mem::take(&mut self.owned);
        if owned.is_empty() {
            return;
        }
        // A join error is the runtime shutting down: the start-up reaper takes over.
        let _ = tokio::spawn(discard(self.docker.clone(), owned)).await;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed || self.owned.is_empty() {
            return;
        }
        let owned = std::mem::take(&mut self.owned);
        match tokio::runtime::Handle::try_current() {
            // Detached on purpose: the owner is gone; the removal is bounded by
            // Docker's request timeout, and start-up reaping catches what it misses.
            Ok(rt) => {
                rt.spawn(discard(self.docker.clone(), owned));
            }
            Err(_) => {
                let ids: Vec<&str> = owned.iter().map(|o| o.id.as_str()).collect();
                tracing::warn!(containers = ?ids, "sandbox containers left for the start-up reaper")
            }
        }
    }
}

/// Removes a guard's containers, newest first (the program's before the holder whose
/// volume it mounts). A create request still running is waited for, and what it made
/// removed.
async fn discard(docker: Docker, owned: Vec<Owned>) {
    for Owned {
        id,
        request,
        confirmed,
    } in owned.into_iter().rev()
    {
        if confirmed {
            remove_or_retry(&docker, &id).await;
            crate::telemetry::metrics::sandbox_containers(-1.0);
            continue;
        }
        let answer = match request {
            // The owner went away while Docker created it: its answer says what to remove.
            Some(request) => request.await.unwrap_or_else(|e| Err(request_lost(e))),
            // The answer was lost on the way ([`ContainerGuard::create`] failed with it).
            None => {
                remove_when_created(&docker, &id).await;
                continue;
            }
        };
        match answer {
            Ok(created) => remove_or_retry(&docker, &created.id).await,
            Err(e) if docker_answered(&e) => {}
            Err(_) => remove_when_created(&docker, &id).await,
        }
    }
}

/// Whether a failed request was refused by Docker itself (so it did nothing), rather
/// than lost on the way (so it may have been carried out).
fn docker_answered(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { .. })
}

/// A create request whose answer never came back (its task failed): Docker may have
/// carried it out.
fn request_lost(why: impl std::fmt::Display) -> bollard::errors::Error {
    bollard::errors::Error::IOError {
        err: std::io::Error::other(format!("container create request lost: {why}")),
    }
}

/// How many times (every 500 ms) a container whose create request was lost on the way
/// is looked for.
const PENDING_CREATE_CHECKS: usize = 20;

/// Removes the container named `id` whose create request was lost on the way (Docker
/// may still be carrying it out): looks for it a few times before deciding nothing
/// was made.
async fn remove_when_created(docker: &Docker, id: &str) {
    for _ in 0..PENDING_CREATE_CHECKS {
        match remove(docker, id).await {
            Removal::Missing => {}
            Removal::Removed => return,
            Removal::Failed => {
                remove_or_retry(docker, id).await;
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

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
        let tags = Tags {
            instance: "inst-1",
            execution: "chorus-sbx-1",
            run: Some("run-1"),
            account: "acc-1",
        };
        let spec = spec(&config, python, "main.py", &tags, "vol-1");
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
        assert_eq!(labels[LABEL_EXECUTION], "chorus-sbx-1");
        assert_eq!(labels[LABEL_RUN], "run-1");
        assert_eq!(labels[LABEL_ACCOUNT], "acc-1");
        assert_eq!(labels[LABEL_ROLE], "program");
        let mount = &host.mounts.as_ref().unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("vol-1"));
        assert_eq!(mount.target.as_deref(), Some(MOUNT));
    }

    #[test]
    fn the_holder_makes_a_capped_tmpfs_volume_and_waits() {
        let config = SandboxConfig {
            workspace_quota_mb: 2,
            ..SandboxConfig::default()
        };
        let python = config.language("python").unwrap().1;
        let tags = Tags {
            instance: "inst-1",
            execution: "chorus-sbx-1",
            run: None,
            account: "acc-1",
        };
        let holder = holder_spec(&config, python, &tags, 1000);
        let labels = holder.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_ROLE], "holder");
        assert!(!labels.contains_key(LABEL_RUN));
        assert_eq!(
            holder.cmd.as_deref().unwrap(),
            ["python3", "-u", "/dev/stdin"]
        );
        assert_eq!(holder.open_stdin, Some(true));
        let host = holder.host_config.as_ref().unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let mount = &host.mounts.as_ref().unwrap()[0];
        assert_eq!(mount.source, None, "a new volume, removed with the holder");
        let options = mount.volume_options.as_ref().unwrap();
        assert_eq!(options.labels.as_ref().unwrap()[LABEL], "1");
        let driver = options.driver_config.as_ref().unwrap();
        let opts = driver.options.as_ref().unwrap();
        assert_eq!(opts["type"], "tmpfs");
        let size = 2 * 1024 * 1024 + 64 * 1024;
        assert!(
            opts["o"].starts_with(&format!("size={size},nr_inodes={},", MAX_FILES + 8)),
            "{}",
            opts["o"]
        );
    }
}
