//! The token cache: a lock-free read path, single-flight fetches, refresh ahead of expiry and
//! static stability when refreshes fail.
//!
//! # How a read stays cheap
//! A cached read must cost a few nanoseconds on any number of threads, so it may not read the
//! clock, take a lock, or write a reference count that other cores also write. The design:
//! - `hot` is one atomic word: the generation of the current token and a *servable* bit. Only
//!   fetches, timers and invalidation write it, so readers on all cores share the cache line.
//! - Each thread keeps its own copy of the current token (`per_thread`), made once per token
//!   and thread; a read clones that copy, whose reference count no other thread touches.
//! - Nobody reads the clock on the way: a timer task per token clears the servable bit when the
//!   token must no longer be served, and starts the refresh ahead of time. If that task dies
//!   (its runtime shut down), it clears the bit on its way out, so readers fall back to the slow
//!   path, which checks the clock and starts a new timer.
//!
//! # The slow path
//! Under a `std::sync::Mutex` that is never held across an `.await`: serve the current token if
//! the clock says it is usable; otherwise join the fetch in flight or start one. Fetches run in
//! their own task, so a caller that gives up does not cancel the fetch for the others; its
//! outcome, token or error, goes to every waiter through a `watch` channel.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use thread_local::ThreadLocal;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::error::Error;
use crate::fetch::{Fetched, Fetcher};
use crate::retry::RetryPolicy;
use crate::token::{AccessToken, Timing, TokenData, bearer_header};

/// Refresh when this little of the lifetime is left, or at half-life if that is later, so a
/// one-day token is refreshed five minutes before it expires and a one-minute token after 30 s.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Refresh times are spread by up to this share of the lifetime (and at most
/// [`MAX_REFRESH_JITTER`]) so that many processes started together do not refresh together.
const REFRESH_JITTER_SHARE: f64 = 0.05;
const MAX_REFRESH_JITTER: Duration = Duration::from_secs(30);
/// A token is not served in the last 1/20 of its life (at most 30 s): clocks drift and requests
/// take time to reach the server. A six-second token is still served for 5.7 s.
const EXPIRY_SAFETY_DIVISOR: u32 = 20;
const MAX_EXPIRY_SAFETY: Duration = Duration::from_secs(30);
/// After a failed background refresh, wait a quarter of the time the current token has left,
/// within these bounds, before trying again: attempts thin out while there is time and the
/// server is not hammered however long the outage lasts.
const MIN_REFRESH_RETRY: Duration = Duration::from_secs(1);
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(300);
/// How long a rejection of the credentials is remembered: a crowd of callers with bad
/// credentials gets the error without another request, yet a fixed secret (or a client ID that
/// has just become active) is picked up soon.
pub(crate) const CREDENTIALS_ERROR_MEMORY: Duration = Duration::from_secs(10);

/// Bit 0 of `hot`: the token of the generation in the other bits may be served.
const SERVABLE: u64 = 1;

type Outcome = Option<Result<AccessToken, Error>>;

pub(crate) struct Cache {
    hot: AtomicU64,
    per_thread: ThreadLocal<RefCell<Option<AccessToken>>>,
    state: Mutex<State>,
    fetcher: Fetcher,
    retry: RetryPolicy,
    clock: Clock,
}

#[derive(Default)]
struct State {
    /// The newest token, while it may be served.
    current: Option<AccessToken>,
    /// The generation of the newest token ever installed.
    generation: u64,
    /// The fetch in flight, if any.
    inflight: Option<watch::Receiver<Outcome>>,
    /// A credentials rejection, remembered for [`CREDENTIALS_ERROR_MEMORY`].
    rejected: Option<(Error, Instant)>,
    /// After a failed background refresh: no new attempt before this.
    refresh_not_before: Option<Instant>,
    /// The timer task of the current token.
    timer: Option<(u64, AbortHandle)>,
    timer_serial: u64,
}

impl Cache {
    pub(crate) fn new(fetcher: Fetcher, retry: RetryPolicy, clock: Clock) -> Self {
        Self {
            hot: AtomicU64::new(0),
            per_thread: ThreadLocal::new(),
            state: Mutex::new(State::default()),
            fetcher,
            retry,
            clock,
        }
    }

    /// The current token, fetching one if needed.
    pub(crate) async fn token(self: &Arc<Self>) -> Result<AccessToken, Error> {
        match self.cached() {
            Some(token) => Ok(token),
            None => self.token_slow().await,
        }
    }

    /// The read path: no clock, no lock, no shared write.
    #[inline]
    fn cached(&self) -> Option<AccessToken> {
        let hot = self.hot.load(Ordering::Acquire);
        if hot & SERVABLE == 0 {
            return None;
        }
        let slot = self.per_thread.get()?.borrow();
        match slot.as_ref() {
            Some(token) if token.generation() == hot >> 1 => Some(token.clone()),
            _ => None,
        }
    }

    async fn token_slow(self: &Arc<Self>) -> Result<AccessToken, Error> {
        loop {
            let mut waiter = {
                let mut state = self.lock();
                let now = self.clock.now();
                if let Some(token) = state.current.clone() {
                    if now < token.data().timing.usable_until {
                        if state.timer.is_none() {
                            // The timer died with its runtime: take over from this one.
                            self.arm_timer(&mut state)?;
                        }
                        self.hot
                            .store((token.generation() << 1) | SERVABLE, Ordering::Release);
                        return Ok(self.remember_in_this_thread(&token));
                    }
                    state.current = None;
                }
                if let Some((error, at)) = &state.rejected {
                    if now.saturating_duration_since(*at) < CREDENTIALS_ERROR_MEMORY {
                        return Err(error.clone());
                    }
                    state.rejected = None;
                }
                match &state.inflight {
                    Some(waiter) => waiter.clone(),
                    None => self.start_fetch(&mut state, "no usable token")?,
                }
            };
            let outcome = waiter
                .wait_for(Option::is_some)
                .await
                .map(|outcome| outcome.clone());
            match outcome {
                Ok(Some(outcome)) => {
                    return outcome.map(|token| self.remember_in_this_thread(&token));
                }
                Ok(None) => {}
                // The fetch task was dropped before it finished (its runtime shut down):
                // forget it, and start over on this caller's runtime.
                Err(_) => {
                    let mut state = self.lock();
                    if state
                        .inflight
                        .as_ref()
                        .is_some_and(|inflight| inflight.same_channel(&waiter))
                    {
                        state.inflight = None;
                    }
                }
            }
        }
    }

    /// The server rejected `token`: stop serving it and fetch a new one, once however many
    /// callers report the same token.
    pub(crate) fn invalidate(self: &Arc<Self>, token: &AccessToken) {
        let mut state = self.lock();
        let is_current = state
            .current
            .as_ref()
            .is_some_and(|current| current.generation() == token.generation());
        if !is_current {
            return;
        }
        tracing::info!(
            generation = token.generation(),
            "token invalidated; fetching a new one"
        );
        state.current = None;
        self.hot.store(token.generation() << 1, Ordering::Release);
        let timer = state.timer.take();
        if state.inflight.is_none() {
            // Without a runtime the next `token()` starts the fetch instead.
            let _ = self.start_fetch(&mut state, "token invalidated");
        }
        drop(state);
        if let Some((_, timer)) = timer {
            timer.abort();
        }
    }

    fn remember_in_this_thread(&self, token: &AccessToken) -> AccessToken {
        let copy = token.detached_copy();
        *self.per_thread.get_or(|| RefCell::new(None)).borrow_mut() = Some(copy.clone());
        copy
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns the single fetch; its outcome reaches every waiter.
    fn start_fetch(
        self: &Arc<Self>,
        state: &mut State,
        reason: &'static str,
    ) -> Result<watch::Receiver<Outcome>, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("cells-auth needs a tokio runtime to fetch tokens"))?;
        let (sender, receiver) = watch::channel(None);
        state.inflight = Some(receiver.clone());
        let cache = Arc::clone(self);
        let span = tracing::info_span!("cells_auth.fetch", reason);
        runtime.spawn(
            async move {
                let fetched = cache
                    .retry
                    .run(&cache.clock, || cache.fetcher.fetch_once())
                    .await;
                let outcome = cache.complete(fetched);
                sender.send_replace(Some(outcome));
            }
            .instrument(span),
        );
        Ok(receiver)
    }

    /// Installs a fetched token, or decides what a failure means.
    fn complete(self: &Arc<Self>, fetched: Result<Fetched, Error>) -> Result<AccessToken, Error> {
        let mut state = self.lock();
        state.inflight = None;
        let now = self.clock.now();
        match fetched {
            Ok(fetched) => {
                state.generation += 1;
                let token = build_token(fetched, state.generation)?;
                tracing::info!(
                    generation = state.generation,
                    lifetime_s = token_lifetime_s(&token, now),
                    "token fetched"
                );
                state.current = Some(token.clone());
                state.rejected = None;
                state.refresh_not_before = None;
                let old_timer = self.arm_timer(&mut state).ok().flatten();
                self.hot
                    .store((state.generation << 1) | SERVABLE, Ordering::Release);
                drop(state);
                if let Some(timer) = old_timer {
                    timer.abort();
                }
                Ok(token)
            }
            Err(error) => {
                let still_usable = state
                    .current
                    .as_ref()
                    .is_some_and(|token| now < token.data().timing.usable_until);
                if let (true, Some(token)) = (still_usable, state.current.clone()) {
                    // Static stability: keep serving the valid token, try again later.
                    let left = token
                        .data()
                        .timing
                        .usable_until
                        .saturating_duration_since(now);
                    let wait = (left / 4).clamp(MIN_REFRESH_RETRY, MAX_REFRESH_RETRY);
                    state.refresh_not_before = Some(now + wait);
                    tracing::warn!(
                        error = %error,
                        retry_in_s = wait.as_secs_f64(),
                        token_left_s = left.as_secs_f64(),
                        "token refresh failed; still serving the current token"
                    );
                    // The timer sleeps until expiry while a refresh is in flight; wake it up
                    // for the next attempt.
                    let old_timer = self.arm_timer(&mut state).ok().flatten();
                    drop(state);
                    if let Some(timer) = old_timer {
                        timer.abort();
                    }
                    return Err(error);
                } else {
                    tracing::error!(error = %error, "no token: fetch failed");
                    if error.is_credentials() {
                        state.rejected = Some((error.clone(), now));
                    }
                }
                Err(error)
            }
        }
    }

    /// Starts the timer task of the current token; returns the previous timer to abort once
    /// the lock is released.
    fn arm_timer(self: &Arc<Self>, state: &mut State) -> Result<Option<AbortHandle>, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("cells-auth needs a tokio runtime to refresh tokens"))?;
        state.timer_serial += 1;
        let serial = state.timer_serial;
        let guard = TimerGuard {
            cache: Arc::downgrade(self),
            serial,
        };
        let clock = self.clock.clone();
        let handle = runtime.spawn(run_timer(guard, clock)).abort_handle();
        Ok(state.timer.replace((serial, handle)).map(|(_, old)| old))
    }

    /// One tick of the timer: expire or refresh the current token; `None` ends the timer.
    fn on_timer(self: &Arc<Self>, serial: u64) -> Option<Instant> {
        let mut state = self.lock();
        if state.timer.as_ref().map(|(id, _)| *id) != Some(serial) {
            return None;
        }
        let token = state.current.clone()?;
        let timing = token.data().timing;
        let now = self.clock.now();
        if now >= timing.usable_until {
            tracing::info!(generation = token.generation(), "token expired");
            self.hot.store(token.generation() << 1, Ordering::Release);
            state.current = None;
            state.timer = None;
            return None;
        }
        let refresh_point = timing
            .refresh_at
            .max(state.refresh_not_before.unwrap_or(timing.refresh_at));
        if now >= refresh_point && state.inflight.is_none() {
            // Readers keep getting the current token meanwhile.
            let _ = self.start_fetch(&mut state, "refresh ahead of expiry");
        }
        if state.inflight.is_some() || now >= refresh_point {
            Some(timing.usable_until)
        } else {
            Some(refresh_point.min(timing.usable_until))
        }
    }
}

async fn run_timer(guard: TimerGuard, clock: Clock) {
    loop {
        let wake_at = {
            let Some(cache) = guard.cache.upgrade() else {
                return;
            };
            let Some(wake_at) = cache.on_timer(guard.serial) else {
                return;
            };
            wake_at
        };
        // Holds no strong reference while asleep: dropping the last `CellsAuth` frees the cache.
        clock.sleep_until(wake_at).await;
    }
}

/// Clears the servable bit if the timer task ends while it is still the token's timer (its
/// runtime shut down), so readers go to the slow path instead of trusting a token no timer
/// watches.
struct TimerGuard {
    cache: Weak<Cache>,
    serial: u64,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let mut state = cache.lock();
        if state.timer.as_ref().map(|(id, _)| *id) == Some(self.serial) {
            state.timer = None;
            let hot = cache.hot.load(Ordering::Acquire);
            cache.hot.store(hot & !SERVABLE, Ordering::Release);
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some((_, timer)) = self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .timer
            .take()
        {
            timer.abort();
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Cache")
            .field("generation", &state.generation)
            .field("has_token", &state.current.is_some())
            .field("fetching", &state.inflight.is_some())
            .field("fetcher", &self.fetcher)
            .finish_non_exhaustive()
    }
}

/// Turns a fetched token into the cached one: refresh and expiry times, the header built once.
fn build_token(fetched: Fetched, generation: u64) -> Result<AccessToken, Error> {
    let header =
        bearer_header(fetched.secret.expose_secret()).ok_or_else(|| Error::InvalidResponse {
            status: 200,
            reason: "the access_token cannot be sent in a header".to_owned(),
            excerpt: String::new(),
        })?;
    Ok(AccessToken::new(TokenData {
        header,
        expires_at: fetched.started_system + fetched.lifetime,
        timing: timing(fetched.started, fetched.lifetime),
        generation,
        secret: fetched.secret,
    }))
}

/// When to refresh and until when to serve a token of `lifetime` fetched at `started`. Every
/// margin scales with the lifetime, so short-lived tokens are served for most of their life.
pub(crate) fn timing(started: Instant, lifetime: Duration) -> Timing {
    let refresh_after = (lifetime / 2).max(lifetime.saturating_sub(REFRESH_BEFORE_EXPIRY));
    let jitter = lifetime
        .mul_f64(REFRESH_JITTER_SHARE)
        .min(MAX_REFRESH_JITTER)
        .mul_f64(fastrand::f64());
    let safety = (lifetime / EXPIRY_SAFETY_DIVISOR).min(MAX_EXPIRY_SAFETY);
    Timing {
        refresh_at: started + refresh_after.saturating_sub(jitter),
        usable_until: started + lifetime.saturating_sub(safety),
    }
}

fn token_lifetime_s(token: &AccessToken, now: Instant) -> f64 {
    token
        .data()
        .timing
        .usable_until
        .saturating_duration_since(now)
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_long_token_refreshes_minutes_before_expiry() {
        let start = Instant::now();
        let day = Duration::from_secs(86_399);
        let timing = timing(start, day);
        let refresh = timing.refresh_at - start;
        assert!(refresh <= day - REFRESH_BEFORE_EXPIRY);
        assert!(refresh >= day - REFRESH_BEFORE_EXPIRY - MAX_REFRESH_JITTER);
        assert_eq!(timing.usable_until - start, day - MAX_EXPIRY_SAFETY);
    }

    #[test]
    fn a_six_second_token_is_served_for_most_of_its_life() {
        let start = Instant::now();
        let timing = timing(start, Duration::from_secs(6));
        assert_eq!(timing.usable_until - start, Duration::from_millis(5700));
        let refresh = timing.refresh_at - start;
        assert!(refresh <= Duration::from_secs(3) && refresh >= Duration::from_millis(2700));
    }
}
