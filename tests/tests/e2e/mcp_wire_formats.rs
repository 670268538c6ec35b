//! A tool call through the OpenAI and Anthropic wire formats: the fake model (in each
//! API's streaming format) calls `everything__echo` of the real
//! `@modelcontextprotocol/server-everything`, Chorus runs it and sends the result back
//! in the API's own shape, and the model answers with it. A later turn carries the
//! call and its result as history, rebuilt from the stored tool steps.

use crate::finished;
use crate::mcp_tools::{admin_client, connected, of_kind, result_for, set_tools, stdio_servers};
use anyhow::{Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::fake_tool_models::{FakeToolModel, ToolWire};
use chorus_tests::{Resume, ServerConfig, TestServer, logged_in_client, unique_name};
use serde_json::{Value, json};

async fn tool_round_trip(wire: ToolWire) -> Result<()> {
    let fake = FakeToolModel::start(wire).await?;
    let mut toml = String::new();
    stdio_servers(&mut toml)?;
    let (config, model) = match wire {
        ToolWire::OpenAi => (
            ServerConfig::new().openai("oai", &fake.base_url(), "sk-fake", &["gpt-4o-mini"]),
            "oai/gpt-4o-mini",
        ),
        ToolWire::Anthropic => (
            ServerConfig::new().anthropic(
                "claude",
                &fake.base_url(),
                "sk-ant-fake",
                &["claude-sonnet-4-5"],
            ),
            "claude/claude-sonnet-4-5",
        ),
    };
    let server = TestServer::start(config.raw_toml(&toml)).await?;
    connected(&admin_client(&server).await?, &["everything"]).await?;
    let user = logged_in_client(&server, &unique_name("wire")).await?;
    let conversation = user.create_conversation(Some(model)).await?;
    set_tools(&user, &conversation, json!(["everything__echo"])).await?;

    let sent = user
        .send_message(
            &conversation,
            r#"call everything__echo {"message": "over the wire"}"#,
        )
        .await?;
    let events = user.events_to_finished(&sent.run_id, Resume::Start).await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let calls = of_kind(&events, "tool_call");
    ensure!(calls.len() == 1, "{calls:?}");
    ensure!(
        calls[0].data["name"] == "everything__echo"
            && calls[0].data["arguments"] == json!({"message": "over the wire"}),
        "{}",
        calls[0].data
    );
    ensure!(result_for(&events, "everything__echo")?.data["output"] == "Echo: over the wire");
    let text = delta_text(&events);
    ensure!(text == "The tool said: Echo: over the wire", "{text:?}");

    let requests = fake.requests();
    ensure!(requests.len() == 2, "{} requests", requests.len());
    let (call_id, offered) = match wire {
        ToolWire::OpenAi => (
            "call_fake_1",
            requests[0].body["tools"][0]["function"].clone(),
        ),
        ToolWire::Anthropic => ("toolu_fake_1", requests[0].body["tools"][0].clone()),
    };
    ensure!(offered["name"] == "everything__echo", "offered: {offered}");
    let schema = match wire {
        ToolWire::OpenAi => &offered["parameters"],
        ToolWire::Anthropic => &offered["input_schema"],
    };
    ensure!(
        schema["properties"]["message"]["type"] == "string",
        "schema: {schema}"
    );
    check_history(wire, &requests[1].body, call_id)?;

    // The next turn carries the call and its result as history.
    let second = user.send_message(&conversation, "thanks").await?;
    let events = user
        .events_to_finished(&second.run_id, Resume::Start)
        .await?;
    ensure!(
        finished(&events)?.status() == Some("complete"),
        "{events:?}"
    );
    let requests = fake.requests();
    ensure!(requests.len() == 3, "{} requests", requests.len());
    check_history(wire, &requests[2].body, call_id)?;
    Ok(())
}

/// The request after the call holds the assistant's call and the tool's result in the
/// API's own shape.
fn check_history(wire: ToolWire, request: &Value, call_id: &str) -> Result<()> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    match wire {
        ToolWire::OpenAi => {
            let call = messages
                .iter()
                .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array());
            ensure!(
                call.is_some_and(|m| m["tool_calls"][0]["id"] == call_id
                    && m["tool_calls"][0]["function"]["name"] == "everything__echo"),
                "no assistant tool call in {messages:?}"
            );
            let result = messages.iter().find(|m| m["role"] == "tool");
            ensure!(
                result.is_some_and(
                    |m| m["tool_call_id"] == call_id && m["content"] == "Echo: over the wire"
                ),
                "no tool result in {messages:?}"
            );
        }
        ToolWire::Anthropic => {
            let has = |role: &str, kind: &str, f: &dyn Fn(&Value) -> bool| {
                messages.iter().any(|m| {
                    m["role"] == role
                        && m["content"]
                            .as_array()
                            .is_some_and(|bs| bs.iter().any(|b| b["type"] == kind && f(b)))
                })
            };
            ensure!(
                has("assistant", "tool_use", &|b| b["id"] == call_id
                    && b["name"] == "everything__echo"),
                "no tool_use in {messages:?}"
            );
            ensure!(
                has("user", "tool_result", &|b| b["tool_use_id"] == call_id
                    && b["content"] == "Echo: over the wire"),
                "no tool_result in {messages:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_wire_format_tool_call() -> Result<()> {
    tool_round_trip(ToolWire::OpenAi).await
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_wire_format_tool_call() -> Result<()> {
    tool_round_trip(ToolWire::Anthropic).await
}
