//! Property tests (proptest) of the Discord bot's input handlers, driven as the
//! gateway client drives them: payloads deserialized into serenity's models (as its
//! gateway does with a dispatch's `d`) and handed to the bot's handlers, on a real
//! `Core` (SQLite in a temporary directory, the scripted model) and a loopback
//! Discord REST API that records every call (serenity's client and ours point at it).
//!
//! - interactions, messages and reactions of any shape (Discord's documented examples
//!   mutated, arbitrary JSON) never panic a handler;
//! - an interaction refused (outside the allowlist, an unknown command, an unknown
//!   button or menu id) gets one ephemeral answer naming why, and nothing else is done;
//! - any text answered to an interaction or posted as a reply is split into messages
//!   of at most 2,000 characters whose code fences are closed, and they are the text
//!   whole;
//! - any REST answer (status, headers, body) is read without a panic: 429 with a
//!   bounded wait, other failures naming the status, bad JSON named;
//! - only the kit's exact ids are buttons, and autocomplete offers at most 25 models.
//!
//! CI runs 32 cases per property; `PROPTEST_CASES=100000` runs more (README, "Fuzzing").

use crate::addressing::{self, Place};
use crate::allow::Allowlist;
use crate::bot::{Bot, SURFACE};
use crate::config::{DISCORD_CONTENT_LIMIT, DiscordConfig};
use crate::rest::Rest;
use crate::sink::DiscordSinkFactory;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chorus_core::Core;
use chorus_core::chat::split::close_open_fence;
use chorus_core::chat::{Control, SinkError, SurfaceHandle};
use chorus_core::config::Config;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use serenity::all::{HttpBuilder, Interaction, Message, Reaction, UserId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

/// The bot's own user id.
const BOT_ID: u64 = 775_799_577_604_522_054;
/// The one user the allowlist admits (the documented examples' author).
const ALLOWED_USER: &str = "53908232506183680";

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

/// Panics anywhere in the process (handlers also run on spawned tasks).
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

/// One REST call the bot made: method, path under `/api/v10`, JSON body.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    body: Value,
}

/// What the fake answers: the log, and an answer to give the next call (else `ok`).
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
    next: Mutex<Option<Answer>>,
}

/// A REST answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

static IDS: AtomicUsize = AtomicUsize::new(1);

async fn rest(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(uri.path())
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Call {
            method,
            path: path.clone(),
            body,
        });
    if let Some((status, headers, body)) =
        fake.next.lock().unwrap_or_else(|e| e.into_inner()).take()
    {
        let mut response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT));
        for (k, v) in headers {
            response = response.header(k, v);
        }
        return response
            .body(axum::body::Body::from(body))
            .unwrap_or_default();
    }
    let id = (900_000_000_000_000_000u64 + IDS.fetch_add(1, Ordering::SeqCst) as u64).to_string();
    axum::Json(json!({ "id": id, "type": 0, "content": "" })).into_response()
}

/// A bot as `connection::start` makes it, on a real core and the fake REST API.
struct Harness {
    runtime: tokio::runtime::Runtime,
    core: Core,
    bot: Arc<Bot>,
    fake: Arc<Fake>,
    url: String,
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
        let fake: Arc<Fake> = Arc::default();
        let (core, bot, url) = runtime.block_on(async {
            let app = axum::Router::new().fallback(rest).with_state(fake.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the fake REST API");
            let url = format!("http://{}", listener.local_addr().expect("its address"));
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
            let config: DiscordConfig = toml::from_str(&format!(
                "token = \"fuzz-token\"\nallowed_users = [{ALLOWED_USER:?}]\n\
                 min_edit_interval_ms = 0\napi_url = {url:?}\n"
            ))
            .expect("discord config");
            let rest = Rest::new(&url, config.token.clone()).expect("a client");
            let sinks = Arc::new(DiscordSinkFactory::new(rest, config.limits()));
            let hub = core.render_hub(SURFACE, &config.command_prefix, sinks.clone());
            let bot = Arc::new(Bot {
                core: core.clone(),
                hub: hub.clone(),
                surface: SurfaceHandle::new(hub),
                allow: Allowlist::from_config(&config),
                prefix: config.command_prefix.clone(),
                sinks,
                http: OnceLock::new(),
                me: OnceLock::new(),
                places: Mutex::default(),
            });
            let http = HttpBuilder::new("fuzz-token")
                .proxy(url.clone())
                .ratelimiter_disabled(true)
                .build();
            let _ = bot.http.set(Arc::new(http));
            let _ = bot.me.set(UserId::new(BOT_ID));
            (core, bot, url)
        });
        Self {
            runtime,
            core,
            bot,
            fake,
            url,
            _dir: dir,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.fake
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn accounts(&self) -> i64 {
        self.runtime
            .block_on(self.core.account_count())
            .expect("accounts")
    }

    /// Waits for every handler and render started, then shuts the core down.
    fn settle(&self) {
        self.runtime.block_on(async {
            self.bot.surface.shutdown().await;
            self.core.shutdown().await;
        });
    }
}

fn fixture(name: &str) -> Value {
    let text = match name {
        "command" => include_str!("../../../tests/fixtures/discord/interaction_command.json"),
        "component" => include_str!("../../../tests/fixtures/discord/interaction_component.json"),
        "message" => include_str!("../../../tests/fixtures/discord/message_create.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("a fixture is JSON")
}

/// A command interaction `/name options…` by `user`, in a DM when `guild` is none.
fn command(name: &str, options: Value, user: &str, token: &str, guild: bool) -> Value {
    let mut c = fixture("command");
    c["data"]["name"] = json!(name);
    c["data"]["options"] = options;
    c["member"]["user"]["id"] = json!(user);
    c["token"] = json!(token);
    if !guild {
        let user = c["member"]["user"].clone();
        c.as_object_mut().map(|o| o.remove("member"));
        c.as_object_mut().map(|o| o.remove("guild_id"));
        c["user"] = user;
    }
    c
}

fn component(custom_id: &str, user: &str, token: &str) -> Value {
    let mut c = fixture("component");
    c["data"]["custom_id"] = json!(custom_id);
    c["member"]["user"]["id"] = json!(user);
    c["token"] = json!(token);
    c
}

fn token() -> String {
    format!("token{}", IDS.fetch_add(1, Ordering::SeqCst))
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
        b"0".to_vec(),
        b"-1".to_vec(),
        b"18446744073709551616".to_vec(),
        "é🎉".as_bytes().to_vec(),
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

/// JSON of any shape, with the field names Discord's payloads use.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "type",
        "id",
        "token",
        "data",
        "name",
        "options",
        "value",
        "custom_id",
        "component_type",
        "values",
        "user",
        "member",
        "roles",
        "guild_id",
        "channel_id",
        "channel",
        "message",
        "content",
        "author",
        "focused",
        "application_id",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(|n| Value::from(n.to_string())),
        prop::sample::select(vec![
            "ask",
            "model",
            "link",
            "resume",
            "chorus:stop",
            "chorus:resume",
            ALLOWED_USER,
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

/// An interaction payload: a documented example with one field replaced by any JSON
/// or its bytes mutated, or any JSON with an interaction's type.
fn interaction_payload() -> impl Strategy<Value = Vec<u8>> {
    let examples = prop::sample::select(vec![
        command(
            "ask",
            json!([{"type": 3, "name": "question", "value": "why?"}]),
            ALLOWED_USER,
            "t",
            true,
        ),
        command(
            "model",
            json!([{"type": 3, "name": "name", "value": "de", "focused": true}]),
            ALLOWED_USER,
            "t",
            false,
        ),
        command("link", json!([]), ALLOWED_USER, "t", false),
        component(Control::Stop.button_id(), ALLOWED_USER, "t"),
        {
            let mut c = component("chorus:resume", ALLOWED_USER, "t");
            c["data"]["component_type"] = json!(3);
            c["data"]["values"] = json!(["nope"]);
            c
        },
        {
            let mut c = command(
                "model",
                json!([{"type": 3, "name": "name", "value": "DE", "focused": true}]),
                ALLOWED_USER,
                "t",
                false,
            );
            c["type"] = json!(4);
            c
        },
    ]);
    let replaced = (
        examples.clone(),
        prop::sample::select(vec![
            "/data/name",
            "/data/options",
            "/data/custom_id",
            "/data/values",
            "/data/component_type",
            "/member/user/id",
            "/member/roles",
            "/channel_id",
            "/guild_id",
            "/type",
            "/message",
            "/data/options/0/value",
            "/data/options/0/type",
            "/token",
        ]),
        json_value(),
    )
        .prop_map(|(mut example, pointer, value)| {
            if let Some(slot) = example.pointer_mut(pointer) {
                *slot = value;
            }
            example.to_string().into_bytes()
        });
    let mutated = (examples, prop::collection::vec(mutation(), 1..4))
        .prop_map(|(example, m)| mutate(example.to_string().as_bytes(), &m));
    let arbitrary = (1u8..6, json_value()).prop_map(|(kind, mut v)| {
        if let Value::Object(o) = &mut v {
            o.insert("type".into(), json!(kind));
        }
        v.to_string().into_bytes()
    });
    prop_oneof![3 => replaced, 2 => mutated, 1 => arbitrary]
}

/// Interactions of any shape (as the gateway would decode them) never panic the bot.
#[test]
fn interactions_of_any_shape_never_panic() {
    let harness = Harness::new();
    let panics = PANICS.load(Ordering::SeqCst);
    let mut runner = TestRunner::new(cases());
    runner
        .run(&interaction_payload(), |payload| {
            if let Ok(interaction) = serde_json::from_slice::<Interaction>(&payload) {
                harness
                    .runtime
                    .block_on(harness.bot.clone().on_interaction(interaction));
            }
            Ok(())
        })
        .expect("every interaction handled");
    harness.settle();
    assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a handler panicked");
}

/// An interaction that is refused.
#[derive(Clone, Debug)]
enum Refused {
    /// A command from someone outside the allowlist.
    Stranger(String, String),
    /// A command the bot does not have.
    UnknownCommand(String),
    /// A button or menu id that is none of the bot's.
    UnknownButton(String),
}

fn refused() -> impl Strategy<Value = Refused> {
    let names = [
        "ask",
        "new",
        "model",
        "stop",
        "continue",
        "regenerate",
        "resume",
        "link",
        "usage",
        "help",
    ];
    prop_oneof![
        (prop::sample::select(names.to_vec()), "[1-9][0-9]{0,18}")
            .prop_filter("not the allowed user", |(_, u)| u != ALLOWED_USER
                && u.parse::<u64>().is_ok())
            .prop_map(|(n, u)| Refused::Stranger(n.to_string(), u)),
        any::<String>()
            .prop_filter("not a command", move |n| !names.contains(&n.as_str()))
            .prop_map(Refused::UnknownCommand),
        prop_oneof![any::<String>(), "chorus:[a-z]{0,12}".prop_map(String::from)]
            .prop_filter("not a button", |id| Control::from_button_id(id).is_none()
                && id != "chorus:resume")
            .prop_map(Refused::UnknownButton),
    ]
}

/// A refused interaction gets exactly one answer, ephemeral and naming why, and
/// nothing else happens: no other call, no account, no run.
#[test]
fn refused_interactions_get_one_private_answer_and_nothing_else() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(cases());
    runner
        .run(&refused(), |refused| {
            let token = token();
            let (payload, why) = match &refused {
                Refused::Stranger(name, user) => (
                    command(name, json!([]), user, &token, true),
                    "not allowed to use this bot",
                ),
                Refused::UnknownCommand(name) => (
                    command(name, json!([]), ALLOWED_USER, &token, true),
                    "I do not know the command",
                ),
                Refused::UnknownButton(id) => (
                    component(id, ALLOWED_USER, &token),
                    "I do not know that button",
                ),
            };
            let interaction: Interaction =
                serde_json::from_value(payload).expect("a valid interaction");
            harness
                .runtime
                .block_on(harness.bot.clone().on_interaction(interaction));
            let calls: Vec<Call> = harness
                .calls()
                .into_iter()
                .filter(|c| c.path.contains(&token))
                .collect();
            prop_assert_eq!(calls.len(), 1, "{:?}", calls);
            let call = &calls[0];
            prop_assert!(call.path.ends_with("/callback"), "{}", call.path);
            prop_assert_eq!(&call.body["type"], &json!(4), "an immediate message");
            prop_assert_eq!(&call.body["data"]["flags"], &json!(64), "ephemeral");
            let content = call.body["data"]["content"].as_str().unwrap_or_default();
            prop_assert!(content.contains(why), "{:?}", content);
            prop_assert!(content.chars().count() <= DISCORD_CONTENT_LIMIT);
            prop_assert_eq!(
                harness.accounts(),
                0,
                "a refused interaction made an account"
            );
            Ok(())
        })
        .expect("every refused interaction answered privately");
    assert_eq!(
        harness.calls().len(),
        harness
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/callback"))
            .count()
    );
    harness.settle();
}

/// Markdown of what questions and replies hold, sometimes far past one message.
fn markdown() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{1,20}",
        Just("\n".to_string()),
        Just("**bold** _it_ `code` <@123> @everyone".to_string()),
        Just("```rust\nfn main() {}\n".to_string()),
        Just("```\n".to_string()),
        Just("~~~\n".to_string()),
        Just("é✓日本語🎉\u{200b}".to_string()),
        "[a-z]{100,400}",
        any::<String>(),
    ];
    (prop::collection::vec(piece, 0..80), 1usize..4)
        .prop_map(|(pieces, times)| pieces.concat().repeat(times))
}

/// The messages' parts keep Discord's promises: each within 2,000 characters, code
/// fences closed except where the text leaves one open, and the text whole when no
/// fence had to be cut open.
fn check_parts(text: &str, parts: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(!parts.is_empty());
    for part in parts {
        prop_assert!(
            part.chars().count() <= DISCORD_CONTENT_LIMIT,
            "{} characters",
            part.chars().count()
        );
    }
    let (last, full) = parts.split_last().expect("one part");
    for part in full {
        prop_assert_eq!(&close_open_fence(part), part, "a part leaves a fence open");
    }
    prop_assert_eq!(
        close_open_fence(last) == *last,
        close_open_fence(text) == text
    );
    if !text.contains("```") && !text.contains("~~~") {
        prop_assert_eq!(parts.concat(), text);
    }
    Ok(())
}

use proptest::test_runner::TestCaseError;

/// Whether a line of `text` that may open a code fence is longer than `bytes`: such a
/// line is cut as text (a known limit of the splitter, kept by core's
/// `an_opening_fence_line_longer_than_a_part_is_cut_as_text`).
fn has_fence_opener_longer_than(text: &str, bytes: usize) -> bool {
    text.split_inclusive('\n').any(|line| {
        let body = line.trim_start_matches(' ');
        line.len() - body.len() <= 3
            && (body.starts_with("```") || body.starts_with("~~~"))
            && line.len() > bytes
    })
}

/// Any question asked with `/ask` is shown back split into the answer and
/// follow-ups, each within Discord's limit, and any reply posted in a channel is
/// split the same way.
#[test]
fn answers_and_replies_of_any_text_fit_discord_whole() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(cases());
    runner
        .run(&markdown(), |text| {
            prop_assume!(!has_fence_opener_longer_than(
                &text,
                DISCORD_CONTENT_LIMIT / 2
            ));
            // A reply posted in a channel, through the sink.
            let channel = 800_000_000_000_000_000u64 + IDS.fetch_add(1, Ordering::SeqCst) as u64;
            harness
                .runtime
                .block_on(harness.bot.hub.reply(&channel.to_string(), &text));
            let posted: Vec<String> = harness
                .calls()
                .into_iter()
                .filter(|c| {
                    c.method == Method::POST && c.path == format!("/channels/{channel}/messages")
                })
                .map(|c| c.body["content"].as_str().unwrap_or_default().to_string())
                .collect();
            check_parts(&text, &posted)?;

            // The question of `/ask`, shown in the interaction's answer (a DM).
            if text.trim().is_empty() {
                return Ok(());
            }
            let token = token();
            let payload = command(
                "ask",
                json!([{"type": 3, "name": "question", "value": text}]),
                ALLOWED_USER,
                &token,
                false,
            );
            let interaction: Interaction =
                serde_json::from_value(payload).expect("a valid interaction");
            harness
                .runtime
                .block_on(harness.bot.clone().on_interaction(interaction));
            let shown: Vec<String> = harness
                .calls()
                .into_iter()
                .filter(|c| c.path.starts_with("/webhooks/") && c.path.contains(&token))
                .map(|c| c.body["content"].as_str().unwrap_or_default().to_string())
                .collect();
            let expected = format!("**Mason** asked: {}", text.trim());
            check_parts(&expected, &shown)?;
            Ok(())
        })
        .expect("every text split within the limit");
    harness.settle();
}

/// A gateway message or reaction of any shape never panics the bot; a message's
/// text for the bot never keeps the bot's mention.
#[test]
fn messages_and_reactions_of_any_shape_never_panic() {
    let harness = Harness::new();
    let panics = PANICS.load(Ordering::SeqCst);
    let mention = format!("<@{BOT_ID}>");
    let example = fixture("message");
    let payload = prop_oneof![
        (markdown(), any::<bool>(), any::<bool>()).prop_map(move |(text, dm, mention_bot)| {
            let mut m = example.clone();
            m["content"] = json!(if mention_bot {
                format!("<@{BOT_ID}> {text}")
            } else {
                text
            });
            m["author"]["id"] = json!(ALLOWED_USER);
            if !dm {
                m["guild_id"] = json!("290926798626357999");
            }
            m.to_string().into_bytes()
        }),
        (
            Just(fixture("message")),
            prop::collection::vec(mutation(), 1..4)
        )
            .prop_map(|(m, muts)| mutate(m.to_string().as_bytes(), &muts)),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    let mut runner = TestRunner::new(cases());
    runner
        .run(&(payload, any::<bool>()), |(payload, as_reaction)| {
            if as_reaction {
                if let Ok(reaction) = serde_json::from_slice::<Reaction>(&payload) {
                    harness
                        .runtime
                        .block_on(harness.bot.clone().on_reaction(reaction));
                }
            } else if let Ok(message) = serde_json::from_slice::<Message>(&payload) {
                let place = Place::DM;
                if let Some(text) =
                    addressing::addressed(&place, false, &message.content, BOT_ID, "!chorus")
                {
                    prop_assert!(!text.contains(&mention), "{:?}", text);
                    prop_assert_eq!(text.trim(), text.as_str());
                }
                harness
                    .runtime
                    .block_on(harness.bot.clone().on_message(message));
            }
            Ok(())
        })
        .expect("every message handled");
    harness.settle();
    assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a handler panicked");
}

/// A REST answer of any status, headers and body.
fn rest_answer() -> impl Strategy<Value = (u16, Vec<(String, String)>, Vec<u8>)> {
    let status = prop_oneof![
        Just(200u16),
        Just(204),
        Just(429),
        Just(400),
        Just(401),
        Just(500),
        Just(502),
        100u16..600,
    ];
    let header = prop_oneof![
        ("retry-after", "[0-9.e+-]{0,12}|inf|NaN|-1|1e309"),
        ("x-ratelimit-reset-after", "[0-9.e+-]{0,12}|inf|NaN|-1"),
        ("content-type", "application/json|text/plain|text/html"),
    ]
    .prop_map(|(k, v)| (k.to_string(), v));
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop_oneof![
            any::<f64>().prop_map(|f| json!(f)),
            any::<i64>().prop_map(Value::from),
            Just(json!("1.5")),
            Just(json!(-3))
        ]
        .prop_map(|r| {
            json!({"message": "You are being rate limited.", "retry_after": r, "global": false})
                .to_string()
                .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    (status, prop::collection::vec(header, 0..3), body)
}

/// Any answer the REST API gives is read without a panic: a 429 is a wait of at most
/// an hour, any other failure names its status, a success without JSON says so.
#[test]
fn rest_answers_of_any_shape_are_read_without_a_panic() {
    let harness = Harness::new();
    let rest = Rest::new(
        &harness.url,
        chorus_model::secret::Secret::new("fuzz-token"),
    )
    .expect("a client");
    let mut runner = TestRunner::new(cases());
    runner
        .run(&rest_answer(), |(status, headers, body)| {
            // 1xx are not final answers; the server cannot send them alone.
            prop_assume!(status >= 200);
            let json_body = serde_json::from_slice::<Value>(&body).is_ok();
            *harness.fake.next.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((status, headers, body.clone()));
            let result = harness.runtime.block_on(rest.call(
                Method::POST,
                "/channels/1/messages",
                Some(&json!({"content": "x"})),
            ));
            match (status, result) {
                (429, Err(SinkError::RateLimited { retry_after })) => {
                    prop_assert!(retry_after.as_secs() <= 3600, "{:?}", retry_after)
                }
                (204, Ok(Value::Null)) => {}
                (s, Ok(_)) => prop_assert!((200..300).contains(&s) && json_body, "{} accepted", s),
                (s, Err(SinkError::Failed(message))) => {
                    prop_assert!(
                        message.starts_with("discord: POST /channels/1/messages"),
                        "{}",
                        message
                    );
                    if (200..300).contains(&s) {
                        prop_assert!(message.contains("bad JSON"), "{}", message);
                    } else {
                        prop_assert!(message.contains(&s.to_string()), "{}", message);
                    }
                }
                (s, other) => prop_assert!(false, "{} gave {:?}", s, other),
            }
            Ok(())
        })
        .expect("every answer read");
    harness.settle();
}

proptest! {
    #![proptest_config(cases())]

    /// Only the kit's exact ids are buttons: any other custom id is none.
    #[test]
    fn only_the_kits_exact_ids_are_buttons(id in prop_oneof![any::<String>(), "chorus:[a-z]{0,12}", "[cC][hH][oO][rR][uU][sS]:(stop|continue|regenerate) ?"]) {
        let known = Control::ALL.into_iter().find(|c| c.button_id() == id);
        prop_assert_eq!(Control::from_button_id(&id), known);
    }

    /// Any slash command invocation parses or is refused with a message naming the
    /// command (at most 40 characters of an unknown name).
    #[test]
    fn any_slash_command_parses_or_names_the_problem(name in any::<String>(), options in json_value()) {
        let options: Vec<serenity::all::CommandDataOption> = serde_json::from_value(options).unwrap_or_default();
        if let Err(e) = crate::commands::parse(&name, &options) {
            let message = e.to_string();
            prop_assert!(message.starts_with('/') || message.contains(" /"), "{}", message);
            prop_assert!(message.chars().count() < 120, "{}", message);
        }
    }
}

/// Autocomplete offers at most 25 models for anything typed.
#[test]
fn autocomplete_offers_at_most_25_models_for_anything_typed() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(cases());
    runner
        .run(&any::<String>(), |typed| {
            let token = token();
            let mut payload = command(
                "model",
                json!([{"type": 3, "name": "name", "value": typed, "focused": true}]),
                ALLOWED_USER,
                &token,
                false,
            );
            payload["type"] = json!(4);
            let interaction: Interaction =
                serde_json::from_value(payload).expect("an autocomplete");
            harness
                .runtime
                .block_on(harness.bot.clone().on_interaction(interaction));
            let calls: Vec<Call> = harness
                .calls()
                .into_iter()
                .filter(|c| c.path.contains(&token))
                .collect();
            prop_assert_eq!(calls.len(), 1, "{:?}", calls);
            prop_assert_eq!(&calls[0].body["type"], &json!(8));
            let choices = calls[0].body["data"]["choices"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            prop_assert!(choices.len() <= 25);
            for c in &choices {
                let name = c["name"].as_str().unwrap_or_default().to_lowercase();
                prop_assert!(
                    name.contains(&typed.to_lowercase()),
                    "{} for {:?}",
                    name,
                    typed
                );
            }
            Ok(())
        })
        .expect("every autocomplete answered");
    harness.settle();
}
