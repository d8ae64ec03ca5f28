//! Time, injectable so tests never wait for real expiry.
//!
//! Production uses the monotonic system clock and tokio timers. Tests use
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

    /// Wall-clock now: only for reporting (`AccessToken::expires_at`) and JWT `exp` claims.
    pub(crate) fn system_now(&self) -> SystemTime {
        match self {
            Self::System => SystemTime::now(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.system_now(),
        }
    }

    /// Waits until `deadline`: a timer of the cache (refresh ahead, expiry). On a manual clock
    /// it ends when the test advances the clock past `deadline`.
    pub(crate) async fn sleep_until(&self, deadline: Instant) {
        match self {
            Self::System => tokio::time::sleep_until(deadline.into()).await,
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.sleep_until(deadline).await,
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
