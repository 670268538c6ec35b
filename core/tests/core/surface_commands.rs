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

/// A suspended account is refused by the chat layer every surface shares (the reply
/// says why), and by its web session and API key; each attempt is a security event;
/// reactivating lets the same identity, session and key in again.
#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_account_is_refused_on_chat_surfaces_too() {
    use chorus_core::chat::{ChatContext, ChatOutcome};
    use chorus_core::{AuditFilter, AuditKind, Forbidden};

    let dir = std::env::temp_dir().join(format!("chorus-susp-{}", uuid::Uuid::new_v4().simple()));
    let toml = format!("data_dir = {:?}\n", dir.display().to_string());
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap();
    let root = core.create_account("root", true, None).await.unwrap();
    let admin = core.admin(&root).unwrap();
    let ctx = ChatContext {
        surface: "matrix".into(),
        channel_key: "!room:example.org|$root".into(),
        identity: Identity::new("matrix", "@carol:example.org"),
        display_name: Some("carol".into()),
    };
    // First contact makes carol's account.
    let first = core.chat_text(&ctx, "!chorus usage", "!chorus").await;
    assert!(
        !matches!(&first, ChatOutcome::Reply(t) if t.contains("suspended")),
        "{first:?}"
    );
    let carol = core
        .account_for_identity(&ctx.identity)
        .await
        .unwrap()
        .unwrap();
    let (_, key) = core
        .create_api_key(&carol, "script", &["chat".to_string()])
        .await
        .unwrap();

    core.suspend_account(&admin, &carol.id).await.unwrap();
    match core.chat_text(&ctx, "hello there", "!chorus").await {
        ChatOutcome::Reply(text) => assert!(text.contains("suspended"), "{text}"),
        other => panic!("a suspended account got {other:?}"),
    }
    assert!(matches!(
        core.api_key_account(&key).await,
        Err(CoreError::Forbidden(Forbidden::AccountSuspended))
    ));
    assert!(matches!(
        core.api_key_account(&key).await,
        Err(CoreError::Forbidden(Forbidden::AccountSuspended))
    ));
    let events = core
        .audit_log(
            &admin,
            &AuditFilter {
                kind: Some(AuditKind::Security),
                action: Some("suspended_attempt".into()),
                object_id: Some(carol.id.as_str().into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    // Three attempts, two ways in (the chat identity, the API key twice): one row
    // per way in; the key's second attempt waits, coalesced, for a later row.
    let mut rows: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            let after = e.after.clone().unwrap_or_default();
            let via = after["via"].as_str().unwrap_or_default().to_string();
            (via, after["attempts"].as_i64().unwrap_or_default())
        })
        .collect();
    rows.sort();
    let mut expected = vec![
        ("API key".to_string(), 1),
        (ctx.identity.platform.clone(), 1),
    ];
    expected.sort();
    assert_eq!(rows, expected, "{events:?}");

    core.reactivate_account(&admin, &carol.id).await.unwrap();
    assert!(
        core.account_for_identity(&ctx.identity)
            .await
            .unwrap()
            .is_some()
    );
    assert!(core.api_key_account(&key).await.unwrap().is_some());
    // An admin cannot suspend themselves.
    assert!(matches!(
        core.suspend_account(&admin, &root.id).await,
        Err(CoreError::Forbidden(Forbidden::OwnAccount))
    ));
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
