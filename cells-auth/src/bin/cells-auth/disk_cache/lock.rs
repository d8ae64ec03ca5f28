//! The per-key lock that lets one process fetch while the others wait for it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::mpsc;
use std::time::Duration;

use super::entry::CacheKey;
use super::files::{FILE_MODE, LOCK_SUFFIX};
use super::{DiskCache, LOG_TARGET};

impl DiskCache {
    /// Takes the exclusive lock for `key`, waiting at most `wait` for another holder; `None`
    /// when the wait ran out. The lock is released when the returned value is dropped.
    pub(super) fn lock(&self, key: &CacheKey, wait: Duration) -> io::Result<Option<EntryLock>> {
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
        tracing::debug!(
            target: LOG_TARGET,
            "another cells-auth process is fetching a token; waiting for it"
        );
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
}

/// Holds the lock of one key; dropping it unlocks.
pub(super) struct EntryLock(File);

impl Drop for EntryLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking says so explicitly. An error
        // here leaves the lock to be released when the file closes a moment later.
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::super::entry::CachedToken;
    use super::super::test_support::{get_or_fetch, key, token};
    use super::super::unix_now;
    use super::*;

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
}
