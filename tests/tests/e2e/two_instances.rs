//! Two `chorus serve` instances behind one PostgreSQL database and one Redis journal:
//! a run started on A is read live, stopped and continued through B, and every
//! instance agrees on what happened.

use crate::{assert_consecutive, assert_proper_prefix, finished, only_assistant, s};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::{PASSWORD, Resume, ServerConfig, TestDatabase, TestRedis, TestServer, script};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_continue_across_instances() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::new().await?;
    let text = script(50);
    let shared = ServerConfig::new()
        .postgres(db.url())
        .redis_journal(redis.url(), redis.prefix())
        .checkpoint_interval_ms(200)
        .scripted("s", &text, 20.0);
    let a = TestServer::start(shared.clone().instance_id("instance-a")).await?;
    let b = TestServer::start(shared.instance_id("instance-b")).await?;

    // One account, logged in on both; sessions live in the shared database, so A's
    // session cookie works on B as well.
    let name = chorus_tests::unique_name("two");
    a.create_user(&name, PASSWORD).await?;
    let on_a = a.client();
    on_a.login(&name, PASSWORD).await?;
    let on_b = b.client();
    on_b.login(&name, PASSWORD).await?;
    let me = on_a.same_session_on(&b.url()).me().await?;
    ensure!(s(&me, "name") == name, "A's session on B is {me}");

    let conversation = on_a.create_conversation(None).await?;
    let run = on_a
        .send_message(&conversation, "slowly, please")
        .await?
        .run_id;

    // B follows the run live: deltas arrive while it still streams on A.
    let mut live = on_b.events(&run, Resume::Start).await?;
    let mut seen = live.take(5).await?;
    ensure!(
        seen.iter().filter(|e| e.kind == "delta").count() == 4
            && !seen.iter().any(|e| e.is_finished()),
        "B's first events are not started + 4 deltas: {seen:?}"
    );
    for client in [&on_a, &on_b] {
        let view = client.run(&run).await?;
        ensure!(
            s(&view, "status") == "streaming",
            "after B read 4 deltas, {} says the run is {}",
            client.base(),
            view["status"]
        );
    }

    // Stop it through B; the stop must reach A, which executes it.
    let stop = on_b.stop(&run).await?;
    ensure!(stop["stop_requested"] == true, "stop answered {stop}");
    let rest = live
        .to_finished()
        .await
        .context("B's stream after the stop")?;
    seen.extend(rest);
    assert_consecutive(&seen, 1)?;
    let end = finished(&seen)?;
    ensure!(
        end.status() == Some("stopped"),
        "B's stream finished with {}",
        end.data
    );

    let stopped_text = delta_text(&seen);
    assert_proper_prefix(&stopped_text, &text)?;
    for client in [&on_a, &on_b] {
        let view = client.run(&run).await?;
        ensure!(
            s(&view, "status") == "stopped" && s(&view, "text") == stopped_text,
            "{} says {view} (B's stream had {stopped_text:?})",
            client.base()
        );
    }

    // Continue through B; the continuation executes on B and A's readers see it.
    let continuation = on_b.continue_run(&run).await?;
    let events = on_a
        .events_to_finished(&continuation, Resume::Start)
        .await
        .context("A reading the continuation")?;
    assert_consecutive(&events, 1)?;
    ensure!(
        events[0].kind == "started" && events[0].data["prefix"] == stopped_text.as_str(),
        "the continuation started with {:?}",
        events[0]
    );
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(
        delta_text(&events) == text[stopped_text.len()..],
        "the continuation streamed {:?}, not the rest of the script",
        delta_text(&events)
    );
    for client in [&on_a, &on_b] {
        let messages = client.messages(&conversation).await?;
        ensure!(messages.len() == 2, "messages: {messages:?}");
        let assistant = only_assistant(&messages)?;
        ensure!(
            s(assistant, "content") == text,
            "{} shows the message as {:?}",
            client.base(),
            assistant["content"]
        );
        let view = client
            .wait_run_ended(&continuation, Duration::from_secs(10))
            .await?;
        ensure!(s(&view, "status") == "complete", "{view}");
    }

    // Who executed what, as recorded in the shared database.
    let pool = db.pool().await?;
    for (id, owner) in [(&run, "instance-a"), (&continuation, "instance-b")] {
        let got: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await?;
        ensure!(
            got.as_deref() == Some(owner),
            "run {id} was executed by {got:?}, not {owner}"
        );
    }
    pool.close().await;
    Ok(())
}
