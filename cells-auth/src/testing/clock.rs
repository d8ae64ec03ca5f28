//! A clock that moves only when a test says so.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

/// A manual clock for tests of code that uses [`CellsAuth`](crate::CellsAuth); hand it to
/// [`CellsAuthBuilder::clock`](crate::CellsAuthBuilder::clock).
///
/// Cache timers (refresh ahead, expiry) fire only when the test calls [`advance`](Self::advance);
/// retry backoff and `Retry-After` pauses complete at once and advance the clock by their length,
/// so [`elapsed`](Self::elapsed) tells how long the provider chose to wait. Timeouts of single
/// HTTP requests stay on real time.
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
    changed: watch::Sender<Duration>,
}

impl ManualClock {
    /// A clock that starts at the current time and stands still.
    pub fn new() -> Self {
        let (changed, _) = watch::channel(Duration::ZERO);
        Self {
            state: Arc::new(ManualState {
                start: Instant::now(),
                start_system: SystemTime::now(),
                offset: Mutex::new(Duration::ZERO),
                changed,
            }),
        }
    }

    /// Moves the clock forward, firing every timer that falls due.
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

    pub(crate) fn now(&self) -> Instant {
        self.start + self.offset()
    }

    pub(crate) fn system_now(&self) -> SystemTime {
        self.start_system + self.offset()
    }

    pub(crate) fn advance(&self, by: Duration) {
        let offset = {
            let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
            *offset += by;
            *offset
        };
        self.changed.send_replace(offset);
    }

    pub(crate) async fn sleep_until(&self, deadline: Instant) {
        let target = deadline.saturating_duration_since(self.start);
        let mut changes = self.changed.subscribe();
        // The sender lives as long as `self`, so waiting ends only when the clock gets there.
        let _ = changes.wait_for(|offset| *offset >= target).await;
    }
}
