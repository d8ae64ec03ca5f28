//! Hand-written: what the generator cannot express.
//!
//! progenitor calls `ClientHooks` around every request. The implementation must live in this
//! crate (orphan rule) and the generator is told to expect it (`HooksMode::Expected`), so
//! removing this file is a compile error rather than a silently different request.

use http_body_util::Limited;
use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::header::{HeaderName, HeaderValue, USER_AGENT as USER_AGENT_HEADER};

use crate::Client;

/// The `User-Agent` of every token request: the `cells-auth` product and its version. This crate
/// is `cells-auth`'s transport and is released with it, so it names that product.
pub const USER_AGENT: &str = concat!("cells-auth/", env!("CARGO_PKG_VERSION"));

/// The largest response body read, in bytes. A token response is about 1 KiB and an error page
/// a few KiB; anything far larger is not a token response, and reading it unbounded would let a
/// misbehaving endpoint or proxy exhaust memory. A longer body fails to read, which surfaces as
/// an error from `post_access_token` (or from reading an error body).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// progenitor adds `api-version: <info.version>` to every request. Aspose's servers neither
/// document nor need it: the API version is part of the base URL.
const PROGENITOR_API_VERSION: HeaderName = HeaderName::from_static("api-version");

impl ClientHooks for Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        let headers = request.headers_mut();
        headers.remove(PROGENITOR_API_VERSION);
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        Ok(())
    }

    async fn exec(
        &self,
        request: reqwest::Request,
        _info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let response = self.client.execute(request).await?;
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let body = reqwest::Body::wrap(Limited::new(body, MAX_RESPONSE_BYTES));
        Ok(reqwest::Response::from(http::Response::from_parts(
            parts, body,
        )))
    }
}
