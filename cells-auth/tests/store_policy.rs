//! The shared-store policy, through a `TokenStore` written here with the public API only (which
//! proves that users can plug in their own): adoption, one fetch per fleet, compare-and-delete
//! on invalidation, the shared failure latch, sealing, and static stability when the store
//! fails. Several providers on one store stand for several processes.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cells_auth::store::{HeldLock, StoreError, StoreFuture, StoreKey, StoreLock, TokenStore};
use cells_auth::testing::{FakeTokenServer, Gate, ManualClock, Reply};
use cells_auth::{CellsAuth, CellsAuthBuilder};

/// A store in memory. `broken` makes every operation fail, as a store that is down would.
#[derive(Debug, Clone, Default)]
struct MemoryStore {
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    locks: Arc<Mutex<HashMap<String, ()>>>,
    broken: Arc<AtomicBool>,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::new("the memory store is switched off"));
        }
        Ok(())
    }

    fn raw_values(&self) -> Vec<Vec<u8>> {
        self.values.lock().unwrap().values().cloned().collect()
    }
}

struct MemoryLock {
    locks: Arc<Mutex<HashMap<String, ()>>>,
    name: String,
}

impl HeldLock for MemoryLock {
    fn release(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            self.locks.lock().unwrap().remove(&self.name);
            Ok(())
        })
    }
}

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.values.lock().unwrap().get(key.as_str()).cloned())
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a StoreKey,
        value: &'a [u8],
        _ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.values
                .lock()
                .unwrap()
                .insert(key.as_str().to_owned(), value.to_vec());
            Ok(())
        })
    }

    fn remove_if<'a>(&'a self, key: &'a StoreKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.check()?;
            let mut values = self.values.lock().unwrap();
            let matches = values
                .get(key.as_str())
                .is_some_and(|held| held == expected);
            if matches {
                values.remove(key.as_str());
            }
            Ok(matches)
        })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a StoreKey,
        _lease: Duration,
    ) -> StoreFuture<'a, Option<StoreLock>> {
        Box::pin(async move {
            self.check()?;
            let name = format!("{}.lock", key.as_str());
            let mut locks = self.locks.lock().unwrap();
            if locks.contains_key(&name) {
                return Ok(None);
            }
            locks.insert(name.clone(), ());
            Ok(Some(StoreLock::new(MemoryLock {
                locks: Arc::clone(&self.locks),
                name,
            })))
        })
    }
}

fn on(store: &MemoryStore, builder: CellsAuthBuilder) -> CellsAuth {
    builder.store(store.clone()).build().unwrap()
}

#[tokio::test]
async fn a_second_process_adopts_the_first_ones_token_without_a_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let first = on(&store, support::builder(&server, &clock));
    let second = on(&store, support::builder(&server, &clock));
    let token = first.token().await.unwrap();
    assert_eq!(second.token().await.unwrap().secret(), token.secret());
    assert_eq!(server.request_count(), 1);

    // What the store holds is sealed: neither the token nor the secret, in any form.
    for value in store.raw_values() {
        let text = String::from_utf8_lossy(&value);
        support::assert_no_secrets(&text, &[token.secret().to_owned()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_fleet_makes_one_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let fleet: Vec<_> = (0..8)
        .map(|_| on(&store, support::builder(&server, &clock)))
        .collect();
    let callers: Vec<_> = fleet
        .iter()
        .flat_map(|auth| {
            (0..50).map(move |_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.token().await })
            })
        })
        .collect();
    server.wait_for_requests(1).await;
    gate.open();
    let mut tokens = std::collections::HashSet::new();
    for caller in callers {
        tokens.insert(caller.await.unwrap().unwrap().secret().to_owned());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn another_secret_never_adopts_the_token() {
    let server = FakeTokenServer::builder()
        .credentials(FakeTokenServer::CLIENT_ID, "the-other-secret")
        .start()
        .await
        .unwrap();
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let other = on(
        &store,
        CellsAuth::builder()
            .client_id(FakeTokenServer::CLIENT_ID)
            .client_secret("the-other-secret")
            .base_url(server.base_url())
            .clock(&clock),
    );
    other.token().await.unwrap();
    // The same client ID with the right secret for our server: it must fetch its own.
    let ours_server = FakeTokenServer::start().await.unwrap();
    let ours = on(&store, support::builder(&ours_server, &clock));
    let token = ours.token().await.unwrap();
    assert_eq!(token.secret(), ours_server.issued_tokens()[0]);
    assert_eq!(ours_server.request_count(), 1);
}

#[tokio::test]
async fn an_invalidated_token_is_replaced_once_for_the_fleet() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let first = on(&store, support::builder(&server, &clock));
    let second = on(&store, support::builder(&server, &clock));
    let rejected = first.token().await.unwrap();
    assert_eq!(second.token().await.unwrap().secret(), rejected.secret());

    // Both processes learn from a 401 that the token is bad; the fleet fetches once.
    first.invalidate(&rejected);
    let fresh = first.token().await.unwrap();
    assert_ne!(fresh.secret(), rejected.secret());
    second.invalidate(&rejected);
    assert_eq!(second.token().await.unwrap().secret(), fresh.secret());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_rejection_is_shared_by_the_fleet() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::oauth_error(400, "invalid_client"));
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let fleet: Vec<_> = (0..8)
        .map(|_| on(&store, support::builder(&server, &clock)))
        .collect();
    for auth in &fleet {
        let error = auth.token().await.unwrap_err();
        assert!(error.is_credentials(), "{error}");
    }
    assert_eq!(server.request_count(), 1, "one request per latch period");
    // After the latch period, one process asks again and the fleet follows it.
    clock.advance(Duration::from_secs(11));
    for auth in &fleet {
        auth.token().await.unwrap();
    }
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_rate_limit_is_shared_by_the_fleet() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(429).header("retry-after", "600"));
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let fleet: Vec<_> = (0..8)
        .map(|_| on(&store, support::builder(&server, &clock)))
        .collect();
    for auth in &fleet {
        let error = auth.token().await.unwrap_err();
        assert_eq!(error.status(), Some(429));
        assert!(error.retry_after().unwrap() <= Duration::from_secs(600));
    }
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_store_that_fails_is_no_dependency() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    store.broken.store(true, Ordering::SeqCst);
    let first = on(&store, support::builder(&server, &clock));
    let second = on(&store, support::builder(&server, &clock));
    first.token().await.unwrap();
    second.token().await.unwrap();
    // Each process fetched on its own.
    assert_eq!(server.request_count(), 2);

    // Back up: the next process to fetch writes the token for the others.
    store.broken.store(false, Ordering::SeqCst);
    let third = on(&store, support::builder(&server, &clock));
    let fourth = on(&store, support::builder(&server, &clock));
    let token = third.token().await.unwrap();
    assert_eq!(fourth.token().await.unwrap().secret(), token.secret());
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn garbage_in_the_store_is_a_miss() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let first = on(&store, support::builder(&server, &clock));
    first.token().await.unwrap();
    // Someone without the secret overwrites every entry.
    for value in store.values.lock().unwrap().values_mut() {
        value.iter_mut().for_each(|byte| *byte ^= 0x55);
    }
    let second = on(&store, support::builder(&server, &clock));
    let token = second.token().await.unwrap();
    assert_eq!(token.secret(), server.issued_tokens()[1]);
}

#[tokio::test]
async fn a_token_about_to_expire_is_not_adopted() {
    let server = FakeTokenServer::start().await.unwrap(); // one-hour tokens
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let first = on(&store, support::builder(&server, &clock));
    first.token().await.unwrap();
    // Four minutes left: less than the reuse margin of five.
    clock.advance(Duration::from_secs(3600 - 240));
    let second = on(&store, support::builder(&server, &clock));
    let token = second.token().await.unwrap();
    assert_eq!(token.secret(), server.issued_tokens()[1]);
}
