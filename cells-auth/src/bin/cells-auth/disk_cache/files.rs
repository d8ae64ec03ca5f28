//! The cache's files: their names and modes, reading them safely and replacing them atomically.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use super::entry::{ReadError, Unusable};
use super::{DiskCache, LOG_TARGET};

/// An entry is a few hundred bytes; anything much larger is not ours, and is not read whole.
pub(super) const MAX_ENTRY_BYTES: u64 = 64 * 1024;

pub(super) const ENTRY_SUFFIX: &str = ".json";
pub(super) const LOCK_SUFFIX: &str = ".lock";
pub(super) const FAILURE_SUFFIX: &str = ".failed";
/// Temporary files of interrupted writes carry this prefix and suffix, so `cache clear` can
/// recognise them as ours.
const TEMP_PREFIX: &str = ".cells-auth-";
const TEMP_SUFFIX: &str = ".tmp";

/// Owner-only permissions for the directory and its files: the entries hold tokens.
const DIR_MODE: u32 = 0o700;
pub(super) const FILE_MODE: u32 = 0o600;

impl DiskCache {
    /// Replaces `path` atomically: a temporary file in the same directory, renamed over it, so
    /// no reader ever sees half a file.
    pub(super) fn write_atomically(&self, path: &Path, content: &[u8]) -> io::Result<()> {
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
    pub(super) fn prepare_dir(&self) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)?;
        if self.tighten_existing {
            let mode = fs::metadata(&self.dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::debug!(
                    target: LOG_TARGET,
                    mode = format!("{mode:o}"),
                    "making the cache directory private"
                );
                fs::set_permissions(&self.dir, Permissions::from_mode(DIR_MODE))?;
            }
        }
        Ok(())
    }
}

/// The content of a cache file, refusing to read one larger than [`MAX_ENTRY_BYTES`].
pub(super) fn read_small(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(Unusable::TooLarge.into());
    }
    Ok(bytes)
}

/// The kinds of files the cache owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owned {
    Entry,
    Lock,
    Failure,
    Temp,
}

/// Which kind of cache file `name` is, if it is one.
pub(super) fn owned_file(name: &str) -> Option<Owned> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{get_or_fetch, key, mode, token};
    use super::super::unix_now;
    use super::*;

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
