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
//!
//! # Fetches that nobody runs
//! A task runs only while its runtime is driven. A fetch spawned by a caller on a current-thread
//! runtime that the caller then stops driving (`block_on` returns as soon as its own future is
//! ready) would never start, and everyone waiting for it would wait forever. So a fetch is
//! *claimed* by the task that starts it, and a fetch that is stalled is spawned again on the
//! runtime of whoever notices: a caller served the current token, or a waiter, which checks on
//! a timer when the fetch was spawned on a current-thread runtime (a multi-thread runtime's
//! workers run tasks whatever its `block_on` caller does). Stalled means unclaimed
//! [`STALLED_FETCH`] after it was spawned, or claimed longer ago than the fetch deadline plus
//! [`STALLED_FETCH`] (a running fetch ends by its deadline if its runtime is driven). The task
//! that claims first does the fetch; a task that finds the fetch claimed exits at once. On a
//! current-thread runtime, a caller served the current token while a refresh is in flight also
//! yields once, so that a program driving every call with `block_on` still moves the refresh
//! forward.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::error::Error;
use crate::fetch::{Fetched, Fetcher};
use crate::retry::RetryPolicy;
use crate::token::{AccessToken, Timing, TokenData};

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
/// within these bounds (and at least what the server asked for), before trying again: attempts
/// thin out while there is time, and the server is not hammered however long an outage lasts.
const MIN_REFRESH_RETRY: Duration = Duration::from_secs(1);
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(300);
/// How long a rejection of the credentials is remembered: a crowd of callers with bad
/// credentials gets the error without another request, yet a fixed secret (or a client ID that
/// has just become active) is picked up soon.
pub(crate) const CREDENTIALS_ERROR_MEMORY: Duration = Duration::from_secs(10);

/// How long a spawned fetch may stay unstarted before another caller spawns it again on its own
/// runtime. A task spawned on a runtime that is being driven starts within microseconds, so
/// this only fires for a runtime nobody drives; firing needlessly costs one task that exits at
/// once.
const STALLED_FETCH: Duration = Duration::from_millis(250);

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

/// One fetch in flight: where its outcome is published, and which task runs it.
struct Fetch {
    /// The token or error, set once by the task that ends the fetch.
    outcome: OnceLock<Result<AccessToken, Error>>,
    /// Wakes the waiters once `outcome` is set.
    published: Notify,
    /// Whether the newest task for it was spawned on a current-thread runtime, which runs it
    /// only while someone drives that runtime. Outside `claim`, so that the many waiters of a
    /// cold start read it without taking a lock.
    on_current_thread: AtomicBool,
    claim: Mutex<Claim>,
}

/// Which task runs a fetch. Times are on the real monotonic clock: they measure task
/// scheduling, not token lifetimes, so they do not follow a manual clock.
struct Claim {
    /// When a task for the fetch was last spawned.
    spawned_at: Instant,
    /// When the running task claimed the fetch, and its number.
    claimed: Option<(Instant, u64)>,
    /// Claims so far; a task's number tells whether the fetch is still its own.
    claims: u64,
}

/// A fetch task decided under the lock, spawned after it is released: spawning on a runtime
/// that is shutting down drops the task at once, and its drop takes the lock.
struct FetchLaunch {
    task: FetchTask,
    runtime: Handle,
}

/// A task that runs a [`Fetch`] unless another task has it in hand. If it is dropped mid-fetch
/// (its runtime shut down) while the fetch is still its own, its drop tells the waiters
/// instead of leaving them hanging.
struct FetchTask {
    cache: Arc<Cache>,
    fetch: Arc<Fetch>,
    /// The number of its claim, while it runs the fetch.
    claim: Option<u64>,
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
        let (fetch, launch) = match self.decide(Handle::try_current().ok())? {
            Decision::Serve {
                token,
                drive_refresh,
            } => {
                if drive_refresh {
                    // A program that drives every call with `block_on` runs spawned tasks only
                    // while its own future is pending: yielding once lets the refresh take a
                    // step.
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
            Some(Ok(token)) => Ok(self.remember_after_wait(token)),
            Some(Err(error)) => Err(error.clone()),
            // Unreachable: `wait_for` returns once the outcome is set.
            None => Err(interrupted()),
        }
    }

    /// The slow path's decision, under the lock (which no `.await` may see): serve the current
    /// token, fail at once, or wait for a fetch (spawning it first if `launch` says so).
    fn decide(self: &Arc<Self>, runtime: Option<Handle>) -> Result<Decision, Error> {
        let mut state = self.lock();
        let now = self.clock.now();
        if let Some(token) = state.current.clone() {
            if now < token.data().timing.usable_until {
                let (token, drive_refresh) = self.serve(state, &token, now, runtime);
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
                let launch = self.relaunch_if_stalled(&fetch, runtime);
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
        runtime: Option<Handle>,
    ) -> (AccessToken, bool) {
        let timing = token.data().timing;
        let mut launch = self.refresh_if_due(&mut state, now, runtime.clone());
        if launch.is_none()
            && let Some(fetch) = &state.inflight
        {
            launch = self.relaunch_if_stalled(fetch, runtime.clone());
        }
        let refreshing = state.inflight.is_some();
        let drive_refresh = refreshing && runtime.as_ref().is_some_and(is_current_thread);
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

    /// Waits until the outcome of `fetch` is set. When the fetch was spawned on a
    /// current-thread runtime, checks on a timer whether it stalled (see the module
    /// documentation) and spawns it again on this caller's runtime if so.
    async fn wait_for(self: &Arc<Self>, fetch: &Arc<Fetch>) {
        loop {
            let notified = fetch.published.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a publication in between still wakes us.
            notified.as_mut().enable();
            if fetch.outcome.get().is_some() {
                return;
            }
            // Checking needs a runtime with timers; without a runtime this caller could not
            // spawn the fetch anyway.
            let runtime = if fetch.on_current_thread.load(Ordering::Acquire) {
                Handle::try_current().ok()
            } else {
                None
            };
            let Some(runtime) = runtime else {
                notified.await;
                continue;
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(STALLED_FETCH) => {
                    let still_current = {
                        let state = self.lock();
                        state.inflight.as_ref().is_some_and(|current| Arc::ptr_eq(current, fetch))
                    };
                    if still_current
                        && let Some(launch) = self.relaunch_if_stalled(fetch, Some(runtime))
                    {
                        launch.spawn();
                    }
                }
            }
        }
    }

    /// Spawns `fetch` again on `runtime` if it stalled: unclaimed [`STALLED_FETCH`] after it
    /// was spawned, or claimed for longer than any fetch runs on a driven runtime.
    fn relaunch_if_stalled(
        self: &Arc<Self>,
        fetch: &Arc<Fetch>,
        runtime: Option<Handle>,
    ) -> Option<FetchLaunch> {
        let runtime = runtime?;
        let mut claim = fetch.lock_claim();
        let stalled = match claim.claimed {
            None => claim.spawned_at.elapsed() >= STALLED_FETCH,
            Some((at, _)) => at.elapsed() >= self.retry.deadline + STALLED_FETCH,
        };
        if !stalled {
            return None;
        }
        claim.spawned_at = Instant::now();
        fetch
            .on_current_thread
            .store(is_current_thread(&runtime), Ordering::Release);
        drop(claim);
        tracing::debug!("the token fetch stalled; spawning it again on this runtime");
        Some(FetchLaunch {
            task: FetchTask::new(Arc::clone(self), Arc::clone(fetch)),
            runtime,
        })
    }

    /// Starts the background refresh if the token is in its refresh window, no fetch is in
    /// flight, and no failed attempt asked to wait. Without a runtime there is no refresh ahead;
    /// the token is served until it expires and the caller after that fetches.
    fn refresh_if_due(
        self: &Arc<Self>,
        state: &mut State,
        now: Instant,
        runtime: Option<Handle>,
    ) -> Option<FetchLaunch> {
        let token = state.current.as_ref()?;
        if now < refresh_point(state, token.data().timing) || state.inflight.is_some() {
            return None;
        }
        let (_, launch) = self.prepare_fetch(state, runtime?, "refresh ahead of expiry");
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
        let fetch = Arc::new(Fetch {
            outcome: OnceLock::new(),
            published: Notify::new(),
            on_current_thread: AtomicBool::new(is_current_thread(&runtime)),
            claim: Mutex::new(Claim {
                spawned_at: Instant::now(),
                claimed: None,
                claims: 0,
            }),
        });
        state.inflight = Some(Arc::clone(&fetch));
        tracing::debug!(reason, "starting a token fetch");
        let task = FetchTask::new(Arc::clone(self), Arc::clone(&fetch));
        (fetch, FetchLaunch { task, runtime })
    }

    /// Installs a fetched token, or decides what a failure means.
    fn complete(
        &self,
        fetch: &Fetch,
        fetched: Result<Fetched, Error>,
    ) -> Result<AccessToken, Error> {
        let mut state = self.lock();
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
                drop(state);
                tracing::info!(
                    generation,
                    lifetime_s = fetched.lifetime.as_secs(),
                    "token fetched"
                );
                Ok(token)
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
                    drop(state);
                    tracing::error!(error = %error, "no token: the fetch failed");
                }
                Err(error)
            }
        }
    }

    /// The fetch task was dropped mid-fetch: forget the fetch, so the next caller starts anew,
    /// and make every thread look again.
    fn abandon(&self, fetch: &Fetch) {
        let mut state = self.lock();
        if forget(&mut state, fetch) {
            let servable = state.current.is_some();
            self.publish(&mut state, servable);
        }
    }
}

impl FetchLaunch {
    fn spawn(self) {
        let span = tracing::info_span!("cells_auth.fetch");
        self.runtime.spawn(self.task.run().instrument(span));
    }
}

impl FetchTask {
    fn new(cache: Arc<Cache>, fetch: Arc<Fetch>) -> Self {
        Self {
            cache,
            fetch,
            claim: None,
        }
    }

    async fn run(mut self) {
        let stale_claim = self.cache.retry.deadline + STALLED_FETCH;
        {
            let mut claim = self.fetch.lock_claim();
            if claim
                .claimed
                .is_some_and(|(at, _)| at.elapsed() < stale_claim)
            {
                // Another task has it in hand.
                return;
            }
            claim.claims += 1;
            claim.claimed = Some((Instant::now(), claim.claims));
            self.claim = Some(claim.claims);
        }
        let cache = Arc::clone(&self.cache);
        let fetched = cache
            .retry
            .run(&cache.clock, || cache.fetcher.fetch_once())
            .await;
        // Published even if a later task took the claim over: any real outcome will do (the
        // first one set stands).
        let outcome = cache.complete(&self.fetch, fetched);
        self.fetch.publish(outcome);
        self.claim = None;
    }
}

impl Drop for FetchTask {
    fn drop(&mut self) {
        // A task dropped before it claimed leaves the fetch for another task to start; one
        // whose claim was taken over leaves it to that task.
        let Some(number) = self.claim else { return };
        let still_ours = self
            .fetch
            .lock_claim()
            .claimed
            .is_some_and(|(_, current)| current == number);
        if still_ours {
            self.cache.abandon(&self.fetch);
            self.fetch.publish(Err(interrupted()));
        }
    }
}

impl Fetch {
    /// Sets the outcome, unless one is set already, and wakes every waiter.
    fn publish(&self, outcome: Result<AccessToken, Error>) {
        // A second outcome (from a task that was taken over) is dropped: waiters read the first.
        let _ = self.outcome.set(outcome);
        self.published.notify_waiters();
    }

    fn lock_claim(&self) -> MutexGuard<'_, Claim> {
        // Every write leaves the claim consistent, so a panic elsewhere does not spoil it.
        self.claim.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_current_thread(runtime: &Handle) -> bool {
    runtime.runtime_flavor() == RuntimeFlavor::CurrentThread
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

fn interrupted() -> Error {
    Error::Network {
        message: "the token fetch was interrupted (its tokio runtime shut down)".to_owned(),
        source: Arc::new(std::io::Error::other("token fetch task dropped")),
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
