//! A server killed with SIGKILL mid-run: the run comes back `interrupted` with the
//! text that survived (the last checkpoint, or all the journal held), its readers get
//! `finished`, and `continue` completes the message to the exact script.

use crate::{assert_consecutive, assert_proper_prefix, finished, only_assistant, replay_text, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, PASSWORD, Resume, ServerConfig, TestDatabase, TestRedis, TestServer,
    logged_in_client, script, unique_name,
};
use serde_json::Value;
use std::time::Duration;

const TOKENS: usize = 80;
const TOKENS_PER_SECOND: f64 = 20.0;

fn crashy(text: &str) -> ServerConfig {
    ServerConfig::new()
        .lease_ttl_secs(3)
        .checkpoint_interval_ms(200)
        .scripted("s", text, TOKENS_PER_SECOND)
}

/// Waits until the run streams and its text has been checkpointed to the database
/// (the conversation view shows an active run's checkpointed text); returns that text.
async fn wait_for_checkpoint(client: &ApiClient, conversation: &str, run: &str) -> Result<String> {
    until("the run to show text", Duration::from_secs(20), || async {
        let view = client.run(run).await?;
        Ok((!s(&view, "text").is_empty()).then_some(()))
    })
    .await?;
    until(
        "a checkpoint with text",
        Duration::from_secs(20),
        || async {
            let messages = client.messages(conversation).await?;
            let content = s(only_assistant(&messages)?, "content").to_string();
            Ok((!content.is_empty()).then_some(content))
        },
    )
    .await
}

async fn wait_interrupted(client: &ApiClient, run: &str, timeout: Duration) -> Result<Value> {
    until("the run to be marked interrupted", timeout, || async {
        let view = client.run(run).await?;
        match s(&view, "status") {
            "interrupted" => Ok(Some(view)),
            "streaming" | "queued" => Ok(None),
            other => anyhow::bail!("the run ended as {other}, not interrupted: {view}"),
        }
    })
    .await
}

/// Continues `run` and checks that the message ends as exactly `text`.
async fn continue_to_the_end(
    client: &ApiClient,
    conversation: &str,
    run: &str,
    partial: &str,
    text: &str,
) -> Result<()> {
    let continuation = client.continue_run(run).await?;
    let events = client
        .events_to_finished(&continuation, Resume::Start)
        .await
        .context("following the continuation")?;
    assert_consecutive(&events, 1)?;
    ensure!(
        events[0].kind == "started" && events[0].data["prefix"] == partial,
        "the continuation started with {:?}",
        events[0]
    );
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(
        delta_text(&events) == text[partial.len()..],
        "the continuation streamed {:?}",
        delta_text(&events)
    );
    let view = client
        .wait_run_ended(&continuation, Duration::from_secs(10))
        .await?;
    ensure!(s(&view, "status") == "complete", "{view}");
    let messages = client.messages(conversation).await?;
    ensure!(messages.len() == 2, "messages: {messages:?}");
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == text,
        "the message after continue is\n{content:?}\nnot the script\n{text:?}"
    );
    Ok(())
}

/// SQLite and the in-process journal: the restarted instance (same instance id)
/// recovers its own run from the last checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_restart_with_same_instance_id() -> Result<()> {
    let text = script(TOKENS);
    let mut server = TestServer::start(crashy(&text).instance_id("crashy")).await?;
    let client = logged_in_client(&server, &unique_name("crash")).await?;
    let conversation = client.create_conversation(None).await?;
    let run = client.send_message(&conversation, "go").await?.run_id;
    // A reader that was following when the server died.
    let mut reader = client.events(&run, Resume::Start).await?;
    let checkpointed = wait_for_checkpoint(&client, &conversation, &run).await?;
    let seen_before_kill = reader.take(5).await?;
    let last_seen = seen_before_kill
        .last()
        .context("no events before the kill")?
        .seq;

    drop(reader);

    server.kill_9()?;
    server.restart().await?;

    // Sessions are in the database: the same cookie still works.
    let view = wait_interrupted(&client, &run, Duration::from_secs(15)).await?;
    let recovered = s(&view, "text").to_string();
    assert_proper_prefix(&recovered, &text)?;
    ensure!(
        recovered.starts_with(&checkpointed),
        "recovered {recovered:?}, less than the checkpoint {checkpointed:?} seen before the kill"
    );
    let messages = client.messages(&conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == recovered);

    // The in-process journal died with the process; readers still get the text and
    // the end of the run.
    let events = client.events_to_finished(&run, Resume::Start).await?;
    assert_consecutive(&events, events[0].seq)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("interrupted"),
        "finished with {}",
        end.data
    );
    ensure!(
        replay_text(&events) == recovered,
        "the events after the restart add up to {:?}, not {recovered:?}",
        replay_text(&events)
    );
    // The reader that saw events the restarted journal never held resumes from its
    // Last-Event-ID and is brought to the recovered text, not left with its own.
    let resumed = client
        .events_to_finished(&run, Resume::LastEventId(last_seen))
        .await?;
    let mut shown = seen_before_kill.clone();
    shown.extend(resumed.iter().cloned());
    ensure!(
        replay_text(&shown) == recovered && finished(&resumed)?.status() == Some("interrupted"),
        "a reader resuming after seq {last_seen} ends up showing {:?}, not {recovered:?} \
         (resumed with {resumed:?})",
        replay_text(&shown)
    );

    continue_to_the_end(&client, &conversation, &run, &recovered, &text).await
}

/// PostgreSQL and the Redis journal: another instance (a different instance id)
/// recovers the dead one's run once its lease lapses, keeping everything the journal
/// held, which is at least the last checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn redis_recovery_by_another_instance() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let text = script(TOKENS);
    let config = crashy(&text)
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix());
    let mut a = TestServer::start(config.clone().instance_id("crash-a")).await?;
    let name = unique_name("crash");
    a.create_user(&name, PASSWORD).await?;
    let on_a = a.client();
    on_a.login(&name, PASSWORD).await?;
    let conversation = on_a.create_conversation(None).await?;
    let run = on_a.send_message(&conversation, "go").await?.run_id;
    let mut reader = on_a.events(&run, Resume::Start).await?;
    let checkpointed = wait_for_checkpoint(&on_a, &conversation, &run).await?;
    let seen_before_kill = reader.take(5).await?;
    let last_seen = seen_before_kill
        .last()
        .context("no events before the kill")?
        .seq;
    drop(reader);

    a.kill_9()?;
    // What the journal held when the writer died, read straight from Redis.
    let journal = redis.journal_events(&run).await?;
    let journal_text: String = journal
        .iter()
        .filter(|(_, e)| e["kind"] == "delta")
        .filter_map(|(_, e)| e["text"].as_str())
        .collect();
    let last_seq = journal
        .last()
        .map(|(seq, _)| *seq)
        .context("empty journal")?;
    ensure!(
        journal_text.starts_with(&checkpointed),
        "the journal {journal_text:?} does not extend the checkpoint {checkpointed:?}"
    );
    let pool = db.pool().await?;
    let lease_expires_at: i64 =
        sqlx::query_scalar("SELECT lease_expires_at FROM runs WHERE id = $1")
            .bind(&run)
            .fetch_one(&pool)
            .await?;

    let b = TestServer::start(config.instance_id("crash-b")).await?;
    let on_b = on_a.same_session_on(&b.url());
    let view = wait_interrupted(&on_b, &run, Duration::from_secs(20)).await?;
    let recovered = s(&view, "text").to_string();
    assert_proper_prefix(&recovered, &text)?;
    ensure!(
        recovered == journal_text,
        "recovered {recovered:?}, not all the journal held: {journal_text:?}"
    );
    ensure!(recovered.len() >= checkpointed.len());
    let finished_at = view["finished_at"].as_i64().context("no finished_at")?;
    ensure!(
        finished_at >= lease_expires_at,
        "B interrupted the run at {finished_at}, before A's lease ran out at {lease_expires_at}"
    );
    let owner: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM runs WHERE id = $1")
        .bind(&run)
        .fetch_one(&pool)
        .await?;
    ensure!(
        owner.as_deref() == Some("crash-a"),
        "lease owner is {owner:?}"
    );
    pool.close().await;

    // The journal is whole: every event once, then `finished` after the last one A wrote.
    let events = on_b.events_to_finished(&run, Resume::Start).await?;
    assert_consecutive(&events, 1)?;
    let end = finished(&events)?;
    ensure!(
        end.status() == Some("interrupted") && end.seq == last_seq + 1,
        "finished {} at seq {} (A's last was {last_seq})",
        end.data,
        end.seq
    );
    ensure!(delta_text(&events) == recovered);
    // A reader of A resumes on B from its Last-Event-ID and gets exactly the rest.
    let resumed = on_b
        .events_to_finished(&run, Resume::LastEventId(last_seen))
        .await?;
    assert_consecutive(&resumed, last_seen + 1)?;
    ensure!(
        delta_text(&seen_before_kill) + delta_text(&resumed).as_str() == recovered,
        "a reader resuming on B after seq {last_seen} does not end up with the recovered text"
    );

    continue_to_the_end(&on_b, &conversation, &run, &recovered, &text).await
}
