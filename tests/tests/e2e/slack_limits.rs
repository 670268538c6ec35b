//! Slack's limits: a 60,000-character answer is split into messages Slack accepts
//! (at most 12,000 characters of markdown each, never inside a character), which
//! read the whole answer in order; a 429 on `chat.update` is waited out for as long
//! as its `Retry-After` says, and the reply still converges.

use crate::slack_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_slack::Fault;
use chorus_tests::script;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_sixty_thousand_characters_are_split_under_the_limit() -> Result<()> {
    let mut tokens = 6000;
    let mut text = script(tokens);
    while text.chars().count() < 60_000 {
        tokens += 500;
        text = script(tokens);
    }
    let world = SlackWorld::start(&text, 4000.0, SlackOptions::default()).await?;
    let root = world.mention(ALICE, "write a lot").await?;
    let parts = world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    ensure!(
        parts.len() >= 5,
        "60,000 characters in {} messages",
        parts.len()
    );
    for (i, part) in parts.iter().enumerate() {
        ensure!(
            part.text.len() <= 12_000,
            "message {i} holds {} bytes",
            part.text.len()
        );
        let buttons: &[&str] = if i + 1 == parts.len() { ENDED } else { &[] };
        ensure!(
            part.buttons == buttons,
            "message {i} of {} has buttons {:?}",
            parts.len(),
            part.buttons
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_rate_limits_are_waited_out() -> Result<()> {
    let text = script(40);
    let options = SlackOptions {
        native_streaming: false,
        ..SlackOptions::default()
    };
    let world = SlackWorld::start(&text, 20.0, options).await?;
    world.slack.fail_next(
        "chat.update",
        Fault::RateLimited {
            retry_after_secs: 2,
        },
    );
    let root = world.mention(ALICE, "hello").await?;
    world.converged(CHANNEL, Some(&root), &text, ENDED).await?;
    let updates = world.slack.state().calls_of("chat.update");
    ensure!(updates.len() >= 2, "{} chat.update calls", updates.len());
    let gap = updates[1].at.duration_since(updates[0].at);
    ensure!(
        gap >= Duration::from_millis(1950),
        "the next chat.update came {gap:?} after the 429 that asked for 2 s"
    );
    Ok(())
}
