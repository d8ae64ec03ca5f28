//! A clock that moves only when a test says so.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::clock::Moment;

/// A manual clock for tests of code that uses [`CellsAuth`](crate::CellsAuth); hand it to
/// [`CellsAuthBuilder::clock`](crate::CellsAuthBuilder::clock).
///
/// Time moves only when the test calls [`advance`](Self::advance) or
/// [`suspend`](Self::suspend): a cached token expires, or becomes due for refresh, at the first
/// `token()` call after its time has come, and a token request's timeout passes when the clock
/// is moved past it. Retry backoff and `Retry-After` pauses complete at once and advance the
/// clock by their length, so [`elapsed`](Self::elapsed) tells how long the provider chose to
/// wait.
///
/// ```
/// use std::time::Duration;
/// use cells_auth::testing::ManualClock;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(3600));
/// clock.suspend(Duration::from_secs(60));
/// assert_eq!(clock.elapsed(), Duration::from_secs(3660));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

#[derive(Debug)]
pub(crate) struct ManualState {
    start_system: SystemTime,
    offsets: Mutex<Offsets>,
    /// Wakes the timeouts waiting for the clock to move.
    moved: Notify,
}

/// How far each of the clocks has moved since the start.
#[derive(Debug, Default, Clone, Copy)]
struct Offsets {
    /// Everything: the boot-time clock and the wall clock.
    total: Duration,
    /// Time while the machine was awake: the monotonic clock.
    awake: Duration,
}

impl ManualClock {
    /// A clock that starts at the current wall-clock time and stands still.
    pub fn new() -> Self {
        Self {
            state: Arc::new(ManualState {
                start_system: SystemTime::now(),
                offsets: Mutex::new(Offsets::default()),
                moved: Notify::new(),
            }),
        }
    }

    /// Moves the clock forward while the machine is awake: every clock moves.
    pub fn advance(&self, by: Duration) {
        self.state.advance(by);
    }

    /// Simulates a suspend of the machine for `by`: the wall clock and the boot-time clock
    /// (Linux `CLOCK_BOOTTIME`) move, the monotonic clock does not, as on a laptop or VM that
    /// was put to sleep.
    pub fn suspend(&self, by: Duration) {
        self.state.move_by(by, Duration::ZERO);
    }

    /// How far the clock has moved since it was created, suspends included.
    pub fn elapsed(&self) -> Duration {
        self.state.offsets().total
    }

    pub(crate) fn state(&self) -> Arc<ManualState> {
        Arc::clone(&self.state)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualState {
    fn offsets(&self) -> Offsets {
        *self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> Moment {
        Moment::from_elapsed(self.offsets().total)
    }

    /// The monotonic and the wall clock in nanoseconds since the start.
    pub(crate) fn fast_now(&self) -> (u64, u64) {
        let offsets = self.offsets();
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        (nanos(offsets.awake), nanos(offsets.total))
    }

    pub(crate) fn system_now(&self) -> SystemTime {
        self.start_system + self.offsets().total
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.move_by(by, by);
    }

    fn move_by(&self, total: Duration, awake: Duration) {
        {
            let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
            offsets.total = offsets.total.saturating_add(total);
            offsets.awake = offsets.awake.saturating_add(awake);
        }
        self.moved.notify_waiters();
    }

    /// Returns once the clock has reached `deadline`.
    pub(crate) async fn sleep_until(&self, deadline: Moment) {
        loop {
            let moved = self.moved.notified();
            let mut moved = std::pin::pin!(moved);
            // Registered before the check, so a move in between still wakes us.
            moved.as_mut().enable();
            if self.now() >= deadline {
                return;
            }
            moved.await;
        }
    }
}
