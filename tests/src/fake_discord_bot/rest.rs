//! The fake's REST API under `/api/v10`: one handler that checks the bot token, logs
//! every call with its time, refuses message creates and edits with 429 when a test
//! asked for it, and routes by method and path to the documented subset.

use super::{Answer, BOT_ID, Call, Chan, Msg, State, TOKEN, fixture};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    gateway_url: String,
}

pub fn router(state: Arc<Mutex<State>>, gateway_url: String) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Fake { state, gateway_url })
}

/// A channel as Discord's API returns it (from the documented examples).
pub fn channel_json(c: &Chan) -> Value {
    let mut v = match c.kind {
        1 => fixture("dm_channel"),
        11 => fixture("thread_channel"),
        _ => fixture("text_channel"),
    };
    v["id"] = json!(c.id.to_string());
    v["name"] = json!(c.name);
    match c.guild {
        Some(g) => v["guild_id"] = json!(g.to_string()),
        None => {
            if let Some(o) = v.as_object_mut() {
                o.remove("guild_id");
            }
        }
    }
    if c.kind == 11 {
        v["parent_id"] = json!(c.parent.map(|p| p.to_string()));
        v["owner_id"] = json!(c.owner.map(|p| p.to_string()));
    } else if c.kind == 0 {
        v["parent_id"] = Value::Null;
    }
    if c.kind == 1 {
        let mut user = v["recipients"][0].clone();
        user["id"] = json!(c.recipient.unwrap_or(0).to_string());
        v["recipients"] = json!([user]);
    }
    v
}

/// A message as Discord's API returns it.
pub fn message_json(m: &Msg) -> Value {
    let mut v = fixture("message_create");
    v["id"] = json!(m.id.to_string());
    v["channel_id"] = json!(m.channel.to_string());
    v["author"]["id"] = json!(m.author.to_string());
    if m.author == BOT_ID {
        v["author"]["username"] = json!("Chorus");
        v["author"]["bot"] = json!(true);
    }
    v["content"] = json!(m.content);
    v["components"] = m.components.clone();
    v["flags"] = json!(if m.ephemeral { 64 } else { 0 });
    if !m.edits.is_empty() {
        v["edited_timestamp"] = json!("2017-07-11T17:28:07.299000+00:00");
    }
    v
}

pub fn dm_channel(s: &mut State, user: u64) -> u64 {
    if let Some(c) = s
        .channels
        .values()
        .find(|c| c.kind == 1 && c.recipient == Some(user))
    {
        return c.id;
    }
    let id = s.new_id();
    s.channels.insert(
        id,
        Chan {
            id,
            kind: 1,
            guild: None,
            parent: None,
            owner: None,
            name: String::new(),
            recipient: Some(user),
        },
    );
    id
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"message": "Unknown", "code": 10003}),
    )
}

async fn handle(
    AxState(fake): AxState<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = fake.state.lock().unwrap_or_else(|e| e.into_inner());
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {TOKEN}"));
    let webhook = path.starts_with("/api/v10/webhooks/") || path.contains("/callback");
    let (status, answer) = if !authorized && !webhook {
        (
            StatusCode::UNAUTHORIZED,
            json!({"message": "401: Unauthorized", "code": 0}),
        )
    } else if let Some(wait) = if is_message_write(&method, &path) {
        s.limit_next.pop_front()
    } else if is_answer_write(&method, &path) {
        s.limit_answers_next.pop_front()
    } else {
        None
    } {
        let mut limit = fixture("rate_limit");
        limit["retry_after"] = json!(wait);
        s.calls.push(Call {
            at: Instant::now(),
            method: method.to_string(),
            path: path.clone(),
            body,
            status: 429,
        });
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", format!("{}", wait.ceil() as u64)),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset-after", format!("{wait}")),
            ],
            axum::Json(limit),
        )
            .into_response();
    } else {
        route(&mut s, &fake.gateway_url, &method, &path, &body)
    };
    s.calls.push(Call {
        at: Instant::now(),
        method: method.to_string(),
        path,
        body,
        status: status.as_u16(),
    });
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    json_response(status, answer)
}

/// An interaction's callback, or a write to its webhook (`@original`, follow-ups).
fn is_answer_write(method: &Method, path: &str) -> bool {
    method != Method::GET && (path.ends_with("/callback") || path.starts_with("/api/v10/webhooks/"))
}

fn is_message_write(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    matches!(
        (method.as_str(), segments.as_slice()),
        ("POST", ["channels", _, "messages"]) | ("PATCH", ["channels", _, "messages", _])
    )
}

fn route(
    s: &mut State,
    gateway_url: &str,
    method: &Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let Some(rest) = path.strip_prefix("/api/v10/") else {
        return not_found();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let num = |s: &str| s.parse::<u64>().ok();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => (StatusCode::OK, json!({"url": gateway_url})),
        ("GET", ["users", "@me"]) => {
            let mut user = fixture("ready")["user"].clone();
            user["id"] = json!(BOT_ID.to_string());
            user["username"] = json!("Chorus");
            (StatusCode::OK, user)
        }
        ("GET", ["users", id]) => {
            let mut user = fixture("message_create")["author"].clone();
            user["id"] = json!(id);
            (StatusCode::OK, user)
        }
        ("PUT", ["applications", _, "commands"])
        | ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            let commands = body.as_array().cloned().unwrap_or_default();
            let mut registered = Vec::new();
            for mut c in commands {
                c["id"] = json!(s.new_id().to_string());
                c["application_id"] = json!(BOT_ID.to_string());
                c["version"] = json!("1");
                c["type"] = c.get("type").cloned().unwrap_or(json!(1));
                registered.push(c);
            }
            s.commands = registered.clone();
            (StatusCode::OK, json!(registered))
        }
        ("POST", ["channels", c, "messages"]) => {
            let Some(channel) = num(c).filter(|c| s.channels.contains_key(c)) else {
                return not_found();
            };
            let content = body["content"].as_str().unwrap_or_default();
            if content.chars().count() > 2000 {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"message": "Invalid Form Body", "code": 50035}),
                );
            }
            let id = s.new_id();
            let msg = Msg {
                id,
                channel,
                author: BOT_ID,
                content: content.to_string(),
                components: body.get("components").cloned().unwrap_or(json!([])),
                edits: Vec::new(),
                ephemeral: false,
                interaction: None,
            };
            let v = message_json(&msg);
            s.messages.insert(id, msg);
            (StatusCode::OK, v)
        }
        ("PATCH", ["channels", c, "messages", m]) => {
            let (Some(channel), Some(id)) = (num(c), num(m)) else {
                return not_found();
            };
            let Some(msg) = s.messages.get_mut(&id).filter(|m| m.channel == channel) else {
                return not_found();
            };
            edit(msg, body)
        }
        ("GET", ["channels", c, "messages", m]) => match (num(c), num(m)) {
            (Some(channel), Some(id)) => match s.messages.get(&id).filter(|m| m.channel == channel)
            {
                Some(msg) => (StatusCode::OK, message_json(msg)),
                None => not_found(),
            },
            _ => not_found(),
        },
        ("POST", ["channels", c, "typing"]) => match num(c) {
            Some(channel) => {
                s.typing.push((channel, Instant::now()));
                (StatusCode::NO_CONTENT, Value::Null)
            }
            None => not_found(),
        },
        ("GET", ["channels", c]) => match num(c).and_then(|c| s.channels.get(&c)) {
            Some(chan) => (StatusCode::OK, channel_json(chan)),
            None => not_found(),
        },
        ("POST", ["channels", c, "messages", m, "threads"]) => {
            let (Some(parent), Some(message)) = (num(c), num(m)) else {
                return not_found();
            };
            if s.messages.get(&message).is_none_or(|m| m.channel != parent) {
                return not_found();
            }
            thread(s, parent, message, body)
        }
        ("POST", ["channels", c, "threads"]) => {
            let Some(parent) = num(c) else {
                return not_found();
            };
            let id = s.new_id();
            thread(s, parent, id, body)
        }
        ("POST", ["users", "@me", "channels"]) => {
            let Some(user) = body["recipient_id"].as_str().and_then(num) else {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"message": "Invalid Form Body", "code": 50035}),
                );
            };
            let id = dm_channel(s, user);
            (StatusCode::OK, channel_json(&s.channels[&id]))
        }
        ("POST", ["interactions", _, token, "callback"]) => {
            let token = token.to_string();
            let Some(answer) = s.answers.get(&token).cloned() else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"message": "Unknown interaction", "code": 10062}),
                );
            };
            if answer.callback.is_some() {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"message": "Interaction has already been acknowledged.", "code": 40060}),
                );
            }
            let kind = body["type"].as_u64().unwrap_or(0);
            let data = body["data"].clone();
            let ephemeral = data["flags"].as_u64().unwrap_or(0) & 64 != 0;
            let mut answer = Answer {
                callback: Some(kind),
                callback_data: data.clone(),
                ephemeral,
                ..answer
            };
            if matches!(kind, 4 | 5) {
                let id = s.new_id();
                let channel = interaction_channel(s, &token);
                s.messages.insert(
                    id,
                    Msg {
                        id,
                        channel,
                        author: BOT_ID,
                        content: data["content"].as_str().unwrap_or_default().to_string(),
                        components: data.get("components").cloned().unwrap_or(json!([])),
                        edits: Vec::new(),
                        ephemeral,
                        interaction: Some(token.clone()),
                    },
                );
                answer.original = Some(id);
            }
            s.answers.insert(token, answer);
            (StatusCode::NO_CONTENT, Value::Null)
        }
        ("PATCH", ["webhooks", _, token, "messages", "@original"]) => {
            let Some(id) = s.answers.get(*token).and_then(|a| a.original) else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"message": "Unknown Webhook", "code": 10015}),
                );
            };
            match s.messages.get_mut(&id) {
                Some(msg) => edit(msg, body),
                None => not_found(),
            }
        }
        ("GET", ["webhooks", _, token, "messages", "@original"]) => {
            match s
                .answers
                .get(*token)
                .and_then(|a| a.original)
                .and_then(|id| s.messages.get(&id))
            {
                Some(msg) => (StatusCode::OK, message_json(msg)),
                None => not_found(),
            }
        }
        ("POST", ["webhooks", _, token]) => {
            let token = token.to_string();
            if !s.answers.contains_key(&token) {
                return (
                    StatusCode::NOT_FOUND,
                    json!({"message": "Unknown Webhook", "code": 10015}),
                );
            }
            let id = s.new_id();
            let channel = interaction_channel(s, &token);
            let msg = Msg {
                id,
                channel,
                author: BOT_ID,
                content: body["content"].as_str().unwrap_or_default().to_string(),
                components: body.get("components").cloned().unwrap_or(json!([])),
                edits: Vec::new(),
                ephemeral: body["flags"].as_u64().unwrap_or(0) & 64 != 0,
                interaction: Some(token.clone()),
            };
            let v = message_json(&msg);
            s.messages.insert(id, msg);
            if let Some(a) = s.answers.get_mut(&token) {
                a.followups.push(id);
            }
            (StatusCode::OK, v)
        }
        _ => not_found(),
    }
}

/// The channel an interaction happened in (recorded when the test sent it).
fn interaction_channel(s: &State, token: &str) -> u64 {
    s.answer_channels.get(token).copied().unwrap_or(0)
}

fn edit(msg: &mut Msg, body: &Value) -> (StatusCode, Value) {
    if let Some(content) = body.get("content").and_then(Value::as_str) {
        if content.chars().count() > 2000 {
            return (
                StatusCode::BAD_REQUEST,
                json!({"message": "Invalid Form Body", "code": 50035}),
            );
        }
        msg.content = content.to_string();
    }
    if let Some(components) = body.get("components") {
        msg.components = components.clone();
    }
    msg.edits.push(Instant::now());
    (StatusCode::OK, message_json(msg))
}

fn thread(s: &mut State, parent: u64, id: u64, body: &Value) -> (StatusCode, Value) {
    let Some(guild) = s.channels.get(&parent).and_then(|c| c.guild) else {
        return not_found();
    };
    let chan = Chan {
        id,
        kind: 11,
        guild: Some(guild),
        parent: Some(parent),
        owner: Some(BOT_ID),
        name: body["name"].as_str().unwrap_or("thread").to_string(),
        recipient: None,
    };
    let v = channel_json(&chan);
    s.channels.insert(id, chan);
    let mut event = v.clone();
    event["newly_created"] = json!(true);
    // Discord tells the gateway too; a test without a session still gets the thread.
    let _ = s.dispatch("THREAD_CREATE", event);
    (StatusCode::CREATED, v)
}
