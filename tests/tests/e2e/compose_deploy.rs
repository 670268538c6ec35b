//! The compose deployment (`deploy/compose.yaml`) as shipped, run on the local Docker
//! engine with the images `scripts/container-image` builds without a registry (the
//! Chorus image from the binary under test): a reply sent through the proxy, the
//! instance running it killed mid-reply, the reply read and continued through the
//! proxy on the other instance, then `down -v` leaves nothing behind.
//!
//! The model is a fake OpenAI-compatible API on the host, bound to the compose
//! network's gateway address so the containers reach it; it streams slowly enough
//! that the reply is in flight when the instance dies.

use crate::{assert_consecutive, assert_proper_prefix, finished, only_assistant, replay_text, s};
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::client::delta_text;
use chorus_tests::compose::{self, Compose};
use chorus_tests::fake_script_model::FakeScriptModel;
use chorus_tests::wait::until;
use chorus_tests::{ApiClient, PASSWORD, Resume, chorus_bin, script, server::free_port};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The reply: long enough to be cut off mid-way at the fake's pace.
const TOKENS: usize = 60;
/// One piece every 100 ms: six seconds for the whole reply, so the kill lands in it.
const PACE: Duration = Duration::from_millis(100);
/// The continuation streams fast: what it proves is where it runs, not timing.
const CONTINUATION_PACE: Duration = Duration::from_millis(5);
const API_KEY: &str = "sk-compose-test";
const INSTANCES: [&str; 2] = ["chorus-1", "chorus-2"];

fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `SELECT lease_owner FROM runs WHERE id = RUN` through psql in the postgres container.
async fn lease_owner(compose: &Compose, run: &str) -> Result<String> {
    ensure!(
        run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "not a run id: {run:?}"
    );
    let sql = format!("SELECT lease_owner FROM runs WHERE id = '{run}'");
    let out = compose
        .exec(
            "postgres",
            &["psql", "-U", "chorus", "-d", "chorus", "-Atc", &sql],
            None,
        )
        .await?;
    Ok(out.trim().to_string())
}

/// Waits until both instances answer their health check and the proxy serves.
async fn wait_serving(compose: &Compose, proxy: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    until(
        "both instances healthy behind the proxy",
        Duration::from_secs(120),
        || async {
            for service in INSTANCES {
                let health = compose.inspect(service, "{{.State.Health.Status}}").await?;
                match health.as_str() {
                    "healthy" => {}
                    "starting" => return Ok(None),
                    other => bail!("{service} is {other}:\n{}", compose.logs(service).await),
                }
            }
            let ready = http.get(format!("{proxy}/readyz")).send().await;
            Ok(ready.is_ok_and(|r| r.status().is_success()).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_deployment_survives_the_instance_running_a_reply() -> Result<()> {
    let started = Instant::now();
    let host = compose::docker_host().await?;
    let images = compose::build_images(&host, &chorus_bin()?).await?;
    let built = started.elapsed();

    let port = free_port()?;
    let proxy = format!("http://127.0.0.1:{port}");
    let mut env: BTreeMap<String, String> = images;
    for (k, v) in [
        ("POSTGRES_PASSWORD", random_secret()),
        ("REDIS_PASSWORD", random_secret()),
        ("OPENAI_API_KEY", API_KEY.to_string()),
        ("CHORUS_BIND_ADDRESS", "127.0.0.1".to_string()),
        ("CHORUS_HTTP_PORT", port.to_string()),
        ("CHORUS_PUBLIC_URL", proxy.clone()),
        // A dead instance's run is taken over within seconds, not the default 15.
        ("CHORUS_ENGINE__LEASE_TTL_SECS", "3".to_string()),
        ("CHORUS_ENGINE__CHECKPOINT_INTERVAL_MS", "200".to_string()),
        // The test sends as fast as it needs.
        ("CHORUS_LIMITS__MESSAGES_PER_WINDOW", "0".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    let project = format!("chorus-e2e-{}", &random_secret()[..10]);
    let file = compose::repo_root().join("deploy/compose.yaml");
    let mut compose = Compose::new(&host, &file, &project, env).await?;

    // The databases first: that makes the network, whose gateway is where the
    // containers reach the fake model on the host.
    compose.up(&["postgres", "redis"]).await?;
    let gateway = compose.network_gateway().await?;
    let text = script(TOKENS);
    let model = FakeScriptModel::spawn(
        SocketAddr::new(gateway, 0),
        &text,
        API_KEY,
        PACE,
        CONTINUATION_PACE,
    )
    .await?;
    compose.set_env("OPENAI_BASE_URL", &model.base_url())?;
    compose.up(&[]).await?;
    wait_serving(&compose, &proxy).await?;
    let up = started.elapsed();

    // An account and its key, made with the CLI inside an instance's container.
    compose
        .exec(
            "chorus-1",
            &[
                "/usr/local/bin/chorus",
                "user",
                "create",
                "alice",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await?;
    let key = compose
        .exec(
            "chorus-1",
            &["/usr/local/bin/chorus", "apikey", "create", "alice"],
            None,
        )
        .await?;
    let client = ApiClient::with_api_key(&proxy, key.trim());

    let conversation = client
        .create_conversation(Some("openai/gpt-4o-mini"))
        .await?;
    let run = client.send_message(&conversation, "go").await?.run_id;
    // A reader through the proxy sees the reply streaming.
    let mut reader = client.events(&run, Resume::Start).await?;
    let seen = reader.take(5).await?;
    let last_seen = seen.last().context("no events before the kill")?.seq;
    ensure!(
        !delta_text(&seen).is_empty() && !seen.iter().any(|e| e.is_finished()),
        "the reply is not in flight: {seen:?}"
    );
    let owner = lease_owner(&compose, &run).await?;
    let other = match owner.as_str() {
        "chorus-1" => "chorus-2",
        "chorus-2" => "chorus-1",
        _ => bail!("the run's lease is held by {owner:?}, not by an instance"),
    };
    compose.kill(&owner).await?;
    drop(reader);

    // The other instance marks the run interrupted once the lease lapses, with all the
    // text the journal held; a reader resuming through the proxy gets the rest of the
    // events, exactly once, and the end.
    let view: Value = until(
        "the run to be marked interrupted",
        Duration::from_secs(30),
        || async {
            let view = client.run(&run).await?;
            match s(&view, "status") {
                "interrupted" => Ok(Some(view)),
                "streaming" | "queued" => Ok(None),
                other => bail!("the run ended {other}, not interrupted: {view}"),
            }
        },
    )
    .await?;
    let recovered = s(&view, "text").to_string();
    assert_proper_prefix(&recovered, &text)?;
    let resumed = client
        .events_to_finished(&run, Resume::LastEventId(last_seen))
        .await?;
    assert_consecutive(&resumed, last_seen + 1)?;
    ensure!(
        finished(&resumed)?.status() == Some("interrupted"),
        "the resumed stream ended with {:?}",
        resumed.last()
    );
    let mut shown = seen.clone();
    shown.extend(resumed);
    ensure!(
        replay_text(&shown) == recovered,
        "the reader shows {:?}, not the recovered {recovered:?}",
        replay_text(&shown)
    );

    // Continued through the proxy: the surviving instance runs it to the script's end.
    let continuation = client.continue_run(&run).await?;
    let events = client
        .events_to_finished(&continuation, Resume::Start)
        .await?;
    assert_consecutive(&events, 1)?;
    ensure!(finished(&events)?.status() == Some("complete"));
    ensure!(
        delta_text(&events) == text[recovered.len()..],
        "the continuation streamed {:?}",
        delta_text(&events)
    );
    ensure!(
        lease_owner(&compose, &continuation).await? == other,
        "the continuation did not run on {other}"
    );
    let messages = client.messages(&conversation).await?;
    ensure!(
        s(only_assistant(&messages)?, "content") == text,
        "the message after continue is {:?}",
        s(only_assistant(&messages)?, "content")
    );
    let requests = model.requests();
    ensure!(
        requests.len() == 2 && requests[1].continues.as_deref() == Some(recovered.as_str()),
        "the model was asked {requests:?}"
    );
    let replied = started.elapsed();

    // `down -v` removes every container, volume and network of the project.
    let volumes = compose.mounted_volumes().await?;
    ensure!(
        volumes.len() >= 4,
        "the project's containers mount {volumes:?}, not its four volumes"
    );
    let left = compose.down(&volumes).await?;
    ensure!(
        left.is_empty(),
        "`down -v` left {left:?} of {}",
        compose.project()
    );
    eprintln!(
        "compose test: images {built:.1?}, up {:.1?}, reply/kill/continue {:.1?}, down {:.1?}; \
         total {:.1?}",
        up - built,
        replied - up,
        started.elapsed() - replied,
        started.elapsed()
    );
    Ok(())
}

/// `debian_mirror SUITE` of `scripts/lib/debian.sh`, with the apt sources in `dir`.
fn mirror_for(dir: &std::path::Path, suite: &str) -> Result<String> {
    let lib = compose::repo_root().join("scripts/lib/debian.sh");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; . '{}'; debian_mirror {suite}",
            lib.display()
        ))
        .env("APT_SOURCES_DIR", dir)
        .env_remove("DEBIAN_MIRROR")
        .output()?;
    ensure!(
        out.status.success(),
        "debian_mirror failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Both image scripts build from the mirror this machine's apt sources use for the
/// suite (deb822 `.sources` first, then one-line lists), skipping disabled entries and
/// other suites, with deb.debian.org when none carries it.
#[test]
fn image_scripts_take_the_mirror_from_the_apt_sources() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lists = dir.path().join("sources.list.d");
    std::fs::create_dir_all(&lists)?;
    ensure!(mirror_for(dir.path(), "bookworm")? == "http://deb.debian.org/debian");
    std::fs::write(
        dir.path().join("sources.list"),
        "# a comment\ndeb-src http://src.example/debian bookworm main\n\
         deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n",
    )?;
    ensure!(mirror_for(dir.path(), "bookworm")? == "http://list.example/debian");
    std::fs::write(
        lists.join("debian.sources"),
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n\
         Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n\n\
         # the mirror\nTypes: deb deb-src\nURIs: https://deb822.example/debian\n\
         Suites: bookworm bookworm-updates\nComponents: main\n",
    )?;
    ensure!(mirror_for(dir.path(), "bookworm")? == "https://deb822.example/debian");
    ensure!(mirror_for(dir.path(), "trixie")? == "http://deb.debian.org/debian");
    Ok(())
}
