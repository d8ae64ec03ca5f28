//! The entry file's layout: a tiny header holding the wall-clock expiry, then the value as it
//! was saved.
//!
//! The expiry lives in the file rather than in its mtime because anyone can set an mtime
//! (`touch`), and restoring a backup or copying the directory changes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Marks a file as one of ours, in this layout.
const MAGIC: &[u8; 4] = b"CAS1";
/// The magic, then the expiry in nanoseconds since the Unix epoch (u64, big-endian; enough
/// until the year 2554, and saturated beyond).
pub(super) const HEADER_LEN: usize = MAGIC.len() + 8;

/// What an entry file holds, as of some moment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Content<'a> {
    /// A value that has not expired yet.
    Live(&'a [u8]),
    /// A value past its expiry: as good as absent.
    Expired,
    /// Not an entry in this layout (torn by a crash, or not ours): treated as absent.
    Foreign,
}

/// The file content for `value`, to be forgotten `ttl` after `now`.
pub(super) fn encode(value: &[u8], now: SystemTime, ttl: Duration) -> Vec<u8> {
    let expires = now.checked_add(ttl).map_or(u64::MAX, nanos_since_epoch);
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// What `bytes`, read from an entry file at `now`, hold.
pub(super) fn decode(bytes: &[u8], now: SystemTime) -> Content<'_> {
    let Some((magic, rest)) = bytes.split_first_chunk::<4>() else {
        return Content::Foreign;
    };
    let Some((expires, value)) = rest.split_first_chunk::<8>() else {
        return Content::Foreign;
    };
    if magic != MAGIC {
        Content::Foreign
    } else if u64::from_be_bytes(*expires) <= nanos_since_epoch(now) {
        Content::Expired
    } else {
        Content::Live(value)
    }
}

/// Saturates: a time before 1970 is 0 (everything has expired by then, as far as we know),
/// one after 2554 is `u64::MAX`.
fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_900_000_000);

    #[test]
    fn a_value_lives_until_its_ttl_has_passed() {
        let now = UNIX_EPOCH + NOW;
        let bytes = encode(b"sealed", now, Duration::from_secs(60));
        assert_eq!(decode(&bytes, now), Content::Live(b"sealed"));
        let almost = now + Duration::from_secs(60) - Duration::from_nanos(1);
        assert_eq!(decode(&bytes, almost), Content::Live(b"sealed"));
        assert_eq!(
            decode(&bytes, now + Duration::from_secs(60)),
            Content::Expired
        );
    }

    #[test]
    fn a_zero_ttl_has_expired_at_once() {
        let now = UNIX_EPOCH + NOW;
        assert_eq!(
            decode(&encode(b"v", now, Duration::ZERO), now),
            Content::Expired
        );
    }

    #[test]
    fn an_endless_ttl_saturates_instead_of_wrapping() {
        let now = UNIX_EPOCH + NOW;
        let bytes = encode(b"v", now, Duration::MAX);
        assert_eq!(
            decode(&bytes, now + Duration::from_secs(400 * 365 * 86_400)),
            Content::Live(b"v")
        );
    }

    #[test]
    fn other_files_are_foreign() {
        let now = UNIX_EPOCH + NOW;
        let mut other_magic = encode(b"v", now, Duration::from_secs(60));
        other_magic[0] ^= 1;
        assert_eq!(decode(&other_magic, now), Content::Foreign);
        assert_eq!(decode(&[], now), Content::Foreign);
        assert_eq!(decode(&MAGIC[..], now), Content::Foreign);
        assert_eq!(decode(b"CAS1\0\0\0", now), Content::Foreign);
        // A header alone is an entry with an empty value.
        let empty = encode(b"", now, Duration::from_secs(1));
        assert_eq!(empty.len(), HEADER_LEN);
        assert_eq!(decode(&empty, now), Content::Live(b""));
    }
}
