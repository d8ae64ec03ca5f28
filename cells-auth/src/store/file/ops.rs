//! The store's operations as blocking functions over the directory, with the time passed in
//! (so tests can pick it).

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::dir::{PrivateDir, temporary_target};
use super::format::{self, Content};
use crate::store::{StoreError, StoreKey};

/// The largest value the store keeps. Sealed entries are a few hundred bytes; the cap
/// bounds what a read may allocate when someone has put a large file in the way.
const MAX_VALUE_LEN: usize = 64 * 1024;
/// Keys are 64 hex digits; anything much longer is not a key of ours.
const MAX_KEY_LEN: usize = 128;
const ENTRY_SUFFIX: &str = ".entry";
const LOCK_SUFFIX: &str = ".lock";

pub(super) fn load(
    dir: &Path,
    key: &StoreKey,
    now: SystemTime,
) -> Result<Option<Vec<u8>>, StoreError> {
    let name = file_name(key, ENTRY_SUFFIX)?;
    let Some(dir) = PrivateDir::open_existing(dir)? else {
        return Ok(None);
    };
    let Some((bytes, id)) = dir.read(&name, format::HEADER_LEN + MAX_VALUE_LEN)? else {
        return Ok(None);
    };
    match format::decode(&bytes, now) {
        Content::Live(value) => Ok(Some(value.to_vec())),
        Content::Expired => {
            // Opportunistic tidying; failing at it changes nothing for the caller.
            let _ = dir.remove_if_same(&name, id);
            Ok(None)
        }
        Content::Foreign => Ok(None),
    }
}

pub(super) fn save(
    dir: &Path,
    key: &StoreKey,
    value: &[u8],
    ttl: Duration,
    now: SystemTime,
) -> Result<(), StoreError> {
    let name = file_name(key, ENTRY_SUFFIX)?;
    if value.len() > MAX_VALUE_LEN {
        // It could never be read back.
        return Err(StoreError::new(format!(
            "a FileStore value is limited to {MAX_VALUE_LEN} bytes"
        )));
    }
    PrivateDir::create(dir)?.write_atomically(&name, &format::encode(value, now, ttl))
}

pub(super) fn remove_if(
    dir: &Path,
    key: &StoreKey,
    expected: &[u8],
    now: SystemTime,
) -> Result<bool, StoreError> {
    let name = file_name(key, ENTRY_SUFFIX)?;
    let Some(dir) = PrivateDir::open_existing(dir)? else {
        return Ok(false);
    };
    let Some((bytes, id)) = dir.read(&name, format::HEADER_LEN + MAX_VALUE_LEN)? else {
        return Ok(false);
    };
    match format::decode(&bytes, now) {
        Content::Live(value) if value == expected => dir.remove_if_same(&name, id),
        Content::Live(_) | Content::Foreign => Ok(false),
        // Already as good as absent: nothing the caller asked for was removed.
        Content::Expired => {
            let _ = dir.remove_if_same(&name, id);
            Ok(false)
        }
    }
}

pub(super) fn try_lock(dir: &Path, key: &StoreKey) -> Result<Option<File>, StoreError> {
    let name = file_name(key, LOCK_SUFFIX)?;
    let file = PrivateDir::create(dir)?.open_lock_file(&name)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => Err(StoreError::with_source(
            format!("cannot lock the store file {name}"),
            error,
        )),
    }
}

/// Removes every entry file, and every temporary left by a save that never finished; returns
/// how many entry files it removed. Lock files stay (see `PrivateDir::open_lock_file`), and so
/// does anything that is not named like one of the store's files.
pub(super) fn clear(dir: &Path) -> Result<usize, StoreError> {
    let Some(dir) = PrivateDir::open_existing(dir)? else {
        return Ok(0);
    };
    let mut removed = 0;
    for name in dir.file_names()? {
        if is_entry_name(&name) {
            removed += usize::from(dir.remove(&name)?);
        } else if temporary_target(&name).is_some_and(is_entry_name) {
            // A save still in progress then fails to rename it, which costs that process a
            // warning and the others one fetch: clearing is rare and asked for.
            dir.remove(&name)?;
        }
    }
    Ok(removed)
}

/// The file names of `key`, refusing anything but a plain hex name: keys are made by
/// cells-auth, but a file name is no place to trust that.
fn file_name(key: &StoreKey, suffix: &str) -> Result<String, StoreError> {
    let key = key.as_str();
    if !is_key(key) {
        return Err(StoreError::new("a store key is not a short hex name"));
    }
    Ok(format!("{key}{suffix}"))
}

fn is_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(ENTRY_SUFFIX).is_some_and(is_key)
}
