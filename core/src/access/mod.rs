//! Who may use which models and tool servers, per role and per group of accounts:
//! the config file's `[access]` section is the roles' default, the admin console's
//! Access page overrides it in the database (`access_rules`) and keeps the groups
//! (`access_groups`, `access_group_members`); an account may use what its role's
//! lists and its groups' lists name together. The facade asks
//! [`AccessCache::policy`] on every model list, admission and tool offer, so every
//! surface gets the same answer.

pub mod config;
mod policy;

pub use config::{AccessConfig, RoleAccess};
pub use policy::{AccessPolicy, Allow, Grant, name_matches};

use chorus_store::{AccessGroup, AccessRule, Store, StoreError};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an instance uses the policy it read before reading the overrides again:
/// a change made on another instance applies everywhere within this time (the
/// instance that makes it applies it at once).
pub const ACCESS_TTL: Duration = Duration::from_secs(5);

/// What one read of the database gives: the role overrides and the groups.
pub type StoredAccess = (Vec<AccessRule>, Vec<AccessGroup>);

/// The effective policy of this instance: the config's defaults with the database's
/// overrides and groups, read again when older than [`ACCESS_TTL`] (a row per role
/// and resource and one per group, so a read is two small queries). Memberships are
/// not held: an account's are read with its check (see [`AccessPolicy::groups_matter`]).
///
/// The refresh is single-flight: when the copy expires, the first caller reads and
/// every caller arriving meanwhile waits for that read instead of making its own, so
/// a burst of requests costs one read, not one each.
pub struct AccessCache {
    defaults: AccessConfig,
    held: Mutex<Option<(Instant, Arc<AccessPolicy>)>>,
    /// Held by the one caller reading the database; the others queue on it.
    refresh: tokio::sync::Mutex<()>,
    /// Bumped by [`AccessCache::invalidate`], so a read that began before a change
    /// does not keep its older policy.
    generation: AtomicU64,
}

impl AccessCache {
    pub fn new(defaults: AccessConfig) -> Self {
        Self {
            defaults,
            held: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// The config file's defaults.
    pub fn defaults(&self) -> &AccessConfig {
        &self.defaults
    }

    /// The policy in force now.
    pub async fn policy(&self, store: &Store) -> Result<Arc<AccessPolicy>, StoreError> {
        self.policy_with(|| async {
            Ok((store.access_rules().await?, store.access_groups().await?))
        })
        .await
    }

    fn fresh(&self) -> Option<Arc<AccessPolicy>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|(at, _)| at.elapsed() < ACCESS_TTL)
            .map(|(_, policy)| policy.clone())
    }

    /// The policy in force now, reading it with `read` when the held copy is stale
    /// (by one caller at a time; those that waited use what it read).
    pub async fn policy_with<F, Fut>(&self, read: F) -> Result<Arc<AccessPolicy>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<StoredAccess, StoreError>>,
    {
        if let Some(policy) = self.fresh() {
            return Ok(policy);
        }
        let _reading = self.refresh.lock().await;
        // Whoever held the lock before may have read it meanwhile.
        if let Some(policy) = self.fresh() {
            return Ok(policy);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let (rules, groups) = read().await?;
        let policy = Arc::new(AccessPolicy::new(&self.defaults, &rules, &groups));
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            *held = Some((Instant::now(), policy.clone()));
        }
        Ok(policy)
    }

    /// Forgets the held policy, so the next call reads the overrides (after a change
    /// on this instance).
    pub fn invalidate(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        *held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::watch;

    /// A burst of callers finding the copy stale makes one read; the others wait for
    /// it and get what it read. After an invalidation, the next burst makes one more.
    #[tokio::test]
    async fn an_expired_policy_is_read_once_for_every_waiting_caller() {
        let cache = Arc::new(AccessCache::new(AccessConfig::default()));
        let reads = Arc::new(AtomicUsize::new(0));
        for burst in 1..=2 {
            let (release, released) = watch::channel(false);
            let started = Arc::new(AtomicUsize::new(0));
            let mut callers = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let (cache, reads, started) = (cache.clone(), reads.clone(), started.clone());
                let mut released = released.clone();
                callers.spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    cache
                        .policy_with(|| async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            // The read lasts until the test lets it end, so every
                            // other caller arrives while it is under way.
                            let _ = released.wait_for(|r| *r).await;
                            Ok((Vec::new(), Vec::new()))
                        })
                        .await
                        .unwrap()
                });
            }
            // On this one-thread runtime each yield lets every spawned caller run
            // until it waits: all 50 have asked before the read ends.
            while started.load(Ordering::SeqCst) < 50 {
                tokio::task::yield_now().await;
            }
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            assert_eq!(reads.load(Ordering::SeqCst), burst, "one read under way");
            release.send_replace(true);
            let policies: Vec<Arc<AccessPolicy>> = callers.join_all().await;
            assert_eq!(
                reads.load(Ordering::SeqCst),
                burst,
                "the waiters read nothing"
            );
            assert!(policies.iter().all(|p| Arc::ptr_eq(p, &policies[0])));
            cache.invalidate();
        }
    }
}
