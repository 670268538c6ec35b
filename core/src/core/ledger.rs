//! Core's quota commands: admission of runs (rate limit, refill, balance and
//! concurrency) and usage reports (grants are the console's, `admin/accounts.rs`).

use super::{Core, CoreError, InvalidInput};
use crate::config::OnStoreError;
use crate::quota::{LimiterError, TokenCounts, credits_to_micros, fmt_credits, micros_to_credits};
use chorus_model::time::now_ms;
use chorus_providers::{ChatRequest, estimate_usage, prompt_is_quick};
use chorus_store::{Account, Admission, LedgerEntry, UsageBucket};
use serde::Serialize;
use std::time::Duration;

/// Usage of one day or model, in credits for display.
#[derive(Clone, Debug, Serialize)]
pub struct UsageLine {
    /// `YYYY-MM-DD` (UTC) for a day, `provider/model` for a model.
    pub key: String,
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_prompt_tokens: i64,
    /// Credits charged.
    pub cost: f64,
}

impl From<UsageBucket> for UsageLine {
    fn from(b: UsageBucket) -> Self {
        Self {
            key: b.key,
            runs: b.runs,
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
            cached_prompt_tokens: b.cached_prompt_tokens,
            cost: micros_to_credits(b.cost),
        }
    }
}

/// What `GET /api/me/usage` and the `usage` command show.
#[derive(Clone, Debug, Serialize)]
pub struct UsageReport {
    /// Credits.
    pub balance: f64,
    /// The same balance in micro-credits (exact).
    pub balance_micros: i64,
    /// Whether runs are refused when the balance cannot cover them.
    pub quota_enabled: bool,
    /// The window the figures cover, in days back from today.
    pub days: u32,
    pub by_day: Vec<UsageLine>,
    pub by_model: Vec<UsageLine>,
    /// The balance at the end of each day of the window, oldest first, every day
    /// present (today's is the balance now).
    pub balance_by_day: Vec<DayBalance>,
}

/// The balance at the end of one UTC day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayBalance {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Credits.
    pub balance: f64,
    pub balance_micros: i64,
}

/// The balance at the end of each of the `days` days up to `today` (day numbers
/// since the epoch), oldest first, from the balance now and the net change of each
/// day (`net`: (day, micro-credits), days without change left out): a day ends with
/// the next day's closing balance less that next day's change.
fn closing_balances(balance: i64, today: i64, days: u32, net: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let change = |day: i64| {
        net.iter()
            .filter(|(d, _)| *d == day)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let mut out = Vec::with_capacity(days as usize);
    let mut closing = balance;
    for day in (today - i64::from(days) + 1..=today).rev() {
        out.push((day, closing));
        closing -= change(day);
    }
    out.reverse();
    out
}

impl UsageReport {
    /// One friendly paragraph for chat surfaces.
    pub fn to_text(&self) -> String {
        let runs: i64 = self.by_day.iter().map(|d| d.runs).sum();
        let cost: f64 = self.by_day.iter().map(|d| d.cost).sum();
        let mut text = format!(
            "Balance: {} credits. Last {} days: {runs} replies, {} credits.",
            fmt_credits(self.balance_micros),
            self.days,
            fmt_credits(credits_to_micros(cost))
        );
        for m in &self.by_model {
            text.push_str(&format!(
                "\n- {}: {} replies, {} prompt + {} completion tokens",
                m.key, m.runs, m.prompt_tokens, m.completion_tokens
            ));
        }
        text
    }
}

/// Largest grant or deduction in one go, in credits.
pub(super) const MAX_GRANT: f64 = 1e9;

impl Core {
    /// Decides what a new run of `account` on `model` must satisfy, after the
    /// account's rate limit and any auto-refill due. The balance and concurrency
    /// checks themselves run in the transaction that creates the run.
    pub(crate) async fn admission(
        &self,
        account: &Account,
        model: &str,
        request: &ChatRequest,
    ) -> Result<Admission, CoreError> {
        Ok(self.admission_seen(account, model, request).await?.0)
    }

    /// [`Core::admission`], with the account's balance when it was read (quotas on and
    /// a reservation to cover): what the gateway weighs before it calls the provider
    /// while the admission is written.
    pub(crate) async fn admission_seen(
        &self,
        account: &Account,
        model: &str,
        request: &ChatRequest,
    ) -> Result<(Admission, Option<i64>), CoreError> {
        let limits = &self.config.limits;
        if limits.messages_per_window > 0 {
            let window = Duration::from_secs(limits.window_secs);
            match self
                .limiter
                .hit(&format!("msg:{}", account.id), window)
                .await
            {
                Ok(n) if n > limits.messages_per_window as u64 => {
                    return Err(CoreError::RateLimited(format!(
                        "you may send {} messages per {} seconds; wait a little and try again",
                        limits.messages_per_window, limits.window_secs
                    )));
                }
                Ok(_) => {}
                Err(e) => self.limit_store_failed("message", e)?,
            }
        }
        let quota = &self.config.quota;
        let prompt_estimate = self.estimate_prompt(model, request).await;
        // The run holds its prompt and its longest answer until it ends and is charged
        // what it used: parallel runs cannot each pass against the same balance.
        let output = request
            .max_output_tokens
            .unwrap_or(quota.reserve_output_tokens);
        let reservation = self.prices.cost(
            model,
            TokenCounts {
                prompt: prompt_estimate,
                completion: i64::from(output),
                ..Default::default()
            },
        );
        // A run that reserves nothing is never refused for its balance, so it needs no
        // refill; otherwise the account's own refill (set by an admin) or the default.
        let mut balance_seen = None;
        if quota.enabled && reservation != 0 {
            let (balance, own_amount, own_interval) =
                self.store.balance_and_refill(&account.id).await?;
            balance_seen = Some(balance);
            let refill = own_amount.unwrap_or(credits_to_micros(quota.refill_amount));
            let interval_secs = own_interval.unwrap_or(quota.refill_interval_secs as i64);
            if refill > 0
                && crate::quota::check_balance(balance, 0, reservation).is_err()
                && let Some(now) = self
                    .store
                    .refill_if_due(&account.id, refill, interval_secs.saturating_mul(1000))
                    .await?
            {
                tracing::info!(account = %account.id, balance = now, "auto-refilled");
                balance_seen = Some(now);
            }
        }
        let admission = Admission {
            enforce_balance: quota.enabled,
            reservation,
            prompt_estimate,
            max_concurrent_runs: limits.max_concurrent_runs,
        };
        Ok((admission, balance_seen))
    }

    /// What a limit does when its counter store failed (`limits.on_store_error`), the
    /// same for every limit: `Ok` lets the guarded action through uncounted, an error
    /// refuses it. `limit` names it for the log.
    pub(crate) fn limit_store_failed(
        &self,
        limit: &'static str,
        error: LimiterError,
    ) -> Result<(), CoreError> {
        match self.config.limits.on_store_error {
            OnStoreError::Allow => {
                tracing::warn!(limit, error = %error, "limit store failed; allowed uncounted (limits.on_store_error = allow)");
                Ok(())
            }
            OnStoreError::Deny => {
                tracing::error!(limit, error = %error, "limit store failed; refused (limits.on_store_error = deny)");
                Err(CoreError::Limiter(error))
            }
        }
    }

    /// Prompt tokens of `request` as `model`'s tokenizer counts them: a short prompt
    /// inline ([`prompt_is_quick`]: cheaper than the hand-off), a long one off the
    /// async workers (it takes milliseconds to encode).
    async fn estimate_prompt(&self, model: &str, request: &ChatRequest) -> i64 {
        let kind = match self.providers.resolve_chain(model) {
            Ok(chain) if !chain.is_empty() => chain[0].kind,
            _ => crate::config::ProviderKind::Scripted,
        };
        if prompt_is_quick(kind, request) {
            return estimate_usage(kind, request, "").prompt_tokens as i64;
        }
        let request = request.clone();
        tokio::task::spawn_blocking(move || estimate_usage(kind, &request, "").prompt_tokens)
            .await
            .map_or(0, |t| t as i64)
    }

    /// Balance and usage of the last `days` days (1 to 366).
    pub async fn usage(&self, account: &Account, days: u32) -> Result<UsageReport, CoreError> {
        if !(1..=366).contains(&days) {
            return Err(InvalidInput::UsageDays(days).into());
        }
        let today = now_ms() / 86_400_000;
        let since = (today - days as i64 + 1) * 86_400_000;
        let balance = self.store.balance(&account.id).await?;
        let (by_day, by_model) = self.store.usage(&account.id, since).await?;
        let net = self.store.net_by_day(&account.id, since).await?;
        let balance_by_day = closing_balances(balance, today, days, &net)
            .into_iter()
            .map(|(day, micros)| DayBalance {
                date: chorus_store::utc_date(day),
                balance: micros_to_credits(micros),
                balance_micros: micros,
            })
            .collect();
        Ok(UsageReport {
            balance: micros_to_credits(balance),
            balance_micros: balance,
            quota_enabled: self.config.quota.enabled,
            days,
            by_day: by_day.into_iter().map(UsageLine::from).collect(),
            by_model: by_model.into_iter().map(UsageLine::from).collect(),
            balance_by_day,
        })
    }

    /// The account's newest ledger rows (its merged accounts' included).
    pub async fn ledger(
        &self,
        account: &Account,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, CoreError> {
        Ok(self.store.ledger(&account.id, limit.clamp(1, 1000)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::closing_balances;

    #[test]
    fn closing_balances_walk_back_from_now() {
        // Day 10 is today: +5 today, -3 on day 8, nothing on day 9.
        let got = closing_balances(100, 10, 4, &[(8, -3), (10, 5)]);
        assert_eq!(got, vec![(7, 98), (8, 95), (9, 95), (10, 100)]);
        // No change at all: the same balance every day.
        assert_eq!(closing_balances(7, 3, 2, &[]), vec![(2, 7), (3, 7)]);
        // One day: today's balance.
        assert_eq!(closing_balances(-4, 0, 1, &[(0, -4)]), vec![(0, -4)]);
    }
}
