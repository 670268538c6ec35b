//! Chorus against LiteLLM's proxy, a third-party server running on loopback: the
//! `openai` provider through its `/v1/chat/completions` (streamed) and the `anthropic`
//! provider through its Anthropic-format `/v1/messages`, both answering with the
//! configured `mock_response`. LiteLLM's mock answers `/v1/messages` with a whole
//! (unstreamed) Message even when asked to stream, which the Anthropic provider reads
//! too. Required: the test fails when LiteLLM is not installed.

use crate::{assert_consecutive, finished, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::litellm::LiteLlm;
use chorus_tests::{ApiClient, ServerConfig, TestServer, logged_in_client, unique_name};

const MASTER_KEY: &str = "sk-chorus-litellm-e2e";
const GPT_REPLY: &str = "Hello from LiteLLM, in the OpenAI format.";
const CLAUDE_REPLY: &str = "Hello from LiteLLM, in the Anthropic format.";

fn proxy_config() -> String {
    format!(
        r#"model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-never-used
      mock_response: "{GPT_REPLY}"
  - model_name: mock-claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: sk-never-used
      mock_response: "{CLAUDE_REPLY}"
general_settings:
  master_key: {MASTER_KEY}
"#
    )
}

/// Sends a message on `model` and checks the run completed with `reply` and usage the
/// proxy reported (not estimated).
async fn check_reply(client: &ApiClient, model: &str, reply: &str) -> Result<()> {
    let conversation = client.create_conversation(Some(model)).await?;
    let sent = client.send_message(&conversation, "Say hello").await?;
    let events = client
        .events_to_finished(&sent.run_id, chorus_tests::Resume::Start)
        .await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("complete") && end.data["reason"] == "stop",
        "{model}: finished with {}",
        end.data
    );
    ensure!(
        delta_text(&events) == reply,
        "{model}: deltas {:?}",
        delta_text(&events)
    );
    let usage = events
        .iter()
        .find(|e| e.kind == "usage")
        .with_context(|| format!("{model}: no usage event in {events:?}"))?;
    ensure!(
        usage.data["estimated"] == false
            && usage.data["prompt_tokens"].as_u64() > Some(0)
            && usage.data["completion_tokens"].as_u64() > Some(0),
        "{model}: usage as LiteLLM reported it: {}",
        usage.data
    );
    let run = client
        .wait_run_ended(&sent.run_id, std::time::Duration::from_secs(20))
        .await?;
    ensure!(
        s(&run, "status") == "complete" && s(&run, "text") == reply && run["error"].is_null(),
        "{model}: run {run}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn litellm_proxy_serves_chorus_in_the_openai_and_anthropic_formats() -> Result<()> {
    let proxy = LiteLlm::start(&proxy_config()).await?;
    let server = TestServer::start(
        ServerConfig::new()
            .openai(
                "litellm",
                &format!("{}/v1", proxy.url()),
                MASTER_KEY,
                &["mock-gpt"],
            )
            .anthropic("litellm-claude", &proxy.url(), MASTER_KEY, &["mock-claude"]),
    )
    .await?;
    let client = logged_in_client(&server, &unique_name("litellm")).await?;
    let result = async {
        check_reply(&client, "litellm/mock-gpt", GPT_REPLY).await?;
        check_reply(&client, "litellm-claude/mock-claude", CLAUDE_REPLY).await
    }
    .await;
    if result.is_err() {
        eprintln!("LiteLLM's log:\n{}", proxy.log());
    }
    result
}
