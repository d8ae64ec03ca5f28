//! A clock that moves only when a test says so.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A manual clock for tests of code that uses [`CellsAuth`](crate::CellsAuth); hand it to
/// [`CellsAuthBuilder::clock`](crate::CellsAuthBuilder::clock).
///
/// Time moves only when the test calls [`advance`](Self::advance): a cached token expires, or
/// becomes due for refresh, at the first `token()` call after its time has come. Retry backoff
/// and `Retry-After` pauses complete at once and advance the clock by their length, so
/// [`elapsed`](Self::elapsed) tells how long the provider chose to wait. Timeouts of single HTTP
/// requests stay on real time.
///
/// ```
/// use std::time::Duration;
/// use cells_auth::testing::ManualClock;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.elapsed(), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

#[derive(Debug)]
pub(crate) struct ManualState {
    start: Instant,
    start_system: SystemTime,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock that starts at the current time and stands still.
    pub fn new() -> Self {
        Self {
            state: Arc::new(ManualState {
                start: Instant::now(),
                start_system: SystemTime::now(),
                offset: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.state.advance(by);
    }

    /// How far the clock has moved since it was created.
    pub fn elapsed(&self) -> Duration {
        self.state.offset()
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
    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn elapsed_nanos(&self) -> u64 {
        u64::try_from(self.offset().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn now(&self) -> Instant {
        self.start + self.offset()
    }

    pub(crate) fn system_now(&self) -> SystemTime {
        self.start_system + self.offset()
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}
