//! The login guessing limits, on both limiter backends (in process, and Redis shared
//! by every instance): a parallel burst gets no more guesses than a sequence, the
//! per-account limit holds across addresses, and a success gives its slot back. And
//! what an anonymous login may cost: a bounded number of password hashes at once, and
//! no oversized name counted or stored.

use chorus_core::config::Config;
use chorus_core::{Core, CoreError};
use std::collections::BTreeMap;
use std::path::PathBuf;

const PASSWORD: &str = "correct horse battery";

fn redis_url() -> String {
    std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A window of a day: the limits count in fixed windows, and one of 15 minutes (the
/// default) ended in the middle of a test often enough to fail it (its count started
/// again). A day's ends at midnight UTC; its Redis counters are gone a day later.
const NO_WINDOW_END: &str = "guess_window_secs = 86400";

/// A core with `limits` (TOML lines of `[limits]`; the guessing window
/// [`NO_WINDOW_END`]), its counters in process or in Redis under a fresh prefix, and
/// the account `alice`.
async fn core_with(limits: &str, redis: bool) -> (Core, PathBuf) {
    let (core, dir, _) = core_with_prefix(limits, redis).await;
    (core, dir)
}

/// [`core_with`], and the Redis key prefix.
async fn core_with_prefix(limits: &str, redis: bool) -> (Core, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("chorus-login-{}", uuid::Uuid::new_v4().simple()));
    let mut toml = format!(
        "data_dir = {:?}\n[limits]\n{NO_WINDOW_END}\n{limits}\n",
        dir.display().to_string()
    );
    let prefix = format!("chorus_test:{}:", uuid::Uuid::new_v4().simple());
    if redis {
        toml.push_str(&format!(
            "[journal]\nredis_url = {:?}\nkey_prefix = {prefix:?}\n",
            redis_url()
        ));
    }
    let core = Core::start(Config::from_toml(&toml, &BTreeMap::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("core (redis: {redis}) does not start: {e}"));
    core.create_account("alice", false, Some(PASSWORD))
        .await
        .unwrap();
    (core, dir, prefix)
}

fn backend(redis: bool) -> &'static str {
    if redis { "Redis" } else { "in-process" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_gets_no_more_guesses_than_the_limit() {
    for redis in [false, true] {
        // Hashing slots for every admitted guess, so only the guessing limit refuses.
        let (core, dir) = core_with(
            "login_failures = 5\nlogin_failures_per_account = 1000\n\
             password_hash_concurrency = 8\npassword_hash_wait_ms = 600000",
            redis,
        )
        .await;
        let burst: Vec<_> = (0..40)
            .map(|_| {
                let core = core.clone();
                tokio::spawn(
                    async move { core.login("alice", "wrong password!", "203.0.113.1").await },
                )
            })
            .collect();
        let (mut checked, mut refused) = (0, 0);
        for attempt in burst {
            match attempt.await.unwrap() {
                Err(CoreError::Unauthorized) => checked += 1,
                Err(CoreError::RateLimited(m)) if m.contains("too many failed logins") => {
                    refused += 1
                }
                other => panic!("unexpected outcome {:?}", other.map(|(a, _)| a.name)),
            }
        }
        assert_eq!(
            (checked, refused),
            (5, 35),
            "{}: of 40 parallel guesses, the limit of 5 were checked and the rest refused",
            backend(redis)
        );
        // The limit holds for the right password from that address too ...
        assert!(matches!(
            core.login("alice", PASSWORD, "203.0.113.1").await,
            Err(CoreError::RateLimited(_))
        ));
        // ... and not from another one.
        core.login("alice", PASSWORD, "198.51.100.2").await.unwrap();
        core.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_from_many_addresses_reach_the_per_account_limit() {
    for redis in [false, true] {
        let (core, dir) =
            core_with("login_failures = 3\nlogin_failures_per_account = 5", redis).await;
        for i in 0..5 {
            let address = format!("203.0.113.{i}");
            assert!(
                matches!(
                    core.login("alice", "wrong password!", &address).await,
                    Err(CoreError::Unauthorized)
                ),
                "{}: guess {i} is checked",
                backend(redis)
            );
        }
        // A sixth address has failed nothing itself, but the account has had enough;
        // the name is matched whatever its case.
        for password in ["wrong password!", PASSWORD] {
            assert!(
                matches!(
                    core.login("Alice", password, "192.0.2.77").await,
                    Err(CoreError::RateLimited(_))
                ),
                "{}: the per-account limit refuses every address",
                backend(redis)
            );
        }
        core.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_login_does_not_count_as_a_failure() {
    for redis in [false, true] {
        let (core, dir) = core_with("login_failures = 2", redis).await;
        let address = "203.0.113.5";
        assert!(matches!(
            core.login("alice", "wrong password!", address).await,
            Err(CoreError::Unauthorized)
        ));
        for _ in 0..3 {
            core.login("alice", PASSWORD, address).await.unwrap();
        }
        assert!(
            matches!(
                core.login("alice", "wrong password!", address).await,
                Err(CoreError::Unauthorized)
            ),
            "{}: one failure and three successes leave one guess",
            backend(redis)
        );
        assert!(matches!(
            core.login("alice", "wrong password!", address).await,
            Err(CoreError::RateLimited(_))
        ));
        core.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlong_name_is_refused_before_it_is_counted_or_stored() {
    let (core, dir, prefix) = core_with_prefix("login_failures = 3", true).await;
    let name = "a".repeat(1 << 20);
    match core.login(&name, "wrong password!", "203.0.113.1").await {
        Err(CoreError::Invalid(e)) => {
            assert_eq!(e.to_string(), "account names are at most 64 characters")
        }
        other => panic!(
            "expected the name refused, got {:?}",
            other.map(|(a, _)| a.id)
        ),
    }
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}limit:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.is_empty(), "nothing is counted for it: {keys:?}");
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_beyond_the_hashing_slots_are_refused_as_busy() {
    // One hash at a time and no waiting for a slot.
    let (core, dir) = core_with(
        "login_failures = 100\npassword_hash_concurrency = 1\npassword_hash_wait_ms = 0",
        false,
    )
    .await;
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let core = core.clone();
            tokio::spawn(async move {
                core.login("alice", "wrong password!", &format!("203.0.113.{i}"))
                    .await
            })
        })
        .collect();
    let (mut checked, mut busy) = (0, 0);
    for attempt in burst {
        match attempt.await.unwrap() {
            Err(CoreError::Unauthorized) => checked += 1,
            Err(CoreError::RateLimited(message)) if message.contains("busy") => busy += 1,
            other => panic!("unexpected outcome {:?}", other.map(|(a, _)| a.name)),
        }
    }
    assert!(
        checked >= 1 && busy >= 1 && checked + busy == 12,
        "checked {checked}, refused as busy {busy}"
    );
    // Once the burst is over, the right password gets in.
    core.login("alice", PASSWORD, "203.0.113.0").await.unwrap();
    core.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
