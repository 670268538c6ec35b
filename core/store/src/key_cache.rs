//! The accounts of recently used API keys, held for a few seconds so that a key's
//! requests do not each cost a database read before any work starts.
//!
//! Every API or gateway request authenticates its key; in a burst of a thousand
//! requests with one key that was a thousand identical reads queued on the pool ahead
//! of the requests' own. Here an instance reads a key's account once per
//! [`KEY_TTL`], and one caller at a time: the others arriving meanwhile wait for that
//! read. A change made on this instance (a key revoked, an account suspended,
//! deleted, merged, its role or password changed) forgets every held key at once
//! ([`KeyCache::invalidate`], called by the store's writes of those rows); a change
//! made on another instance applies here within [`KEY_TTL`]. What a stale entry could
//! allow is bounded besides: a run's admission checks in the same statement that the
//! account is active.
//!
//! Unknown keys are never held, so guessing keys cannot fill the map.

use crate::{KeyedAccount, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an instance uses a key's account before reading it again.
pub const KEY_TTL: Duration = Duration::from_secs(5);

/// Above this many held keys, a new one first drops the expired ones.
const PRUNE_ABOVE: usize = 4096;

/// One key's slot: its account as read, or nothing yet.
type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

struct Held {
    at: Instant,
    keyed: KeyedAccount,
}

impl Held {
    fn fresh(&self) -> bool {
        self.at.elapsed() < KEY_TTL
    }
}

/// API key hash → its account, with single-flight reads. Shared by clones of one
/// store.
#[derive(Default)]
pub(crate) struct KeyCache {
    slots: Mutex<HashMap<String, Slot>>,
    /// Bumped by every invalidation, so a read that began before a change does not
    /// keep what it read.
    generation: AtomicU64,
}

impl KeyCache {
    /// The account of `key_hash`: held if fresh, else read with `read` (one caller per
    /// key at a time; those that waited use what it read).
    pub(crate) async fn get_or_read<F, Fut>(
        &self,
        key_hash: &str,
        read: F,
    ) -> Result<Option<KeyedAccount>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<KeyedAccount>, StoreError>>,
    {
        let slot = self.slot(key_hash);
        let mut held = slot.lock().await;
        if let Some(h) = held.as_ref().filter(|h| h.fresh()) {
            return Ok(Some(h.keyed.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read = read().await;
        match &read {
            Ok(Some(keyed)) if self.generation.load(Ordering::Acquire) == generation => {
                *held = Some(Held {
                    at: Instant::now(),
                    keyed: keyed.clone(),
                });
            }
            _ => {
                *held = None;
                drop(held);
                self.forget(key_hash, &slot);
            }
        }
        read
    }

    /// Forgets every held key (after a change to keys or accounts on this instance).
    pub(crate) fn invalidate(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        slots.clear();
    }

    fn slot(&self, key_hash: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(key_hash) {
            return slot.clone();
        }
        if slots.len() >= PRUNE_ABOVE {
            // A slot being read or waited on is locked; keep those.
            slots.retain(|_, slot| {
                slot.try_lock()
                    .map_or(true, |held| held.as_ref().is_some_and(Held::fresh))
            });
        }
        slots.entry(key_hash.to_string()).or_default().clone()
    }

    /// Drops `key_hash`'s slot if it is still `slot` (an unknown key, or a read that
    /// failed or raced an invalidation, leaves nothing behind).
    fn forget(&self, key_hash: &str, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.get(key_hash).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key_hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Account, ApiKeyScope};
    use chorus_model::account::Role;
    use chorus_model::ids::AccountId;
    use std::sync::atomic::AtomicUsize;

    fn keyed(name: &str) -> KeyedAccount {
        KeyedAccount {
            account: Account {
                id: AccountId::from_stored(format!("acct-{name}")),
                name: name.to_string(),
                role: Role::User,
                status: Account::ACTIVE.to_string(),
                password_hash: None,
                created_at: 0,
            },
            scopes: vec![ApiKeyScope::Chat],
        }
    }

    /// A burst of callers with one key makes one read; later callers use it until an
    /// invalidation, after which the next caller reads again.
    #[tokio::test]
    async fn a_burst_with_one_key_reads_it_once_until_invalidated() {
        let cache = Arc::new(KeyCache::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>| async move {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Some(keyed("ada")))
        };
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, reads) = (cache.clone(), reads.clone());
            callers.spawn(async move { cache.get_or_read("h1", || read(reads)).await });
        }
        for found in callers.join_all().await {
            assert_eq!(found.unwrap().unwrap().account.name, "ada");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for the burst");
        cache.invalidate();
        let found = cache.get_or_read("h1", || read(reads.clone())).await;
        assert!(found.unwrap().is_some());
        assert_eq!(reads.load(Ordering::SeqCst), 2, "read again after a change");
    }

    /// An unknown key is read every time and leaves no slot; a read that raced an
    /// invalidation is answered but not kept.
    #[tokio::test]
    async fn unknown_keys_and_raced_reads_are_not_held() {
        let cache = KeyCache::default();
        for _ in 0..3 {
            let found = cache.get_or_read("nope", || async { Ok(None) }).await;
            assert!(found.unwrap().is_none());
        }
        assert!(
            cache.slots.lock().unwrap().is_empty(),
            "no slot for a guess"
        );

        let found = cache
            .get_or_read("h2", || async {
                cache.invalidate();
                Ok(Some(keyed("bob")))
            })
            .await;
        assert_eq!(found.unwrap().unwrap().account.name, "bob");
        let reads = AtomicUsize::new(0);
        cache
            .get_or_read("h2", || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(keyed("bob")))
            })
            .await
            .unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the raced read was not kept"
        );
    }
}
