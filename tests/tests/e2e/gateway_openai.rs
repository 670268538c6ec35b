//! The official OpenAI SDKs (Python from PyPI, Node from npm) against Chorus's
//! `/v1/chat/completions` and `/v1/models`: non-streaming and streaming chat with
//! usage, a tool call round trip where the client runs its own tool, the model list
//! with aliases, and errors as the SDKs' own exception types. The tool model's
//! upstream is a fake *Anthropic* API: any Chorus model serves the OpenAI format.

use crate::gateway_support::{Gateway, SCRIPTED_MODEL};
use crate::quota_support::TEXT;
use anyhow::{Result, ensure};
use chorus_tests::ApiClient;
use chorus_tests::fake_tool_models::ToolWire;
use serde_json::{Value, json};
use std::time::Duration;

/// The checks both SDKs pass on what they returned.
async fn check_common(gw: &Gateway, out: &Value) -> Result<()> {
    let chat = &out["chat"];
    ensure!(chat["content"] == TEXT, "chat: {chat}");
    ensure!(chat["finish_reason"] == "stop", "chat: {chat}");
    let u = &chat["usage"];
    ensure!(
        u["completion_tokens"] == 8
            && u["prompt_tokens"].as_u64().unwrap_or(0) > 0
            && u["total_tokens"].as_u64() == Some(u["prompt_tokens"].as_u64().unwrap_or(0) + 8),
        "chat usage: {chat}"
    );
    // The run is its owner's like any other, with the same text and usage.
    let run_id = chat["run_id"].as_str().unwrap_or_default();
    let owner = ApiClient::with_api_key(&gw.server.url(), &gw.key);
    let run = owner
        .wait_run_ended(run_id, Duration::from_secs(20))
        .await?;
    ensure!(
        run["status"] == "complete"
            && run["text"] == TEXT
            && run["model"] == SCRIPTED_MODEL
            && run["completion_tokens"] == 8
            && run["prompt_tokens"] == u["prompt_tokens"],
        "run {run_id}: {run}"
    );
    let stranger = ApiClient::with_api_key(&gw.server.url(), &gw.broke_key);
    let resp = stranger.get(&format!("/api/runs/{run_id}")).await?;
    ensure!(
        resp.status() == 404,
        "another account reads the run: {}",
        resp.status()
    );

    let stream = &out["stream"];
    ensure!(
        stream["text"] == TEXT && stream["finish_reason"] == "stop",
        "stream: {stream}"
    );
    ensure!(
        stream["usage"]["completion_tokens"] == 8
            && stream["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "stream_options.include_usage: {stream}"
    );

    let tools = &out["tools"];
    ensure!(tools["finish_reason"] == "tool_calls", "tools: {tools}");
    ensure!(
        tools["call"]["name"] == "get_weather"
            && tools["call"]["arguments"] == json!({"city": "Oslo"}),
        "tools: {tools}"
    );
    ensure!(tools["answer"] == "The tool said: sunny", "tools: {tools}");

    let models: Vec<&str> = out["models"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for want in [SCRIPTED_MODEL, gw.model, "team-default"] {
        ensure!(
            models.contains(&want),
            "models.list lacks {want}: {models:?}"
        );
    }

    let errors = &out["errors"];
    let expect = |name: &str, ty: &str, status: u16, code: &str| -> Result<()> {
        let e = &errors[name];
        ensure!(
            e["type"] == ty && e["status"] == status && e["code"] == code,
            "{name}: expected {ty} {status} {code}, got {e}"
        );
        Ok(())
    };
    expect("bad_key", "AuthenticationError", 401, "invalid_api_key")?;
    expect("unknown_model", "NotFoundError", 404, "model_not_found")?;
    expect("spent_balance", "RateLimitError", 429, "insufficient_quota")?;
    ensure!(
        errors["spent_balance"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("balance")),
        "{}",
        errors["spent_balance"]
    );
    Ok(())
}

/// The upstream got the client's tool call and result back in its own format, and
/// was asked to stream only when the client was.
fn check_upstream_round_trip(gw: &Gateway) -> Result<()> {
    let requests = gw.upstream.requests();
    let streamed: Vec<bool> = requests.iter().map(|r| r.body["stream"] == true).collect();
    ensure!(
        streamed.contains(&true) && streamed.contains(&false),
        "the tool calls' requests upstream (streamed?): {streamed:?}"
    );
    let with_result = requests
        .iter()
        .find(|r| {
            r.body["messages"].as_array().is_some_and(|m| {
                m.iter().any(|m| {
                    m["content"]
                        .as_array()
                        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
                })
            })
        })
        .ok_or_else(|| anyhow::anyhow!("no upstream request carried the tool result"))?;
    let text = with_result.body.to_string();
    ensure!(
        text.contains("\"tool_use\"") && text.contains("sunny") && text.contains("get_weather"),
        "the upstream request with the result: {text}"
    );
    ensure!(
        with_result.body["tools"][0]["name"] == "get_weather",
        "the client's tool was offered upstream: {}",
        with_result.body["tools"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_chats_streams_calls_tools_and_gets_typed_errors() -> Result<()> {
    let gw = Gateway::start(ToolWire::Anthropic, "").await?;
    let out = gw.python("openai_sdk.py").await?;
    check_common(&gw, &out).await?;
    let chat = &out["chat"];
    ensure!(
        chat["object"] == "chat.completion"
            && chat["model"] == SCRIPTED_MODEL
            && chat["role"] == "assistant"
            && chat["id"]
                .as_str()
                .is_some_and(|id| id.ends_with(chat["run_id"].as_str().unwrap_or("?"))),
        "chat: {chat}"
    );
    ensure!(
        out["stream"]["chunks"].as_u64().unwrap_or(0) >= 4,
        "{}",
        out["stream"]
    );
    let tools = &out["tools"];
    ensure!(
        tools["usage"] == json!({"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}),
        "the upstream's usage passes through: {tools}"
    );
    let streamed = &tools["streamed_call"];
    ensure!(
        streamed["name"] == "get_weather"
            && serde_json::from_str::<Value>(streamed["arguments"].as_str().unwrap_or("?")).ok()
                == Some(json!({"city": "Oslo"}))
            && streamed["finish_reason"] == "tool_calls",
        "streamed tool call: {streamed}"
    );
    let n = &out["errors"]["n"];
    ensure!(
        n["type"] == "BadRequestError" && n["status"] == 400 && n["param"] == "n",
        "n=2: {n}"
    );
    ensure!(
        out["errors"]["bad_key_models"]["type"] == "AuthenticationError",
        "{}",
        out["errors"]["bad_key_models"]
    );
    check_upstream_round_trip(&gw)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_node_sdk_chats_streams_calls_tools_and_gets_typed_errors() -> Result<()> {
    let gw = Gateway::start(ToolWire::Anthropic, "").await?;
    let out = gw.node("openai_sdk.mjs").await?;
    check_common(&gw, &out).await?;
    check_upstream_round_trip(&gw)?;
    Ok(())
}

/// Sampling parameters reach an OpenAI-format upstream as its own fields; `seed` and
/// `response_format` are refused, naming the model, when a model of the chain (here
/// the alias's scripted fallback) cannot honour them.
#[tokio::test(flavor = "multi_thread")]
async fn parameters_reach_the_upstream_or_are_refused_by_name() -> Result<()> {
    let gw = Gateway::start(ToolWire::OpenAi, "").await?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.server.url());
    let resp = http
        .post(&url)
        .bearer_auth(&gw.key)
        .json(&json!({
            "model": gw.model,
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0.3, "top_p": 0.9, "max_completion_tokens": 64, "stop": ["END"],
            "seed": 42, "response_format": {"type": "json_object"}, "reasoning_effort": "low",
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        }))
        .send()
        .await?;
    ensure!(
        resp.status() == 200,
        "{}: {}",
        resp.status(),
        resp.text().await?
    );
    // Not asked to stream: the upstream was asked for its whole reply, which it sent
    // as one `chat.completion`.
    let reply: Value = resp.json().await?;
    ensure!(
        reply["choices"][0]["message"]["content"] == "The tool said: nothing",
        "{reply}"
    );
    let sent = gw
        .upstream
        .requests()
        .last()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    for (field, want) in [
        ("temperature", json!(0.3)),
        ("top_p", json!(0.9)),
        ("max_tokens", json!(64)),
        ("stop", json!(["END"])),
        ("seed", json!(42)),
        ("response_format", json!({"type": "json_object"})),
        ("reasoning_effort", json!("low")),
        ("tool_choice", json!("required")),
        ("stream", json!(false)),
    ] {
        let got = &sent[field];
        let close = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            _ => *got == want,
        };
        ensure!(close, "upstream {field}: {got} (wanted {want}) in {sent}");
    }
    let resp = http
        .post(&url)
        .bearer_auth(&gw.key)
        .json(&json!({"model": "team-default", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    ensure!(
        status == 400
            && body["error"]["param"] == "seed"
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(SCRIPTED_MODEL)),
        "{status} {body}"
    );
    Ok(())
}
