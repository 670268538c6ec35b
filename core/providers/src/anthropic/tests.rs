//! Unit tests of the Anthropic request body and stream parsing.
use super::*;
use crate::config::ProviderKind;
use crate::{ChatMessage, ToolSpec};

fn provider(params: Value) -> AnthropicProvider {
    let mut cfg = crate::config::ProviderConfig::scripted_demo();
    cfg.kind = ProviderKind::Anthropic;
    cfg.models = vec!["claude-sonnet-4-5".into()];
    if let Value::Object(map) = params {
        cfg.params = map;
    }
    AnthropicProvider::new(&cfg)
}

fn msg(role: ChatRole, content: &str) -> ChatMessage {
    ChatMessage::text(role, content)
}

fn request(messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages,
        ..Default::default()
    }
}

fn roles_and_contents(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn parse_all(strip: &str, events: &[&str]) -> Result<Vec<ProviderEvent>, ProviderError> {
    let mut parser = EventParser::new(strip.to_string());
    let mut out = VecDeque::new();
    for data in events {
        parser.parse(data, &mut out)?;
    }
    Ok(Vec::from(out))
}

fn text_of(events: &[ProviderEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn url_does_not_double_v1() {
    assert_eq!(
        messages_url(DEFAULT_BASE_URL),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(
        messages_url("http://127.0.0.1:9/v1/"),
        "http://127.0.0.1:9/v1/messages"
    );
    assert_eq!(
        messages_url("https://gw.example/anthropic"),
        "https://gw.example/anthropic/v1/messages"
    );
}

#[test]
fn system_is_hoisted_and_turns_alternate() {
    let body = provider(json!({}))
        .prepare(&request(vec![
            msg(ChatRole::System, "Be brief."),
            msg(ChatRole::User, "one"),
            msg(ChatRole::User, "two"),
            msg(ChatRole::Assistant, "A"),
            msg(ChatRole::System, "Answer in French."),
            msg(ChatRole::Assistant, "B"),
            msg(ChatRole::User, "   "),
            msg(ChatRole::User, "three"),
        ]))
        .body;
    assert_eq!(body["system"], "Be brief.\n\nAnswer in French.");
    assert_eq!(
        roles_and_contents(&body),
        [
            ("user".to_string(), "one\n\ntwo".to_string()),
            ("assistant".into(), "A\n\nB".into()),
            ("user".into(), "three".into()),
        ]
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
    for absent in ["temperature", "top_p", "stop_sequences", "thinking"] {
        assert!(body.get(absent).is_none(), "{absent} was sent: {body}");
    }
}

#[test]
fn no_system_field_without_system_messages() {
    let body = provider(json!({}))
        .prepare(&request(vec![msg(ChatRole::User, "hi")]))
        .body;
    assert!(body.get("system").is_none());
}

#[test]
fn sampling_parameters_and_params_pass_through() {
    let mut req = request(vec![msg(ChatRole::User, "hi")]);
    req.temperature = Some(1.7);
    req.max_output_tokens = Some(300);
    req.stop = vec!["END".into(), "\n\nHuman:".into()];
    let body = provider(json!({"top_k": 40, "metadata": {"user_id": "u1"}}))
        .prepare(&req)
        .body;
    assert_eq!(body["temperature"], 1.0, "clamped to the API's range");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["stop_sequences"], json!(["END", "\n\nHuman:"]));
    assert_eq!(body["top_k"], 40);
    assert_eq!(body["metadata"]["user_id"], "u1");

    // top_p alone is sent; with temperature it is dropped (models take only one).
    let mut req = request(vec![msg(ChatRole::User, "hi")]);
    req.top_p = Some(0.9);
    assert_eq!(
        provider(json!({})).prepare(&req).body["top_p"],
        json!(0.9f32)
    );
    req.temperature = Some(0.5);
    let body = provider(json!({})).prepare(&req).body;
    assert!(body.get("top_p").is_none());
    assert_eq!(body["temperature"], 0.5);

    // A configured max_tokens replaces the default.
    let body = provider(json!({"max_tokens": 8192}))
        .prepare(&request(vec![msg(ChatRole::User, "hi")]))
        .body;
    assert_eq!(body["max_tokens"], 8192);
}

#[test]
fn reasoning_effort_enables_thinking() {
    let mut req = request(vec![msg(ChatRole::User, "think")]);
    req.temperature = Some(0.3);
    req.top_p = Some(0.5);
    req.reasoning_effort = Some("high".into());
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    assert!(body.get("temperature").is_none());
    assert!(body.get("top_p").is_none());
    assert_eq!(
        body["max_tokens"],
        16384 + DEFAULT_MAX_TOKENS,
        "max_tokens must exceed the budget"
    );

    req.reasoning_effort = Some("low".into());
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(body["thinking"]["budget_tokens"], 1024);
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS, "already above");

    req.reasoning_effort = Some("medium".into());
    req.max_output_tokens = Some(1000);
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(body["thinking"]["budget_tokens"], 4096);
    assert_eq!(body["max_tokens"], 5096);

    // A configured max_tokens is raised the same way.
    let body = provider(json!({"max_tokens": 2000})).prepare(&req).body;
    assert_eq!(body["max_tokens"], 6096);

    req.reasoning_effort = Some("bogus".into());
    let body = provider(json!({})).prepare(&req).body;
    assert!(body.get("thinking").is_none());
    assert_eq!(body["temperature"], json!(0.3f32));
}

#[test]
fn prefill_is_trimmed_and_wins_over_thinking() {
    let mut req = request(vec![msg(ChatRole::User, "list them")]);
    req.prefill = Some("Here they are:\n\n ".into());
    req.reasoning_effort = Some("medium".into());
    let prepared = provider(json!({})).prepare(&req);
    assert_eq!(prepared.strip, "\n\n ");
    assert_eq!(
        roles_and_contents(&prepared.body),
        [
            ("user".to_string(), "list them".to_string()),
            ("assistant".into(), "Here they are:".into()),
        ]
    );
    assert!(
        prepared.body.get("thinking").is_none(),
        "the API rejects a prefill with thinking"
    );

    // Nothing to trim: nothing to drop.
    req.prefill = Some("The answer is forty".into());
    let prepared = provider(json!({})).prepare(&req);
    assert_eq!(prepared.strip, "");
    assert_eq!(
        prepared.body["messages"][1]["content"],
        "The answer is forty"
    );

    // A whitespace-only prefill sends no assistant turn at all.
    req.prefill = Some("\n".into());
    let prepared = provider(json!({})).prepare(&req);
    assert_eq!(prepared.strip, "\n");
    assert_eq!(roles_and_contents(&prepared.body).len(), 1);
}

#[test]
fn trimmed_whitespace_is_dropped_once_from_the_continuation() {
    let delta = |t: &str| {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
            .to_string()
    };
    let run = |strip: &str, deltas: &[&str]| {
        let events: Vec<String> = deltas.iter().map(|d| delta(d)).collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        text_of(&parse_all(strip, &refs).unwrap())
    };
    // Repeated in full, even across deltas: dropped.
    assert_eq!(run(" ", &[" forty", "-two"]), "forty-two");
    assert_eq!(run("\n\n", &["\n", "\nSecond", " part"]), "Second part");
    // Repeated in part: that part is dropped.
    assert_eq!(run("\n\n", &["\nSecond"]), "Second");
    // Not repeated: nothing is dropped, and later whitespace is kept.
    assert_eq!(run(" ", &["-two", " is it"]), "-two is it");
    assert_eq!(run("\n", &[" x"]), " x");
    // No trimming: the text is untouched.
    assert_eq!(run("", &["  indented"]), "  indented");
}

const MESSAGE_START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#;

#[test]
fn events_parse_into_text_reasoning_usage_and_finish() {
    let events = parse_all(
        "",
        &[
            MESSAGE_START,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"!"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"some_future_event","detail":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ],
    )
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Reasoning("Let me think.".into()),
            ProviderEvent::Text("Hello".into()),
            ProviderEvent::Text("!".into()),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 40,
                completion_tokens: 15,
                estimated: false,
                cached_prompt_tokens: 5,
                reasoning_tokens: 0,
            }),
            ProviderEvent::Finished("stop".into()),
        ]
    );
}

#[test]
fn cumulative_usage_in_message_delta_wins() {
    let events = parse_all(
        "",
        &[
            MESSAGE_START,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":30,"cache_read_input_tokens":null,"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ],
    )
    .unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Usage(Usage {
                prompt_tokens: 45,
                completion_tokens: 7,
                estimated: false,
                cached_prompt_tokens: 5,
                reasoning_tokens: 0,
            }),
            ProviderEvent::Finished("length".into()),
        ]
    );
}

#[test]
fn stop_reasons_are_normalized() {
    for (wire, normalized) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ] {
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": wire}, "usage": {"output_tokens": 1}}).to_string();
        let events = parse_all("", &[&delta, r#"{"type":"message_stop"}"#]).unwrap();
        assert_eq!(
            events.last(),
            Some(&ProviderEvent::Finished(normalized.into())),
            "{wire}"
        );
    }
}

#[test]
fn error_events_are_classified() {
    let classify = |kind: &str| {
        let data =
            json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}}).to_string();
        parse_all("", &[MESSAGE_START, &data]).unwrap_err()
    };
    let err = classify("overloaded_error");
    assert_eq!(err.kind, ProviderErrorKind::Server);
    assert_eq!(err.message, "overloaded_error: Overloaded");
    assert!(err.is_retryable());
    assert_eq!(classify("api_error").kind, ProviderErrorKind::Server);
    assert_eq!(
        classify("rate_limit_error").kind,
        ProviderErrorKind::RateLimited
    );
    assert_eq!(
        classify("invalid_request_error").kind,
        ProviderErrorKind::Upstream
    );

    for malformed in [
        "{not json",
        r#"{"no_type":1}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
    ] {
        assert_eq!(
            parse_all("", &[malformed]).unwrap_err().kind,
            ProviderErrorKind::Protocol,
            "{malformed}"
        );
    }
}

#[test]
fn http_errors_are_classified() {
    assert_eq!(status_kind(429), ProviderErrorKind::RateLimited);
    assert_eq!(status_kind(529), ProviderErrorKind::Server);
    assert_eq!(status_kind(500), ProviderErrorKind::Server);
    assert_eq!(status_kind(401), ProviderErrorKind::Auth);
    assert_eq!(status_kind(403), ProviderErrorKind::Auth);
    for bad in [400, 404, 413] {
        assert_eq!(status_kind(bad), ProviderErrorKind::BadRequest);
    }
    assert_eq!(
        error_message(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"},"request_id":"req_1"}"#
        ),
        "HTTP 429 rate_limit_error: Number of requests has exceeded your rate limit"
    );
    assert_eq!(
        error_message(502, "<html>bad gateway"),
        "HTTP 502: <html>bad gateway"
    );
    assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
    assert_eq!(
        parse_retry_after(" 1.5 "),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_retry_after("soon"), None);
}

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("{name} things"),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
    }
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

fn tool_result(id: &str, name: &str, content: &str, is_error: bool) -> ChatMessage {
    ChatMessage {
        role: ChatRole::Tool,
        content: content.into(),
        tool_call_id: Some(id.into()),
        tool_name: Some(name.into()),
        is_error,
        ..Default::default()
    }
}

#[test]
fn tools_and_tool_choice_are_offered() {
    let mut req = request(vec![msg(ChatRole::User, "hi")]);
    req.tools = vec![
        tool("search"),
        ToolSpec {
            name: "now".into(),
            description: String::new(),
            parameters: Value::Null,
        },
    ];
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(
        body["tools"],
        json!([
            {"name": "search", "description": "search things", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ])
    );
    assert!(body.get("tool_choice").is_none(), "the API default is auto");
    for (choice, wire) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::None, json!({"type": "none"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (
            ToolChoice::Tool("search".into()),
            json!({"type": "tool", "name": "search"}),
        ),
    ] {
        req.tool_choice = Some(choice);
        assert_eq!(provider(json!({})).prepare(&req).body["tool_choice"], wire);
    }
    // Extended thinking allows only auto and none.
    req.reasoning_effort = Some("low".into());
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    // No tools, no choice.
    let mut req = request(vec![msg(ChatRole::User, "hi")]);
    req.tool_choice = Some(ToolChoice::Required);
    let body = provider(json!({})).prepare(&req).body;
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
}

#[test]
fn history_with_parallel_calls_and_results_becomes_content_blocks() {
    let req = request(vec![
        msg(ChatRole::User, "Weather and time in Paris?"),
        ChatMessage {
            role: ChatRole::Assistant,
            content: "Checking.".into(),
            tool_calls: vec![
                call("toolu_1", "weather", json!({"city": "Paris"})),
                call("toolu_2", "time", json!({})),
            ],
            ..Default::default()
        },
        tool_result("toolu_1", "weather", "18°C", false),
        tool_result("toolu_2", "time", "clock broke", true),
        msg(ChatRole::User, "Thanks, and Rome?"),
        ChatMessage {
            role: ChatRole::Assistant,
            tool_calls: vec![call("toolu_3", "weather", json!({"city": "Rome"}))],
            ..Default::default()
        },
        tool_result("toolu_3", "weather", "", false),
    ]);
    let body = provider(json!({})).prepare(&req).body;
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "clock broke", "is_error": true},
                {"type": "text", "text": "Thanks, and Rome?"},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_3", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_3"},
            ]},
        ])
    );
}

#[test]
fn thinking_is_left_off_in_the_middle_of_a_tool_loop() {
    let mut req = request(vec![
        msg(ChatRole::User, "Weather?"),
        ChatMessage {
            role: ChatRole::Assistant,
            tool_calls: vec![call("toolu_1", "weather", json!({}))],
            ..Default::default()
        },
        tool_result("toolu_1", "weather", "sunny", false),
    ]);
    req.reasoning_effort = Some("high".into());
    assert!(
        provider(json!({}))
            .prepare(&req)
            .body
            .get("thinking")
            .is_none()
    );
    req.messages.push(msg(ChatRole::Assistant, "Sunny."));
    req.messages.push(msg(ChatRole::User, "And tomorrow?"));
    assert!(
        provider(json!({}))
            .prepare(&req)
            .body
            .get("thinking")
            .is_some()
    );
}

fn tool_events(id: &str, index: u64, name: &str, json: &str, cut: usize) -> Vec<String> {
    let mut events = vec![format!(
        r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":"{id}","name":"{name}","input":{{}}}}}}"#
    )];
    let chars: Vec<char> = json.chars().collect();
    for piece in chars.chunks(cut.max(1)) {
        let piece: String = piece.iter().collect();
        events.push(
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
                .to_string(),
        );
    }
    events.push(format!(
        r#"{{"type":"content_block_stop","index":{index}}}"#
    ));
    events
}

const TOOL_STOP: &str = r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}"#;

#[test]
fn tool_use_fragments_split_mid_token_assemble_into_one_call() {
    let args = r#"{"city": "Paris, Île-de-France", "days": [1, 2], "unit": "celsius"}"#;
    for cut in [1, 2, 3, 5, 64] {
        let mut events = vec![MESSAGE_START.to_string()];
        events.extend(tool_events("toolu_1", 0, "weather", args, cut));
        events.push(TOOL_STOP.into());
        events.push(r#"{"type":"message_stop"}"#.into());
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let out = parse_all("", &refs).unwrap();
        assert_eq!(
            out[0],
            ProviderEvent::ToolCall(call(
                "toolu_1",
                "weather",
                json!({"city": "Paris, Île-de-France", "days": [1, 2], "unit": "celsius"})
            )),
            "fragments of {cut} characters"
        );
        assert_eq!(
            out.last(),
            Some(&ProviderEvent::Finished("tool_calls".into()))
        );
    }
}

#[test]
fn text_then_two_parallel_tool_uses_come_in_order_before_the_finish() {
    let mut events = vec![
        MESSAGE_START.to_string(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.into(),
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}"#.into(),
        r#"{"type":"content_block_stop","index":0}"#.into(),
    ];
    events.extend(tool_events(
        "toolu_1",
        1,
        "weather",
        r#"{"city":"Paris"}"#,
        4,
    ));
    events.extend(tool_events("toolu_2", 2, "time", "", 1));
    events.push(TOOL_STOP.into());
    events.push(r#"{"type":"message_stop"}"#.into());
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    assert_eq!(
        parse_all("", &refs).unwrap(),
        vec![
            ProviderEvent::Text("Checking.".into()),
            ProviderEvent::ToolCall(call("toolu_1", "weather", json!({"city": "Paris"}))),
            ProviderEvent::ToolCall(call("toolu_2", "time", json!({}))),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 40,
                completion_tokens: 30,
                estimated: false,
                cached_prompt_tokens: 5,
                reasoning_tokens: 0,
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
}

#[test]
fn interleaved_tool_use_deltas_go_to_their_own_block() {
    let events = [
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"a","name":"one","input":{}}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"b","name":"two","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"y\":"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"x\":"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"2}"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_stop","index":1}"#,
    ];
    assert_eq!(
        parse_all("", &events).unwrap(),
        vec![
            ProviderEvent::ToolCall(call("a", "one", json!({"x": 1}))),
            ProviderEvent::ToolCall(call("b", "two", json!({"y": 2}))),
        ]
    );
}

#[test]
fn malformed_tool_input_is_a_protocol_error_naming_the_tool() {
    let mut events = vec![MESSAGE_START.to_string()];
    events.extend(tool_events("toolu_1", 0, "weather", r#"{"city": "Par"#, 3));
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    let err = parse_all("", &refs).unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol);
    assert!(err.message.contains("\"weather\""), "{}", err.message);
    // A delta for a block that is no tool_use is a protocol error too.
    let err = parse_all(
        "",
        &[r#"{"type":"content_block_delta","index":7,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#],
    )
    .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Protocol);
}

#[test]
fn a_whole_message_gives_the_events_a_stream_would() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":[{"type":"thinking","thinking":"Hmm.","signature":"sig"},
                   {"type":"text","text":"Checking."},
                   {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}}],
        "stop_reason":"tool_use","stop_sequence":null,
        "usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":7}}"#;
    let events = super::events::whole_message(body, String::new()).unwrap();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Reasoning("Hmm.".into()),
            ProviderEvent::Text("Checking.".into()),
            ProviderEvent::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
            ProviderEvent::Usage(Usage {
                prompt_tokens: 15,
                completion_tokens: 7,
                cached_prompt_tokens: 3,
                ..Default::default()
            }),
            ProviderEvent::Finished("tool_calls".into()),
        ]
    );
    let err = super::events::whole_message(
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        String::new(),
    )
    .unwrap_err();
    assert!(err.message.contains("Overloaded"), "{}", err.message);
}

#[test]
fn a_whole_reply_is_asked_for_without_streaming() {
    let mut whole = request(vec![msg(ChatRole::User, "hi")]);
    whole.whole_reply = true;
    assert_eq!(provider(json!({})).prepare(&whole).body["stream"], false);
}
