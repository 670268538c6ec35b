//! The bot's back-off under the homeserver's rate limit: Synapse refuses the bot's
//! messages beyond 0.5/s with a burst of 8 (the humans are exempt), so a reply that
//! streams for half a minute at one edit a second meets 429 `M_LIMIT_EXCEEDED`. The
//! renderer waits out `retry_after_ms` and the reply still converges to the script.

use crate::matrix_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;
use chorus_tests::synapse::{MESSAGE_BURST, MESSAGE_PER_SECOND};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_long_reply_converges_through_rate_limits() -> Result<()> {
    // ~30 s of streaming: about 30 edits wanted, while Synapse lets the bot send
    // only burst + 0.5/s ≈ 23 messages in that time.
    let seconds = 30.0;
    let tokens_per_second = 5.0;
    let text = script((seconds * tokens_per_second) as usize);
    let world = MatrixWorld::start(
        &text,
        tokens_per_second,
        BotOptions {
            max_edits_per_message: 100,
            ..BotOptions::default()
        },
    )
    .await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id();

    let question = alice.send_text(&room, "take your time").await?;
    let done = wait_text(&alice, &room, bot, &question, &text).await?;
    let replies = alice.replies(&room, bot, Some(&question));
    ensure!(
        replies.len() == 1 && replies[0].event_id == done.event_id,
        "the reply is spread over {replies:?}"
    );
    let allowed = f64::from(MESSAGE_BURST) + seconds * MESSAGE_PER_SECOND;
    let log = world.server.log();
    ensure!(
        log.contains("rate limited; backing off"),
        "the bot never logged a 429 back-off while sending {} edits in ~{seconds} s \
         (Synapse allows about {allowed})",
        done.edits
    );
    Ok(())
}
