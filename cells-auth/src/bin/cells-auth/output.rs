//! What `cells-auth token` prints: the three output formats and RFC 3339 timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How `cells-auth token` prints the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// The token alone and a newline, for `$(cells-auth token)`.
    Raw,
    /// A JSON object: `access_token`, `token_type`, `expires_in`, `expires_at` (RFC 3339, UTC).
    Json,
    /// An HTTP header line, `Authorization: Bearer <token>`, for `curl -H @-` and the like.
    Header,
}

/// The JSON document of `--format json`, in the field order users read it in.
#[derive(Serialize)]
struct JsonToken<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    expires_at: String,
}

/// The text to print for `token`, newline included. `expires_in` counts whole seconds from
/// `now_unix`, rounded down so that a script never believes it has more time than it has.
pub(crate) fn render(format: Format, token: &str, expires_at_unix: u64, now_unix: u64) -> String {
    match format {
        Format::Raw => format!("{token}\n"),
        Format::Header => format!("Authorization: Bearer {token}\n"),
        Format::Json => {
            let document = JsonToken {
                access_token: token,
                token_type: "bearer",
                expires_in: expires_at_unix.saturating_sub(now_unix),
                expires_at: rfc3339_utc(expires_at_unix),
            };
            // Serialising a struct of strings and integers cannot fail.
            let mut text = serde_json::to_string_pretty(&document)
                .expect("a token document always serialises");
            text.push('\n');
            text
        }
    }
}

/// Seconds since the Unix epoch at `time`, rounded down; 0 for a time before 1970 (a clock
/// set that far back makes every token look long-lived, but is the best there is).
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The latest instant RFC 3339's four-digit years can express, 9999-12-31T23:59:59Z. A server
/// could announce an absurd lifetime; the output stays well-formed. The clamp also keeps
/// `to_string` from panicking: `humantime` returns a formatting error for later instants.
const MAX_RFC3339_UNIX: u64 = 253_402_300_799;

/// Formats seconds since the Unix epoch as RFC 3339 in UTC, such as `2026-11-25T17:00:00Z`.
pub(crate) fn rfc3339_utc(unix_seconds: u64) -> String {
    let instant = UNIX_EPOCH + Duration::from_secs(unix_seconds.min(MAX_RFC3339_UNIX));
    humantime::format_rfc3339_seconds(instant).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339_utc(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_626_000), "2026-11-25T17:00:00Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }

    /// Cross-checks `humantime` against `httpdate`'s independent calendar, every 9 999 999
    /// seconds (an odd step, so every time of day and month comes up) from 1970 to beyond 2200:
    /// the CLI tests read `expires_at` back through `httpdate`, so the two must agree.
    #[test]
    fn rfc3339_agrees_with_httpdate() {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for seconds in (0..7_500_000_000_u64).step_by(9_999_999) {
            // "Wed, 25 Nov 2026 17:00:00 GMT"
            let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds));
            let parts: Vec<&str> = http.split(' ').collect();
            let month = MONTHS.iter().position(|name| *name == parts[2]).unwrap() + 1;
            let expected = format!("{}-{month:02}-{}T{}Z", parts[3], parts[1], parts[4]);
            assert_eq!(rfc3339_utc(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn the_three_formats() {
        assert_eq!(render(Format::Raw, "tok", 100, 40), "tok\n");
        assert_eq!(
            render(Format::Header, "tok", 100, 40),
            "Authorization: Bearer tok\n"
        );
        let json = render(Format::Json, "tok", 1_795_626_000, 1_795_622_400);
        assert!(json.ends_with("}\n"), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "access_token": "tok",
                "token_type": "bearer",
                "expires_in": 3600,
                "expires_at": "2026-11-25T17:00:00Z",
            })
        );
    }

    #[test]
    fn unix_seconds_round_down_and_saturate_before_1970() {
        let time = UNIX_EPOCH + Duration::from_millis(1_999);
        assert_eq!(unix_seconds(time), 1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn an_expired_token_reports_zero_seconds_left() {
        let json = render(Format::Json, "tok", 100, 200);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["expires_in"], 0);
    }
}
