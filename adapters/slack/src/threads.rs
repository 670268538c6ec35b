//! What the app knows about its threads beyond bindings and renders: who asked last
//! in each (the recipient of its native stream), where each person last asked in a
//! channel (where `/chorus stop`, typed without its thread, acts), which threads are
//! assistant threads (they show a status while waiting) and which of those have their
//! title. Kept as channel marks in core's store, so that a restarted app — or another
//! instance, to which Slack may hand the next event — knows it too, with a bounded
//! cache in front for what this process learnt itself.

use chorus_core::Core;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The mark naming who asked last in a binding, for a reply streamed there.
const ASKER: &str = "asker";
/// The mark naming who last asked (or bound a conversation) at a place.
const LAST_ASKED: &str = "last_asked";
/// The mark of an assistant thread.
const ASSISTANT: &str = "assistant";
/// The mark of an assistant thread that has its title.
const TITLED: &str = "titled";

/// Entries the cache holds before it starts over (the store keeps everything).
const CACHE_CAPACITY: usize = 10_000;

#[derive(Default)]
struct Cache {
    askers: HashMap<String, String>,
    assistant: HashSet<String>,
    titled: HashSet<String>,
}

impl Cache {
    fn make_room(&mut self) {
        if self.askers.len() + self.assistant.len() + self.titled.len() >= CACHE_CAPACITY {
            *self = Cache::default();
        }
    }
}

/// The app's knowledge of its threads (see the module's doc).
#[derive(Clone)]
pub struct Threads {
    core: Core,
    /// The surface's name in the store.
    surface: &'static str,
    cache: Arc<Mutex<Cache>>,
}

impl Threads {
    pub fn new(core: Core, surface: &'static str) -> Self {
        Self {
            core,
            surface,
            cache: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn mark(&self, key: &str, name: &str, value: &str) {
        if let Err(e) = self.core.mark_channel(self.surface, key, name, value).await {
            tracing::warn!(channel = %key, mark = name, error = %e, "slack: cannot save what the app knows of a thread");
        }
    }

    async fn read(&self, key: &str, name: &str) -> Option<String> {
        match self.core.channel_mark(self.surface, key, name).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(channel = %key, mark = name, error = %e, "slack: cannot read what the app knows of a thread");
                None
            }
        }
    }

    /// `user` started a reply in the binding `key`: a stream there is for them.
    pub async fn asked(&self, key: &str, user: &str) {
        {
            let mut cache = self.cache();
            if cache.askers.get(key).map(String::as_str) == Some(user) {
                return;
            }
            cache.make_room();
            cache.askers.insert(key.to_string(), user.to_string());
        }
        self.mark(key, ASKER, user).await;
    }

    /// Who started the last reply in the binding `key`, if anyone is known to.
    pub async fn asker(&self, key: &str) -> Option<String> {
        if let Some(user) = self.cache().askers.get(key).cloned() {
            return Some(user);
        }
        let user = self.read(key, ASKER).await?;
        let mut cache = self.cache();
        cache.make_room();
        cache.askers.insert(key.to_string(), user.clone());
        Some(user)
    }

    /// `user` asked or bound a conversation at the binding `key`.
    pub async fn last_asked_at(&self, key: &str, user: &str) {
        self.mark(key, LAST_ASKED, user).await;
    }

    /// Where `user` last asked or bound a conversation in the channel whose key is
    /// `channel_key` (the channel itself or one of its threads).
    pub async fn last_place_of(&self, channel_key: &str, user: &str) -> Option<String> {
        match self
            .core
            .latest_marked_channel(self.surface, channel_key, ':', LAST_ASKED, user)
            .await
        {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(channel = %channel_key, error = %e, "slack: cannot read where a person last asked");
                None
            }
        }
    }

    /// The binding `key` is an assistant thread.
    pub async fn mark_assistant(&self, key: &str) {
        {
            let mut cache = self.cache();
            cache.make_room();
            cache.assistant.insert(key.to_string());
        }
        self.mark(key, ASSISTANT, "").await;
    }

    /// Whether the binding `key` is an assistant thread.
    pub async fn is_assistant(&self, key: &str) -> bool {
        if self.cache().assistant.contains(key) {
            return true;
        }
        let known = self.read(key, ASSISTANT).await.is_some();
        if known {
            let mut cache = self.cache();
            cache.make_room();
            cache.assistant.insert(key.to_string());
        }
        known
    }

    /// Whether the assistant thread `key` is to be titled now: `true` once, the
    /// first time it is asked (and remembered as titled).
    pub async fn first_title(&self, key: &str) -> bool {
        if !self.cache().titled.insert(key.to_string()) {
            return false;
        }
        if self.read(key, TITLED).await.is_some() {
            return false;
        }
        self.mark(key, TITLED, "").await;
        true
    }
}
