//! Retries around one token request: exponential backoff with full jitter, `Retry-After`
//! honoured, everything inside one overall deadline.
//!
//! Not `reqwest::retry`: the generated client takes a plain `reqwest::Client`, whose retry
//! policy would also apply to the user's own requests when they hand us their client, and it
//! neither reads `Retry-After` nor shares one deadline across attempts and waits.

use std::future::Future;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Error;

/// The first backoff. Token endpoints recover from blips within a second or so.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// The longest backoff between two attempts, unless the server asks for longer.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Attempts per fetch at most. With the deadline this bounds the load one fetch can put on a
/// struggling server, whatever the deadline is set to.
const MAX_ATTEMPTS: u32 = 5;

/// How one fetch retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Everything, attempts and waits, ends by this long after the fetch started.
    pub(crate) deadline: Duration,
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails for good, or the deadline or attempt budget is
    /// spent. Only [`Error::is_transient`] errors are retried.
    pub(crate) async fn run<T, F, Fut>(&self, clock: &Clock, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = clock.now();
        let mut number = 1;
        loop {
            let spent = clock.now().saturating_duration_since(started);
            let Some(remaining) = self
                .deadline
                .checked_sub(spent)
                .filter(|left| !left.is_zero())
            else {
                return Err(Error::Timeout {
                    after: self.deadline,
                });
            };
            let outcome = clock
                .timeout(remaining, attempt())
                .await
                .unwrap_or_else(|| {
                    Err(Error::Timeout {
                        after: self.deadline,
                    })
                });
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.is_transient() || number >= MAX_ATTEMPTS {
                return Err(error);
            }
            let wait = backoff(number).max(error.retry_after().unwrap_or_default());
            let spent = clock.now().saturating_duration_since(started);
            if wait >= self.deadline.saturating_sub(spent) {
                tracing::debug!(
                    attempt = number,
                    wait_ms = wait.as_millis() as u64,
                    "no time left for another attempt"
                );
                return Err(error);
            }
            tracing::warn!(
                attempt = number,
                wait_ms = wait.as_millis() as u64,
                status = error.status(),
                error = %error,
                "token request failed; retrying"
            );
            clock.pause(wait).await;
            number += 1;
        }
    }
}

/// Full jitter (uniform between zero and the exponential ceiling), so a crowd of processes
/// that failed together does not retry together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let ceiling = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(backoff(attempt) <= ceiling);
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
