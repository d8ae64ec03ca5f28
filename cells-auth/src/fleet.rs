//! One token for a whole fleet: how a provider with a [`TokenStore`] gets its token.
//!
//! The in-process cache stays in front: this runs only when the process would otherwise fetch
//! (cold, refresh due, invalidated), inside that fetch's flight. The policy, the same for every
//! store:
//! 1. Read the store. A token there with enough life left is adopted without a request; a
//!    remembered failure (a rejection of the credentials, a rate limit) is returned without one.
//! 2. Otherwise take the store's lock for the key, read again (another process may just have
//!    written), fetch, write the token (or the failure), release.
//! 3. A process that finds the lock taken polls the store until the entry (or a failure)
//!    appears, for at most the lock's lease: a holder that died or hangs costs no more than
//!    that, and then the process fetches on its own.
//!
//! The store is an optimisation, never a dependency: any store error, or an operation slower
//! than [`STORE_OP_TIMEOUT`], makes the process fetch on its own, with a warning at most once a
//! minute. Entries are sealed (see `store/seal.rs`): a reader without the secret learns
//! nothing, and an entry it cannot open is a miss.
//!
//! # Clocks
//! Entries carry absolute wall-clock times. A reader subtracts [`CLOCK_SKEW_ALLOWANCE`] from
//! the life it sees left, so machines whose clocks disagree by up to that much never serve a
//! token past its expiry; a reader whose clock is more than that behind the writer's (it reads
//! an entry issued in its future) treats the entry as a miss. Once adopted, a token's expiry is
//! tracked on the process's own expiry clock, which no wall-clock step moves.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret as _, SecretString};

use crate::clock::{Clock, Moment};
use crate::error::Error;
use crate::fetch::Fetched;
use crate::store::seal::{LatchEntry, LatchKind, Sealer, TokenEntry};
use crate::store::{StoreError, StoreKey, TokenStore};

/// The longest a single store operation may take before the process goes on without the store.
/// Loopback Redis answers in well under a millisecond and a file operation in microseconds, so
/// this only fires for a store that is down, overloaded or far away.
pub(crate) const STORE_OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How far apart two machines' wall clocks may be without a token being served past its
/// expiry. NTP keeps clocks within milliseconds; this covers a machine that lost sync.
pub(crate) const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(10);
/// A stored token is adopted only with at least this much life left (or half its lifetime, if
/// that is less), so that an adopter does not have to refresh at once.
const REUSE_MARGIN: Duration = Duration::from_secs(300);
/// The lock's lease: how long a holder that died can keep the fleet waiting. A fetch takes
/// well under a second unless the service struggles; a holder whose fetch outlasts the lease
/// lets one more process fetch, which is all the harm.
const MAX_LOCK_LEASE: Duration = Duration::from_secs(10);
/// How often a process waiting for another's fetch looks at the store. Short, so that the
/// fleet gets the token moments after it is written: a poll is one small read.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// At most one store warning per this long, so that a store that is down does not flood the
/// log; the others go to `debug`.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A [`TokenStore`] and what this provider needs to use it: its keys and seal.
pub(crate) struct Fleet {
    store: Arc<dyn TokenStore>,
    sealer: Sealer,
    token_key: StoreKey,
    latch_key: StoreKey,
    warned_at: Mutex<Option<Moment>>,
}

/// A token obtained through the fleet, and the sealed entry that holds it in the store, if any
/// (for a later compare-and-delete when it is invalidated).
pub(crate) struct Obtained {
    pub(crate) fetched: Fetched,
    pub(crate) stored: Option<Vec<u8>>,
}

impl Fleet {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        base_url: &str,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Self {
        let sealer = Sealer::new(base_url, client_id, client_secret.expose_secret());
        Self {
            token_key: sealer.token_key(),
            latch_key: sealer.latch_key(),
            sealer,
            store,
            warned_at: Mutex::new(None),
        }
    }

    /// Gets a token through the store, fetching with `fetch` (given the time left of
    /// `deadline`) only when the fleet has none. `forget` is the sealed entry of a token this
    /// process was told is invalid: it is removed first, if the store still holds it.
    pub(crate) async fn obtain<F, Fut>(
        &self,
        clock: &Clock,
        deadline: Duration,
        forget: Option<Vec<u8>>,
        fetch: F,
    ) -> Result<Obtained, Error>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<Fetched, Error>>,
    {
        let started = clock.now();
        if let Some(stale) = forget {
            let removed = self
                .op(clock, self.store.remove_if(&self.token_key, &stale))
                .await;
            if let Err(error) = removed {
                return self.alone(clock, error, started, deadline, fetch).await;
            }
        }
        match self.lookup(clock).await {
            Ok(Some(settled)) => return settled,
            Ok(None) => {}
            Err(error) => return self.alone(clock, error, started, deadline, fetch).await,
        }
        let lease = (deadline / 2).min(MAX_LOCK_LEASE);
        // Longer than the lease, so that when a holder dies one waiter takes its expired lease
        // over before the others give up waiting and fetch on their own.
        let stop_waiting = started + lease + lease / 2;
        let mut waiting = false;
        loop {
            let lock = match self
                .op(clock, self.store.try_lock(&self.token_key, lease))
                .await
            {
                Ok(lock) => lock,
                Err(error) => return self.alone(clock, error, started, deadline, fetch).await,
            };
            if let Some(lock) = lock {
                let outcome = self
                    .fetch_holding_lock(clock, started, deadline, fetch)
                    .await;
                if let Err(error) = self.op(clock, lock.release()).await {
                    self.warn(clock, &error, "could not release the store's lock");
                }
                return outcome;
            }
            if !waiting {
                waiting = true;
                tracing::debug!(
                    "another process holds the token store's lock; waiting for its token"
                );
            }
            if clock.now() >= stop_waiting {
                tracing::warn!(
                    waited_s = lease.mul_f64(1.5).as_secs_f64(),
                    "another process held the token store's lock all the time this process \
                     waits for it (one and a half leases of its own deadline); fetching without it"
                );
                let fetched = fetch(time_left(clock, started, deadline)).await?;
                return Ok(self.write(clock, fetched).await);
            }
            // Real time, whatever the clock: polling paces store reads, it measures no token's
            // life. (On a manual clock, waiting for the test to move time would stall a fleet
            // whose holder is simply waiting for its server.)
            tokio::time::sleep(POLL_INTERVAL).await;
            match self.lookup(clock).await {
                Ok(Some(settled)) => return settled,
                Ok(None) => {}
                Err(error) => return self.alone(clock, error, started, deadline, fetch).await,
            }
        }
    }

    /// With the lock held: read again, then fetch and write the outcome.
    async fn fetch_holding_lock<F, Fut>(
        &self,
        clock: &Clock,
        started: Moment,
        deadline: Duration,
        fetch: F,
    ) -> Result<Obtained, Error>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<Fetched, Error>>,
    {
        // A store error here costs nothing more than the fetch below.
        if let Ok(Some(settled)) = self.lookup(clock).await {
            return settled;
        }
        match fetch(time_left(clock, started, deadline)).await {
            Ok(fetched) => Ok(self.write(clock, fetched).await),
            Err(error) => {
                self.remember_failure(clock, &error).await;
                Err(error)
            }
        }
    }

    /// The store failed: fetch on our own, as if there were none.
    async fn alone<F, Fut>(
        &self,
        clock: &Clock,
        error: StoreError,
        started: Moment,
        deadline: Duration,
        fetch: F,
    ) -> Result<Obtained, Error>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<Fetched, Error>>,
    {
        self.warn(clock, &error, "the token store failed; fetching without it");
        let fetched = fetch(time_left(clock, started, deadline)).await?;
        Ok(Obtained {
            fetched,
            stored: None,
        })
    }

    /// Reads the token entry, then the failure latch: `Some` when the store settles the
    /// matter (a token to adopt, or a remembered failure), `None` on a miss.
    async fn lookup(&self, clock: &Clock) -> Result<Option<Result<Obtained, Error>>, StoreError> {
        let now = clock.system_now();
        if let Some(bytes) = self.op(clock, self.store.load(&self.token_key)).await?
            && let Some(entry) = self.sealer.open_token(&self.token_key, &bytes)
            && let Some(lifetime) = adoptable(&entry, now)
        {
            let Some(header) = crate::token::bearer_header(entry.token.expose_secret()) else {
                return Ok(None);
            };
            tracing::debug!(
                lifetime_s = lifetime.as_secs(),
                "adopted a token from the store"
            );
            let fetched = Fetched {
                secret: entry.token,
                header,
                lifetime,
                started: clock.now(),
                started_system: now,
            };
            return Ok(Some(Ok(Obtained {
                fetched,
                stored: Some(bytes),
            })));
        }
        if let Some(bytes) = self.op(clock, self.store.load(&self.latch_key)).await?
            && let Some(latch) = self.sealer.open_latch(&self.latch_key, &bytes)
            && let Ok(left) = latch.until.duration_since(now)
            && !left.is_zero()
        {
            return Ok(Some(Err(latch_error(latch.kind, left))));
        }
        Ok(None)
    }

    /// Writes a fetched token for the fleet; a failure to write only costs the others a fetch.
    async fn write(&self, clock: &Clock, fetched: Fetched) -> Obtained {
        let entry = TokenEntry {
            token: fetched.secret.clone(),
            expires_at: fetched.started_system + fetched.lifetime,
            issued_at: fetched.started_system,
        };
        let stored = match self.sealer.seal_token(&self.token_key, &entry) {
            Ok(sealed) => {
                let ttl = fetched.lifetime;
                match self
                    .op(clock, self.store.save(&self.token_key, &sealed, ttl))
                    .await
                {
                    Ok(()) => Some(sealed),
                    Err(error) => {
                        self.warn(clock, &error, "could not write the token to the store");
                        None
                    }
                }
            }
            Err(error) => {
                self.warn(clock, &error, "could not seal the token for the store");
                None
            }
        };
        Obtained { fetched, stored }
    }

    /// Records a failure that every process should wait out: a rejection of the credentials
    /// for [`CREDENTIALS_ERROR_MEMORY`](crate::cache::CREDENTIALS_ERROR_MEMORY), a rate limit
    /// until its `Retry-After`.
    async fn remember_failure(&self, clock: &Clock, error: &Error) {
        let (kind, wait) = match error {
            Error::CredentialsRejected { status, code, .. } => (
                LatchKind::CredentialsRejected {
                    status: *status,
                    code: code.clone(),
                },
                crate::cache::CREDENTIALS_ERROR_MEMORY,
            ),
            Error::ServiceUnavailable {
                status,
                retry_after: Some(wait),
            } if !wait.is_zero() => (LatchKind::RateLimited { status: *status }, *wait),
            _ => return,
        };
        let entry = LatchEntry {
            until: clock.system_now() + wait,
            kind,
        };
        let written = match self.sealer.seal_latch(&self.latch_key, &entry) {
            Ok(sealed) => {
                self.op(clock, self.store.save(&self.latch_key, &sealed, wait))
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            self.warn(clock, &error, "could not record the failure in the store");
        }
    }

    /// Runs one store operation within [`STORE_OP_TIMEOUT`].
    async fn op<T>(
        &self,
        clock: &Clock,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        clock
            .timeout(STORE_OP_TIMEOUT, operation)
            .await
            .unwrap_or_else(|| {
                Err(StoreError::new(format!(
                    "no answer within {} ms",
                    STORE_OP_TIMEOUT.as_millis()
                )))
            })
    }

    /// A warning at most once per [`WARNING_INTERVAL`], `debug` otherwise.
    fn warn(&self, clock: &Clock, error: &StoreError, what: &str) {
        let now = clock.now();
        let loud = {
            let mut warned_at = self
                .warned_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due =
                warned_at.is_none_or(|at| now.saturating_duration_since(at) >= WARNING_INTERVAL);
            if due {
                *warned_at = Some(now);
            }
            due
        };
        if loud {
            tracing::warn!(store = ?self.store, error = %error, "{what}");
        } else {
            tracing::debug!(error = %error, "{what}");
        }
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The life a stored token has left for this reader, if enough to adopt it (see the module
/// documentation on clocks).
fn adoptable(entry: &TokenEntry, now: SystemTime) -> Option<Duration> {
    let lifetime = entry.expires_at.duration_since(entry.issued_at).ok()?;
    // Issued in this reader's future by more than the allowance: the clocks disagree too much
    // to trust what is left.
    if entry.issued_at.duration_since(now).unwrap_or_default() > CLOCK_SKEW_ALLOWANCE {
        return None;
    }
    let left = entry
        .expires_at
        .duration_since(now)
        .ok()?
        .saturating_sub(CLOCK_SKEW_ALLOWANCE)
        .min(lifetime);
    (left >= REUSE_MARGIN.min(lifetime / 2) && !left.is_zero()).then_some(left)
}

fn latch_error(kind: LatchKind, left: Duration) -> Error {
    match kind {
        LatchKind::CredentialsRejected { status, code } => Error::CredentialsRejected {
            status,
            code,
            description: None,
        },
        LatchKind::RateLimited { status } => Error::ServiceUnavailable {
            status,
            retry_after: Some(left),
        },
    }
}

fn time_left(clock: &Clock, started: Moment, deadline: Duration) -> Duration {
    deadline.saturating_sub(clock.now().saturating_duration_since(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn entry(issued_at: SystemTime, lifetime: Duration) -> TokenEntry {
        TokenEntry {
            token: SecretString::from("token"),
            expires_at: issued_at + lifetime,
            issued_at,
        }
    }

    #[test]
    fn the_skew_allowance_comes_off_the_life_left() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let fresh = entry(now, HOUR);
        assert_eq!(adoptable(&fresh, now), Some(HOUR - CLOCK_SKEW_ALLOWANCE));
        // Written by a machine whose clock is a few seconds ahead: still adopted, and never
        // for longer than its whole lifetime.
        let ahead = entry(now + Duration::from_secs(5), HOUR);
        assert_eq!(adoptable(&ahead, now), Some(HOUR - Duration::from_secs(5)));
    }

    #[test]
    fn a_clock_far_behind_the_writers_adopts_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // This reader's clock is an hour behind (or was stepped back an hour): the entry looks
        // issued in the future, and what is left of it cannot be trusted.
        let future = entry(now + HOUR, HOUR);
        assert_eq!(adoptable(&future, now), None);
    }

    #[test]
    fn a_token_near_its_end_is_not_adopted() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Four minutes left of an hour: less than the reuse margin.
        let old = entry(now - (HOUR - Duration::from_secs(240)), HOUR);
        assert_eq!(adoptable(&old, now), None);
        // A short-lived token needs half its life left.
        let short = entry(now - Duration::from_secs(20), Duration::from_secs(60));
        assert_eq!(adoptable(&short, now), Some(Duration::from_secs(30)));
        let expired = entry(now - 2 * HOUR, HOUR);
        assert_eq!(adoptable(&expired, now), None);
    }
}
