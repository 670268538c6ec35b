//! The fault matrix, one table: each row runs the real `chorus` binary (two instances
//! on PostgreSQL and Redis where the fault is about them), injects its fault while a
//! reply streams, and makes the same checks:
//! - every reader that was following gets to `finished` (reconnecting as a browser
//!   does, never left hanging) and shows the run's stored text;
//! - no text past the last checkpoint seen before the fault is lost;
//! - the reply is continued to the exact script;
//! - nothing is charged twice: one ledger entry per run that produced text, and every
//!   balance equals the sum of its ledger.
//!
//! The services a row restarts are private to it (`chorus_tests::private_services`):
//! the machine's shared PostgreSQL and Redis are never touched.
//!
//! | row | fault | injection |
//! |---|---|---|
//! | `redis_restarted` | the journal's Redis restarted (it keeps nothing on disk: the streams are gone) | SIGKILL of a private `redis-server`, started again on its port |
//! | `postgres_restarted` | PostgreSQL restarted | `pg_ctl stop -m immediate` of a private cluster, then `start` |
//! | `past_retention` | a reader comes back after the journal dropped the run | `journal.retention_secs = 1`, the stream's expiry awaited |
//! | `rolling_restart` | both instances restarted one after the other | SIGTERM (drain) and start of A, then of B, replies streaming on both |
//! | `homeserver_gone` | the Matrix homeserver gone mid-reply and back (as across its restart) | the bot reaches the shared Synapse through a forwarder, cut (connections reset, new ones refused) and opened again |
//! | `docker_stopped` | the Docker engine unreachable during a sandbox execution | the server reaches the real engine through a forwarder, cut while the program runs, opened again after |

use crate::quota_support::{COMPLETION_PRICE, PROMPT_PRICE, assert_ledger_balanced, priced};
use crate::{finished, only_assistant, replay_text, s};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::private_services::{PrivatePostgres, PrivateRedis};
use chorus_tests::wait::until;
use chorus_tests::{
    ApiClient, PASSWORD, Resume, ServerConfig, SseEvent, TestDatabase, TestServer, script,
    unique_name,
};
use serde_json::Value;
use std::time::Duration;

/// Tokens of the scripted reply and their pace: about 6 s of streaming, long enough
/// for any fault to land mid-reply.
const TOKENS: usize = 120;
const TOKENS_PER_SECOND: f64 = 20.0;
/// A reader that gets no event for this long while the run streams is hung.
const HANG: Duration = Duration::from_secs(12);
/// How long a row may take to see a run end.
const RUN_END: Duration = Duration::from_secs(40);

/// The faults of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    RedisRestarted,
    PostgresRestarted,
    PastRetention,
    RollingRestart,
}

/// The deployment of one row: a database, a journal and two instances.
struct Rig {
    text: String,
    /// The account's name (its password is [`PASSWORD`]).
    name: String,
    db: TestDatabase,
    /// Kept alive for the row; restarted by the PostgreSQL row.
    pg: Option<PrivatePostgres>,
    redis: PrivateRedis,
    a: TestServer,
    b: TestServer,
    on_a: ApiClient,
    on_b: ApiClient,
}

impl Rig {
    async fn start(fault: Fault) -> Result<Self> {
        let pg = match fault {
            Fault::PostgresRestarted => Some(PrivatePostgres::start().await?),
            _ => None,
        };
        let db = match &pg {
            Some(pg) => TestDatabase::create_on(&pg.url()).await?,
            None => TestDatabase::create().await?,
        };
        let redis = PrivateRedis::start().await?;
        let text = script(TOKENS);
        let mut config = priced(
            ServerConfig::new().postgres(db.url()),
            "[accounts]\ndefault_balance = 1.0\n",
        )
        .redis_journal(&redis.url(), "faults:")
        .lease_ttl_secs(3)
        .checkpoint_interval_ms(200)
        .provider_setting("s", "text", text.as_str())
        .provider_setting("s", "tokens_per_second", TOKENS_PER_SECOND);
        if fault == Fault::PastRetention {
            config = config.raw_toml("[journal]\nretention_secs = 1\n");
        }
        let a = TestServer::start(config.clone().instance_id("faults-a")).await?;
        let b = TestServer::start(config.instance_id("faults-b")).await?;
        let name = unique_name("faults");
        a.create_user(&name, PASSWORD).await?;
        let on_a = a.client();
        on_a.login(&name, PASSWORD).await?;
        let on_b = on_a.same_session_on(&b.url());
        Ok(Self {
            text,
            name,
            db,
            pg,
            redis,
            a,
            b,
            on_a,
            on_b,
        })
    }

    /// A conversation and its first run, sent through `client`.
    async fn start_reply(&self, client: &ApiClient) -> Result<(String, String)> {
        let conversation = client.create_conversation(None).await?;
        let run = client.send_message(&conversation, "go on").await?.run_id;
        Ok((conversation, run))
    }

    async fn check_ledger(&self) -> Result<()> {
        check_ledger(&self.db).await
    }
}

/// The checks every row ends with: one charge per run that produced text, and every
/// balance is its ledger.
async fn check_ledger(db: &TestDatabase) -> Result<()> {
    let pool = db.pool().await?;
    let runs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.id, r.text, CAST((SELECT COUNT(*) FROM ledger l WHERE l.run_id = r.id) AS BIGINT) \
         FROM runs r",
    )
    .fetch_all(&pool)
    .await?;
    ensure!(!runs.is_empty(), "no runs in the database");
    for (run, text, charges) in &runs {
        let expected = i64::from(!text.is_empty());
        ensure!(
            *charges == expected,
            "run {run} ({} bytes of text) has {charges} ledger entries, not {expected}",
            text.len()
        );
    }
    assert_ledger_balanced(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Waits until the run streams and a checkpoint with text is in the database;
/// returns the checkpointed text (what must survive any fault).
async fn checkpointed(client: &ApiClient, conversation: &str) -> Result<String> {
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

/// Waits until `run` has ended; returns its view.
async fn ended(client: &ApiClient, run: &str) -> Result<Value> {
    until("the run to end", RUN_END, || async {
        let view = client.run(run).await?;
        Ok((!matches!(s(&view, "status"), "streaming" | "queued")).then_some(view))
    })
    .await
}

/// A reader that follows a run as a browser does: when its stream breaks, ends early
/// or cannot be opened (a server restarting, a service down), it reconnects with the
/// `Last-Event-ID` of the last event it got; it fails if no event comes for [`HANG`]
/// while the stream is open, or the run does not end within [`RUN_END`].
struct Reader {
    client: ApiClient,
    run: String,
    events: Vec<SseEvent>,
    reconnects: usize,
}

impl Reader {
    fn new(client: &ApiClient, run: &str) -> Self {
        Self {
            client: client.clone(),
            run: run.to_string(),
            events: Vec::new(),
            reconnects: 0,
        }
    }

    /// Reads until `k` more events came (or `finished`).
    async fn read(&mut self, k: usize) -> Result<()> {
        self.read_until(|events, before| events.len() >= before + k)
            .await
    }

    /// Reads to `finished`; returns the text it shows.
    async fn follow_to_end(&mut self) -> Result<String> {
        self.read_until(|_, _| false).await?;
        Ok(replay_text(&self.events))
    }

    /// Reads to `finished`; returns every event.
    async fn into_events_to_end(mut self) -> Result<Vec<SseEvent>> {
        self.read_until(|_, _| false).await?;
        Ok(self.events)
    }

    async fn read_until(
        &mut self,
        mut enough: impl FnMut(&[SseEvent], usize) -> bool,
    ) -> Result<()> {
        let before = self.events.len();
        let deadline = tokio::time::Instant::now() + RUN_END;
        loop {
            if self.events.last().is_some_and(SseEvent::is_finished) || enough(&self.events, before)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the reader of run {} did not reach `finished` within {RUN_END:?} ({} events, {} reconnects)",
                    self.run,
                    self.events.len(),
                    self.reconnects
                );
            }
            let resume = match self.events.last() {
                Some(e) => Resume::LastEventId(e.seq),
                None => Resume::Start,
            };
            let mut stream = match self.client.events(&self.run, resume).await {
                Ok(stream) => stream,
                Err(_) => {
                    // The browser's EventSource retries after its `retry` delay.
                    self.reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            loop {
                if self.events.last().is_some_and(SseEvent::is_finished)
                    || enough(&self.events, before)
                {
                    return Ok(());
                }
                match tokio::time::timeout(HANG, stream.next()).await {
                    Err(_) => bail!(
                        "the reader of run {} hung: no event for {HANG:?} after {} events",
                        self.run,
                        self.events.len()
                    ),
                    Ok(Ok(Some(event))) => self.events.push(event),
                    // Closed or broken: reconnect.
                    Ok(Ok(None)) | Ok(Err(_)) => {
                        self.reconnects += 1;
                        break;
                    }
                }
            }
        }
    }
}

/// Continues `run` (which ended with `partial`) through `client` and follows the
/// continuation; fails unless the message ends as exactly the script.
async fn continue_to_script(
    client: &ApiClient,
    conversation: &str,
    run: &str,
    text: &str,
) -> Result<String> {
    let continuation = client.continue_run(run).await?;
    let shown = Reader::new(client, &continuation).follow_to_end().await?;
    let view = ended(client, &continuation).await?;
    ensure!(s(&view, "status") == "complete", "the continuation: {view}");
    let messages = client.messages(conversation).await?;
    let content = s(only_assistant(&messages)?, "content");
    ensure!(
        content == text,
        "the message after continue is\n{content:?}\nnot the script\n{text:?}"
    );
    ensure!(
        text.ends_with(&shown) || shown == text,
        "the continuation's reader showed {shown:?}, not the end of the script"
    );
    Ok(continuation)
}

/// Checks an ended run: its stored text keeps at least `checkpointed` and is the
/// script or a prefix of it; `reader` (which followed it through the fault) shows
/// that same text, the stored message too.
async fn check_ended(
    rig: &Rig,
    client: &ApiClient,
    conversation: &str,
    run: &str,
    checkpointed: &str,
    reader: &mut Reader,
) -> Result<Value> {
    let view = ended(client, run).await?;
    let stored = s(&view, "text").to_string();
    ensure!(
        rig.text.starts_with(&stored),
        "the run's text is not a prefix of the script: {stored:?}"
    );
    ensure!(
        stored.starts_with(checkpointed),
        "the run kept {stored:?}, less than the checkpoint {checkpointed:?} seen before the fault"
    );
    let shown = reader.follow_to_end().await?;
    ensure!(
        shown == stored,
        "a reader that followed the fault shows\n{shown:?}\nnot the run's text\n{stored:?}\n(events: {:?})",
        reader
            .events
            .iter()
            .map(|e| (e.seq, e.kind.as_str()))
            .collect::<Vec<_>>()
    );
    ensure!(
        finished(&reader.events)?.status() == Some(s(&view, "status")),
        "the reader's `finished` says {:?}, the run is {view}",
        finished(&reader.events)?.data
    );
    let messages = client.messages(conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == stored);
    Ok(view)
}

/// Ends the run if the fault left it streaming (a stop, as a user would), so that
/// every row shows that the reply can be continued.
async fn stop_if_streaming(client: &ApiClient, run: &str) -> Result<()> {
    let view = client.run(run).await?;
    if matches!(s(&view, "status"), "streaming" | "queued") {
        client.stop(run).await?;
    }
    Ok(())
}

/// Whether both instances are ready (`/readyz`): their journal and database answer.
async fn ready(rig: &Rig) -> Result<()> {
    for server in [&rig.a, &rig.b] {
        let url = format!("{}/readyz", server.url());
        until(
            "the instance to be ready again",
            Duration::from_secs(20),
            || {
                let url = url.clone();
                async move {
                    Ok(reqwest::get(&url)
                        .await?
                        .status()
                        .is_success()
                        .then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// The Docker row: one instance (the fault is the engine's, not the instances'),
/// whose sandbox reaches the real engine through a forwarder. The model runs a
/// program that sleeps; the forwarder is cut while it runs (connections reset, new
/// ones refused, as an engine that stopped). The run must end by itself (the tool
/// call answered with an error, the model's text after it), and once the engine is
/// back, its container must be gone and the sandbox work again.
async fn docker_stopped() -> Result<()> {
    use crate::mcp_tools::{result_for, set_tools};
    use crate::sandbox_tool::{containers, docker_host, tool_names};
    use serde_json::json;
    let socket = docker_host()
        .strip_prefix("unix://")
        .map(str::to_string)
        .context("the test Docker engine is not a unix:// socket")?;
    let mut engine = chorus_tests::tcp_forward::Forwarder::closed()?;
    engine.open_unix(&socket).await?;
    let slow = format!(
        "@call code_interpreter {}\nThe sandbox said: {{{{tool_results}}}}",
        json!({"language": "python", "code": "import time\nprint('started', flush=True)\ntime.sleep(30)\nprint('done')"})
    );
    let quick = format!(
        "@call code_interpreter {}\nThe sandbox said: {{{{tool_results}}}}",
        json!({"language": "python", "code": "print(6 * 7)"})
    );
    let db = TestDatabase::create().await?;
    let instance = unique_name("faults-docker");
    let server = TestServer::start(
        ServerConfig::new()
            .postgres(db.url())
            .instance_id(&instance)
            .scripted("slow", &slow, 200.0)
            .scripted("quick", &quick, 200.0)
            .provider_setting("slow", "model_info", prices())
            .provider_setting("quick", "model_info", prices())
            .raw_toml("[quota]\nenabled = true\nreserve_output_tokens = 16\n[accounts]\ndefault_balance = 1.0\n")
            .raw_toml(&format!(
                // Plain HTTP on loopback, to the forwarder in front of the socket.
                "[sandbox]\nenabled = true\nallow_insecure_tcp = true\ndocker_host = \"{}\"\n",
                engine.url()
            )),
    )
    .await?;
    let name = unique_name("faults");
    server.create_user(&name, PASSWORD).await?;
    let client = server.client();
    client.login(&name, PASSWORD).await?;

    let conversation = client.create_conversation(Some("slow/demo")).await?;
    set_tools(&client, &conversation, json!(["code_interpreter"])).await?;
    let run = client.send_message(&conversation, "sleep").await?.run_id;
    let mut reader = Reader::new(&client, &run);
    until(
        "the sandbox program to run",
        Duration::from_secs(30),
        || async {
            let out = std::process::Command::new("docker")
                .args([
                    "-H",
                    &docker_host(),
                    "ps",
                    "-q",
                    "--filter",
                    "status=running",
                ])
                .arg("--filter")
                .arg(format!("label=chorus.sandbox.instance={instance}"))
                .output()?;
            Ok((!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(()))
        },
    )
    .await?;
    engine.cut();

    let view = ended(&client, &run).await?;
    ensure!(
        s(&view, "status") == "complete",
        "the run after the cut: {view}"
    );
    let shown = reader.follow_to_end().await?;
    let result = result_for(&reader.events, "code_interpreter")?;
    // The model is told the execution broke off and why (killed, Docker unreachable).
    let output = result.data["output"].as_str().unwrap_or_default();
    ensure!(
        result.data["is_error"] == true || output.contains("Docker:"),
        "the execution cut off from Docker does not say so: {result:?}"
    );
    ensure!(
        shown == s(&view, "text") && shown.starts_with("The sandbox said: "),
        "the reader shows {shown:?}, the run {view}"
    );
    let messages = client.messages(&conversation).await?;
    ensure!(s(only_assistant(&messages)?, "content") == shown);

    // The engine is back: the containers go (each removal is retried every second;
    // a force-removal under the whole suite's Docker load can take a while), the
    // sandbox works again.
    engine.open_unix(&socket).await?;
    let removed = until(
        "the cut-off execution's containers to be removed",
        Duration::from_secs(60),
        || async { Ok(containers(&instance)?.is_empty().then_some(())) },
    )
    .await;
    if let Err(e) = removed {
        let left = std::process::Command::new("docker")
            .args(["-H", &docker_host(), "ps", "-a", "--no-trunc", "--filter"])
            .arg(format!("label=chorus.sandbox.instance={instance}"))
            .args(["--format", "{{.ID}} {{.Status}} {{.Labels}}"])
            .output()?;
        return Err(e.context(format!("left: {}", String::from_utf8_lossy(&left.stdout))));
    }
    until(
        "code_interpreter to be offered again",
        Duration::from_secs(30),
        || async {
            Ok(tool_names(&client)
                .await?
                .iter()
                .any(|n| n == "code_interpreter")
                .then_some(()))
        },
    )
    .await?;
    let again = client.create_conversation(Some("quick/demo")).await?;
    set_tools(&client, &again, json!(["code_interpreter"])).await?;
    let run = client.send_message(&again, "compute").await?.run_id;
    let events = Reader::new(&client, &run).into_events_to_end().await?;
    let result = result_for(&events, "code_interpreter")?;
    ensure!(
        result.data["is_error"] == false
            && result.data["output"]
                .as_str()
                .unwrap_or_default()
                .contains("42"),
        "the sandbox after the engine came back: {result:?}"
    );
    ensure!(containers(&instance)?.is_empty(), "a container was left");
    check_ledger(&db).await
}

/// The Matrix row: the bot reaches the test Synapse through a forwarder (the
/// Synapse is shared by the Matrix tests of the process and cannot be restarted
/// under them), cut while the bot edits its reply and opened again: the bot must
/// finish the same message, to exactly the script, and charge the run once.
async fn homeserver_gone() -> Result<()> {
    use crate::matrix_support::*;
    use chorus_tests::tcp_forward::Forwarder;
    let text = script(40);
    let db = TestDatabase::create().await?;
    let mut homeserver = Forwarder::closed()?;
    let config = priced(
        ServerConfig::new().postgres(db.url()),
        "[accounts]\ndefault_balance = 1.0\n",
    )
    .checkpoint_interval_ms(200)
    .provider_setting("s", "text", text.as_str())
    .provider_setting("s", "tokens_per_second", 8.0);
    let synapse = chorus_tests::synapse::Synapse::shared().await?;
    let address = synapse
        .url()
        .trim_start_matches("http://")
        .parse()
        .context("the shared Synapse's address")?;
    homeserver.open(address).await?;
    let world =
        MatrixWorld::start_via(config, BotOptions::default(), Some(&homeserver.url())).await?;
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let bot = world.bot_id().to_string();

    let question = alice.send_text(&room, "long answer please").await?;
    let first = alice.first_reply(&room, &bot, &question, WAIT).await?;
    let before = wait_partial(&alice, &room, &bot, &first.event_id, 20).await?;
    ensure!(
        text.starts_with(&before.text) && before.text.len() < text.len(),
        "before the cut the message shows {:?}, not a partial script",
        before.text
    );
    homeserver.cut();
    // The reply ends on the server while the homeserver is away.
    let pool = db.pool().await?;
    until("the reply to end on the server", RUN_END, || async {
        let streaming: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'streaming')")
                .fetch_one(&pool)
                .await?;
        Ok((streaming == 0).then_some(()))
    })
    .await?;
    pool.close().await;
    homeserver.open(address).await?;

    finished_in_place(&alice, &room, &bot, &question, &first.event_id, &text).await?;
    check_ledger(&db).await
}

/// The scripted model's prices (`model_info` of its provider), as the other rows'.
fn prices() -> toml::Value {
    let mut demo = toml::Table::new();
    demo.insert("prompt_price".into(), PROMPT_PRICE.into());
    demo.insert("completion_price".into(), COMPLETION_PRICE.into());
    let mut info = toml::Table::new();
    info.insert("demo".into(), toml::Value::Table(demo));
    toml::Value::Table(info)
}

/// One row: a reply streaming on A, read on B; the fault; the checks.
async fn row(fault: Fault) -> Result<()> {
    let mut rig = Rig::start(fault).await?;
    if fault == Fault::RollingRestart {
        return rolling_restart(rig).await;
    }
    let (conversation, run) = rig.start_reply(&rig.on_a).await?;
    let mut reader = Reader::new(&rig.on_b, &run);
    reader.read(3).await?;
    let checkpointed = checkpointed(&rig.on_a, &conversation).await?;
    match fault {
        Fault::RedisRestarted => {
            rig.redis.kill()?;
            rig.redis.start_again().await?;
            // The reply goes on: the reader gets new text after the restart.
            let before = replay_text(&reader.events).len();
            reader.read(5).await?;
            ensure!(
                replay_text(&reader.events).len() > before,
                "no text after the restart"
            );
            ready(&rig).await?;
            // The limits count in the same Redis: logging in works again on both.
            for server in [&rig.a, &rig.b] {
                server.client().login(&rig.name, PASSWORD).await?;
            }
            stop_if_streaming(&rig.on_b, &run).await?;
        }
        Fault::PostgresRestarted => {
            rig.pg
                .as_ref()
                .context("the row has no private PostgreSQL")?
                .restart_immediate()
                .await?;
            ready(&rig).await?;
            reader.read(5).await?;
            stop_if_streaming(&rig.on_b, &run).await?;
        }
        Fault::PastRetention => {
            // The reader hangs up mid-reply; the reply is stopped and its journal
            // expires before the reader comes back.
            let gone = reader.events.len();
            stop_if_streaming(&rig.on_a, &run).await?;
            ended(&rig.on_a, &run).await?;
            let key = format!("faults:run:{run}");
            let redis = redis::Client::open(rig.redis.url())?;
            until(
                "the run's journal to expire",
                Duration::from_secs(10),
                || {
                    let redis = redis.clone();
                    let key = key.clone();
                    async move {
                        let mut conn = redis.get_multiplexed_async_connection().await?;
                        let exists: i64 = redis::cmd("EXISTS")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await?;
                        Ok((exists == 0).then_some(()))
                    }
                },
            )
            .await?;
            // Back, on either instance, by Last-Event-ID and by `?after=`.
            let after = reader.events[gone - 1].seq;
            let by_query = rig
                .on_a
                .events_to_finished(&run, Resume::After(after))
                .await?;
            ensure!(
                by_query.first().map(|e| e.kind.as_str()) == Some("snapshot"),
                "a reader back past retention got {by_query:?}"
            );
            let view = rig.on_a.run(&run).await?;
            ensure!(
                replay_text(&by_query) == s(&view, "text"),
                "the snapshot is {:?}, the run's text {:?}",
                replay_text(&by_query),
                s(&view, "text")
            );
        }
        Fault::RollingRestart => unreachable!("handled above"),
    }
    let view = check_ended(
        &rig,
        &rig.on_b,
        &conversation,
        &run,
        &checkpointed,
        &mut reader,
    )
    .await?;
    if fault == Fault::RedisRestarted {
        // The restarted Redis lost the run's stream: it starts again with the text so
        // far, which the reader was sent.
        ensure!(
            reader.events.iter().any(|e| e.kind == "snapshot"),
            "no snapshot reached the reader after Redis lost the run's events"
        );
    }
    if s(&view, "status") == "complete" {
        // The reply outran the stop (a slow machine): it is whole already.
        ensure!(s(&view, "text") == rig.text, "the completed reply: {view}");
    } else {
        continue_to_script(&rig.on_b, &conversation, &run, &rig.text).await?;
    }
    rig.check_ledger().await
}

/// Both instances restarted one after the other, each stopped with SIGTERM (the
/// drain an orchestrator asks for) while a reply streams on it and is read on the
/// other; each reply is continued on the instance that stayed up, and the second
/// restart lands while that continuation streams.
async fn rolling_restart(mut rig: Rig) -> Result<()> {
    let (conv_a, run_a) = rig.start_reply(&rig.on_a).await?;
    let (conv_b, run_b) = rig.start_reply(&rig.on_b).await?;
    let mut read_a = Reader::new(&rig.on_b, &run_a);
    let mut read_b = Reader::new(&rig.on_a, &run_b);
    read_a.read(3).await?;
    read_b.read(3).await?;
    let cp_a = checkpointed(&rig.on_a, &conv_a).await?;

    // A drains: its reply ends `interrupted`, read to its end from B.
    rig.a.terminate(Duration::from_secs(20)).await?;
    let view = check_ended(&rig, &rig.on_b, &conv_a, &run_a, &cp_a, &mut read_a).await?;
    ensure!(
        s(&view, "status") == "interrupted",
        "A's reply after SIGTERM: {view}"
    );
    // Continued on B while A comes back.
    let cont_a = rig.on_b.continue_run(&run_a).await?;
    rig.a.restart().await?;
    let mut read_cont_a = Reader::new(&rig.on_a, &cont_a);
    read_cont_a.read(3).await?;

    // B drains: its own reply and A's continuation end `interrupted`.
    let cp_b = checkpointed(&rig.on_a, &conv_b).await?;
    rig.b.terminate(Duration::from_secs(20)).await?;
    let view = check_ended(&rig, &rig.on_a, &conv_b, &run_b, &cp_b, &mut read_b).await?;
    ensure!(
        s(&view, "status") == "interrupted",
        "B's reply after SIGTERM: {view}"
    );
    let cont_view = ended(&rig.on_a, &cont_a).await?;
    ensure!(
        s(&cont_view, "status") == "interrupted",
        "A's continuation on B after SIGTERM: {cont_view}"
    );
    let shown = read_cont_a.follow_to_end().await?;
    let messages = rig.on_a.messages(&conv_a).await?;
    let stored_a = s(only_assistant(&messages)?, "content").to_string();
    ensure!(
        stored_a.ends_with(&shown) && rig.text.starts_with(&stored_a),
        "A's continuation: its reader shows {shown:?}, the message is {stored_a:?}"
    );
    rig.b.restart().await?;

    continue_to_script(&rig.on_b, &conv_b, &run_b, &rig.text).await?;
    continue_to_script(&rig.on_b, &conv_a, &cont_a, &rig.text).await?;
    rig.check_ledger().await
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted() -> Result<()> {
    row(Fault::RedisRestarted).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted() -> Result<()> {
    row(Fault::PostgresRestarted).await
}

#[tokio::test(flavor = "multi_thread")]
async fn past_retention() -> Result<()> {
    row(Fault::PastRetention).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_restart_of_both_instances() -> Result<()> {
    row(Fault::RollingRestart).await
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_stopped_during_an_execution() -> Result<()> {
    docker_stopped().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_homeserver_gone_mid_reply() -> Result<()> {
    homeserver_gone().await
}
