//! Bad input on Matrix: commands with bad arguments get a help reply naming the
//! problem, messages from users outside the allowlist are ignored while an allowed
//! user in the same room is answered, and a 60,000-character answer is split into
//! messages under the limit, each with its code fences balanced, that put back
//! together give the answer.

use crate::matrix_support::*;
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::matrix_client::Reply;
use chorus_tests::script;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_bad_command_arguments_get_help() -> Result<()> {
    let world = MatrixWorld::start(&script(10), 20.0, BotOptions::default()).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();
    for (command, problem, usage) in [
        (
            "!chorus stop now",
            "`stop` takes no argument",
            "!chorus stop",
        ),
        (
            "!chorus resume 1 2",
            "`resume` takes one argument",
            "!chorus resume",
        ),
        (
            "!chorus frobnicate",
            "Unknown command `frobnicate`",
            "!chorus help",
        ),
        (
            "!chorus help nothing",
            "There is no command `nothing`",
            "!chorus help",
        ),
    ] {
        let sent = alice.send_text(&room, command).await?;
        let reply = alice.first_reply(&room, bot, &sent, WAIT).await?;
        ensure!(
            reply.text.contains(problem) && reply.text.contains(usage),
            "{command:?} was answered {:?}; expected the problem {problem:?} and the usage {usage:?}",
            reply.text
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_ignores_users_outside_the_allowlist() -> Result<()> {
    let text = script(10);
    let synapse = chorus_tests::synapse::Synapse::shared().await?;
    // The humans exist before the bot, so the allowlist can name one of them.
    let alice = chorus_tests::matrix_client::MatrixUser::new_human(synapse, "alice").await?;
    let eve = chorus_tests::matrix_client::MatrixUser::new_human(synapse, "eve").await?;
    let world = MatrixWorld::start(
        &text,
        20.0,
        BotOptions {
            allowed_users: vec![alice.user_id().to_string()],
            ..BotOptions::default()
        },
    )
    .await?;
    let bot = world.bot_id();
    let room = alice
        .create_room(&[bot, eve.user_id()], false, false)
        .await?;
    eve.join(&room).await?;
    alice.wait_joined(&room, bot, WAIT).await?;
    alice.wait_joined(&room, eve.user_id(), WAIT).await?;

    let from_eve = eve
        .send_mention(&room, bot, BOT_NAME, "answer me, please")
        .await?;
    eve.send_text(&room, "!chorus help").await?;
    let from_alice = alice.send_mention(&room, bot, BOT_NAME, "and me?").await?;
    let reply = wait_text(&alice, &room, bot, &from_alice, &text).await?;
    // Eve's question and command came first: their answers would have too.
    ensure_bot_posted_only(&alice, &room, bot, &[&reply.event_id])
        .with_context(|| format!("the bot answered someone outside its allowlist ({from_eve})"))?;
    Ok(())
}

/// About 60,000 characters of markdown, mostly large fenced code blocks (each with
/// its own info string, so a reopened fence is told from a new one), short lines,
/// and multi-byte characters in the prose.
fn long_answer() -> String {
    let mut out = String::new();
    let mut block = 0;
    while out.chars().count() < 60_000 {
        out.push_str(&format!(
            "Part {block}: ünïcode ✓ prose before the block, «quoted» and **bold**.\n\n```lang{block}\n"
        ));
        for line in 0..120 {
            out.push_str(&format!("let value_{block}_{line} = {line} * 2; // ✓\n"));
        }
        out.push_str("```\n\n");
        block += 1;
    }
    out.push_str("The end.");
    out
}

/// The first 80 characters of `text`, for failure messages.
fn head(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Whether `line` is a fence line (opening or closing).
fn is_fence(line: &str) -> bool {
    line.trim_end().starts_with("```")
}

/// The fence opening left open at the end of `text` (fences toggle), if any.
fn open_fence(text: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in text.lines() {
        if is_fence(line) {
            open = match open {
                Some(_) => None,
                None => Some(line.to_string()),
            };
        }
    }
    open
}

/// Puts the parts back together, removing the fence a cut closed at the end of a part
/// and reopened at the start of the next; fails on a part that does not match that
/// shape.
fn join_parts(parts: &[Reply]) -> Result<(String, usize)> {
    let mut out = String::new();
    let mut reopened = 0;
    for (i, part) in parts.iter().enumerate() {
        let mut text = part.text.as_str();
        if let Some(opening) = open_fence(&out) {
            let Some(rest) = text.strip_prefix(&format!("{opening}\n")) else {
                bail!(
                    "part {i} does not reopen the cut fence {opening:?}: {:?}",
                    head(text)
                );
            };
            text = rest;
            reopened += 1;
        }
        let next_reopens = parts.get(i + 1).is_some_and(|next| {
            let combined = format!("{out}{text}");
            let body = combined
                .strip_suffix("```\n")
                .or_else(|| combined.strip_suffix("```"));
            body.and_then(open_fence)
                .is_some_and(|o| next.text.starts_with(&format!("{o}\n")))
        });
        if next_reopens {
            text = text
                .strip_suffix("```\n")
                .or_else(|| text.strip_suffix("```"))
                .unwrap_or(text);
        }
        out.push_str(text);
    }
    Ok((out, reopened))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_long_answer_is_split_into_balanced_parts() -> Result<()> {
    let answer = long_answer();
    let limit = 8000;
    let world = MatrixWorld::start(
        &answer,
        5000.0,
        BotOptions {
            max_message_bytes: limit,
            ..BotOptions::default()
        },
    )
    .await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();
    let question = alice.send_text(&room, "the long one").await?;

    let parts = alice
        .wait_until(
            "the split answer to put back together as the answer",
            &room,
            Duration::from_secs(240),
            |me| {
                let parts = me.replies(&room, bot, Some(&question));
                join_parts(&parts)
                    .ok()
                    .filter(|(joined, _)| *joined == answer)
                    .map(|_| parts)
            },
        )
        .await?;
    let (_, reopened) = join_parts(&parts)?;
    ensure!(
        parts.len() >= 60_000 / limit,
        "{} parts for a {}-byte answer with a {limit}-byte limit",
        parts.len(),
        answer.len()
    );
    ensure!(
        reopened >= 1,
        "no cut fell inside a code block, so fence reopening was not exercised"
    );
    for (i, part) in parts.iter().enumerate() {
        ensure!(
            part.text.len() <= limit,
            "part {i} has {} bytes, over the {limit}-byte limit",
            part.text.len()
        );
        ensure!(
            open_fence(&part.text).is_none(),
            "part {i} leaves a code fence open: it starts with {:?}",
            head(&part.text)
        );
    }
    Ok(())
}
