//! The official Anthropic Python SDK (PyPI) against Chorus's `/v1/messages`:
//! a message with usage, streaming text through the SDK's stream helper, the raw
//! event order (`message_start` … `message_stop`), a `tool_use` round trip where
//! the client runs its own tool, and errors as the SDK's exception types. The tool
//! model's upstream is a fake *OpenAI* API: any Chorus model serves this format.

use crate::gateway_support::Gateway;
use crate::quota_support::TEXT;
use anyhow::{Result, ensure};
use chorus_tests::ApiClient;
use chorus_tests::fake_tool_models::ToolWire;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_python_sdk_streams_uses_tools_and_gets_typed_errors() -> Result<()> {
    let gw = Gateway::start(ToolWire::OpenAi, "").await?;
    let out = gw.python("anthropic_sdk.py").await?;

    let message = &out["message"];
    ensure!(
        message["type"] == "message"
            && message["role"] == "assistant"
            && message["text"] == TEXT
            && message["stop_reason"] == "end_turn"
            && message["usage"]["output_tokens"] == 8
            && message["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0,
        "message: {message}"
    );
    let run_id = message["run_id"].as_str().unwrap_or_default();
    let owner = ApiClient::with_api_key(&gw.server.url(), &gw.key);
    let run = owner
        .wait_run_ended(run_id, Duration::from_secs(20))
        .await?;
    ensure!(
        run["status"] == "complete" && run["text"] == TEXT,
        "run {run_id}: {run}"
    );

    let stream = &out["stream"];
    ensure!(
        stream["text"] == TEXT
            && stream["stop_reason"] == "end_turn"
            && stream["usage"]["output_tokens"] == 8
            && stream["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0,
        "stream: {stream}"
    );
    let events: Vec<&str> = out["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let deltas = events
        .iter()
        .filter(|e| **e == "content_block_delta")
        .count();
    ensure!(
        events.first() == Some(&"message_start")
            && events.get(1) == Some(&"content_block_start")
            // One per token of the script, or fewer where tokens that arrived
            // together were joined.
            && (1..=8).contains(&deltas)
            && events[events.len() - 3..]
                == ["content_block_stop", "message_delta", "message_stop"],
        "event order: {events:?}"
    );

    let tools = &out["tools"];
    ensure!(
        tools["stop_reason"] == "tool_use"
            && tools["tool_use"]["name"] == "get_weather"
            && tools["tool_use"]["input"] == json!({"city": "Oslo"}),
        "tools: {tools}"
    );
    ensure!(
        tools["usage"] == json!({"input_tokens": 30, "output_tokens": 9}),
        "the upstream's usage passes through: {tools}"
    );
    ensure!(
        tools["answer"] == "The tool said: sunny" && tools["answer_stop_reason"] == "end_turn",
        "tools: {tools}"
    );
    // The upstream (OpenAI format) got the call and the client's result as a tool message.
    let requests = gw.upstream.requests();
    let with_result = requests
        .iter()
        .find(|r| {
            r.body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
        })
        .ok_or_else(|| anyhow::anyhow!("no upstream request carried the tool result"))?;
    let tool_msg = with_result.body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "tool"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        tool_msg["content"] == "sunny" && tool_msg["tool_call_id"] == tools["tool_use"]["id"],
        "tool message upstream: {tool_msg}"
    );

    let errors = &out["errors"];
    let expect = |name: &str, ty: &str, status: u16, error_type: &str| -> Result<()> {
        let e = &errors[name];
        ensure!(
            e["type"] == ty && e["status"] == status && e["error_type"] == error_type,
            "{name}: expected {ty} {status} {error_type}, got {e}"
        );
        Ok(())
    };
    expect(
        "bad_key",
        "AuthenticationError",
        401,
        "authentication_error",
    )?;
    expect("unknown_model", "NotFoundError", 404, "not_found_error")?;
    expect(
        "spent_balance",
        "PaymentRequiredError",
        402,
        "billing_error",
    )?;
    expect(
        "bad_request",
        "BadRequestError",
        400,
        "invalid_request_error",
    )?;
    Ok(())
}
