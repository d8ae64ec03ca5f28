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

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The version of the entry format. Bumping it also changes the labels below, so old and new
/// versions of the tool keep separate files instead of overwriting each other's.
const FORMAT_VERSION: u32 = 1;
/// Domain separation for the two hashes of the credentials: the file name is public, the check
/// value must not be derivable from it.
const NAME_LABEL: &[u8] = b"cells-auth disk cache v1: file name";
const CHECK_LABEL: &[u8] = b"cells-auth disk cache v1: entry check";

/// A cached token is handed out only while more than this long is left, or more than half its
/// lifetime ([`REUSE_MARGIN_LIFETIME_DIVISOR`]) if that is less. This is the point at which
/// the library refreshes its own tokens (`REFRESH_BEFORE_EXPIRY` in `cache.rs`): a printed
/// token is used after this process exits, often by a script that runs for minutes, so it
/// should have at least as long left as a library user's token ever has. Five minutes for
/// hour- or day-long tokens; for a short-lived token five minutes could be all of its life and
/// the cache would never be used, hence half the lifetime.
const REUSE_MARGIN_MAX_SECS: u64 = 300;
/// See [`REUSE_MARGIN_MAX_SECS`].
const REUSE_MARGIN_LIFETIME_DIVISOR: u64 = 2;

/// How long a failure marker is believed, in seconds. Long enough for every process that was
/// waiting on the lock while the failed fetch ran to take the lock in turn and read the marker
/// (milliseconds each), so they report the failure instead of repeating the request; short
/// enough that a run a few seconds later, after the outage passed or the client ID became
/// active, asks again. Whole seconds, so a marker lives between four and five seconds.
const FAILURE_MEMORY_SECS: u64 = 5;

/// An entry is a few hundred bytes; anything much larger is not ours, and is not read whole.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

const ENTRY_SUFFIX: &str = ".json";
const LOCK_SUFFIX: &str = ".lock";
const FAILURE_SUFFIX: &str = ".failed";
/// Temporary files of interrupted writes carry this prefix and suffix, so `cache clear` can
/// recognise them as ours.
const TEMP_PREFIX: &str = ".cells-auth-";
const TEMP_SUFFIX: &str = ".tmp";

/// Owner-only permissions for the directory and its files: the entries hold tokens.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Where one set of credentials keeps its entry, and how its entry proves it is theirs.
pub(crate) struct CacheKey {
    /// The file name stem, 64 hex digits.
    name: String,
    /// The check value recorded inside the entry.
    check: String,
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
fn is_cacheable(access_token: &str) -> bool {
    !access_token.is_empty() && access_token.bytes().all(|byte| byte.is_ascii_graphic())
}

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

/// The entry file's content.
#[derive(Serialize, Deserialize)]
struct Entry {
    version: u32,
    /// The key's check value.
    key: String,
    access_token: String,
    obtained_at_unix: u64,
    expires_at_unix: u64,
}

/// The failure marker's content.
#[derive(Serialize, Deserialize)]
struct FailureMarker {
    version: u32,
    /// The key's check value, as in [`Entry`]: a marker planted without the secret is ignored.
    key: String,
    kind: FailureKind,
    failed_at_unix: u64,
}

/// Why an existing entry is not used. Deliberately never the file's content, which may hold a
/// token.
#[derive(Debug)]
enum Unusable {
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

    /// The fresh token cached for `key`, if there is one. A missing, unreadable or unusable
    /// entry is simply no token; an unusable one is replaced by the next write.
    pub(crate) fn read(&self, key: &CacheKey, now_unix: u64) -> Option<CachedToken> {
        let path = self.entry_path(key);
        match self.read_entry(&path, key, now_unix) {
            Ok(token) => {
                tracing::debug!(path = %path.display(), "using the cached token");
                Some(token)
            }
            Err(ReadError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no cached token");
                None
            }
            Err(ReadError::Io(error)) => {
                tracing::debug!(path = %path.display(), %error, "cannot read the cached token");
                None
            }
            Err(ReadError::Unusable(why)) => {
                tracing::debug!(path = %path.display(), "not using the cache entry: {why}");
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

    /// The kind of failure a marker for `key` records, if there is a usable one younger than
    /// [`FAILURE_MEMORY_SECS`] at `now_unix`. Anything else (no file, a corrupt or foreign
    /// one, an old one, one from the future) is no failure.
    fn recent_failure(&self, key: &CacheKey, now_unix: u64) -> Option<FailureKind> {
        let path = self.failure_path(key);
        let marker: FailureMarker = match read_small(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok()?,
            Err(_) => return None,
        };
        let recent = now_unix
            .checked_sub(marker.failed_at_unix)
            .is_some_and(|age| age < FAILURE_MEMORY_SECS);
        if marker.version != FORMAT_VERSION || marker.key != key.check || !recent {
            tracing::debug!(path = %path.display(), "ignoring an unusable or old failure marker");
            return None;
        }
        tracing::debug!(
            path = %path.display(),
            kind = ?marker.kind,
            "another process failed to get a token moments ago; not asking again"
        );
        Some(marker.kind)
    }

    /// Records that a fetch for `key` failed with `kind` at `now_unix`.
    fn record_failure(&self, key: &CacheKey, kind: FailureKind, now_unix: u64) -> io::Result<()> {
        let marker = FailureMarker {
            version: FORMAT_VERSION,
            key: key.check.clone(),
            kind,
            failed_at_unix: now_unix,
        };
        self.write_atomically(&self.failure_path(key), &serde_json::to_vec(&marker)?)?;
        tracing::debug!(kind = ?kind, "recorded the failure for processes waiting on the lock");
        Ok(())
    }

    /// Replaces the entry for `key`.
    fn write(&self, key: &CacheKey, token: &CachedToken) -> io::Result<()> {
        let entry = Entry {
            version: FORMAT_VERSION,
            key: key.check.clone(),
            access_token: token.access_token.clone(),
            obtained_at_unix: token.obtained_at_unix,
            expires_at_unix: token.expires_at_unix,
        };
        let path = self.entry_path(key);
        self.write_atomically(&path, &serde_json::to_vec(&entry)?)?;
        tracing::debug!(path = %path.display(), "cached the token");
        Ok(())
    }

    /// Replaces `path` atomically: a temporary file in the same directory, renamed over it, so
    /// no reader ever sees half a file.
    fn write_atomically(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .permissions(Permissions::from_mode(FILE_MODE))
            .tempfile_in(&self.dir)?;
        temp.write_all(content)?;
        // No fsync: after a crash a cache may lose a file or hold a torn one, which is read as
        // unusable and replaced. Syncing would cost every cold run milliseconds for nothing.
        temp.persist(path).map_err(|error| error.error)?;
        Ok(())
    }

    /// Creates the directory with mode 0700 if it is missing (parents included).
    fn prepare_dir(&self) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)?;
        if self.tighten_existing {
            let mode = fs::metadata(&self.dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::debug!(
                    mode = format!("{mode:o}"),
                    "making the cache directory private"
                );
                fs::set_permissions(&self.dir, Permissions::from_mode(DIR_MODE))?;
            }
        }
        Ok(())
    }

    /// Takes the exclusive lock for `key`, waiting at most `wait` for another holder; `None`
    /// when the wait ran out. The lock is released when the returned value is dropped.
    fn lock(&self, key: &CacheKey, wait: Duration) -> io::Result<Option<EntryLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(self.dir.join(format!("{}{LOCK_SUFFIX}", key.name)))?;
        match file.try_lock() {
            Ok(()) => return Ok(Some(EntryLock(file))),
            Err(TryLockError::WouldBlock) if wait.is_zero() => return Ok(None),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => return Err(error),
        }
        tracing::debug!("another cells-auth process is fetching a token; waiting for it");
        // `File::lock` has no timeout, so a helper thread blocks on it. If the wait runs out,
        // the thread is left blocked until the process exits, and should it get the lock
        // first, the failed send drops the file, which releases the lock.
        let (sender, receiver) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("cache-lock".to_owned())
            .spawn(move || {
                let locked = file.lock().map(|()| file);
                let _ = sender.send(locked);
            })?;
        match receiver.recv_timeout(wait) {
            Ok(locked) => locked.map(|file| Some(EntryLock(file))),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other(
                "the thread waiting for the cache lock died",
            )),
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

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{ENTRY_SUFFIX}", key.name))
    }

    fn failure_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{FAILURE_SUFFIX}", key.name))
    }
}

/// The content of a cache file, refusing to read one larger than [`MAX_ENTRY_BYTES`].
fn read_small(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(Unusable::TooLarge.into());
    }
    Ok(bytes)
}

/// Why [`DiskCache::read_entry`] found no token.
enum ReadError {
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

/// Holds the lock of one key; dropping it unlocks.
struct EntryLock(File);

impl Drop for EntryLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking says so explicitly. An error
        // here leaves the lock to be released when the file closes a moment later.
        let _ = self.0.unlock();
    }
}

/// The kinds of files the cache owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owned {
    Entry,
    Lock,
    Failure,
    Temp,
}

/// Which kind of cache file `name` is, if it is one.
fn owned_file(name: &str) -> Option<Owned> {
    let is_key = |stem: &str| {
        stem.len() == 64
            && stem
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    if name.strip_suffix(ENTRY_SUFFIX).is_some_and(is_key) {
        Some(Owned::Entry)
    } else if name.strip_suffix(LOCK_SUFFIX).is_some_and(is_key) {
        Some(Owned::Lock)
    } else if name.strip_suffix(FAILURE_SUFFIX).is_some_and(is_key) {
        Some(Owned::Failure)
    } else if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
        Some(Owned::Temp)
    } else {
        None
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    fn token(access_token: &str, obtained_at_unix: u64, expires_at_unix: u64) -> CachedToken {
        CachedToken {
            access_token: access_token.to_owned(),
            obtained_at_unix,
            expires_at_unix,
        }
    }

    fn key() -> CacheKey {
        CacheKey::new("https://api.test/v4.0", "id", "secret")
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    /// [`DiskCache::get_or_fetch`] with a far deadline and no failure shared.
    fn get_or_fetch<E>(
        cache: &DiskCache,
        key: &CacheKey,
        fetch: impl FnOnce() -> Result<CachedToken, E>,
    ) -> Result<CachedToken, NoToken<E>> {
        cache.get_or_fetch(key, far(), |_| fetch(), |_| None)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

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
    fn a_written_token_reads_back_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().join("nested").join("cache"));
        let now = unix_now();
        let fresh = token("tok-1", now, now + 3600);
        let got = get_or_fetch(&cache, &key(), || Ok::<_, ()>(fresh.clone())).unwrap();
        assert_eq!(got, fresh);
        assert_eq!(cache.read(&key(), now), Some(fresh));

        assert_eq!(mode(cache.dir()), DIR_MODE);
        assert_eq!(mode(&cache.entry_path(&key())), FILE_MODE);
        assert_eq!(
            mode(&cache.dir().join(format!("{}{LOCK_SUFFIX}", key().name))),
            FILE_MODE
        );
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
    fn concurrent_callers_on_a_cold_cache_fetch_once() {
        let dir = tempfile::tempdir().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.path().to_path_buf();
                let fetches = Arc::clone(&fetches);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    // Each thread opens its own lock file description, as separate processes
                    // would, so `flock` excludes them from one another.
                    let cache = DiskCache::at(dir);
                    barrier.wait();
                    get_or_fetch(&cache, &key(), || {
                        let serial = fetches.fetch_add(1, Ordering::SeqCst);
                        let now = unix_now();
                        Ok::<_, ()>(token(&format!("tok-{serial}"), now, now + 3600))
                    })
                    .unwrap()
                })
            })
            .collect();
        let tokens: Vec<CachedToken> = threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(tokens.iter().all(|token| token.access_token == "tok-0"));
    }

    #[test]
    fn a_held_lock_is_waited_for_only_so_long() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::at(dir.path().to_path_buf());
        cache.prepare_dir().unwrap();
        let held = cache.lock(&key(), Duration::ZERO).unwrap();
        assert!(held.is_some());
        assert!(cache.lock(&key(), Duration::ZERO).unwrap().is_none());
        drop(held);
        let again = cache.lock(&key(), Duration::from_secs(60)).unwrap();
        assert!(again.is_some());
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

    #[test]
    fn the_default_location_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, Permissions::from_mode(0o755)).unwrap();
        let cache = DiskCache {
            dir: loose.clone(),
            tighten_existing: true,
        };
        cache.prepare_dir().unwrap();
        assert_eq!(mode(&loose), DIR_MODE);
    }
}
