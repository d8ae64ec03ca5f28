//! What a store holds once opened: a shared token or a failure latch, and their plaintext
//! encoding (a small fixed binary layout, parsed strictly).
//!
//! The layout rather than JSON because a JSON round trip would leave copies of the token in
//! intermediate buffers that cannot be zeroized; here the only plaintext buffer is the one
//! [`Zeroizing`] vector.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Bytes of one encoded wall-clock time: seconds since the epoch (i64, big-endian, negative
/// before 1970) then nanoseconds (u32, big-endian, below one billion).
const TIME_LEN: usize = 12;

const LATCH_CREDENTIALS_REJECTED: u8 = 1;
const LATCH_RATE_LIMITED: u8 = 2;
const CODE_ABSENT: u8 = 0;
const CODE_PRESENT: u8 = 1;

/// An access token shared through a store.
pub(crate) struct TokenEntry {
    /// The access token itself.
    pub(crate) token: SecretString,
    /// When the token expires, by the wall clock (monotonic clocks are not comparable between
    /// processes or machines).
    pub(crate) expires_at: SystemTime,
    /// When the token was obtained, by the wall clock.
    pub(crate) issued_at: SystemTime,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// A failure recorded so that the whole fleet stops asking the token server until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LatchEntry {
    /// When asking again becomes worthwhile, by the wall clock.
    pub(crate) until: SystemTime,
    /// What the token server said.
    pub(crate) kind: LatchKind,
}

/// The failure a [`LatchEntry`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LatchKind {
    /// The token server rejected the client credentials.
    CredentialsRejected {
        /// The HTTP status of the rejection.
        status: u16,
        /// The OAuth error code (such as `invalid_client`), when the server gave one.
        code: Option<String>,
    },
    /// The token server answered 429 (or similar) with a `Retry-After`.
    RateLimited {
        /// The HTTP status of the answer.
        status: u16,
    },
}

impl TokenEntry {
    /// Layout: expiry time, issue time, then the token's UTF-8 bytes up to the end.
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let token = self.token.expose_secret().as_bytes();
        // Sized exactly up front, so that no reallocation leaves a stray copy of the token.
        let mut out = Zeroizing::new(Vec::with_capacity(2 * TIME_LEN + token.len()));
        put_time(&mut out, self.expires_at);
        put_time(&mut out, self.issued_at);
        out.extend_from_slice(token);
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let (expires_at, rest) = take_time(bytes)?;
        let (issued_at, rest) = take_time(rest)?;
        let token = std::str::from_utf8(rest).ok()?;
        Some(Self {
            // `From<&str>` copies into an allocation of exactly the token's length, which the
            // secret then owns and zeroizes.
            token: SecretString::from(token),
            expires_at,
            issued_at,
        })
    }
}

impl LatchEntry {
    /// Layout: the time, a kind byte, the status (u16, big-endian), and for a rejection a
    /// presence byte followed by the code's UTF-8 bytes up to the end.
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(TIME_LEN + 4 + 64));
        put_time(&mut out, self.until);
        match &self.kind {
            LatchKind::CredentialsRejected { status, code } => {
                out.push(LATCH_CREDENTIALS_REJECTED);
                out.extend_from_slice(&status.to_be_bytes());
                match code {
                    Some(code) => {
                        out.push(CODE_PRESENT);
                        out.extend_from_slice(code.as_bytes());
                    }
                    None => out.push(CODE_ABSENT),
                }
            }
            LatchKind::RateLimited { status } => {
                out.push(LATCH_RATE_LIMITED);
                out.extend_from_slice(&status.to_be_bytes());
            }
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let (until, rest) = take_time(bytes)?;
        let (&kind, rest) = rest.split_first()?;
        let (status, rest) = take_array::<2>(rest)?;
        let status = u16::from_be_bytes(status);
        let kind = match kind {
            LATCH_CREDENTIALS_REJECTED => {
                let code = match rest.split_first()? {
                    (&CODE_ABSENT, []) => None,
                    (&CODE_PRESENT, code) => Some(std::str::from_utf8(code).ok()?.to_owned()),
                    _ => return None,
                };
                LatchKind::CredentialsRejected { status, code }
            }
            LATCH_RATE_LIMITED if rest.is_empty() => LatchKind::RateLimited { status },
            _ => return None,
        };
        Some(Self { until, kind })
    }
}

fn put_time(out: &mut Vec<u8>, time: SystemTime) {
    // Seconds and nanoseconds such that time = epoch + secs + nanos, with nanos in 0..1e9.
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, 1_000_000_000 - nanos),
            }
        }
    };
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
}

fn take_time(bytes: &[u8]) -> Option<(SystemTime, &[u8])> {
    let (secs, rest) = take_array::<8>(bytes)?;
    let (nanos, rest) = take_array::<4>(rest)?;
    let secs = i64::from_be_bytes(secs);
    let nanos = u32::from_be_bytes(nanos);
    if nanos >= 1_000_000_000 {
        return None;
    }
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    Some((whole.checked_add(Duration::from_nanos(nanos.into()))?, rest))
}

fn take_array<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    Some((*head, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_entry(token: &str) -> TokenEntry {
        TokenEntry {
            token: SecretString::from(token),
            expires_at: UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789),
            issued_at: UNIX_EPOCH + Duration::from_secs(1_899_996_400),
        }
    }

    #[test]
    fn a_token_entry_round_trips() {
        let entry = token_entry("tok-\u{e9}");
        let back = TokenEntry::decode(&entry.encode()).unwrap();
        assert_eq!(back.token.expose_secret(), "tok-\u{e9}");
        assert_eq!(back.expires_at, entry.expires_at);
        assert_eq!(back.issued_at, entry.issued_at);
    }

    #[test]
    fn times_before_the_epoch_round_trip() {
        for time in [
            UNIX_EPOCH - Duration::new(5, 250),
            UNIX_EPOCH - Duration::from_secs(7),
            UNIX_EPOCH,
        ] {
            let mut bytes = Vec::new();
            put_time(&mut bytes, time);
            assert_eq!(take_time(&bytes), Some((time, &[][..])));
        }
    }

    #[test]
    fn latch_entries_round_trip() {
        let until = UNIX_EPOCH + Duration::from_secs(1_900_000_600);
        for kind in [
            LatchKind::CredentialsRejected {
                status: 400,
                code: Some("invalid_client".to_owned()),
            },
            LatchKind::CredentialsRejected {
                status: 401,
                code: None,
            },
            LatchKind::CredentialsRejected {
                status: 400,
                code: Some(String::new()),
            },
            LatchKind::RateLimited { status: 429 },
        ] {
            let entry = LatchEntry { until, kind };
            assert_eq!(LatchEntry::decode(&entry.encode()), Some(entry));
        }
    }

    #[test]
    fn malformed_plaintexts_decode_as_none() {
        let latch = LatchEntry {
            until: UNIX_EPOCH,
            kind: LatchKind::RateLimited { status: 429 },
        }
        .encode();
        let mut trailing = latch.to_vec();
        trailing.push(0);
        assert_eq!(LatchEntry::decode(&trailing), None);
        let mut unknown_kind = latch.to_vec();
        unknown_kind[TIME_LEN] = 9;
        assert_eq!(LatchEntry::decode(&unknown_kind), None);
        assert_eq!(LatchEntry::decode(&latch[..latch.len() - 1]), None);

        let mut bad_nanos = token_entry("t").encode().to_vec();
        bad_nanos[8..12].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert!(TokenEntry::decode(&bad_nanos).is_none());
        let mut not_utf8 = token_entry("t").encode().to_vec();
        not_utf8.push(0xff);
        assert!(TokenEntry::decode(&not_utf8).is_none());
        assert!(TokenEntry::decode(&[0; 2 * TIME_LEN - 1]).is_none());
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let shown = format!("{:?}", token_entry("tok-very-secret"));
        assert!(!shown.contains("tok-very-secret"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("expires_at"));
    }
}
