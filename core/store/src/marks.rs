//! Marks a chat surface keeps on its channels beyond bindings and renders (see the
//! `surface_marks` migration): small named texts, set and read by channel key, and
//! the newest channel carrying a given mark among the channels under a key prefix.

use super::{Store, StoreError};
use chorus_model::time::now_ms;
use sqlx::Row;

impl Store {
    /// Sets the mark `name` of a channel to `value` (replacing it), dated now.
    pub async fn set_surface_mark(
        &self,
        surface: &str,
        channel_key: &str,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO surface_marks (surface, channel_key, name, value, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (surface, channel_key, name) \
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(surface)
        .bind(channel_key)
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The mark `name` of a channel, if set.
    pub async fn surface_mark(
        &self,
        surface: &str,
        channel_key: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT value FROM surface_marks WHERE surface = $1 AND channel_key = $2 AND name = $3",
        )
        .bind(surface)
        .bind(channel_key)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// The channel whose key is `key_prefix` or starts with `key_prefix` followed by
    /// `separator`, marked `name` = `value` most recently (Slack: the thread of a
    /// channel where a person last asked).
    pub async fn latest_marked_channel(
        &self,
        surface: &str,
        key_prefix: &str,
        separator: char,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let under = format!("{key_prefix}{separator}");
        let row = sqlx::query(
            "SELECT channel_key FROM surface_marks WHERE surface = $1 AND name = $2 AND value = $3 \
             AND (channel_key = $4 OR substr(channel_key, 1, CAST($5 AS INTEGER)) = $6) \
             ORDER BY updated_at DESC, channel_key DESC LIMIT 1",
        )
        .bind(surface)
        .bind(name)
        .bind(value)
        .bind(key_prefix)
        .bind(under.chars().count() as i64)
        .bind(&under)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("channel_key")).transpose()?)
    }
}
