//! The HTTPS client: rustls with the `ring` provider, the platform's trust store, no redirects.
//!
//! reqwest's `rustls` feature would pull aws-lc-rs (a C build that more than doubles the clean
//! build) and its `rustls-no-provider` feature panics unless a process-wide crypto provider is
//! installed, which a library must not do behind its users' backs. So we build the rustls
//! configuration ourselves with an explicit provider and hand it to reqwest.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::error::Error;

/// Settings of the HTTP client the provider builds when the user supplies none.
#[derive(Debug, Clone)]
pub(crate) struct TransportOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
}

/// Builds the reqwest client for token requests.
pub(crate) fn build_client(options: &TransportOptions) -> Result<reqwest::Client, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        options.extra_roots.iter().cloned(),
        Arc::clone(&provider),
    )
    .map_err(|error| Error::config(format!("cannot load trusted certificates: {error}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::config(format!("TLS setup failed: {error}")))?
        .dangerous() // Not dangerous here: the platform verifier is the standard verifier.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        // A redirect of a token request would resend the credentials somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(cells_auth_gen::USER_AGENT)
        .build()
        .map_err(|error| Error::config(format!("cannot build the HTTP client: {error}")))
}

/// Parses PEM text into certificates to trust in addition to the platform's.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    use rustls::pki_types::pem::PemObject as _;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::config(format!("invalid PEM certificate: {error}")))?;
    if certificates.is_empty() {
        return Err(Error::config("no certificate found in the PEM text"));
    }
    Ok(certificates)
}
