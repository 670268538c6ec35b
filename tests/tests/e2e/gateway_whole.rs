//! A gateway request that does not ask to stream is one non-streaming call upstream
//! on `openai` and `anthropic` providers, as a direct call would be: its text and
//! usage are the same as streamed, the client gets them whole, and the call is not
//! held to the first-token timeout (nothing arrives before the reply is complete). A
//! request that asks to stream still streams upstream.

use anyhow::{Context, Result, ensure};
use chorus_tests::{
    ApiClient, FakeAnthropic, FakeOpenAi, ServerConfig, TestServer, fake_anthropic, fake_openai,
    unique_name,
};
use serde_json::{Value, json};
use std::time::Duration;

/// A server with both fakes, the OpenAI one given one second to its first token,
/// and a key.
async fn start(openai: &FakeOpenAi, anthropic: &FakeAnthropic) -> Result<(TestServer, String)> {
    let config = ServerConfig::new()
        .openai("oai", &openai.base_url(), "sk-fake", &["gpt-4o-mini"])
        .provider_setting("oai", "first_token_timeout_secs", 1)
        .anthropic(
            "ant",
            &anthropic.base_url(),
            "sk-ant-fake",
            &["claude-sonnet-4-5"],
        );
    let server = TestServer::start(config).await?;
    let name = unique_name("whole");
    server.create_user(&name, chorus_tests::PASSWORD).await?;
    let key = server.create_api_key(&name).await?;
    Ok((server, key))
}

async fn post(server: &TestServer, key: &str, path: &str, body: Value) -> Result<Value> {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .bearer_auth(key)
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status == 200, "{path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// What the upstream was sent for the request whose last user message is `content`.
fn sent(requests: Vec<chorus_tests::fake_server::RecordedRequest>, content: &str) -> Result<Value> {
    requests
        .into_iter()
        .find(|r| r.last_user_text() == content)
        .map(|r| r.body)
        .with_context(|| format!("no upstream call for {content:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn unstreamed_requests_are_unstreamed_upstream() -> Result<()> {
    let openai = FakeOpenAi::start().await?;
    let anthropic = FakeAnthropic::start().await?;
    let (server, key) = start(&openai, &anthropic).await?;
    let chat = |model: &str, content: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]});

    // OpenAI: the text and usage of its reply, from one `chat.completion`.
    let reply = post(
        &server,
        &key,
        "/v1/chat/completions",
        chat("oai/gpt-4o-mini", "hi", false),
    )
    .await?;
    ensure!(
        reply["choices"][0]["message"]["content"] == fake_openai::NORMAL_CHUNKS.concat()
            && reply["choices"][0]["finish_reason"] == "stop"
            && reply["usage"]["prompt_tokens"] == fake_openai::NORMAL_USAGE.0
            && reply["usage"]["completion_tokens"] == fake_openai::NORMAL_USAGE.1,
        "{reply}"
    );
    let body = sent(openai.requests(), "hi")?;
    ensure!(
        body["stream"] == false && body.get("stream_options").is_none(),
        "{body}"
    );

    // Its calls, whole.
    let reply = post(
        &server,
        &key,
        "/v1/chat/completions",
        json!({"model": "oai/gpt-4o-mini", "messages": [{"role": "user", "content": "[tool-calls] go"}],
               "tools": [
                   {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
                   {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}]}),
    )
    .await?;
    let calls = &reply["choices"][0]["message"]["tool_calls"];
    ensure!(
        reply["choices"][0]["finish_reason"] == "tool_calls"
            && calls[0]["id"] == "call_weather_1"
            && calls[0]["function"]["name"] == "weather"
            && serde_json::from_str::<Value>(
                calls[0]["function"]["arguments"].as_str().unwrap_or("?")
            )
            .ok()
                == Some(json!({"city": "Paris"}))
            && calls[1]["function"]["name"] == "time",
        "{reply}"
    );

    // A reply that takes six seconds, with one second allowed to the first token:
    // whole, nothing was late.
    let reply = post(
        &server,
        &key,
        "/v1/chat/completions",
        chat("oai/gpt-4o-mini", "[slow] take your time", false),
    )
    .await?;
    ensure!(
        reply["choices"][0]["message"]["content"] == fake_openai::slow_chunks().concat(),
        "{reply}"
    );
    ensure!(sent(openai.requests(), "[slow] take your time")?["stream"] == false);

    // Streaming asked, streaming upstream.
    let streamed = post(
        &server,
        &key,
        "/v1/chat/completions",
        chat("oai/gpt-4o-mini", "stream it", true),
    )
    .await?;
    ensure!(
        streamed.as_str().is_some_and(
            |sse| sse.contains("chat.completion.chunk") && sse.ends_with("data: [DONE]\n\n")
        ),
        "{streamed}"
    );
    ensure!(sent(openai.requests(), "stream it")?["stream"] == true);

    // Anthropic: the same through its Messages API, and through OpenAI's format.
    let reply = post(
        &server,
        &key,
        "/v1/messages",
        json!({"model": "ant/claude-sonnet-4-5", "max_tokens": 100,
               "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await?;
    let usage = fake_anthropic::NORMAL_USAGE;
    ensure!(
        reply["content"][0]["text"] == fake_anthropic::NORMAL_CHUNKS.concat()
            && reply["stop_reason"] == "end_turn"
            && reply["usage"]["output_tokens"] == usage.output_tokens,
        "{reply}"
    );
    ensure!(sent(anthropic.requests(), "hello")?["stream"] == false);
    let reply = post(
        &server,
        &key,
        "/v1/chat/completions",
        chat("ant/claude-sonnet-4-5", "hello there", false),
    )
    .await?;
    ensure!(
        reply["choices"][0]["message"]["content"] == fake_anthropic::NORMAL_CHUNKS.concat(),
        "{reply}"
    );
    ensure!(sent(anthropic.requests(), "hello there")?["stream"] == false);

    // The run keeps the reply as any run does.
    let owner = ApiClient::with_api_key(&server.url(), &key);
    let run_id = reply["id"]
        .as_str()
        .and_then(|id| id.strip_prefix("chatcmpl-"))
        .context("no run in the id")?;
    let run = owner
        .wait_run_ended(run_id, Duration::from_secs(10))
        .await?;
    ensure!(
        run["status"] == "complete" && run["text"] == fake_anthropic::NORMAL_CHUNKS.concat(),
        "{run}"
    );
    Ok(())
}
