//! Unit tests of the gemini provider's request bodies and stream parsing.
use super::*;
use crate::{ChatMessage, ToolSpec};

fn provider(params: Value) -> GeminiProvider {
    let mut cfg = crate::config::ProviderConfig::scripted_demo();
    cfg.params = params.as_object().cloned().unwrap_or_default();
    GeminiProvider::new(&cfg)
}

fn msg(role: ChatRole, content: &str) -> ChatMessage {
    ChatMessage::text(role, content)
}

fn parse_all(chunks: &[&str]) -> Result<Vec<ProviderEvent>, ProviderError> {
    let mut turn = Turn::default();
    let mut out = VecDeque::new();
    for c in chunks {
        parse_chunk(c, &mut turn, &mut out)?;
    }
    turn.close(&mut out)?;
    Ok(Vec::from(out))
}

#[test]
fn body_has_system_instruction_merged_turns_and_generation_config() {
    let body = provider(json!({})).body(&ChatRequest {
        model: "gemini-2.5-flash".into(),
        messages: vec![
            msg(ChatRole::System, "Be brief."),
            msg(ChatRole::User, "one"),
            msg(ChatRole::User, "two"),
            msg(ChatRole::Assistant, "ok"),
            msg(ChatRole::System, "Answer in French."),
            msg(ChatRole::User, "three"),
        ],
        temperature: Some(0.5),
        top_p: Some(0.9),
        max_output_tokens: Some(100),
        stop: vec!["a", "b", "c", "d", "e", "f", "g"]
            .into_iter()
            .map(String::from)
            .collect(),
        ..Default::default()
    });
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]})
    );
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "three"}]},
        ])
    );
    let config = &body["generationConfig"];
    assert_eq!(config["temperature"], 0.5);
    assert_eq!(config["topP"], json!(0.9f32));
    assert_eq!(config["maxOutputTokens"], 100);
    assert_eq!(
        config["stopSequences"],
        json!(["a", "b", "c", "d", "e"]),
        "clamped to five"
    );
    assert!(config.get("thinkingConfig").is_none());
}

#[test]
fn body_without_options_has_no_generation_config() {
    let body = provider(json!({})).body(&ChatRequest {
        model: "m".into(),
        messages: vec![msg(ChatRole::User, "hi")],
        ..Default::default()
    });
    assert!(body.get("generationConfig").is_none(), "{body}");
    assert!(body.get("systemInstruction").is_none(), "{body}");
}

#[test]
fn reasoning_effort_sets_a_thinking_budget() {
    for (effort, budget) in [("low", 1024), ("medium", 8192), ("high", 24576)] {
        let body = provider(json!({})).body(&ChatRequest {
            model: "m".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            reasoning_effort: Some(effort.into()),
            ..Default::default()
        });
        assert_eq!(
            body["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": budget, "includeThoughts": true})
        );
    }
}

#[test]
fn params_merge_into_the_body() {
    let body = provider(json!({
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"topK": 40},
    }))
    .body(&ChatRequest {
        model: "m".into(),
        messages: vec![msg(ChatRole::User, "hi")],
        temperature: Some(1.0),
        ..Default::default()
    });
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 1.0, "topK": 40})
    );
    assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
}

#[test]
fn continuation_adds_the_partial_as_a_model_turn_and_an_instruction() {
    let body = provider(json!({})).body(&ChatRequest {
        model: "m".into(),
        messages: vec![msg(ChatRole::User, "hi")],
        prefill: Some("Hello, wor".into()),
        ..Default::default()
    });
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3);
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"text": "Hello, wor"}]})
    );
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(contents[2]["parts"][0]["text"], CONTINUE_INSTRUCTION);
}

#[test]
fn url_names_the_model_and_asks_for_sse() {
    let p = provider(json!({}));
    assert_eq!(
        p.url("gemini-2.5-flash"),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(p.url("models/gemini-2.5-flash"), p.url("gemini-2.5-flash"));
}

#[test]
fn chunks_parse_into_text_thoughts_usage_and_finish() {
    let events = parse_all(&[
        r#"{"candidates":[{"content":{"parts":[{"text":"Let me think.","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":12,"totalTokenCount":12},"modelVersion":"gemini-2.5-flash"}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1,"thoughtsTokenCount":30,"totalTokenCount":43}}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"lo."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2,"thoughtsTokenCount":30,"cachedContentTokenCount":4,"totalTokenCount":44}}"#,
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Reasoning("Let me think.".into()),
            ProviderEvent::Text("Hel".into()),
            ProviderEvent::Text("lo.".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 32,
                estimated: false,
                cached_prompt_tokens: 4,
                reasoning_tokens: 30,
            }),
            ProviderEvent::Finished("stop".into()),
        ]
    );
}

#[test]
fn finish_reasons_are_normalized() {
    for (raw, normalized) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
        ("OTHER", "other"),
    ] {
        assert_eq!(finish_reason(raw), normalized);
    }
}

#[test]
fn a_safety_stop_keeps_the_text_and_finishes_with_content_filter() {
    let events = parse_all(&[
        r#"{"candidates":[{"content":{"parts":[{"text":"Some text"}],"role":"model"},"index":0}]}"#,
        r#"{"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2,"totalTokenCount":7}}"#,
    ])
    .unwrap();
    assert_eq!(events[0], ProviderEvent::Text("Some text".into()));
    assert_eq!(
        events.last(),
        Some(&ProviderEvent::Finished("content_filter".into()))
    );
}

#[test]
fn a_blocked_prompt_finishes_with_content_filter_and_no_text() {
    let events = parse_all(&[
        r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"HIGH"}]},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#,
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Usage(Usage {
                prompt_tokens: 8,
                completion_tokens: 0,
                estimated: false,
                ..Default::default()
            }),
            ProviderEvent::Finished("content_filter".into()),
        ]
    );
}

#[test]
fn a_stream_without_finish_reason_is_an_error() {
    let err = parse_all(&[
        r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}]}"#,
    ])
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Connect);
    assert!(err.is_retryable());
}

#[test]
fn malformed_and_error_chunks_are_errors() {
    let mut turn = Turn::default();
    let mut out = VecDeque::new();
    assert_eq!(
        parse_chunk("{not json", &mut turn, &mut out)
            .unwrap_err()
            .kind,
        ProviderErrorKind::Protocol
    );
    assert_eq!(
        parse_chunk(r#"{"candidates":"nope"}"#, &mut turn, &mut out)
            .unwrap_err()
            .kind,
        ProviderErrorKind::Protocol
    );
    let err = parse_chunk(
        r#"{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}"#,
        &mut turn,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Upstream);
    assert_eq!(err.message, "An internal error has occurred.");
}

#[test]
fn http_errors_are_classified() {
    let body = r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}"#;
    let err = http_error(429, body, None);
    assert_eq!(err.kind, ProviderErrorKind::RateLimited);
    assert_eq!(
        err.message,
        "HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota."
    );
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(
        http_error(429, body, Some(Duration::from_secs(3))).retry_after,
        Some(Duration::from_secs(3)),
        "the header wins"
    );
    let cases = [
        (400, "INVALID_ARGUMENT", ProviderErrorKind::BadRequest),
        (401, "UNAUTHENTICATED", ProviderErrorKind::Auth),
        (403, "PERMISSION_DENIED", ProviderErrorKind::Auth),
        (404, "NOT_FOUND", ProviderErrorKind::BadRequest),
        (500, "INTERNAL", ProviderErrorKind::Server),
        (503, "UNAVAILABLE", ProviderErrorKind::Server),
    ];
    for (code, status, kind) in cases {
        let body = format!(r#"{{"error":{{"code":{code},"message":"m","status":"{status}"}}}}"#);
        let err = http_error(code, &body, None);
        assert_eq!(err.kind, kind, "{code}");
        assert_eq!(err.message, format!("HTTP {code} {status}: m"));
    }
    // A wrong key: 400 INVALID_ARGUMENT with the reason API_KEY_INVALID.
    let err = http_error(
        400,
        r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        None,
    );
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert!(err.message.contains("API key not valid"), "{}", err.message);
    // The array form streaming endpoints use without alt=sse, and a non-JSON body.
    let err = http_error(
        503,
        r#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#,
        None,
    );
    assert_eq!(
        err.message,
        "HTTP 503 UNAVAILABLE: The model is overloaded."
    );
    assert!(err.is_retryable());
    assert_eq!(
        http_error(502, "Bad Gateway", None).message,
        "HTTP 502: Bad Gateway"
    );
}

fn tool(name: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("{name} things"),
        parameters,
    }
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

#[test]
fn tools_are_function_declarations_and_choice_is_a_tool_config() {
    let mut req = ChatRequest {
        model: "m".into(),
        messages: vec![msg(ChatRole::User, "hi")],
        tools: vec![
            tool(
                "weather",
                json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            ),
            tool("now", json!({"type": "object", "properties": {}})),
        ],
        ..Default::default()
    };
    let body = provider(json!({})).body(&req);
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [
            {"name": "weather", "description": "weather things", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "description": "now things"},
        ]}])
    );
    assert!(body.get("toolConfig").is_none());
    for (choice, config) in [
        (ToolChoice::Auto, json!({"mode": "AUTO"})),
        (ToolChoice::None, json!({"mode": "NONE"})),
        (ToolChoice::Required, json!({"mode": "ANY"})),
        (
            ToolChoice::Tool("weather".into()),
            json!({"mode": "ANY", "allowedFunctionNames": ["weather"]}),
        ),
    ] {
        req.tool_choice = Some(choice);
        assert_eq!(
            provider(json!({})).body(&req)["toolConfig"],
            json!({"functionCallingConfig": config})
        );
    }
}

#[test]
fn json_schema_is_reduced_to_the_openapi_subset() {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "city": {"type": "string", "description": "City", "minLength": 1},
            "unit": {"const": "celsius"},
            "note": {"type": ["string", "null"]},
            "additionalProperties": {"type": "boolean", "examples": [true]},
            "home": {"$ref": "#/$defs/Place", "description": "Where you live"},
            "visits": {"type": "array", "items": {"$ref": "#/$defs/Place"}},
            "either": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]},
        },
        "required": ["city"],
        "$defs": {
            "Place": {"type": "object", "additionalProperties": false, "properties": {"name": {"type": "string"}}}
        }
    });
    assert_eq!(
        gemini_schema("t", &schema),
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City", "minLength": 1},
                "unit": {"enum": ["celsius"]},
                "note": {"type": "string", "nullable": true},
                "additionalProperties": {"type": "boolean"},
                "home": {"type": "object", "properties": {"name": {"type": "string"}}, "description": "Where you live"},
                "visits": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
            "required": ["city"],
        })
    );
    // A recursive schema stops inlining, an unknown reference becomes an object.
    let recursive = json!({
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}, "x": {"$ref": "other.json"}},
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}}
    });
    let out = gemini_schema("t", &recursive);
    assert_eq!(out["properties"]["x"], json!({"type": "object"}));
    let mut depth = 0;
    let mut node = &out["properties"]["node"];
    while let Some(child) = node.pointer("/properties/child") {
        node = child;
        depth += 1;
    }
    assert_eq!(depth, MAX_REF_DEPTH);
}

#[test]
fn history_with_parallel_calls_and_results_uses_function_parts() {
    let tool_result = |id: &str, name: Option<&str>, content: &str, is_error: bool| ChatMessage {
        role: ChatRole::Tool,
        content: content.into(),
        tool_call_id: Some(id.into()),
        tool_name: name.map(String::from),
        is_error,
        ..Default::default()
    };
    let body = provider(json!({})).body(&ChatRequest {
        model: "m".into(),
        messages: vec![
            msg(ChatRole::User, "Weather and time in Paris?"),
            ChatMessage {
                role: ChatRole::Assistant,
                content: "Checking.".into(),
                tool_calls: vec![
                    call("call_0", "weather", json!({"city": "Paris"})),
                    call("call_1", "time", Value::Null),
                ],
                ..Default::default()
            },
            tool_result("call_0", Some("weather"), "18°C", false),
            // No tool name: found through the call id.
            tool_result("call_1", None, "clock broke", true),
            msg(ChatRole::User, "Thanks."),
        ],
        ..Default::default()
    });
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
            {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"id": "call_0", "name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "call_1", "name": "time", "args": {}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "call_0", "name": "weather", "response": {"output": "18°C"}}},
                {"functionResponse": {"id": "call_1", "name": "time", "response": {"error": "clock broke"}}},
                {"text": "Thanks."},
            ]},
        ])
    );
}

#[test]
fn two_function_call_parts_become_two_calls_and_finish_with_tool_calls() {
    let events = parse_all(&[
        r#"{"candidates":[{"content":{"parts":[{"text":"Checking."}],"role":"model"},"index":0}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},{"functionCall":{"name":"time","args":{}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":30,"totalTokenCount":70}}"#,
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Text("Checking.".into()),
            ProviderEvent::ToolCall(call("call_0", "weather", json!({"city": "Paris"}))),
            ProviderEvent::ToolCall(call("call_1", "time", json!({}))),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 40,
                completion_tokens: 30,
                estimated: false,
                ..Default::default()
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
    // An id from the API is kept; no args is `{}`.
    let events = parse_all(&[
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"id":"fc-9","name":"now"}}],"role":"model"},"finishReason":"STOP"}]}"#,
    ])
    .unwrap();
    assert_eq!(
        events[0],
        ProviderEvent::ToolCall(call("fc-9", "now", json!({})))
    );
}

#[test]
fn malformed_function_args_are_a_protocol_error_naming_the_tool() {
    let mut turn = Turn::default();
    let mut out = VecDeque::new();
    let err = parse_chunk(
        r#"{"candidates":[{"content":{"parts":[{"text":"x"},{"functionCall":{"name":"weather","args":[1,2]}}]}}]}"#,
        &mut turn,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol);
    assert!(err.message.contains("\"weather\""), "{}", err.message);
    assert!(out.is_empty(), "a failed chunk queues nothing");
    let err = parse_chunk(
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"time","args":"{not json"}}]}}]}"#,
        &mut turn,
        &mut out,
    )
    .unwrap_err();
    assert!(err.message.contains("\"time\""), "{}", err.message);
}
