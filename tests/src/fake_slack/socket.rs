//! The fake's Socket Mode: the WebSocket `apps.connections.open` points at. A
//! connection gets `hello`; envelopes go to the newest connection; every frame the
//! app sends must acknowledge a delivered envelope (`{"envelope_id": …}`).

use super::fixtures;
use super::{FakeSlack, Shared, SocketCommand};
use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub(crate) async fn serve(
    shared: Arc<Shared>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                    connection(shared, ws).await;
                }
            });
        }
    });
    Ok((addr, task))
}

async fn connection(
    shared: Arc<Shared>,
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let (mut tx, mut rx) = ws.split();
    let (commands, mut inbox) = mpsc::unbounded_channel();
    if tx
        .send(Message::text(fixtures::socket_hello().to_string()))
        .await
        .is_err()
    {
        return;
    }
    {
        let mut state = shared.lock();
        state.connections += 1;
        state.socket = Some(commands.clone());
    }
    shared.changed();
    loop {
        tokio::select! {
            command = inbox.recv() => match command {
                Some(SocketCommand::Send(text)) => {
                    if tx.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(SocketCommand::Drop) | None => break,
            },
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let envelope = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["envelope_id"].as_str().map(str::to_string));
                    let mut state = shared.lock();
                    match envelope {
                        Some(id) if state.delivered.contains(&id) => {
                            state.acked.insert(id);
                        }
                        _ => state.bad_frames.push(text.to_string()),
                    }
                    drop(state);
                    shared.changed();
                }
                Some(Ok(Message::Ping(payload))) => {
                    let _ = tx.send(Message::Pong(payload)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    let mut state = shared.lock();
    if state
        .socket
        .as_ref()
        .is_some_and(|s| s.same_channel(&commands))
    {
        state.socket = None;
    }
    drop(state);
    shared.changed();
}

/// How long [`FakeSlack::deliver`] waits for the app's socket.
const SOCKET_WAIT: Duration = Duration::from_secs(30);

impl FakeSlack {
    /// Sends `payload` in an envelope of `kind` (`events_api`, `interactive`,
    /// `slash_commands`) on the app's socket, once it has one; returns the envelope id.
    pub async fn deliver(&self, kind: &str, payload: Value) -> Result<String> {
        let socket = self
            .wait_until("the app's Socket Mode connection", SOCKET_WAIT, |s| {
                s.socket.clone()
            })
            .await?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut envelope = fixtures::socket_envelope();
        envelope["type"] = json!(kind);
        envelope["envelope_id"] = json!(id);
        envelope["accepts_response_payload"] = json!(kind != "events_api");
        envelope["payload"] = payload;
        self.shared.lock().delivered.push(id.clone());
        socket
            .send(SocketCommand::Send(envelope.to_string()))
            .context("the app's socket closed")?;
        Ok(id)
    }

    /// Waits until the app has acknowledged the envelope `id`.
    pub async fn wait_ack(&self, id: &str, timeout: Duration) -> Result<()> {
        self.wait_until(&format!("the ack of envelope {id}"), timeout, |s| {
            s.acked.contains(id).then_some(())
        })
        .await?;
        let bad = self.state().bad_frames.clone();
        if !bad.is_empty() {
            bail!("the app sent frames that acknowledge no delivered envelope: {bad:?}");
        }
        Ok(())
    }

    /// Asks the app to reconnect, as Slack does before it recycles a connection.
    pub fn request_disconnect(&self) -> Result<()> {
        let socket = self
            .state()
            .socket
            .clone()
            .context("no Socket Mode connection")?;
        socket
            .send(SocketCommand::Send(
                fixtures::socket_disconnect().to_string(),
            ))
            .context("the app's socket closed")
    }

    /// Drops the app's socket without a close frame (a network failure).
    pub fn drop_socket(&self) -> Result<()> {
        let socket = self
            .state()
            .socket
            .clone()
            .context("no Socket Mode connection")?;
        socket
            .send(SocketCommand::Drop)
            .context("the app's socket closed")
    }
}
