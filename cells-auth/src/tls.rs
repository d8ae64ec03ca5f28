//! The HTTPS client for token requests: reqwest's rustls with the platform's trust store.
//!
//! Why reqwest's `rustls` feature (rustls with aws-lc-rs) and not a leaner `ring` setup: the
//! `ring` route needs reqwest's `rustls-no-provider` feature, and Cargo unifies features, so
//! every other reqwest client in the user's program would then panic at construction unless a
//! process-wide crypto provider were installed. Our own test of a user-supplied client hit
//! exactly that panic. aws-lc-rs costs build time (a C library), not correctness.

use std::time::Duration;

use crate::error::Error;

/// Settings of the HTTP client the provider builds when the user supplies none.
#[derive(Debug, Clone)]
pub(crate) struct TransportOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) extra_roots: Vec<reqwest::Certificate>,
    /// Whether proxies from the environment (`HTTPS_PROXY`, ...) apply.
    pub(crate) use_env_proxy: bool,
}

/// Builds the reqwest client for token requests.
pub(crate) fn build_client(options: &TransportOptions) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder();
    if !options.use_env_proxy {
        builder = builder.no_proxy();
    }
    builder
        .tls_backend_rustls()
        .tls_certs_merge(options.extra_roots.iter().cloned())
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        // A redirect of a token request would resend the credentials somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(cells_auth_gen::USER_AGENT)
        .build()
        .map_err(|error| Error::config(format!("cannot build the HTTP client: {error}")))
}

/// Parses PEM text into certificates to trust in addition to the platform's.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, Error> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|error| Error::config(format!("invalid PEM certificate: {error}")))?;
    if certificates.is_empty() {
        return Err(Error::config("no certificate found in the PEM text"));
    }
    Ok(certificates)
}
