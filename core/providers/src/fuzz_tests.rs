//! Property tests (proptest) of every provider's stream reader, through the provider
//! itself: a replay server on loopback answers each case with a body from the recorded
//! fixtures (`tests/fixtures/KIND/*.http`), cut into the chunks the case chose.
//!
//! - a body cut anywhere gives the same events (and the same error) as in one piece;
//! - a mutated body (bytes flipped, inserted, deleted, spans repeated, cut short) and
//!   random bytes end the stream: events, then at most one error, last; never a panic,
//!   never a hang (the idle timeout is one second).
//!
//! CI runs 32 cases per property; `PROPTEST_CASES=100000` runs more (README, "Fuzzing").

use crate::config::{ProviderConfig, ProviderKind};
use crate::{
    AnthropicProvider, BedrockProvider, ChatMessage, ChatRequest, ChatRole, GeminiProvider,
    OllamaProvider, OpenAiProvider, OpenAiResponsesProvider, Provider,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use chorus_model::secret::Secret;
use futures::StreamExt;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One recorded response: status, content type and body.
#[derive(Clone, Debug)]
struct Fixture {
    name: &'static str,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// What the replay server answers for one case.
struct Case {
    fixture: Fixture,
    chunks: Vec<Vec<u8>>,
}

type Cases = Arc<Mutex<HashMap<u64, Case>>>;

struct Replay {
    url: String,
    cases: Cases,
    next: AtomicU64,
    runtime: tokio::runtime::Runtime,
}

/// The replay server, started once per test process on its own runtime.
fn replay() -> &'static Replay {
    static REPLAY: OnceLock<Replay> = OnceLock::new();
    REPLAY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let cases: Cases = Arc::default();
        let app = axum::Router::new()
            .route("/{id}/{*rest}", axum::routing::any(answer))
            .with_state(cases.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the replay server");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Replay {
            url,
            cases,
            next: AtomicU64::new(1),
            runtime,
        }
    })
}

async fn answer(State(cases): State<Cases>, Path((id, _)): Path<(u64, String)>) -> Response {
    let case = cases.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    let Some(case) = case else {
        return Response::builder()
            .status(404)
            .body(Body::empty())
            .unwrap_or_default();
    };
    // One chunk per poll, each after a yield, so the client reads them apart.
    let chunks = futures::stream::iter(case.chunks).then(|chunk| async move {
        tokio::task::yield_now().await;
        Ok::<_, std::convert::Infallible>(chunk)
    });
    Response::builder()
        .status(case.fixture.status)
        .header("content-type", &case.fixture.content_type)
        .header("retry-after", "1")
        .body(Body::from_stream(chunks))
        .unwrap_or_default()
}

/// The provider kinds whose readers are fuzzed, with their fixture directory.
const KINDS: &[(ProviderKind, &str)] = &[
    (ProviderKind::Openai, "openai"),
    (ProviderKind::Azure, "azure"),
    (ProviderKind::OpenaiResponses, "openai_responses"),
    (ProviderKind::Anthropic, "anthropic"),
    (ProviderKind::Gemini, "gemini"),
    (ProviderKind::Ollama, "ollama"),
    (ProviderKind::Bedrock, "bedrock"),
];

macro_rules! fixtures {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        vec![$(($name, include_str!(concat!("../../../tests/fixtures/", $dir, "/", $name, ".http")))),+]
    };
}

/// Every recorded response of a provider kind, parsed.
fn fixtures(dir: &str) -> Vec<Fixture> {
    let raw: Vec<(&'static str, &'static str)> = match dir {
        "openai" => {
            fixtures!("openai": "reply", "reply_without_usage", "tool_calls", "continuation",
            "content_filter", "midstream_error", "rate_limit", "service_unavailable", "unauthorized")
        }
        "azure" => fixtures!("azure": "reply", "tool_calls", "content_filter", "blocked_prompt",
            "midstream_error", "rate_limit", "unauthorized"),
        "openai_responses" => fixtures!("openai_responses": "reply", "tool_calls", "continuation",
            "content_filter", "failed", "midstream_error", "rate_limit", "unauthorized"),
        "anthropic" => fixtures!("anthropic": "reply", "thinking", "tool_calls", "continuation",
            "content_filter", "midstream_error", "rate_limit", "unauthorized"),
        "gemini" => fixtures!("gemini": "reply", "tool_calls", "content_filter", "blocked_prompt",
            "midstream_error", "rate_limit", "unauthorized"),
        "ollama" => fixtures!("ollama": "reply", "tool_calls", "midstream_error", "rate_limit",
            "unauthorized"),
        "bedrock" => fixtures!("bedrock": "reply", "tool_calls", "continuation", "content_filter",
            "midstream_error", "rate_limit", "throttled", "service_unavailable", "unauthorized"),
        other => panic!("no fixtures for {other}"),
    };
    raw.into_iter()
        .map(|(name, text)| parse_fixture(name, text))
        .collect()
}

/// `HTTP/1.1 STATUS ...`, headers, a blank line, the body (Bedrock's event-stream
/// bodies are recorded as a JSON list of messages and encoded into frames here).
fn parse_fixture(name: &'static str, text: &str) -> Fixture {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map_or_else(
            || "application/json".to_string(),
            |(_, v)| v.trim().to_string(),
        );
    let body = if content_type.contains("eventstream") {
        event_stream_frames(body)
    } else {
        body.as_bytes().to_vec()
    };
    Fixture {
        name,
        status,
        content_type,
        body,
    }
}

/// Encodes `[{"headers": {...}, "payload": {...}}, ...]` as event-stream frames.
fn event_stream_frames(json: &str) -> Vec<u8> {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let messages: Vec<serde_json::Value> = serde_json::from_str(json).expect("a JSON list");
    let mut out = Vec::new();
    for m in messages {
        let mut message = Message::new(bytes::Bytes::from(m["payload"].to_string()));
        for (k, v) in m["headers"].as_object().into_iter().flatten() {
            message = message.add_header(Header::new(
                k.clone(),
                HeaderValue::String(v.as_str().unwrap_or_default().to_string().into()),
            ));
        }
        write_message_to(&message, &mut out).expect("encode a frame");
    }
    out
}

fn provider(kind: ProviderKind, base_url: String) -> Arc<dyn Provider> {
    let mut cfg = ProviderConfig::scripted_demo();
    cfg.id = "fuzz".into();
    cfg.kind = kind;
    cfg.base_url = Some(base_url);
    cfg.api_key = Some(Secret::new("fuzz-key"));
    cfg.secret_key = Some(Secret::new("fuzz-secret"));
    cfg.region = Some("us-east-1".into());
    cfg.models = vec!["m".into()];
    cfg.idle_timeout_secs = 1;
    cfg.connect_timeout_secs = 5;
    match kind {
        ProviderKind::Openai | ProviderKind::Azure => Arc::new(OpenAiProvider::new(&cfg)),
        ProviderKind::OpenaiResponses => Arc::new(OpenAiResponsesProvider::new(&cfg)),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(&cfg)),
        ProviderKind::Gemini => Arc::new(GeminiProvider::new(&cfg)),
        ProviderKind::Ollama => Arc::new(OllamaProvider::new(&cfg)),
        ProviderKind::Bedrock => Arc::new(BedrockProvider::new(&cfg)),
        ProviderKind::Scripted => unreachable!("the scripted provider reads no wire format"),
    }
}

/// What a provider made of one served body: each item of its stream, shown as text
/// (events and errors alike), or the error that refused the stream.
fn read(kind: ProviderKind, fixture: &Fixture, chunks: Vec<Vec<u8>>) -> Vec<String> {
    let replay = replay();
    let id = replay.next.fetch_add(1, Ordering::Relaxed);
    replay
        .cases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id,
            Case {
                fixture: fixture.clone(),
                chunks,
            },
        );
    let provider = provider(kind, format!("{}/{id}", replay.url));
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "hello")],
        ..Default::default()
    };
    replay.runtime.block_on(async move {
        let read = async {
            match provider.stream(request).await {
                Err(e) => vec![format!("refused: {e:?}")],
                Ok(stream) => {
                    stream
                        .map(|item| match item {
                            Ok(event) => format!("{event:?}"),
                            Err(e) => format!("error: {e:?}"),
                        })
                        .collect()
                        .await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: the stream of {} never ended", fixture.name))
    })
}

/// A body cut at the given fractions of its length.
fn cut(body: &[u8], at: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = at.iter().map(|i| i.index(body.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([body.len()]) {
        if p > from {
            chunks.push(body[from..p].to_vec());
            from = p;
        }
    }
    chunks
}

/// One change to a body.
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
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"\n\n".to_vec(),
        b"data: ".to_vec(),
        b"data: [DONE]\n\n".to_vec(),
        b"event: error\n".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"\"".to_vec(),
        b"\\u".to_vec(),
        b":".to_vec(),
        b"null".to_vec(),
        "é✓".as_bytes().to_vec(),
        vec![0xff, 0xfe],
        vec![0],
    ]);
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
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
            Mutation::Flip(i, b) if len > 0 => body[i.index(len)] ^= b | 1,
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

/// Events, then at most one error, and only as the last item.
fn ends_cleanly(items: &[String]) -> bool {
    let errors = items
        .iter()
        .filter(|i| i.starts_with("error: ") || i.starts_with("refused: "))
        .count();
    errors == 0
        || (errors == 1
            && items
                .last()
                .is_some_and(|i| i.starts_with("error: ") || i.starts_with("refused: ")))
}

/// Cases per property: 32 unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 32;
    }
    config
}

fn kind_and_fixture() -> impl Strategy<Value = (ProviderKind, Fixture)> {
    let all: Vec<(ProviderKind, Fixture)> = KINDS
        .iter()
        .flat_map(|(kind, dir)| fixtures(dir).into_iter().map(|f| (*kind, f)))
        .collect();
    prop::sample::select(all)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_body_cut_anywhere_reads_the_same(
        (kind, fixture) in kind_and_fixture(),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let whole = read(kind, &fixture, vec![fixture.body.clone()]);
        let pieces = read(kind, &fixture, cut(&fixture.body, &at));
        prop_assert_eq!(whole, pieces, "{:?} {}", kind, fixture.name);
    }

    #[test]
    fn a_mutated_body_ends_the_stream_cleanly(
        (kind, fixture) in kind_and_fixture(),
        mutations in prop::collection::vec(mutation(), 1..6),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let body = mutate(&fixture.body, &mutations);
        let items = read(kind, &fixture, cut(&body, &at));
        prop_assert!(ends_cleanly(&items), "{:?} {}: {:?}", kind, fixture.name, items);
    }

    #[test]
    fn random_bytes_end_the_stream_cleanly(
        (kind, fixture) in kind_and_fixture(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let items = read(kind, &fixture, cut(&body, &at));
        prop_assert!(ends_cleanly(&items), "{:?}: {:?}", kind, items);
    }
}

/// The fixtures themselves read as recorded, so the properties start from real
/// transcripts (a fixture the reader refused would make the mutations meaningless).
#[test]
fn every_successful_fixture_reads_to_events() {
    for (kind, dir) in KINDS {
        for fixture in fixtures(dir).into_iter().filter(|f| f.status == 200) {
            let items = read(*kind, &fixture, vec![fixture.body.clone()]);
            assert!(
                items
                    .iter()
                    .any(|i| !i.starts_with("error") && !i.starts_with("refused")),
                "{kind:?} {}: {items:?}",
                fixture.name
            );
        }
    }
}
