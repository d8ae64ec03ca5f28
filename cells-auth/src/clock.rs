//! Time, injectable so tests never wait for real expiry.
//!
//! Production uses the monotonic system clock (and its coarse variant on the cached-read path)
//! and tokio's sleep for backoff. Tests use
//! [`ManualClock`](crate::testing::ManualClock) (feature `testing`), which moves only when told.

use std::time::{Duration, Instant, SystemTime};

#[cfg(feature = "testing")]
use std::sync::Arc;

/// The clock a provider reads. An enum rather than a trait object: the system clock is the only
/// production case, and it stays a direct call.
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    #[cfg(feature = "testing")]
    Manual(Arc<crate::testing::ManualState>),
}

impl Clock {
    /// Monotonic now: all expiry decisions use this.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.now(),
        }
    }

    /// A cheap monotonic reading for the cached-read path, in ticks of an unspecified unit:
    /// compare it only with [`fast_deadline`](Self::fast_deadline). On the system clock this is
    /// `CLOCK_MONOTONIC_COARSE` (a few nanoseconds, millisecond resolution, and it writes no
    /// shared memory), where `Instant::now()` would cost four times as much.
    #[inline]
    pub(crate) fn fast_now(&self) -> u64 {
        match self {
            Self::System => coarsetime::Instant::now_without_cache_update().as_ticks(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.elapsed_nanos(),
        }
    }

    /// `at` on the scale of [`fast_now`](Self::fast_now).
    pub(crate) fn fast_deadline(&self, at: Instant) -> u64 {
        let left = at.saturating_duration_since(self.now());
        match self {
            Self::System => self
                .fast_now()
                .saturating_add(coarsetime::Duration::from(left).as_ticks()),
            #[cfg(feature = "testing")]
            Self::Manual(_) => self
                .fast_now()
                .saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Wall-clock now: only for reporting (`AccessToken::expires_at`) and JWT `exp` claims.
    pub(crate) fn system_now(&self) -> SystemTime {
        match self {
            Self::System => SystemTime::now(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.system_now(),
        }
    }

    /// Waits out a backoff or `Retry-After` pause of a retrying request. On a manual clock it
    /// returns at once and advances the clock by `pause`, so retry tests run instantly and can
    /// still assert how long the provider chose to wait.
    pub(crate) async fn pause(&self, pause: Duration) {
        match self {
            Self::System => tokio::time::sleep(pause).await,
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.advance(pause),
        }
    }
}
