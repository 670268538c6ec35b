//! Who may use which models and tool servers, per role: the config file's `[access]`
//! section is the default, the admin console's Access page overrides it in the
//! database (`access_rules`). The facade asks [`AccessCache::policy`] on every model
//! list, admission and tool offer, so every surface gets the same answer.

pub mod config;
mod policy;

pub use config::{AccessConfig, RoleAccess};
pub use policy::{AccessPolicy, Allow, name_matches};

use chorus_store::{Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an instance uses the policy it read before reading the overrides again:
/// a change made on another instance applies everywhere within this time (the
/// instance that makes it applies it at once).
pub const ACCESS_TTL: Duration = Duration::from_secs(5);

/// The effective policy of this instance: the config's defaults with the database's
/// overrides, read again when older than [`ACCESS_TTL`] (the table has a row per
/// role and resource, so a read is one small query).
pub struct AccessCache {
    defaults: AccessConfig,
    held: Mutex<Option<(Instant, Arc<AccessPolicy>)>>,
    /// Bumped by [`AccessCache::invalidate`], so a read that began before a change
    /// does not keep its older policy.
    generation: AtomicU64,
}

impl AccessCache {
    pub fn new(defaults: AccessConfig) -> Self {
        Self {
            defaults,
            held: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// The config file's defaults.
    pub fn defaults(&self) -> &AccessConfig {
        &self.defaults
    }

    /// The policy in force now.
    pub async fn policy(&self, store: &Store) -> Result<Arc<AccessPolicy>, StoreError> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, policy)) = held
            && at.elapsed() < ACCESS_TTL
        {
            return Ok(policy);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let rules = store.access_rules().await?;
        let policy = Arc::new(AccessPolicy::new(&self.defaults, &rules));
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
