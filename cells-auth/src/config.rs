//! Configuration: the builder, the environment, and base-URL validation.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::CellsAuth;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::Error;
use crate::fetch::Fetcher;
use crate::fleet::Fleet;
use crate::retry::RetryPolicy;
use crate::store::TokenStore;
use crate::tls::{TransportOptions, build_client, parse_pem_certificates};

/// Aspose Cloud's API, version 4.0. `https://api.aspose.cloud/v3.0` serves tokens too.
pub const DEFAULT_BASE_URL: &str = "https://api.aspose.cloud/v4.0";

/// Default of [`CellsAuthBuilder::connect_timeout`]. Connecting takes milliseconds when the
/// service is up; waiting longer only delays retries.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`CellsAuthBuilder::request_timeout`]. One token request normally answers within
/// a second; the identity server behind the proxy can take a few.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`CellsAuthBuilder::deadline`]: all attempts of one fetch, waits included, end
/// within this.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Environment variables read by [`CellsAuth::from_env`], in order of preference: this crate's
/// names first, then those of the official Aspose SDK examples.
pub const CLIENT_ID_VARS: [&str; 2] = ["ASPOSE_CLOUD_CLIENT_ID", "CellsCloudClientId"];
/// See [`CLIENT_ID_VARS`].
pub const CLIENT_SECRET_VARS: [&str; 2] = ["ASPOSE_CLOUD_CLIENT_SECRET", "CellsCloudClientSecret"];
/// See [`CLIENT_ID_VARS`]; when neither is set, [`DEFAULT_BASE_URL`] is used.
pub const BASE_URL_VARS: [&str; 2] = ["ASPOSE_CLOUD_API_URL", "CellsCloudApiBaseUrl"];

/// Configures a [`CellsAuth`]; from [`CellsAuth::builder`].
///
/// Every check happens in [`build`](Self::build), so a typo in a base URL fails at start-up,
/// not at the first request.
#[derive(Clone, Default)]
pub struct CellsAuthBuilder {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    base_url: Option<String>,
    http_client: Option<reqwest::Client>,
    extra_roots_pem: Vec<Vec<u8>>,
    allow_insecure_http: bool,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    deadline: Option<Duration>,
    store: Option<Arc<dyn TokenStore>>,
    clock: Clock,
}

impl CellsAuthBuilder {
    /// The client ID from the Aspose Cloud dashboard.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret from the Aspose Cloud dashboard. It is kept in memory that is zeroized
    /// on drop and never printed. Surrounding white space (a stray newline from a `.env` file)
    /// is removed, as it is from the client ID.
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.client_secret = Some(SecretString::from(client_secret.into()));
        self
    }

    /// The API base URL, including the version: [`DEFAULT_BASE_URL`] by default,
    /// `https://api.aspose.cloud/v3.0`, or a self-hosted server's. Tokens are requested from
    /// `<base_url>/cells/connect/token`.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Sends token requests with this client instead of one built by cells-auth. Its own
    /// timeouts, proxy, TLS and redirect settings then apply; make sure it does not follow
    /// redirects, or the credentials may be re-sent to the redirect target.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Also trusts the certificates in this PEM text (for a server with a private CA). The
    /// platform's trust store stays in use. Ignored with [`http_client`](Self::http_client).
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }

    /// Allows a plain `http://` base URL on a non-loopback host: a self-hosted server on a
    /// private network. The credentials then cross the network unencrypted. Loopback addresses
    /// (`127.0.0.1`, `[::1]`, `localhost`) are always allowed.
    ///
    /// Plain-http token requests bypass any proxy set in the environment (`HTTP_PROXY`,
    /// `ALL_PROXY`, ...): the form body carries the client secret, and a proxy would receive it
    /// in clear text. To send them through a proxy anyway, hand a client configured for it to
    /// [`http_client`](Self::http_client).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one token request may take (default 15 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long one fetch may take, retries and their waits included (default 30 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Shares tokens with other processes through `store`: a [`FileStore`](crate::store::FileStore)
    /// for the processes of one machine, a `RedisStore` (feature `redis`) across machines, or
    /// your own [`TokenStore`].
    ///
    /// The provider's in-memory cache stays in front: a cached `token()` never touches the
    /// store. When this process would fetch, it first reads the store and adopts a token there
    /// with enough life left; otherwise one process of the fleet fetches, under the store's
    /// lock, and the others adopt its token. Entries are encrypted and authenticated with a key
    /// derived from the client secret. The store is an optimisation, never a dependency: when
    /// it fails or is slow, the provider fetches on its own and logs a warning. Building the
    /// provider does not touch the store.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), cells_auth::Error> {
    /// use cells_auth::store::FileStore;
    ///
    /// let auth = cells_auth::CellsAuth::builder()
    ///     .client_id("my-client-id")
    ///     .client_secret("my-client-secret")
    ///     .store(FileStore::new("/var/cache/my-app/cells-auth")?)
    ///     .build()?;
    /// # let _ = auth;
    /// # Ok(()) }
    /// ```
    pub fn store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Runs the provider on a manual clock (tests only).
    #[cfg(feature = "testing")]
    pub fn clock(mut self, clock: &crate::testing::ManualClock) -> Self {
        self.clock = Clock::Manual(clock.state());
        self
    }

    /// Checks the configuration and builds the provider. Sends nothing.
    pub fn build(self) -> Result<CellsAuth, Error> {
        // A stray newline from a `.env` file would make the server answer invalid_client.
        let client_id = self
            .client_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::config("the client ID is missing or empty"))?;
        let client_secret = self
            .client_secret
            .map(|secret| SecretString::from(secret.expose_secret().trim()))
            .filter(|secret| !secret.expose_secret().is_empty())
            .ok_or_else(|| Error::config("the client secret is missing or empty"))?;
        let base_url = validate_base_url(
            self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            self.allow_insecure_http,
        )?;
        let deadline = self.deadline.unwrap_or(DEFAULT_DEADLINE);
        if deadline.is_zero() {
            return Err(Error::config("the deadline must be longer than zero"));
        }
        let http_client = match self.http_client {
            Some(client) => client,
            None => {
                let mut extra_roots = Vec::new();
                for pem in &self.extra_roots_pem {
                    extra_roots.extend(parse_pem_certificates(pem)?);
                }
                build_client(&TransportOptions {
                    connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                    request_timeout: self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                    extra_roots,
                    use_env_proxy: env_proxy_allowed(&base_url),
                })?
            }
        };
        let client = cells_auth_gen::Client::new_with_client(&base_url, http_client);
        let fleet = self
            .store
            .map(|store| Fleet::new(store, &base_url, &client_id, &client_secret));
        let fetcher = Fetcher::new(client, client_id, client_secret, self.clock.clone());
        let cache = Cache::new(fetcher, RetryPolicy { deadline }, self.clock, fleet);
        Ok(CellsAuth::with_cache(Arc::new(cache), base_url))
    }

    /// Fills the builder from environment variables looked up with `lookup`.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| lookup(name).filter(|value| !value.trim().is_empty()))
        };
        let client_id = first(&CLIENT_ID_VARS).ok_or_else(|| {
            Error::config(format!(
                "no client ID: set {} (or {})",
                CLIENT_ID_VARS[0], CLIENT_ID_VARS[1]
            ))
        })?;
        let client_secret = first(&CLIENT_SECRET_VARS).ok_or_else(|| {
            Error::config(format!(
                "no client secret: set {} (or {})",
                CLIENT_SECRET_VARS[0], CLIENT_SECRET_VARS[1]
            ))
        })?;
        let mut builder = Self::default()
            .client_id(client_id)
            .client_secret(client_secret);
        if let Some(base_url) = first(&BASE_URL_VARS) {
            builder = builder.base_url(base_url);
        }
        Ok(builder)
    }
}

impl fmt::Debug for CellsAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellsAuthBuilder")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("base_url", &self.base_url)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Checks a base URL and returns it without a trailing slash (the generated client appends
/// `/cells/connect/token`).
pub(crate) fn validate_base_url(raw: &str, allow_insecure_http: bool) -> Result<String, Error> {
    // Not echoed: a URL that fails to parse may still carry a password.
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|error| Error::config(format!("the base URL is not a valid URL: {error}")))?;
    // Not echoed until the user-info and query are known to be absent: either may hold a
    // secret.
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| Error::config("the base URL has no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL: its user-info may be a secret.
        return Err(Error::config(
            "the base URL must not contain a user name or password",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(
            "the base URL must not have a query or fragment",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(host) => {}
        "http" => {
            return Err(Error::config(format!(
                "the base URL {raw:?} uses plain http on a non-loopback host; use https, or \
                 allow_insecure_http(true) for a self-hosted server on a trusted network"
            )));
        }
        other => {
            return Err(Error::config(format!(
                "the base URL {raw:?} has scheme {other:?}; use https"
            )));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether token requests to `base_url` (already validated) may go through a proxy from the
/// environment: only over HTTPS, where the proxy sees an encrypted tunnel, and not to this
/// machine, where a proxy would carry the request off it.
fn env_proxy_allowed(base_url: &str) -> bool {
    base_url.starts_with("https://") && !url_is_loopback(base_url)
}

/// `true` when `url` (already validated) points at this machine.
pub(crate) fn url_is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(is_loopback))
        .unwrap_or(false)
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_at_build_time() {
        assert_eq!(
            validate_base_url("https://api.aspose.cloud/v4.0/", false).unwrap(),
            "https://api.aspose.cloud/v4.0"
        );
        assert!(validate_base_url("http://127.0.0.1:8080/v4.0", false).is_ok());
        assert!(validate_base_url("http://[::1]:8080", false).is_ok());
        assert!(validate_base_url("http://localhost/v3.0", false).is_ok());
        assert!(validate_base_url("http://cells.internal/v4.0", true).is_ok());

        for bad in [
            "http://cells.internal/v4.0",
            "ftp://api.aspose.cloud",
            "api.aspose.cloud/v4.0",
            "https://api.aspose.cloud/v4.0?x=1",
            "",
        ] {
            let error = validate_base_url(bad, false).unwrap_err();
            assert!(error.is_config(), "{bad}: {error}");
        }
        let error = validate_base_url("https://user:hunter2@api.aspose.cloud", false).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn plain_http_token_requests_never_use_an_environment_proxy() {
        assert!(env_proxy_allowed("https://api.aspose.cloud/v4.0"));
        // The secret would reach the proxy in clear text.
        assert!(!env_proxy_allowed("http://cells.internal/v4.0"));
        assert!(!env_proxy_allowed("http://10.0.0.7:8080/v4.0"));
        // A proxy would carry a loopback request off the machine.
        assert!(!env_proxy_allowed("https://127.0.0.1:8443/v4.0"));
        assert!(!env_proxy_allowed("http://localhost/v4.0"));
    }

    #[test]
    fn env_prefers_our_names_and_falls_back_to_the_sdk_names() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let builder = CellsAuthBuilder::from_lookup(vars(&[
            ("ASPOSE_CLOUD_CLIENT_ID", "ours"),
            ("CellsCloudClientId", "sdk"),
            ("CellsCloudClientSecret", "sdk-secret"),
            ("CellsCloudApiBaseUrl", "https://example.test/v3.0"),
        ]))
        .unwrap();
        assert_eq!(builder.client_id.as_deref(), Some("ours"));
        assert_eq!(
            builder.base_url.as_deref(),
            Some("https://example.test/v3.0")
        );

        let error = CellsAuthBuilder::from_lookup(vars(&[("ASPOSE_CLOUD_CLIENT_ID", "")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("ASPOSE_CLOUD_CLIENT_ID") && error.contains("CellsCloudClientId"));

        let error = CellsAuthBuilder::from_lookup(vars(&[("ASPOSE_CLOUD_CLIENT_ID", "id")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("ASPOSE_CLOUD_CLIENT_SECRET"), "{error}");
    }
}
