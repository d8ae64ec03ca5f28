//! `RedisStore` (feature `redis`): entries and leases in Redis or Valkey.
//!
//! Entries live under `<prefix><key>` with a Redis expiry; the fetch lock for a key lives under
//! `<prefix><key>:lock`, holds a random owner and expires with its lease. Every change that
//! depends on the current value (remove-if-equal, release-if-owner) is one Lua script, so it is
//! atomic on the server.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, ConnectionAddr, FromRedisValue, RedisError, Value};
use tokio::sync::OnceCell;

use super::{HeldLock, StoreError, StoreFuture, StoreKey, StoreLock, TokenStore};

/// The key prefix unless [`RedisStore::with_prefix`] sets another: it keeps cells-auth's keys
/// apart from an application's own in a shared database.
const DEFAULT_PREFIX: &str = "cells-auth:";

/// The suffix of a key's fetch lock.
const LOCK_SUFFIX: &str = ":lock";

/// How long one attempt to open a connection (TCP connect and handshake) may take. A Redis on
/// the same network answers in milliseconds; half a second leaves room for a slow link while a
/// down or unreachable server costs a caller little before it fetches on its own.
const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// How long one command may wait for its reply. Every command sent here is O(1) on the server,
/// so a reply later than this means an overloaded or stalled Redis, which is no better than
/// none: the store is only an optimisation.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);

/// Extra connection attempts per (re)connect: none. The manager's own retries wait with
/// backoff, holding every caller behind a reconnect that can take seconds; with none, a failed
/// connect fails its operation at once and the next operation starts a new attempt.
const CONNECT_RETRIES: usize = 0;

/// The longest expiry sent to Redis, in milliseconds. Redis rejects an expiry that overflows
/// when added to the current time; half of `i64::MAX` milliseconds is millions of years, far
/// beyond any token lifetime or lease.
const MAX_EXPIRY_MILLIS: u64 = i64::MAX as u64 / 2;

/// Deletes `KEYS[1]` only if it still holds `ARGV[1]`; returns 1 when it deleted, else 0. One
/// script, so that no other client can change the value between the comparison and the delete.
const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// A [`TokenStore`] in Redis or Valkey, shared by every process that points at the same
/// database: one machine or many.
///
/// [`new`](Self::new) only parses the URL; the connection is opened by the first operation,
/// reconnects by itself after a failure, and fails fast (a 500 ms connect timeout, a 250 ms
/// reply timeout) so that a down or slow Redis costs callers little. TLS (`rediss://`) is not
/// supported: entries are sealed before they reach the store, but the password in the URL
/// travels in clear, so keep Redis on a trusted network.
///
/// Its `Debug` output shows the host, port and database, never the user name or password.
///
/// ```no_run
/// # fn demo() -> Result<(), cells_auth::Error> {
/// use cells_auth::store::RedisStore;
///
/// let store = RedisStore::new("redis://:my-password@redis.internal:6379/2")?
///     .with_prefix("billing-service:cells-auth:");
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
pub struct RedisStore {
    client: Client,
    prefix: String,
    connection: OnceCell<ConnectionManager>,
}

impl RedisStore {
    /// A store for the Redis (or Valkey) at `url`: `redis://[[user]:password@]host[:port][/db]`,
    /// `valkey://...`, or `redis+unix:///path/to/socket?db=N&pass=...`. Nothing is sent until
    /// the first operation, and no tokio runtime is needed here.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when the URL is malformed or asks for TLS. The
    /// message never repeats the URL, so a password in it stays out of logs.
    pub fn new(url: &str) -> Result<Self, crate::Error> {
        let client = Client::open(url).map_err(|error| {
            // The redis crate's URL errors are fixed descriptions ("Redis URL did not parse",
            // "Missing hostname", ...) that never echo the URL (at most the value of its
            // `protocol` parameter), so they are safe to show; a test holds them to it.
            crate::Error::config(format!(
                "invalid Redis URL ({error}); expected redis://[[user]:password@]host[:port][/db]"
            ))
        })?;
        Ok(Self {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            connection: OnceCell::new(),
        })
    }

    /// Puts every key under `prefix` instead of `cells-auth:`, for example to keep two
    /// deployments that share a database apart.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn entry_key(&self, key: &StoreKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    fn lock_key(&self, key: &StoreKey) -> String {
        format!("{}{}{LOCK_SUFFIX}", self.prefix, key.as_str())
    }

    /// Where the store connects, without credentials: `host:port/db` or `path?db=N`.
    fn target(&self) -> String {
        let info = self.client.get_connection_info();
        let db = info.redis_settings().db();
        match info.addr() {
            ConnectionAddr::Unix(path) => format!("{}?db={db}", path.display()),
            addr => format!("{addr}/{db}"),
        }
    }

    /// The shared connection, opened on first use. Concurrent first operations wait for the
    /// attempt in progress instead of each opening a connection. A failed connect is not
    /// remembered: the cell stays empty and the next operation (or waiter) tries again.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.connection
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(CONNECT_RETRIES);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|error| {
                StoreError::with_source(
                    format!("cannot connect to Redis at {}", self.target()),
                    error,
                )
            })
    }

    /// Runs `command` on `connection`, naming `what` failed in the error.
    async fn query<T: FromRedisValue>(
        &self,
        connection: &ConnectionManager,
        what: &str,
        command: &Cmd,
    ) -> Result<T, StoreError> {
        query(connection, command).await.map_err(|error| {
            StoreError::with_source(format!("Redis {what} failed at {}", self.target()), error)
        })
    }
}

/// Runs `command`, once more if the first attempt met a connection that was already dead.
///
/// After Redis restarts, the manager still holds the broken connection (or the refused attempt
/// to replace it); the first command fails on it and makes the manager reconnect. Trying once
/// more on the fresh connection lets that command succeed instead of failing one caller for
/// nothing. Repeating is harmless for every command here: GET and SET PX are idempotent; a
/// repeated SET NX finds its own lock and answers "held", which only waits out the lease; a
/// repeated compare-and-delete finds nothing to delete.
async fn query<T: FromRedisValue>(
    connection: &ConnectionManager,
    command: &Cmd,
) -> Result<T, RedisError> {
    match command.query_async(&mut connection.clone()).await {
        Err(error) if error.is_connection_refusal() || error.is_connection_dropped() => {
            tracing::debug!(%error, "Redis connection was broken; trying once more on a new one");
            command.query_async(&mut connection.clone()).await
        }
        result => result,
    }
}

/// `duration` in whole milliseconds for PX, rounded up so that a sub-millisecond TTL still
/// sets an expiry (PX 0 is an error), and capped at what Redis accepts.
fn expiry_millis(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis)
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_EXPIRY_MILLIS)
}

/// A random lock owner: 16 bytes as hex. Only its uniqueness matters (it tells holders apart,
/// it guards nothing secret), and 128 bits make a collision between holders negligible.
fn random_owner() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn compare_and_delete(key: &str, expected: &[u8]) -> Cmd {
    let mut command = ::redis::cmd("EVAL");
    command
        .arg(COMPARE_AND_DELETE)
        .arg(1)
        .arg(key)
        .arg(expected);
    command
}

impl TokenStore for RedisStore {
    fn load<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut command = ::redis::cmd("GET");
            command.arg(self.entry_key(key));
            let connection = self.connection().await?;
            self.query(&connection, "GET", &command).await
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a StoreKey,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut command = ::redis::cmd("SET");
            command
                .arg(self.entry_key(key))
                .arg(value)
                .arg("PX")
                .arg(expiry_millis(ttl));
            let connection = self.connection().await?;
            self.query(&connection, "SET", &command).await
        })
    }

    fn remove_if<'a>(&'a self, key: &'a StoreKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let command = compare_and_delete(&self.entry_key(key), expected);
            let connection = self.connection().await?;
            self.query(&connection, "compare-and-delete", &command)
                .await
        })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a StoreKey,
        lease: Duration,
    ) -> StoreFuture<'a, Option<StoreLock>> {
        Box::pin(async move {
            let lock_key = self.lock_key(key);
            let owner = random_owner();
            let mut command = ::redis::cmd("SET");
            command
                .arg(&lock_key)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(expiry_millis(lease));
            let connection = self.connection().await?;
            match self.query(&connection, "SET NX (lock)", &command).await? {
                Value::Okay => Ok(Some(StoreLock::new(RedisLock {
                    connection,
                    key: lock_key,
                    owner,
                    target: self.target(),
                }))),
                Value::Nil => Ok(None),
                other => Err(StoreError::new(format!(
                    "Redis SET NX (lock) at {} gave an unexpected reply: {other:?}",
                    self.target()
                ))),
            }
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not the URL or the redis client: both carry the password.
        f.debug_struct("RedisStore")
            .field("target", &self.target())
            .field("prefix", &self.prefix)
            .field("connection_opened", &self.connection.initialized())
            .finish()
    }
}

/// A held Redis lock: released by a compare-and-delete on its random owner, so that a holder
/// whose lease ran out cannot free the lock that someone else took since.
struct RedisLock {
    connection: ConnectionManager,
    key: String,
    owner: String,
    target: String,
}

impl HeldLock for RedisLock {
    fn release(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let command = compare_and_delete(&self.key, self.owner.as_bytes());
            // Whether it deleted does not matter: if the lease ran out, the lock is not ours.
            query::<i64>(&self.connection, &command)
                .await
                .map(drop)
                .map_err(|error| {
                    StoreError::with_source(
                        format!("Redis lock release failed at {}", self.target),
                        error,
                    )
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "hunter2-not-in-output";

    #[test]
    fn expiry_rounds_up_to_whole_milliseconds_and_is_capped() {
        assert_eq!(expiry_millis(Duration::ZERO), 1);
        assert_eq!(expiry_millis(Duration::from_nanos(1)), 1);
        assert_eq!(expiry_millis(Duration::from_micros(1_500)), 2);
        assert_eq!(expiry_millis(Duration::from_secs(3600)), 3_600_000);
        assert_eq!(expiry_millis(Duration::MAX), MAX_EXPIRY_MILLIS);
    }

    #[test]
    fn owners_are_32_hex_digits_and_differ() {
        let (first, second) = (random_owner(), random_owner());
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn debug_shows_where_but_not_the_credentials() {
        let store = RedisStore::new(&format!("redis://admin:{PASSWORD}@10.1.2.3:6380/4")).unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("10.1.2.3:6380/4"), "{debug}");
        assert!(debug.contains("cells-auth:"), "{debug}");
        assert!(!debug.contains(PASSWORD), "{debug}");
        assert!(!debug.contains("admin"), "{debug}");

        let unix = RedisStore::new(&format!(
            "redis+unix:///run/redis.sock?db=2&pass={PASSWORD}"
        ))
        .unwrap();
        let debug = format!("{unix:?}");
        assert!(debug.contains("/run/redis.sock?db=2"), "{debug}");
        assert!(!debug.contains(PASSWORD), "{debug}");
    }

    #[test]
    fn malformed_urls_are_config_errors_without_the_password() {
        for url in [
            format!("redis://:{PASSWORD}@localhost:notaport"),
            format!("http://:{PASSWORD}@localhost:6379"),
            format!("redis://:{PASSWORD}@0.0.0.0:6379"),
            format!("redis://:{PASSWORD}@localhost:6379/notadb"),
            format!("rediss://:{PASSWORD}@localhost:6379"),
            format!(":{PASSWORD}"),
        ] {
            let error = RedisStore::new(&url).unwrap_err();
            assert!(error.is_config(), "{url}: {error:?}");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(shown.contains("invalid Redis URL"), "{shown}");
                assert!(!shown.contains(PASSWORD), "{shown}");
            }
        }
    }

    #[test]
    fn keys_sit_under_the_prefix() {
        let key = StoreKey::from_hex("abc123".to_owned());
        let store = RedisStore::new("redis://127.0.0.1/").unwrap();
        assert_eq!(store.entry_key(&key), "cells-auth:abc123");
        assert_eq!(store.lock_key(&key), "cells-auth:abc123:lock");
        let store = store.with_prefix("app:");
        assert_eq!(store.entry_key(&key), "app:abc123");
        assert_eq!(store.lock_key(&key), "app:abc123:lock");
    }
}
