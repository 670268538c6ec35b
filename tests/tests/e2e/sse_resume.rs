//! Resuming a run's event stream: for every k, a reader takes k events, hangs up, and
//! resumes with `Last-Event-ID` (or `?after=`) from the last seq it saw. Whatever k,
//! and whether the run is still streaming or long finished, the reader must end up
//! with every event exactly once, in order, and the exact script text.

use crate::{assert_consecutive, finished};
use anyhow::{Context, Result, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::wait::within;
use chorus_tests::{
    ApiClient, Resume, ServerConfig, SseEvent, TestRedis, TestServer, logged_in_client, script,
    unique_name,
};
use futures::StreamExt;
use reqwest::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

const TOKENS: usize = 60;
/// Slow enough (1.5 s for the reply) that most readers resume while the run streams.
const TOKENS_PER_SECOND: f64 = 40.0;
/// One account reads the run 130 times at once here (every k, both ways of resuming),
/// far past the default cap on an account's open event streams.
const STREAMS: i64 = 200;

#[tokio::test(flavor = "multi_thread")]
async fn in_process_journal() -> Result<()> {
    let text = script(TOKENS);
    let server = TestServer::start(
        ServerConfig::new()
            .scripted("s", &text, TOKENS_PER_SECOND)
            .server_setting("max_streams_per_account", STREAMS),
    )
    .await?;
    resume_everywhere(&server, &text).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_journal() -> Result<()> {
    let redis = TestRedis::new().await?;
    let text = script(TOKENS);
    let server = TestServer::start(
        ServerConfig::new()
            .redis_journal(redis.url(), redis.prefix())
            .scripted("s", &text, TOKENS_PER_SECOND)
            .server_setting("max_streams_per_account", STREAMS),
    )
    .await?;
    let (run, total) = resume_everywhere(&server, &text).await?;
    // The events really are in Redis, under this test's key prefix.
    let stored = redis.journal_events(&run).await?;
    ensure!(
        stored.len() == total && stored.last().is_some_and(|(_, e)| e["kind"] == "finished"),
        "Redis holds {} events of the run (want {total}, ending with `finished`)",
        stored.len()
    );
    Ok(())
}

/// What one reader did: the events of both connections, and when it reconnected.
struct Resumed {
    k: usize,
    resume: Resume,
    events: Vec<SseEvent>,
    reconnected_at: Instant,
}

/// Runs the whole scenario on one run; returns its id and number of events.
async fn resume_everywhere(server: &TestServer, text: &str) -> Result<(String, usize)> {
    let client = logged_in_client(server, &unique_name("sse")).await?;
    let conversation = client.create_conversation(None).await?;
    let sent = client.send_message(&conversation, "stream to me").await?;
    let run = sent.run_id.clone();

    // A watcher follows the whole run and notes when it saw `finished`.
    let finished_at: Arc<OnceCell<Instant>> = Arc::new(OnceCell::new());
    let watcher = {
        let (client, run, finished_at) = (client.clone(), run.clone(), finished_at.clone());
        tokio::spawn(async move {
            let events = client.events_to_finished(&run, Resume::Start).await;
            let _ = finished_at.set(Instant::now());
            events
        })
    };

    // Phase 1, live: every k at once, resuming each way, while the run streams.
    // Started + a delta per token (at most) + usage + finished; k goes one past the
    // end of the most there can be.
    let max_k = TOKENS + 4;
    let live = readers(&client, &run, max_k).await?;
    let all = watcher.await.context("the watcher panicked")??;
    let finished_at = *finished_at
        .get()
        .context("the watcher never saw `finished`")?;
    check_complete(&all, text).context("the uninterrupted reader")?;
    let total = all.len();
    // Tokens that reached the run's task together are one delta (the engine joins
    // them), which a loaded machine makes happen now and then: most still come one by
    // one, so the readers' cut points fall all along the reply.
    ensure!(
        total > TOKENS / 2 + 3,
        "only {total} events for {TOKENS} tokens"
    );
    for r in &live {
        check_resumed(r, &all, text)?;
    }
    // The live phase must really have resumed readers mid-run, not only afterwards.
    let mid_run = live
        .iter()
        .filter(|r| r.reconnected_at + Duration::from_millis(100) < finished_at)
        .count();
    ensure!(
        mid_run >= 20,
        "only {mid_run} readers resumed while the run was streaming; the test lost its point"
    );

    // Phase 2, after the run finished: the same from the stored journal.
    let after = readers(&client, &run, total + 1).await?;
    for r in &after {
        check_resumed(r, &all, text)?;
    }

    // `Last-Event-ID` (what a browser sends) wins over `?after=`.
    let resp = client
        .request(Method::GET, &format!("/api/runs/{run}/events?after=3"))
        .header("last-event-id", "10")
        .send()
        .await?;
    ensure!(resp.status() == 200, "GET events: {}", resp.status());
    let body = resp.text().await?;
    let first_id = body
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    ensure!(
        first_id == "11",
        "resumed at id {first_id:?} instead of 11:\n{body}"
    );
    Ok((run, total))
}

/// Starts, for every k in `0..=max_k` and both ways of resuming, a reader that takes
/// k events, hangs up and resumes to the end; waits for all of them.
async fn readers(client: &ApiClient, run: &str, max_k: usize) -> Result<Vec<Resumed>> {
    let mut tasks = Vec::new();
    for k in 0..=max_k {
        for header in [true, false] {
            let (client, run) = (client.clone(), run.to_string());
            tasks.push(tokio::spawn(async move {
                read_k_then_resume(&client, &run, k, header).await
            }));
        }
    }
    let mut out = Vec::new();
    let mut results = futures::stream::iter(tasks).buffered(usize::MAX);
    while let Some(result) = results.next().await {
        out.push(result.context("a reader panicked")??);
    }
    Ok(out)
}

async fn read_k_then_resume(
    client: &ApiClient,
    run: &str,
    k: usize,
    header: bool,
) -> Result<Resumed> {
    let mut first = client.events(run, Resume::Start).await?;
    let mut events = first.take(k).await?;
    drop(first); // hang up mid-stream
    let last_seen = events.last().map_or(0, |e| e.seq);
    let resume = if header {
        Resume::LastEventId(last_seen)
    } else {
        Resume::After(last_seen)
    };
    let reconnected_at = Instant::now();
    let mut second = client.events(run, resume).await?;
    if let Some(end) = events.last().filter(|e| e.is_finished()) {
        // A reader that resumes after `finished` is told the run is over (the same
        // `finished` again) and the stream closes, instead of hanging or looping.
        let again = within(
            "a stream resumed after `finished` to answer and close",
            Duration::from_secs(10),
            second.to_finished(),
        )
        .await
        .with_context(|| format!("k={k}, {resume:?}"))??;
        ensure!(
            again.len() == 1 && again[0].seq == end.seq && again[0].data == end.data,
            "k={k}, {resume:?}: resuming after `finished` gave {again:?}"
        );
    } else {
        let rest = second
            .to_finished()
            .await
            .with_context(|| format!("k={k}, resumed with {resume:?}"))?;
        if let Some(next) = rest.first() {
            ensure!(
                next.seq == last_seen + 1,
                "k={k}, {resume:?}: resumed at seq {} instead of {}",
                next.seq,
                last_seen + 1
            );
        }
        events.extend(rest);
    }
    Ok(Resumed {
        k,
        resume,
        events,
        reconnected_at,
    })
}

/// Every event once, in order, from `started` to `finished: complete`, with the
/// exact script text.
fn check_complete(events: &[SseEvent], text: &str) -> Result<()> {
    assert_consecutive(events, 1)?;
    ensure!(
        events.first().is_some_and(|e| e.kind == "started"),
        "the first event is not `started`: {:?}",
        events.first()
    );
    let end = finished(events)?;
    ensure!(
        end.status() == Some("complete"),
        "finished with {:?}",
        end.data
    );
    let got = delta_text(events);
    ensure!(
        got == text,
        "the delta text differs:\n got: {got:?}\nwant: {text:?}"
    );
    Ok(())
}

fn check_resumed(r: &Resumed, all: &[SseEvent], text: &str) -> Result<()> {
    check_complete(&r.events, text).with_context(|| format!("k={}, {:?}", r.k, r.resume))?;
    ensure!(
        r.events.len() == all.len(),
        "k={}, {:?}: {} events where one uninterrupted reader got {}",
        r.k,
        r.resume,
        r.events.len(),
        all.len()
    );
    for (a, b) in r.events.iter().zip(all) {
        ensure!(
            a.data == b.data,
            "k={}, {:?}: seq {} differs from an uninterrupted reader's: {} vs {}",
            r.k,
            r.resume,
            a.seq,
            a.data,
            b.data
        );
    }
    Ok(())
}
