//! Interrupt on one surface, continue on another: one table over every ordered pair
//! of the surfaces that exist (the web, Matrix, Discord, Slack), through the drivers
//! of `surfaces_support.rs` and one world (one Synapse, one fake Discord, one fake
//! Slack, one fake model, instance A with every surface and instance B with the web
//! only, sharing PostgreSQL and Redis).
//!
//! Every row: a person whose identities on both surfaces are linked to one web
//! account asks on the first, something happens to the reply there, the second brings
//! the conversation to itself showing the reply as it stands, and both end with the
//! exact script in the messages they had: the reply's own message on the first
//! surface, the resumed one on the second.
//!
//! - `Stop` rows (every ordered pair): stopped the surface's way (the web's stop,
//!   `!chorus stop`, the Stop button); the second shows it stopped and continues it.
//! - `Fail` rows (every surface on each side, and each bot's reply on the web and in
//!   Matrix): the provider errs mid-stream; the second shows it interrupted (how core
//!   ends a provider error mid-stream) and continues it. Run with the `Stop` rows,
//!   three at a time.
//! - `Lost` rows (Discord and Slack, each continued on the web and in Matrix): the
//!   bot's connection (the gateway, the Socket Mode socket) drops mid-reply, and
//!   `Live` rows: nothing happens. Either way the second surface brings the reply in
//!   while it still streams (the model holds it half way until every row has looked),
//!   shows it live, then the whole; one drop of each connection serves every row.
//! - `Kill` rows (each surface once): the process serving the reply is killed with
//!   SIGKILL mid-reply; the other instance marks it interrupted once its lease lapses.
//!   A bot's reply is continued on the web (B) while A is down, and the restarted bot
//!   finishes the same message in place (no second message); a web reply whose
//!   instance B dies is brought to each chat surface of A, where it shows interrupted
//!   and waits for Continue, as on the web (a renderer goes on by itself only with a
//!   reply its own restart cut off). One kill serves every row of its instance.

use crate::surfaces_support::{Reply, Shows, Someone, Surface, World};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::script;
use futures::{StreamExt, TryStreamExt, future::try_join_all};

/// How a row interrupts the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum By {
    Stop,
    Fail,
    Lost,
    Live,
    Kill,
}

#[derive(Clone, Copy, Debug)]
struct Row {
    from: Surface,
    to: Surface,
    by: By,
}

const fn row(from: Surface, to: Surface, by: By) -> Row {
    Row { from, to, by }
}

use By::{Fail, Kill, Live, Lost, Stop};
use Surface::{Discord, Matrix, Slack, Web};

/// The table.
const ROWS: &[Row] = &[
    row(Web, Matrix, Stop),
    row(Web, Discord, Stop),
    row(Web, Slack, Stop),
    row(Matrix, Web, Stop),
    row(Matrix, Discord, Stop),
    row(Matrix, Slack, Stop),
    row(Discord, Web, Stop),
    row(Discord, Matrix, Stop),
    row(Discord, Slack, Stop),
    row(Slack, Web, Stop),
    row(Slack, Matrix, Stop),
    row(Slack, Discord, Stop),
    // The provider errs mid-stream.
    row(Web, Slack, Fail),
    row(Matrix, Discord, Fail),
    row(Discord, Web, Fail),
    row(Discord, Matrix, Fail),
    row(Slack, Web, Fail),
    row(Slack, Matrix, Fail),
    // The bot's connection drops mid-reply, or nothing happens: the other surface
    // brings the reply in while it streams.
    row(Discord, Web, Lost),
    row(Discord, Matrix, Lost),
    row(Discord, Slack, Lost),
    row(Slack, Web, Lost),
    row(Slack, Matrix, Lost),
    row(Web, Discord, Live),
    row(Matrix, Web, Live),
    // A dies under its bots' replies; they go on on the web.
    row(Matrix, Web, Kill),
    row(Discord, Web, Kill),
    row(Slack, Web, Kill),
    // B dies under its web replies; they go on in the bots of A.
    row(Web, Matrix, Kill),
    row(Web, Discord, Kill),
    row(Web, Slack, Kill),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_interrupted_on_one_surface_is_continued_on_every_other() -> Result<()> {
    for from in Surface::ALL {
        for to in Surface::ALL.into_iter().filter(|&to| to != from) {
            ensure!(
                ROWS.iter()
                    .any(|r| r.from == from && r.to == to && r.by == Stop),
                "the table has no row {from:?} → {to:?}"
            );
        }
        ensure!(
            ROWS.iter().any(|r| r.from == from && r.by == Kill),
            "the table never kills the process under a {from:?} reply"
        );
    }
    let every = |by: By, side: fn(&Row) -> Surface| {
        Surface::ALL
            .into_iter()
            .all(|s| ROWS.iter().any(|r| r.by == by && side(r) == s))
    };
    ensure!(
        every(Fail, |r| r.from) && every(Fail, |r| r.to),
        "the table does not fail the provider under every surface and continue on every one"
    );
    ensure!(
        Surface::ALL.into_iter().all(|s| {
            ROWS.iter()
                .any(|r| matches!(r.by, Lost | Live) && r.to == s)
        }) && [Discord, Slack]
            .into_iter()
            .all(|s| ROWS.iter().any(|r| r.by == Lost && r.from == s)),
        "the table does not drop both bots' connections and bring a live reply to every surface"
    );
    ensure!(
        ROWS.iter()
            .filter(|r| r.by == Lost)
            .all(|r| matches!(r.from, Discord | Slack)),
        "only a bot has a connection to drop"
    );
    // Issues 14 and 15: a bot's reply interrupted in any of its ways — its connection
    // lost, Stop, the provider's error mid-stream, its process killed — is continued
    // on the web and in Matrix (a killed process's on the web: the other instance,
    // while the bot's own instance is down; once up again, the bot finishes the reply
    // itself, in place).
    for bot in [Discord, Slack] {
        for (by, to) in [Stop, Fail, Lost]
            .into_iter()
            .flat_map(|by| [(by, Web), (by, Matrix)])
            .chain([(Kill, Web)])
        {
            ensure!(
                ROWS.iter()
                    .any(|r| r.from == bot && r.to == to && r.by == by),
                "the table does not continue on {to:?} a {bot:?} reply interrupted by {by:?}"
            );
        }
    }
    ensure!(
        ROWS.iter()
            .filter(|r| r.by == Kill)
            .all(|r| (r.from == Web) != (r.to == Web)),
        "a kill row runs between the web (B) and a chat surface (A)"
    );

    let mut world = World::start(&script(60), 8.0).await?;

    let ended: Vec<Result<()>> =
        futures::stream::iter(ROWS.iter().filter(|r| matches!(r.by, Stop | Fail)))
            .map(|row| {
                let world = &world;
                async move { ended(world, row).await.with_context(|| format!("{row:?}")) }
            })
            .buffer_unordered(3)
            .collect()
            .await;
    let failed: Vec<String> = ended
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failed.is_empty() {
        bail!("{} rows failed:\n{}", failed.len(), failed.join("\n\n"));
    }

    let live: Vec<Row> = ROWS
        .iter()
        .filter(|r| matches!(r.by, Lost | Live))
        .copied()
        .collect();
    streaming(&world, &live).await?;

    let (bots, web): (Vec<Row>, Vec<Row>) = ROWS
        .iter()
        .filter(|r| r.by == Kill)
        .partition(|r| r.from != Web);
    bots_killed(&mut world, &bots).await?;
    web_killed(&mut world, &web).await
}

/// A `Stop` or `Fail` row.
async fn ended(world: &World, row: &Row) -> Result<()> {
    let who = world.someone(&[row.from, row.to]).await?;
    let (question, note) = match row.by {
        // A provider error mid-stream ends the run `interrupted`, its text kept.
        Fail => ("a long one, please [fail]", "Interrupted"),
        _ => ("a long one, please", "Stopped"),
    };
    let reply = world.ask(&who, row.from, question, 20).await?;
    let partial = match row.by {
        Fail => world.failed(&who, &reply).await?,
        _ => world.stop(&who, &reply).await?,
    };
    let (here, shown) = world.resume(&who, row.to, Shows::Ended(note)).await?;
    ensure!(
        shown == partial,
        "{:?} shows {shown:?} where {:?} ended at {partial:?}",
        row.to,
        row.from
    );
    let here = world.continue_reply(&who, here).await?;
    world
        .finished(&who, &here)
        .await
        .with_context(|| format!("{:?}'s view", row.to))?;
    world
        .finished(&who, &reply)
        .await
        .with_context(|| format!("{:?}'s view", row.from))
}

/// A person for each of `rows`, on the surfaces `on` names for it, made three at a
/// time (each logs in on the web, and the server checks only a few passwords at once).
async fn people(
    world: &World,
    rows: &[Row],
    on: impl Fn(&Row) -> Vec<Surface>,
) -> Result<Vec<Someone>> {
    futures::stream::iter(rows)
        .map(|row| {
            let surfaces = on(row);
            async move { world.someone(&surfaces).await }
        })
        .buffered(3)
        .try_collect()
        .await
}

/// The `Lost` and `Live` rows: every row's reply is held half way by the model; the
/// bots' connections drop under them (once each, for every `Lost` row) and come back;
/// each reply is brought to its second surface, which shows it live, and once every
/// row has looked the model goes on, and both surfaces show the whole script.
async fn streaming(world: &World, rows: &[Row]) -> Result<()> {
    let people = people(world, rows, |row| vec![row.from, row.to]).await?;
    let replies: Vec<Reply> = try_join_all(
        rows.iter()
            .zip(&people)
            .map(|(row, who)| world.ask(who, row.from, "a long one, please [hold]", 20)),
    )
    .await?;
    world.drop_connections().await?;
    let mut brought = Vec::new();
    for (row, who) in rows.iter().zip(&people) {
        let (here, _) = world
            .resume(who, row.to, Shows::Live)
            .await
            .with_context(|| format!("{row:?}: brought in live"))?;
        brought.push(here);
    }
    world.model.release_holds();
    for (((row, who), reply), here) in rows.iter().zip(&people).zip(&replies).zip(&brought) {
        async {
            world.finished(who, reply).await?;
            world.finished(who, here).await
        }
        .await
        .with_context(|| format!("{row:?}: finished"))?;
    }
    Ok(())
}

/// The `Kill` rows of the chat surfaces: A is killed under every row's reply at once,
/// each is continued on the web (B), and the restarted bots finish their messages in
/// place.
async fn bots_killed(world: &mut World, rows: &[Row]) -> Result<()> {
    let people = people(world, rows, |row| vec![row.from]).await?;
    let replies: Vec<Reply> = try_join_all(
        rows.iter()
            .zip(&people)
            .map(|(row, who)| world.ask(who, row.from, "a long one, please", 40)),
    )
    .await?;
    world.a.kill_9()?;
    for (row, who) in rows.iter().zip(&people) {
        continued_on(world, who, row.to)
            .await
            .with_context(|| format!("{row:?}: continued on the web"))?;
    }
    world.restart_a().await?;
    for ((row, who), reply) in rows.iter().zip(&people).zip(&replies) {
        async {
            world.finished(who, reply).await?;
            world.alone(who, reply).await
        }
        .await
        .with_context(|| format!("{row:?}: the restarted bot's message"))?;
    }
    Ok(())
}

/// The `Kill` rows of the web: B is killed under every row's web reply at once, and
/// each is brought to its chat surface (on A), shows interrupted there and is
/// continued; the web (now on A, the same session) shows each finished.
async fn web_killed(world: &mut World, rows: &[Row]) -> Result<()> {
    let mut people = people(world, rows, |row| vec![Web, row.to]).await?;
    let replies: Vec<Reply> = try_join_all(
        people
            .iter()
            .map(|who| world.ask(who, Web, "a long one, please", 40)),
    )
    .await?;
    world.b.kill_9()?;
    let a = world.a.url();
    for who in &mut people {
        who.web = who.web.same_session_on(&a);
    }
    for ((row, who), reply) in rows.iter().zip(&people).zip(&replies) {
        // The web on A sees the run interrupted once B's lease lapses.
        async {
            world.resume(who, Web, Shows::Ended("Interrupted")).await?;
            continued_on(world, who, row.to).await?;
            world.finished(who, reply).await
        }
        .await
        .with_context(|| format!("{row:?}"))?;
    }
    Ok(())
}

/// Brings the interrupted reply to `surface`, where it shows interrupted, continues it
/// there and waits for the whole script in the message it shows the reply in.
async fn continued_on(world: &World, who: &Someone, surface: Surface) -> Result<()> {
    let (here, _) = world
        .resume(who, surface, Shows::Ended("Interrupted"))
        .await?;
    let here = world.continue_reply(who, here).await?;
    world.finished(who, &here).await
}
