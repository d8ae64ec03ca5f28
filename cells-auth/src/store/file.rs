//! `FileStore`: entries as files in one directory, locks as OS file locks.
//!
//! Each key has two files: `<key>.entry` (a tiny expiry header, then the sealed value) and
//! `<key>.lock` (empty; an exclusive `flock` on it is the fetch lock). Writes go to a
//! temporary file renamed over the entry, so readers see the old value or the new one.
//!
//! Every operation runs its file work on tokio's blocking pool (`spawn_blocking`), so nothing
//! blocks the async caller even on a slow or network file system.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{HeldLock, StoreError, StoreFuture, StoreKey, StoreLock, TokenStore};

#[cfg(unix)]
mod dir;
#[cfg(unix)]
mod format;
#[cfg(unix)]
mod ops;
#[cfg(all(test, unix))]
mod tests;

/// A [`TokenStore`] in a directory of this machine, shared by the processes of one user.
///
/// The directory is created (mode 0700, parents included) when it is first needed. It must
/// belong to the effective user and be writable by nobody else; otherwise every operation
/// fails and the provider goes on without the store. Files that are not regular files of ours
/// (symlinks, FIFOs, directories, other users' files) are treated as absent and never read.
///
/// The fetch lock is an OS file lock (`flock`), which the OS releases when its holder
/// exits, however it exits; the `lease` of [`try_lock`](TokenStore::try_lock) is therefore
/// not needed and ignored. A holder that stays alive keeps the lock until it releases or drops
/// its [`StoreLock`].
///
/// Unix only: elsewhere every operation fails with a [`StoreError`].
///
/// # Examples
/// ```
/// let store = cells_auth::store::FileStore::new("/var/cache/my-app/cells-auth")?;
/// # let _ = store;
/// # Ok::<(), cells_auth::Error>(())
/// ```
pub struct FileStore {
    dir: Arc<Path>,
}

impl FileStore {
    /// A store in the directory `dir`, which must be an absolute path. Does no I/O: the
    /// directory is checked, and created if missing, by the first operation that needs it.
    ///
    /// # Errors
    /// An [`Error::Config`](crate::Error::Config) when `dir` is empty or relative.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, crate::Error> {
        let dir = dir.into();
        if dir.as_os_str().is_empty() {
            return Err(crate::Error::config("the FileStore directory is empty"));
        }
        if !dir.is_absolute() {
            // A relative path would name a different directory in each working directory,
            // so processes meant to share tokens would silently not.
            return Err(crate::Error::config(format!(
                "the FileStore directory {} is relative; give an absolute path",
                dir.display()
            )));
        }
        Ok(Self { dir: dir.into() })
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every entry from the directory: the tokens, and the remembered failures, of
    /// every set of credentials that uses it. Returns how many entry files it removed; a
    /// directory that does not exist holds none.
    ///
    /// Files are removed by name through the checked directory, never through a symlink: a
    /// link named like an entry is removed itself and its target is untouched. Files that are
    /// not named like the store's own stay, and so do the (empty) lock files: a process that
    /// locked a lock file just removed would hold a lock that nobody else can see. A process
    /// that is fetching meanwhile may write its new token right after; that token is as good
    /// as any.
    ///
    /// This does blocking file I/O: call it outside async code, or through
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// When the directory cannot be used (a symlink, another user's, writable by others; see
    /// the type's documentation), cannot be listed, or an entry cannot be removed. Always,
    /// elsewhere than Unix.
    ///
    /// # Examples
    /// ```no_run
    /// let store = cells_auth::store::FileStore::new("/var/cache/my-app/cells-auth")?;
    /// let removed = store.clear()?;
    /// println!("removed {removed} entries");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<usize, StoreError> {
        ops::clear(&self.dir)
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the path: the store itself holds no secret, and its entries are sealed.
        f.debug_struct("FileStore").field("dir", &self.dir).finish()
    }
}

impl TokenStore for FileStore {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        let (dir, key) = (Arc::clone(&self.dir), key.clone());
        blocking(move || ops::load(&dir, &key, SystemTime::now()))
    }

    fn save<'a>(
        &'a self,
        key: &'a StoreKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let (dir, key, value) = (Arc::clone(&self.dir), key.clone(), value.to_vec());
        blocking(move || ops::save(&dir, &key, &value, ttl, SystemTime::now()))
    }

    fn remove_if<'a>(&'a self, key: &'a StoreKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        let (dir, key, expected) = (Arc::clone(&self.dir), key.clone(), expected.to_vec());
        blocking(move || ops::remove_if(&dir, &key, &expected, SystemTime::now()))
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a StoreKey,
        _lease: Duration,
    ) -> StoreFuture<'a, Option<StoreLock>> {
        let (dir, key) = (Arc::clone(&self.dir), key.clone());
        let locked = blocking(move || ops::try_lock(&dir, &key));
        Box::pin(async move { Ok(locked.await?.map(|file| StoreLock::new(FileLock(file)))) })
    }
}

/// Holds the `flock` on a key's lock file; closing the file (on drop) releases it too.
struct FileLock(File);

impl HeldLock for FileLock {
    fn release(self: Box<Self>) -> StoreFuture<'static, ()> {
        // Should no runtime be there to run this, the closure is dropped with the file, and
        // closing the file releases the lock all the same.
        blocking(move || {
            self.0.unlock().map_err(|error| {
                StoreError::with_source("cannot release the FileStore lock", error)
            })
        })
    }
}

/// Runs `op` on tokio's blocking pool. The future fails, rather than panics, when it is not
/// polled within a tokio runtime.
fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'static, T> {
    Box::pin(async move {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|error| StoreError::with_source("FileStore needs a tokio runtime", error))?;
        // If the caller gives up waiting, the operation still runs to its end: a save still
        // lands, and a lock taken too late is released as its file is dropped.
        runtime
            .spawn_blocking(op)
            .await
            .map_err(|error| StoreError::with_source("a FileStore operation failed", error))?
    })
}

/// Elsewhere than Unix, the checks that make a shared directory safe (`O_NOFOLLOW`, file
/// owners) are not available the same way, so the store refuses to work.
#[cfg(not(unix))]
mod ops {
    use super::*;

    fn unsupported() -> StoreError {
        StoreError::new("FileStore is available on Unix only")
    }

    pub(super) fn load(
        _: &Path,
        _: &StoreKey,
        _: SystemTime,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Err(unsupported())
    }

    pub(super) fn save(
        _: &Path,
        _: &StoreKey,
        _: &[u8],
        _: Duration,
        _: SystemTime,
    ) -> Result<(), StoreError> {
        Err(unsupported())
    }

    pub(super) fn remove_if(
        _: &Path,
        _: &StoreKey,
        _: &[u8],
        _: SystemTime,
    ) -> Result<bool, StoreError> {
        Err(unsupported())
    }

    pub(super) fn try_lock(_: &Path, _: &StoreKey) -> Result<Option<File>, StoreError> {
        Err(unsupported())
    }

    pub(super) fn clear(_: &Path) -> Result<usize, StoreError> {
        Err(unsupported())
    }
}
