use std::fs::{self, Permissions};
use std::future::Future;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use rustix::fs::{CWD, FileType, Mode};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn key() -> StoreKey {
    StoreKey::from_hex("ab".repeat(32))
}

fn entry_path(dir: &Path) -> PathBuf {
    dir.join(format!("{}.entry", key()))
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join(format!("{}.lock", key()))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn store(dir: &Path) -> FileStore {
    FileStore::new(dir).unwrap()
}

/// A store directory made the way `FileStore` makes one, with a valid entry in it.
async fn store_with_entry(dir: &Path, value: &[u8]) -> FileStore {
    let store = store(dir);
    store.save(&key(), value, HOUR).await.unwrap();
    assert_eq!(store.load(&key()).await.unwrap().as_deref(), Some(value));
    store
}

#[tokio::test]
async fn a_saved_value_loads_back_from_private_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("nested").join("store");
    let store = store(&dir);
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(!dir.exists(), "a load created the directory");

    store.save(&key(), b"sealed-1", HOUR).await.unwrap();
    assert_eq!(
        store.load(&key()).await.unwrap().as_deref(),
        Some(&b"sealed-1"[..])
    );
    store.save(&key(), b"sealed-2", HOUR).await.unwrap();
    assert_eq!(
        store.load(&key()).await.unwrap().as_deref(),
        Some(&b"sealed-2"[..])
    );
    // Another instance on the same directory, as another process would be, sees it too.
    assert_eq!(
        FileStore::new(&dir)
            .unwrap()
            .load(&key())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"sealed-2"[..])
    );

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&temp.path().join("nested")), 0o700);
    assert_eq!(mode(&entry_path(&dir)), 0o600);
    // Only the entry is left: no temporary files.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

#[tokio::test]
async fn an_expired_value_loads_as_none_and_is_removed() {
    let temp = tempfile::tempdir().unwrap();
    let store = store(temp.path());
    // A TTL of zero has run out by the time of the load.
    store.save(&key(), b"sealed", Duration::ZERO).await.unwrap();
    assert!(entry_path(temp.path()).exists());
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(!entry_path(temp.path()).exists());
}

#[test]
fn a_value_expires_after_its_ttl_by_the_wall_clock() {
    let temp = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    ops::save(temp.path(), &key(), b"sealed", HOUR, now).unwrap();
    let just_before = now + HOUR - Duration::from_millis(1);
    assert_eq!(
        ops::load(temp.path(), &key(), just_before).unwrap(),
        Some(b"sealed".to_vec())
    );
    assert_eq!(ops::load(temp.path(), &key(), now + HOUR).unwrap(), None);
    assert!(!entry_path(temp.path()).exists());
}

#[tokio::test]
async fn remove_if_removes_only_the_expected_value() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_with_entry(temp.path(), b"sealed-1").await;
    assert!(!store.remove_if(&key(), b"sealed-2").await.unwrap());
    assert!(!store.remove_if(&key(), b"sealed-").await.unwrap());
    assert!(store.load(&key()).await.unwrap().is_some());

    assert!(store.remove_if(&key(), b"sealed-1").await.unwrap());
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(!store.remove_if(&key(), b"sealed-1").await.unwrap());
}

#[tokio::test]
async fn remove_if_in_a_missing_directory_is_false() {
    let temp = tempfile::tempdir().unwrap();
    let store = store(&temp.path().join("missing"));
    assert!(!store.remove_if(&key(), b"sealed").await.unwrap());
}

#[tokio::test]
async fn the_lock_is_exclusive_between_stores_until_released_or_dropped() {
    let temp = tempfile::tempdir().unwrap();
    // Two instances open the lock file separately, as two processes would.
    let (first, second) = (store(temp.path()), store(temp.path()));
    let lease = Duration::from_secs(30);

    let held = first.try_lock(&key(), lease).await.unwrap().unwrap();
    assert!(second.try_lock(&key(), lease).await.unwrap().is_none());
    assert!(first.try_lock(&key(), lease).await.unwrap().is_none());
    assert_eq!(mode(&lock_path(temp.path())), 0o600);

    held.release().await.unwrap();
    let held = second.try_lock(&key(), lease).await.unwrap().unwrap();
    assert!(first.try_lock(&key(), lease).await.unwrap().is_none());

    drop(held);
    assert!(first.try_lock(&key(), lease).await.unwrap().is_some());
}

#[tokio::test]
async fn locks_of_different_keys_are_independent() {
    let temp = tempfile::tempdir().unwrap();
    let store = store(temp.path());
    let other = StoreKey::from_hex("cd".repeat(32));
    let _held = store.try_lock(&key(), HOUR).await.unwrap().unwrap();
    assert!(store.try_lock(&other, HOUR).await.unwrap().is_some());
}

#[test]
fn a_fifo_in_place_of_an_entry_is_absent_and_never_blocks() {
    let temp = tempfile::tempdir().unwrap();
    let fifo_mode = Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(CWD, entry_path(temp.path()), FileType::Fifo, fifo_mode, 0).unwrap();
    rustix::fs::mknodat(CWD, lock_path(temp.path()), FileType::Fifo, fifo_mode, 0).unwrap();
    let store = store(temp.path());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let loaded = store.load(&key()).await;
            let removed = store.remove_if(&key(), b"").await;
            let locked = store
                .try_lock(&key(), HOUR)
                .await
                .map(|lock| lock.is_some());
            // Saving replaces the FIFO with a real entry.
            let saved = store.save(&key(), b"sealed", HOUR).await;
            let reloaded = store.load(&key()).await;
            (loaded, removed, locked, saved, reloaded)
        })
        .await
    });
    // An operation stuck on the FIFO would hold a blocking thread forever, and dropping the
    // runtime would wait for it: leave it behind instead, so the test fails rather than hangs.
    runtime.shutdown_background();

    let (loaded, removed, locked, saved, reloaded) =
        outcome.expect("a store operation blocked on a FIFO");
    assert_eq!(loaded.unwrap(), None);
    assert!(!removed.unwrap());
    assert!(locked.is_err());
    saved.unwrap();
    assert_eq!(reloaded.unwrap().as_deref(), Some(&b"sealed"[..]));
}

#[tokio::test]
async fn a_symlink_in_place_of_an_entry_is_not_followed() {
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = temp.path().join("elsewhere");
    // A valid entry in another private directory: following the link would load it.
    store_with_entry(&elsewhere, b"planted").await;
    let dir = temp.path().join("store");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
    symlink(entry_path(&elsewhere), entry_path(&dir)).unwrap();
    let store = store(&dir);

    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(!store.remove_if(&key(), b"planted").await.unwrap());
    // Saving replaces the link itself; the file it pointed to is untouched.
    store.save(&key(), b"ours", HOUR).await.unwrap();
    assert!(!fs::symlink_metadata(entry_path(&dir)).unwrap().is_symlink());
    assert_eq!(
        FileStore::new(&elsewhere)
            .unwrap()
            .load(&key())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"planted"[..])
    );
}

#[tokio::test]
async fn a_symlinked_lock_file_is_refused_and_its_target_not_created() {
    let temp = tempfile::tempdir().unwrap();
    let target = temp.path().join("target");
    let dir = temp.path().join("store");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
    symlink(&target, lock_path(&dir)).unwrap();
    assert!(store(&dir).try_lock(&key(), HOUR).await.is_err());
    assert!(!target.exists());
}

#[tokio::test]
async fn a_symlinked_store_directory_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let real = temp.path().join("real");
    store_with_entry(&real, b"sealed").await;
    let link = temp.path().join("link");
    symlink(&real, &link).unwrap();
    assert!(store(&link).load(&key()).await.is_err());
}

#[tokio::test]
async fn a_directory_writable_by_others_is_refused_and_left_alone() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_with_entry(temp.path(), b"sealed").await;
    for loose in [0o777, 0o770, 0o702] {
        fs::set_permissions(temp.path(), Permissions::from_mode(loose)).unwrap();
        assert!(store.load(&key()).await.is_err(), "mode {loose:o}");
        assert!(store.save(&key(), b"other", HOUR).await.is_err());
        assert!(store.remove_if(&key(), b"sealed").await.is_err());
        assert!(store.try_lock(&key(), HOUR).await.is_err());
        assert_eq!(mode(temp.path()), loose, "the store changed the mode");
    }
    // Readable by others is no risk to the sealed entries, only writable is refused.
    fs::set_permissions(temp.path(), Permissions::from_mode(0o755)).unwrap();
    assert!(store.load(&key()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_directory_in_place_of_an_entry_is_absent() {
    let temp = tempfile::tempdir().unwrap();
    fs::create_dir(entry_path(temp.path())).unwrap();
    let store = store(temp.path());
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(!store.remove_if(&key(), b"").await.unwrap());
    // It cannot be replaced either, which is an error rather than a panic.
    assert!(store.save(&key(), b"sealed", HOUR).await.is_err());
}

#[tokio::test]
async fn an_entry_owned_by_another_user_is_absent() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_with_entry(temp.path(), b"sealed").await;
    let entry = entry_path(temp.path());
    if rustix::process::geteuid().is_root() {
        // Only root can give a file away; as anyone else, the check below is skipped and the
        // control assertion above is what this test proves.
        std::os::unix::fs::chown(&entry, Some(65_534), None).unwrap();
        assert_ne!(fs::metadata(&entry).unwrap().uid(), 0);
        assert_eq!(store.load(&key()).await.unwrap(), None);
        assert!(!store.remove_if(&key(), b"sealed").await.unwrap());
        assert!(entry.exists(), "another user's file was removed");
    }
}

#[tokio::test]
async fn a_file_too_large_or_not_ours_in_layout_is_absent() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_with_entry(temp.path(), b"sealed").await;
    fs::write(entry_path(temp.path()), vec![b'x'; 1024 * 1024]).unwrap();
    assert_eq!(store.load(&key()).await.unwrap(), None);
    fs::write(entry_path(temp.path()), b"not an entry").unwrap();
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert!(
        store
            .save(&key(), &vec![0; 64 * 1024 + 1], HOUR)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn saving_into_a_read_only_directory_is_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let store = store(temp.path());
    fs::set_permissions(temp.path(), Permissions::from_mode(0o500)).unwrap();
    let saved = store.save(&key(), b"sealed", HOUR).await;
    let probe = fs::write(temp.path().join("probe"), b"");
    fs::set_permissions(temp.path(), Permissions::from_mode(0o700)).unwrap();
    if probe.is_ok() {
        // Root ignores the mode: the save must then have worked like any other.
        saved.unwrap();
    } else {
        assert!(saved.is_err());
        assert!(store.try_lock(&key(), HOUR).await.unwrap().is_some());
    }
}

/// A directory of ours that even root cannot write to: this process's `/proc` directory.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn saving_where_nobody_may_write_is_an_error() {
    let dir = PathBuf::from(format!("/proc/{}", std::process::id()));
    let store = store(&dir);
    assert!(store.save(&key(), b"sealed", HOUR).await.is_err());
    assert!(store.try_lock(&key(), HOUR).await.is_err());
    assert_eq!(store.load(&key()).await.unwrap(), None);
}

#[test]
fn an_operation_outside_a_runtime_fails_instead_of_panicking() {
    let temp = tempfile::tempdir().unwrap();
    let (store, key) = (store(temp.path()), key());
    let mut load = pin!(store.load(&key));
    match load.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => assert!(result.is_err()),
        Poll::Pending => panic!("a load outside a runtime is pending"),
    }
}

#[test]
fn new_refuses_relative_or_empty_paths_and_does_no_io() {
    assert!(FileStore::new("").unwrap_err().is_config());
    assert!(FileStore::new("relative/dir").unwrap_err().is_config());
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("not-yet");
    let store = FileStore::new(&dir).unwrap();
    assert_eq!(store.dir(), dir);
    assert!(!dir.exists());
}

#[test]
fn debug_shows_the_directory() {
    let store = FileStore::new("/var/cache/cells-auth").unwrap();
    assert_eq!(
        format!("{store:?}"),
        r#"FileStore { dir: "/var/cache/cells-auth" }"#
    );
}

#[tokio::test]
async fn clear_removes_the_entries_and_leftover_temporaries_only() {
    let temp = tempfile::tempdir().unwrap();
    let other = StoreKey::from_hex("cd".repeat(32));
    let store = store_with_entry(temp.path(), b"sealed-1").await;
    store.save(&other, b"sealed-2", HOUR).await.unwrap();
    let _held = store.try_lock(&key(), HOUR).await.unwrap().unwrap();
    // What a save that crashed before its rename leaves behind.
    let leftover = format!(".{}.entry.0123456789abcdef.tmp", key());
    fs::write(temp.path().join(&leftover), b"torn").unwrap();
    // Not the store's: similar names, and a directory named like an entry.
    let kept = [
        "notes.txt",
        "xyz.entry",
        ".notes.entry.0123456789abcdef.tmp",
    ];
    for name in kept {
        fs::write(temp.path().join(name), b"mine").unwrap();
    }
    fs::create_dir(temp.path().join(format!("{}.entry", "ef".repeat(32)))).unwrap();

    assert_eq!(store.clear().unwrap(), 2);
    assert_eq!(store.load(&key()).await.unwrap(), None);
    assert_eq!(store.load(&other).await.unwrap(), None);
    let mut left: Vec<String> = fs::read_dir(temp.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected: Vec<String> = kept.iter().map(|name| (*name).to_owned()).collect();
    expected.push(format!("{}.entry", "ef".repeat(32)));
    expected.push(format!("{}.lock", key()));
    expected.sort();
    assert_eq!(left, expected);

    assert_eq!(store.clear().unwrap(), 0);
    assert_eq!(
        FileStore::new(temp.path().join("missing"))
            .unwrap()
            .clear()
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn clear_removes_a_symlinked_entry_but_never_its_target() {
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = temp.path().join("elsewhere");
    let target_store = store_with_entry(&elsewhere, b"planted").await;
    let dir = temp.path().join("store");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
    symlink(entry_path(&elsewhere), entry_path(&dir)).unwrap();

    assert_eq!(store(&dir).clear().unwrap(), 1);
    assert!(fs::symlink_metadata(entry_path(&dir)).is_err());
    assert_eq!(
        target_store.load(&key()).await.unwrap().as_deref(),
        Some(&b"planted"[..])
    );

    // Nor is a symlinked store directory followed.
    let link = temp.path().join("link");
    symlink(&elsewhere, &link).unwrap();
    assert!(store(&link).clear().is_err());
    assert!(entry_path(&elsewhere).exists());
}

#[tokio::test]
async fn clear_refuses_a_directory_writable_by_others() {
    let temp = tempfile::tempdir().unwrap();
    let store = store_with_entry(temp.path(), b"sealed").await;
    fs::set_permissions(temp.path(), Permissions::from_mode(0o777)).unwrap();
    let cleared = store.clear();
    fs::set_permissions(temp.path(), Permissions::from_mode(0o700)).unwrap();
    assert!(cleared.is_err());
    assert!(entry_path(temp.path()).exists());
}

#[test]
fn temporaries_are_recognised_by_their_target() {
    use super::dir::temporary_target;
    assert_eq!(
        temporary_target(".abc.entry.0123456789abcdef.tmp"),
        Some("abc.entry")
    );
    for not_one in [
        "abc.entry.0123456789abcdef.tmp",
        ".abc.entry.0123456789abcdef",
        ".abc.entry.0123456789abcdeg.tmp",
        ".abc.entry.123.tmp",
        ".tmp",
    ] {
        assert_eq!(temporary_target(not_one), None, "{not_one}");
    }
}
