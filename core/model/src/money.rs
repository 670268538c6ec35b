//! Money as integer micro-credits (`1 credit = 1_000_000`), so an account's balance
//! equals the sum of its ledger exactly, with no floating-point drift; what a run is
//! charged; and the balance rule that admission applies under the account's lock.

/// Micro-credits in one credit.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// Credits (as configured or typed by an admin) to micro-credits, rounded.
pub fn credits_to_micros(credits: f64) -> i64 {
    (credits * MICROS_PER_CREDIT as f64).round() as i64
}

/// Micro-credits to credits, for display.
pub fn micros_to_credits(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_CREDIT as f64
}

/// Token counts of one run as charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub prompt: i64,
    pub completion: i64,
    /// Of `prompt`, those the provider served from its cache.
    pub cached_prompt: i64,
}

/// What a run is charged: written as one `run_usage` ledger row in the transaction
/// that ends the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub model: String,
    pub tokens: TokenCounts,
    /// Micro-credits taken from the balance (zero for free models: the row still
    /// records the usage).
    pub amount: i64,
}

/// Why a run may not start now, decided from the account's state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("your balance is {} credits; a run needs a positive balance (ask an admin for credits)", fmt_credits(*.balance))]
    Exhausted { balance: i64 },
    /// The balance, less what the account's replies in progress hold, does not cover
    /// what this reply reserves (its prompt and longest answer at the model's price).
    #[error("your balance of {} credits ({} held by replies in progress) does not cover this reply (up to {} credits)", fmt_credits(*.balance), fmt_credits(*.held), fmt_credits(*.reservation))]
    CannotCover {
        balance: i64,
        held: i64,
        reservation: i64,
    },
    #[error(
        "you have {running} replies in progress, the most allowed at once; wait for one to end"
    )]
    TooManyRuns { running: i64 },
}

/// Formats micro-credits as credits with up to six decimals.
pub fn fmt_credits(micros: i64) -> String {
    let s = format!("{:.6}", micros_to_credits(micros));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The balance rule: a run that may cost anything starts when the balance is
/// positive and what is left of it once the account's runs in progress have their
/// reservations (`held`) covers this run's `reservation`. So parallel runs cannot
/// together spend more than the balance, except by what a run uses beyond its
/// reservation. A run that costs nothing (an unpriced model: `reservation` 0) is never
/// refused for the balance.
pub fn check_balance(balance: i64, held: i64, reservation: i64) -> Result<(), Refusal> {
    if reservation == 0 {
        return Ok(());
    }
    if balance <= 0 {
        return Err(Refusal::Exhausted { balance });
    }
    if reservation > balance.saturating_sub(held) {
        return Err(Refusal::CannotCover {
            balance,
            held,
            reservation,
        });
    }
    Ok(())
}
