//! The gateway lost mid-reply: Discord asking the bot to reconnect (op 7), the
//! connection dropped without a close frame, and the session invalidated (op 9, not
//! resumable). The bot resumes the session the first two times (and gets the event
//! it missed meanwhile, replayed) and identifies anew the third, and the reply being
//! rendered all along finishes in its own message with the exact text.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use chorus_tests::fake_discord_bot::{CHANNEL_ID, State};
use chorus_tests::script;

/// Waits until the bot is on a new session: one more accepted RESUME than `resumed`
/// or one more IDENTIFY than `identified`.
async fn back(world: &DiscordWorld, what: &str, resumed: usize, identified: usize) -> Result<()> {
    world
        .fake
        .wait(what, WAIT, |s: &State| {
            s.reconnected(resumed, identified).then_some(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_gateway_lost_mid_reply_is_resumed_and_the_reply_finishes_in_place() -> Result<()> {
    let text = script(120);
    let world = DiscordWorld::start(&text, 10.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    world.fake.say(dm, &alice, "a long one, please", false)?;
    let first = world.wait_partial(dm, 0, 20).await?;
    let identified = world.fake.lock().identifies.len();

    // Op 7: the bot reconnects and resumes.
    world.fake.gateway_reconnect()?;
    back(&world, "a RESUME after op 7", 0, identified).await?;

    // A dropped connection: resumed too, and a mention sent while it was down is
    // replayed to the resumed session and answered (in a thread of its own).
    world.fake.gateway_drop()?;
    world
        .fake
        .say(CHANNEL_ID, &alice, "and one more, please", true)?;
    back(
        &world,
        "a RESUME after the dropped connection",
        1,
        identified,
    )
    .await?;
    {
        let s = world.fake.lock();
        ensure!(
            s.identifies.len() == identified && s.resumes.iter().all(|(_, ok)| *ok),
            "the bot identified again or sent a RESUME naming another session: {:?}",
            s.resumes
        );
    }

    // Op 9, not resumable: the bot identifies anew.
    world.fake.gateway_invalid_session(false)?;
    back(&world, "an IDENTIFY after op 9", usize::MAX, identified).await?;

    let done = world.wait_text(dm, 0, &text).await?;
    ensure!(
        done.id == first.id,
        "the reply finished in message {} instead of its own {}",
        done.id,
        first.id
    );
    let posted = world.fake.lock().bot_messages(dm);
    ensure!(posted.len() == 1, "the bot posted {posted:?} in the DM");
    // The mention sent while the connection was down got its answer in its thread.
    world
        .fake
        .wait("the answer to the replayed mention", WAIT, |s| {
            s.threads(CHANNEL_ID)
                .into_iter()
                .find(|t| s.bot_messages(t.id).iter().any(|m| m.content == text))
        })
        .await?;
    Ok(())
}
