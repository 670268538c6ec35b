//! One MCP server: its connection, its supervisor and its tools.
//!
//! The supervisor task connects, lists the tools (paginated, by the SDK), and then
//! waits for whichever comes first: the connection closing (the process died, the
//! HTTP session broke), a `notifications/tools/list_changed` (list again), or
//! shutdown (close the connection, which ends a child process: stdin closed, then
//! SIGTERM, then SIGKILL). A closed connection is reconnected with exponential
//! backoff; calls in between fail at once with the last error. An admin's
//! [`McpServer::restart`] closes the connection the same way and connects again at
//! once: a call in flight ends with the "connection closed" tool error, not a hang.

use super::config::McpServerConfig;
use super::output::result_text;
use crate::tools::{SourceStatus, SourceTool, ToolCallError, ToolOutput, ToolSource};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{NotificationContext, Peer, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long connecting and the MCP handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    peer: Option<Peer<RoleClient>>,
    tools: Vec<SourceTool>,
    last_error: Option<String>,
    restarts: u64,
}

/// A configured MCP server, supervised.
pub struct McpServer {
    cfg: McpServerConfig,
    state: Mutex<State>,
    shutdown: CancellationToken,
    /// Wakes the supervisor to close the connection and connect again now.
    restart: tokio::sync::Notify,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why the supervisor closed a connection on an admin's request.
const RESTARTED: &str = "restarted by an administrator";

/// Receives the server's notifications.
struct Handler {
    list_changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.list_changed.send(());
    }
}

type Service = RunningService<RoleClient, Handler>;

impl McpServer {
    /// Starts the supervisor, which connects in the background.
    pub fn start(cfg: McpServerConfig) -> Arc<Self> {
        let server = Arc::new(Self {
            cfg,
            state: Mutex::new(State::default()),
            shutdown: CancellationToken::new(),
            restart: tokio::sync::Notify::new(),
            supervisor: Mutex::new(None),
        });
        let task = tokio::spawn(server.clone().supervise());
        *server.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        server
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn id_str(&self) -> &str {
        &self.cfg.id
    }

    /// Closes the connection (ending a child process) and connects again without
    /// waiting out a backoff: the admin console's restart. Calls in flight fail with
    /// the "connection closed" tool error; the restart counter goes up by one.
    pub fn restart(&self) {
        // A supervisor between two states misses this wake-up only while it is
        // already reconnecting, which is what was asked.
        self.restart.notify_waiters();
    }

    /// The names of the server's tools, as it listed them last.
    pub fn tool_names(&self) -> Vec<String> {
        self.state().tools.iter().map(|t| t.name.clone()).collect()
    }

    /// Who may use this server.
    pub fn access(&self) -> crate::tools::ToolAccess {
        self.cfg.access()
    }

    /// The live connection, or why there is none.
    pub(super) fn peer(&self) -> Result<Peer<RoleClient>, ToolCallError> {
        let s = self.state();
        s.peer.clone().ok_or_else(|| ToolCallError::Unavailable {
            source_id: self.cfg.id.clone(),
            reason: s
                .last_error
                .clone()
                .unwrap_or_else(|| "not connected yet".into()),
        })
    }

    fn kind(&self) -> &'static str {
        if self.cfg.command.is_some() {
            "mcp_stdio"
        } else {
            "mcp_http"
        }
    }

    async fn supervise(self: Arc<Self>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let began = Instant::now();
            let (tx, rx) = mpsc::unbounded_channel();
            let connected = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(Handler { list_changed: tx })) => {
                    r.unwrap_or_else(|_| Err(format!("no MCP handshake within {} s", CONNECT_TIMEOUT.as_secs())))
                }
                _ = self.restart.notified() => Err(RESTARTED.to_string()),
                _ = self.shutdown.cancelled() => return,
            };
            let reason = match connected {
                Ok((service, stderr)) => self.serve(service, stderr, rx).await,
                Err(e) => Some(e),
            };
            let Some(reason) = reason else { return }; // shut down
            let asked = reason == RESTARTED;
            if asked {
                tracing::info!(server = %self.cfg.id, "MCP server restarted by an administrator");
            } else {
                tracing::warn!(server = %self.cfg.id, error = %reason, ?backoff, "MCP server unavailable; restarting");
            }
            {
                let mut s = self.state();
                s.peer = None;
                // An asked-for restart is no error: the last real one stays shown.
                if !asked {
                    s.last_error = Some(reason);
                }
            }
            if asked || began.elapsed() >= HEALTHY_AFTER {
                backoff = FIRST_BACKOFF;
            }
            if !asked {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.restart.notified() => backoff = FIRST_BACKOFF,
                    _ = self.shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            self.state().restarts += 1;
        }
    }

    /// Runs one connection until it closes (returns why) or shutdown (returns None).
    async fn serve(
        &self,
        service: Service,
        stderr: Option<tokio::process::ChildStderr>,
        mut list_changed: mpsc::UnboundedReceiver<()>,
    ) -> Option<String> {
        let peer = service.peer().clone();
        let tools = match list_tools(&peer).await {
            Ok(t) => t,
            Err(e) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
                return Some(format!("tools/list failed: {e}"));
            }
        };
        tracing::info!(server = %self.cfg.id, tools = tools.len(), "MCP server connected");
        {
            let mut s = self.state();
            s.tools = tools;
            s.peer = Some(peer.clone());
        }
        let cancel = service.cancellation_token();
        let mut waiting = std::pin::pin!(service.waiting());
        let mut stderr = stderr.map(|e| BufReader::new(e).lines());
        loop {
            tokio::select! {
                quit = &mut waiting => {
                    return Some(match quit {
                        Ok(reason) => format!("the connection ended ({reason:?})"),
                        Err(e) => format!("the connection task failed: {e}"),
                    });
                }
                Some(()) = list_changed.recv() => {
                    while list_changed.try_recv().is_ok() {}
                    match list_tools(&peer).await {
                        Ok(tools) => {
                            tracing::info!(server = %self.cfg.id, tools = tools.len(), "MCP tool list changed");
                            self.state().tools = tools;
                        }
                        Err(e) => tracing::warn!(server = %self.cfg.id, error = %e, "listing changed tools failed"),
                    }
                }
                line = next_line(&mut stderr) => match line {
                    Some(line) => tracing::debug!(server = %self.cfg.id, stderr = %line, "MCP server log"),
                    None => stderr = None,
                },
                _ = self.restart.notified() => {
                    self.state().peer = None;
                    cancel.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut waiting).await;
                    return Some(RESTARTED.into());
                }
                _ = self.shutdown.cancelled() => {
                    cancel.cancel();
                    // Closing the transport ends a child process (stdin closed,
                    // SIGTERM after 3 s, SIGKILL after 6 s).
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut waiting).await;
                    self.state().peer = None;
                    return None;
                }
            }
        }
    }

    async fn connect(
        &self,
        handler: Handler,
    ) -> Result<(Service, Option<tokio::process::ChildStderr>), String> {
        if let Some(program) = &self.cfg.command {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(&self.cfg.args).kill_on_drop(true);
            // A clean environment: Chorus's own holds provider keys, the database URL
            // and other secrets a third-party server has no business reading. It gets
            // what a program needs to run (PATH, HOME, locale), the variables its
            // config passes through by name, and its `env`.
            cmd.env_clear();
            for name in crate::mcp::config::BASE_ENV
                .iter()
                .copied()
                .chain(self.cfg.inherit_env.iter().map(String::as_str))
            {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
            for (k, v) in &self.cfg.env {
                cmd.env(k, v.expose());
            }
            if let Some(dir) = &self.cfg.cwd {
                cmd.current_dir(dir);
            }
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start `{program}`: {e}"))?;
            let service = handler
                .serve(transport)
                .await
                .map_err(|e| format!("MCP handshake with `{program}` failed: {e}"))?;
            Ok((service, stderr))
        } else {
            let url = self.cfg.url.clone().unwrap_or_default();
            let mut headers = HashMap::new();
            for (k, v) in &self.cfg.headers {
                let name = reqwest::header::HeaderName::try_from(k.as_str())
                    .map_err(|e| format!("header name {k:?}: {e}"))?;
                let value = reqwest::header::HeaderValue::try_from(v.expose())
                    .map_err(|_| format!("header {k:?} has a value that is not a valid header"))?;
                headers.insert(name, value);
            }
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers);
            let transport = StreamableHttpClientTransport::from_config(config);
            let service = handler
                .serve(transport)
                .await
                .map_err(|e| format!("MCP handshake with {url} failed: {e}"))?;
            Ok((service, None))
        }
    }
}

async fn next_line(
    lines: &mut Option<tokio::io::Lines<BufReader<tokio::process::ChildStderr>>>,
) -> Option<String> {
    match lines {
        Some(l) => l.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn list_tools(peer: &Peer<RoleClient>) -> Result<Vec<SourceTool>, ServiceError> {
    let tools = peer.list_all_tools().await?;
    Ok(tools
        .into_iter()
        .map(|t| SourceTool {
            name: t.name.to_string(),
            description: t
                .description
                .map(|d| d.to_string())
                .or(t.title)
                .unwrap_or_default(),
            input_schema: serde_json::Value::Object((*t.input_schema).clone()),
        })
        .collect())
}

#[async_trait::async_trait]
impl ToolSource for McpServer {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn tools(&self) -> Vec<SourceTool> {
        // Offered while restarting too: a call then says why it failed.
        self.state().tools.clone()
    }

    async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
        _context: &crate::tools::ToolCallContext,
    ) -> Result<ToolOutput, ToolCallError> {
        let peer = self.peer()?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        match arguments {
            serde_json::Value::Object(map) => params = params.with_arguments(map),
            serde_json::Value::Null => {}
            other => {
                return Ok(ToolOutput {
                    text: format!("the arguments must be a JSON object, not {other}"),
                    is_error: true,
                    details: None,
                });
            }
        }
        // Dropping this future (timeout, stop) sends notifications/cancelled.
        match peer.call_tool(params).await {
            Ok(result) => Ok(ToolOutput {
                text: result_text(&result),
                is_error: result.is_error.unwrap_or(false),
                details: None,
            }),
            Err(ServiceError::McpError(e)) => Ok(ToolOutput {
                text: format!("MCP error {}: {}", e.code.0, e.message),
                is_error: true,
                details: None,
            }),
            Err(ServiceError::TransportClosed) => Err(ToolCallError::Failed {
                source_id: self.cfg.id.clone(),
                reason: "the connection closed before the result came (the server is restarted)"
                    .into(),
            }),
            Err(e) => Err(ToolCallError::Failed {
                source_id: self.cfg.id.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn status(&self) -> SourceStatus {
        let s = self.state();
        SourceStatus {
            id: self.cfg.id.clone(),
            kind: self.kind().into(),
            connected: s.peer.is_some(),
            tool_count: s.tools.len(),
            last_error: s.last_error.clone(),
            restarts: s.restarts,
        }
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let task = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(12), task).await;
        }
    }
}
