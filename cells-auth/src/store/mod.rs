//! Sharing one token between processes: the [`TokenStore`] trait and its two implementations,
//! [`FileStore`] (one machine, no server) and `RedisStore` (feature `redis`, across machines).
//!
//! A store holds opaque bytes under names that cells-auth derives. It never sees a token or a
//! secret in clear: entries are sealed (encrypted and authenticated) with a key derived from
//! the client secret before they reach the store, and names are derived under a secret-derived
//! key too. The policy (what a name is, when a stored token may be adopted, how long a failure
//! is remembered, how long to wait for another process's fetch) lives in cells-auth, not in
//! the store, so every store behaves the same.
//!
//! A store is an optimisation, never a dependency: any error, or an operation slower than a
//! short timeout, makes the provider fetch on its own, with a `tracing` warning.
//!
//! # Implementing a store
//! Four operations, each returning a boxed future so that the trait stays object-safe:
//! [`load`](TokenStore::load), [`save`](TokenStore::save),
//! [`remove_if`](TokenStore::remove_if) (compare-and-delete) and
//! [`try_lock`](TokenStore::try_lock) (a lease that expires, or an OS lock that dies with its
//! process).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod file;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod seal;

pub use file::FileStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

/// The future a [`TokenStore`] operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Somewhere to share sealed token entries between processes.
///
/// Names ([`StoreKey`]) and values are made by cells-auth; a store keeps them as they are.
/// Every operation should finish quickly (cells-auth gives each one a short timeout and treats
/// a late answer as a failure) and must never block the thread it is polled on.
pub trait TokenStore: fmt::Debug + Send + Sync {
    /// The value saved under `key`, or `None` when there is none (or it has expired).
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Saves `value` under `key`, replacing any value there, to be forgotten after `ttl`.
    /// Readers must see either the old value or the new one, never a mix.
    fn save<'a>(&'a self, key: &'a StoreKey, value: &'a [u8], ttl: Duration)
    -> StoreFuture<'a, ()>;

    /// Removes the value under `key` only if it is still exactly `expected`; returns whether it
    /// removed it.
    fn remove_if<'a>(&'a self, key: &'a StoreKey, expected: &'a [u8]) -> StoreFuture<'a, bool>;

    /// Tries to take the exclusive lock that guards fetching for `key`, without waiting:
    /// `Some` when this caller now holds it, `None` when someone else does. The lock must free
    /// itself if its holder dies: after `lease` at the latest (a Redis lease), or when the
    /// process ends (an OS file lock).
    fn try_lock<'a>(
        &'a self,
        key: &'a StoreKey,
        lease: Duration,
    ) -> StoreFuture<'a, Option<StoreLock>>;
}

/// A name in a store: lower-case hex derived by cells-auth from the credentials under a
/// secret-derived key, so it reveals neither the client ID nor the secret. Safe to use as a
/// file name or a Redis key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_hex(hex: String) -> Self {
        debug_assert!(hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
        Self(hex)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.0).finish()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lock taken with [`TokenStore::try_lock`]. Release it with [`release`](Self::release);
/// dropping it without releasing leaves the store to free it (at the end of its lease, or when
/// the lock's file is closed).
pub struct StoreLock(Box<dyn HeldLock>);

/// What a store's lock does when released; implement it to return a [`StoreLock`] from
/// [`TokenStore::try_lock`].
pub trait HeldLock: Send {
    /// Frees the lock, but only if this holder still owns it.
    fn release(self: Box<Self>) -> StoreFuture<'static, ()>;
}

impl StoreLock {
    /// Wraps a store's own lock.
    pub fn new(held: impl HeldLock + 'static) -> Self {
        Self(Box::new(held))
    }

    /// Frees the lock, if this holder still owns it.
    pub async fn release(self) -> Result<(), StoreError> {
        self.0.release().await
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock").finish_non_exhaustive()
    }
}

/// Why a store operation failed. cells-auth logs it and goes on without the store; it never
/// reaches a caller of [`CellsAuth::token`](crate::CellsAuth::token).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with this message. It must not contain secrets: it is logged.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with this message, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}
