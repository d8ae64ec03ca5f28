//! The access token handed to callers.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Moment;

/// A bearer token for Aspose.Cells Cloud, from [`CellsAuth::token`](crate::CellsAuth::token).
///
/// Cheap to clone. Its `Debug` output shows when it expires, never the token. The token string
/// is zeroized when the last clone is dropped; the copy inside the prebuilt header value is
/// not (`http::HeaderValue` offers no way to), but it is marked sensitive.
#[derive(Clone)]
pub struct AccessToken(Arc<TokenData>);

pub(crate) struct TokenData {
    pub(crate) secret: SecretString,
    /// `Bearer <token>`, built once per token and marked sensitive so that HTTP libraries
    /// redact it in their own logs.
    pub(crate) header: HeaderValue,
    pub(crate) expires_at: SystemTime,
    pub(crate) timing: Timing,
    /// Which fetch produced this token; it identifies the token for
    /// [`CellsAuth::invalidate`](crate::CellsAuth::invalidate).
    pub(crate) generation: u64,
}

/// When the cache acts on a token, on the provider's expiry clock (which counts suspended
/// time: see `clock.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Start refreshing in the background from here on.
    pub(crate) refresh_at: Moment,
    /// Serve it until here; after this callers wait for a new one.
    pub(crate) usable_until: Moment,
}

impl AccessToken {
    pub(crate) fn new(data: TokenData) -> Self {
        Self(Arc::new(data))
    }

    /// The bearer token itself, for an `Authorization: Bearer ...` header.
    pub fn secret(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// The `Authorization` header value, `Bearer <token>`, marked sensitive. It was built once
    /// when the token arrived, so using it costs no formatting or allocation.
    pub fn authorization_header(&self) -> &HeaderValue {
        &self.0.header
    }

    /// When the token stops being valid, by the server's `expires_in` (or the JWT `exp` claim),
    /// counted from just before the request was sent.
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at
    }

    pub(crate) fn data(&self) -> &TokenData {
        &self.0
    }

    pub(crate) fn generation(&self) -> u64 {
        self.0.generation
    }

    /// A copy that shares no reference count with `self`, not even the header's buffer: each
    /// thread keeps its own copy so that cached reads, and clones of the header, on different
    /// cores never write to the same cache line.
    pub(crate) fn detached_copy(&self) -> Self {
        let data = &self.0;
        // `from_bytes` copies into a buffer of its own; it cannot fail on a valid header's
        // bytes, and sharing the buffer would only cost the isolation, not correctness.
        let mut header =
            HeaderValue::from_bytes(data.header.as_bytes()).unwrap_or_else(|_| data.header.clone());
        header.set_sensitive(true);
        Self::new(TokenData {
            secret: data.secret.clone(),
            header,
            expires_at: data.expires_at,
            timing: data.timing,
            generation: data.generation,
        })
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &httpdate::fmt_http_date(self.0.expires_at))
            .finish()
    }
}

/// `Bearer <token>` as a sensitive header value; `None` when the token holds characters that
/// cannot appear in a header.
pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}
