//! The token cache: a lock-free read path, single-flight fetches, refresh ahead of expiry and
//! static stability when refreshes fail.
//!
//! # How a read stays cheap
//! A cached read must cost a few nanoseconds on any number of threads, so it may not take a
//! lock, read the precise clock (about 20 ns) or write a reference count that other cores also
//! write. The design:
//! - `hot` is one atomic word: an *epoch* that changes whenever readers must look again (a new
//!   token, an invalidation, a failed refresh) and a *servable* bit. Only the slow path writes
//!   it, so readers on all cores share its cache line.
//! - Each thread keeps its own [`Slot`]: a copy of the current token, made once per token and
//!   thread, and the time at which that thread must next look again (the refresh point, or the
//!   end of the token's use). A read compares the epoch, reads the coarse monotonic clock (a few
//!   nanoseconds, no shared write), and clones the copy, whose reference count no other thread
//!   touches.
//!
//! # The slow path
//! Under a `std::sync::Mutex` that is never held across an `.await` or while spawning: serve the
//! current token if the precise clock says it is usable, starting a background refresh when it
//! is due; otherwise join the fetch in flight or start one. Refreshes are started by callers, not
//! timers, so nothing depends on a background task being scheduled: a program that calls
//! `token()` from `block_on` on a current-thread runtime is served correctly too.
//!
//! Fetches run in their own task, so a caller that gives up does not cancel the fetch for the
//! others; the outcome, token or error, is set once in the fetch and every waiter is woken
//! (`OnceLock` and `Notify`: after waking, a waiter reads it with one atomic load, and all but
//! the first waiter on each thread find the token in the thread's slot without copying it). If the
//! task is dropped mid-fetch (its runtime shut down), waiters get an error rather than a hang.
//! [`inflight`] holds that machinery, including what happens to a fetch that nobody runs;
//! [`mod@timing`] decides when a token is refreshed and until when it is served.

mod inflight;
mod timing;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;
use tokio::runtime::Handle;

use crate::clock::Clock;
use crate::error::Error;
use crate::fetch::{Fetched, Fetcher};
use crate::retry::RetryPolicy;
use crate::token::{AccessToken, Timing, TokenData};

use inflight::{Fetch, FetchLaunch, FetchTask, STALLED_FETCH, interrupted, is_current_thread};
pub(crate) use timing::timing;

/// After a failed background refresh, wait a quarter of the time the current token has left,
/// within these bounds (and at least what the server asked for), before trying again: attempts
/// thin out while there is time, and the server is not hammered however long an outage lasts.
const MIN_REFRESH_RETRY: Duration = Duration::from_secs(1);
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(300);
/// How long a rejection of the credentials is remembered: a crowd of callers with bad
/// credentials gets the error without another request, yet a fixed secret (or a client ID that
/// has just become active) is picked up soon.
pub(crate) const CREDENTIALS_ERROR_MEMORY: Duration = Duration::from_secs(10);

/// Bit 0 of `hot`: the token of the current epoch may be served.
const SERVABLE: u64 = 1;

pub(crate) struct Cache {
    hot: AtomicU64,
    per_thread: ThreadLocal<PaddedSlot>,
    state: Mutex<State>,
    fetcher: Fetcher,
    retry: RetryPolicy,
    clock: Clock,
}

/// A thread's slot on cache lines of its own. `ThreadLocal` stores neighbouring threads'
/// entries side by side, and every read writes the `RefCell` borrow flag: unpadded, two reader
/// threads bounced one cache line between their cores and a two-thread read cost 7x a
/// one-thread read (`benches/cached_read.rs`). 128 bytes, because adjacent-line prefetchers pair
/// 64-byte lines.
#[repr(align(128))]
#[derive(Default)]
struct PaddedSlot(RefCell<Option<Slot>>);

/// One thread's view of the current token.
struct Slot {
    epoch: u64,
    token: AccessToken,
    /// On [`Clock::fast_now`]'s scale: from here on this thread takes the slow path again.
    look_again_at: u64,
}

#[derive(Default)]
struct State {
    /// The newest token, while it may be served.
    current: Option<AccessToken>,
    /// Bumped whenever readers must take the slow path again.
    epoch: u64,
    /// The generation of the newest token ever installed.
    generation: u64,
    /// The fetch in flight, if any.
    inflight: Option<Arc<Fetch>>,
    /// A credentials rejection, remembered for [`CREDENTIALS_ERROR_MEMORY`].
    rejected: Option<(Error, Instant)>,
    /// After a failed background refresh: no new attempt before this.
    refresh_not_before: Option<Instant>,
}

/// What the slow path does next.
enum Decision {
    /// Return this token, after yielding once if `drive_refresh`.
    Serve {
        token: AccessToken,
        drive_refresh: bool,
    },
    /// Wait for this fetch, spawning `launch` first (outside the lock).
    Wait {
        fetch: Arc<Fetch>,
        launch: Option<FetchLaunch>,
    },
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

    /// The read path: no lock, no precise clock, no shared write.
    #[inline]
    pub(crate) fn cached(&self) -> Option<AccessToken> {
        let hot = self.hot.load(Ordering::Acquire);
        if hot & SERVABLE == 0 {
            return None;
        }
        let slot = self.per_thread.get()?.0.borrow();
        let slot = slot.as_ref()?;
        if slot.epoch != hot >> 1 || self.clock.fast_now() >= slot.look_again_at {
            return None;
        }
        Some(slot.token.clone())
    }

    /// The current token when [`cached`](Self::cached) had none for this thread: served,
    /// refreshed or fetched as the state says.
    pub(crate) async fn token_slow(self: &Arc<Self>) -> Result<AccessToken, Error> {
        // A second round only when the fetch this caller waited for was interrupted (its
        // runtime shut down): that is no reason to fail a caller whose own runtime runs.
        let mut rounds_left = 2;
        loop {
            rounds_left -= 1;
            let (fetch, launch) = match self.decide(Handle::try_current().ok())? {
                Decision::Serve {
                    token,
                    drive_refresh,
                } => {
                    if drive_refresh {
                        // A program that drives every call with `block_on` runs spawned tasks
                        // only while its own future is pending: yielding once lets the refresh
                        // take a step.
                        tokio::task::yield_now().await;
                    }
                    return Ok(token);
                }
                Decision::Wait { fetch, launch } => (fetch, launch),
            };
            if let Some(launch) = launch {
                launch.spawn();
            }
            self.wait_for(&fetch).await;
            // After the first waiter on this thread, the rest of a crowd find the token in the
            // thread's slot: no lock, and no copy of the shared outcome.
            if let Some(token) = self.cached() {
                return Ok(token);
            }
            match fetch.outcome.get() {
                Some(Ok(token)) => return Ok(self.remember_after_wait(token)),
                Some(Err(_)) if fetch.was_interrupted() && rounds_left > 0 => {}
                Some(Err(error)) => return Err(error.clone()),
                // Unreachable: `wait_for` returns once the outcome is set.
                None => return Err(interrupted()),
            }
        }
    }

    /// The slow path's decision, under the lock (which no `.await` may see): serve the current
    /// token, fail at once, or wait for a fetch (spawning it first if `launch` says so).
    fn decide(self: &Arc<Self>, runtime: Option<Handle>) -> Result<Decision, Error> {
        let mut state = self.lock();
        let now = self.clock.now();
        if let Some(token) = state.current.clone() {
            if now < token.data().timing.usable_until {
                let (token, drive_refresh) = self.serve(state, &token, now, runtime.as_ref());
                return Ok(Decision::Serve {
                    token,
                    drive_refresh,
                });
            }
            tracing::info!(generation = token.generation(), "token expired");
            state.current = None;
            self.publish(&mut state, false);
        }
        if let Some((error, at)) = &state.rejected {
            if now.saturating_duration_since(*at) < CREDENTIALS_ERROR_MEMORY {
                return Err(error.clone());
            }
            state.rejected = None;
        }
        let (fetch, launch) = match &state.inflight {
            Some(fetch) => {
                let fetch = Arc::clone(fetch);
                let launch = self.relaunch_if_stalled(&fetch, runtime.as_ref());
                (fetch, launch)
            }
            None => {
                let runtime = runtime.ok_or_else(no_runtime)?;
                let (fetch, launch) = self.prepare_fetch(&mut state, runtime, "no usable token");
                (fetch, Some(launch))
            }
        };
        Ok(Decision::Wait { fetch, launch })
    }

    /// Serves the current, still usable token, starting a background refresh when one is due.
    /// Releases the lock. Also returns whether the caller should yield once to move a refresh
    /// forward on its current-thread runtime.
    fn serve(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        token: &AccessToken,
        now: Instant,
        runtime: Option<&Handle>,
    ) -> (AccessToken, bool) {
        let timing = token.data().timing;
        let mut launch = self.refresh_if_due(&mut state, now, runtime);
        if launch.is_none()
            && let Some(fetch) = &state.inflight
        {
            launch = self.relaunch_if_stalled(fetch, runtime);
        }
        let refreshing = state.inflight.is_some();
        let drive_refresh = refreshing && runtime.is_some_and(is_current_thread);
        let look_again_at = if drive_refresh {
            // Come back on every call: each one moves the refresh forward.
            now
        } else if refreshing {
            // Its completion bumps the epoch; until then look in now and then, in case its
            // task never starts.
            (now + STALLED_FETCH).min(timing.usable_until)
        } else {
            refresh_point(&state, timing).clamp(now, timing.usable_until)
        };
        let served = self.remember(&state, token, look_again_at);
        drop(state);
        if let Some(launch) = launch {
            launch.spawn();
        }
        (served, drive_refresh)
    }

    /// Starts the background refresh if the token is in its refresh window, no fetch is in
    /// flight, and no failed attempt asked to wait. Without a runtime there is no refresh ahead;
    /// the token is served until it expires and the caller after that fetches.
    fn refresh_if_due(
        self: &Arc<Self>,
        state: &mut State,
        now: Instant,
        runtime: Option<&Handle>,
    ) -> Option<FetchLaunch> {
        let token = state.current.as_ref()?;
        if now < refresh_point(state, token.data().timing) || state.inflight.is_some() {
            return None;
        }
        let (_, launch) = self.prepare_fetch(state, runtime?.clone(), "refresh ahead of expiry");
        Some(launch)
    }

    /// The server rejected `token`: stop serving it and fetch a new one, once however many
    /// callers report the same token.
    pub(crate) fn invalidate(self: &Arc<Self>, token: &AccessToken) {
        let runtime = Handle::try_current().ok();
        let launch = {
            let mut state = self.lock();
            let is_current = state.current.as_ref().is_some_and(|current| {
                current.generation() == token.generation() && current.secret() == token.secret()
            });
            if !is_current {
                return;
            }
            state.current = None;
            self.publish(&mut state, false);
            match runtime {
                // Without a runtime the next `token()` starts the fetch instead.
                Some(runtime) if state.inflight.is_none() => Some(
                    self.prepare_fetch(&mut state, runtime, "token invalidated")
                        .1,
                ),
                _ => None,
            }
        };
        tracing::info!(generation = token.generation(), "token invalidated");
        if let Some(launch) = launch {
            launch.spawn();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent at every unlock, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bumps the epoch so every thread takes the slow path once more.
    fn publish(&self, state: &mut State, servable: bool) {
        state.epoch += 1;
        let bit = if servable { SERVABLE } else { 0 };
        self.hot.store((state.epoch << 1) | bit, Ordering::Release);
    }

    /// Puts `token` in this thread's slot, valid for this epoch until `look_again_at`, and
    /// returns this thread's copy.
    fn remember(&self, state: &State, token: &AccessToken, look_again_at: Instant) -> AccessToken {
        let mut slot = self.per_thread.get_or(PaddedSlot::default).0.borrow_mut();
        let copy = match slot.as_ref() {
            Some(held) if held.token.generation() == token.generation() => held.token.clone(),
            _ => token.detached_copy(),
        };
        *slot = Some(Slot {
            epoch: state.epoch,
            token: copy.clone(),
            look_again_at: self.clock.fast_deadline(look_again_at),
        });
        copy
    }

    /// After waiting for a fetch: remember the token if it is still the current one.
    fn remember_after_wait(&self, token: &AccessToken) -> AccessToken {
        let state = self.lock();
        match state.current.as_ref() {
            Some(current) if current.generation() == token.generation() => {
                let look_again_at = refresh_point(&state, current.data().timing);
                self.remember(&state, token, look_again_at)
            }
            _ => token.clone(),
        }
    }

    /// Registers a fetch as in flight; the caller spawns it once the lock is released.
    fn prepare_fetch(
        self: &Arc<Self>,
        state: &mut State,
        runtime: Handle,
        reason: &'static str,
    ) -> (Arc<Fetch>, FetchLaunch) {
        let fetch = Arc::new(Fetch::new(&runtime));
        state.inflight = Some(Arc::clone(&fetch));
        tracing::debug!(reason, "starting a token fetch");
        let task = FetchTask::new(Arc::clone(self), Arc::clone(&fetch), 1);
        (fetch, FetchLaunch { task, runtime })
    }

    /// Installs a fetched token, or decides what a failure means, and sets the fetch's outcome;
    /// the caller then wakes the waiters. All of it happens under the state lock, so that no
    /// caller sees the fetch in flight once it has an outcome. Returns `false`, changing
    /// nothing, when the fetch has an outcome already: this task was taken over (see
    /// `inflight.rs`) and finished late, and the state is no longer its business.
    fn complete(&self, fetch: &Fetch, fetched: Result<Fetched, Error>) -> bool {
        let mut state = self.lock();
        if fetch.outcome.get().is_some() {
            return false;
        }
        forget(&mut state, fetch);
        let now = self.clock.now();
        let fetched = fetched.and_then(|fetched| {
            let timing = timing(fetched.started, fetched.lifetime);
            if now >= timing.usable_until {
                return Err(Error::InvalidResponse {
                    status: 200,
                    reason: "the token expired before it arrived; check the system clock and \
                             the network's latency"
                        .to_owned(),
                    excerpt: String::new(),
                });
            }
            Ok((fetched, timing))
        });
        match fetched {
            Ok((fetched, timing)) => {
                state.generation += 1;
                let token = AccessToken::new(TokenData {
                    secret: fetched.secret,
                    header: fetched.header,
                    expires_at: fetched.started_system + fetched.lifetime,
                    timing,
                    generation: state.generation,
                });
                state.current = Some(token.clone());
                state.rejected = None;
                state.refresh_not_before = None;
                self.publish(&mut state, true);
                let generation = state.generation;
                let _ = fetch.outcome.set(Ok(token));
                drop(state);
                tracing::info!(
                    generation,
                    lifetime_s = fetched.lifetime.as_secs(),
                    "token fetched"
                );
            }
            Err(error) => {
                let usable_until = state
                    .current
                    .as_ref()
                    .map(|token| token.data().timing.usable_until)
                    .filter(|until| now < *until);
                if let Some(until) = usable_until {
                    // Static stability: keep serving the valid token, try again later.
                    let left = until.saturating_duration_since(now);
                    let wait = (left / 4)
                        .clamp(MIN_REFRESH_RETRY, MAX_REFRESH_RETRY)
                        .max(error.retry_after().unwrap_or_default());
                    state.refresh_not_before = Some(now + wait.min(left));
                    self.publish(&mut state, true);
                    let _ = fetch.outcome.set(Err(error.clone()));
                    drop(state);
                    tracing::warn!(
                        error = %error,
                        retry_in_s = wait.as_secs_f64(),
                        token_left_s = left.as_secs_f64(),
                        "token refresh failed; still serving the current token"
                    );
                } else {
                    if error.is_credentials() {
                        state.rejected = Some((error.clone(), now));
                    }
                    let _ = fetch.outcome.set(Err(error.clone()));
                    drop(state);
                    tracing::error!(error = %error, "no token: the fetch failed");
                }
            }
        }
        true
    }
}

/// Clears the in-flight fetch if it is `fetch`; `true` if it was.
fn forget(state: &mut State, fetch: &Fetch) -> bool {
    let ours = state
        .inflight
        .as_ref()
        .is_some_and(|inflight| std::ptr::eq(Arc::as_ptr(inflight), fetch));
    if ours {
        state.inflight = None;
    }
    ours
}

/// When the current token should next be refreshed: its refresh time, or later after a failed
/// attempt.
fn refresh_point(state: &State, timing: Timing) -> Instant {
    match state.refresh_not_before {
        Some(not_before) => timing.refresh_at.max(not_before),
        None => timing.refresh_at,
    }
}

fn no_runtime() -> Error {
    Error::config("cells-auth needs a tokio runtime to fetch tokens")
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
