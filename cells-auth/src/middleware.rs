//! [`BearerAuth`], a [`reqwest_middleware::Middleware`] that authenticates requests to
//! Aspose.Cells Cloud (cargo feature `middleware`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use cells_auth::CellsAuth;
//! use cells_auth::middleware::BearerAuth;
//!
//! let auth = CellsAuth::from_env()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(BearerAuth::new(auth.clone()))
//!     .build();
//!
//! // Sent with `Authorization: Bearer <token>`; a 401 gets one retry with a new token.
//! let response = client
//!     .get(format!("{}/cells/storage/exist/test.xlsx", auth.base_url()))
//!     .send()
//!     .await?;
//! # let _ = response;
//!
//! // Any other host gets the request untouched: no token leaves for it.
//! let response = client.get("https://example.com/").send().await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! When no token can be had, the request is not sent and the error is a
//! [`reqwest_middleware::Error::Middleware`] that holds the [`crate::Error`]:
//!
//! ```no_run
//! # async fn run(client: reqwest_middleware::ClientWithMiddleware) {
//! match client.get("https://api.aspose.cloud/v4.0/cells/storage/disc").send().await {
//!     Err(reqwest_middleware::Error::Middleware(error)) => {
//!         match error.downcast_ref::<cells_auth::Error>() {
//!             Some(auth_error) if auth_error.is_credentials() => {
//!                 eprintln!("fix the client ID or secret: {auth_error}");
//!             }
//!             _ => eprintln!("{error}"),
//!         }
//!     }
//!     Err(other) => eprintln!("{other}"),
//!     Ok(response) => println!("{}", response.status()),
//! }
//! # }
//! ```

use std::fmt;

use http::Extensions;
use http::header::AUTHORIZATION;
use reqwest::{Request, Response, StatusCode, Url};
use reqwest_middleware::{Middleware, Next};
use url::Origin;

use crate::CellsAuth;
use crate::config::validate_base_url;

use crate::error::Error;
/// The reqwest-middleware version `BearerAuth` implements, so callers need not match it by hand.
pub use reqwest_middleware;

/// Authenticates requests to Aspose.Cells Cloud with a [`CellsAuth`].
///
/// For each request to the API origin, and only to it, it adds `Authorization: Bearer <token>`
/// (the header value is marked sensitive). The API origin is the scheme, host and port of
/// [`CellsAuth::base_url`] ([`new`](Self::new)), or of another URL
/// ([`with_api_origin`](Self::with_api_origin)). Paths do not matter: with a base URL of
/// `https://api.aspose.cloud/v4.0`, a request to `https://api.aspose.cloud/v3.0/...` is
/// authenticated, one to `http://api.aspose.cloud/...` or `https://api.aspose.cloud:8443/...`
/// is not.
///
/// Requests pass through untouched when they go to another origin, when they already carry an
/// `Authorization` header (the caller chose its credentials), and when the provider was built
/// with [`CellsAuth::no_auth`].
///
/// When the API answers 401, the token is reported with [`CellsAuth::invalidate`] and the
/// request is sent once more with a new token, provided its body can be replayed
/// ([`Request::try_clone`]); a streaming body gets the 401 back. However many requests are
/// rejected together, the provider fetches one new token. A second 401 is returned as it is.
///
/// Redirects are followed by the `reqwest::Client` below the middleware, which drops the
/// `Authorization` header when a redirect leaves the origin; a 401 from such a redirect target
/// is returned as it is, without touching the token.
#[derive(Clone)]
pub struct BearerAuth {
    auth: CellsAuth,
    /// The scheme, host and port whose requests may carry the token: always a tuple origin,
    /// with the scheme's default port filled in, as `tuple_origin` makes it.
    origin: Origin,
}

impl BearerAuth {
    /// Authenticates requests to the origin of [`CellsAuth::base_url`], which is where
    /// Aspose.Cells Cloud serves both tokens and the API (`https://api.aspose.cloud`).
    #[must_use]
    pub fn new(auth: CellsAuth) -> Self {
        // `CellsAuth` only holds base URLs that `validate_base_url` accepted: absolute http(s)
        // URLs with a host, so they always have an origin.
        let origin = tuple_origin(auth.base_url())
            .expect("CellsAuth::base_url is a validated http(s) URL with a host");
        Self { auth, origin }
    }

    /// Authenticates requests to the origin (scheme, host and port) of `api_url` instead: for an
    /// API served from another host than the token endpoint, such as a gateway in front of a
    /// self-hosted server. Any path in `api_url` is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `api_url` is not an absolute `http` or `https` URL with a host,
    /// or when it is plain `http` on a host other than loopback while the provider's own base
    /// URL uses `https`: the token would cross the network unencrypted.
    pub fn with_api_origin(auth: CellsAuth, api_url: &str) -> Result<Self, Error> {
        // Checks the shape (scheme, host, no user-info) only; whether plain http is acceptable
        // is decided next, with a message about the API rather than the base URL.
        let checked = validate_base_url(api_url, true)?;
        let provider_uses_http = auth.is_no_auth() || auth.base_url().starts_with("http://");
        // The shape is fine, so a refusal without the allowance can only mean plain http on a
        // host other than loopback.
        if !provider_uses_http && validate_base_url(api_url, false).is_err() {
            return Err(Error::config(format!(
                "the API URL {api_url:?} uses plain http on a non-loopback host while the token \
                 endpoint uses https; use https so that tokens are not sent unencrypted"
            )));
        }
        let origin = tuple_origin(&checked)
            .ok_or_else(|| Error::config(format!("the API URL {api_url:?} has no origin")))?;
        Ok(Self { auth, origin })
    }

    /// The origin whose requests get the token, such as `https://api.aspose.cloud`.
    pub fn api_origin(&self) -> String {
        self.origin.ascii_serialization()
    }

    /// The provider the tokens come from.
    pub fn auth(&self) -> &CellsAuth {
        &self.auth
    }

    fn should_authenticate(&self, request: &Request) -> bool {
        !self.auth.is_no_auth()
            && !request.headers().contains_key(AUTHORIZATION)
            && same_origin(&self.origin, request.url())
    }

    async fn authenticate(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if !self.should_authenticate(&request) {
            return next.run(request, extensions).await;
        }
        let token = self
            .auth
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        // Taken before the header goes in; the replay gets the new token's header instead.
        let replay = request.try_clone();
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.authorization_header().clone());
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if !same_origin(&self.origin, response.url()) {
            // The client below followed a redirect to another origin, which got no token (the
            // client drops the header) and refused the request on its own account: the token
            // is fine, and replacing it would cost a fetch for every such request.
            tracing::debug!("a redirect target outside the API origin answered 401");
            return Ok(response);
        }

        self.auth.invalidate(&token);
        let Some(mut replay) = replay else {
            tracing::debug!("the API answered 401; the request body cannot be replayed");
            return Ok(response);
        };
        let fresh = self
            .auth
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        if fresh.authorization_header() == token.authorization_header() {
            // The token endpoint handed back the token the API just refused.
            return Ok(response);
        }
        tracing::debug!("the API answered 401; retrying once with a new token");
        // Release the first connection before the replay needs one.
        drop(response);
        replay
            .headers_mut()
            .insert(AUTHORIZATION, fresh.authorization_header().clone());
        next.run(replay, extensions).await
    }
}

#[async_trait::async_trait]
impl Middleware for BearerAuth {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.authenticate(request, extensions, next).await
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("api_origin", &self.origin.ascii_serialization())
            .field("auth", &self.auth)
            .finish()
    }
}

/// The origin of `url` when it has a scheme, host and port (`http` and `https` URLs do);
/// `None` for a URL that does not parse or whose origin is opaque.
fn tuple_origin(url: &str) -> Option<Origin> {
    let origin = Url::parse(url).ok()?.origin();
    origin.is_tuple().then_some(origin)
}

/// Whether `url` has the tuple origin `origin`: for `http` and `https` URLs what
/// `url.origin() == *origin` says, but without allocating, since this runs for every request.
/// Both sides went through the same URL parser, so equal hosts are equal strings (lower-case,
/// IPv6 in brackets), and `port_or_known_default` resolves default ports as [`Url::origin`]
/// does. Unlike `Url::origin`, a `blob:` URL never matches: its scheme is not the origin's.
fn same_origin(origin: &Origin, url: &Url) -> bool {
    let Origin::Tuple(scheme, host, port) = origin else {
        // An opaque origin equals no other; `BearerAuth` never holds one.
        return false;
    };
    url.scheme() == scheme
        && url.host().is_some_and(|url_host| url_host == *host)
        && url.port_or_known_default() == Some(*port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(base_url: &str) -> CellsAuth {
        CellsAuth::builder()
            .client_id("id")
            .client_secret("secret")
            .base_url(base_url)
            .build()
            .unwrap()
    }

    fn authenticates(middleware: &BearerAuth, url: &str) -> bool {
        let request = Request::new(reqwest::Method::GET, Url::parse(url).unwrap());
        middleware.should_authenticate(&request)
    }

    #[test]
    fn the_origin_decides_not_the_path() {
        let middleware = BearerAuth::new(provider("https://api.aspose.cloud/v4.0"));
        assert_eq!(middleware.api_origin(), "https://api.aspose.cloud");
        for url in [
            "https://api.aspose.cloud/v4.0/cells/storage/disc",
            "https://api.aspose.cloud/v3.0/cells/book.xlsx",
            "https://api.aspose.cloud/",
            "https://api.aspose.cloud:443/v4.0/cells",
            "https://API.Aspose.Cloud/v4.0/cells",
        ] {
            assert!(authenticates(&middleware, url), "{url}");
        }
        for url in [
            "http://api.aspose.cloud/v4.0/cells",
            "https://api.aspose.cloud:8443/v4.0/cells",
            "https://api.aspose.cloud.example.com/v4.0/cells",
            "https://aspose.cloud/v4.0/cells",
            "https://example.com/api.aspose.cloud/v4.0",
        ] {
            assert!(!authenticates(&middleware, url), "{url}");
        }
    }

    #[test]
    fn default_ports_are_resolved() {
        let middleware = BearerAuth::new(provider("http://127.0.0.1:80/v4.0"));
        assert_eq!(middleware.api_origin(), "http://127.0.0.1");
        assert!(authenticates(&middleware, "http://127.0.0.1/v4.0/cells"));
        assert!(!authenticates(
            &middleware,
            "http://127.0.0.1:8080/v4.0/cells"
        ));
        assert!(!authenticates(&middleware, "https://127.0.0.1/v4.0/cells"));

        let middleware = BearerAuth::new(provider("http://[::1]:8080"));
        assert_eq!(middleware.api_origin(), "http://[::1]:8080");
        assert!(authenticates(&middleware, "http://[::1]:8080/v4.0/cells"));
        assert!(!authenticates(
            &middleware,
            "http://127.0.0.1:8080/v4.0/cells"
        ));
    }

    #[test]
    fn an_explicit_api_origin_replaces_the_base_url() {
        let middleware = BearerAuth::with_api_origin(
            provider("https://api.aspose.cloud/v4.0"),
            "https://cells.example.com:8443/v4.0",
        )
        .unwrap();
        assert_eq!(middleware.api_origin(), "https://cells.example.com:8443");
        assert!(authenticates(
            &middleware,
            "https://cells.example.com:8443/x"
        ));
        assert!(!authenticates(
            &middleware,
            "https://api.aspose.cloud/v4.0/x"
        ));
    }

    #[test]
    fn an_api_origin_must_not_downgrade_to_plain_http() {
        let error = BearerAuth::with_api_origin(
            provider("https://api.aspose.cloud/v4.0"),
            "http://cells.example.com/v4.0",
        )
        .unwrap_err();
        assert!(error.is_config(), "{error}");
        assert!(error.to_string().contains("plain http"), "{error}");

        // Loopback is fine, and so is a provider that already talks plain http.
        assert!(
            BearerAuth::with_api_origin(
                provider("https://api.aspose.cloud/v4.0"),
                "http://127.0.0.1:8080"
            )
            .is_ok()
        );
        let insecure = CellsAuth::builder()
            .client_id("id")
            .client_secret("secret")
            .base_url("http://cells.internal/v4.0")
            .allow_insecure_http(true)
            .build()
            .unwrap();
        assert!(BearerAuth::with_api_origin(insecure, "http://gateway.internal").is_ok());
    }

    #[test]
    fn an_api_origin_must_be_an_http_url() {
        let auth = provider("https://api.aspose.cloud/v4.0");
        for bad in [
            "not a url",
            "ftp://api.aspose.cloud",
            "/v4.0/cells",
            "https://user:pw@h/",
        ] {
            let error = BearerAuth::with_api_origin(auth.clone(), bad).unwrap_err();
            assert!(error.is_config(), "{bad}: {error}");
        }
    }

    #[test]
    fn no_auth_providers_and_callers_own_headers_pass_through() {
        let middleware =
            BearerAuth::new(CellsAuth::no_auth("http://cells.internal:8080/v4.0").unwrap());
        assert!(!authenticates(
            &middleware,
            "http://cells.internal:8080/v4.0/cells"
        ));

        let middleware = BearerAuth::new(provider("https://api.aspose.cloud/v4.0"));
        let mut request = Request::new(
            reqwest::Method::GET,
            Url::parse("https://api.aspose.cloud/v4.0/cells").unwrap(),
        );
        request
            .headers_mut()
            .insert(AUTHORIZATION, "Bearer the-callers-own".parse().unwrap());
        assert!(!middleware.should_authenticate(&request));
    }

    #[test]
    fn debug_names_the_origin_and_hides_the_secret() {
        let middleware = BearerAuth::new(
            CellsAuth::builder()
                .client_id("visible-id")
                .client_secret("hunter2-secret")
                .build()
                .unwrap(),
        );
        let debug = format!("{middleware:?}");
        assert!(debug.contains("https://api.aspose.cloud"), "{debug}");
        assert!(debug.contains("visible-id"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn the_middleware_is_shareable() {
        fn assert_send_sync_static<T: Send + Sync + 'static>() {}
        assert_send_sync_static::<BearerAuth>();
    }
}
