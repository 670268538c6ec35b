//! Property tests (proptest) of the Slack app's input handlers, driven as Slack
//! drives them: the Events API router (`/slack/events`, `/slack/interactions`,
//! `/slack/commands`) of a started app in `events` mode, on a real `Core` (SQLite in
//! a temporary directory, the scripted model) and a loopback Web API that records
//! every call; Socket Mode frames parsed with slack-morphism's envelope type, as its
//! listener parses them, and handed to the bot as `socket.rs` hands them.
//!
//! - a request that is not Slack's (body, signature or timestamp changed, a header
//!   missing, another secret) is refused with 401 and nothing in it is done: no Web
//!   API call, no account, no run;
//! - a signed request of any body (mutated recordings, arbitrary JSON, random bytes,
//!   any form) is answered 200 or 400 with a message naming what it is not, and its
//!   handling never panics; `url_verification` echoes any challenge;
//! - a Socket Mode frame of any content never panics the bot;
//! - the message a reply becomes (`markdown` block, buttons, plain fallback) keeps the
//!   markdown whole, its fallback a prefix within its bound, and its buttons' ids the
//!   kit's.
//!
//! CI runs 32 cases per property; `PROPTEST_CASES=100000` runs more (README, "Fuzzing").

use crate::api::{Buttons, content};
use crate::config::SlackConfig;
use crate::events::EventsEndpoint;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use chorus_core::Core;
use chorus_core::chat::{Control, SurfaceHandle};
use chorus_core::config::Config;
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};
use slack_morphism::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

const SECRET: &str = "fuzz-signing-secret";
/// The app's bot user, as the fake's `auth.test` names it (the fixtures mention it).
const BOT_USER: &str = "U0LAN0Z89";

/// Cases per property: 32 unless `PROPTEST_CASES` says otherwise.
fn cases() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 32;
    }
    // Regressions found are kept as named tests below.
    config.failure_persistence = None;
    config
}

/// Panics anywhere in the process (the handlers run on the surface's tasks, whose
/// panics would otherwise go unseen).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info)
        }));
    });
}

/// The Web API calls the app made: method and body.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// Slack's Web API as far as the app needs answers: `ok` with the fields it reads.
async fn web_api(
    State(calls): State<Calls>,
    Path(method): Path<String>,
    body: Bytes,
) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((method.clone(), body.clone()));
    let channel = body["channel"].as_str().unwrap_or("C1").to_string();
    axum::Json(match method.as_str() {
        "auth.test" => json!({
            "ok": true, "url": "https://fuzz.slack.com/", "team": "Fuzz", "user": "chorus",
            "team_id": "T123ABC456", "user_id": BOT_USER, "bot_id": "B0CHORUS1",
        }),
        "chat.postMessage" | "chat.update" => json!({
            "ok": true, "channel": channel, "ts": "1700000000.000100", "text": "",
            "message": {"type": "message", "user": BOT_USER, "text": "", "ts": "1700000000.000100"},
        }),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000000.000200"}),
        "chat.startStream" | "chat.appendStream" | "chat.stopStream" => {
            json!({"ok": true, "channel": channel, "ts": "1700000000.000300"})
        }
        _ => json!({"ok": true}),
    })
}

/// A started app in `events` mode on a real core, with its router and the fake's log.
struct Harness {
    runtime: tokio::runtime::Runtime,
    core: Core,
    endpoint: EventsEndpoint,
    surface: SurfaceHandle,
    calls: Calls,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        count_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let calls: Calls = Arc::default();
        let (core, endpoint, surface) = runtime.block_on(async {
            let app = axum::Router::new()
                .route("/api/{method}", axum::routing::any(web_api))
                .with_state(calls.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the fake Web API");
            let addr = listener.local_addr().expect("its address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            let toml = format!(
                "data_dir = {:?}\n[engine]\ndefault_model = \"scripted/demo\"\n\
                 [[providers]]\nid = \"scripted\"\nkind = \"scripted\"\nmodels = [\"demo\"]\n\
                 text = \"Fine.\"\ntokens_per_second = 1000.0\n",
                dir.path().display().to_string()
            );
            let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).expect("config"))
                .await
                .expect("core starts");
            let config: SlackConfig = toml::from_str(&format!(
                "bot_token = \"xoxb-fuzz\"\nmode = \"events\"\nsigning_secret = {SECRET:?}\n\
                 min_edit_interval_ms = 0\nupdate_interval_ms = 0\napi_url = \"http://{addr}/api/\"\n"
            ))
            .expect("slack config");
            let endpoint = EventsEndpoint::new(config.signing_secret.as_ref());
            let surface = crate::start(core.clone(), &config, &endpoint)
                .await
                .expect("the app starts");
            (core, endpoint, surface)
        });
        Self {
            runtime,
            core,
            endpoint,
            surface,
            calls,
            _dir: dir,
        }
    }

    /// Sends one request to the router; its status and body.
    fn send(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(String, String)],
    ) -> (u16, String) {
        let mut request = axum::http::Request::post(path).header("content-type", content_type);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Body::from(body.to_vec())).expect("a request");
        self.runtime.block_on(async {
            let response = self
                .endpoint
                .router()
                .oneshot(request)
                .await
                .expect("the router answers");
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("a body");
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Waits for every handler the requests started, then: the Web API calls made
    /// after `auth.test`, and the accounts core holds.
    fn settle(&self) -> (Vec<(String, Value)>, i64) {
        self.runtime.block_on(self.surface.shutdown());
        let calls = self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(m, _)| m != "auth.test")
            .cloned()
            .collect();
        let accounts = self
            .runtime
            .block_on(self.core.account_count())
            .expect("accounts");
        (calls, accounts)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.runtime.block_on(self.core.shutdown());
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under `secret`, as Slack signs.
fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha2_011::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn signed_headers(secret: &str, timestamp: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("x-slack-request-timestamp".into(), timestamp.into()),
        (
            "x-slack-signature".into(),
            signature(secret, timestamp, body),
        ),
    ]
}

/// One request Slack sends: route, content type, body.
#[derive(Clone, Debug)]
struct Delivery {
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

fn fixture(name: &str) -> Value {
    let text = match name {
        "app_mention" => {
            include_str!("../../../tests/fixtures/slack/event_callback_app_mention.json")
        }
        "message_im" => {
            include_str!("../../../tests/fixtures/slack/event_callback_message_im.json")
        }
        "assistant" => {
            include_str!(
                "../../../tests/fixtures/slack/event_callback_assistant_thread_started.json"
            )
        }
        "url_verification" => include_str!("../../../tests/fixtures/slack/url_verification.json"),
        "block_actions" => include_str!("../../../tests/fixtures/slack/block_actions.json"),
        "slash_command" => include_str!("../../../tests/fixtures/slack/slash_command.json"),
        "socket_envelope" => include_str!("../../../tests/fixtures/slack/socket_envelope.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("a fixture is JSON")
}

fn form(fields: &[(&str, String)]) -> Vec<u8> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    form.finish().into_bytes()
}

/// The slash command fixture as `/chorus TEXT`, as form fields.
fn command_fields(text: &str) -> Vec<(&'static str, String)> {
    let fixture = fixture("slash_command");
    let mut fields: Vec<(&'static str, String)> = [
        "token",
        "team_id",
        "team_domain",
        "enterprise_id",
        "enterprise_name",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "response_url",
        "trigger_id",
        "api_app_id",
    ]
    .into_iter()
    .map(|k| (k, fixture[k].as_str().unwrap_or_default().to_string()))
    .collect();
    for (k, v) in fields.iter_mut() {
        match *k {
            "command" => *v = "/chorus".into(),
            "text" => *v = text.into(),
            _ => {}
        }
    }
    fields
}

/// Slack's documented examples as the app receives them, with the app's button ids.
fn recorded() -> Vec<Delivery> {
    let event = |name: &str| Delivery {
        path: "/slack/events",
        content_type: JSON,
        body: fixture(name).to_string().into_bytes(),
    };
    let mut actions = fixture("block_actions");
    actions["actions"][0]["action_id"] = json!(Control::Stop.button_id());
    vec![
        event("app_mention"),
        event("message_im"),
        event("assistant"),
        event("url_verification"),
        Delivery {
            path: "/slack/interactions",
            content_type: FORM,
            body: form(&[("payload", actions.to_string())]),
        },
        Delivery {
            path: "/slack/commands",
            content_type: FORM,
            body: form(&command_fields("usage")),
        },
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Repeat(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"\"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"%".to_vec(),
        b"&payload=".to_vec(),
        b"=".to_vec(),
        b"\\u0000".to_vec(),
        b":".to_vec(),
        "é🎉".as_bytes().to_vec(),
        b"\xff".to_vec(),
    ]);
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), 1usize..80).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(body: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut body = body.to_vec();
    for m in mutations {
        let len = body.len();
        match m {
            Mutation::Flip(i, b) if len > 0 => body[i.index(len)] ^= b,
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                body.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i.index(len);
                body.drain(at..(at + n).min(len));
            }
            Mutation::Repeat(i, n) if len > 0 => {
                let at = i.index(len);
                let span: Vec<u8> = body[at..(at + n).min(len)].to_vec();
                body.splice(at..at, span);
            }
            Mutation::Truncate(i) => body.truncate(i.index(len + 1)),
            _ => {}
        }
    }
    body
}

/// How a request fails to be Slack's.
#[derive(Clone, Debug)]
enum Forgery {
    /// The body changed after it was signed.
    Body(Vec<Mutation>),
    /// Signed with another secret.
    Secret(String),
    /// Signed, with a timestamp outside the five minutes (either way).
    Stale(i64),
    /// A timestamp that is no number or far from now, the extremes included (signed
    /// with it).
    Timestamp(String),
    /// One character of the signature changed.
    Signature(prop::sample::Index, char),
    /// A header missing.
    NoSignature,
    NoTimestamp,
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        prop::collection::vec(mutation(), 1..4).prop_map(Forgery::Body),
        "[ -~]{0,40}"
            .prop_filter("another secret", |s| s != SECRET)
            .prop_map(Forgery::Secret),
        prop_oneof![301i64..1_000_000_000, -1_000_000_000i64..-301].prop_map(Forgery::Stale),
        prop_oneof![
            "[ -~]{0,24}",
            any::<i64>().prop_map(|t| t.to_string()),
            prop::sample::select(vec![i64::MIN, i64::MIN + 1, i64::MAX, -1, 0])
                .prop_map(|t| t.to_string()),
        ]
        .prop_filter("not within five minutes", |s| {
            s.parse::<i64>()
                .map_or(true, |t| (t as i128 - now() as i128).abs() > 300)
        })
        .prop_map(Forgery::Timestamp),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| Forgery::Signature(i, c)),
        Just(Forgery::NoSignature),
        Just(Forgery::NoTimestamp),
    ]
}

/// The request `delivery` forged as `forgery`: body and headers; `None` when the
/// forgery happens to change nothing.
/// A request's body and headers.
type Request = (Vec<u8>, Vec<(String, String)>);

fn forge(delivery: &Delivery, forgery: &Forgery) -> Option<Request> {
    let ts = now().to_string();
    let body = delivery.body.clone();
    let headers = signed_headers(SECRET, &ts, &body);
    Some(match forgery {
        Forgery::Body(mutations) => {
            let mutated = mutate(&body, mutations);
            if mutated == body {
                return None;
            }
            (mutated, headers)
        }
        Forgery::Secret(secret) => (body.clone(), signed_headers(secret, &ts, &body)),
        Forgery::Stale(by) => {
            let ts = (now() + by).to_string();
            (body.clone(), signed_headers(SECRET, &ts, &body))
        }
        Forgery::Timestamp(ts) => (body.clone(), signed_headers(SECRET, ts, &body)),
        Forgery::Signature(at, c) => {
            let mut headers = headers;
            let signature: Vec<char> = headers[1].1.chars().collect();
            let i = at.index(signature.len());
            if signature[i] == *c {
                return None;
            }
            let mut changed = signature.clone();
            changed[i] = *c;
            headers[1].1 = changed.into_iter().collect();
            if axum::http::HeaderValue::from_str(&headers[1].1).is_err() {
                return None;
            }
            (body, headers)
        }
        Forgery::NoSignature => (body, headers[..1].to_vec()),
        Forgery::NoTimestamp => (body, headers[1..].to_vec()),
    })
}

/// Any request that is not Slack's gets 401 and nothing in it is done; the same
/// requests signed properly afterwards are (the harness sees what is done).
#[test]
fn requests_not_signed_by_slack_are_refused_and_nothing_is_done() {
    let harness = Harness::new();
    let deliveries = recorded();
    let strategy = (prop::sample::select(deliveries.clone()), forgery());
    let mut runner = TestRunner::new(cases());
    runner
        .run(&strategy, |(delivery, forgery)| {
            let Some((body, headers)) = forge(&delivery, &forgery) else {
                return Ok(());
            };
            let (status, text) =
                harness.send(delivery.path, delivery.content_type, &body, &headers);
            prop_assert_eq!(status, 401, "{:?} got {}: {}", forgery, status, text);
            prop_assert_eq!(text, "invalid Slack request signature");
            Ok(())
        })
        .expect("every forged request refused");
    let (calls, accounts) = harness.settle();
    assert!(
        calls.is_empty(),
        "a refused request reached Slack: {calls:?}"
    );
    assert_eq!(accounts, 0, "a refused request made an account");

    // The control: the same recordings, signed, are handled (a question makes an
    // account and a reply; the command answers ephemerally).
    let harness = Harness::new();
    for delivery in &deliveries {
        let ts = now().to_string();
        let (status, text) = harness.send(
            delivery.path,
            delivery.content_type,
            &delivery.body,
            &signed_headers(SECRET, &ts, &delivery.body),
        );
        assert_eq!(status, 200, "{}: {text}", delivery.path);
    }
    let (calls, accounts) = harness.settle();
    assert!(accounts >= 1, "no question was handled");
    for method in [
        "chat.postEphemeral",
        "assistant.threads.setSuggestedPrompts",
    ] {
        assert!(
            calls.iter().any(|(m, _)| m == method),
            "no {method}: {calls:?}"
        );
    }
}

/// Found by `requests_not_signed_by_slack_are_refused_and_nothing_is_done` (with
/// `PROPTEST_CASES=1500`): a request signed with the timestamp `-9223372036854775808`
/// panicked slack-morphism's verifier (`now - ts` overflows; a debug build panics, a
/// release build wraps) instead of being refused. The endpoint now checks the
/// timestamp itself, without overflow, before the verifier sees the request.
#[test]
fn a_signed_request_with_an_extreme_timestamp_is_refused_not_a_panic() {
    let harness = Harness::new();
    let body = fixture("app_mention").to_string().into_bytes();
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
        let headers = signed_headers(SECRET, &ts.to_string(), &body);
        let (status, text) = harness.send("/slack/events", JSON, &body, &headers);
        assert_eq!(
            (status, text.as_str()),
            (401, "invalid Slack request signature"),
            "{ts}"
        );
    }
    let (calls, accounts) = harness.settle();
    assert!(calls.is_empty() && accounts == 0, "{calls:?}");
}

/// A body as it may come: a mutated recording, arbitrary JSON, a form, random bytes.
fn any_body() -> impl Strategy<Value = (Delivery, Vec<u8>)> {
    let recorded = (
        prop::sample::select(recorded()),
        prop::collection::vec(mutation(), 0..4),
    )
        .prop_map(|(d, m)| {
            let body = mutate(&d.body, &m);
            (d, body)
        });
    let route = prop::sample::select(vec![
        ("/slack/events", JSON),
        ("/slack/interactions", FORM),
        ("/slack/commands", FORM),
    ]);
    let other = (
        route,
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            json_value().prop_map(|v| form(&[("payload", v.to_string())])),
            prop::collection::vec(("[a-z_]{1,12}", any::<String>()), 0..8).prop_map(|pairs| {
                let fields: Vec<(&str, String)> =
                    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                form(&fields)
            }),
            any::<String>().prop_map(|text| form(&command_fields(&text))),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
    )
        .prop_map(|((path, content_type), body)| {
            (
                Delivery {
                    path,
                    content_type,
                    body: Vec::new(),
                },
                body,
            )
        });
    prop_oneof![recorded, other]
}

/// JSON of any shape, with the field names Slack's payloads use.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "type",
        "event",
        "event_id",
        "team_id",
        "challenge",
        "user",
        "channel",
        "text",
        "ts",
        "thread_ts",
        "actions",
        "action_id",
        "container",
        "message_ts",
        "channel_id",
        "payload",
        "subtype",
        "bot_id",
        "channel_type",
        "assistant_thread",
        "user_id",
        "command",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "event_callback",
            "url_verification",
            "app_mention",
            "message",
            "block_actions",
            "im",
            "chorus:stop",
            "chorus:continue",
            "D123",
            "C123",
            "1700000000.000100",
            "T123ABC456",
            BOT_USER,
            "",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Signed requests of any body: answered 200 or 400 (naming what the body is not),
/// never a panic, in the router or in the handlers it starts.
#[test]
fn signed_requests_of_any_body_get_a_clear_answer() {
    let harness = Harness::new();
    let panics = PANICS.load(Ordering::SeqCst);
    let mut runner = TestRunner::new(cases());
    runner
        .run(&any_body(), |(delivery, body)| {
            let ts = now().to_string();
            let (status, text) = harness.send(
                delivery.path,
                delivery.content_type,
                &body,
                &signed_headers(SECRET, &ts, &body),
            );
            let refusal = match delivery.path {
                "/slack/events" => "not a Slack event",
                "/slack/interactions" => "not a Slack interaction",
                _ => "not a Slack slash command",
            };
            if std::str::from_utf8(&body).is_err() {
                // Not text: not Slack's (its signature covers text).
                prop_assert_eq!(status, 401);
            } else if status == 400 {
                prop_assert_eq!(text, refusal);
            } else {
                prop_assert_eq!(status, 200, "{}", text);
            }
            Ok(())
        })
        .expect("every signed request answered");
    harness.settle();
    assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a handler panicked");
}

/// `url_verification` echoes any challenge, whatever it holds.
#[test]
fn url_verification_echoes_any_challenge() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(cases());
    runner
        .run(&any::<String>(), |challenge| {
            let body = json!({"type": "url_verification", "token": "x", "challenge": challenge})
                .to_string();
            let ts = now().to_string();
            let (status, text) = harness.send(
                "/slack/events",
                JSON,
                body.as_bytes(),
                &signed_headers(SECRET, &ts, body.as_bytes()),
            );
            prop_assert_eq!(status, 200);
            let answer: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(answer, json!({ "challenge": challenge }));
            Ok(())
        })
        .expect("every challenge echoed");
}

/// A Socket Mode frame: the envelope fixture around a mutated recording, arbitrary
/// JSON, or random text.
fn socket_frame() -> impl Strategy<Value = String> {
    let payloads = vec![
        ("events_api", fixture("app_mention")),
        ("events_api", fixture("message_im")),
        ("events_api", fixture("assistant")),
        ("interactive", {
            let mut actions = fixture("block_actions");
            actions["actions"][0]["action_id"] = json!(Control::Continue.button_id());
            actions
        }),
        ("slash_commands", {
            let fields = command_fields("stop");
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect(),
            )
        }),
    ];
    let wrapped = (
        prop::sample::select(payloads),
        prop::collection::vec(mutation(), 0..3),
    )
        .prop_map(|((kind, payload), mutations)| {
            let mut envelope = fixture("socket_envelope");
            envelope["type"] = json!(kind);
            envelope["payload"] = payload;
            String::from_utf8_lossy(&mutate(envelope.to_string().as_bytes(), &mutations))
                .into_owned()
        });
    prop_oneof![
        wrapped,
        (
            prop::sample::select(vec!["events_api", "interactive", "slash_commands", "hello", "disconnect"]),
            json_value()
        )
            .prop_map(|(kind, payload)| {
                json!({"type": kind, "envelope_id": "e1", "accepts_response_payload": false, "payload": payload})
                    .to_string()
            }),
        any::<String>(),
    ]
}

/// A Socket Mode frame as slack-morphism's listener reads it (its
/// `SlackSocketModeEvent`, which the crate does not export: the same tags, the same
/// payload types its callbacks receive).
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
enum Frame {
    EventsApi {
        payload: SlackPushEventCallback,
    },
    Interactive {
        payload: SlackInteractionEvent,
    },
    SlashCommands {
        payload: SlackCommandEvent,
    },
    #[serde(other)]
    Other,
}

/// Any Socket Mode frame slack-morphism's listener parses reaches the bot as
/// `socket.rs` hands it on; none panics it.
#[test]
fn socket_mode_frames_of_any_content_never_panic_the_bot() {
    let harness = Harness::new();
    let bot = harness.endpoint.bot().expect("the bot is installed");
    let panics = PANICS.load(Ordering::SeqCst);
    let mut runner = TestRunner::new(cases());
    runner
        .run(&socket_frame(), |frame| {
            let _enter = harness.runtime.enter();
            match serde_json::from_str::<Frame>(&frame) {
                Ok(Frame::EventsApi { payload }) => bot.on_push(payload),
                Ok(Frame::Interactive { payload }) => bot.on_interaction(payload),
                Ok(Frame::SlashCommands { payload }) => bot.on_command(payload),
                // hello, disconnect: the listener's own; what does not parse is
                // acknowledged and dropped by it.
                Ok(Frame::Other) | Err(_) => {}
            }
            Ok(())
        })
        .expect("every frame handled");
    harness.settle();
    assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a handler panicked");
}

/// Markdown of what replies hold, pathological pieces included.
fn markdown() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{1,20}",
        Just("\n".to_string()),
        Just("**bold** _it_ `code` ~strike~".to_string()),
        Just("```rust\nfn main() {}\n```\n".to_string()),
        Just("| a | b |\n|---|---|\n| 1 | 2 |\n".to_string()),
        Just("<@U123> <!channel> <https://x.org|x> &amp; &lt;".to_string()),
        Just("\u{1}\u{7f}\u{200b}é✓🎉".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(cases())]

    /// The message a reply becomes: one `markdown` block holding the markdown
    /// exactly, the buttons asked for (ids the kit reads back), and a plain fallback
    /// that is the markdown's first 300 characters, cut between characters.
    #[test]
    fn a_reply_message_keeps_the_markdown_whole_and_its_buttons(
        text in markdown(),
        buttons in prop::sample::select(vec![
            Buttons::None,
            Buttons::Stop,
            Buttons::Ended { continuable: true },
            Buttons::Ended { continuable: false },
        ]),
    ) {
        let message = serde_json::to_value(content(&text, buttons)).expect("serializes");
        let blocks = message["blocks"].as_array().expect("blocks");
        prop_assert_eq!(blocks[0]["type"].as_str(), Some("markdown"));
        prop_assert_eq!(blocks[0]["text"].as_str(), Some(text.as_str()));
        let fallback = message["text"].as_str().unwrap_or_default();
        prop_assert!(text.starts_with(fallback));
        prop_assert!(fallback.chars().count() <= 300);
        prop_assert_eq!(fallback.chars().count(), text.chars().count().min(300));
        let ids: Vec<Control> = blocks
            .iter()
            .skip(1)
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["action_id"].as_str().and_then(Control::from_button_id))
            .collect();
        let expected = match buttons {
            Buttons::None => vec![],
            Buttons::Stop => vec![Control::Stop],
            Buttons::Ended { continuable: true } => vec![Control::Continue, Control::Regenerate],
            Buttons::Ended { continuable: false } => vec![Control::Regenerate],
        };
        prop_assert_eq!(ids, expected);
        prop_assert_eq!(blocks.len(), if buttons == Buttons::None { 1 } else { 2 });
    }

    /// A question's text with the app's mention and Slack's escapes taken out: never
    /// holds the mention, trimmed, and text without either is kept as it is (trimmed).
    #[test]
    fn question_text_loses_the_mention_and_escapes_only(text in markdown()) {
        let cleaned = crate::bot::clean_text(&text, BOT_USER);
        prop_assert_eq!(cleaned.trim(), cleaned.as_str());
        let plain = !text.contains('<') && !text.contains('&');
        if plain {
            prop_assert_eq!(cleaned.as_str(), text.trim());
        }
    }
}
