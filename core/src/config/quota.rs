//! The `[accounts]`, `[quota]` and `[limits]` sections: what new accounts start with,
//! prices and balances, and the per-account and guessing limits.

use super::{Config, ConfigError, invalid};
use serde::{Deserialize, Serialize};

/// What a new account (local, SSO or first contact on a chat surface) starts with.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Role of accounts created without an explicit one: `user` or `admin`.
    pub default_role: String,
    /// Credits every new account starts with (an `initial` ledger row).
    pub default_balance: f64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            default_role: "user".into(),
            default_balance: 0.0,
        }
    }
}

/// Balances and prices. Usage is always recorded in the ledger; `enabled` decides
/// whether a balance that cannot cover a run refuses it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Refuse runs when the balance is at or below zero or cannot cover the prompt.
    pub enabled: bool,
    /// Price of models without `prompt_price` in their `model_info`, in credits per
    /// million tokens.
    pub default_prompt_price: f64,
    /// Likewise for completion tokens.
    pub default_completion_price: f64,
    /// Likewise for cached prompt tokens; unset, cached tokens cost the prompt price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cached_prompt_price: Option<f64>,
    /// Credits added when a run would be refused and `refill_interval_secs` have
    /// passed since the last refill (like LibreChat's auto-refill); 0 disables it.
    pub refill_amount: f64,
    /// Smallest interval between two refills of one account, in seconds.
    pub refill_interval_secs: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_prompt_price: 0.0,
            default_completion_price: 0.0,
            default_cached_prompt_price: None,
            refill_amount: 0.0,
            refill_interval_secs: 86_400,
        }
    }
}

/// Limits per account and per identity. Counters live in Redis when
/// `journal.redis_url` is set (shared by every instance), in process otherwise.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Messages (new runs and continuations) an account may start per window; 0 = no limit.
    pub messages_per_window: u32,
    /// The rate-limit window, in seconds.
    pub window_secs: u64,
    /// Runs of one account that may stream at once; 0 = no limit.
    pub max_concurrent_runs: u32,
    /// Failed local logins allowed per account name and client address per
    /// `guess_window_secs`.
    pub login_failures: u32,
    /// Failed local logins allowed per account name from all addresses together per
    /// `guess_window_secs`, so guessing from many addresses is limited too. Reaching
    /// it refuses that name's logins (even the right password) until the window ends.
    pub login_failures_per_account: u32,
    /// Wrong, expired or malformed link codes allowed per identity per
    /// `guess_window_secs`.
    pub link_code_failures: u32,
    /// The window of the two guessing limits above, in seconds.
    pub guess_window_secs: u64,
    /// Password hashes (logins, new passwords) computed at once; each takes about
    /// 19 MiB and tens of milliseconds of CPU.
    pub password_hash_concurrency: usize,
    /// How long a login waits for a free hashing slot before it is refused (429,
    /// "busy"), in milliseconds.
    pub password_hash_wait_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages_per_window: 0,
            window_secs: 60,
            max_concurrent_runs: 0,
            login_failures: 10,
            login_failures_per_account: 50,
            link_code_failures: 5,
            guess_window_secs: 900,
            password_hash_concurrency: 4,
            password_hash_wait_ms: 2000,
        }
    }
}

impl Config {
    pub(super) fn validate_quota(&self) -> Result<(), ConfigError> {
        if !matches!(self.accounts.default_role.as_str(), "user" | "admin") {
            return Err(invalid(
                "accounts.default_role",
                &self.accounts.default_role,
                "`user` or `admin`",
            ));
        }
        let amounts = [
            ("accounts.default_balance", self.accounts.default_balance),
            (
                "quota.default_prompt_price",
                self.quota.default_prompt_price,
            ),
            (
                "quota.default_completion_price",
                self.quota.default_completion_price,
            ),
            (
                "quota.default_cached_prompt_price",
                self.quota.default_cached_prompt_price.unwrap_or(0.0),
            ),
            ("quota.refill_amount", self.quota.refill_amount),
        ];
        for (key, value) in amounts {
            if !(value >= 0.0 && value.is_finite() && value < 1e12) {
                return Err(invalid(
                    key,
                    value.to_string(),
                    "zero or more credits (below 10^12)",
                ));
            }
        }
        if self.limits.password_hash_concurrency == 0 {
            return Err(invalid(
                "limits.password_hash_concurrency",
                "0",
                "at least 1 hash at once",
            ));
        }
        for (key, value) in [
            ("limits.window_secs", self.limits.window_secs),
            ("limits.guess_window_secs", self.limits.guess_window_secs),
            (
                "quota.refill_interval_secs",
                self.quota.refill_interval_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "0", "at least 1 second"));
            }
        }
        Ok(())
    }
}
