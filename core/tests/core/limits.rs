//! What the limits do when their counter store fails: one setting,
//! `limits.on_store_error`, decides for the message limit, the login guessing limit
//! and the link code guessing limit alike. The failure is real: Chorus connects to
//! Redis as a user whose ACL refuses the string commands the counters use, while the
//! journal's commands (streams, its append script, pub/sub on its prefix) still work.

use chorus_core::config::Config;
use chorus_core::{Core, CoreError};
use chorus_store::Identity;
use std::collections::BTreeMap;

/// A Redis user that may use the journal but not counters, and the URL to connect as it.
async fn counterless_redis_user(
    prefix: &str,
) -> (String, String, redis::aio::MultiplexedConnection) {
    let base =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut control = redis::Client::open(base.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is required for this test and is not reachable at {base}: {e} (run scripts/test)"));
    let user = format!("chorus-test-{}", uuid::Uuid::new_v4().simple());
    let password = uuid::Uuid::new_v4().simple().to_string();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}*"))
        .arg(format!("&{prefix}*"))
        .arg("+@all")
        .arg("-@string")
        .query_async(&mut control)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_username(&user).unwrap();
    url.set_password(Some(&password)).unwrap();
    (url.to_string(), user, control)
}

async fn limits_when_the_store_fails(on_store_error: &str) -> (bool, bool, bool) {
    let prefix = format!("chorus-test:{}:", uuid::Uuid::new_v4().simple());
    let (url, user, mut control) = counterless_redis_user(&prefix).await;
    let dir = std::env::temp_dir().join(format!("chorus-limits-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!(
        r#"data_dir = {:?}
[journal]
redis_url = "{url}"
key_prefix = "{prefix}"
[limits]
messages_per_window = 100
on_store_error = "{on_store_error}"
[[providers]]
id = "scripted"
kind = "scripted"
models = ["demo"]
text = "fine"
tokens_per_second = 1000.0
"#,
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    let alice = core
        .create_account("alice", false, Some("correct horse battery"))
        .await
        .unwrap();
    let conversation = core
        .create_conversation(&alice, None, None, None)
        .await
        .unwrap();
    let refused = |r: &CoreError| matches!(r, CoreError::Limiter(_));

    let message = match core
        .send_message(&alice, &conversation.id, "Hello", None, None)
        .await
    {
        Ok(_) => true,
        Err(e) if refused(&e) => false,
        Err(e) => panic!("message: {e}"),
    };
    let login = match core
        .login("alice", "correct horse battery", "127.0.0.1")
        .await
    {
        Ok(_) => true,
        Err(e) if refused(&e) => false,
        Err(e) => panic!("login: {e}"),
    };
    let link_code = match core
        .redeem_link_code(&Identity::new("matrix", "@bob:example.org"), "ABCD-2345")
        .await
    {
        Err(CoreError::InvalidLinkCode(_)) => true,
        Err(e) if refused(&e) => false,
        other => panic!("link code: {other:?}"),
    };
    core.shutdown().await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut control)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (message, login, link_code)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_limit_store_denies_everything_it_guards() {
    assert_eq!(
        limits_when_the_store_fails("deny").await,
        (false, false, false),
        "(message, login, link code) let through"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_limit_store_allows_everything_when_told_to() {
    assert_eq!(
        limits_when_the_store_fails("allow").await,
        (true, true, true),
        "(message, login, link code) let through"
    );
}
