//! A bot killed mid-reply finishes the same Discord message after it restarts.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use chorus_tests::script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_restart_mid_reply_finishes_the_same_message() -> Result<()> {
    let text = script(60);
    let mut world = DiscordWorld::start(&text, 8.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    world.fake.say(dm, &alice, "a long one, please", false)?;
    let partial = world.wait_partial(dm, 0, 10).await?;
    ensure!(
        partial.content.len() < text.len(),
        "already complete before the kill"
    );
    world.server.kill_9()?;
    let identified = world.fake.lock().identifies.len();
    world.server.restart().await?;
    world
        .fake
        .wait("the restarted bot to identify again", WAIT, |s| {
            (s.identifies.len() > identified).then_some(())
        })
        .await?;
    let done = world.wait_text(dm, 0, &text).await?;
    ensure!(done.id == partial.id, "finished in another message");
    ensure!(
        world.fake.lock().bot_messages(dm).len() == 1,
        "the restart posted another message: {:?}",
        world.fake.lock().bot_messages(dm)
    );
    Ok(())
}
