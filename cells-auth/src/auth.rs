//! `CellsAuth`, the provider applications hold.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::cache::Cache;
use crate::config::{CellsAuthBuilder, validate_base_url};
use crate::error::Error;
use crate::token::AccessToken;

/// Gets and keeps access tokens for Aspose.Cells Cloud.
///
/// Cheap to clone (clones share one cache) and usable from any task or thread. See the
/// [crate documentation](crate) for the behaviour.
#[derive(Clone)]
pub struct CellsAuth {
    mode: Mode,
    base_url: Arc<str>,
}

#[derive(Clone)]
enum Mode {
    Token(Arc<Cache>),
    NoAuth,
}

impl CellsAuth {
    /// Starts configuring a provider.
    ///
    /// ```
    /// # fn main() -> Result<(), cells_auth::Error> {
    /// let auth = cells_auth::CellsAuth::builder()
    ///     .client_id("my-client-id")
    ///     .client_secret("my-client-secret")
    ///     .build()?;
    /// assert_eq!(auth.base_url(), "https://api.aspose.cloud/v4.0");
    /// # Ok(()) }
    /// ```
    pub fn builder() -> CellsAuthBuilder {
        CellsAuthBuilder::default()
    }

    /// A provider configured from the environment: `ASPOSE_CLOUD_CLIENT_ID`,
    /// `ASPOSE_CLOUD_CLIENT_SECRET` and optionally `ASPOSE_CLOUD_API_URL`, or else the official
    /// SDK examples' `CellsCloudClientId`, `CellsCloudClientSecret` and `CellsCloudApiBaseUrl`.
    /// A missing or empty value is an [`Error::Config`] that names the variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_builder()?.build()
    }

    /// Like [`from_env`](Self::from_env), but returns the builder to adjust before building.
    pub fn from_env_builder() -> Result<CellsAuthBuilder, Error> {
        CellsAuthBuilder::from_lookup(|name| std::env::var(name).ok())
    }

    /// A provider for a self-hosted Aspose.Cells Cloud that runs without authentication. It
    /// never requests a token: [`token`](Self::token) returns [`Error::NoAuth`] and
    /// [`authorization`](Self::authorization) returns `None`. Plain `http://` is allowed, since
    /// no credential is sent.
    pub fn no_auth(base_url: &str) -> Result<Self, Error> {
        Ok(Self {
            mode: Mode::NoAuth,
            base_url: validate_base_url(base_url, true)?.into(),
        })
    }

    pub(crate) fn with_cache(cache: Arc<Cache>, base_url: String) -> Self {
        Self {
            mode: Mode::Token(cache),
            base_url: base_url.into(),
        }
    }

    /// A valid token: the cached one, or a new one when there is none or it is about to expire.
    ///
    /// A cached read takes no lock, reads only the coarse monotonic clock and allocates
    /// nothing. Concurrent callers on a cold cache share one request and its outcome.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        match &self.mode {
            Mode::Token(cache) => match cache.cached() {
                Some(token) => Ok(token),
                // Boxed, so that the future of every call stays a few words long: the slow
                // path's state (channels, a timer) takes hundreds of bytes, and a future is
                // moved by value at least once. Only the slow path pays the allocation.
                None => Box::pin(cache.token_slow()).await,
            },
            Mode::NoAuth => Err(Error::NoAuth),
        }
    }

    /// The `Authorization` header value for a request, or `None` for a
    /// [`no_auth`](Self::no_auth) provider.
    pub async fn authorization(&self) -> Result<Option<HeaderValue>, Error> {
        match &self.mode {
            Mode::Token(_) => Ok(Some(self.token().await?.authorization_header().clone())),
            Mode::NoAuth => Ok(None),
        }
    }

    /// Reports that the server rejected `token` (HTTP 401). The provider stops serving it, and
    /// the next [`token`](Self::token) call fetches a new one; however many callers report the
    /// same token, it refreshes once. A token that was already replaced is ignored, and so is
    /// a report, within a minute, of the token that replaced an invalidated one: when a fresh
    /// token is refused too, the refusal is not the token's fault (a missing subscription, say),
    /// and fetching again for every request would only load the rate-limited token endpoint.
    pub fn invalidate(&self, token: &AccessToken) {
        if let Mode::Token(cache) = &self.mode {
            cache.invalidate(token);
        }
    }

    /// `true` for a provider built with [`no_auth`](Self::no_auth).
    pub fn is_no_auth(&self) -> bool {
        matches!(self.mode, Mode::NoAuth)
    }

    /// The API base URL, without a trailing slash, such as `https://api.aspose.cloud/v4.0`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl fmt::Debug for CellsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("CellsAuth");
        debug.field("base_url", &self.base_url);
        match &self.mode {
            Mode::Token(cache) => debug.field("cache", cache),
            Mode::NoAuth => debug.field("mode", &"no_auth"),
        };
        debug.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn the_provider_is_shareable() {
        assert_send_sync_static::<CellsAuth>();
        assert_send_sync_static::<AccessToken>();
        assert_send_sync_static::<Error>();
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let auth = CellsAuth::builder()
            .client_id("visible-id")
            .client_secret("hunter2-secret")
            .build()
            .unwrap();
        let debug = format!("{auth:?}");
        assert!(debug.contains("visible-id"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let builder = format!("{:?}", CellsAuth::builder().client_secret("hunter2-secret"));
        assert!(!builder.contains("hunter2"), "{builder}");
    }

    #[test]
    fn the_token_future_is_a_few_words() {
        // Futures move by value at least once; a cached read must not copy the slow path's
        // state (hundreds of bytes) each time.
        let auth = CellsAuth::builder()
            .client_id("id")
            .client_secret("secret")
            .build()
            .unwrap();
        let size = std::mem::size_of_val(&auth.token());
        assert!(size <= 64, "token() future is {size} bytes");
    }

    #[tokio::test]
    async fn no_auth_mode_never_has_a_token() {
        let auth = CellsAuth::no_auth("http://cells.internal:8080/v4.0").unwrap();
        assert!(auth.is_no_auth());
        assert!(matches!(auth.token().await, Err(Error::NoAuth)));
        assert_eq!(auth.authorization().await.unwrap(), None);
    }
}
