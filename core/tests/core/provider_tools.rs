//! Tool calls through Anthropic, Gemini and Ollama, end to end over HTTP: each provider
//! (built from config, as Chorus builds it) talks to a local server that replays the
//! provider's documented streaming wire format for the same logical reply — a
//! sentence, then two parallel tool calls — cut into small chunks at arbitrary bytes.
//! The normalized events must be the same for all three.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::Response;
use axum::routing::post;
use chorus_core::config::ProviderConfig;
use chorus_providers::{
    ChatMessage, ChatRequest, ChatRole, ProviderEvent, ProviderRegistry, ToolCall, ToolChoice,
    ToolSpec, Usage,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// Anthropic Messages streaming: the text block, then two `tool_use` blocks whose
/// input comes as `input_json_delta` fragments cut mid-token.
const ANTHROPIC_SSE: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01A","name":"weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ty\": \"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01B","name":"time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"tz\": \"Europe/"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"Paris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// Gemini `streamGenerateContent?alt=sse`: whole `functionCall` parts, finish STOP.
const GEMINI_SSE: &str = r#"data: {"candidates": [{"content": {"parts": [{"text": "Checking."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 40,"totalTokenCount": 40},"modelVersion": "gemini-2.5-flash"}

data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "weather","args": {"city": "Paris"}},"thoughtSignature": "CiQB0e2Kb"},{"functionCall": {"name": "time","args": {"tz": "Europe/Paris"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 40,"candidatesTokenCount": 30,"totalTokenCount": 70},"modelVersion": "gemini-2.5-flash"}

"#;

/// Ollama `/api/chat` NDJSON: the tool calls arrive whole in one line, `done_reason`
/// stays `stop`.
const OLLAMA_NDJSON: &str = concat!(
    r#"{"model":"qwen3","created_at":"2025-05-27T22:54:57.1Z","message":{"role":"assistant","content":"Checking."},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2025-05-27T22:54:58.1Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Paris"}}},{"function":{"name":"time","arguments":{"tz":"Europe/Paris"}}}]},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","created_at":"2025-05-27T22:54:58.2Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1,"prompt_eval_count":40,"eval_count":30}"#,
    "\n",
);

/// The request bodies the server received, by path.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// The body in 7-byte pieces, so events and lines (and UTF-8) are cut anywhere.
fn chunked(text: &'static str, content_type: &'static str) -> Response {
    let chunks: Vec<Result<Bytes, Infallible>> = text
        .as_bytes()
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

async fn replay(State(seen): State<Seen>, uri: Uri, body: String) -> Response {
    let path = uri.path().to_string();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((path.clone(), json));
    if path == "/v1/messages" {
        chunked(ANTHROPIC_SSE, "text/event-stream")
    } else if path.starts_with("/v1beta/models/") {
        chunked(GEMINI_SSE, "text/event-stream")
    } else {
        chunked(OLLAMA_NDJSON, "application/x-ndjson")
    }
}

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/messages", post(replay))
        .route("/v1beta/models/{*rest}", post(replay))
        .route("/api/chat", post(replay))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn config(id: &str, base_url: &str, model: &str) -> ProviderConfig {
    serde_json::from_value(json!({
        "id": id,
        "kind": id,
        "base_url": base_url,
        "api_key": "test-key",
        "models": [model],
    }))
    .unwrap()
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Use the tools."),
            ChatMessage::text(ChatRole::User, "Weather and time in Paris?"),
        ],
        tools: vec![
            ToolSpec {
                name: "weather".into(),
                description: "Current weather of a city".into(),
                parameters: json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": false,
                }),
            },
            ToolSpec {
                name: "time".into(),
                description: "Local time of a time zone".into(),
                parameters: json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
            },
        ],
        tool_choice: Some(ToolChoice::Auto),
        ..Default::default()
    }
}

/// The events of one provider's reply, with its call ids replaced by their position
/// (providers that have ids use their own; the rest are generated).
async fn run(registry: &ProviderRegistry, model_ref: &str) -> (Vec<ProviderEvent>, Vec<String>) {
    let (provider, model) = registry.resolve(model_ref).unwrap();
    let stream = provider.stream(request(&model)).await.unwrap();
    let events: Vec<ProviderEvent> = stream.map(Result::unwrap).collect().await;
    let mut ids = Vec::new();
    let normalized = events
        .into_iter()
        .map(|e| match e {
            ProviderEvent::ToolCall(mut call) => {
                ids.push(std::mem::replace(&mut call.id, format!("#{}", ids.len())));
                ProviderEvent::ToolCall(call)
            }
            other => other,
        })
        .collect();
    (normalized, ids)
}

#[tokio::test]
async fn parallel_tool_calls_are_the_same_events_from_every_provider() {
    let (base, seen) = server().await;
    let registry = ProviderRegistry::from_config(
        &[
            config("anthropic", &base, "claude-sonnet-4-5"),
            config("gemini", &base, "gemini-2.5-flash"),
            config("ollama", &base, "qwen3"),
        ],
        None,
    );
    let expected = vec![
        ProviderEvent::Text("Checking.".into()),
        ProviderEvent::ToolCall(ToolCall {
            id: "#0".into(),
            name: "weather".into(),
            arguments: json!({"city": "Paris"}),
        }),
        ProviderEvent::ToolCall(ToolCall {
            id: "#1".into(),
            name: "time".into(),
            arguments: json!({"tz": "Europe/Paris"}),
        }),
        ProviderEvent::Usage(Usage {
            prompt_tokens: 40,
            completion_tokens: 30,
            estimated: false,
            ..Default::default()
        }),
        ProviderEvent::Finished("tool_calls".into()),
    ];
    let (anthropic, anthropic_ids) = run(&registry, "anthropic/claude-sonnet-4-5").await;
    let (gemini, gemini_ids) = run(&registry, "gemini/gemini-2.5-flash").await;
    let (ollama, ollama_ids) = run(&registry, "ollama/qwen3").await;
    assert_eq!(anthropic, expected, "anthropic");
    assert_eq!(gemini, expected, "gemini");
    assert_eq!(ollama, expected, "ollama");
    assert_eq!(anthropic_ids, ["toolu_01A", "toolu_01B"]);
    assert_eq!(gemini_ids, ["call_0", "call_1"]);
    assert_eq!(ollama_ids, ["call_0", "call_1"]);

    // Each provider offered the tools in its own format.
    let seen = seen.lock().unwrap();
    let body = |prefix: &str| {
        seen.iter()
            .find(|(path, _)| path.starts_with(prefix))
            .map(|(_, body)| body.clone())
            .unwrap_or_else(|| panic!("no request to {prefix}"))
    };
    let anthropic = body("/v1/messages");
    assert_eq!(anthropic["tools"][0]["name"], "weather");
    assert_eq!(
        anthropic["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(anthropic["tool_choice"], json!({"type": "auto"}));
    let gemini = body("/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(
        gemini["tools"][0]["functionDeclarations"][0],
        json!({
            "name": "weather",
            "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }),
        "unsupported JSON Schema keywords are stripped"
    );
    assert_eq!(
        gemini["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    let ollama = body("/api/chat");
    assert_eq!(ollama["tools"][1]["type"], "function");
    assert_eq!(ollama["tools"][1]["function"]["name"], "time");
    assert!(ollama.get("tool_choice").is_none());
}
