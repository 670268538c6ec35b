//! Polling with a deadline. Tests wait for an observable state (a run's status, a
//! checkpoint in the database) rather than for a fixed time, and time out with a
//! message that says what they waited for and what they saw last.

use anyhow::{Result, bail};
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`until`] polls.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Ok(Some(value))`, failing after `timeout`. An
/// `Err` from `check` is remembered and reported if the deadline passes (transient
/// errors such as a connection refused during a restart are tolerated).
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Runs `fut` with a deadline, failing with a message naming `what`.
pub async fn within<T>(what: &str, timeout: Duration, fut: impl Future<Output = T>) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(v) => Ok(v),
        Err(_) => bail!("timed out after {timeout:?}: {what}"),
    }
}
