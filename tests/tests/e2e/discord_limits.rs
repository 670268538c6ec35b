//! Discord's limits: a 60,000-character answer goes out in messages of at most 2,000
//! characters, cut at line ends, with code blocks closed and reopened across a cut and
//! nothing lost; 429s are waited out for the time Discord names, on message writes
//! and on interaction answers (the callback, the `@original` edit) alike.

use crate::discord_support::*;
use anyhow::{Result, ensure};
use std::time::Duration;

/// About 60,000 characters: prose with non-ASCII text, and a long code block.
fn long_answer() -> String {
    let mut text = String::from("Here is the whole story.\n\n");
    let mut i = 0;
    while text.chars().count() < 30_000 {
        text.push_str(&format!(
            "Line {i}: ünïcode ✓ and some words to fill the line out.\n"
        ));
        i += 1;
    }
    text.push_str("```rust\n");
    while text.chars().count() < 45_000 {
        text.push_str(&format!("let value_{i} = compute({i}); // ✓\n"));
        i += 1;
    }
    text.push_str("```\n\n");
    while text.chars().count() < 60_000 {
        text.push_str(&format!("After the code, line {i}.\n"));
        i += 1;
    }
    text.push_str("The end.");
    text
}

/// The text without fence lines: what a reader reads, wherever the cuts fell.
fn without_fences(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_a_60000_character_answer_is_split_correctly() -> Result<()> {
    let text = long_answer();
    // The scripted model streams words; this many a second ends in a few seconds.
    let world = DiscordWorld::start(&text, 4000.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    world.fake.say(dm, &alice, "tell me everything", false)?;
    let parts = world
        .fake
        .wait("the whole answer, in parts", WAIT, |s| {
            let parts: Vec<String> = s.bot_messages(dm).into_iter().map(|m| m.content).collect();
            let last_done = parts.last().is_some_and(|p| p.ends_with("The end."));
            (last_done && without_fences(&parts.concat()) == without_fences(&text)).then_some(parts)
        })
        .await?;
    ensure!(
        parts.len() >= 30,
        "{} parts for 60,000 characters",
        parts.len()
    );
    for (i, part) in parts.iter().enumerate() {
        ensure!(
            part.chars().count() <= 2000,
            "part {i} has {} chars",
            part.chars().count()
        );
        ensure!(
            part.matches("```").count() % 2 == 0,
            "part {i} leaves a code block open: …{}",
            part.chars()
                .rev()
                .take(80)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        );
        if i + 1 < parts.len() {
            ensure!(part.ends_with('\n'), "part {i} is not cut at a line end");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_429s_are_waited_out_for_the_time_named() -> Result<()> {
    let text = chorus_tests::script(30);
    let world = DiscordWorld::start(&text, 20.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    world.fake.rate_limit_next(2, 1.5);
    world.fake.say(dm, &alice, "hello", false)?;
    world.wait_text(dm, 0, &text).await?;
    let calls = world.fake.calls();
    let writes: Vec<_> = calls
        .iter()
        .filter(|c| c.path.contains(&format!("/channels/{dm}/messages")))
        .collect();
    let limited: Vec<_> = writes.iter().filter(|c| c.status == 429).collect();
    ensure!(
        limited.len() == 2,
        "expected two 429s, saw {:?}",
        limited.len()
    );
    for refused in limited {
        let next = writes
            .iter()
            .find(|c| c.at > refused.at)
            .expect("a write after the 429");
        ensure!(
            next.at - refused.at >= Duration::from_millis(1450),
            "the bot tried again {:?} after a 429 that asked for 1.5 s",
            next.at - refused.at
        );
    }
    ensure!(
        world.fake.lock().bot_messages(dm).len() == 1,
        "the 429s doubled the reply"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_429s_on_interaction_answers_are_waited_out() -> Result<()> {
    let world = DiscordWorld::start("unused", 20.0, "").await?;
    let alice = alice();
    let dm = world.fake.dm_channel(&alice);
    // The deferral (the interaction callback) and then the `@original` edit are
    // each refused once.
    world.fake.rate_limit_answers_next(2, 0.5);
    let token = world.fake.slash(dm, &alice, "help", &[])?;
    let (answer, shown) = world.fake.answer_of(&token, WAIT).await?;
    ensure!(
        answer.callback == Some(5) && answer.ephemeral && shown.content.contains("Slash commands"),
        "`/help` was answered {answer:?} with {:?}",
        shown.content
    );
    let calls = world.fake.calls();
    let answers: Vec<_> = calls
        .iter()
        .filter(|c| c.path.ends_with("/callback") || c.path.starts_with("/api/v10/webhooks/"))
        .collect();
    let limited: Vec<_> = answers.iter().filter(|c| c.status == 429).collect();
    ensure!(
        limited.len() == 2,
        "expected two 429s on the answer, saw {answers:?}"
    );
    for refused in limited {
        let next = answers
            .iter()
            .find(|c| c.at > refused.at)
            .expect("a call after the 429");
        ensure!(
            next.path == refused.path && next.at - refused.at >= Duration::from_millis(450),
            "after a 429 asking for 0.5 s on {}, the bot called {} {:?} later",
            refused.path,
            next.path,
            next.at - refused.at
        );
    }
    Ok(())
}
