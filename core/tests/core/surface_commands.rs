//! The commands chat surfaces will call through core (`link`, `usage`), and the
//! rate-limit counters shared through Redis by every instance.

use chorus_core::config::Config;
use chorus_core::quota::Limiter;
use chorus_core::{Core, CoreError};
use chorus_store::Identity;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn link_and_usage_commands_join_a_surface_identity() {
    let dir = std::env::temp_dir().join(format!("chorus-cmd-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!(
        "data_dir = {:?}\n[accounts]\ndefault_balance = 2.5\n[limits]\nlink_code_failures = 2\n",
        dir.display().to_string()
    );
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    core.create_account("alice", false, Some("correct horse battery"))
        .await
        .unwrap();
    let web = Identity::web("alice");
    let matrix = Identity::new("matrix", "@alice:example.org");

    // An identity without an account has nothing to link from or report.
    assert!(matches!(
        core.link_command(&matrix, None).await,
        Err(CoreError::NotFound("account"))
    ));
    let reply = core.link_command(&web, None).await.unwrap();
    let code = reply
        .split_whitespace()
        .find(|w| w.len() == 10 && w.as_bytes()[4] == b'-')
        .map(|w| w.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("no code in {reply:?}"));
    // Wrong codes count; the limit then refuses even the right one for that identity.
    let wrong = core
        .link_command(&matrix, Some("ABCD-2345"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, CoreError::InvalidLinkCode(_)), "{wrong}");
    let reply = core.link_command(&matrix, Some(&code)).await.unwrap();
    assert!(reply.starts_with("Linked"), "{reply}");
    let alice = core.account_for_identity(&web).await.unwrap().unwrap();
    let linked = core.account_for_identity(&matrix).await.unwrap().unwrap();
    assert_eq!(linked.id, alice.id);

    let discord = Identity::new("discord", "42");
    for _ in 0..2 {
        assert!(matches!(
            core.redeem_link_code(&discord, "nope").await,
            Err(CoreError::InvalidLinkCode(_))
        ));
    }
    let fresh = core.issue_link_code(&alice).await.unwrap();
    assert!(matches!(
        core.redeem_link_code(&discord, &fresh.code).await,
        Err(CoreError::RateLimited(_))
    ));

    let usage = core.usage(&linked, 30).await.unwrap().to_text();
    assert!(usage.starts_with("Balance: 2.5 credits."), "{usage}");
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn redis_counters_are_shared_between_instances() {
    let url =
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chorus_test:{}:", uuid::Uuid::new_v4().simple());
    let connect = || async {
        Limiter::redis(&url, &prefix).await.unwrap_or_else(|e| {
            panic!("Redis is required for this test and is not reachable at {url}: {e}")
        })
    };
    let (a, b) = (connect().await, connect().await);
    let window = Duration::from_secs(60);
    assert_eq!(a.count("msg:x", window).await.unwrap(), 0);
    assert_eq!(a.hit("msg:x", window).await.unwrap(), 1);
    assert_eq!(
        b.hit("msg:x", window).await.unwrap(),
        2,
        "the second instance sees the first's count"
    );
    assert_eq!(a.count("msg:x", window).await.unwrap(), 2);
    assert_eq!(b.count("msg:y", window).await.unwrap(), 0);
}
