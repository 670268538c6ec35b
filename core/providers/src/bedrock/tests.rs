use super::events::{self, EventParser};
use super::*;
use crate::{ProviderEvent, ToolCall, ToolSpec, Usage};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use std::collections::VecDeque;

fn config() -> ProviderConfig {
    serde_json::from_value(json!({
        "id": "bedrock",
        "kind": "bedrock",
        "region": "eu-west-3",
        "api_key": "AKIDEXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "models": ["anthropic.claude-3-5-sonnet-20240620-v1:0"],
    }))
    .unwrap()
}

fn provider() -> BedrockProvider {
    BedrockProvider::with_env(&config(), |_| None)
}

fn string_header(name: &str, value: &str) -> Header {
    Header::new(
        name.to_string(),
        HeaderValue::String(value.to_string().into()),
    )
}

/// One event-stream frame of an event.
fn event_frame(kind: &str, payload: Value) -> Vec<u8> {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(string_header(":message-type", "event"))
        .add_header(string_header(":event-type", kind))
        .add_header(string_header(":content-type", "application/json"));
    let mut buf = Vec::new();
    write_message_to(&message, &mut buf).unwrap();
    buf
}

fn exception_frame(kind: &str, message: &str) -> Vec<u8> {
    let message = Message::new(Bytes::from(json!({"message": message}).to_string()))
        .add_header(string_header(":message-type", "exception"))
        .add_header(string_header(":exception-type", kind))
        .add_header(string_header(":content-type", "application/json"));
    let mut buf = Vec::new();
    write_message_to(&message, &mut buf).unwrap();
    buf
}

fn text_delta(index: u64, text: &str) -> Vec<u8> {
    event_frame(
        "contentBlockDelta",
        json!({"contentBlockIndex": index, "delta": {"text": text}, "p": "abc"}),
    )
}

fn stop_and_usage(reason: &str, input: u64, output: u64) -> Vec<Vec<u8>> {
    vec![
        event_frame("messageStop", json!({"stopReason": reason})),
        event_frame(
            "metadata",
            json!({"usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output}, "metrics": {"latencyMs": 12}}),
        ),
    ]
}

/// Every result of the provider stream over `chunks` of body bytes.
async fn run(chunks: Vec<Vec<u8>>) -> Vec<Result<ProviderEvent, ProviderError>> {
    let bytes = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
    events::stream(bytes.boxed(), Duration::from_secs(5))
        .collect()
        .await
}

fn ok(results: Vec<Result<ProviderEvent, ProviderError>>) -> Vec<ProviderEvent> {
    results.into_iter().map(Result::unwrap).collect()
}

#[tokio::test]
async fn text_reply_with_usage_then_finished() {
    let mut frames = vec![
        event_frame("messageStart", json!({"role": "assistant"})),
        event_frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {}}),
        ),
        text_delta(0, "Hel"),
        text_delta(0, "lo"),
        event_frame("contentBlockStop", json!({"contentBlockIndex": 0})),
    ];
    frames.extend(stop_and_usage("end_turn", 12, 3));
    assert_eq!(
        ok(run(frames).await),
        vec![
            ProviderEvent::Text("Hel".into()),
            ProviderEvent::Text("lo".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 3,
                estimated: false,
                ..Default::default()
            }),
            ProviderEvent::Finished("stop".into()),
        ]
    );
}

#[tokio::test]
async fn cache_tokens_count_as_prompt_tokens() {
    let frames = vec![
        text_delta(0, "x"),
        event_frame("messageStop", json!({"stopReason": "end_turn"})),
        event_frame(
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 1, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}}),
        ),
    ];
    let events = ok(run(frames).await);
    assert_eq!(
        events[1],
        ProviderEvent::Usage(Usage {
            prompt_tokens: 125,
            completion_tokens: 1,
            estimated: false,
            cached_prompt_tokens: 100,
            reasoning_tokens: 0,
        })
    );
}

#[tokio::test]
async fn reasoning_streams_as_reasoning() {
    let mut frames = vec![
        event_frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Think"}}}),
        ),
        event_frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ),
        text_delta(1, "Answer"),
    ];
    frames.extend(stop_and_usage("end_turn", 1, 2));
    let events = ok(run(frames).await);
    assert_eq!(events[0], ProviderEvent::Reasoning("Think".into()));
    assert_eq!(events[1], ProviderEvent::Text("Answer".into()));
}

#[tokio::test]
async fn tool_use_input_is_assembled_from_fragments() {
    let mut frames = vec![
        text_delta(0, "Let me look."),
        event_frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}}}),
        ),
        event_frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"ci"}}}),
        ),
        event_frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "ty\": \"Paris\"}"}}}),
        ),
        event_frame("contentBlockStop", json!({"contentBlockIndex": 1})),
    ];
    frames.extend(stop_and_usage("tool_use", 30, 20));
    let events = ok(run(frames).await);
    assert_eq!(
        events,
        vec![
            ProviderEvent::Text("Let me look.".into()),
            ProviderEvent::ToolCall(ToolCall {
                id: "tooluse_1".into(),
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 30,
                completion_tokens: 20,
                estimated: false,
                ..Default::default()
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
}

#[test]
fn stop_reasons_are_normalized() {
    for (bedrock, ours) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        assert_eq!(events::finish_reason(bedrock), ours);
    }
}

#[tokio::test]
async fn exceptions_map_to_error_kinds() {
    for (name, kind) in [
        ("throttlingException", ProviderErrorKind::RateLimited),
        ("modelStreamErrorException", ProviderErrorKind::Server),
        ("internalServerException", ProviderErrorKind::Server),
        ("serviceUnavailableException", ProviderErrorKind::Server),
        ("validationException", ProviderErrorKind::BadRequest),
    ] {
        let results = run(vec![
            text_delta(0, "partial"),
            exception_frame(name, "it broke"),
        ])
        .await;
        assert_eq!(results.len(), 2, "{name}");
        assert_eq!(
            results[0].as_ref().unwrap(),
            &ProviderEvent::Text("partial".into())
        );
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(err.kind, kind, "{name}");
        assert_eq!(err.message, format!("{name}: it broke"));
    }
}

#[tokio::test]
async fn frames_split_across_chunks_decode() {
    let mut all = Vec::new();
    all.extend(text_delta(0, "ünï✓ split"));
    all.extend(text_delta(0, " again"));
    for f in stop_and_usage("max_tokens", 4, 5) {
        all.extend(f);
    }
    // Chunks of 7 bytes cut preludes, headers, payloads and CRCs.
    let chunks: Vec<Vec<u8>> = all.chunks(7).map(<[u8]>::to_vec).collect();
    let events = ok(run(chunks).await);
    assert_eq!(
        events,
        vec![
            ProviderEvent::Text("ünï✓ split".into()),
            ProviderEvent::Text(" again".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 5,
                estimated: false,
                ..Default::default()
            }),
            ProviderEvent::Finished("length".into()),
        ]
    );
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_a_connect_error() {
    let results = run(vec![text_delta(0, "half")]).await;
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[1].as_ref().unwrap_err().kind,
        ProviderErrorKind::Connect
    );
}

#[tokio::test]
async fn a_corrupt_frame_is_a_protocol_error() {
    // A flipped bit in the message CRC (the last 4 bytes), in the payload, in the
    // prelude's headers length and in the prelude CRC: each frame after a good one.
    let good = text_delta(0, "fine");
    let flip = |at: fn(usize) -> usize| {
        let mut frame = text_delta(0, "x");
        let i = at(frame.len());
        frame[i] ^= 0x01;
        frame
    };
    for (what, corrupt) in [
        ("message crc", flip(|len| len - 1)),
        ("payload", flip(|len| len - 6)),
        ("headers length", flip(|_| 7)),
        ("prelude crc", flip(|_| 9)),
    ] {
        let results = run(vec![good.clone(), corrupt]).await;
        assert_eq!(
            results[0].as_ref().ok(),
            Some(&ProviderEvent::Text("fine".into())),
            "{what}: the good frame before it still streams"
        );
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Protocol, "{what}");
        assert!(
            err.message.starts_with("malformed event-stream frame:")
                && err.message.contains("checksum"),
            "{what}: {}",
            err.message
        );
        assert_eq!(results.len(), 2, "{what}: nothing after the error");
    }
}

#[test]
fn parser_ignores_unknown_events() {
    let mut parser = EventParser::default();
    let mut out = VecDeque::new();
    let message = Message::new(Bytes::from("{}"))
        .add_header(string_header(":message-type", "event"))
        .add_header(string_header(":event-type", "somethingNew"));
    parser.message(&message, &mut out).unwrap();
    assert!(out.is_empty());
}

fn tool_request() -> ChatRequest {
    ChatRequest {
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Be brief."),
            ChatMessage::text(ChatRole::User, "Weather in Paris?"),
            ChatMessage {
                role: ChatRole::Assistant,
                content: "Checking.".into(),
                tool_calls: vec![ToolCall {
                    id: "tooluse_a".into(),
                    name: "weather".into(),
                    arguments: json!({"city": "Paris"}),
                }],
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "18°C".into(),
                tool_call_id: Some("tooluse_a".into()),
                tool_name: Some("weather".into()),
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "no such tool".into(),
                tool_call_id: Some("tooluse_b".into()),
                tool_name: Some("time".into()),
                is_error: true,
                ..Default::default()
            },
            ChatMessage::text(ChatRole::User, "Thanks"),
        ],
        temperature: Some(0.5),
        top_p: Some(0.9),
        max_output_tokens: Some(256),
        stop: vec!["END".into()],
        tools: vec![ToolSpec {
            name: "weather".into(),
            description: "Weather of a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        tool_choice: Some(ToolChoice::Required),
        ..Default::default()
    }
}

#[test]
fn body_has_roles_system_inference_config_and_tools() {
    let mut cfg = config();
    cfg.params = json!({"top_k": 40}).as_object().unwrap().clone();
    let p = BedrockProvider::with_env(&cfg, |_| None);
    let body = p.body(&tool_request());
    assert_eq!(
        body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Paris?"}]},
                {"role": "assistant", "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tooluse_a", "name": "weather", "input": {"city": "Paris"}}},
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "18°C"}], "status": "success"}},
                    {"toolResult": {"toolUseId": "tooluse_b", "content": [{"text": "no such tool"}], "status": "error"}},
                    {"text": "Thanks"},
                ]},
            ],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.5, "topP": 0.8999999761581421, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "weather", "description": "Weather of a city", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                "toolChoice": {"any": {}},
            },
            "additionalModelRequestFields": {"top_k": 40},
        })
    );
}

#[test]
fn tool_choices_map_and_none_drops_the_tools() {
    let mut request = tool_request();
    request.messages.truncate(2);
    request.tool_choice = Some(ToolChoice::Tool("weather".into()));
    assert_eq!(
        build_body(&request, &Default::default())["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "weather"}})
    );
    request.tool_choice = Some(ToolChoice::Auto);
    assert_eq!(
        build_body(&request, &Default::default())["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    request.tool_choice = Some(ToolChoice::None);
    let body = build_body(&request, &Default::default());
    assert!(body.get("toolConfig").is_none(), "{body}");
    assert!(body.get("additionalModelRequestFields").is_none());
}

#[test]
fn tool_history_without_tools_goes_as_text() {
    let mut request = tool_request();
    request.tools.clear();
    let body = build_body(&request, &Default::default());
    assert!(body.get("toolConfig").is_none());
    let text = body["messages"].to_string();
    assert!(
        !text.contains("toolUse") && !text.contains("toolResult"),
        "{text}"
    );
    assert!(
        text.contains("[called tool weather with {\\\"city\\\":\\\"Paris\\\"}]"),
        "{text}"
    );
}

#[test]
fn continuation_is_explicit() {
    let request = ChatRequest {
        model: "amazon.nova-pro-v1:0".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "Count")],
        prefill: Some("One, two,".into()),
        ..Default::default()
    };
    let body = build_body(&request, &Default::default());
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "Count"}]},
            {"role": "assistant", "content": [{"text": "One, two,"}]},
            {"role": "user", "content": [{"text": CONTINUE_INSTRUCTION}]},
        ])
    );
    assert!(body.get("inferenceConfig").is_none());
}

#[test]
fn url_encodes_the_model_id_and_defaults_to_the_region_endpoint() {
    let p = provider();
    assert_eq!(
        p.url("us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
        "https://bedrock-runtime.eu-west-3.amazonaws.com/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    let mut cfg = config();
    cfg.base_url = Some("http://127.0.0.1:9/".into());
    let p = BedrockProvider::with_env(&cfg, |_| None);
    assert_eq!(
        p.url("arn:aws:bedrock:x/y"),
        "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Ax%2Fy/converse-stream"
    );
}

#[test]
fn signed_request_carries_sigv4_headers() {
    let p = provider();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
    let url = p.url("amazon.nova-pro-v1:0");
    let headers = p.signature_headers(&url, b"{}", time).unwrap();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let auth = get("authorization").unwrap();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
        ),
        "{auth}"
    );
    assert_eq!(get("x-amz-date"), Some("20231114T221320Z"));
    assert_eq!(get("x-amz-security-token"), None);
    // Deterministic: the same inputs sign the same.
    assert_eq!(p.signature_headers(&url, b"{}", time).unwrap(), headers);
    assert_ne!(p.signature_headers(&url, b"{ }", time).unwrap(), headers);

    let mut cfg = config();
    cfg.session_token = Some(Secret::new("TOKEN123"));
    let p = BedrockProvider::with_env(&cfg, |_| None);
    let headers = p.signature_headers(&url, b"{}", time).unwrap();
    let token = headers.iter().find(|(k, _)| k == "x-amz-security-token");
    assert_eq!(token.map(|(_, v)| v.as_str()), Some("TOKEN123"));
    let auth = &headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1;
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
}

#[test]
fn credentials_fall_back_to_the_environment() {
    let mut cfg = config();
    cfg.api_key = None;
    cfg.secret_key = None;
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIDENV".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("secretenv".to_string()),
        "AWS_SESSION_TOKEN" => Some("tokenenv".to_string()),
        _ => None,
    };
    let keys = resolve_keys(&cfg, env).unwrap();
    assert_eq!(keys.access_key_id, "AKIDENV");
    assert_eq!(keys.secret_access_key.expose(), "secretenv");
    assert_eq!(keys.session_token.unwrap().expose(), "tokenenv");

    let p = BedrockProvider::with_env(&cfg, |_| None);
    let err = p
        .signature_headers("http://x/model/m/converse-stream", b"", SystemTime::now())
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert!(err.message.contains("AWS_ACCESS_KEY_ID"), "{}", err.message);
}

#[test]
fn http_errors_carry_aws_messages() {
    let err = http_error(
        403,
        Some("InvalidSignatureException"),
        r#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
    );
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert_eq!(
        err.message,
        "HTTP 403 InvalidSignatureException: The request signature we calculated does not match the signature you provided."
    );
    assert_eq!(
        http_error(429, None, r#"{"message":"Too many requests"}"#).kind,
        ProviderErrorKind::RateLimited
    );
    assert_eq!(
        http_error(400, None, "{}").kind,
        ProviderErrorKind::BadRequest
    );
    assert_eq!(http_error(503, None, "").kind, ProviderErrorKind::Server);
    assert_eq!(http_error(424, None, "").kind, ProviderErrorKind::Server);
}
