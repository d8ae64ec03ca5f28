//! When to refresh a token and until when to serve it: every margin scales with its lifetime.

use std::time::Duration;

use crate::clock::Moment;
use crate::token::Timing;

/// Refresh when this little of the lifetime is left, or at half-life if that is later, so a
/// one-day token is refreshed five minutes before it expires and a one-minute token after 30 s.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Refresh times are spread by up to this share of the lifetime (and at most
/// [`MAX_REFRESH_JITTER`]) so that many processes started together do not refresh together.
const REFRESH_JITTER_SHARE: f64 = 0.05;
const MAX_REFRESH_JITTER: Duration = Duration::from_secs(30);
/// A token is not served in the last 1/20 of its life (at most 30 s): clocks drift and requests
/// take time to reach the server. A six-second token is still served for 5.7 s.
const EXPIRY_SAFETY_DIVISOR: u32 = 20;
const MAX_EXPIRY_SAFETY: Duration = Duration::from_secs(30);

/// When to refresh and until when to serve a token of `lifetime` fetched at `started`. Every
/// margin scales with the lifetime, so short-lived tokens are served for most of their life.
pub(crate) fn timing_for(started: Moment, lifetime: Duration) -> Timing {
    let refresh_after = (lifetime / 2).max(lifetime.saturating_sub(REFRESH_BEFORE_EXPIRY));
    let jitter = lifetime
        .mul_f64(REFRESH_JITTER_SHARE)
        .min(MAX_REFRESH_JITTER)
        .mul_f64(fastrand::f64());
    let safety = (lifetime / EXPIRY_SAFETY_DIVISOR).min(MAX_EXPIRY_SAFETY);
    Timing {
        refresh_at: started + refresh_after.saturating_sub(jitter),
        usable_until: started + lifetime.saturating_sub(safety),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_long_token_refreshes_minutes_before_expiry() {
        let start = Moment::from_elapsed(Duration::from_secs(1000));
        let day = Duration::from_secs(86_399);
        let timing = timing_for(start, day);
        let refresh = timing.refresh_at.saturating_duration_since(start);
        assert!(refresh <= day - REFRESH_BEFORE_EXPIRY);
        assert!(refresh >= day - REFRESH_BEFORE_EXPIRY - MAX_REFRESH_JITTER);
        assert_eq!(
            timing.usable_until.saturating_duration_since(start),
            day - MAX_EXPIRY_SAFETY
        );
    }

    #[test]
    fn a_six_second_token_is_served_for_most_of_its_life() {
        let start = Moment::from_elapsed(Duration::from_secs(1000));
        let timing = timing_for(start, Duration::from_secs(6));
        assert_eq!(
            timing.usable_until.saturating_duration_since(start),
            Duration::from_millis(5700)
        );
        let refresh = timing.refresh_at.saturating_duration_since(start);
        assert!(refresh <= Duration::from_secs(3) && refresh >= Duration::from_millis(2700));
    }
}
