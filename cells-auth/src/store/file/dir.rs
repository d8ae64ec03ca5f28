//! The store's directory, opened without trusting what is in it.
//!
//! The directory must belong to the effective user and be writable by no one else; every file
//! is then reached through the directory's descriptor (`openat`), never through a symlink
//! (`O_NOFOLLOW`), and read only once `fstat` says it is a regular file owned by us. Opening
//! uses `O_NONBLOCK`, so a FIFO or device planted under an entry's name cannot block us, and
//! reads are bounded, so a huge file cannot exhaust memory.
//!
//! Everything here makes blocking system calls; the store runs it on tokio's blocking pool.

use std::fs::{DirBuilder, File};
use std::io::{self, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::store::StoreError;

/// Owner-only: the directory holds the sealed entries of every credential that uses it.
const DIR_MODE: u32 = 0o700;
/// Owner-only files, so that other users cannot even tell when tokens are refreshed.
const FILE_MODE: u32 = 0o600;
/// Temporary files are named `.<name>.<16 hex digits>.tmp`, after the file they will replace.
const TEMP_SUFFIX: &str = ".tmp";

/// An open, checked store directory.
pub(super) struct PrivateDir {
    fd: OwnedFd,
}

/// Which file a read saw, so that a later unlink can make sure it removes that file and not
/// one renamed into its place since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl PrivateDir {
    /// Opens and checks the directory at `path`; `None` when it does not exist.
    pub(super) fn open_existing(path: &Path) -> Result<Option<Self>, StoreError> {
        let dir = match Self::open(path) {
            Ok(dir) => dir,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(dir_error(path, errno)),
        };
        dir.checked(path).map(Some)
    }

    /// Opens and checks the directory at `path`, creating it (and its parents) with mode 0700
    /// first if it is missing. An existing directory is never loosened or tightened: one with
    /// the wrong owner or mode is refused instead.
    pub(super) fn create(path: &Path) -> Result<Self, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(|error| {
                StoreError::with_source(
                    format!("cannot create the store directory {}", path.display()),
                    error,
                )
            })?;
        Self::open(path)
            .map_err(|errno| dir_error(path, errno))?
            .checked(path)
    }

    fn open(path: &Path) -> Result<Self, Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rfs::open(path, flags, Mode::empty()).map(|fd| Self { fd })
    }

    fn checked(self, path: &Path) -> Result<Self, StoreError> {
        let stat = rfs::fstat(&self.fd).map_err(|errno| dir_error(path, errno))?;
        if !is_ours(&stat) {
            return Err(StoreError::new(format!(
                "the store directory {} belongs to another user; not using it",
                path.display()
            )));
        }
        if Mode::from_raw_mode(stat.st_mode).intersects(Mode::WGRP | Mode::WOTH) {
            return Err(StoreError::new(format!(
                "the store directory {} is writable by other users; not using it",
                path.display()
            )));
        }
        Ok(self)
    }

    /// The content of the regular file `name` (at most `max_len` bytes) and which file it was;
    /// `None` when there is no such file, or when what is there is not a regular file of ours
    /// (a symlink, a FIFO, a directory, another user's file, or one larger than `max_len`).
    pub(super) fn read(
        &self,
        name: &str,
        max_len: usize,
    ) -> Result<Option<(Vec<u8>, FileId)>, StoreError> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            // Missing; a symlink (refused by `O_NOFOLLOW`); a socket.
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
            Err(errno) => return Err(file_error("cannot open", name, errno)),
        };
        let stat = rfs::fstat(&fd).map_err(|errno| file_error("cannot inspect", name, errno))?;
        if !is_regular(&stat) || !is_ours(&stat) {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(max_len as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| {
                StoreError::with_source(format!("cannot read the store file {name}"), error)
            })?;
        if bytes.len() > max_len {
            return Ok(None);
        }
        Ok(Some((bytes, file_id(&stat))))
    }

    /// Replaces `name` with a file holding `content`, atomically: a temporary file of mode
    /// 0600 in this directory, renamed over `name`.
    pub(super) fn write_atomically(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        // A random suffix, and `O_EXCL`, so that concurrent writers never share a temporary.
        let temp = format!(".{name}.{:016x}{TEMP_SUFFIX}", fastrand::u64(..));
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, &temp, flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|errno| file_error("cannot create", &temp, errno))?;
        // No fsync: after a crash, an entry may be lost or torn, which reads as absent (a torn
        // entry fails to open) and costs one token fetch; syncing would cost every save
        // milliseconds for that.
        let written = File::from(fd)
            .write_all(content)
            .map_err(|error| {
                StoreError::with_source(format!("cannot write the store file {temp}"), error)
            })
            .and_then(|()| {
                rfs::renameat(&self.fd, &temp, &self.fd, name)
                    .map_err(|errno| file_error("cannot rename a temporary file to", name, errno))
            });
        if written.is_err() {
            // Best effort: a leftover temporary is harmless, only untidy.
            let _ = rfs::unlinkat(&self.fd, &temp, AtFlags::empty());
        }
        written
    }

    /// Removes `name` if it is still the file `seen`; returns whether it did.
    ///
    /// Between the check and the unlink another process may rename a new file into place, and
    /// that file is then removed instead. The window is a few microseconds, and the loss is
    /// one extra token fetch by whoever misses the entry, never a wrong token.
    pub(super) fn remove_if_same(&self, name: &str, seen: FileId) -> Result<bool, StoreError> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if file_id(&stat) == seen => {}
            Ok(_) | Err(Errno::NOENT) => return Ok(false),
            Err(errno) => return Err(file_error("cannot inspect", name, errno)),
        }
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(file_error("cannot remove", name, errno)),
        }
    }

    /// The names of everything in the directory but subdirectories (and names that are not
    /// UTF-8, which are none of ours).
    pub(super) fn file_names(&self) -> Result<Vec<String>, StoreError> {
        let listing_error = |errno| {
            StoreError::with_source("cannot list the store directory", io::Error::from(errno))
        };
        let mut listing = Dir::read_from(&self.fd).map_err(listing_error)?;
        let mut names = Vec::new();
        while let Some(entry) = listing.read() {
            let entry = entry.map_err(listing_error)?;
            if entry.file_type() == FileType::Directory {
                continue;
            }
            if let Ok(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Removes the name `name` (a symlink itself, never its target); returns whether it was
    /// there. A directory of that name is left alone (`false`).
    pub(super) fn remove(&self, name: &str) -> Result<bool, StoreError> {
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT | Errno::ISDIR) => Ok(false),
            Err(errno) => Err(file_error("cannot remove", name, errno)),
        }
    }

    /// The lock file `name`, created empty with mode 0600 if missing, and open for locking.
    /// Lock files are never removed: a process locking a file that another one had just
    /// unlinked would hold a lock nobody else can see.
    pub(super) fn open_lock_file(&self, name: &str) -> Result<File, StoreError> {
        let flags = OFlags::RDWR
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|errno| file_error("cannot open", name, errno))?;
        let stat = rfs::fstat(&fd).map_err(|errno| file_error("cannot inspect", name, errno))?;
        if !is_regular(&stat) || !is_ours(&stat) {
            return Err(StoreError::new(format!(
                "the store lock file {name} is not a regular file of ours; not using it"
            )));
        }
        Ok(File::from(fd))
    }
}

/// The name of the file that the temporary file `name` was written to replace, if `name` is
/// one of [`PrivateDir::write_atomically`]'s temporaries.
pub(super) fn temporary_target(name: &str) -> Option<&str> {
    let (target, random) = name
        .strip_prefix('.')?
        .strip_suffix(TEMP_SUFFIX)?
        .rsplit_once('.')?;
    (random.len() == 16 && random.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(target)
}

fn is_ours(stat: &Stat) -> bool {
    stat.st_uid == rustix::process::geteuid().as_raw()
}

fn is_regular(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
}

#[allow(
    clippy::unnecessary_cast,
    reason = "dev_t and ino_t are narrower or signed on some Unix systems"
)]
fn file_id(stat: &Stat) -> FileId {
    FileId {
        dev: stat.st_dev as u64,
        ino: stat.st_ino as u64,
    }
}

fn dir_error(path: &Path, errno: Errno) -> StoreError {
    StoreError::with_source(
        format!("cannot open the store directory {}", path.display()),
        io::Error::from(errno),
    )
}

fn file_error(action: &str, name: &str, errno: Errno) -> StoreError {
    StoreError::with_source(
        format!("{action} the store file {name}"),
        io::Error::from(errno),
    )
}
