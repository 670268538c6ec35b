//! Quotas: credits, prices and the arithmetic of charging a run, plus the limiters
//! (rate, concurrency, guessing) and link codes. Pure code that takes inputs and
//! returns decisions; the store and [`crate::Core`] do the I/O around it.
//!
//! Amounts are integer micro-credits (`1 credit = 1_000_000`), so an account's balance
//! equals the sum of its ledger exactly, with no floating-point drift.

mod limiter;
mod link_code;

pub use limiter::{Limiter, LimiterError, Taken};
pub use link_code::{LINK_CODE_TTL_MS, LinkCode, LinkCodeError, MAX_ACTIVE_LINK_CODES};

use crate::config::Config;
pub use chorus_model::money::{
    Charge, MICROS_PER_CREDIT, Refusal, TokenCounts, check_balance, credits_to_micros, fmt_credits,
    micros_to_credits,
};
use std::collections::HashMap;

/// Prices of one model in credits per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
    pub cached_prompt: f64,
}

/// The price of every model, from `providers[].model_info` with the `[quota]`
/// defaults for what is not given. An alias is priced as its first model.
#[derive(Clone, Debug)]
pub struct PriceTable {
    models: HashMap<String, Price>,
    aliases: HashMap<String, String>,
    default: Price,
}

impl PriceTable {
    pub fn from_config(config: &Config) -> Self {
        let q = &config.quota;
        let default = Price {
            prompt: q.default_prompt_price,
            completion: q.default_completion_price,
            cached_prompt: q
                .default_cached_prompt_price
                .unwrap_or(q.default_prompt_price),
        };
        let mut models = HashMap::new();
        for p in config.effective_providers() {
            for (model, meta) in &p.model_info {
                let prompt = meta.prompt_price.unwrap_or(default.prompt);
                models.insert(
                    format!("{}/{model}", p.id),
                    Price {
                        prompt,
                        completion: meta.completion_price.unwrap_or(default.completion),
                        // A model priced for its prompt but not its cache pays the prompt price.
                        cached_prompt: meta.cached_prompt_price.unwrap_or(
                            if meta.prompt_price.is_some() {
                                prompt
                            } else {
                                default.cached_prompt
                            },
                        ),
                    },
                );
            }
        }
        let aliases = config
            .aliases
            .iter()
            .filter_map(|a| Some((a.name.clone(), a.models.first()?.clone())))
            .collect();
        Self {
            models,
            aliases,
            default,
        }
    }

    /// The price of `model_ref` (`provider/model` or an alias).
    pub fn price(&self, model_ref: &str) -> Price {
        let target = self
            .aliases
            .get(model_ref)
            .map_or(model_ref, String::as_str);
        self.models.get(target).copied().unwrap_or(self.default)
    }

    /// Micro-credits for `tokens` of `model_ref`, rounded up so usage is never free
    /// by rounding.
    pub fn cost(&self, model_ref: &str, tokens: TokenCounts) -> i64 {
        let price = self.price(model_ref);
        let cached = tokens.cached_prompt.clamp(0, tokens.prompt.max(0));
        let uncached = tokens.prompt.max(0) - cached;
        // credits per million tokens × tokens = micro-credits.
        let micros = uncached as f64 * price.prompt
            + cached as f64 * price.cached_prompt
            + tokens.completion.max(0) as f64 * price.completion;
        micros.ceil() as i64
    }

    /// The charge of a run of `model_ref` that used `tokens`.
    pub fn charge(&self, model_ref: &str, tokens: TokenCounts) -> Charge {
        Charge {
            model: model_ref.to_string(),
            tokens,
            amount: self.cost(model_ref, tokens),
        }
    }
}

/// Whether an auto-refill is due: refills are configured, the run would be refused,
/// and the interval has passed since the last one.
pub fn refill_due(
    refill_amount: i64,
    interval_ms: i64,
    refilled_at: Option<i64>,
    now: i64,
) -> bool {
    refill_amount > 0 && refilled_at.is_none_or(|t| now - t >= interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table() -> PriceTable {
        let toml = r#"
[quota]
default_prompt_price = 1.0
default_completion_price = 2.0
[[providers]]
id = "s"
kind = "scripted"
models = ["demo", "cheap"]
model_info = { demo = { prompt_price = 3.0, completion_price = 15.0, cached_prompt_price = 0.3 }, cheap = { prompt_price = 0.5 } }
[[aliases]]
name = "fast"
models = ["s/demo", "s/cheap"]
"#;
        PriceTable::from_config(&Config::from_toml(toml, &BTreeMap::new()).unwrap())
    }

    #[test]
    fn costs_follow_the_price_table() {
        let t = table();
        let tokens = TokenCounts {
            prompt: 1000,
            completion: 100,
            cached_prompt: 400,
        };
        // 600 × 3 + 400 × 0.3 + 100 × 15 micro-credits.
        assert_eq!(t.cost("s/demo", tokens), 1800 + 120 + 1500);
        assert_eq!(t.cost("fast", tokens), t.cost("s/demo", tokens));
        // cheap: prompt 0.5 (cache at the prompt price), completion from the default.
        assert_eq!(t.cost("s/cheap", tokens), 500 + 200);
        // Unknown models pay the default.
        assert_eq!(t.cost("other/x", tokens), 1000 + 200);
        assert_eq!(t.cost("s/demo", TokenCounts::default()), 0);
    }

    #[test]
    fn cached_tokens_never_exceed_the_prompt() {
        let t = table();
        let odd = TokenCounts {
            prompt: 10,
            completion: 0,
            cached_prompt: 50,
        };
        assert_eq!(t.cost("s/demo", odd), 3); // 10 × 0.3, rounded up
    }

    #[test]
    fn the_balance_rule() {
        assert_eq!(
            check_balance(-5, 0, 1),
            Err(Refusal::Exhausted { balance: -5 })
        );
        assert_eq!(
            check_balance(0, 0, 1),
            Err(Refusal::Exhausted { balance: 0 })
        );
        // A run that costs nothing (an unpriced model) is never refused for money.
        assert_eq!(check_balance(0, 0, 0), Ok(()));
        assert_eq!(check_balance(-5, 7, 0), Ok(()));
        assert!(matches!(
            check_balance(10, 0, 11),
            Err(Refusal::CannotCover { .. })
        ));
        assert_eq!(check_balance(10, 0, 10), Ok(()));
        // What runs in progress hold is not there for another.
        assert_eq!(
            check_balance(10, 4, 7),
            Err(Refusal::CannotCover {
                balance: 10,
                held: 4,
                reservation: 7
            })
        );
        assert_eq!(check_balance(10, 4, 6), Ok(()));
    }

    #[test]
    fn refills_wait_for_their_interval() {
        assert!(refill_due(5, 1000, None, 0));
        assert!(!refill_due(5, 1000, Some(500), 1000));
        assert!(refill_due(5, 1000, Some(0), 1000));
        assert!(!refill_due(0, 1000, None, 0));
    }

    #[test]
    fn credits_format_and_convert() {
        assert_eq!(credits_to_micros(1.5), 1_500_000);
        assert_eq!(fmt_credits(1_500_000), "1.5");
        assert_eq!(fmt_credits(0), "0");
        assert_eq!(fmt_credits(-250), "-0.00025");
    }
}
