//! The mission's signature flow, as a person does it: a Matrix user who has been
//! chatting with the bot gets a link code from the web chat client's account dialog
//! (headless Chromium, driven by tests/browser/account_link.mjs), sends
//! `!chorus link CODE` to the bot on a real Synapse, and then sees the Matrix
//! conversation in the web client's list and the Matrix identity among the sign-in
//! methods.

use crate::matrix_support::*;
use anyhow::{Context, Result, bail, ensure};
use chorus_tests::{PASSWORD, logged_in_client, unique_name};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const REPLY: &str = "The Matrix side of the story, told in full.";

/// How long the browser may take for one step (start, log in, a page load).
const BROWSER_STEP: Duration = Duration::from_secs(60);

/// The next JSON line the driver prints; its `error` fails the test.
async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Result<Value> {
    let line = tokio::time::timeout(BROWSER_STEP, lines.next_line())
        .await
        .with_context(|| format!("the browser driver did not print {what} in time"))??
        .with_context(|| format!("the browser driver ended before printing {what}"))?;
    let value: Value = serde_json::from_str(&line)
        .with_context(|| format!("the browser driver printed {line:?} instead of {what}"))?;
    if let Some(error) = value.get("error") {
        bail!(
            "the browser driver failed before {what}: {}",
            error.as_str().unwrap_or_default()
        );
    }
    Ok(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_code_from_the_web_dialog_redeemed_in_matrix() -> Result<()> {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "{} is missing: run scripts/test (it runs npm ci in tests/browser)",
        browser_dir.join("node_modules/playwright-core").display()
    );
    ensure!(
        std::path::Path::new(&chromium).is_file(),
        "Chromium not found at {chromium}: install it (apt-get install chromium) or set CHROMIUM_PATH"
    );

    let world = MatrixWorld::start(REPLY, 50.0, BotOptions::default()).await?;
    let bot = world.bot_id().to_string();
    let name = unique_name("web");
    let web = logged_in_client(&world.server, &name).await?;

    // The Matrix user has a conversation of their own with the bot.
    let alice = world.human("alice").await?;
    let room = world.dm(&alice).await?;
    let question = alice
        .send_text(&room, "what about the Matrix side?")
        .await?;
    wait_text(&alice, &room, &bot, &question, REPLY).await?;

    // The web account gets a code in the browser.
    let screenshot = std::env::temp_dir().join("chorus-account-link-matrix.png");
    let mut driver = Command::new("node")
        .arg(browser_dir.join("account_link.mjs"))
        .env("CHORUS_URL", world.server.url())
        .env("CHORUS_USER", &name)
        .env("CHORUS_PASSWORD", PASSWORD)
        .env("CHROMIUM_PATH", &chromium)
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node (install Node.js)")?;
    let mut stdin = driver.stdin.take().context("driver stdin")?;
    let mut lines = BufReader::new(driver.stdout.take().context("driver stdout")?).lines();
    let issued = next_json(&mut lines, "the link code").await?;
    let code = issued["code"].as_str().context("no code")?.to_string();
    let expires_at = issued["expires_at"].as_i64().context("no expiry")?;
    let now = now_ms();
    ensure!(
        expires_at > now + 9 * 60_000 && expires_at <= now + 10 * 60_000,
        "the code expires at {expires_at}, not in about 10 minutes from {now}"
    );
    ensure!(
        issued["expiry"]
            .as_str()
            .is_some_and(|e| e.contains("left")),
        "the dialog does not show the time left: {issued}"
    );
    // The Matrix user redeems it.
    let sent = alice
        .send_text(&room, &format!("!chorus link {code}"))
        .await?;
    let answer = alice.first_reply(&room, &bot, &sent, WAIT).await?;
    ensure!(
        !answer.text.starts_with('⚠') && !answer.text.to_lowercase().contains("invalid"),
        "`!chorus link` answered {:?}",
        answer.text
    );

    // The web account now holds the Matrix conversation: the browser lists it.
    let listed: Value = web.get("/api/conversations").await?.json().await?;
    let titles: Vec<String> = listed["conversations"]
        .as_array()
        .context("no conversations")?
        .iter()
        .filter_map(|c| c["title"].as_str().map(str::to_string))
        .collect();
    ensure!(titles.len() == 1, "the web account lists {titles:?}");
    let id = listed["conversations"][0]["id"].as_str().context("no id")?;
    let messages = web.messages(id).await?;
    ensure!(
        messages
            .first()
            .is_some_and(|m| m["content"] == "what about the Matrix side?")
            && messages.iter().any(|m| m["content"] == REPLY),
        "the listed conversation is not the Matrix one: {messages:?}"
    );
    stdin.write_all(b"linked\n").await?;
    stdin.flush().await?;
    let seen = next_json(&mut lines, "the conversation list").await?;
    let shown: Vec<&str> = seen["conversations"]
        .as_array()
        .context("no conversations")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        shown == [titles[0].as_str()],
        "the web list shows {shown:?}; the Matrix conversation is {:?}",
        titles[0]
    );
    // The dialog labels a Matrix identity with the user's name on their server.
    let localpart = alice
        .user_id()
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default();
    let identities = seen["identities"].to_string();
    ensure!(
        identities.contains(&format!("\"Matrix — {localpart}")),
        "the sign-in methods do not list the Matrix identity: {identities}"
    );
    ensure!(
        seen["page_errors"] == serde_json::json!([])
            && seen["csp_violations"] == serde_json::json!([]),
        "the page recorded errors: {seen}"
    );
    let status = tokio::time::timeout(BROWSER_STEP, driver.wait()).await??;
    ensure!(status.success(), "the browser driver ended with {status}");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
