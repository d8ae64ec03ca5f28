//! The short-lived marker that lets processes waiting on the lock share a failed fetch.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::entry::{CacheKey, FORMAT_VERSION};
use super::files::{FAILURE_SUFFIX, read_small};
use super::{DiskCache, LOG_TARGET};

/// How long a failure marker is believed, in seconds. Long enough for every process that was
/// waiting on the lock while the failed fetch ran to take the lock in turn and read the marker
/// (milliseconds each), so they report the failure instead of repeating the request; short
/// enough that a run a few seconds later, after the outage passed or the client ID became
/// active, asks again. Whole seconds, so a marker lives between four and five seconds.
const FAILURE_MEMORY_SECS: u64 = 5;

/// What kind of failure a marker records: enough for waiting processes to fail the same way
/// (the same exit status), nothing that could hold a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    /// The token service rejected the credentials.
    Credentials,
    /// The service was unavailable, unreachable or too slow.
    Unavailable,
}

/// The failure marker's content.
#[derive(Serialize, Deserialize)]
struct FailureMarker {
    version: u32,
    /// The key's check value, as in [`Entry`](super::entry::Entry): a marker planted without the
    /// secret is ignored.
    key: String,
    kind: FailureKind,
    failed_at_unix: u64,
}

impl DiskCache {
    /// The kind of failure a marker for `key` records, if there is a usable one younger than
    /// [`FAILURE_MEMORY_SECS`] at `now_unix`. Anything else (no file, a corrupt or foreign
    /// one, an old one, one from the future) is no failure.
    pub(super) fn recent_failure(&self, key: &CacheKey, now_unix: u64) -> Option<FailureKind> {
        let path = self.failure_path(key);
        let marker: FailureMarker = match read_small(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok()?,
            Err(_) => return None,
        };
        let recent = now_unix
            .checked_sub(marker.failed_at_unix)
            .is_some_and(|age| age < FAILURE_MEMORY_SECS);
        if marker.version != FORMAT_VERSION || marker.key != key.check || !recent {
            tracing::debug!(
                target: LOG_TARGET,
                path = %path.display(),
                "ignoring an unusable or old failure marker"
            );
            return None;
        }
        tracing::debug!(
            target: LOG_TARGET,
            path = %path.display(),
            kind = ?marker.kind,
            "another process failed to get a token moments ago; not asking again"
        );
        Some(marker.kind)
    }

    /// Records that a fetch for `key` failed with `kind` at `now_unix`.
    pub(super) fn record_failure(
        &self,
        key: &CacheKey,
        kind: FailureKind,
        now_unix: u64,
    ) -> io::Result<()> {
        let marker = FailureMarker {
            version: FORMAT_VERSION,
            key: key.check.clone(),
            kind,
            failed_at_unix: now_unix,
        };
        self.write_atomically(&self.failure_path(key), &serde_json::to_vec(&marker)?)?;
        tracing::debug!(
            target: LOG_TARGET,
            kind = ?kind,
            "recorded the failure for processes waiting on the lock"
        );
        Ok(())
    }

    pub(super) fn failure_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{FAILURE_SUFFIX}", key.name))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::entry::CachedToken;
    use super::super::files::FILE_MODE;
    use super::super::test_support::{far, get_or_fetch, key, mode, token};
    use super::super::{NoToken, unix_now};
    use super::*;

    #[test]
    fn the_next_lock_holder_reports_a_shared_failure_without_fetching() {
        for kind in [FailureKind::Credentials, FailureKind::Unavailable] {
            let dir = tempfile::tempdir().unwrap();
            let cache = DiskCache::at(dir.path().to_path_buf());
            let first = cache.get_or_fetch(
                &key(),
                far(),
                |_| Err::<CachedToken, _>("the reason, maybe with secret details"),
                |_| Some(kind),
            );
            assert_eq!(
                first,
                Err(NoToken::Fetch("the reason, maybe with secret details"))
            );

            let marker = cache.failure_path(&key());
            assert_eq!(mode(&marker), FILE_MODE);
            let content = fs::read_to_string(&marker).unwrap();
            for private in ["secret", "reason", "api.test"] {
                assert!(!content.contains(private), "{private} in {content}");
            }

            let second = cache.get_or_fetch(
                &key(),
                far(),
                |_| -> Result<CachedToken, &str> { panic!("fetched despite the marker") },
                |_| None,
            );
            assert_eq!(second, Err(NoToken::RecentFailure(kind)));
            // Other credentials are not affected.
            let other = CacheKey::new("https://api.test/v4.0", "id", "secret2");
            let now = unix_now();
            assert!(
                get_or_fetch(&cache, &other, || Ok::<_, ()>(token("t", now, now + 60))).is_ok()
            );
        }
    }

    #[test]
    fn old_corrupt_or_foreign_failure_markers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        cache.prepare_dir().unwrap();
        let now = unix_now();
        let path = cache.failure_path(&key());
        let marker = |version: u32, check: &str, kind: &str, failed_at: u64| {
            serde_json::json!({
                "version": version, "key": check, "kind": kind, "failed_at_unix": failed_at,
            })
            .to_string()
        };
        let check = key().check;
        let foreign = CacheKey::new("https://api.test/v4.0", "id", "other").check;
        let cases = [
            "{{{ not json".to_owned(),
            "x".repeat(100_000),
            marker(
                FORMAT_VERSION,
                &check,
                "unavailable",
                now - FAILURE_MEMORY_SECS,
            ),
            marker(FORMAT_VERSION, &check, "unavailable", now + 60),
            marker(FORMAT_VERSION, &foreign, "credentials", now),
            marker(FORMAT_VERSION + 1, &check, "credentials", now),
            marker(FORMAT_VERSION, &check, "a_new_kind", now),
        ];
        for (index, content) in cases.iter().enumerate() {
            fs::write(&path, content).unwrap();
            let fetched = token(&format!("new-{index}"), now, now + 3600);
            let got = get_or_fetch(&cache, &key(), || Ok::<_, ()>(fetched.clone()));
            assert_eq!(got, Ok(fetched), "case {index}");
            // A successful fetch tidies the marker away.
            assert!(!path.exists(), "case {index}");
            fs::remove_file(cache.entry_path(&key())).unwrap();
        }
        // For contrast: a marker just young enough is believed.
        fs::write(
            &path,
            marker(
                FORMAT_VERSION,
                &check,
                "unavailable",
                now + 1 - FAILURE_MEMORY_SECS,
            ),
        )
        .unwrap();
        assert_eq!(
            cache.recent_failure(&key(), now),
            Some(FailureKind::Unavailable)
        );
    }
}
