//! [`DockerSandbox`]: the [`Sandbox`] on a Docker engine, through bollard.
//!
//! One execution: wait for a slot (semaphore) → lock the workspace → create and start
//! the holder (its new tmpfs volume of the quota's size at `/mnt`) → upload workspace
//! and program into it → create the program's container on that volume → attach →
//! start → read output (bounded) until exit, the wall-clock limit (kill) or
//! cancellation (kill, remove, return) → inspect (exit code, OOM) → download the
//! workspace from the holder within the quota → remove both (and the volume).
//!
//! The admin console lists the executions running on the engine (every instance's:
//! they are found by label) and kills one: its containers are renamed with
//! [`STOPPED_MARK`] and killed, so the instance that runs it, whichever it is, reads
//! from the name that an administrator stopped it, says so in the tool result, and
//! removes the containers and the volume as on every other path.

use super::config::SandboxConfig;
use super::container::{
    self, ContainerGuard, LABEL, LABEL_ACCOUNT, LABEL_EXECUTION, LABEL_INSTANCE, LABEL_ROLE,
    LABEL_RUN, MOUNT, Tags,
};
use super::output::BoundedOutput;
use super::workspace::{self, Workspaces};
use super::{Execution, ExecutionRequest, Sandbox, SandboxError};
use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RenameContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

/// Seconds Docker requests may take before the client gives up.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long an availability answer is reused.
const AVAILABILITY_TTL: Duration = Duration::from_secs(5);
/// Extra time after a kill for the container to report its end.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// Appended to the name of a container an administrator killed: how the instance
/// running the execution learns why it ended.
pub const STOPPED_MARK: &str = "-stopped-by-admin";
/// The prefix of every execution's name.
const EXECUTION_PREFIX: &str = "chorus-sbx-";

/// An execution running on the Docker engine, as its containers' labels tell it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunningExecution {
    /// The execution's name (`chorus-sbx-…`), what a kill names.
    pub id: String,
    /// The run whose tool call started it.
    pub run_id: Option<String>,
    /// The account whose workspace it uses.
    pub account_id: Option<String>,
    /// The instance running it.
    pub instance: Option<String>,
    /// When its first container was created (Unix ms).
    pub started_at: i64,
    /// Its containers (the holder, and the program's once created).
    pub containers: usize,
    /// Whether the program itself runs yet (else its workspace is being prepared).
    pub program_running: bool,
}

/// The code sandbox on a Docker engine. Cheap to share (`Arc`); every method is safe
/// to call concurrently.
pub struct DockerSandbox {
    config: SandboxConfig,
    host: String,
    instance: String,
    workspaces: Arc<Workspaces>,
    slots: Arc<Semaphore>,
    client: Mutex<Option<Docker>>,
    availability: std::sync::Mutex<Option<(Instant, bool)>>,
}

impl DockerSandbox {
    /// A sandbox that keeps workspaces under `data_dir/sandbox` and labels its
    /// containers with `instance`. Connects lazily: Docker may come up later.
    pub fn new(config: SandboxConfig, data_dir: &Path, instance: &str) -> Self {
        let host = config
            .docker_host
            .clone()
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        Self {
            workspaces: Arc::new(Workspaces::new(data_dir, config.workspace_quota_bytes())),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            host,
            instance: instance.to_string(),
            config,
            client: Mutex::new(None),
            availability: std::sync::Mutex::new(None),
        }
    }

    /// The workspaces this sandbox copies in and out (for listing and downloads).
    pub fn workspaces(&self) -> &Arc<Workspaces> {
        &self.workspaces
    }

    /// Executions running now (at most `max_concurrent`).
    pub fn running(&self) -> usize {
        self.config.max_concurrent - self.slots.available_permits()
    }

    fn unavailable(&self, reason: impl ToString) -> SandboxError {
        SandboxError::Unavailable {
            host: self.host.clone(),
            reason: reason.to_string(),
        }
    }

    /// A client that has negotiated the API version with the engine (Debian's Docker
    /// 20.10 speaks API 1.41; bollard defaults to a newer one).
    async fn docker(&self) -> Result<Docker, SandboxError> {
        if !self.config.enabled {
            return Err(SandboxError::Disabled);
        }
        let mut client = self.client.lock().await;
        if let Some(docker) = client.as_ref() {
            return Ok(docker.clone());
        }
        let docker = connect(&self.host).map_err(|e| self.unavailable(e))?;
        let docker = tokio::time::timeout(Duration::from_secs(3), docker.negotiate_version())
            .await
            .map_err(|_| self.unavailable("no answer within 3 seconds"))?
            .map_err(|e| self.unavailable(e))?;
        *client = Some(docker.clone());
        Ok(docker)
    }

    /// Removes sandbox containers (and their volumes) left by a crash: every one this
    /// instance labelled, and any instance's that has outlived the time limit.
    pub async fn reap_orphans(&self) -> Result<usize, SandboxError> {
        let docker = self.docker().await?;
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![format!("{LABEL}=1")])].into();
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let max_age = (self.config.timeout_secs + 300) as i64;
        let now = chorus_model::time::now_ms() / 1000;
        let mut reaped = 0;
        for c in docker.list_containers(Some(options)).await? {
            let ours = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .is_some_and(|i| *i == self.instance);
            let stale = c.created.is_some_and(|t| now - t > max_age);
            if let Some(id) = c.id.filter(|_| ours || stale) {
                container::remove(&docker, &id).await;
                reaped += 1;
            }
        }
        // Volumes whose container is gone already (removal interrupted half-way).
        let volume_filters: HashMap<String, Vec<String>> = [
            ("label".to_string(), vec![format!("{LABEL}=1")]),
            ("dangling".to_string(), vec!["true".to_string()]),
        ]
        .into();
        let volumes = docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&volume_filters)
                    .build(),
            ))
            .await?;
        for v in volumes.volumes.unwrap_or_default() {
            if let Err(e) = docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                tracing::warn!(volume = %v.name, error = %e, "cannot remove sandbox volume");
            }
        }
        if reaped > 0 {
            tracing::info!(reaped, "removed orphaned sandbox containers");
        }
        Ok(reaped)
    }

    /// The executions running on the engine now, every instance's, oldest first.
    pub async fn executions(&self) -> Result<Vec<RunningExecution>, SandboxError> {
        let docker = self.docker().await?;
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![format!("{LABEL}=1")])].into();
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut executions: Vec<RunningExecution> = Vec::new();
        for c in docker.list_containers(Some(options)).await? {
            let labels = c.labels.unwrap_or_default();
            let label = |key: &str| labels.get(key).cloned();
            // Containers of a version before the execution label: one each.
            let Some(id) = label(LABEL_EXECUTION).or(c.id.clone()) else {
                continue;
            };
            let created = c.created.unwrap_or(0) * 1000;
            let program = label(LABEL_ROLE).as_deref() == Some("program");
            match executions.iter_mut().find(|e| e.id == id) {
                Some(e) => {
                    e.containers += 1;
                    e.started_at = e.started_at.min(created);
                    e.program_running |= program;
                }
                None => executions.push(RunningExecution {
                    id,
                    run_id: label(LABEL_RUN),
                    account_id: label(LABEL_ACCOUNT),
                    instance: label(LABEL_INSTANCE),
                    started_at: created,
                    containers: 1,
                    program_running: program,
                }),
            }
        }
        executions.sort_by_key(|e| e.started_at);
        Ok(executions)
    }

    /// Kills a running execution, whichever instance runs it: marks its containers
    /// ([`STOPPED_MARK`]) and kills them, program first. The instance running it
    /// then ends the tool call with "stopped by an administrator" and removes the
    /// containers and the volume. `Ok(false)`: no such execution runs.
    pub async fn kill_execution(&self, execution: &str) -> Result<bool, SandboxError> {
        if !is_execution_name(execution) {
            return Ok(false);
        }
        let docker = self.docker().await?;
        let filters: HashMap<String, Vec<String>> = [(
            "label".to_string(),
            vec![
                format!("{LABEL}=1"),
                format!("{LABEL_EXECUTION}={execution}"),
            ],
        )]
        .into();
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let mut containers = docker.list_containers(Some(options)).await?;
        if containers.is_empty() {
            return Ok(false);
        }
        // The program before its holder: the holder's end takes the volume's files.
        containers.sort_by_key(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ROLE))
                .is_none_or(|r| r != "program")
        });
        for c in containers {
            let (Some(id), Some(name)) = (c.id, c.names.and_then(|n| n.into_iter().next())) else {
                continue;
            };
            let name = name.trim_start_matches('/');
            if !name.ends_with(STOPPED_MARK) {
                let renamed = format!("{name}{STOPPED_MARK}");
                docker
                    .rename_container(
                        &id,
                        RenameContainerOptionsBuilder::new().name(&renamed).build(),
                    )
                    .await?;
            }
            kill(&docker, &id).await;
        }
        tracing::info!(execution, "sandbox execution killed by an administrator");
        Ok(true)
    }

    async fn run(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> Result<Execution, SandboxError> {
        let known = || self.languages().join(", ");
        let (language, lang) = self.config.language(&request.language).ok_or_else(|| {
            SandboxError::UnknownLanguage {
                given: request.language.clone(),
                known: known(),
            }
        })?;
        if request.code.len() > self.config.max_code_bytes {
            return Err(SandboxError::Invalid(format!(
                "the program is {} bytes, more than sandbox.max_code_bytes ({})",
                request.code.len(),
                self.config.max_code_bytes
            )));
        }
        let docker = self.docker().await?;
        if let Err(e) = docker.inspect_image(&lang.image).await {
            return Err(match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => SandboxError::ImageMissing {
                    image: lang.image.clone(),
                    language: language.to_string(),
                },
                other => self.unavailable(other),
            });
        }

        // One execution per workspace at a time (each copies back over the
        // workspace), then a slot among `max_concurrent`.
        let _workspace = tokio::select! {
            guard = self.workspaces.lock(&request.account, &request.conversation) => guard,
            _ = cancel.cancelled() => return Err(SandboxError::Cancelled),
        };
        let queue_timeout = Duration::from_secs(self.config.queue_timeout_secs);
        let _slot = tokio::select! {
            slot = tokio::time::timeout(queue_timeout, self.slots.clone().acquire_owned()) => match slot {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => return Err(SandboxError::Cancelled),
                Err(_) => return Err(SandboxError::QueueTimeout(self.config.queue_timeout_secs)),
            },
            _ = cancel.cancelled() => return Err(SandboxError::Cancelled),
        };
        let started = Instant::now();
        let dir = self.workspaces.dir(&request.account, &request.conversation);
        let program_name = format!("main.{}", lang.extension);

        // The upload tar goes through a temporary file, so memory stays flat whatever
        // the workspace holds.
        let (tar_file, before) = {
            let (dir, name, code) = (dir.clone(), program_name.clone(), request.code.clone());
            tokio::task::spawn_blocking(move || -> Result<_, SandboxError> {
                let before = workspace::snapshot(&dir)?;
                let mut file = tempfile::tempfile().map_err(workspace::WorkspaceError::from)?;
                workspace::pack(&dir, &name, code.as_bytes(), &mut file)?;
                file.flush().map_err(workspace::WorkspaceError::from)?;
                file.rewind().map_err(workspace::WorkspaceError::from)?;
                Ok((file, before))
            })
            .await
            .map_err(|e| SandboxError::Docker(e.to_string()))??
        };

        // The holder first: it keeps the workspace volume mounted from the upload to
        // the download (container.rs).
        let name = format!("{EXECUTION_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let tags = Tags {
            instance: &self.instance,
            execution: &name,
            run: request.run.as_ref().map(|r| r.as_str()),
            account: request.account.as_str(),
        };
        let mut guard = ContainerGuard::new(docker.clone());
        let holder = guard
            .create(
                format!("{name}-hold"),
                container::holder_spec(&self.config, lang, &tags, request.code.len()),
            )
            .await?;
        let volume = match self.hold(&docker, guard.id(holder), tar_file).await {
            Ok(volume) => volume,
            Err(e) => {
                let e = or_stopped(&docker, guard.id(holder), e).await;
                guard.remove().await;
                return Err(e);
            }
        };

        let spec = container::spec(&self.config, lang, &program_name, &tags, &volume);
        let program = match guard.create(name.clone(), spec).await {
            Ok(program) => program,
            Err(e) => {
                let e = or_stopped(&docker, guard.id(holder), e.into()).await;
                guard.remove().await;
                return Err(e);
            }
        };
        // Killed by an administrator while it was being prepared (only the holder
        // was there to kill): the program must not start.
        if stopped(&docker, guard.id(holder)).await {
            guard.remove().await;
            return Err(SandboxError::StoppedByAdmin);
        }
        tracing::debug!(container = %guard.id(program), language, "sandbox execution starting");

        let outcome = self.drive(&docker, guard.id(program), &cancel).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                let e = or_stopped(&docker, guard.id(holder), e).await;
                guard.remove().await;
                return Err(e);
            }
        };

        // Exit code, OOM flag, and whether an administrator killed it.
        let inspected = docker.inspect_container(guard.id(program), None).await.ok();
        let stopped_by_admin = inspected
            .as_ref()
            .is_some_and(|i| marked(i.name.as_deref()))
            || stopped(&docker, guard.id(holder)).await;
        let state = inspected.and_then(|i| i.state);
        let oom_killed = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        let exit_code = if outcome.timed_out || stopped_by_admin {
            None
        } else {
            state.as_ref().and_then(|s| s.exit_code)
        };

        // Copy the workspace back, within the quota (not after a kill: the holder
        // and its volume's files are gone with it).
        let mut notes = Vec::new();
        let copied = if stopped_by_admin {
            notes.push(
                "killed: stopped by an administrator; the workspace is as it was before \
                 this execution"
                    .to_string(),
            );
            Ok(workspace::Unpacked::default())
        } else {
            self.copy_back(&docker, guard.id(holder), &dir, before)
                .await
        };
        let files = match copied {
            Ok(unpacked) => {
                if !unpacked.skipped.is_empty() {
                    notes.push(format!(
                        "not kept (only regular files and directories are): {}",
                        unpacked.skipped.join(", ")
                    ));
                }
                unpacked.changed
            }
            Err(e) => {
                notes.push(e.to_string());
                Vec::new()
            }
        };
        guard.remove().await;

        if outcome.timed_out {
            notes.insert(
                0,
                format!(
                    "killed: the program ran longer than the {}-second limit",
                    self.config.timeout_secs
                ),
            );
        }
        if oom_killed {
            notes.insert(
                0,
                format!(
                    "killed: the program exceeded the memory limit of {} MiB",
                    self.config.memory_mb
                ),
            );
        }
        if workspace_full(&outcome) {
            notes.push(format!(
                "the workspace is full: /mnt holds at most sandbox.workspace_quota_mb = {} MiB \
                 of files (and {} files); writing past that fails with \"No space left on device\"",
                self.config.workspace_quota_mb,
                workspace::MAX_FILES
            ));
        }
        let (stdout_truncated, stderr_truncated) =
            (outcome.stdout.truncated(), outcome.stderr.truncated());
        if stdout_truncated || stderr_truncated {
            notes.push(format!(
                "output truncated to {} bytes per stream (stdout {} bytes, stderr {} bytes in total)",
                self.config.max_output_bytes,
                outcome.stdout.total(),
                outcome.stderr.total()
            ));
        }
        Ok(Execution {
            language: language.to_string(),
            exit_code,
            stdout: outcome.stdout.into_text(),
            stderr: outcome.stderr.into_text(),
            stdout_truncated,
            stderr_truncated,
            timed_out: outcome.timed_out,
            oom_killed,
            stopped_by_admin,
            files,
            notes,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Starts the holder, finds its volume and uploads the workspace and program into
    /// it; the volume's name. The holder must still run after the upload (a command
    /// that does not wait on `/dev/stdin` would lose the volume's files).
    async fn hold(
        &self,
        docker: &Docker,
        holder: &str,
        tar_file: std::fs::File,
    ) -> Result<String, SandboxError> {
        docker.start_container(holder, None).await?;
        let volume = docker
            .inspect_container(holder, None)
            .await?
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(MOUNT))
            .and_then(|m| m.name)
            .ok_or_else(|| SandboxError::Docker("the workspace volume was not made".into()))?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(tar_file));
        docker
            .upload_to_container(
                holder,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(MOUNT)
                        .build(),
                ),
                bollard::body_try_stream(body),
            )
            .await?;
        self.still_holding(docker, holder).await?;
        Ok(volume)
    }

    /// Fails when the holder has stopped: its volume and the files in it are gone.
    async fn still_holding(&self, docker: &Docker, holder: &str) -> Result<(), SandboxError> {
        let running = docker
            .inspect_container(holder, None)
            .await?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
        if running {
            return Ok(());
        }
        Err(SandboxError::Docker(
            "the workspace holder stopped: the language's command must wait when given \
             /dev/stdin as its program (every interpreter does)"
                .into(),
        ))
    }

    /// Attaches, starts and follows the program's container until it ends, is killed
    /// at the time limit, or is cancelled (then `Err(Cancelled)`).
    async fn drive(
        &self,
        docker: &Docker,
        id: &str,
        cancel: &CancellationToken,
    ) -> Result<Outcome, SandboxError> {
        let attach = docker
            .attach_container(
                id,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .logs(false)
                        .build(),
                ),
            )
            .await?;
        let mut output = attach.output;
        docker.start_container(id, None).await?;

        let limit = self.config.max_output_bytes;
        let mut outcome = Outcome {
            stdout: BoundedOutput::new(limit),
            stderr: BoundedOutput::new(limit),
            timed_out: false,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.config.timeout_secs);
        let mut killed_at: Option<tokio::time::Instant> = None;
        loop {
            let hard_stop = killed_at.map(|t| t + KILL_GRACE);
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message })) => outcome.stdout.push(&message),
                    Some(Ok(LogOutput::StdErr { message })) => outcome.stderr.push(&message),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(container = %id, error = %e, "sandbox output stream failed");
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline), if killed_at.is_none() => {
                    outcome.timed_out = true;
                    kill(docker, id).await;
                    killed_at = Some(tokio::time::Instant::now());
                }
                _ = tokio::time::sleep_until(hard_stop.unwrap_or(deadline)), if hard_stop.is_some() => break,
                _ = cancel.cancelled() => return Err(SandboxError::Cancelled),
            }
        }
        // The stream ends when the container stops; wait for Docker to record it.
        let mut wait =
            docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        tokio::select! {
            _ = tokio::time::timeout(KILL_GRACE, wait.next()) => {}
            _ = cancel.cancelled() => return Err(SandboxError::Cancelled),
        }
        Ok(outcome)
    }

    /// Downloads `/mnt/data` into a temporary file (refusing archives far beyond the
    /// quota as they stream) and replaces the host workspace with it.
    async fn copy_back(
        &self,
        docker: &Docker,
        id: &str,
        dir: &Path,
        before: workspace::Snapshot,
    ) -> Result<workspace::Unpacked, SandboxError> {
        self.still_holding(docker, id).await?;
        let quota = self.workspaces.quota();
        // Tar headers and padding on top of the file bytes.
        let cap = quota + quota / 8 + 16 * 1024 * 1024;
        let mut stream = docker.download_from_container(
            id,
            Some(
                DownloadFromContainerOptionsBuilder::default()
                    .path(container::WORKDIR)
                    .build(),
            ),
        );
        let temp = tempfile::tempfile().map_err(workspace::WorkspaceError::from)?;
        let mut file = tokio::fs::File::from_std(temp);
        let mut written = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            written += chunk.len() as u64;
            if written > cap {
                return Err(workspace::WorkspaceError::QuotaExceeded { quota }.into());
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(workspace::WorkspaceError::from)?;
        }
        let mut file = file.into_std().await;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            file.rewind()?;
            workspace::unpack(std::io::BufReader::new(file), &dir, quota, &before)
        })
        .await
        .map_err(|e| SandboxError::Docker(e.to_string()))?
        .map_err(SandboxError::from)
    }
}

struct Outcome {
    stdout: BoundedOutput,
    stderr: BoundedOutput,
    timed_out: bool,
}

/// Whether the program was told the workspace volume is full (`ENOSPC`, in the words
/// of libc, Python, Node and the shells).
fn workspace_full(outcome: &Outcome) -> bool {
    [&outcome.stdout, &outcome.stderr]
        .iter()
        .any(|o| o.contains("No space left on device") || o.contains("ENOSPC"))
}

/// Whether `name` is an execution's name (`chorus-sbx-` and 32 hex digits).
fn is_execution_name(name: &str) -> bool {
    name.strip_prefix(EXECUTION_PREFIX)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a container's name carries [`STOPPED_MARK`].
fn marked(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.ends_with(STOPPED_MARK))
}

/// Whether an administrator killed the container `id` (still there to inspect).
async fn stopped(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None)
        .await
        .is_ok_and(|i| marked(i.name.as_deref()))
}

/// `e`, or [`SandboxError::StoppedByAdmin`] when the holder `holder` was killed by
/// an administrator (which is why the step failed).
async fn or_stopped(docker: &Docker, holder: &str, e: SandboxError) -> SandboxError {
    if stopped(docker, holder).await {
        SandboxError::StoppedByAdmin
    } else {
        e
    }
}

async fn kill(docker: &Docker, id: &str) {
    let options = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    if let Err(e) = docker.kill_container(id, Some(options)).await {
        tracing::debug!(container = %id, error = %e, "kill of sandbox container");
    }
}

/// Docker's local socket, used when neither `sandbox.docker_host` nor `DOCKER_HOST`
/// (read by the config loader) names another.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

fn connect(host: &str) -> Result<Docker, bollard::errors::Error> {
    if host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    }
}

#[async_trait::async_trait]
impl Sandbox for DockerSandbox {
    async fn available(&self) -> bool {
        if !self.config.enabled {
            return false;
        }
        if let Some((at, ok)) = *self.availability.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < AVAILABILITY_TTL
        {
            return ok;
        }
        let ok = match self.docker().await {
            Ok(docker) => matches!(
                tokio::time::timeout(Duration::from_secs(3), docker.ping()).await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        *self.availability.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ok));
        ok
    }

    fn languages(&self) -> Vec<String> {
        self.config.languages.keys().cloned().collect()
    }

    async fn execute(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> Result<Execution, SandboxError> {
        // A configured language's name, or `other`: the model writes the request.
        let language = self
            .config
            .language(&request.language)
            .map_or("other", |(name, _)| name)
            .to_string();
        let span = tracing::info_span!(
            "chorus.sandbox.execute",
            chorus.sandbox.language = %language,
            chorus.sandbox.result = Empty,
            chorus.sandbox.exit_code = Empty,
            otel.status_code = Empty,
        );
        let started = Instant::now();
        let result = self.run(request, cancel).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(e) if e.stopped_by_admin => "stopped",
            Ok(e) if e.timed_out => "timeout",
            Ok(e) if e.oom_killed => "oom",
            Ok(e) if e.exit_code == Some(0) => "ok",
            Ok(_) => "exit_error",
            Err(SandboxError::Cancelled) => "cancelled",
            Err(SandboxError::StoppedByAdmin) => "stopped",
            Err(_) => "failed",
        };
        crate::telemetry::metrics::sandbox_execution(&language, outcome, started.elapsed());
        span.record("chorus.sandbox.result", outcome);
        if let Ok(Some(code)) = result.as_ref().map(|e| e.exit_code) {
            span.record("chorus.sandbox.exit_code", code);
        }
        if !matches!(outcome, "ok" | "exit_error") {
            span.record("otel.status_code", "ERROR");
        }
        if let Err(SandboxError::Unavailable { .. }) = &result {
            // Reconnect (and renegotiate) next time: the engine may have restarted.
            *self.client.lock().await = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_execution_names_are_killed_and_the_mark_is_read_back() {
        let name = format!("{EXECUTION_PREFIX}{}", uuid::Uuid::new_v4().simple());
        assert!(is_execution_name(&name));
        assert!(!is_execution_name(&format!("{name}-hold")));
        assert!(!is_execution_name("chorus-sbx-"));
        assert!(!is_execution_name("other-0123456789abcdef0123456789abcdef"));
        assert!(!is_execution_name(
            "chorus-sbx-0123456789abcdef0123456789abcdeg"
        ));
        assert!(marked(Some(&format!("/{name}-hold{STOPPED_MARK}"))));
        assert!(!marked(Some(&format!("/{name}-hold"))));
        assert!(!marked(None));
    }
}
