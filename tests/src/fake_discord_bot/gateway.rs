//! The fake gateway: a WebSocket server on loopback speaking Discord's gateway v10 in
//! JSON text frames — HELLO on connect, READY after IDENTIFY, an ACK for every
//! heartbeat — and sending the dispatches the tests make. One session at a time: a
//! new connection (a restarted bot) replaces the last. For the recovery tests, as
//! Discord documents them: op 7 RECONNECT and op 9 INVALID SESSION sent on demand, a
//! connection dropped without a close frame, and op 6 RESUME answered by replaying
//! the dispatches after the bot's last sequence number and then RESUMED (a RESUME
//! naming another session gets op 9 `false`).

use super::{BOT_ID, GUILD_ID, State, fixture};
use anyhow::Result;
use discord_tungstenite::tungstenite::Message;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The heartbeat interval HELLO announces, in ms (Discord's usual value).
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

pub struct GatewayServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GatewayServer {
    pub async fn start(state: Arc<Mutex<State>>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}", listener.local_addr()?);
        let ws_url = url.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let url = ws_url.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, state, url).await {
                        eprintln!("fake discord gateway: session ended: {e}");
                    }
                });
            }
        });
        Ok(Self { url, task })
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

fn ready(url: &str) -> Value {
    let mut ready = fixture("ready");
    ready["user"]["id"] = json!(BOT_ID.to_string());
    ready["user"]["username"] = json!("Chorus");
    ready["application"]["id"] = json!(BOT_ID.to_string());
    ready["guilds"] = json!([{"id": GUILD_ID.to_string(), "unavailable": true}]);
    ready["resume_gateway_url"] = json!(url);
    ready
}

async fn session(
    stream: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    url: String,
) -> Result<()> {
    let mut ws = discord_tungstenite::accept_async(stream).await?;
    ws.send(Message::Text(
        json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}).to_string(),
    ))
    .await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                // Dropping the stream closes the TCP connection with no close frame.
                Some(frame) if frame["fake"] == "drop" => return Ok(()),
                Some(frame) => ws.send(Message::Text(frame.to_string())).await?,
                None => return Ok(()),
            },
            incoming = ws.next() => {
                let frame = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(p))) => { ws.send(Message::Pong(p)).await?; continue }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                };
                let payload: Value = serde_json::from_str(&frame)?;
                match payload["op"].as_u64() {
                    // Heartbeat → ACK.
                    Some(1) => ws.send(Message::Text(json!({"op": 11}).to_string())).await?,
                    // IDENTIFY → READY, and this session becomes the live one.
                    Some(2) => {
                        let token = payload["d"]["token"].as_str().unwrap_or_default();
                        if token.trim_start_matches("Bot ") != super::TOKEN {
                            ws.send(Message::Close(Some(discord_tungstenite::tungstenite::protocol::CloseFrame {
                                code: 4004.into(),
                                reason: "Authentication failed.".into(),
                            }))).await?;
                            return Ok(());
                        }
                        let session_id = format!("session-{}", uuid::Uuid::new_v4().simple());
                        let seq = {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            s.identifies.push(payload["d"].clone());
                            s.session = Some(tx.clone());
                            s.session_id = Some(session_id.clone());
                            s.dispatched.clear();
                            s.seq += 1;
                            s.seq
                        };
                        let mut ready = ready(&url);
                        ready["session_id"] = json!(session_id);
                        ws.send(Message::Text(
                            json!({"op": 0, "t": "READY", "s": seq, "d": ready}).to_string(),
                        ))
                        .await?;
                    }
                    // RESUME → the missed dispatches, then RESUMED; this session is live.
                    Some(6) => {
                        let d = &payload["d"];
                        let frames = {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            let known = d["token"].as_str().unwrap_or_default().trim_start_matches("Bot ")
                                == super::TOKEN
                                && s.session_id.is_some()
                                && d["session_id"].as_str() == s.session_id.as_deref();
                            s.resumes.push((d.clone(), known));
                            if known {
                                let after = d["seq"].as_u64().unwrap_or(0);
                                let mut frames: Vec<Value> = s
                                    .dispatched
                                    .iter()
                                    .filter(|f| f["s"].as_u64().unwrap_or(0) > after)
                                    .cloned()
                                    .collect();
                                s.seq += 1;
                                frames.push(json!({"op": 0, "t": "RESUMED", "s": s.seq, "d": {}}));
                                s.session = Some(tx.clone());
                                frames
                            } else {
                                vec![json!({"op": 9, "d": false})]
                            }
                        };
                        for frame in frames {
                            ws.send(Message::Text(frame.to_string())).await?;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
