//! The bot killed with SIGKILL mid-reply and started again on the same data dir:
//! the restarted process finds the unfinished render, continues the interrupted
//! reply and finishes the Matrix message it had posted (no second message), which
//! then reads exactly the script.

use crate::matrix_support::*;
use anyhow::{Result, ensure};
use chorus_tests::{ServerConfig, script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_restart_mid_reply_finishes_the_same_message() -> Result<()> {
    let text = script(80);
    let mut world = MatrixWorld::start_with(
        ServerConfig::new()
            .checkpoint_interval_ms(200)
            .scripted("s", &text, 6.0),
        BotOptions::default(),
    )
    .await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id().to_string();

    let question = alice.send_text(&room, "long answer please").await?;
    let first = alice.first_reply(&room, &bot, &question, WAIT).await?;
    let before = wait_partial(&alice, &room, &bot, &first.event_id, 40).await?;
    ensure!(
        text.starts_with(&before.text) && before.text.len() < text.len(),
        "before the kill the message shows {:?}, not a partial script",
        before.text
    );
    world.server.kill_9()?;
    world.server.restart().await?;

    finished_in_place(&alice, &room, &bot, &question, &first.event_id, &text).await?;
    let log = world.server.log();
    ensure!(
        log.contains("resuming an unfinished render"),
        "the restarted bot did not log resuming the render"
    );
    Ok(())
}
