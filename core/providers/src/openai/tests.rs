//! Unit tests of the openai provider's request bodies and stream parsing.
use super::*;
use crate::ToolSpec;

fn parse_chunk(data: &str, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
    ChunkParser::default().chunk(data, out)
}

/// Feeds `chunks` (then `[DONE]`) through one parser; all events, or the first error.
fn parse_all(chunks: &[Value]) -> Result<Vec<ProviderEvent>, ProviderError> {
    let mut parser = ChunkParser::default();
    let mut out = VecDeque::new();
    for c in chunks {
        parser.chunk(&c.to_string(), &mut out)?;
    }
    parser.end(&mut out)?;
    Ok(Vec::from(out))
}

fn tool_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": args}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
}

fn finish(reason: &str) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

fn config(kind: ProviderKind) -> ProviderConfig {
    let mut cfg = crate::config::ProviderConfig::scripted_demo();
    cfg.kind = kind;
    cfg
}

#[test]
fn chunks_parse_into_events() {
    let mut out = VecDeque::new();
    parse_chunk(
        r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
        &mut out,
    )
    .unwrap();
    parse_chunk(
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        &mut out,
    )
    .unwrap();
    parse_chunk(
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        Vec::from(out),
        vec![
            ProviderEvent::Text("Hel".into()),
            ProviderEvent::Finished("stop".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 9,
                completion_tokens: 2,
                estimated: false,
                ..Default::default()
            }),
        ]
    );
}

#[test]
fn usage_details_give_cached_and_reasoning_tokens() {
    let mut out = VecDeque::new();
    parse_chunk(
        r#"{"id":"c2","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}}"#,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        Vec::from(out),
        vec![ProviderEvent::Usage(Usage {
            prompt_tokens: 2006,
            completion_tokens: 300,
            cached_prompt_tokens: 1920,
            reasoning_tokens: 256,
            estimated: false,
        })]
    );
}

#[test]
fn errors_are_classified() {
    let mut out = VecDeque::new();
    let err = parse_chunk(
        r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Upstream);
    assert_eq!(err.message, "overloaded");
    assert_eq!(
        parse_chunk("{not json", &mut out).unwrap_err().kind,
        ProviderErrorKind::Protocol
    );
    assert!(ProviderError::new(status_kind(429), "").is_retryable());
    assert!(ProviderError::new(status_kind(503), "").is_retryable());
    assert!(!ProviderError::new(status_kind(401), "").is_retryable());
    assert!(!ProviderError::new(status_kind(400), "").is_retryable());
    assert_eq!(
        error_message(429, r#"{"error":{"message":"Rate limit reached"}}"#),
        "HTTP 429: Rate limit reached"
    );
    assert_eq!(
        content_filter_message(r#"{"error":{"message":"Rate limit reached"}}"#),
        None
    );
}

#[test]
fn continuation_appends_partial_and_instruction() {
    let mut cfg = crate::config::ProviderConfig::scripted_demo();
    cfg.params.insert("seed".into(), json!(7));
    let body = OpenAiProvider::new(&cfg).body(&ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: "hi".into(),
            ..Default::default()
        }],
        prefill: Some("Hello, wor".into()),
        ..Default::default()
    });
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], "Hello, wor");
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["seed"], 7, "configured params pass through");
}

#[test]
fn body_carries_tools_choice_and_tool_history() {
    let provider = OpenAiProvider::new(&config(ProviderKind::Openai));
    let weather =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let mut request = ChatRequest {
        model: "gpt-4o".into(),
        messages: vec![
            ChatMessage::text(ChatRole::User, "Weather in Paris and Rome?"),
            ChatMessage {
                role: ChatRole::Assistant,
                tool_calls: vec![
                    ToolCall {
                        id: "call_a".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Paris"}),
                    },
                    ToolCall {
                        id: "call_b".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Rome"}),
                    },
                ],
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "18°C".into(),
                tool_call_id: Some("call_a".into()),
                tool_name: Some("get_weather".into()),
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "error: timeout".into(),
                tool_call_id: Some("call_b".into()),
                tool_name: Some("get_weather".into()),
                is_error: true,
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: "Let me check.".into(),
                tool_calls: vec![ToolCall {
                    id: "call_c".into(),
                    name: "now".into(),
                    arguments: json!({}),
                }],
                ..Default::default()
            },
        ],
        tools: vec![
            ToolSpec {
                name: "get_weather".into(),
                description: "Current weather of a city".into(),
                parameters: weather.clone(),
            },
            ToolSpec {
                name: "now".into(),
                description: "The time".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
        ],
        tool_choice: Some(ToolChoice::Tool("get_weather".into())),
        ..Default::default()
    };
    let body = provider.body(&request);
    assert_eq!(
        body["tools"][0],
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city", "parameters": weather}})
    );
    assert_eq!(body["tools"][1]["function"]["name"], "now");
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert!(body.get("parallel_tool_calls").is_none());
    let m = body["messages"].as_array().unwrap();
    assert_eq!(m.len(), 5);
    assert_eq!(
        m[1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
        ]})
    );
    assert_eq!(
        m[2],
        json!({"role": "tool", "tool_call_id": "call_a", "content": "18°C"})
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "call_b", "content": "error: timeout"})
    );
    assert_eq!(m[4]["content"], "Let me check.");
    assert_eq!(m[4]["tool_calls"][0]["function"]["arguments"], "{}");

    for (choice, wire) in [
        (ToolChoice::Auto, json!("auto")),
        (ToolChoice::None, json!("none")),
        (ToolChoice::Required, json!("required")),
    ] {
        request.tool_choice = Some(choice);
        assert_eq!(provider.body(&request)["tool_choice"], wire);
    }
    request.tool_choice = None;
    assert!(provider.body(&request).get("tool_choice").is_none());
    request.tools.clear();
    request.tool_choice = Some(ToolChoice::Required);
    let body = provider.body(&request);
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
}

#[test]
fn parallel_interleaved_calls_assemble_in_index_order() {
    let events = parse_all(&[
        tool_delta(0, Some("call_paris"), Some("get_weather"), ""),
        tool_delta(0, None, None, "{\"ci"),
        tool_delta(1, Some("call_rome"), Some("get_weather"), ""),
        tool_delta(1, None, None, "{\"city\": \"R"),
        tool_delta(0, None, None, "ty\": \"Par"),
        tool_delta(1, None, None, "ome\"}"),
        tool_delta(0, None, None, "is\"}"),
        finish("tool_calls"),
        json!({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 40}}),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::ToolCall(ToolCall {
                id: "call_paris".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
            ProviderEvent::ToolCall(ToolCall {
                id: "call_rome".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Rome"}),
            }),
            ProviderEvent::Finished("tool_calls".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 80,
                completion_tokens: 40,
                estimated: false,
                ..Default::default()
            }),
        ]
    );
}

#[test]
fn empty_arguments_are_an_empty_object_and_legacy_reasons_map() {
    let events = parse_all(&[
        tool_delta(0, Some("call_1"), Some("now"), ""),
        finish("function_call"),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "now".into(),
                arguments: json!({}),
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
    // A compatible server that ends a tool call with `stop`, or only with [DONE].
    let events = parse_all(&[tool_delta(0, Some("c"), Some("now"), "{}"), finish("stop")]).unwrap();
    assert_eq!(events[1], ProviderEvent::Finished("tool_calls".into()));
    let events = parse_all(&[tool_delta(0, Some("c"), Some("now"), "{}")]).unwrap();
    assert!(matches!(events[0], ProviderEvent::ToolCall(_)));
    assert_eq!(events[1], ProviderEvent::Finished("tool_calls".into()));
}

#[test]
fn malformed_arguments_are_a_protocol_error_naming_the_tool() {
    let err = parse_all(&[
        tool_delta(0, Some("call_1"), Some("get_weather"), "{\"city\": "),
        tool_delta(0, None, None, "Paris}"),
        finish("tool_calls"),
    ])
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol);
    assert!(err.message.contains("get_weather"), "{}", err.message);
}

#[test]
fn text_and_tool_call_in_one_reply() {
    let text = |t: &str| json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": t}, "finish_reason": null}]});
    let events = parse_all(&[
        text("Let me"),
        text(" look."),
        tool_delta(0, Some("call_x"), Some("search"), "{\"q\":\"rust\"}"),
        finish("tool_calls"),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Text("Let me".into()),
            ProviderEvent::Text(" look.".into()),
            ProviderEvent::ToolCall(ToolCall {
                id: "call_x".into(),
                name: "search".into(),
                arguments: json!({"q": "rust"}),
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
}

#[test]
fn azure_url_auth_body_and_filter_chunks() {
    let mut cfg = config(ProviderKind::Azure);
    cfg.base_url = Some("https://res.openai.azure.com/".into());
    let provider = OpenAiProvider::new(&cfg);
    assert_eq!(
        provider.url("gpt-4o prod").unwrap().as_str(),
        "https://res.openai.azure.com/openai/deployments/gpt-4o%20prod/chat/completions?api-version=2024-10-21"
    );
    cfg.base_url = Some("https://res.openai.azure.com/openai".into());
    cfg.api_version = Some("2025-01-01-preview".into());
    assert_eq!(
        OpenAiProvider::new(&cfg).url("d").unwrap().as_str(),
        "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-01-01-preview"
    );
    let body = provider.body(&ChatRequest {
        model: "d".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "hi")],
        ..Default::default()
    });
    assert!(body.get("model").is_none(), "{body}");
    let openai = OpenAiProvider::new(&config(ProviderKind::Openai));
    assert_eq!(
        openai.url("m").unwrap().as_str(),
        "https://api.openai.com/v1/chat/completions"
    );

    let events = parse_all(&[
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "Once"}, "finish_reason": null, "content_filter_results": {}}]}),
        json!({"choices": [{"index": 0, "finish_reason": null, "content_filter_offsets": {"check_offset": 0}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter", "content_filter_results": {"violence": {"filtered": true, "severity": "medium"}}}], "usage": null}),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Text("Once".into()),
            ProviderEvent::Finished("content_filter".into()),
        ]
    );

    let refusal = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"medium"},"sexual":{"filtered":false,"severity":"safe"}}}}}"#;
    let message = content_filter_message(refusal).unwrap();
    assert!(
        message.starts_with(
            "the request was blocked by Azure's content filter: The response was filtered"
        ) && message.ends_with("[filtered: hate (medium)]"),
        "{message}"
    );
}

#[test]
fn a_whole_reply_is_asked_for_without_streaming() {
    let provider = OpenAiProvider::new(&config(ProviderKind::Openai));
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "hi")],
        whole_reply: true,
        ..Default::default()
    };
    let body = provider.body(&request);
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none(), "{body}");
    let streamed = provider.body(&ChatRequest {
        whole_reply: false,
        ..request
    });
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["stream_options"]["include_usage"], true);
}

#[test]
fn a_whole_completion_gives_the_events_of_its_stream() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {
            "role": "assistant", "reasoning_content": "Think.", "content": "Hello there.",
        }, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 1}},
    });
    let events = Vec::from(whole_completion(&body.to_string()).unwrap());
    assert_eq!(
        events,
        vec![
            ProviderEvent::Reasoning("Think.".into()),
            ProviderEvent::Text("Hello there.".into()),
            ProviderEvent::Finished("stop".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                cached_prompt_tokens: 4,
                reasoning_tokens: 1,
                estimated: false,
            }),
        ]
    );
}

#[test]
fn a_whole_completion_s_tool_calls_come_whole_and_in_order() {
    let call = |id: &str, city: &str| {
        json!({"id": id, "type": "function",
            "function": {"name": "weather", "arguments": json!({"city": city}).to_string()}})
    };
    let body = json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [call("call_1", "Oslo"), call("call_2", "Rome")]},
            "finish_reason": "tool_calls"}],
    });
    let events = Vec::from(whole_completion(&body.to_string()).unwrap());
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::ToolCall(c) => Some((c.id.as_str(), c.arguments["city"].clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        vec![("call_1", json!("Oslo")), ("call_2", json!("Rome"))]
    );
    assert_eq!(
        events.last(),
        Some(&ProviderEvent::Finished("tool_calls".into()))
    );
    let err = whole_completion("data: {\"choices\": []}").unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol, "{err}");
}
