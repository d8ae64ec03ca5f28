//! Cache keys, the tokens the cache holds and the entry file that holds them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::files::{ENTRY_SUFFIX, MAX_ENTRY_BYTES, read_small};
use super::{DiskCache, LOG_TARGET};

/// The version of the entry format. Bumping it also changes the labels below, so old and new
/// versions of the tool keep separate files instead of overwriting each other's.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Domain separation for the two hashes of the credentials: the file name is public, the check
/// value must not be derivable from it.
const NAME_LABEL: &[u8] = b"cells-auth disk cache v1: file name";
const CHECK_LABEL: &[u8] = b"cells-auth disk cache v1: entry check";

/// A cached token is handed out only while more than this long is left, or more than half its
/// lifetime ([`REUSE_MARGIN_LIFETIME_DIVISOR`]) if that is less. This is the point at which
/// the library refreshes its own tokens (`REFRESH_BEFORE_EXPIRY` in `cache/timing.rs`): a printed
/// token is used after this process exits, often by a script that runs for minutes, so it
/// should have at least as long left as a library user's token ever has. Five minutes for
/// hour- or day-long tokens; for a short-lived token five minutes could be all of its life and
/// the cache would never be used, hence half the lifetime.
const REUSE_MARGIN_MAX_SECS: u64 = 300;
/// See [`REUSE_MARGIN_MAX_SECS`].
const REUSE_MARGIN_LIFETIME_DIVISOR: u64 = 2;

/// Where one set of credentials keeps its entry, and how its entry proves it is theirs.
pub(crate) struct CacheKey {
    /// The file name stem, 64 hex digits.
    pub(super) name: String,
    /// The check value recorded inside the entry.
    pub(super) check: String,
}

impl CacheKey {
    /// The key of tokens for this base URL (normalised, as `CellsAuth::base_url` returns it),
    /// client ID and secret.
    pub(crate) fn new(base_url: &str, client_id: &str, client_secret: &str) -> Self {
        let fields = [base_url, client_id, client_secret];
        Self {
            name: digest(NAME_LABEL, fields),
            check: digest(CHECK_LABEL, fields),
        }
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The check value is what makes an entry trusted; it stays out of logs.
        f.debug_struct("CacheKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of `label` and the fields, each preceded by its length: unlike a separator
/// character, a length prefix cannot be forged by a value that contains the separator, so
/// ("a|b", "c") and ("a", "b|c") never collide.
fn digest(label: &[u8], fields: [&str; 3]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(label);
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A token as the cache stores it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CachedToken {
    /// The bearer token.
    pub(crate) access_token: String,
    /// When it was requested, in seconds since the Unix epoch; with the expiry this gives
    /// its lifetime.
    pub(crate) obtained_at_unix: u64,
    /// When it expires, in seconds since the Unix epoch, rounded down.
    pub(crate) expires_at_unix: u64,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("access_token", &"<redacted>")
            .field("obtained_at_unix", &self.obtained_at_unix)
            .field("expires_at_unix", &self.expires_at_unix)
            .finish()
    }
}

impl CachedToken {
    /// `true` while the token has comfortably long left at `now_unix` to be handed out (see
    /// [`REUSE_MARGIN_MAX_SECS`]).
    pub(crate) fn is_fresh(&self, now_unix: u64) -> bool {
        let lifetime = self.expires_at_unix.saturating_sub(self.obtained_at_unix);
        // At least one second, so a token is never served in its last moment.
        let margin = (lifetime / REUSE_MARGIN_LIFETIME_DIVISOR).clamp(1, REUSE_MARGIN_MAX_SECS);
        self.expires_at_unix.saturating_sub(now_unix) > margin
    }
}

/// Whether a token may be cached: visible ASCII only, not empty. The token is printed into
/// scripts and headers, where a newline or control character would inject text, so an entry
/// with anything else is never served; a token that fails this is therefore never written
/// either, or every run would write it and then refuse it.
pub(super) fn is_cacheable(access_token: &str) -> bool {
    !access_token.is_empty() && access_token.bytes().all(|byte| byte.is_ascii_graphic())
}

/// The entry file's content.
#[derive(Serialize, Deserialize)]
pub(super) struct Entry {
    version: u32,
    /// The key's check value.
    key: String,
    access_token: String,
    obtained_at_unix: u64,
    expires_at_unix: u64,
}

/// Why an existing entry is not used. Deliberately never the file's content, which may hold a
/// token.
#[derive(Debug)]
pub(super) enum Unusable {
    TooLarge,
    Malformed { line: usize, column: usize },
    Version(u32),
    OtherCredentials,
    BadToken,
    Stale,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "it is larger than {MAX_ENTRY_BYTES} bytes"),
            Self::Malformed { line, column } => {
                write!(
                    f,
                    "it is not a cache entry (at line {line}, column {column})"
                )
            }
            Self::Version(version) => write!(f, "it has format version {version}"),
            Self::OtherCredentials => f.write_str("it was not written for these credentials"),
            Self::BadToken => f.write_str("its token is not printable ASCII"),
            Self::Stale => f.write_str("its token expires too soon"),
        }
    }
}

impl DiskCache {
    /// The fresh token cached for `key`, if there is one. A missing, unreadable or unusable
    /// entry is simply no token; an unusable one is replaced by the next write.
    pub(crate) fn read(&self, key: &CacheKey, now_unix: u64) -> Option<CachedToken> {
        let path = self.entry_path(key);
        match self.read_entry(&path, key, now_unix) {
            Ok(token) => {
                tracing::debug!(
                    target: LOG_TARGET,
                    path = %path.display(),
                    "using the cached token"
                );
                Some(token)
            }
            Err(ReadError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(target: LOG_TARGET, path = %path.display(), "no cached token");
                None
            }
            Err(ReadError::Io(error)) => {
                tracing::debug!(
                    target: LOG_TARGET,
                    path = %path.display(),
                    %error,
                    "cannot read the cached token"
                );
                None
            }
            Err(ReadError::Unusable(why)) => {
                tracing::debug!(
                    target: LOG_TARGET,
                    path = %path.display(),
                    "not using the cache entry: {why}"
                );
                None
            }
        }
    }

    fn read_entry(
        &self,
        path: &Path,
        key: &CacheKey,
        now_unix: u64,
    ) -> Result<CachedToken, ReadError> {
        let bytes = read_small(path)?;
        // serde_json's messages can quote the offending value, which might be a token; only
        // the position is kept.
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|error| Unusable::Malformed {
            line: error.line(),
            column: error.column(),
        })?;
        if entry.version != FORMAT_VERSION {
            return Err(Unusable::Version(entry.version).into());
        }
        if entry.key != key.check {
            return Err(Unusable::OtherCredentials.into());
        }
        if !is_cacheable(&entry.access_token) {
            return Err(Unusable::BadToken.into());
        }
        let token = CachedToken {
            access_token: entry.access_token,
            obtained_at_unix: entry.obtained_at_unix,
            expires_at_unix: entry.expires_at_unix,
        };
        if !token.is_fresh(now_unix) {
            return Err(Unusable::Stale.into());
        }
        Ok(token)
    }

    /// Replaces the entry for `key`.
    pub(super) fn write(&self, key: &CacheKey, token: &CachedToken) -> io::Result<()> {
        let entry = Entry {
            version: FORMAT_VERSION,
            key: key.check.clone(),
            access_token: token.access_token.clone(),
            obtained_at_unix: token.obtained_at_unix,
            expires_at_unix: token.expires_at_unix,
        };
        let path = self.entry_path(key);
        self.write_atomically(&path, &serde_json::to_vec(&entry)?)?;
        tracing::debug!(target: LOG_TARGET, path = %path.display(), "cached the token");
        Ok(())
    }

    pub(super) fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{ENTRY_SUFFIX}", key.name))
    }
}

/// Why [`DiskCache::read_entry`] found no token.
pub(super) enum ReadError {
    Io(io::Error),
    Unusable(Unusable),
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<Unusable> for ReadError {
    fn from(why: Unusable) -> Self {
        Self::Unusable(why)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::files::{Owned, owned_file};
    use super::super::test_support::{get_or_fetch, key, token};
    use super::super::unix_now;
    use super::*;

    #[test]
    fn keys_separate_every_credential_and_reveal_none() {
        let base = key();
        let others = [
            CacheKey::new("https://api.test/v3.0", "id", "secret"),
            CacheKey::new("https://api.test/v4.0", "id2", "secret"),
            CacheKey::new("https://api.test/v4.0", "id", "secret2"),
            // Moving a character from one field to the next must change the key.
            CacheKey::new("https://api.test/v4.0i", "d", "secret"),
        ];
        for other in &others {
            assert_ne!(base.name, other.name);
            assert_ne!(base.check, other.check);
        }
        assert_eq!(base.name, key().name);
        assert_ne!(base.name, base.check);
        assert!(owned_file(&format!("{}.json", base.name)) == Some(Owned::Entry));
        for field in ["api.test", "id", "secret"] {
            assert!(!base.name.contains(field));
        }
        assert!(!format!("{base:?}").contains(&base.check));
    }

    #[test]
    fn reuse_needs_five_minutes_or_half_the_lifetime() {
        // An hour-long token: reused while more than 300 s are left.
        let hour = token("t", 1000, 4600);
        assert!(hour.is_fresh(1000));
        assert!(hour.is_fresh(4299));
        assert!(!hour.is_fresh(4300));
        // A day-long token likewise.
        let day = token("t", 1000, 87_400);
        assert!(day.is_fresh(87_099));
        assert!(!day.is_fresh(87_100));
        // A one-minute token: reused during the first half of its life.
        let minute = token("t", 1000, 1060);
        assert!(minute.is_fresh(1029));
        assert!(!minute.is_fresh(1030));
        // Never in its last second, nor after expiry.
        let tiny = token("t", 1000, 1002);
        assert!(tiny.is_fresh(1000));
        assert!(!tiny.is_fresh(1001));
        assert!(!tiny.is_fresh(2000));
    }

    #[test]
    fn unusable_entries_are_no_token_and_get_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let now = unix_now();
        let path = cache.entry_path(&key());
        let entry = |version: u32, check: &str, access_token: &str, expires: u64| {
            serde_json::json!({
                "version": version, "key": check, "access_token": access_token,
                "obtained_at_unix": now, "expires_at_unix": expires,
            })
            .to_string()
        };
        let check = key().check;
        let foreign = CacheKey::new("https://api.test/v4.0", "id", "other").check;
        let cases = [
            "not json at all".to_owned(),
            "{\"version\":1}".to_owned(),
            "x".repeat(100_000),
            entry(2, &check, "tok", now + 3600),
            entry(FORMAT_VERSION, &foreign, "tok", now + 3600),
            entry(FORMAT_VERSION, &key().name, "tok", now + 3600),
            entry(FORMAT_VERSION, &check, "tok\nInjected: yes", now + 3600),
            entry(FORMAT_VERSION, &check, "", now + 3600),
            entry(FORMAT_VERSION, &check, "tok", now),
        ];
        for (index, content) in cases.iter().enumerate() {
            fs::write(&path, content).unwrap();
            assert_eq!(cache.read(&key(), now), None, "case {index}");
            let fetched = token(&format!("new-{index}"), now, now + 3600);
            let got = get_or_fetch(&cache, &key(), || Ok::<_, ()>(fetched.clone())).unwrap();
            assert_eq!(got, fetched, "case {index}");
            assert_eq!(cache.read(&key(), now), Some(fetched), "case {index}");
        }
        // The valid entry itself, for contrast.
        fs::write(&path, entry(FORMAT_VERSION, &check, "tok", now + 3600)).unwrap();
        assert!(cache.read(&key(), now).is_some());
    }
}
