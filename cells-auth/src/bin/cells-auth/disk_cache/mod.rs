//! The persistent token cache that lets every `cells-auth` process of a user share one token.
//!
//! # Layout
//! One directory, created with mode 0700, holding per set of credentials:
//! - `<name>.json`, mode 0600: the token, when it was obtained and when it expires, a format
//!   version and a check value (see below);
//! - `<name>.lock`, mode 0600 and empty: locked while one process fetches for that name;
//! - `<name>.failed`, mode 0600, for a few seconds after a fetch failed: what kind of failure
//!   it was and when, never an error message, token or secret.
//!
//! `<name>` is a hex SHA-256 over the base URL, client ID and secret, so different endpoints,
//! clients or secrets never share an entry, and the name reveals none of them.
//!
//! # Protocol
//! 1. Read the entry without any lock: entries are replaced by an atomic rename, so a reader
//!    sees a whole old file or a whole new one. A fresh token ends the run.
//! 2. Otherwise take the exclusive lock, waiting no longer than the run's deadline allows.
//! 3. Read again (another process may just have fetched). If there is no token but a recent
//!    failure marker, report that failure; otherwise fetch with the time that is left, write
//!    the token (or, if the fetch failed with a transient or credentials error, a failure
//!    marker), unlock.
//!
//! Processes started together on a cold cache thus make one request: the first to lock
//! fetches, the others wait on the lock and then find its token, or its failure. Waiting and
//! fetching share one deadline, so no process outlives its `--timeout` and none fetches
//! without the lock because it got tired of waiting.
//!
//! # Trust
//! Anything that is not a well-formed entry of this format for this name is ignored and later
//! replaced, never an error. The check value is a second hash of the credentials under another
//! label: a file planted by someone who can write to the directory but does not know the secret
//! cannot carry the right one, so it is never served as our token.
//!
//! # Files
//! This file holds [`DiskCache`] and the protocol above; `entry` the keys, the cached token and
//! the entry format; `failure` the failure marker; `lock` the per-key lock and the wait for it;
//! `files` the file names and modes, bounded reads and atomic writes.

mod entry;
mod failure;
mod files;
mod lock;
#[cfg(test)]
mod test_support;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::entry::is_cacheable;
pub(crate) use self::entry::{CacheKey, CachedToken};
pub(crate) use self::failure::FailureKind;
use self::files::{Owned, owned_file};

/// The target of the cache's log events, whichever file logs them: the module's path, which is
/// what `-v` output has always shown (and tests look for), rather than that of each file.
const LOG_TARGET: &str = module_path!();

/// Why [`DiskCache::get_or_fetch`] has no token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoToken<E> {
    /// The fetch failed.
    Fetch(E),
    /// Another process's fetch failed this way moments ago; nothing was sent.
    RecentFailure(FailureKind),
    /// The deadline passed while another process held the lock, or before there was time to
    /// fetch; nothing was sent.
    OutOfTime,
}

/// The time left until `deadline`; `None` once it has passed.
pub(crate) fn time_left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
}

/// The token cache in one directory.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Tighten the permissions of an existing directory: only for the default location, whose
    /// name is ours; a directory the user names keeps the mode the user gave it.
    tighten_existing: bool,
}

impl DiskCache {
    /// The cache in `cells-auth` under the platform's cache directory (`$XDG_CACHE_HOME` or
    /// `~/.cache` on Linux), if the platform has one.
    pub(crate) fn default_location() -> Option<Self> {
        dirs::cache_dir().map(|dir| Self {
            dir: dir.join("cells-auth"),
            tighten_existing: true,
        })
    }

    /// The cache in `dir`.
    pub(crate) fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            tighten_existing: false,
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token cached for `key` if it is fresh at the time of the call, else `fetch`'s, which
    /// is then cached. Processes that call this together for one key run `fetch` once.
    ///
    /// Everything ends by `deadline`: the wait for another process's fetch (so a process that
    /// hangs while holding the lock cannot block the others beyond their deadlines) and the
    /// fetch, which is given the time left. When the fetch fails and `failure_kind` says the
    /// error is worth sharing, a failure marker lets the processes waiting meanwhile report it
    /// without asking the service again.
    ///
    /// Problems with the cache itself (an unwritable directory, say) are reported as warnings
    /// and the token is fetched without it: the cache saves requests, it is not needed for a
    /// token.
    pub(crate) fn get_or_fetch<E>(
        &self,
        key: &CacheKey,
        deadline: Instant,
        fetch: impl FnOnce(Duration) -> Result<CachedToken, E>,
        failure_kind: impl FnOnce(&E) -> Option<FailureKind>,
    ) -> Result<CachedToken, NoToken<E>> {
        if let Some(token) = self.read(key, unix_now()) {
            return Ok(token);
        }
        let wait = time_left(deadline).unwrap_or_default();
        let _lock = match self.prepare_dir().and_then(|()| self.lock(key, wait)) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!("the deadline passed while another process held the lock");
                return Err(NoToken::OutOfTime);
            }
            Err(error) => {
                crate::warn(&format!(
                    "not using the token cache in {}: {error}",
                    self.dir.display()
                ));
                let left = time_left(deadline).ok_or(NoToken::OutOfTime)?;
                return fetch(left).map_err(NoToken::Fetch);
            }
        };
        // Whoever held the lock before us has probably just written a token, or failed.
        let now = unix_now();
        if let Some(token) = self.read(key, now) {
            return Ok(token);
        }
        if let Some(kind) = self.recent_failure(key, now) {
            return Err(NoToken::RecentFailure(kind));
        }
        let left = time_left(deadline).ok_or(NoToken::OutOfTime)?;
        match fetch(left) {
            Ok(token) => {
                self.save(key, &token);
                Ok(token)
            }
            Err(error) => {
                // A debug line, not a warning: the error line that follows says what matters.
                if let Some(kind) = failure_kind(&error)
                    && let Err(io_error) = self.record_failure(key, kind, unix_now())
                {
                    tracing::debug!(error = %io_error, "cannot record the failure");
                }
                Err(NoToken::Fetch(error))
            }
        }
    }

    /// Writes a fetched token, unless it is not [cacheable](is_cacheable), and removes any
    /// expired failure marker. Problems are warnings: the token is good either way.
    fn save(&self, key: &CacheKey, token: &CachedToken) {
        if !is_cacheable(&token.access_token) {
            crate::warn(
                "the token service issued a token with characters other than visible ASCII; \
                 not caching it",
            );
            return;
        }
        if let Err(error) = self.write(key, token) {
            crate::warn(&format!(
                "could not save the token in the cache in {}: {error}",
                self.dir.display()
            ));
            return;
        }
        match fs::remove_file(self.failure_path(key)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            // Harmless: an expired marker is ignored, and `cache clear` removes it.
            Err(error) => tracing::debug!(%error, "cannot remove the old failure marker"),
        }
    }

    /// Removes every file of the cache (entries, lock files, failure markers, leftovers of
    /// interrupted writes) and returns how many tokens were removed. Other files in the
    /// directory are left alone.
    ///
    /// Clearing while another process fetches can cost one extra token request (a process
    /// arriving meanwhile creates a fresh lock file), never a wrong token.
    pub(crate) fn clear(&self) -> io::Result<usize> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut tokens = 0;
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(kind) = file_name.to_str().and_then(owned_file) else {
                continue;
            };
            match fs::remove_file(entry.path()) {
                Ok(()) => tokens += usize::from(kind == Owned::Entry),
                // Another `cache clear` got there first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(tokens)
    }
}

/// Seconds since the Unix epoch now; 0 on a clock set before 1970, which makes every cached
/// token look long-lived but is the best there is.
pub(crate) fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// Seconds since the Unix epoch at `time`, rounded down.
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::test_support::{far, get_or_fetch, key, token};
    use super::*;

    #[test]
    fn a_token_the_cache_would_refuse_is_handed_out_but_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let now = unix_now();
        for odd in ["t\u{f6}k", "tok en", "tok\u{7f}"] {
            let fetched = token(odd, now, now + 3600);
            let got = get_or_fetch(&cache, &key(), || Ok::<_, ()>(fetched.clone())).unwrap();
            assert_eq!(got, fetched);
            assert!(!cache.entry_path(&key()).exists(), "{odd:?} was written");
        }
    }

    #[test]
    fn a_fetch_error_is_returned_and_nothing_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let outcome = get_or_fetch(&cache, &key(), || Err("refused"));
        assert_eq!(outcome, Err(NoToken::Fetch("refused")));
        assert_eq!(cache.read(&key(), unix_now()), None);
        // Nor a failure marker, for an error that is not to be shared.
        assert!(!cache.failure_path(&key()).exists());
        let now = unix_now();
        let fetched = get_or_fetch(&cache, &key(), || Ok::<_, ()>(token("tok", now, now + 60)));
        assert!(fetched.is_ok());
    }

    #[test]
    fn a_passed_deadline_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let passed = Instant::now();
        let outcome = cache.get_or_fetch(
            &key(),
            passed,
            |_| -> Result<CachedToken, ()> { panic!("fetched after the deadline") },
            |_| None,
        );
        assert_eq!(outcome, Err(NoToken::OutOfTime));

        // Likewise while another process holds the lock: no fetch without it.
        let holder = DiskCache::at(dir.path().to_path_buf());
        let held = holder.lock(&key(), Duration::ZERO).unwrap();
        assert!(held.is_some());
        let outcome = cache.get_or_fetch(
            &key(),
            passed,
            |_| -> Result<CachedToken, ()> { panic!("fetched without the lock") },
            |_| None,
        );
        assert_eq!(outcome, Err(NoToken::OutOfTime));
    }

    #[test]
    fn the_fetch_gets_the_time_left_before_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let deadline = Instant::now() + Duration::from_secs(60);
        let now = unix_now();
        let outcome = cache.get_or_fetch(
            &key(),
            deadline,
            |left| {
                assert!(
                    left > Duration::ZERO && left <= Duration::from_secs(60),
                    "{left:?}"
                );
                Ok::<_, ()>(token("tok", now, now + 3600))
            },
            |_| None,
        );
        assert!(outcome.is_ok());
    }

    #[test]
    fn clear_removes_only_the_cache_s_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        let now = unix_now();
        for secret in ["a", "b"] {
            let key = CacheKey::new("https://api.test", "id", secret);
            get_or_fetch(&cache, &key, || Ok::<_, ()>(token("tok", now, now + 3600))).unwrap();
        }
        let failing = CacheKey::new("https://api.test", "id", "c");
        let _ = cache.get_or_fetch(
            &failing,
            far(),
            |_| Err::<CachedToken, _>(()),
            |_| Some(FailureKind::Credentials),
        );
        assert!(cache.failure_path(&failing).exists());
        fs::write(dir.path().join(".cells-auth-abc123.tmp"), "").unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        fs::write(dir.path().join("abc.json"), "{}").unwrap();

        assert_eq!(cache.clear().unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["abc.json", "notes.txt"]);
        assert_eq!(cache.clear().unwrap(), 0);
        assert_eq!(
            DiskCache::at(dir.path().join("missing")).clear().unwrap(),
            0
        );
    }
}
