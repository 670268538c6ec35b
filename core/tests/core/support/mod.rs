//! Fresh stores for the store suites: a SQLite file and a PostgreSQL database each,
//! dropped afterwards. PostgreSQL is required (`CHORUS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`); an unreachable one fails the test.

#![allow(dead_code)]

use chorus_store::Store;
use sqlx::Executor;

pub fn postgres_admin_url() -> String {
    std::env::var("CHORUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A SQLite store in a fresh temp dir, and the dir to remove afterwards.
pub async fn sqlite_store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("chorus-store-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/chorus.db", dir.display());
    let store = Store::connect(&url, None).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    (store, dir)
}

/// Creates a fresh PostgreSQL database; returns its URL and name.
pub async fn postgres_database() -> (String, String) {
    let admin_url = postgres_admin_url();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for this test and is not reachable at {admin_url}: {e} (run scripts/test)")
    });
    let name = format!("chorus_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    (format!("{base}/{name}"), name)
}

pub async fn postgres_store() -> (Store, String) {
    let (url, name) = postgres_database().await;
    let store = Store::connect(&url, Some(8)).await.expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    (store, name)
}

pub async fn drop_pg(name: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(&postgres_admin_url()).await {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

/// A core started on a fresh SQLite data dir, configured by `sections` (TOML after
/// `data_dir`), and the dir to remove afterwards.
pub async fn core_with(sections: &str) -> (chorus_core::Core, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("chorus-core-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!("data_dir = {:?}\n{sections}", dir.display().to_string());
    let config =
        chorus_core::config::Config::from_toml(&toml, &Default::default()).expect("test config");
    let core = chorus_core::Core::start(config).await.expect("start core");
    (core, dir)
}

/// A run's events from its start to `finished`; panics after 20 s without one.
pub async fn events_to_end(
    core: &chorus_core::Core,
    account: &chorus_model::account::Account,
    run: &chorus_model::ids::RunId,
) -> Vec<chorus_core::journal::JournalEntry> {
    use futures::StreamExt;
    let events = core
        .follow_run(account, run, 0)
        .await
        .expect("follow the run")
        .map(|e| e.expect("journal error"))
        .collect();
    tokio::time::timeout(std::time::Duration::from_secs(20), events)
        .await
        .unwrap_or_else(|_| panic!("run {run} did not reach `finished` within 20 s"))
}

/// A new account `alice` says "Hello" in a new conversation with `model`: the
/// account and the message sent (its run streaming).
pub async fn alice_says_hello(
    core: &chorus_core::Core,
    model: &str,
) -> (
    chorus_model::account::Account,
    chorus_core::core::SentMessage,
) {
    let alice = core
        .create_account("alice", false, Some("correct horse battery"))
        .await
        .expect("create alice");
    let conversation = core
        .create_conversation(&alice, None, Some(model), None)
        .await
        .expect("create a conversation");
    let sent = core
        .send_message(&alice, &conversation.id, "Hello", None, None)
        .await
        .expect("send a message");
    (alice, sent)
}

/// The saved text of the reply `sent` started, as its conversation lists it.
pub async fn saved_reply(
    core: &chorus_core::Core,
    account: &chorus_model::account::Account,
    sent: &chorus_core::core::SentMessage,
) -> String {
    let saved = core
        .conversation(account, &sent.conversation_id)
        .await
        .expect("read the conversation");
    saved
        .messages
        .into_iter()
        .find(|m| m.id == sent.assistant_message_id)
        .expect("the reply message")
        .content
}
