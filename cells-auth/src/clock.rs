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
            Self::System => coarse_ticks(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.elapsed_nanos(),
        }
    }

    /// `at` on the scale of [`fast_now`](Self::fast_now).
    pub(crate) fn fast_deadline(&self, at: Instant) -> u64 {
        let left = at.saturating_duration_since(self.now());
        match self {
            Self::System => self.fast_now().saturating_add(duration_ticks(left)),
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

/// The coarse monotonic clock in nanoseconds: `CLOCK_MONOTONIC_COARSE`, called straight into
/// the vDSO through rustix (inlined, no libc wrapper). Through `coarsetime` (an out-of-line call,
/// then libc's) the same clock took 8 of a cached read's 14 ns on an AMD EPYC VM.
#[cfg(target_os = "linux")]
#[inline]
fn coarse_ticks() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // A monotonic clock counts from boot: both fields are non-negative.
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// `duration` in the ticks of [`coarse_ticks`].
#[cfg(target_os = "linux")]
fn duration_ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Elsewhere, coarsetime's fast clock: `CLOCK_MONOTONIC_RAW_APPROX` on macOS,
/// `CLOCK_MONOTONIC_FAST` on FreeBSD.
#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_ticks() -> u64 {
    coarsetime::Instant::now_without_cache_update().as_ticks()
}

#[cfg(not(target_os = "linux"))]
fn duration_ticks(duration: Duration) -> u64 {
    coarsetime::Duration::from(duration).as_ticks()
}
