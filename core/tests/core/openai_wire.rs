//! The OpenAI Chat Completions provider over real HTTP: a local axum server replays a
//! stream shaped like OpenAI's (two parallel tool calls whose fragments interleave and
//! whose arguments are split mid-token, with SSE frames themselves split across
//! writes), and the provider must turn it into exactly the expected events. The same
//! stream through the Azure dialect checks its URL, `api-version` and `api-key`. A
//! request for a whole reply goes without streaming, and the same reply as one
//! `chat.completion` gives the same events, its text in one piece.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chorus_core::config::Config;
use chorus_providers::{
    ChatMessage, ChatRequest, ChatRole, ProviderEvent, ProviderRegistry, ToolCall, ToolChoice,
    ToolSpec, Usage,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake saw of one request: path, query, headers and body.
type Seen = Arc<Mutex<Vec<(String, Option<String>, HeaderMap, Value)>>>;

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-AbC123",
        "object": "chat.completion.chunk",
        "created": 1_730_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_45c6de4934",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
}

fn call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut function = json!({"arguments": arguments});
    if let Some(name) = name {
        function["name"] = json!(name);
    }
    let mut call = json!({"index": index, "function": function});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    chunk(json!({"tool_calls": [call]}), Value::Null)
}

/// The recorded-shape reply: a sentence, then two `get_weather` calls streamed in
/// parallel, then `finish_reason: tool_calls`, the usage chunk and `[DONE]`.
fn frames() -> Vec<String> {
    let mut chunks = vec![
        // Azure's first chunk: no choices, the prompt's filter results.
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                   "hate": {"filtered": false, "severity": "safe"}}}]}),
        chunk(
            json!({"role": "assistant", "content": "Checking both", "refusal": null}),
            Value::Null,
        ),
        chunk(json!({"content": " cities."}), Value::Null),
        call(0, Some("call_Paris9x"), Some("get_weather"), ""),
        call(0, None, None, "{\"lo"),
        call(1, Some("call_Rome7y"), Some("get_weather"), ""),
        call(0, None, None, "cation\": \"Pa"),
        call(1, None, None, "{\"location\""),
        call(1, None, None, ": \"Rome\", \"unit\": \"c"),
        call(0, None, None, "ris\", \"unit\": "),
        call(1, None, None, "elsius\"}"),
        call(0, None, None, "\"celsius\"}"),
        chunk(json!({}), json!("tool_calls")),
    ];
    chunks.push(json!({
        "id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1_730_000_000,
        "model": "gpt-4o-2024-08-06", "choices": [],
        "usage": {"prompt_tokens": 85, "completion_tokens": 61, "total_tokens": 146},
    }));
    let mut frames: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    frames.push("data: [DONE]\n\n".into());
    frames
}

/// The same reply, not streamed: one `chat.completion`, as OpenAI answers `stream:
/// false`.
fn whole() -> Value {
    let weather = |id: &str, city: &str| {
        json!({"id": id, "type": "function", "function": {"name": "get_weather",
            "arguments": format!("{{\"location\": \"{city}\", \"unit\": \"celsius\"}}")}})
    };
    json!({
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1_730_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_45c6de4934",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking both cities.",
                "refusal": null,
                "tool_calls": [weather("call_Paris9x", "Paris"), weather("call_Rome7y", "Rome")],
            },
            "logprobs": null,
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 85, "completion_tokens": 61, "total_tokens": 146},
    })
}

async fn completions(
    State(seen): State<Seen>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = body["stream"] == true;
    seen.lock()
        .unwrap()
        .push((uri.path().to_string(), query, headers, body));
    if !streaming {
        // In two writes, so the client reads the whole body before parsing it.
        let text = whole().to_string();
        let (a, b) = text.split_at(text.len() / 2);
        let pieces = [Bytes::from(a.to_string()), Bytes::from(b.to_string())];
        let stream = futures::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, Infallible>(piece)
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    // Every frame goes out in two writes, cut in the middle, so the client has to
    // reassemble SSE events as well as tool-call fragments.
    let pieces: Vec<Bytes> = frames()
        .into_iter()
        .flat_map(|f| {
            let cut = f.len() / 2;
            let cut = (cut..f.len())
                .find(|&i| f.is_char_boundary(i))
                .unwrap_or(cut);
            [
                Bytes::from(f[..cut].to_string()),
                Bytes::from(f[cut..].to_string()),
            ]
        })
        .collect();
    let stream = futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, Infallible>(piece)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn start_fake() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(completions),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen, task)
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![ChatMessage::text(
            ChatRole::User,
            "What's the weather in Paris and Rome?",
        )],
        tools: vec![ToolSpec {
            name: "get_weather".into(),
            description: "Current weather of a location".into(),
            parameters: json!({"type": "object", "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            }, "required": ["location"]}),
        }],
        tool_choice: Some(ToolChoice::Auto),
        ..Default::default()
    }
}

fn expected_events() -> Vec<ProviderEvent> {
    vec![
        ProviderEvent::Text("Checking both".into()),
        ProviderEvent::Text(" cities.".into()),
        ProviderEvent::ToolCall(ToolCall {
            id: "call_Paris9x".into(),
            name: "get_weather".into(),
            arguments: json!({"location": "Paris", "unit": "celsius"}),
        }),
        ProviderEvent::ToolCall(ToolCall {
            id: "call_Rome7y".into(),
            name: "get_weather".into(),
            arguments: json!({"location": "Rome", "unit": "celsius"}),
        }),
        ProviderEvent::Finished("tool_calls".into()),
        ProviderEvent::Usage(Usage {
            prompt_tokens: 85,
            completion_tokens: 61,
            estimated: false,
            ..Default::default()
        }),
    ]
}

async fn run(config_toml: &str, model_ref: &str) -> Vec<ProviderEvent> {
    run_request(config_toml, model_ref, false).await
}

async fn run_request(config_toml: &str, model_ref: &str, whole_reply: bool) -> Vec<ProviderEvent> {
    let config = Config::from_toml(config_toml, &BTreeMap::new()).expect("valid config");
    let registry = ProviderRegistry::from_config(&config.providers, None);
    let (provider, model) = registry.resolve(model_ref).expect("known model");
    let stream = provider
        .stream(ChatRequest {
            whole_reply,
            ..request(&model)
        })
        .await
        .expect("stream starts");
    tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("no provider error")
}

#[tokio::test]
async fn parallel_tool_calls_stream_into_ordered_events() {
    let (url, seen, task) = start_fake().await;
    let events = run(
        &format!(
            "[[providers]]\nid = \"oai\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n\
             api_key = \"sk-wire\"\nmodels = [\"gpt-4o\"]\n"
        ),
        "oai/gpt-4o",
    )
    .await;
    assert_eq!(events, expected_events());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (path, _, headers, body) = &seen[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(headers[header::AUTHORIZATION], "Bearer sk-wire");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["stream"], true);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    task.abort();
}

#[tokio::test]
async fn azure_dialect_uses_the_deployment_url_and_api_key() {
    let (url, seen, task) = start_fake().await;
    let events = run(
        &format!(
            "[[providers]]\nid = \"az\"\nkind = \"azure\"\nbase_url = \"{url}\"\n\
             api_key = \"az-wire\"\napi_version = \"2024-10-21\"\nmodels = [\"gpt4o-prod\"]\n"
        ),
        "az/gpt4o-prod",
    )
    .await;
    assert_eq!(events, expected_events());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (path, query, headers, body) = &seen[0];
    assert_eq!(path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(headers["api-key"], "az-wire");
    assert!(headers.get(header::AUTHORIZATION).is_none());
    assert!(body.get("model").is_none(), "{body}");
    task.abort();
}

#[tokio::test]
async fn a_whole_reply_is_asked_for_without_streaming_and_gives_the_same_events() {
    let (url, seen, task) = start_fake().await;
    let events = run_request(
        &format!(
            "[[providers]]\nid = \"oai\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n\
             api_key = \"sk-wire\"\nmodels = [\"gpt-4o\"]\n"
        ),
        "oai/gpt-4o",
        true,
    )
    .await;
    // The same events as the stream's, the text in one piece.
    let mut expected = expected_events();
    expected.splice(..2, [ProviderEvent::Text("Checking both cities.".into())]);
    assert_eq!(events, expected);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let body = &seen[0].3;
    assert_eq!(body["stream"], false, "{body}");
    assert!(body.get("stream_options").is_none(), "{body}");
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    task.abort();
}
