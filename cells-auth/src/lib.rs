//! Get and keep access tokens for [Aspose.Cells Cloud].
//!
//! ```no_run
//! # async fn run() -> Result<(), cells_auth::Error> {
//! let auth = cells_auth::CellsAuth::builder()
//!     .client_id("my-client-id")
//!     .client_secret("my-client-secret")
//!     .build()?; // checks everything, sends nothing
//!
//! // On every request to Aspose.Cells Cloud: a cached read costs nanoseconds.
//! let token = auth.token().await?;
//! let request = reqwest::Client::new()
//!     .get(format!("{}/cells/storage/exist/test.xlsx", auth.base_url()))
//!     .header(reqwest::header::AUTHORIZATION, token.authorization_header());
//! # let _ = request;
//! # Ok(()) }
//! ```
//!
//! [`CellsAuth::from_env`] reads `ASPOSE_CLOUD_CLIENT_ID`, `ASPOSE_CLOUD_CLIENT_SECRET` and
//! `ASPOSE_CLOUD_API_URL` (or the official SDKs' `CellsCloudClientId`,
//! `CellsCloudClientSecret`, `CellsCloudApiBaseUrl`). A self-hosted server without
//! authentication gets [`CellsAuth::no_auth`].
//!
//! # Behaviour
//! - **Cache.** A token is served until shortly before it expires, by `expires_in` (number or
//!   numeric string) or else the JWT `exp` claim, counted from just before the request was sent.
//!   Expiry is measured on a clock that counts suspended time (`CLOCK_BOOTTIME` on Linux), so a
//!   laptop or VM that wakes up after its token expired fetches a new one. A cached read takes
//!   no lock, reads only two coarse clocks and allocates nothing.
//! - **Refresh ahead.** From five minutes before expiry (or half-life for short tokens, with
//!   jitter) the first caller starts a background refresh; callers keep the current token
//!   meanwhile. No timer task is involved, so nothing depends on background scheduling.
//! - **Single-flight.** Any number of concurrent callers on a cold cache share one request and
//!   its outcome.
//! - **Static stability.** A failed refresh keeps the valid token in service and tries again
//!   later, spaced out; an error surfaces only when no valid token is left.
//! - **Retries.** Network errors, timeouts, 429, 500, 502, 503 and 504 are retried with jittered
//!   exponential backoff, honouring `Retry-After`, within one deadline (30 s by default) and at
//!   most five attempts per fetch. 400 and 401 are never retried.
//! - **Remembered failures.** With no valid token left, a rejection of the credentials is
//!   remembered for ten seconds, and a rate limit or outage whose `Retry-After` outlasts the
//!   deadline (Aspose locks a client ID out for ten minutes after five failed requests) until
//!   it ends: meanwhile every caller gets the error, with the wait that is left, and no request
//!   is sent.
//! - **401s.** [`CellsAuth::invalidate`] replaces a token the API refused, once however many
//!   callers report it; a report of the token that replaced it within a minute is ignored, so
//!   an API that refuses every token costs one refresh, not one per request.
//! - **Secrets.** The client secret and tokens appear in no `Debug`, `Display`, error, log
//!   line or URL, and the copies this crate keeps are zeroized on drop (the transient request
//!   body of each fetch and the prebuilt header value are not: neither reqwest nor `http`
//!   offers a way to). Token requests never follow redirects.
//! - **Transport.** HTTPS (rustls, the platform's trust store) except to loopback addresses or
//!   with [`CellsAuthBuilder::allow_insecure_http`]; timeouts by default; proxies from the
//!   environment for HTTPS only (a plain-http token request would hand the secret to the
//!   proxy in clear text, so it bypasses them).
//! - **User code.** A panic in the fetch (a user-supplied client's connector or redirect
//!   policy) is reported as [`Error::Panicked`], not retried. No `tracing` event is emitted
//!   while the provider holds its lock, and waiters are woken before the outcome is logged, so
//!   a subscriber that panics or prints the provider strands nobody.
//! - **Observability.** `tracing` spans and events for fetches, retries, refreshes and errors.
//!
//! # Runtime
//! Fetches run on tokio: call [`CellsAuth::token`] from a runtime with the IO and time drivers
//! enabled (`#[tokio::main]`, `Runtime::new()` and `Builder::enable_all()` all do). Any
//! flavour works, including a current-thread runtime driven call by call with `block_on`. On a
//! multi-thread runtime a fetch runs in a task of its own, so a caller that gives up does not
//! cancel it for the others; on a current-thread runtime it runs in the caller's own future,
//! and if that caller gives up, the next caller fetches. A cached token is served without any
//! runtime; a fetch without one is an [`Error::Config`].
//!
//! # One token for a fleet
//! Processes can share one token through a [`store::TokenStore`]:
//! [`store::FileStore`] for the processes of one machine, `store::RedisStore` (feature `redis`)
//! across machines, or your own. The in-memory cache stays in front; the store is read only
//! when the process would otherwise fetch, one process of the fleet fetches under the store's
//! lock while the others adopt its token, and a rejection or rate limit is shared too. Entries
//! are encrypted and authenticated with a key derived from the client secret, and a store that
//! fails or is slow only makes each process fetch on its own. See
//! [`CellsAuthBuilder::store`].
//!
//! # Features
//! - `redis`: `store::RedisStore`, a token store in Redis or Valkey.
//! - `middleware`: `middleware::BearerAuth`, a `reqwest_middleware::Middleware` that adds the
//!   token to requests for the API origin only, and retries a 401 once with a new token.
//! - `cli`: the `cells-auth` command-line tool (`cells-auth token`), whose processes share
//!   tokens through a [`store::FileStore`] or a `RedisStore` (so it enables `redis`).
//! - `testing`: `testing::FakeTokenServer`, a scriptable token server on 127.0.0.1, and
//!   `testing::ManualClock`, to test code that uses this crate without the network or waiting;
//!   with `redis` also `testing::RedisServer`, a real `redis-server` on a free loopback port.
//!
//! [Aspose.Cells Cloud]: https://products.aspose.cloud/cells/

#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod auth;
mod cache;
mod clock;
mod config;
mod error;
mod fetch;
mod fleet;
mod retry;
mod scrub;
pub mod store;
mod tls;
mod token;

#[cfg(feature = "middleware")]
pub mod middleware;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::CellsAuth;
pub use config::{
    BASE_URL_VARS, CLIENT_ID_VARS, CLIENT_SECRET_VARS, CellsAuthBuilder, DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEADLINE, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{Error, Result};
pub use token::AccessToken;
