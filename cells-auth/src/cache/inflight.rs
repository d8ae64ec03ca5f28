//! Fetches in flight: the task that runs a fetch, how its outcome reaches the waiters, and how
//! a fetch that nobody runs is taken over.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::{Cache, forget};
use crate::error::Error;
use crate::token::AccessToken;

/// How long a spawned fetch may stay unstarted before another caller spawns it again on its own
/// runtime. A task spawned on a runtime that is being driven starts within microseconds, so
/// this only fires for a runtime nobody drives; firing needlessly costs one task that exits at
/// once.
pub(super) const STALLED_FETCH: Duration = Duration::from_millis(250);

/// One fetch in flight: where its outcome is published, and which task runs it.
pub(super) struct Fetch {
    /// The token or error, set once by the task that ends the fetch.
    pub(super) outcome: OnceLock<Result<AccessToken, Error>>,
    /// Wakes the waiters once `outcome` is set.
    published: Notify,
    /// Whether the task that runs it (or, before one claims it, the newest task spawned for it)
    /// lives on a current-thread runtime, which runs it only while someone drives that runtime:
    /// then waiters watch for a stall. Outside `claim`, so that the many waiters of a cold start
    /// read it without taking a lock.
    on_current_thread: AtomicBool,
    /// Set when its outcome is the error of a task dropped unfinished.
    interrupted: AtomicBool,
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
    /// Tasks spawned so far; the newest one, if dropped unstarted, must tell the waiters.
    launches: u64,
}

/// A fetch task decided under the lock, spawned after it is released: spawning on a runtime
/// that is shutting down drops the task at once, and its drop takes the lock.
pub(super) struct FetchLaunch {
    pub(super) task: FetchTask,
    pub(super) runtime: Handle,
}

/// A task that runs a [`Fetch`] unless another task has it in hand. If it is dropped mid-fetch
/// (its runtime shut down) while the fetch is still its own, its drop tells the waiters
/// instead of leaving them hanging.
pub(super) struct FetchTask {
    cache: Arc<Cache>,
    fetch: Arc<Fetch>,
    /// Its number among the tasks spawned for the fetch.
    launch: u64,
    /// The number of its claim, while it runs the fetch.
    claim: Option<u64>,
}

impl Cache {
    /// Waits until the outcome of `fetch` is set. When the fetch was spawned on a
    /// current-thread runtime, checks on a timer whether it stalled (see the module
    /// documentation) and spawns it again on this caller's runtime if so.
    pub(super) async fn wait_for(self: &Arc<Self>, fetch: &Arc<Fetch>) {
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
                        && let Some(launch) = self.relaunch_if_stalled(fetch, Some(&runtime))
                    {
                        launch.spawn();
                    }
                }
            }
        }
    }

    /// Spawns `fetch` again on `runtime` if it stalled: unclaimed [`STALLED_FETCH`] after it
    /// was spawned, or claimed for longer than any fetch runs on a driven runtime.
    pub(super) fn relaunch_if_stalled(
        self: &Arc<Self>,
        fetch: &Arc<Fetch>,
        runtime: Option<&Handle>,
    ) -> Option<FetchLaunch> {
        let runtime = runtime?;
        let mut claim = fetch.lock_claim();
        // The outcome is set under the state lock before the fetch stops being the current one,
        // so a fetch that has ended is never spawned again.
        if fetch.outcome.get().is_some() || claim.spawned_at.elapsed() < STALLED_FETCH {
            return None;
        }
        let stalled = match claim.claimed {
            None => true,
            Some((at, _)) => at.elapsed() >= self.stale_claim(),
        };
        if !stalled {
            return None;
        }
        claim.spawned_at = Instant::now();
        claim.launches += 1;
        let launch = claim.launches;
        fetch
            .on_current_thread
            .store(is_current_thread(runtime), Ordering::Release);
        drop(claim);
        tracing::debug!("the token fetch stalled; spawning it again on this runtime");
        Some(FetchLaunch {
            task: FetchTask::new(Arc::clone(self), Arc::clone(fetch), launch),
            runtime: runtime.clone(),
        })
    }

    /// How long after its claim a fetch is surely stuck: a fetch on a driven runtime ends by
    /// its deadline. Saturating: the deadline may be set as long as `Duration::MAX`.
    fn stale_claim(&self) -> Duration {
        self.retry.deadline.saturating_add(STALLED_FETCH)
    }

    /// The fetch task was dropped without finishing and nobody else will: forget the fetch, so
    /// the next caller starts anew, and make every thread look again.
    pub(super) fn abandon(&self, fetch: &Fetch, outcome: Result<AccessToken, Error>) {
        let mut state = self.lock();
        // Under the state lock, like every outcome: see `complete`.
        if fetch.outcome.set(outcome).is_ok() && forget(&mut state, fetch) {
            let servable = state.current.is_some();
            self.publish(&mut state, servable);
        }
    }
}

impl FetchLaunch {
    pub(super) fn spawn(self) {
        let span = tracing::info_span!("cells_auth.fetch");
        self.runtime.spawn(self.task.run().instrument(span));
    }
}

impl FetchTask {
    pub(super) fn new(cache: Arc<Cache>, fetch: Arc<Fetch>, launch: u64) -> Self {
        Self {
            cache,
            fetch,
            launch,
            claim: None,
        }
    }

    pub(super) async fn run(mut self) {
        let stale_claim = self.cache.stale_claim();
        {
            let mut claim = self.fetch.lock_claim();
            let in_hand = claim
                .claimed
                .is_some_and(|(at, _)| at.elapsed() < stale_claim);
            if in_hand || self.fetch.outcome.get().is_some() {
                // Another task has it in hand, or it has ended.
                return;
            }
            claim.claims += 1;
            claim.claimed = Some((Instant::now(), claim.claims));
            self.claim = Some(claim.claims);
        }
        // Waiters watch for a stall when the task that runs the fetch lives on a current-thread
        // runtime. If this one does and the newest spawn was elsewhere, wake the waiters so
        // that they start watching: they may have gone to sleep without a timer.
        let here = Handle::try_current().is_ok_and(|runtime| is_current_thread(&runtime));
        if here && !self.fetch.on_current_thread.swap(here, Ordering::AcqRel) {
            self.fetch.published.notify_waiters();
        }
        let cache = Arc::clone(&self.cache);
        let fetched = cache
            .retry
            .run(&cache.clock, || cache.fetcher.fetch_once())
            .await;
        // The first outcome set stands; a task that was taken over and finishes late changes
        // nothing.
        if cache.complete(&self.fetch, fetched) {
            self.fetch.published.notify_waiters();
        }
        self.claim = None;
    }
}

impl Drop for FetchTask {
    fn drop(&mut self) {
        if self.fetch.outcome.get().is_some() {
            return;
        }
        // Dropped mid-fetch while the fetch is still its own (its runtime shut down), or
        // dropped unstarted as the newest task spawned for an unclaimed fetch (spawned on a
        // runtime that was shutting down): nobody else will end the fetch, so tell the waiters.
        // Otherwise the task that took the fetch over, or a newer one, will.
        let stranded = {
            let claim = self.fetch.lock_claim();
            match (self.claim, claim.claimed) {
                (Some(ours), Some((_, current))) => ours == current,
                (None, None) => self.launch == claim.launches,
                _ => false,
            }
        };
        if stranded {
            // Before the outcome: a waiter that reads the outcome must see this too.
            self.fetch.interrupted.store(true, Ordering::Release);
            self.cache.abandon(&self.fetch, Err(interrupted()));
            self.fetch.published.notify_waiters();
        }
    }
}

impl Fetch {
    /// A fetch about to be spawned on `runtime` as its first task.
    pub(super) fn new(runtime: &Handle) -> Self {
        Self {
            outcome: OnceLock::new(),
            published: Notify::new(),
            on_current_thread: AtomicBool::new(is_current_thread(runtime)),
            interrupted: AtomicBool::new(false),
            claim: Mutex::new(Claim {
                spawned_at: Instant::now(),
                claimed: None,
                claims: 0,
                launches: 1,
            }),
        }
    }

    /// Whether its outcome is the error of a task dropped unfinished (its runtime shut down).
    pub(super) fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    fn lock_claim(&self) -> MutexGuard<'_, Claim> {
        // Every write leaves the claim consistent, so a panic elsewhere does not spoil it.
        self.claim.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) fn is_current_thread(runtime: &Handle) -> bool {
    runtime.runtime_flavor() == RuntimeFlavor::CurrentThread
}

pub(super) fn interrupted() -> Error {
    Error::Network {
        message: "the token fetch was interrupted (its tokio runtime shut down)".to_owned(),
        source: Arc::new(std::io::Error::other("token fetch task dropped")),
    }
}
