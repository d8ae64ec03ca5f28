//! Time, injectable so that tests move it instead of waiting for it.
//!
//! Every wait and every expiry decision of the provider goes through [`Clock`]: now, the cheap
//! reading of the cached-read path, the pause between retries and the timeout of a request.
//! Production reads the system's clocks and sleeps on tokio; tests use
//! [`ManualClock`](crate::testing::ManualClock) (feature `testing`), which moves only when told.
//!
//! # Suspend
//! Monotonic clocks (`Instant`, `CLOCK_MONOTONIC`) stop while a laptop or VM is suspended: a
//! token that expired during a suspend would still look valid after the resume. So expiry is
//! measured on a clock that counts suspended time: `CLOCK_BOOTTIME` on Linux. The cached-read
//! path cannot afford that clock (it is not one of the cheap "coarse" clocks), so it checks two
//! coarse clocks instead: the monotonic one, which never steps backwards, and the wall clock,
//! which keeps counting through a suspend. Whichever reaches its deadline first sends the
//! reader to the slow path, which decides on the boot-time clock.

use std::future::Future;
use std::ops::Add;
use std::time::{Duration, SystemTime};

#[cfg(feature = "testing")]
use std::sync::Arc;

/// A point on the expiry clock: time since an arbitrary origin, counting suspended time
/// where the platform can (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(Duration);

impl Moment {
    /// How long after `earlier` this is; zero if it is not after it.
    pub(crate) fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn from_elapsed(elapsed: Duration) -> Self {
        Self(elapsed)
    }
}

impl Add<Duration> for Moment {
    type Output = Self;

    /// Saturating: a deadline may be as long as `Duration::MAX`.
    fn add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }
}

/// Deadlines on the cached-read path's two coarse clocks (see [`Clock::fast_deadline`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastDeadline {
    monotonic: u64,
    wall: u64,
}

impl FastDeadline {
    /// A deadline that has already passed.
    pub(crate) const PASSED: Self = Self {
        monotonic: 0,
        wall: 0,
    };
}

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
    /// Now on the expiry clock, which counts suspended time: every expiry decision uses this.
    pub(crate) fn now(&self) -> Moment {
        match self {
            Self::System => system::boot_time(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.now(),
        }
    }

    /// Whether `deadline` (from [`fast_deadline`](Self::fast_deadline)) is still ahead, read on
    /// the two coarse clocks: a few nanoseconds, millisecond resolution, no shared write.
    #[inline]
    pub(crate) fn before(&self, deadline: &FastDeadline) -> bool {
        match self {
            Self::System => {
                system::coarse_monotonic() < deadline.monotonic
                    && system::coarse_wall() < deadline.wall
            }
            #[cfg(feature = "testing")]
            Self::Manual(state) => {
                let (monotonic, wall) = state.fast_now();
                monotonic < deadline.monotonic && wall < deadline.wall
            }
        }
    }

    /// `at` as deadlines on the two coarse clocks: both fall due after the time left until `at`
    /// has passed on them. A suspend moves only the wall clock, a wall clock stepped back is
    /// caught by the monotonic one.
    pub(crate) fn fast_deadline(&self, at: Moment) -> FastDeadline {
        let left = at.saturating_duration_since(self.now());
        let left = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
        let (monotonic, wall) = match self {
            Self::System => (system::coarse_monotonic(), system::coarse_wall()),
            #[cfg(feature = "testing")]
            Self::Manual(state) => state.fast_now(),
        };
        FastDeadline {
            monotonic: monotonic.saturating_add(left),
            wall: wall.saturating_add(left),
        }
    }

    /// Wall-clock now: for reporting (`AccessToken::expires_at`), JWT `exp` claims and
    /// `Retry-After` dates.
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

    /// Runs `future` for at most `limit`; `None` if the time ran out first. On a manual clock
    /// the limit passes when the clock is moved past it.
    pub(crate) async fn timeout<F: Future>(&self, limit: Duration, future: F) -> Option<F::Output> {
        match self {
            Self::System => tokio::time::timeout(limit, future).await.ok(),
            #[cfg(feature = "testing")]
            Self::Manual(state) => {
                let deadline = state.now() + limit;
                tokio::select! {
                    biased;
                    output = future => Some(output),
                    () = state.sleep_until(deadline) => None,
                }
            }
        }
    }
}

/// The system's clocks.
#[cfg(target_os = "linux")]
mod system {
    use rustix::time::{ClockId, clock_gettime};

    use super::Moment;

    /// `CLOCK_BOOTTIME`: monotonic, and counts time spent suspended.
    pub(super) fn boot_time() -> Moment {
        let now = clock_gettime(ClockId::Boottime);
        Moment(std::time::Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        ))
    }

    /// `CLOCK_MONOTONIC_COARSE` in nanoseconds, called straight into the vDSO through rustix
    /// (inlined, no libc wrapper). Through `coarsetime` (an out-of-line call, then libc's) the
    /// same clock took 8 of a cached read's 14 ns on an AMD EPYC VM.
    #[inline]
    pub(super) fn coarse_monotonic() -> u64 {
        nanos(clock_gettime(ClockId::MonotonicCoarse))
    }

    /// `CLOCK_REALTIME_COARSE` in nanoseconds: the wall clock, which keeps counting through a
    /// suspend.
    #[inline]
    pub(super) fn coarse_wall() -> u64 {
        nanos(clock_gettime(ClockId::RealtimeCoarse))
    }

    #[inline]
    fn nanos(time: rustix::time::Timespec) -> u64 {
        // Both clocks count from a point in the past: the fields are non-negative.
        let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
        seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
    }
}

/// Elsewhere: the monotonic `Instant` for expiry (it may stop during a suspend: the wall-clock
/// check of the cached read still catches one), and coarsetime's fast clock
/// (`CLOCK_MONOTONIC_RAW_APPROX` on macOS, `CLOCK_MONOTONIC_FAST` on FreeBSD).
#[cfg(not(target_os = "linux"))]
mod system {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime};

    use super::Moment;

    pub(super) fn boot_time() -> Moment {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        Moment(ORIGIN.get_or_init(Instant::now).elapsed())
    }

    #[inline]
    pub(super) fn coarse_monotonic() -> u64 {
        coarsetime::Duration::from_ticks(coarsetime::Instant::now_without_cache_update().as_ticks())
            .as_nanos()
    }

    #[inline]
    pub(super) fn coarse_wall() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            })
    }
}
