//! The one error type of the crate.
//!
//! Every variant carries only what is safe to print: status codes, OAuth error codes, scrubbed
//! body excerpts. No variant holds the client secret, a token or a URL with credentials.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a token could not be had.
///
/// Match on the variants to react, and read their fields by name; every variant is
/// `#[non_exhaustive]`, so a field added later does not break your code (write `..` in
/// patterns). The fields cannot be set outside this crate:
///
/// ```compile_fail
/// fn status(error: &cells_auth::Error) -> u16 {
///     match error {
///         cells_auth::Error::CredentialsRejected { status, code, description } => *status,
///         _ => 0,
///     }
/// }
/// ```
///
/// ```
/// fn status(error: &cells_auth::Error) -> Option<u16> {
///     match error {
///         cells_auth::Error::CredentialsRejected { status, .. } => Some(*status),
///         _ => error.status(),
///     }
/// }
/// ```
///
/// The variants let a program tell apart what it can fix (configuration, credentials) from
/// what may pass by itself ([`Error::is_transient`]). `Error` is `Clone` because one token
/// request answers every caller waiting for it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint rejected the credentials (HTTP 400 or 401). Never retried.
    #[non_exhaustive]
    CredentialsRejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (RFC 6749 section 5.2), such as `invalid_client`, when the
        /// body carried one.
        code: Option<String>,
        /// The server's `error_description`, scrubbed and shortened.
        description: Option<String>,
    },
    /// The service is unavailable or rate limiting (429, 500, 502, 503, 504) and stayed so
    /// until the retries ran out.
    #[non_exhaustive]
    ServiceUnavailable {
        /// The HTTP status of the last answer.
        status: u16,
        /// How long the server asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or its answer not received (connection refused or reset,
    /// TLS failure, DNS), and retries ran out.
    #[non_exhaustive]
    Network {
        /// What failed, without URLs.
        message: String,
        /// The underlying error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// No answer arrived within the configured deadline.
    #[non_exhaustive]
    Timeout {
        /// The deadline that passed.
        after: Duration,
    },
    /// The server answered, but not with a usable token response.
    #[non_exhaustive]
    InvalidResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
        /// The start of the body with anything token-like removed.
        excerpt: String,
    },
    /// The provider is misconfigured; nothing was sent.
    #[non_exhaustive]
    Config {
        /// What to fix.
        message: String,
    },
    /// The provider was built with [`CellsAuth::no_auth`](crate::CellsAuth::no_auth): a
    /// self-hosted server without authentication. There is no token to give.
    NoAuth,
    /// The token fetch panicked: a bug in code it ran, such as a user-supplied HTTP client's
    /// connector or redirect policy. Not retried.
    #[non_exhaustive]
    Panicked {
        /// The panic's message, scrubbed of secrets.
        message: String,
    },
}

impl Error {
    /// `true` when trying again later may succeed: a network failure, a timeout, or a 429,
    /// 500, 502, 503 or 504 answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ServiceUnavailable { .. } | Self::Network { .. } | Self::Timeout { .. }
        )
    }

    /// `true` when the server rejected the client ID or secret.
    pub fn is_credentials(&self) -> bool {
        matches!(self, Self::CredentialsRejected { .. })
    }

    /// `true` for a configuration mistake found before anything was sent.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

    /// The HTTP status of the answer behind this error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::CredentialsRejected { status, .. }
            | Self::ServiceUnavailable { status, .. }
            | Self::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked callers to wait, when it said (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ServiceUnavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
        }
    }

    pub(crate) fn invalid_response(status: u16, reason: impl Into<String>) -> Self {
        Self::InvalidResponse {
            status,
            reason: reason.into(),
            excerpt: String::new(),
        }
    }

    /// The same error with the wait that is left: a remembered rate limit tells each caller
    /// how long it still lasts. Other kinds are returned as they are.
    pub(crate) fn with_retry_after(&self, left: Duration) -> Self {
        match self {
            Self::ServiceUnavailable { status, .. } => Self::ServiceUnavailable {
                status: *status,
                retry_after: Some(left),
            },
            other => other.clone(),
        }
    }

    /// A panic caught in a fetch, with its message (when it has one) scrubbed of `secrets`.
    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send), secrets: &[&str]) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .map(|text| crate::scrub::excerpt(text.as_bytes(), secrets))
            .unwrap_or_else(|| "(no message)".to_owned());
        Self::Panicked { message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CredentialsRejected {
                status,
                code,
                description,
            } => {
                write!(
                    f,
                    "Aspose Cloud rejected the client credentials (HTTP {status}"
                )?;
                if let Some(code) = code {
                    write!(f, ", {code}")?;
                }
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                f.write_str(
                    "); check the client ID and secret at the Aspose Cloud dashboard \
                     (https://dashboard.aspose.cloud/applications); a newly created client ID \
                     can take some time to activate",
                )
            }
            Self::ServiceUnavailable {
                status,
                retry_after,
            } => {
                write!(
                    f,
                    "the Aspose Cloud token service is unavailable (HTTP {status})"
                )?;
                match retry_after {
                    Some(wait) => write!(f, "; it asked to retry after {}s", wait.as_secs()),
                    None => f.write_str("; try again later"),
                }
            }
            Self::Network { message, .. } => write!(
                f,
                "could not reach the Aspose Cloud token service: {message}; check the network, \
                 proxy settings and base URL"
            ),
            Self::Timeout { after } => write!(
                f,
                "no token within {:.1}s; the Aspose Cloud token service or the network is slow",
                after.as_secs_f64()
            ),
            Self::InvalidResponse {
                status,
                reason,
                excerpt,
            } => {
                write!(
                    f,
                    "unusable answer from the token endpoint (HTTP {status}): {reason}"
                )?;
                if !excerpt.is_empty() {
                    write!(f, "; body starts: {excerpt:?}")?;
                }
                f.write_str("; check that the base URL points at Aspose.Cells Cloud")
            }
            Self::Config { message } => write!(f, "invalid cells-auth configuration: {message}"),
            Self::NoAuth => f.write_str(
                "this provider was built for a server without authentication (no_auth) and has \
                 no token; send requests without an Authorization header",
            ),
            Self::Panicked { message } => write!(
                f,
                "the token fetch panicked ({message}); this is a bug in the HTTP client or code \
                 it runs, not a network problem"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Network { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
