//! End-to-end tests: the real `chorus` binary against real PostgreSQL and Redis, driven
//! over HTTP and the CLI. One test binary (faster to link); each test starts its own
//! servers with their own database, data dir and Redis key prefix, so tests run in
//! parallel.
//!
//! Build the binary first: `cargo build -p chorus && cargo test -p chorus-tests`.

mod access_groups;
mod account_link_matrix;
mod admin_console;
mod admin_stats;
mod admin_tools;
mod anthropic_provider;
mod authorization;
mod azure_provider;
mod bad_input;
mod bedrock_provider;
mod cli;
mod compose_deploy;
mod crash_recovery;
mod cross_surface;
mod discord_ask;
mod discord_commands;
mod discord_controls;
mod discord_gateway;
mod discord_limits;
mod discord_private;
mod discord_restart;
mod discord_support;
mod discord_unreachable_at_start;
mod discord_web_login;
mod fallback;
mod faults;
mod gateway_anthropic;
mod gateway_disconnect;
mod gateway_early;
mod gateway_keep;
mod gateway_ledger;
mod gateway_openai;
mod gateway_support;
mod gateway_whole;
mod gemini_provider;
mod ledger;
mod linking;
mod litellm_proxy;
mod matrix_ask;
mod matrix_backoff;
mod matrix_bad_input;
mod matrix_controls;
mod matrix_encrypted;
mod matrix_harness;
mod matrix_private;
mod matrix_restart;
mod matrix_support;
mod matrix_unreachable_at_start;
mod matrix_web_run_in_thread;
mod mcp_tools;
mod mcp_wire_formats;
mod ollama_provider;
mod openai_provider;
mod openai_responses_provider;
mod openapi;
mod quota_support;
mod sandbox_files;
mod sandbox_quota;
mod sandbox_tool;
mod slack_ask;
mod slack_controls;
mod slack_events_api;
mod slack_limits;
mod slack_private;
mod slack_resilience;
mod slack_support;
mod slack_unreachable_at_start;
mod slack_web_login;
mod sse_resume;
mod sso_oauth2;
mod sso_oidc;
mod surfaces_support;
mod telemetry;
mod two_instances;
mod web_guards;

use anyhow::{Result, bail, ensure};
use chorus_tests::SseEvent;
use serde_json::Value;

/// Fails unless the events' seqs are `first, first+1, ...` with no gap and no repeat.
pub fn assert_consecutive(events: &[SseEvent], first: u64) -> Result<()> {
    for (i, e) in events.iter().enumerate() {
        let expected = first + i as u64;
        if e.seq != expected {
            bail!(
                "event #{i} has seq {} where {expected} was due; seqs: {:?}",
                e.seq,
                events.iter().map(|e| e.seq).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

/// The text a reader shows after applying `events`: deltas append, a snapshot
/// replaces everything before it.
pub fn replay_text(events: &[SseEvent]) -> String {
    let mut text = String::new();
    for e in events {
        match e.kind.as_str() {
            "delta" => text.push_str(e.data["text"].as_str().unwrap_or_default()),
            "snapshot" => text = e.data["text"].as_str().unwrap_or_default().to_string(),
            _ => {}
        }
    }
    text
}

/// The `finished` event that must end `events`.
pub fn finished(events: &[SseEvent]) -> Result<&SseEvent> {
    match events.last() {
        Some(e) if e.is_finished() => Ok(e),
        other => bail!("the events do not end with `finished` (last: {other:?})"),
    }
}

/// A string field of a JSON value.
pub fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

/// The only assistant message of a conversation's message list.
pub fn only_assistant(messages: &[Value]) -> Result<&Value> {
    let assistants: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    ensure!(
        assistants.len() == 1,
        "expected one assistant message, got {}: {messages:?}",
        assistants.len()
    );
    Ok(assistants[0])
}

/// Fails unless `text` is a non-empty proper prefix of `script`.
pub fn assert_proper_prefix(text: &str, script: &str) -> Result<()> {
    ensure!(!text.is_empty(), "the text is empty");
    ensure!(
        text.len() < script.len(),
        "the text is the whole script ({} bytes), not a partial reply",
        text.len()
    );
    ensure!(
        script.starts_with(text),
        "the text is not a prefix of the script:\n text: {text:?}\n script: {script:?}"
    );
    Ok(())
}
