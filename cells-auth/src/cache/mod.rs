//! The token cache: a lock-free read path, single-flight fetches, refresh ahead of expiry and
//! static stability when refreshes fail.
//!
//! # Files
//! - [`read`]: the cached read, which takes no lock (its design is explained there).
//! - [`flight`]: single flight, one fetch that many callers wait for, and who may join it.
//! - [`outcome`]: what a fetch's result does to the state: installing a token, or recording a
//!   failure (static stability, remembered rejections and rate limits).
//! - [`schedule`]: when a token is refreshed and until when it is served.
//!
//! # The slow path
//! Under a `std::sync::Mutex` that is never held across an `.await`, while spawning, or while
//! anything runs that is not ours (no `tracing` event, no user type's `Debug`): serve the
//! current token if the expiry clock says it is usable, starting a refresh ahead when it is
//! due; otherwise fail fast on a remembered failure, join the flight in the air, or fly a new
//! one. Refreshes are started by callers, not timers, so nothing depends on a background task
//! being scheduled.
//!
//! A cold fetch runs in a task of its own on a multi-thread runtime, so a caller that gives up
//! does not cancel it for the others; on a current-thread runtime it runs in the caller's own
//! future, the only place where it is sure to run (a task spawned there runs only while
//! someone drives that runtime). Either way, if it is dropped unfinished its waiters try
//! again. A refresh ahead runs in a task: the caller that starts it is served the current
//! token at once, and on a current-thread runtime yields once so that a program driving every
//! call with `block_on` carries the refresh forward.

mod flight;
mod outcome;
mod read;
mod schedule;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Instrument as _;

use crate::clock::{Clock, FastDeadline, Moment};
use crate::error::Error;
use crate::fetch::Fetcher;
use crate::fleet::{Fleet, Obtained};
use crate::retry::RetryPolicy;
use crate::token::{AccessToken, Timing};

use flight::{Boarding, Flight, FlightSlot, Landing, Pilot};
use outcome::Latch;
use read::ReadPath;
use schedule::timing_for;

/// How long a rejection of the credentials is remembered: a crowd of callers with bad
/// credentials gets the error without another request, yet a fixed secret (or a client ID that
/// has just become active) is picked up soon.
pub(crate) const CREDENTIALS_ERROR_MEMORY: Duration = Duration::from_secs(10);
/// A flight this much older than the fetch deadline is surely not running (a fetch on a driven
/// runtime ends by its deadline): anyone may fly a new one in its place.
const STALE_FLIGHT_GRACE: Duration = Duration::from_secs(5);
/// After an invalidation took effect, reports of the token that replaced it are ignored for
/// this long: when a fresh token is refused too, the refusal is not the token's fault (a
/// missing subscription, a wrong API origin), and fetching again for every request would only
/// load the rate-limited token endpoint. At most one refresh a minute is spent on 401s.
pub(crate) const MIN_INVALIDATION_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct Cache {
    read: ReadPath,
    state: Mutex<State>,
    fetcher: Fetcher,
    retry: RetryPolicy,
    clock: Clock,
    /// The token store shared with other processes, if any.
    fleet: Option<Fleet>,
}

#[derive(Default)]
struct State {
    /// The newest token, while it may be served.
    current: Option<AccessToken>,
    /// Bumped whenever readers must take the slow path again.
    epoch: u64,
    /// The generation of the newest token ever installed.
    generation: u64,
    flight: FlightSlot,
    /// A failure that answers every caller without a request until it lapses.
    latch: Option<Latch>,
    /// After a failed refresh: no new attempt before this.
    refresh_not_before: Option<Moment>,
    /// When an invalidation last took effect.
    last_invalidation: Option<Moment>,
    /// The store's sealed entry for the current token, if it came from or went to the store.
    stored: Option<Vec<u8>>,
    /// The store's entry for an invalidated token: the next fetch removes it from the store
    /// if it is still there, so the fleet refreshes once.
    forget_stored: Option<Vec<u8>>,
}

/// What the slow path does next.
enum Decision {
    /// Return this token, after yielding once if `drive_refresh`.
    Serve {
        token: AccessToken,
        drive_refresh: bool,
    },
    /// Wait for this flight.
    Join(Arc<Flight>),
    /// Fly this flight, then wait for it.
    Fly(Pilot),
}

impl Cache {
    pub(crate) fn new(
        fetcher: Fetcher,
        retry: RetryPolicy,
        clock: Clock,
        fleet: Option<Fleet>,
    ) -> Self {
        Self {
            read: ReadPath::default(),
            state: Mutex::new(State::default()),
            fetcher,
            retry,
            clock,
            fleet,
        }
    }

    /// The read path: no lock, no precise clock, no shared write.
    #[inline]
    pub(crate) fn cached(&self) -> Option<AccessToken> {
        self.read.cached(&self.clock)
    }

    /// The current token when [`cached`](Self::cached) had none for this thread: served,
    /// refreshed or fetched as the state says.
    pub(crate) async fn token_slow(self: &Arc<Self>) -> Result<AccessToken, Error> {
        loop {
            let runtime = Handle::try_current().ok();
            let flight = match self.decide(runtime.as_ref())? {
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
                Decision::Join(flight) => flight,
                Decision::Fly(pilot) => {
                    let flight = Arc::clone(pilot.flight());
                    let fly = Arc::clone(self).fly(pilot);
                    match runtime {
                        Some(runtime)
                            if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread =>
                        {
                            runtime.spawn(fly);
                        }
                        _ => fly.await,
                    }
                    flight
                }
            };
            let landing = flight.wait().await;
            // After the first waiter on this thread, the rest of a crowd find the token in the
            // thread's slot: no lock, and no copy of the shared outcome.
            if let Some(token) = self.cached() {
                return Ok(token);
            }
            match landing {
                Landing::Token(token) => return Ok(self.remember_after_wait(token)),
                Landing::Failed(error) => return Err(error.clone()),
                // Its pilot is gone (a caller gave up, a runtime shut down): start over, and
                // fly the next one if nobody else has.
                Landing::Abandoned => {}
            }
        }
    }

    /// The slow path's decision, under the lock: serve the current token, fail at once, join
    /// the flight in the air or fly a new one.
    fn decide(self: &Arc<Self>, runtime: Option<&Handle>) -> Result<Decision, Error> {
        let mut state = self.lock();
        let now = self.clock.now();
        let mut expired = None;
        if let Some(token) = state.current.clone() {
            if now < token.data().timing.usable_until {
                return Ok(self.serve(state, &token, now, runtime));
            }
            state.current = None;
            self.publish(&mut state, false);
            expired = Some(token.generation());
        }
        let decision = if let Some(error) = latched(&mut state, now) {
            Err(error)
        } else {
            // Joining needs no runtime (a waiter just sleeps); fetching does.
            match state
                .flight
                .board(now, self.stale_after(), runtime.is_some())
            {
                Boarding::Join(flight) => Ok((Decision::Join(flight), None)),
                Boarding::Fly { flight, superseded } => {
                    Ok((Decision::Fly(self.pilot(flight)), superseded))
                }
                Boarding::Grounded => Err(no_runtime()),
            }
        };
        drop(state);
        // Outside the lock: waking and logging run code that is not ours.
        if let Some(generation) = expired {
            tracing::info!(generation, "token expired");
        }
        let (decision, superseded) = decision?;
        if let Some(superseded) = superseded {
            superseded.wake_waiters();
            tracing::debug!("a token fetch that may have stalled was superseded");
        }
        if matches!(decision, Decision::Fly(_)) {
            tracing::debug!("no usable token; fetching one");
        }
        Ok(decision)
    }

    /// Serves the current, still usable token, starting a refresh ahead when one is due.
    /// Releases the lock.
    fn serve(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        token: &AccessToken,
        now: Moment,
        runtime: Option<&Handle>,
    ) -> Decision {
        let timing = token.data().timing;
        let refresh_point = refresh_point(&state, timing);
        let on_current_thread =
            runtime.is_some_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::CurrentThread);
        // Without a runtime there is no refresh ahead: the token is served until it expires
        // and the caller after that fetches.
        let refresh = (now >= refresh_point && runtime.is_some())
            .then(|| {
                state
                    .flight
                    .start_if_idle(now, self.stale_after(), !on_current_thread)
            })
            .flatten();
        let drive_refresh = on_current_thread && state.flight.is_busy();
        let look_again_at = if drive_refresh {
            // Come back on every call: each one moves the refresh forward.
            FastDeadline::PASSED
        } else {
            // A refresh in the air bumps the epoch when it lands; until then come back when it
            // turns stale, in case it never runs.
            let until = match state.flight.stale_at(self.stale_after()) {
                Some(stale) => stale.min(timing.usable_until),
                None => refresh_point.clamp(now, timing.usable_until),
            };
            self.clock.fast_deadline(until)
        };
        let served = self.read.remember(state.epoch, token, look_again_at);
        drop(state);
        if let (Some((flight, superseded)), Some(runtime)) = (refresh, runtime) {
            if let Some(superseded) = superseded {
                superseded.wake_waiters();
            }
            tracing::debug!("refreshing the token ahead of expiry");
            runtime.spawn(Arc::clone(self).fly(self.pilot(flight)));
        }
        Decision::Serve {
            token: served,
            drive_refresh,
        }
    }

    /// Runs one fetch and lands its flight. A panic in the fetch (a user-supplied client's
    /// connector or redirect policy) is caught and reported as what it is.
    async fn fly(self: Arc<Self>, pilot: Pilot) {
        let span = tracing::info_span!("cells_auth.fetch");
        let fetch = self.obtain().instrument(span);
        let fetched = CatchUnwind(Box::pin(fetch))
            .await
            .unwrap_or_else(|panic| Err(self.fetcher.panicked(panic.as_ref())));
        let report = self.land(pilot.flight(), fetched);
        let flight = Arc::clone(pilot.flight());
        pilot.disarm();
        // Wake first: a logging subscriber that panics or blocks must not strand the waiters.
        flight.wake_waiters();
        if let Some(report) = report {
            report.log();
        }
    }

    /// One fetch: from the server, or through the token store when there is one.
    async fn obtain(&self) -> Result<Obtained, Error> {
        let Some(fleet) = &self.fleet else {
            let fetched = self
                .retry
                .run(&self.clock, || self.fetcher.fetch_once())
                .await?;
            return Ok(Obtained {
                fetched,
                stored: None,
            });
        };
        let forget = self.lock().forget_stored.take();
        let deadline = self.retry.deadline;
        let shared = fleet.obtain(&self.clock, deadline, forget, |left| {
            let retry = RetryPolicy { deadline: left };
            async move { retry.run(&self.clock, || self.fetcher.fetch_once()).await }
        });
        // Store operations have timeouts of their own, which a short deadline must still bound.
        self.clock
            .timeout(deadline, shared)
            .await
            .unwrap_or(Err(Error::Timeout { after: deadline }))
    }

    /// A pilot whose drop, before it lands its flight, abandons the flight.
    fn pilot(self: &Arc<Self>, flight: Arc<Flight>) -> Pilot {
        let cache = Arc::clone(self);
        Pilot::new(flight, move |flight| cache.abandon(flight))
    }

    /// The flight's pilot is gone without landing it: forget the flight, wake its waiters (one
    /// of them will fly the next) and make every thread look again, so that a refresh that
    /// was in the air is started anew.
    fn abandon(&self, flight: &Arc<Flight>) {
        {
            let mut state = self.lock();
            if !flight.land(Landing::Abandoned) {
                return;
            }
            state.flight.clear_if(flight);
            let servable = state.current.is_some();
            self.publish(&mut state, servable);
        }
        flight.wake_waiters();
    }

    /// The server rejected `token`: stop serving it, so that the next caller fetches a new one,
    /// once however many callers report the same token, and at most once per
    /// [`MIN_INVALIDATION_INTERVAL`].
    pub(crate) fn invalidate(&self, token: &AccessToken) {
        let taken = {
            let mut state = self.lock();
            let is_current = state.current.as_ref().is_some_and(|current| {
                current.generation() == token.generation() && current.secret() == token.secret()
            });
            if !is_current {
                return;
            }
            let now = self.clock.now();
            let too_soon = state.last_invalidation.is_some_and(|last| {
                now.saturating_duration_since(last) < MIN_INVALIDATION_INTERVAL
            });
            if !too_soon {
                state.current = None;
                state.forget_stored = state.stored.take();
                state.last_invalidation = Some(now);
                self.publish(&mut state, false);
            }
            !too_soon
        };
        if taken {
            tracing::info!(generation = token.generation(), "token invalidated");
        } else {
            // Debug, not warn: an API that refuses every token would log this per request.
            tracing::debug!(
                generation = token.generation(),
                "the server refused a token fetched after the previous refusal; keeping it \
                 (the refusal is likely not the token's fault)"
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent at every unlock, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bumps the epoch so every thread takes the slow path once more.
    fn publish(&self, state: &mut State, servable: bool) {
        state.epoch += 1;
        self.read.publish(state.epoch, servable);
    }

    /// After waiting for a flight: remember the token if it is still the current one.
    fn remember_after_wait(&self, token: &AccessToken) -> AccessToken {
        let state = self.lock();
        match state.current.as_ref() {
            Some(current) if current.generation() == token.generation() => {
                let look_again_at = self
                    .clock
                    .fast_deadline(refresh_point(&state, current.data().timing));
                self.read.remember(state.epoch, token, look_again_at)
            }
            _ => token.clone(),
        }
    }

    /// How long after its start a flight is surely not running. Saturating: the deadline may be
    /// set as long as `Duration::MAX`.
    fn stale_after(&self) -> Duration {
        self.retry.deadline.saturating_add(STALE_FLIGHT_GRACE)
    }
}

/// The remembered failure, if it still holds; a lapsed one is forgotten.
fn latched(state: &mut State, now: Moment) -> Option<Error> {
    let latch = state.latch.as_ref()?;
    match latch.error_at(now) {
        Some(error) => Some(error),
        None => {
            state.latch = None;
            None
        }
    }
}

/// When the current token should next be refreshed: its refresh time, or later after a failed
/// attempt.
fn refresh_point(state: &State, timing: Timing) -> Moment {
    match state.refresh_not_before {
        Some(not_before) => timing.refresh_at.max(not_before),
        None => timing.refresh_at,
    }
}

fn no_runtime() -> Error {
    Error::config("cells-auth needs a tokio runtime to fetch tokens")
}

/// A future whose panic becomes its output's `Err`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // Unwind safety: after a panic the future is never polled again, and the state it
        // shares with the cache (the flight) is landed by the caller with the panic's error.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Cache");
        // Never waits for the lock: a logging subscriber that prints a provider while the
        // cache holds its lock on the same thread must not deadlock.
        let state = match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        match state {
            Some(state) => debug
                .field("generation", &state.generation)
                .field("has_token", &state.current.is_some())
                .field("fetching", &state.flight.is_busy()),
            None => debug.field("has_token", &self.read.servable()),
        };
        debug
            .field("fetcher", &self.fetcher)
            .finish_non_exhaustive()
    }
}
