//! What a fetch's result does to the cache: a token is installed; a failure either leaves the
//! current token in service (static stability) or, with no token left, is handed to every
//! waiter and, when it says so, remembered (a rejection of the credentials, a rate limit).
//!
//! Everything here runs under the cache's lock and returns a [`Report`] to log once the lock
//! is released and the waiters are woken.

use std::sync::Arc;
use std::time::Duration;

use super::flight::{Flight, Landing};
use super::{CREDENTIALS_ERROR_MEMORY, Cache, State, timing_for};
use crate::clock::Moment;
use crate::error::Error;
use crate::fetch::Fetched;
use crate::fleet::Obtained;
use crate::token::{AccessToken, TokenData};

/// After a failed refresh, wait a quarter of the time the current token has left, within these
/// bounds (and at least what the server asked for), before trying again: attempts thin out
/// while there is time, and the server is not hammered however long an outage lasts.
const MIN_REFRESH_RETRY: Duration = Duration::from_secs(1);
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(300);

/// A failure that answers every caller, without a request, until it lapses.
pub(super) struct Latch {
    error: Error,
    until: Moment,
}

impl Latch {
    /// The error to give a caller at `now`, or `None` once the latch has lapsed. A rate limit
    /// reports the wait that is left.
    pub(super) fn error_at(&self, now: Moment) -> Option<Error> {
        if now >= self.until {
            return None;
        }
        Some(
            self.error
                .with_retry_after(self.until.saturating_duration_since(now)),
        )
    }
}

/// What happened, for the log.
pub(super) enum Report {
    Fetched {
        generation: u64,
        lifetime: Duration,
    },
    RefreshFailed {
        error: Error,
        retry_in: Duration,
        token_left: Duration,
    },
    Failed {
        error: Error,
        latched_for: Option<Duration>,
    },
}

impl Cache {
    /// Lands `flight` with the fetch's result, under the lock. `None`, changing nothing, when
    /// the flight has landed already: it was superseded or abandoned, and the state is no
    /// longer its business.
    pub(super) fn land(
        &self,
        flight: &Arc<Flight>,
        fetched: Result<Obtained, Error>,
    ) -> Option<Report> {
        let mut state = self.lock();
        // Every landing happens under this lock, so this check and the landing below are one
        // step for everyone else.
        if flight.landing().is_some() {
            return None;
        }
        state.flight.clear_if(flight);
        let now = self.clock.now();
        match fetched.and_then(|obtained| check_arrival(obtained, now)) {
            Ok(fetched) => {
                let (token, report) = self.install(&mut state, fetched);
                flight.land(Landing::Token(token));
                Some(report)
            }
            Err(error) => {
                let report = self.record_failure(&mut state, &error, now);
                flight.land(Landing::Failed(error));
                Some(report)
            }
        }
    }

    /// Makes a fetched token the current one.
    fn install(&self, state: &mut State, fetched: Arrived) -> (AccessToken, Report) {
        let Arrived {
            fetched,
            stored,
            timing,
        } = fetched;
        state.generation += 1;
        state.stored = stored;
        let token = AccessToken::new(TokenData {
            secret: fetched.secret,
            header: fetched.header,
            expires_at: fetched.started_system + fetched.lifetime,
            timing,
            generation: state.generation,
        });
        state.current = Some(token.clone());
        state.latch = None;
        state.refresh_not_before = None;
        self.publish(state, true);
        let report = Report::Fetched {
            generation: state.generation,
            lifetime: fetched.lifetime,
        };
        (token, report)
    }

    /// Decides what a failed fetch means: with a usable token, keep serving it and try again
    /// later; without one, the failure goes to the waiters, and a rejection of the credentials
    /// or a rate limit is remembered so that callers get it without a request.
    fn record_failure(&self, state: &mut State, error: &Error, now: Moment) -> Report {
        let usable_until = state
            .current
            .as_ref()
            .map(|token| token.data().timing.usable_until)
            .filter(|until| now < *until);
        if let Some(until) = usable_until {
            let left = until.saturating_duration_since(now);
            let retry_in = (left / 4)
                .clamp(MIN_REFRESH_RETRY, MAX_REFRESH_RETRY)
                .max(error.retry_after().unwrap_or_default())
                .min(left);
            state.refresh_not_before = Some(now + retry_in);
            // Every thread looks again, to find the new refresh point.
            self.publish(state, true);
            return Report::RefreshFailed {
                error: error.clone(),
                retry_in,
                token_left: left,
            };
        }
        let latched_for = if error.is_credentials() {
            Some(CREDENTIALS_ERROR_MEMORY)
        } else {
            // A rate limit (Aspose locks a client ID out for ten minutes after five failed
            // requests) or an outage that named its end: asking before then only prolongs it.
            error.retry_after().filter(|wait| !wait.is_zero())
        };
        if let Some(wait) = latched_for {
            state.latch = Some(Latch {
                error: error.clone(),
                until: now + wait,
            });
        }
        Report::Failed {
            error: error.clone(),
            latched_for,
        }
    }
}

impl Report {
    /// Logs it; call with no lock held and the waiters woken.
    pub(super) fn log(self) {
        match self {
            Self::Fetched {
                generation,
                lifetime,
            } => tracing::info!(generation, lifetime_s = lifetime.as_secs(), "token fetched"),
            Self::RefreshFailed {
                error,
                retry_in,
                token_left,
            } => tracing::warn!(
                error = %error,
                retry_in_s = retry_in.as_secs_f64(),
                token_left_s = token_left.as_secs_f64(),
                "token refresh failed; still serving the current token"
            ),
            Self::Failed {
                error,
                latched_for: Some(wait),
            } => tracing::error!(
                error = %error,
                no_request_for_s = wait.as_secs_f64(),
                "no token: the fetch failed; callers get this error until then"
            ),
            Self::Failed {
                error,
                latched_for: None,
            } => tracing::error!(error = %error, "no token: the fetch failed"),
        }
    }
}

/// A fetched token with its schedule.
struct Arrived {
    fetched: Fetched,
    stored: Option<Vec<u8>>,
    timing: crate::token::Timing,
}

/// Schedules a fetched token, refusing one that is already past use.
fn check_arrival(obtained: Obtained, now: Moment) -> Result<Arrived, Error> {
    let Obtained { fetched, stored } = obtained;
    let timing = timing_for(fetched.started, fetched.lifetime);
    if now >= timing.usable_until {
        return Err(Error::invalid_response(
            200,
            "the token expired before it arrived; check the system clock and the network's \
             latency",
        ));
    }
    Ok(Arrived {
        fetched,
        stored,
        timing,
    })
}
