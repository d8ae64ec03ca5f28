//! `RedisStore` against a real `redis-server` that each test starts on its own port.
#![cfg(all(feature = "redis", feature = "testing"))]

use std::future::Future;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use cells_auth::store::{RedisStore, StoreError, TokenStore};
use cells_auth::testing::{RedisServer, store_key};

const TTL: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(30);

/// Far beyond the store's own timeouts: only there so that a regression fails instead of
/// hanging the test run.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// How long an operation against a dead or silent endpoint may take: the store's timeouts
/// (500 ms to connect, 250 ms per reply) with plenty of room for a loaded machine.
const FAIL_FAST: Duration = Duration::from_secs(3);

async fn guarded<T>(operation: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, operation)
        .await
        .expect("a store operation hung")
}

/// Runs `operation`, expecting a `StoreError` within [`FAIL_FAST`].
async fn fails_fast<T: std::fmt::Debug>(
    operation: impl Future<Output = Result<T, StoreError>>,
) -> StoreError {
    let started = Instant::now();
    let error = guarded(operation).await.unwrap_err();
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}: {error}",
        started.elapsed()
    );
    error
}

#[tokio::test]
async fn saved_values_load_back_unchanged() {
    let server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();
    let key = store_key("round-trip");
    // Sealed entries are arbitrary bytes, including ones that are not UTF-8.
    let value = [0u8, 0xff, b'\r', b'\n', 0x80, b'x'];

    assert_eq!(store.load(&key).await.unwrap(), None);
    store.save(&key, &value, TTL).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(value.to_vec()));
    store.save(&key, b"replaced", TTL).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(b"replaced".to_vec()));

    assert_eq!(server.keys(), [format!("cells-auth:{key}")]);
    assert_eq!(server.raw_values(), [b"replaced".to_vec()]);
}

#[tokio::test]
async fn a_prefix_keeps_stores_apart() {
    let server = RedisServer::start();
    let default = RedisStore::new(&server.url()).unwrap();
    let other = RedisStore::new(&server.url())
        .unwrap()
        .with_prefix("other-app:");
    let key = store_key("shared-name");

    default.save(&key, b"one", TTL).await.unwrap();
    other.save(&key, b"two", TTL).await.unwrap();

    assert_eq!(default.load(&key).await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(other.load(&key).await.unwrap(), Some(b"two".to_vec()));
    assert_eq!(
        server.keys(),
        [format!("cells-auth:{key}"), format!("other-app:{key}")]
    );
}

#[tokio::test]
async fn save_sets_the_ttl() {
    let server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();
    let key = store_key("ttl");

    store.save(&key, b"v", TTL).await.unwrap();
    let left = server.ttl(&format!("cells-auth:{key}")).expect("an expiry");
    // Read right after the save: at most the TTL, and not much less.
    assert!(
        left <= TTL && left > TTL - Duration::from_secs(10),
        "{left:?}"
    );

    // A TTL below a millisecond still expires the entry rather than failing or keeping it.
    store
        .save(&key, b"v", Duration::from_nanos(1))
        .await
        .unwrap();
    let left = server.ttl(&format!("cells-auth:{key}"));
    assert!(
        left.is_none_or(|left| left <= Duration::from_millis(1)),
        "{left:?}"
    );
}

#[tokio::test]
async fn remove_if_deletes_only_the_expected_value() {
    let server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();
    let key = store_key("remove-if");

    store.save(&key, b"current", TTL).await.unwrap();
    assert!(!store.remove_if(&key, b"stale").await.unwrap());
    assert!(!store.remove_if(&key, b"curren").await.unwrap());
    assert_eq!(store.load(&key).await.unwrap(), Some(b"current".to_vec()));

    assert!(store.remove_if(&key, b"current").await.unwrap());
    assert_eq!(store.load(&key).await.unwrap(), None);
    assert!(!store.remove_if(&key, b"current").await.unwrap());
    assert!(server.keys().is_empty());
}

#[tokio::test]
async fn the_lock_is_exclusive_leased_and_freed_only_by_its_owner() {
    let server = RedisServer::start();
    let first = RedisStore::new(&server.url()).unwrap();
    let second = RedisStore::new(&server.url()).unwrap();
    let key = store_key("lock");
    let lock_key = format!("cells-auth:{key}:lock");

    let held = first.try_lock(&key, LEASE).await.unwrap().expect("free");
    assert!(second.try_lock(&key, LEASE).await.unwrap().is_none());
    assert!(first.try_lock(&key, LEASE).await.unwrap().is_none());
    let left = server.ttl(&lock_key).expect("the lock has a lease");
    assert!(
        left <= LEASE && left > LEASE - Duration::from_secs(10),
        "{left:?}"
    );
    // The lock does not touch the entry under the same key.
    assert_eq!(first.load(&key).await.unwrap(), None);

    // The lease runs out (simulated by deleting the key) and `second` takes the lock.
    assert!(server.delete(&lock_key));
    let taken_over = second.try_lock(&key, LEASE).await.unwrap().expect("free");
    let owner = server.raw_values();
    // The late release of the first holder must leave the new holder's lock alone.
    held.release().await.unwrap();
    assert_eq!(server.raw_values(), owner);
    assert!(first.try_lock(&key, LEASE).await.unwrap().is_none());

    taken_over.release().await.unwrap();
    assert!(server.keys().is_empty());
    let again = first.try_lock(&key, LEASE).await.unwrap();
    assert!(again.is_some(), "free after release");
}

#[tokio::test]
async fn lock_owners_are_random_hex() {
    let server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();

    let _a = store
        .try_lock(&store_key("a"), LEASE)
        .await
        .unwrap()
        .unwrap();
    let _b = store
        .try_lock(&store_key("b"), LEASE)
        .await
        .unwrap()
        .unwrap();
    let owners = server.raw_values();
    assert_eq!(owners.len(), 2);
    assert_ne!(owners[0], owners[1]);
    for owner in owners {
        assert!(owner.len() >= 32 && owner.iter().all(u8::is_ascii_hexdigit));
    }
}

/// `new` neither connects nor needs a runtime; the first operation does connect, and against
/// an endpoint that accepts but never answers, it gives up within the store's timeouts; once
/// nothing listens at all, every operation fails at once.
#[test]
fn connects_on_first_use_and_fails_fast_without_a_redis() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/")).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = store_key("nobody-home");
    // The kernel completes the TCP handshake on the listener's behalf; nothing ever replies.
    let error = runtime.block_on(fails_fast(store.load(&key)));
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(listener.accept().is_ok(), "the first operation connected");

    drop(listener);
    runtime.block_on(async {
        fails_fast(store.load(&key)).await;
        fails_fast(store.save(&key, b"v", TTL)).await;
        fails_fast(store.remove_if(&key, b"v")).await;
        fails_fast(store.try_lock(&key, LEASE)).await;
    });
}

#[tokio::test]
async fn operations_fail_while_redis_is_down_and_recover_after_a_restart() {
    let mut server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();
    let key = store_key("outage");
    store.save(&key, b"before", TTL).await.unwrap();
    let held = store.try_lock(&key, LEASE).await.unwrap().expect("free");

    server.stop();
    fails_fast(store.load(&key)).await;
    fails_fast(store.save(&key, b"during", TTL)).await;
    fails_fast(store.remove_if(&key, b"before")).await;
    fails_fast(store.try_lock(&key, LEASE)).await;
    fails_fast(held.release()).await;

    // No persistence: the restarted server is empty. The very first operation succeeds: the
    // connection manager reconnects.
    server.restart();
    assert_eq!(guarded(store.load(&key)).await.unwrap(), None);
    guarded(store.save(&key, b"after", TTL)).await.unwrap();
    assert_eq!(server.raw_values(), [b"after".to_vec()]);
    let relocked = guarded(store.try_lock(&key, LEASE)).await.unwrap();
    guarded(relocked.expect("free after restart").release())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_restart_between_operations_costs_no_failure() {
    let mut server = RedisServer::start();
    let store = RedisStore::new(&server.url()).unwrap();
    let key = store_key("quiet-restart");
    store.save(&key, b"before", TTL).await.unwrap();

    // Nothing used the connection while the server was down: the store finds it broken on the
    // next operation and retries on a new one.
    server.restart();
    guarded(store.save(&key, b"after", TTL)).await.unwrap();
    assert_eq!(server.raw_values(), [b"after".to_vec()]);
}

#[tokio::test]
async fn passwords_are_used_but_never_shown() {
    const PASSWORD: &str = "correct-horse-battery";
    const WRONG: &str = "wrong-horse-battery";
    let server = RedisServer::start_with_password(PASSWORD);
    let key = store_key("auth");

    let store = RedisStore::new(&server.url()).unwrap();
    store.save(&key, b"v", TTL).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(b"v".to_vec()));
    assert!(!format!("{store:?}").contains(PASSWORD));

    let wrong = RedisStore::new(&format!("redis://:{WRONG}@127.0.0.1:{}/", server.port())).unwrap();
    let error = fails_fast(wrong.load(&key)).await;
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{wrong:?}"),
    ] {
        assert!(!shown.contains(WRONG), "{shown}");
    }

    let none = RedisStore::new(&format!("redis://127.0.0.1:{}/", server.port())).unwrap();
    fails_fast(none.load(&key)).await;
    assert!(!format!("{server:?}").contains(PASSWORD));
}
