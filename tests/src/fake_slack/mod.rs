//! A local Slack for the Slack app's end-to-end tests, on loopback:
//!
//! - [`web_api`]: the Web API methods the app calls (`POST /api/METHOD`, JSON with a
//!   bearer token): `auth.test`, `apps.connections.open` (answering a `ws://` URL),
//!   `chat.postMessage`, `chat.update`, `chat.postEphemeral`, the streaming methods
//!   (`chat.startStream`, `chat.appendStream`, `chat.stopStream`, with the stream's
//!   state and its expiry on demand) and the `assistant.threads.*` methods, keeping the channel's messages as Slack would
//!   show them (the text of their `markdown` blocks, their buttons) and refusing
//!   what Slack refuses (oversized blocks, unknown messages, wrong tokens). Errors
//!   (`ok:false`) and 429s with `Retry-After` are served on demand ([`FakeSlack::fail_next`]).
//! - [`socket`]: Socket Mode's WebSocket: `hello` on connect, envelopes delivered to
//!   the app and their acknowledgements checked, `disconnect` requests and dropped
//!   sockets.
//! - [`signer`]: the Events API's request signing, valid, forged or stale.
//! - [`fixtures`]: Slack's documented payloads (`tests/fixtures/slack/`), filled in.
//!
//! Every call is logged with the time it came ([`FakeSlack::calls`]), so tests check
//! pacing and back-off as well as the final text. Waits are on changes of the state
//! ([`FakeSlack::wait_until`]), never on fixed sleeps.

pub mod fixtures;
pub mod signer;
pub mod socket;
pub mod web_api;

use crate::fake_http::FakeServer;
use anyhow::{Result, bail};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The bot token the fake accepts for Web API calls.
pub const BOT_TOKEN: &str = "xoxb-fake-bot-token";
/// The app-level token the fake accepts for `apps.connections.open`.
pub const APP_TOKEN: &str = "xapp-fake-app-token";
/// The signing secret of the fake's Events API requests.
pub const SIGNING_SECRET: &str = "fake-signing-secret-8f2e";
/// The workspace.
pub const TEAM: &str = "T0FAKE01";
/// The app's bot user.
pub const BOT_USER: &str = "U0CHORUS1";

/// One Web API call as it arrived.
#[derive(Clone, Debug)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub body: Value,
}

/// A message the app posted, as Slack shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    /// The text of its `markdown` blocks.
    pub text: String,
    /// The `action_id`s of its buttons, in order.
    pub buttons: Vec<String>,
    /// `chat.update`s (and `chat.appendStream`s) it got.
    pub edits: u32,
    /// Started with `chat.startStream` and not yet stopped or expired.
    pub streaming: bool,
    /// Made with `chat.startStream`.
    pub streamed: bool,
}

/// An ephemeral message: seen by `user` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub thread_ts: Option<String>,
    pub text: String,
}

/// What the next call of a method gets instead of its answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// `{"ok": false, "error": CODE}`.
    Error(String),
    /// HTTP 429 with `Retry-After: SECS` and `{"ok": false, "error": "ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
}

/// What the Socket Mode connection task is told to do.
#[derive(Debug)]
pub(crate) enum SocketCommand {
    Send(String),
    /// Close the TCP connection without a close frame (a dropped socket).
    Drop,
}

/// The fake's whole state.
#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    pub messages: Vec<Message>,
    pub ephemerals: Vec<Ephemeral>,
    pub(crate) faults: VecDeque<(String, Fault)>,
    next_ts: u64,
    /// The open Socket Mode connection's commands.
    pub(crate) socket: Option<mpsc::UnboundedSender<SocketCommand>>,
    /// Socket Mode connections opened so far.
    pub connections: u32,
    /// Envelope ids sent and acknowledged.
    pub delivered: Vec<String>,
    pub acked: HashSet<String>,
    /// Frames from the app that were not a valid acknowledgement of a delivered
    /// envelope.
    pub bad_frames: Vec<String>,
}

impl State {
    /// A fresh message ts, increasing like Slack's.
    pub(crate) fn new_ts(&mut self) -> String {
        self.next_ts += 1;
        format!("1700000000.{:06}", self.next_ts)
    }

    /// The app's messages in `channel` under `thread_ts` (`None`: top level), in order.
    pub fn thread(&self, channel: &str, thread_ts: Option<&str>) -> Vec<Message> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == thread_ts)
            .cloned()
            .collect()
    }

    /// Whether the app has a Socket Mode connection open.
    pub fn connected(&self) -> bool {
        self.socket.is_some()
    }

    /// The calls of `method`, in order.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub(crate) ws_addr: Mutex<Option<SocketAddr>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The fake Slack: its Web API and its Socket Mode server.
pub struct FakeSlack {
    http: FakeServer,
    shared: Arc<Shared>,
    ws_task: tokio::task::JoinHandle<()>,
}

impl FakeSlack {
    pub async fn start() -> Result<Self> {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed,
            ws_addr: Mutex::new(None),
        });
        let (addr, ws_task) = socket::serve(shared.clone()).await?;
        *shared.ws_addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        let http = FakeServer::spawn(web_api::router(shared.clone())).await?;
        Ok(Self {
            http,
            shared,
            ws_task,
        })
    }

    /// The Web API base URL (`slack.api_url`).
    pub fn api_url(&self) -> String {
        self.http.url("/api")
    }

    /// A look at the state.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Every Web API call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The next call of `method` gets `fault` instead of its answer (faults of one
    /// method are served in the order they were set).
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.state().faults.push_back((method.to_string(), fault));
    }

    /// Ends every open stream as Slack does after some minutes: their next
    /// `chat.appendStream` or `chat.stopStream` gets `message_not_in_streaming_state`.
    pub fn expire_streams(&self) -> usize {
        let mut state = self.state();
        let mut expired = 0;
        for m in state.messages.iter_mut().filter(|m| m.streaming) {
            m.streaming = false;
            expired += 1;
        }
        drop(state);
        self.shared.changed();
        expired
    }

    /// Waits until `check` finds what it looks for in the state, re-checking on every
    /// change; fails after `timeout` naming `what`.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Result<T> {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.shared.lock()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the fake Slack stopped while waiting for {what}"),
                Err(_) => {
                    let state = self.shared.lock();
                    bail!(
                        "timed out after {timeout:?} waiting for {what}; messages: {:#?}; ephemerals: {:?}; last calls: {:?}",
                        state.messages,
                        state.ephemerals,
                        state
                            .calls
                            .iter()
                            .rev()
                            .take(8)
                            .map(|c| &c.method)
                            .collect::<Vec<_>>()
                    )
                }
            }
        }
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.ws_task.abort();
    }
}
