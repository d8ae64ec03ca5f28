//! Single flight: one token fetch that any number of callers wait for.
//!
//! A [`Flight`] is one fetch's outcome, set once and fanned out to every waiter (`OnceLock`
//! and `Notify`: after waking, a waiter reads it with one atomic load). Whoever runs the fetch
//! holds its [`Pilot`]; a pilot dropped before the outcome is set (a caller that gave up, a
//! task dropped by a runtime shutting down, a panic) lands the flight as
//! [`Landing::Abandoned`], and its waiters simply try again: one of them flies the next one.
//! Nothing watches the clock for stalled fetches; the [`FlightSlot`] rules below make sure
//! nobody waits for a fetch that cannot make progress.
//!
//! # Who may join a flight
//! A flight driven by a caller's own future (a cold fetch) or by a task on a multi-thread
//! runtime (a refresh ahead) progresses as long as anyone cares: a multi-thread runtime runs
//! its tasks whatever its `block_on` caller does. A refresh spawned on a *current-thread*
//! runtime runs only while someone drives that runtime, so a caller that needs a token now
//! does not join it but starts its own flight, superseding it. A flight older than the fetch
//! deadline (plus a grace) is superseded by anyone: a fetch on a driven runtime ends by then.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Moment;
use crate::error::Error;
use crate::token::AccessToken;

/// How a flight ended.
#[derive(Debug)]
pub(super) enum Landing {
    Token(AccessToken),
    Failed(Error),
    /// Nobody will finish it: try again.
    Abandoned,
}

/// One fetch's outcome and the waiters for it.
#[derive(Debug, Default)]
pub(super) struct Flight {
    landing: OnceLock<Landing>,
    landed: Notify,
}

impl Flight {
    /// Sets the outcome without waking anyone (the caller wakes them once it has released its
    /// locks); `false` if the flight had landed already, in which case nothing changes.
    pub(super) fn land(&self, landing: Landing) -> bool {
        self.landing.set(landing).is_ok()
    }

    /// Wakes every waiter. Call after [`land`](Self::land), before running anything that
    /// could panic or block (logging included), so that no waiter is left asleep.
    pub(super) fn wake_waiters(&self) {
        self.landed.notify_waiters();
    }

    pub(super) fn landing(&self) -> Option<&Landing> {
        self.landing.get()
    }

    /// Waits until the flight has landed and been woken.
    pub(super) async fn wait(&self) -> &Landing {
        loop {
            let woken = self.landed.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a landing in between still wakes us.
            woken.as_mut().enable();
            if let Some(landing) = self.landing.get() {
                return landing;
            }
            woken.await;
        }
    }
}

/// Who may abandon a flight on being dropped: see the module documentation.
type AbandonHook = Box<dyn FnOnce(&Arc<Flight>) + Send + Sync>;

/// The duty to land a flight. Dropped before [`disarm`](Self::disarm), it runs its hook, which
/// lands the flight as abandoned and wakes the waiters.
pub(super) struct Pilot {
    flight: Arc<Flight>,
    on_abandon: Option<AbandonHook>,
}

impl Pilot {
    pub(super) fn new(
        flight: Arc<Flight>,
        on_abandon: impl FnOnce(&Arc<Flight>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            flight,
            on_abandon: Some(Box::new(on_abandon)),
        }
    }

    pub(super) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// The flight has been handled; dropping the pilot changes nothing any more.
    pub(super) fn disarm(mut self) {
        self.on_abandon = None;
    }
}

impl Drop for Pilot {
    fn drop(&mut self) {
        if let Some(hook) = self.on_abandon.take() {
            hook(&self.flight);
        }
    }
}

impl std::fmt::Debug for Pilot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pilot").finish_non_exhaustive()
    }
}

/// The flight in the air, if any; it lives under the cache's lock.
#[derive(Debug, Default)]
pub(super) struct FlightSlot {
    current: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    flight: Arc<Flight>,
    /// Whether a caller that needs a token now may wait for it (see the module documentation).
    joinable: bool,
    started: Moment,
}

/// What a caller who needs a token now does.
#[derive(Debug)]
pub(super) enum Boarding {
    /// Wait for this flight.
    Join(Arc<Flight>),
    /// Fly this new flight (and wake the waiters of `superseded`, if any, once unlocked).
    Fly {
        flight: Arc<Flight>,
        superseded: Option<Arc<Flight>>,
    },
    /// There is no flight to join, and this caller cannot fly one.
    Grounded,
}

impl FlightSlot {
    /// For a caller that needs a token now: join the flight in the air if it may, or, if it
    /// `can_fly`, start a new, joinable one in its place. A superseded flight is landed as
    /// abandoned here; the caller wakes its waiters once it has released the lock.
    pub(super) fn board(&mut self, now: Moment, stale_after: Duration, can_fly: bool) -> Boarding {
        if let Some(current) = &self.current
            && current.joinable
            && !current.is_stale(now, stale_after)
        {
            return Boarding::Join(Arc::clone(&current.flight));
        }
        if !can_fly {
            return Boarding::Grounded;
        }
        let (flight, superseded) = self.start(now, true);
        Boarding::Fly { flight, superseded }
    }

    /// For a refresh ahead: a new flight unless one is in the air (a stale one is superseded,
    /// as in [`board`](Self::board)). `joinable` says whether it will run where it cannot
    /// stall.
    pub(super) fn start_if_idle(
        &mut self,
        now: Moment,
        stale_after: Duration,
        joinable: bool,
    ) -> Option<(Arc<Flight>, Option<Arc<Flight>>)> {
        if self
            .current
            .as_ref()
            .is_some_and(|current| !current.is_stale(now, stale_after))
        {
            return None;
        }
        Some(self.start(now, joinable))
    }

    fn start(&mut self, now: Moment, joinable: bool) -> (Arc<Flight>, Option<Arc<Flight>>) {
        let flight = Arc::new(Flight::default());
        let previous = self.current.replace(InFlight {
            flight: Arc::clone(&flight),
            joinable,
            started: now,
        });
        let superseded = previous.map(|previous| previous.flight);
        if let Some(superseded) = &superseded {
            superseded.land(Landing::Abandoned);
        }
        (flight, superseded)
    }

    /// Forgets `flight` if it is the one in the air; `true` if it was.
    pub(super) fn clear_if(&mut self, flight: &Arc<Flight>) -> bool {
        let ours = self
            .current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(&current.flight, flight));
        if ours {
            self.current = None;
        }
        ours
    }

    pub(super) fn is_busy(&self) -> bool {
        self.current.is_some()
    }

    /// When the flight in the air becomes stale, if one is.
    pub(super) fn stale_at(&self, stale_after: Duration) -> Option<Moment> {
        self.current
            .as_ref()
            .map(|current| current.started + stale_after)
    }
}

impl InFlight {
    fn is_stale(&self, now: Moment, stale_after: Duration) -> bool {
        now >= self.started + stale_after
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const STALE: Duration = Duration::from_secs(35);

    fn at(seconds: u64) -> Moment {
        Moment::from_elapsed(Duration::from_secs(seconds))
    }

    fn fly(boarding: Boarding) -> Arc<Flight> {
        match boarding {
            Boarding::Fly { flight, .. } => flight,
            Boarding::Join(_) | Boarding::Grounded => panic!("expected to fly"),
        }
    }

    #[tokio::test]
    async fn every_waiter_gets_the_one_landing() {
        let flight = Arc::new(Flight::default());
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let flight = Arc::clone(&flight);
                tokio::spawn(async move { matches!(flight.wait().await, Landing::Failed(_)) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(flight.land(Landing::Failed(Error::config("x"))));
        assert!(!flight.land(Landing::Abandoned), "the first landing stands");
        flight.wake_waiters();
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
    }

    #[test]
    fn a_dropped_pilot_abandons_once_and_a_disarmed_one_never() {
        let abandoned = Arc::new(AtomicUsize::new(0));
        let hook = |count: Arc<AtomicUsize>| {
            move |flight: &Arc<Flight>| {
                flight.land(Landing::Abandoned);
                count.fetch_add(1, Ordering::SeqCst);
            }
        };
        let flight = Arc::new(Flight::default());
        drop(Pilot::new(
            Arc::clone(&flight),
            hook(Arc::clone(&abandoned)),
        ));
        assert_eq!(abandoned.load(Ordering::SeqCst), 1);
        assert!(matches!(flight.landing(), Some(Landing::Abandoned)));

        let flight = Arc::new(Flight::default());
        Pilot::new(Arc::clone(&flight), hook(Arc::clone(&abandoned))).disarm();
        assert_eq!(abandoned.load(Ordering::SeqCst), 1);
        assert!(flight.landing().is_none());
    }

    #[test]
    fn callers_join_a_joinable_flight_until_it_is_stale() {
        let mut slot = FlightSlot::default();
        let first = fly(slot.board(at(0), STALE, true));
        match slot.board(at(34), STALE, true) {
            Boarding::Join(joined) => assert!(Arc::ptr_eq(&joined, &first)),
            Boarding::Fly { .. } | Boarding::Grounded => panic!("should have joined"),
        }
        // Without a runtime a caller can still join, but not fly.
        match slot.board(at(34), STALE, false) {
            Boarding::Join(joined) => assert!(Arc::ptr_eq(&joined, &first)),
            other => panic!("should have joined, not {other:?}"),
        }
        assert!(matches!(
            slot.board(at(35), STALE, false),
            Boarding::Grounded
        ));
        match slot.board(at(35), STALE, true) {
            Boarding::Fly { flight, superseded } => {
                assert!(!Arc::ptr_eq(&flight, &first));
                assert!(Arc::ptr_eq(&superseded.unwrap(), &first));
                assert!(matches!(first.landing(), Some(Landing::Abandoned)));
            }
            Boarding::Join(_) | Boarding::Grounded => panic!("a stale flight must be superseded"),
        }
    }

    #[test]
    fn a_refresh_that_may_stall_is_never_joined() {
        let mut slot = FlightSlot::default();
        let (refresh, none) = slot.start_if_idle(at(0), STALE, false).unwrap();
        assert!(none.is_none());
        assert!(slot.start_if_idle(at(1), STALE, true).is_none(), "busy");
        match slot.board(at(1), STALE, true) {
            Boarding::Fly { superseded, .. } => {
                assert!(Arc::ptr_eq(&superseded.unwrap(), &refresh));
            }
            Boarding::Join(_) | Boarding::Grounded => panic!("joined a flight that may stall"),
        }
    }

    #[test]
    fn only_the_flight_in_the_air_is_cleared() {
        let mut slot = FlightSlot::default();
        let first = fly(slot.board(at(0), STALE, true));
        let other = Arc::new(Flight::default());
        assert!(!slot.clear_if(&other));
        assert!(slot.is_busy());
        assert_eq!(slot.stale_at(STALE), Some(at(35)));
        assert!(slot.clear_if(&first));
        assert!(!slot.is_busy());
        assert_eq!(slot.stale_at(STALE), None);
    }
}
