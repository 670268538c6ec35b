//! Channel marks: what a surface remembers about its channels beyond bindings and
//! renders (who asked last in a thread, which threads are of a special kind), kept in
//! the store so that a restarted process, or another instance, knows it too.

use crate::core::{Core, CoreError};

impl Core {
    /// Sets the mark `name` of a surface's channel to `value`.
    pub async fn mark_channel(
        &self,
        surface: &str,
        channel_key: &str,
        name: &str,
        value: &str,
    ) -> Result<(), CoreError> {
        Ok(self
            .store()
            .set_surface_mark(surface, channel_key, name, value)
            .await?)
    }

    /// The mark `name` of a surface's channel, if set.
    pub async fn channel_mark(
        &self,
        surface: &str,
        channel_key: &str,
        name: &str,
    ) -> Result<Option<String>, CoreError> {
        Ok(self
            .store()
            .surface_mark(surface, channel_key, name)
            .await?)
    }

    /// The channel most recently marked `name` = `value` among `key_prefix` and the
    /// channels under it (keys starting with `key_prefix` and `separator`).
    pub async fn latest_marked_channel(
        &self,
        surface: &str,
        key_prefix: &str,
        separator: char,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, CoreError> {
        Ok(self
            .store()
            .latest_marked_channel(surface, key_prefix, separator, name, value)
            .await?)
    }
}
