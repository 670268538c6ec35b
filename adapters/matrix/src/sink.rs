//! The message sink of one Matrix thread: posts, edits and typing notices for the
//! core's progressive renderer, with 429s handed back to it instead of retried here.

use crate::content;
use crate::key::parse_channel_key;
use chorus_core::Identity;
use chorus_core::chat::{MessageSink, SinkError, SinkFactory, SinkLimits};
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::typing::create_typing_event;
use matrix_sdk::ruma::api::error::{ErrorKind, RetryAfter};
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, UserId};
use matrix_sdk::{Client, Room, RoomState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long to wait after a 429 that names no time.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// How long one typing notice lasts unless renewed or turned off.
const TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// Threads remembered in [`ThreadTails`] before it starts over (a fallback only).
const MAX_TRACKED_THREADS: usize = 10_000;

/// No retry inside matrix-sdk: by default it retries a 429 after `retry_after_ms` for
/// up to 15 minutes, which would hide the rate limit from the renderer (it must back
/// off its edits, not queue them) and stall a stop or a final edit behind it.
fn no_retry() -> RequestConfig {
    RequestConfig::new().disable_retry()
}

/// The latest event of each thread the bot takes part in, by channel key: the target
/// of the `m.in_reply_to` fallback of the bot's next message there.
#[derive(Clone, Default)]
pub struct ThreadTails(Arc<Mutex<HashMap<String, OwnedEventId>>>);

impl ThreadTails {
    /// Records `event` as the latest of the thread `channel_key`.
    pub fn record(&self, channel_key: &str, event: OwnedEventId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_THREADS && !map.contains_key(channel_key) {
            map.clear();
        }
        map.insert(channel_key.to_string(), event);
    }

    fn latest(&self, channel_key: &str) -> Option<OwnedEventId> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(channel_key).cloned()
    }
}

/// Posts into one thread (`root`) of one joined room, or at the top of the bot's
/// direct room with a person (`root` `None`).
pub struct MatrixSink {
    client: Client,
    room: Room,
    root: Option<OwnedEventId>,
    channel_key: String,
    tails: ThreadTails,
    limits: SinkLimits,
}

#[async_trait::async_trait]
impl MessageSink for MatrixSink {
    fn limits(&self) -> SinkLimits {
        self.limits
    }

    async fn post(&self, markdown: &str) -> Result<String, SinkError> {
        let event = match &self.root {
            Some(root) => {
                let latest = self
                    .tails
                    .latest(&self.channel_key)
                    .unwrap_or_else(|| root.clone());
                content::post(markdown, root, &latest)
            }
            None => content::top_level(markdown),
        };
        let sent = self
            .room
            .send(event)
            .with_request_config(no_retry())
            .await
            .map_err(|e| sink_error(e.client_api_error_kind(), &e))?;
        let id = sent.response.event_id;
        self.tails.record(&self.channel_key, id.clone());
        Ok(id.to_string())
    }

    async fn edit(&self, message_id: &str, markdown: &str) -> Result<(), SinkError> {
        let target = EventId::parse(message_id)
            .map_err(|e| SinkError::Failed(format!("not a Matrix event id {message_id:?}: {e}")))?;
        self.room
            .send(content::edit(markdown, &target))
            .with_request_config(no_retry())
            .await
            .map_err(|e| sink_error(e.client_api_error_kind(), &e))?;
        Ok(())
    }

    async fn typing(&self, on: bool) -> Result<(), SinkError> {
        let user = self
            .client
            .user_id()
            .ok_or_else(|| SinkError::Failed("not logged in".into()))?
            .to_owned();
        let state = if on {
            create_typing_event::v3::Typing::Yes(create_typing_event::v3::TypingInfo::new(
                TYPING_TIMEOUT,
            ))
        } else {
            create_typing_event::v3::Typing::No
        };
        let request =
            create_typing_event::v3::Request::new(user, self.room.room_id().to_owned(), state);
        self.client
            .send(request)
            .with_request_config(no_retry())
            .await
            .map_err(|e| sink_error(e.client_api_error_kind(), &e))?;
        Ok(())
    }
}

/// A 429 `M_LIMIT_EXCEEDED` becomes [`SinkError::RateLimited`] with the server's
/// `retry_after_ms` (or `Retry-After`); anything else is [`SinkError::Failed`].
pub(crate) fn sink_error(kind: Option<&ErrorKind>, err: &dyn std::fmt::Display) -> SinkError {
    match kind {
        Some(ErrorKind::LimitExceeded(data)) => {
            let retry_after = match &data.retry_after {
                Some(RetryAfter::Delay(d)) => *d,
                Some(RetryAfter::DateTime(at)) => at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
                None => DEFAULT_RETRY_AFTER,
            };
            SinkError::RateLimited { retry_after }
        }
        _ => SinkError::Failed(format!("matrix: {err}")),
    }
}

/// Builds the sink of a binding from its channel key, for rooms the bot has joined.
pub struct MatrixSinkFactory {
    client: Client,
    tails: ThreadTails,
    limits: SinkLimits,
}

impl MatrixSinkFactory {
    pub(crate) fn new(client: Client, tails: ThreadTails, limits: SinkLimits) -> Self {
        Self {
            client,
            tails,
            limits,
        }
    }

    fn room(&self, room_id: &OwnedRoomId) -> Option<Room> {
        self.client
            .get_room(room_id)
            .filter(|r| r.state() == RoomState::Joined)
    }
}

#[async_trait::async_trait]
impl SinkFactory for MatrixSinkFactory {
    /// A room marked direct (`m.direct`) that only the bot and one person are in.
    async fn is_private(&self, channel_key: &str) -> bool {
        let Some(room) = parse_channel_key(channel_key).and_then(|(id, _)| self.room(&id)) else {
            return false;
        };
        room.is_direct().await.unwrap_or(false) && room.active_members_count() <= 2
    }

    /// The bot's direct room with `user` (one they are still in or invited to), or a
    /// new one they are invited to (encrypted, as matrix-sdk makes direct rooms).
    async fn private_sink(&self, user: &Identity) -> Result<Arc<dyn MessageSink>, SinkError> {
        let user_id = UserId::parse(&user.external_id).map_err(|e| {
            SinkError::Failed(format!("not a Matrix user id {:?}: {e}", user.external_id))
        })?;
        let mut reused = None;
        for room in self.client.get_dm_rooms(&user_id) {
            if room.state() != RoomState::Joined {
                continue;
            }
            let member = room.get_member_no_sync(&user_id).await.ok().flatten();
            if member.is_some_and(|m| {
                matches!(
                    m.membership(),
                    MembershipState::Join | MembershipState::Invite
                )
            }) {
                reused = Some(room);
                break;
            }
        }
        let room = match reused {
            Some(room) => room,
            None => {
                let room = self
                    .client
                    .create_dm(&user_id)
                    .await
                    .map_err(|e| sink_error(e.client_api_error_kind(), &e))?;
                tracing::info!(room = %room.room_id(), user = %user_id, "matrix: made a direct room");
                room
            }
        };
        Ok(Arc::new(MatrixSink {
            client: self.client.clone(),
            channel_key: room.room_id().to_string(),
            room,
            root: None,
            tails: self.tails.clone(),
            limits: self.limits,
        }))
    }

    fn sink(&self, channel_key: &str) -> Option<Arc<dyn MessageSink>> {
        let Some((room_id, root)) = parse_channel_key(channel_key) else {
            tracing::debug!(channel_key, "matrix: not a Matrix channel key");
            return None;
        };
        let Some(room) = self.room(&room_id) else {
            tracing::info!(%room_id, "matrix: cannot render into a room the bot has not joined");
            return None;
        };
        Some(Arc::new(MatrixSink {
            client: self.client.clone(),
            room,
            root: Some(root),
            channel_key: channel_key.to_string(),
            tails: self.tails.clone(),
            limits: self.limits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::api::EndpointError;
    use matrix_sdk::ruma::api::error::Error as ClientApiError;

    fn api_error(
        status: u16,
        body: serde_json::Value,
        retry_header: Option<&str>,
    ) -> ClientApiError {
        let mut response = http::Response::builder().status(status);
        if let Some(h) = retry_header {
            response = response.header(http::header::RETRY_AFTER, h);
        }
        let response = response.body(serde_json::to_vec(&body).unwrap()).unwrap();
        ClientApiError::from_http_response(response)
    }

    fn map(status: u16, body: serde_json::Value, header: Option<&str>) -> SinkError {
        let e = api_error(status, body, header);
        sink_error(e.error_kind(), &e)
    }

    #[test]
    fn limit_exceeded_maps_to_rate_limited_with_the_servers_delay() {
        let e = map(
            429,
            serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1500}),
            None,
        );
        assert!(
            matches!(e, SinkError::RateLimited { retry_after } if retry_after == Duration::from_millis(1500)),
            "{e:?}"
        );
        let e = map(
            429,
            serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down"}),
            Some("3"),
        );
        assert!(
            matches!(e, SinkError::RateLimited { retry_after } if retry_after == Duration::from_secs(3)),
            "{e:?}"
        );
        let e = map(
            429,
            serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down"}),
            None,
        );
        assert!(
            matches!(e, SinkError::RateLimited { retry_after } if retry_after == DEFAULT_RETRY_AFTER),
            "{e:?}"
        );
    }

    #[test]
    fn other_errors_fail_with_their_message() {
        let e = map(
            403,
            serde_json::json!({"errcode": "M_FORBIDDEN", "error": "not in room"}),
            None,
        );
        match e {
            SinkError::Failed(msg) => assert!(msg.contains("not in room"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let e = sink_error(None, &"connection refused");
        assert!(matches!(e, SinkError::Failed(m) if m.contains("connection refused")));
    }

    #[tokio::test]
    async fn the_factory_refuses_foreign_keys_and_rooms_not_joined() {
        // A client that never talks to its homeserver: building it makes no request.
        let client = Client::builder()
            .homeserver_url("http://127.0.0.1:9")
            .build()
            .await
            .unwrap();
        let limits = SinkLimits {
            max_bytes: 8000,
            min_edit_interval: Duration::from_millis(1200),
            max_edits_per_message: 30,
        };
        let factory = MatrixSinkFactory::new(client, ThreadTails::default(), limits);
        assert!(factory.sink("conv-123").is_none());
        assert!(factory.sink("!room:example.org|$root").is_none());
    }

    #[test]
    fn thread_tails_remember_the_latest_event() {
        let tails = ThreadTails::default();
        assert_eq!(tails.latest("k"), None);
        tails.record("k", OwnedEventId::try_from("$a").unwrap());
        tails.record("k", OwnedEventId::try_from("$b").unwrap());
        assert_eq!(tails.latest("k").unwrap().as_str(), "$b");
    }
}
