//! Unit tests of the openai_responses provider's request bodies and stream parsing.
use super::*;
use crate::ToolSpec;

fn provider(params: Value) -> OpenAiResponsesProvider {
    let mut cfg = crate::config::ProviderConfig::scripted_demo();
    cfg.kind = crate::config::ProviderKind::OpenaiResponses;
    cfg.params = params.as_object().cloned().unwrap_or_default();
    OpenAiResponsesProvider::new(&cfg)
}

fn parse_all(events: &[&str]) -> Result<Vec<ProviderEvent>, ProviderError> {
    let mut parser = Parser::default();
    let mut out = VecDeque::new();
    for e in events {
        parser.parse(e, &mut out)?;
    }
    Ok(Vec::from(out))
}

fn completed(input: u64, output: u64) -> String {
    json!({"type": "response.completed", "sequence_number": 99, "response": {
        "id": "resp_1", "object": "response", "status": "completed",
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": input + output,
        }
    }})
    .to_string()
}

#[test]
fn body_carries_instructions_history_tools_and_params() {
    let p = provider(json!({"seed": 7, "reasoning": {"summary": "detailed"}}));
    let body = p.body(&ChatRequest {
        model: "gpt-5-mini".into(),
        messages: vec![
            ChatMessage::text(ChatRole::System, "Be terse."),
            ChatMessage::text(ChatRole::User, "Weather in Paris and Rome?"),
            ChatMessage {
                role: ChatRole::Assistant,
                content: "Checking.".into(),
                tool_calls: vec![
                    ToolCall {
                        id: "call_1".into(),
                        name: "weather".into(),
                        arguments: json!({"city": "Paris"}),
                    },
                    ToolCall {
                        id: "call_2".into(),
                        name: "weather".into(),
                        arguments: json!({"city": "Rome"}),
                    },
                ],
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "18C".into(),
                tool_call_id: Some("call_1".into()),
                tool_name: Some("weather".into()),
                ..Default::default()
            },
            ChatMessage {
                role: ChatRole::Tool,
                content: "unavailable".into(),
                tool_call_id: Some("call_2".into()),
                tool_name: Some("weather".into()),
                is_error: true,
                ..Default::default()
            },
        ],
        temperature: Some(0.5),
        top_p: Some(0.9),
        max_output_tokens: Some(300),
        stop: vec!["END".into()],
        reasoning_effort: Some("low".into()),
        tools: vec![ToolSpec {
            name: "weather".into(),
            description: "Current weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        tool_choice: Some(ToolChoice::Tool("weather".into())),
        ..Default::default()
    });
    assert_eq!(body["model"], "gpt-5-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["store"], false);
    assert_eq!(body["instructions"], "Be terse.");
    assert_eq!(
        body["input"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_2", "output": "unavailable"},
        ])
    );
    assert_eq!(body["temperature"], 0.5);
    assert!((body["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(body["max_output_tokens"], 300);
    assert!(body.get("stop").is_none(), "stop sequences are dropped");
    assert!(body.get("max_tokens").is_none());
    assert_eq!(
        body["reasoning"],
        json!({"effort": "low", "summary": "detailed"}),
        "configured params merge over the normalized fields"
    );
    assert_eq!(body["seed"], 7);
    assert_eq!(
        body["tools"],
        json!([{
            "type": "function",
            "name": "weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": false,
        }])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "name": "weather"})
    );
}

#[test]
fn body_tool_choices_and_plain_requests() {
    let p = provider(json!({}));
    let tools = vec![ToolSpec {
        name: "t".into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
    }];
    for (choice, expected) in [
        (ToolChoice::Auto, json!("auto")),
        (ToolChoice::None, json!("none")),
        (ToolChoice::Required, json!("required")),
    ] {
        let body = p.body(&ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::text(ChatRole::User, "hi")],
            tools: tools.clone(),
            tool_choice: Some(choice),
            ..Default::default()
        });
        assert_eq!(body["tool_choice"], expected);
    }
    let body = p.body(&ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "hi")],
        tool_choice: Some(ToolChoice::Required),
        ..Default::default()
    });
    for absent in [
        "instructions",
        "tools",
        "tool_choice",
        "reasoning",
        "temperature",
    ] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
}

#[test]
fn continuation_appends_partial_and_instruction() {
    let body = provider(json!({})).body(&ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::text(ChatRole::User, "hi")],
        prefill: Some("Hello, wor".into()),
        ..Default::default()
    });
    let input = body["input"].as_array().unwrap();
    assert_eq!(input.len(), 3);
    assert_eq!(
        input[1],
        json!({"role": "assistant", "content": "Hello, wor"})
    );
    assert_eq!(input[2]["role"], "user");
    assert_eq!(input[2]["content"], CONTINUE_INSTRUCTION);
}

#[test]
fn text_reasoning_and_usage() {
    let events = parse_all(&[
        r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}"#,
        r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1"}}"#,
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}"#,
        r#"{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}"#,
        r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Thinking"}"#,
        r#"{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":""}}"#,
        r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":1,"delta":"More"}"#,
        r#"{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}"#,
        r#"{"type":"response.content_part.added","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":""}}"#,
        r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hel"}"#,
        r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"lo"}"#,
        r#"{"type":"response.output_text.done","item_id":"msg_1","output_index":1,"content_index":0,"text":"Hello"}"#,
        r#"{"type":"response.output_item.done","output_index":1,"item":{"id":"msg_1","type":"message"}}"#,
        &completed(40, 12),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Reasoning("Thinking".into()),
            ProviderEvent::Reasoning("\n\n".into()),
            ProviderEvent::Reasoning("More".into()),
            ProviderEvent::Text("Hel".into()),
            ProviderEvent::Text("lo".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 40,
                completion_tokens: 12,
                estimated: false,
                cached_prompt_tokens: 3,
                reasoning_tokens: 2,
            }),
            ProviderEvent::Finished("stop".into()),
        ]
    );
    let mut parser = Parser::default();
    assert!(
        parser
            .parse(&completed(1, 1), &mut VecDeque::new())
            .unwrap(),
        "completed ends the response"
    );
}

#[test]
fn incomplete_reasons_map() {
    for (reason, expected) in [
        ("max_output_tokens", "length"),
        ("content_filter", "content_filter"),
    ] {
        let event = json!({"type": "response.incomplete", "response": {
            "status": "incomplete",
            "incomplete_details": {"reason": reason},
            "usage": {"input_tokens": 5, "output_tokens": 16},
        }})
        .to_string();
        let events = parse_all(&[
            r#"{"type":"response.output_text.delta","delta":"x"}"#,
            &event,
        ])
        .unwrap();
        assert_eq!(
            events.last(),
            Some(&ProviderEvent::Finished(expected.into()))
        );
        assert!(events.contains(&ProviderEvent::Usage(Usage {
            prompt_tokens: 5,
            completion_tokens: 16,
            estimated: false,
            ..Default::default()
        })));
    }
}

#[test]
fn function_call_arguments_assemble_across_deltas() {
    let events = parse_all(&[
        r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","call_id":"call_A","name":"weather","arguments":""}}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"{\"ci"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"ty\":\"Par"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"is\"}"}"#,
        r#"{"type":"response.function_call_arguments.done","item_id":"fc_1","output_index":0,"arguments":"{\"city\":\"Paris\"}"}"#,
        r#"{"type":"response.output_item.done","output_index":0,"item":{"id":"fc_1","type":"function_call","status":"completed","call_id":"call_A","name":"weather","arguments":"{\"city\":\"Paris\"}"}}"#,
        &completed(10, 20),
    ])
    .unwrap();
    assert_eq!(
        events[0],
        ProviderEvent::ToolCall(ToolCall {
            id: "call_A".into(),
            name: "weather".into(),
            arguments: json!({"city": "Paris"}),
        })
    );
    assert_eq!(
        events.last(),
        Some(&ProviderEvent::Finished("tool_calls".into()))
    );

    // Without `.done` events the deltas alone make the arguments.
    let events = parse_all(&[
        r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"call_A","name":"weather","arguments":""}}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"{\"city\":"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"\"Oslo\"}"}"#,
        &completed(1, 1),
    ])
    .unwrap();
    assert_eq!(
        events[0],
        ProviderEvent::ToolCall(ToolCall {
            id: "call_A".into(),
            name: "weather".into(),
            arguments: json!({"city": "Oslo"}),
        })
    );
}

#[test]
fn two_parallel_calls_keep_their_arguments_apart() {
    let events = parse_all(&[
        r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"call_A","name":"weather","arguments":""}}"#,
        r#"{"type":"response.output_item.added","output_index":1,"item":{"id":"fc_2","type":"function_call","call_id":"call_B","name":"time","arguments":""}}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_2","output_index":1,"delta":"{\"tz\":"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"{\"city\":"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":0,"delta":"\"Rome\"}"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"fc_2","output_index":1,"delta":"\"UTC\"}"}"#,
        r#"{"type":"response.output_item.done","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"call_A","name":"weather"}}"#,
        r#"{"type":"response.output_item.done","output_index":1,"item":{"id":"fc_2","type":"function_call","call_id":"call_B","name":"time"}}"#,
        &completed(3, 4),
    ])
    .unwrap();
    assert_eq!(
        &events[..2],
        &[
            ProviderEvent::ToolCall(ToolCall {
                id: "call_A".into(),
                name: "weather".into(),
                arguments: json!({"city": "Rome"}),
            }),
            ProviderEvent::ToolCall(ToolCall {
                id: "call_B".into(),
                name: "time".into(),
                arguments: json!({"tz": "UTC"}),
            }),
        ]
    );
    assert_eq!(events.len(), 4, "{events:?}");
}

#[test]
fn failures_are_classified() {
    let failed = |code: &str| {
        json!({"type": "response.failed", "response": {
            "status": "failed",
            "error": {"code": code, "message": "went wrong"},
        }})
        .to_string()
    };
    let err = parse_all(&[&failed("server_error")]).unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Server);
    assert_eq!(err.message, "went wrong");
    assert!(err.is_retryable());
    assert_eq!(
        parse_all(&[&failed("rate_limit_exceeded")])
            .unwrap_err()
            .kind,
        ProviderErrorKind::RateLimited
    );
    assert_eq!(
        parse_all(&[&failed("invalid_prompt")]).unwrap_err().kind,
        ProviderErrorKind::Upstream
    );
    let err = parse_all(&[
        r#"{"type":"error","code":"server_error","message":"The server had an error.","param":null,"sequence_number":4}"#,
    ])
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Server);
    assert_eq!(err.message, "The server had an error.");
    let err = parse_all(&[r#"{"type":"error","code":null,"message":"odd"}"#]).unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Upstream);
    assert_eq!(err.message, "odd");
}

#[test]
fn malformed_events_are_protocol_errors() {
    for bad in [
        "{not json",
        r#"{"no":"type"}"#,
        r#"{"type":"response.function_call_arguments.delta","item_id":"nope","delta":"{"}"#,
    ] {
        assert_eq!(
            parse_all(&[bad]).unwrap_err().kind,
            ProviderErrorKind::Protocol,
            "{bad}"
        );
    }
    let err = parse_all(&[
        r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"t","arguments":""}}"#,
        r#"{"type":"response.output_item.done","output_index":0,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"t","arguments":"{oops"}}"#,
    ])
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol);
}

#[test]
fn http_errors_carry_the_message() {
    assert_eq!(
        error_message(429, r#"{"error":{"message":"Rate limit reached"}}"#),
        "HTTP 429: Rate limit reached"
    );
    assert_eq!(error_message(502, "bad gateway"), "HTTP 502: bad gateway");
}
