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
    /// Refuse runs when the balance is at or below zero or cannot cover what a run
    /// reserves (see `reserve_output_tokens`) beside the account's runs in progress.
    pub enabled: bool,
    /// Completion tokens a run reserves at admission, beside its estimated prompt, at
    /// the model's price, when the request sets no `max_output_tokens`: the longest
    /// answer a balance must cover before a run starts. The run is charged its actual
    /// usage when it ends, which releases the reservation.
    pub reserve_output_tokens: u32,
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
            enabled: true,
            reserve_output_tokens: 4096,
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
    /// What every limit above does when its counter store (Redis) fails: `deny`
    /// (refuse the message, login or link code until it answers again) or `allow`
    /// (let it through uncounted, logged as a warning).
    pub on_store_error: OnStoreError,
    /// Password hashes (logins, new passwords) computed at once; each takes about
    /// 19 MiB and tens of milliseconds of CPU.
    pub password_hash_concurrency: usize,
    /// How long a login waits for a free hashing slot before it is refused (429,
    /// "busy"), in milliseconds.
    pub password_hash_wait_ms: u64,
}

/// What a limit does when its counters cannot be read or written.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Fail closed: refuse what the limit guards.
    #[default]
    Deny,
    /// Fail open: let it through uncounted.
    Allow,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages_per_window: 30,
            window_secs: 60,
            max_concurrent_runs: 3,
            login_failures: 10,
            login_failures_per_account: 50,
            link_code_failures: 5,
            guess_window_secs: 900,
            on_store_error: OnStoreError::Deny,
            password_hash_concurrency: 4,
            password_hash_wait_ms: 2000,
        }
    }
}

impl Config {
    /// The settings of these sections a shared deployment would regret, one line
    /// each, naming the key (see [`Config::warnings`]).
    pub(super) fn quota_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.quota.enabled {
            warnings.push(
                "quota.enabled = false: no run is ever refused for what it costs, whatever \
                 the balance"
                    .to_string(),
            );
        }
        if self.limits.messages_per_window == 0 {
            warnings.push(
                "limits.messages_per_window = 0: an account may send messages without limit"
                    .to_string(),
            );
        }
        if self.limits.max_concurrent_runs == 0 {
            warnings.push(
                "limits.max_concurrent_runs = 0: an account may run any number of replies at once"
                    .to_string(),
            );
        }
        if self.limits.on_store_error == OnStoreError::Allow {
            warnings.push(
                "limits.on_store_error = \"allow\": while Redis fails, messages, logins and link \
                 codes go through uncounted (password guessing is not limited)"
                    .to_string(),
            );
        }
        if self.accounts.default_role == "admin" {
            warnings.push(
                "accounts.default_role = \"admin\": every new account (SSO, chat surfaces) is an \
                 admin"
                    .to_string(),
            );
        }
        warnings
    }

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
