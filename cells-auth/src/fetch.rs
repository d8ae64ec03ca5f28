//! One token request through the generated client, and what its answer means.
//!
//! This is the only place that talks HTTP: it sends `PostAccessToken` with `cells-auth-gen`
//! and maps every possible outcome to a lifetime or a typed [`Error`].

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cells_auth_gen::types::{AccessTokenRequest, AccessTokenResponse, ExpiresIn, GrantType};
use cells_auth_gen::{ByteStream, ResponseValue};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::{Clock, Moment};
use crate::error::Error;
use crate::scrub::{excerpt, scrub};

/// The longest lifetime believed. A larger `expires_in` (or a far-future JWT `exp`) is capped,
/// so that a misbehaving server cannot make a token live forever or overflow time arithmetic.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Sends token requests for one set of credentials.
pub(crate) struct Fetcher {
    client: cells_auth_gen::Client,
    client_id: String,
    client_secret: SecretString,
    clock: Clock,
}

/// A token as it arrived, before the cache decides when to refresh it.
pub(crate) struct Fetched {
    pub(crate) secret: SecretString,
    /// `Bearer <token>`, built once here and reused for every request with this token.
    pub(crate) header: http::HeaderValue,
    pub(crate) lifetime: Duration,
    /// Taken just before the request was sent: the lifetime counts from here, so network
    /// latency shortens the token's life in our books rather than lengthening it.
    pub(crate) started: Moment,
    pub(crate) started_system: SystemTime,
}

impl Fetcher {
    pub(crate) fn new(
        client: cells_auth_gen::Client,
        client_id: String,
        client_secret: SecretString,
        clock: Clock,
    ) -> Self {
        Self {
            client,
            client_id,
            client_secret,
            clock,
        }
    }

    /// Sends one request. Retries are the caller's business (see `retry.rs`).
    pub(crate) async fn fetch_once(&self) -> Result<Fetched, Error> {
        let request = AccessTokenRequest {
            grant_type: GrantType::ClientCredentials,
            client_id: self
                .client_id
                .as_str()
                .try_into()
                .map_err(|_| Error::config("the client ID is empty"))?,
            // A copy that `cells-auth-gen` zeroizes when the request is dropped below.
            client_secret: self
                .client_secret
                .expose_secret()
                .try_into()
                .map_err(|_| Error::config("the client secret is empty"))?,
        };
        let started = self.clock.now();
        let started_system = self.clock.system_now();
        let outcome = self.client.post_access_token(&request).await;
        drop(request);
        match outcome {
            Ok(response) => {
                let body = response.into_inner();
                let (secret, header, lifetime) =
                    validate(body, started_system, self.client_secret.expose_secret())?;
                Ok(Fetched {
                    secret,
                    header,
                    lifetime,
                    started,
                    started_system,
                })
            }
            Err(error) => Err(self.map_error(error).await),
        }
    }

    /// The error for a panic caught in a fetch, its message scrubbed of the secret.
    pub(crate) fn panicked(&self, payload: &(dyn std::any::Any + Send)) -> Error {
        Error::panicked(payload, &[self.client_secret.expose_secret()])
    }

    async fn map_error(&self, error: cells_auth_gen::Error<ByteStream>) -> Error {
        use cells_auth_gen::Error as GenError;
        let secrets = [self.client_secret.expose_secret()];
        match error {
            // Every status the spec declares (400, 401, 429, 500, 502, 503 and 504) arrives
            // here with its `ErrorBody`.
            GenError::ErrorResponse(response) => self.error_status(response, &secrets).await,
            // Any other status (a redirect, a 404, ...) arrives as the whole response. Its body
            // is read as a stream too, so that both paths share one reader and its cap.
            GenError::UnexpectedResponse(response) => {
                self.error_status(ResponseValue::stream(response), &secrets)
                    .await
            }
            GenError::InvalidResponsePayload(body, parse_error) => {
                payload_error(&body, &parse_error, &secrets)
            }
            GenError::CommunicationError(error) | GenError::ResponseBodyError(error) => {
                network_error(error)
            }
            GenError::InvalidRequest(message) | GenError::Custom(message) => {
                Error::config(scrub(&message, &secrets))
            }
            GenError::InvalidUpgrade(error) => network_error(error),
        }
    }

    /// Maps an answer with an error status, reading its body with the one capped reader.
    async fn error_status(&self, response: ResponseValue<ByteStream>, secrets: &[&str]) -> Error {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), self.clock.system_now());
        let body = read_capped(response.into_inner()).await;
        classify(status, retry_after, body.as_deref(), secrets)
    }
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field(
                "base_url",
                &cells_auth_gen::ClientInfo::baseurl(&self.client),
            )
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Checks a 200 answer: a non-empty bearer token with a positive lifetime.
pub(crate) fn validate(
    body: AccessTokenResponse,
    now: SystemTime,
    client_secret: &str,
) -> Result<(SecretString, http::HeaderValue, Duration), Error> {
    let invalid = |reason: &str| Error::InvalidResponse {
        status: 200,
        reason: reason.to_owned(),
        excerpt: String::new(),
    };
    let AccessTokenResponse {
        access_token,
        token_type,
        expires_in,
        ..
    } = body;
    // Moved, not copied: the only copy of the token stays one that is zeroized on drop.
    let secret = SecretString::from(access_token);
    let token = secret.expose_secret();
    if token.trim().is_empty() {
        return Err(invalid("the access_token is empty"));
    }
    // A bearer token is one run of visible characters (RFC 6750 section 2.1); a space or
    // control character would split or break the `Authorization` header.
    let header = token
        .bytes()
        .all(|byte| byte.is_ascii_graphic())
        .then(|| crate::token::bearer_header(token))
        .flatten()
        .ok_or_else(|| {
            invalid("the access_token holds spaces or characters that cannot be sent in a header")
        })?;
    if let Some(kind) = token_type.as_deref()
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(invalid(&format!(
            "token_type is {:?}, not \"bearer\"",
            excerpt(kind.as_bytes(), &[client_secret])
        )));
    }
    let lifetime = match expires_in {
        Some(ExpiresIn::Int64(seconds)) => lifetime_from_seconds(seconds)
            .ok_or_else(|| invalid(&format!("expires_in is {seconds}, not positive")))?,
        Some(ExpiresIn::String(text)) => {
            text.parse::<i64>()
                .ok()
                .and_then(lifetime_from_seconds)
                .ok_or_else(|| invalid("expires_in is not a positive number of seconds"))?
        }
        None => jwt_lifetime(token, now).ok_or_else(|| {
            invalid("the response has no expires_in and the token carries no future exp claim")
        })?,
    };
    Ok((secret, header, lifetime.min(MAX_TOKEN_LIFETIME)))
}

/// A 200 whose body is not a token response. The excerpt never quotes a token field, however
/// short or oddly shaped the token: the scrubber alone only catches long token-like runs.
pub(crate) fn payload_error(
    body: &[u8],
    parse_error: &serde_json::Error,
    secrets: &[&str],
) -> Error {
    Error::InvalidResponse {
        status: 200,
        reason: format!(
            "the body is not a token response ({})",
            describe_json_error(parse_error)
        ),
        excerpt: excerpt(&redact_token_fields(body), secrets),
    }
}

/// The body with the values of `access_token` and `refresh_token` replaced, whether or not the
/// JSON is complete.
fn redact_token_fields(body: &[u8]) -> Vec<u8> {
    const FIELDS: [&str; 2] = ["access_token", "refresh_token"];
    if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) {
        for field in FIELDS {
            if let Some(value) = object.get_mut(field) {
                *value = serde_json::Value::from("<redacted>");
            }
        }
        return serde_json::Value::Object(object).to_string().into_bytes();
    }
    // Truncated or broken JSON: cut everything after the first token field's name.
    let text = String::from_utf8_lossy(body);
    let cut = FIELDS
        .iter()
        .filter_map(|field| text.find(field).map(|at| at + field.len()))
        .min();
    match cut {
        Some(at) => format!("{}\": <redacted>", &text[..at]).into_bytes(),
        None => body.to_vec(),
    }
}

fn lifetime_from_seconds(seconds: i64) -> Option<Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|seconds| *seconds > 0)
        .map(Duration::from_secs)
}

/// The lifetime left by the JWT's `exp` claim (decoded, not verified: the server that issued
/// it is the only party that verifies it).
fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp <= 0.0 {
        return None;
    }
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(exp.min(1e12));
    exp.duration_since(now).ok().filter(|left| !left.is_zero())
}

/// The longest `Retry-After` believed. Any wait this long is past every sensible deadline, and
/// the cap keeps time arithmetic far from overflow whatever a server sends.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The `Retry-After` header as a wait: seconds, or an HTTP date (RFC 9110 section 10.2.3),
/// capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds.min(MAX_RETRY_AFTER.as_secs())),
        Err(_) => {
            let date = httpdate::parse_http_date(value).ok()?;
            date.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Maps a non-200 answer to an error: the statuses the spec declares as errors (400 and 401 for
/// credentials; 429, 500, 502, 503 and 504 as transient) and any other, undeclared, status.
pub(crate) fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: Option<&[u8]>,
    secrets: &[&str],
) -> Error {
    match status {
        400 | 401 => {
            let oauth = body.and_then(|body| {
                serde_json::from_slice::<cells_auth_gen::types::OAuthError>(body).ok()
            });
            Error::CredentialsRejected {
                status,
                code: oauth
                    .as_ref()
                    .map(|oauth| excerpt(oauth.error.as_bytes(), secrets)),
                description: oauth
                    .and_then(|oauth| oauth.error_description)
                    .map(|text| excerpt(text.as_bytes(), secrets)),
            }
        }
        429 | 500 | 502 | 503 | 504 => Error::ServiceUnavailable {
            status,
            retry_after,
        },
        300..=399 => Error::InvalidResponse {
            status,
            reason: "the token endpoint redirected; token requests never follow redirects, \
                     so configure the final URL"
                .to_owned(),
            excerpt: String::new(),
        },
        _ => Error::InvalidResponse {
            status,
            reason: "unexpected status".to_owned(),
            excerpt: body.map(|body| excerpt(body, secrets)).unwrap_or_default(),
        },
    }
}

/// Reads an error body (already capped by `cells-auth-gen`'s hooks); `None` when it could not
/// be read, which only loses the excerpt.
async fn read_capped(mut stream: ByteStream) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        body.extend_from_slice(&chunk.ok()?);
    }
    Some(body)
}

fn network_error(error: reqwest::Error) -> Error {
    let error = error.without_url();
    if error.is_builder() {
        // The request could not even be built (for example a user-supplied client with
        // `https_only` and a loopback `http://` base URL): asking again cannot help.
        return Error::config(format!(
            "the HTTP client refused to build the token request ({})",
            root_cause(&error)
        ));
    }
    if body_over_cap(&error) {
        return Error::InvalidResponse {
            status: error.status().map_or(200, |status| status.as_u16()),
            reason: format!(
                "the body is larger than {} bytes",
                cells_auth_gen::MAX_RESPONSE_BYTES
            ),
            excerpt: String::new(),
        };
    }
    if error.is_timeout() {
        return Error::Network {
            message: "the request timed out".to_owned(),
            source: std::sync::Arc::new(error),
        };
    }
    let message = if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the connection failed while reading the answer".to_owned()
    } else {
        "the request failed".to_owned()
    };
    Error::Network {
        message: format!("{message} ({})", root_cause(&error)),
        source: std::sync::Arc::new(error),
    }
}

fn body_over_cap(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => "truncated JSON".to_owned(),
        Category::Syntax => "not JSON".to_owned(),
        // A data error names the offending field but never echoes its value.
        Category::Data => "JSON without the expected fields".to_owned(),
        Category::Io => "unreadable".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        // HTTP dates have whole seconds.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));

        let later = now + Duration::from_secs(120);
        headers.insert(
            http::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));

        headers.insert(
            http::header::RETRY_AFTER,
            u64::MAX.to_string().parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(MAX_RETRY_AFTER));

        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn jwt_exp_gives_the_remaining_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"exp":1000600}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(jwt_lifetime(&token, now), Some(Duration::from_secs(600)));

        let expired = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(r#"{"exp":999}"#));
        assert_eq!(jwt_lifetime(&expired, now), None);
        assert_eq!(jwt_lifetime("not-a-jwt", now), None);
    }

    #[test]
    fn classify_separates_credentials_from_outages() {
        let rejected = classify(400, None, Some(br#"{"error":"invalid_client"}"#), &[]);
        assert!(rejected.is_credentials());
        assert!(!rejected.is_transient());

        let busy = classify(429, Some(Duration::from_secs(3)), None, &[]);
        assert!(busy.is_transient());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(3)));

        let redirect = classify(302, None, None, &[]);
        assert!(matches!(
            redirect,
            Error::InvalidResponse { status: 302, .. }
        ));
    }

    #[test]
    fn negative_zero_and_huge_lifetimes() {
        assert_eq!(lifetime_from_seconds(-5), None);
        assert_eq!(lifetime_from_seconds(0), None);
        assert_eq!(lifetime_from_seconds(60), Some(Duration::from_secs(60)));
        assert!(lifetime_from_seconds(i64::MAX).unwrap() > MAX_TOKEN_LIFETIME);
    }
}

/// Property tests of everything that reads server input. CI runs proptest's default 256 cases
/// per property; `PROPTEST_CASES=1000000 cargo test --release -p cells-auth --all-features
/// --lib fuzz_` runs a million.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// With the characters that JSON, HTML and URLs escape, so that echoes come in every form.
    const SECRET: &str = "Ab3dEf+Gh1jK/LmN0pQ=";
    /// How much of the secret may show: any run this long counts as a leak.
    const LEAK_RUN: usize = 6;
    /// Long enough that the scrubber must catch it as token-like, as real JWTs are.
    const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.c2lnbmF0dXJlLXZhbHVl";

    /// Every way a server may write one character of an echoed secret: literally, as JSON
    /// (`\u002B` in either case, `\/`), as an HTML reference (named, decimal, hex) or
    /// percent-encoded (either case). Forms that do not apply to `ch` give it literally.
    const ENCODINGS: usize = 9;

    fn encode(ch: char, how: usize) -> String {
        let code = u32::from(ch);
        let named = match ch {
            '+' => Some("&plus;"),
            '/' => Some("&sol;"),
            '=' => Some("&equals;"),
            _ => None,
        };
        match how {
            1 => format!("\\u{code:04X}"),
            2 => format!("\\u{code:04x}"),
            3 if ch == '/' => "\\/".to_owned(),
            4 => format!("&#{code};"),
            5 => format!("&#x{code:X};"),
            6 => named.map_or_else(|| ch.to_string(), str::to_owned),
            7 => format!("%{code:02X}"),
            8 => format!("%{code:02x}"),
            _ => ch.to_string(),
        }
    }

    /// The secret as a server may echo it, each character encoded its own way.
    fn echo() -> impl Strategy<Value = String> {
        prop::collection::vec(0..ENCODINGS, SECRET.chars().count()).prop_map(|hows| {
            SECRET
                .chars()
                .zip(hows)
                .map(|(ch, how)| encode(ch, how))
                .collect()
        })
    }

    /// Text that sometimes carries the secret (verbatim or escaped) or a token, to prove they
    /// never come back out. Boxed, like [`json_value`]: the bodies nest these strategies, and
    /// unboxed their value trees grow large enough to overflow a test thread's stack.
    fn text() -> BoxedStrategy<String> {
        prop_oneof![
            any::<String>(),
            Just(SECRET.to_owned()),
            Just(TOKEN.to_owned()),
            Just(r"Ab3dEf\u002BGh1jK/LmN0pQ=".to_owned()),
            any::<String>().prop_map(|text| format!("{text}{SECRET}{text}")),
            any::<String>().prop_map(|text| format!("{TOKEN} {text}")),
            echo(),
            (any::<String>(), echo(), any::<String>())
                .prop_map(|(before, echo, after)| format!("{before} {echo} {after}")),
        ]
        .boxed()
    }

    fn json_value() -> BoxedStrategy<serde_json::Value> {
        use serde_json::Value;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ]
        .boxed()
    }

    /// Bodies shaped like token responses, with every field's type and value varied.
    fn token_like_body() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::option::of(json_value()),
            prop::option::of(json_value()),
            prop::option::of(json_value()),
            prop::option::of(json_value()),
        )
            .prop_map(|(access_token, token_type, expires_in, extra)| {
                let mut object = serde_json::Map::new();
                for (key, value) in [
                    ("access_token", access_token),
                    ("token_type", token_type),
                    ("expires_in", expires_in),
                    ("extra", extra),
                ] {
                    if let Some(value) = value {
                        object.insert(key.to_owned(), value);
                    }
                }
                serde_json::Value::Object(object).to_string().into_bytes()
            })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<Vec<u8>>(),
            text().prop_map(String::into_bytes),
            token_like_body(),
            // Truncated token-like bodies.
            (token_like_body(), any::<prop::sample::Index>()).prop_map(|(body, cut)| {
                let cut = cut.index(body.len().max(1));
                body[..cut.min(body.len())].to_vec()
            }),
        ]
    }

    /// `text` with every encoded form that [`encode`] writes for a character of the secret
    /// decoded again: independent of the scrubber, so that an escaped leak shows as a plain one.
    fn decode_echoes(text: &str) -> String {
        let mut pieces: Vec<(String, char)> = SECRET
            .chars()
            .flat_map(|ch| (1..ENCODINGS).map(move |how| (encode(ch, how), ch)))
            .filter(|(piece, ch)| *piece != ch.to_string())
            .collect();
        // Longest first, so that no form is cut short by a shorter one inside it.
        pieces.sort_by_key(|(piece, _)| std::cmp::Reverse(piece.len()));
        let mut text = text.to_owned();
        for (piece, ch) in pieces {
            text = text.replace(&piece, &ch.to_string());
        }
        text
    }

    fn assert_clean(error: &Error) {
        let secret: Vec<char> = SECRET.chars().collect();
        for shown in [error.to_string(), format!("{error:?}")] {
            // `Debug` writes a backslash as two.
            let decoded = decode_echoes(&shown.replace("\\\\", "\\"));
            for window in secret.windows(LEAK_RUN) {
                let piece: String = window.iter().collect();
                assert!(
                    !shown.contains(&piece) && !decoded.contains(&piece),
                    "{piece:?} of the secret leaked: {shown}"
                );
            }
            assert!(!shown.contains(TOKEN), "token leaked: {shown}");
        }
    }

    proptest! {
        /// The 200 path: progenitor's JSON decoding, then our checks.
        #[test]
        fn fuzz_success_bodies_never_panic_or_leak(body in body()) {
            match serde_json::from_slice::<AccessTokenResponse>(&body) {
                Ok(response) => match validate(response, SystemTime::now(), SECRET) {
                    Ok((_, _, lifetime)) => {
                        prop_assert!(!lifetime.is_zero() && lifetime <= MAX_TOKEN_LIFETIME);
                    }
                    Err(error) => {
                        let invalid = matches!(error, Error::InvalidResponse { .. });
                        prop_assert!(invalid, "{:?}", error);
                        assert_clean(&error);
                    }
                },
                Err(parse_error) => assert_clean(&payload_error(&body, &parse_error, &[SECRET])),
            }
        }

        /// The error path: any status, any Retry-After, any body.
        #[test]
        fn fuzz_error_mapping_never_panics_or_leaks(
            status in 0u16..1000,
            retry_after_value in text(),
            body in prop::option::of(body()),
        ) {
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&retry_after_value) {
                headers.insert(http::header::RETRY_AFTER, value);
            }
            let error = classify(
                status,
                retry_after(&headers, SystemTime::now()),
                body.as_deref(),
                &[SECRET],
            );
            prop_assert_eq!(error.status(), Some(status));
            prop_assert_eq!(
                error.is_transient(),
                matches!(status, 429 | 500 | 502 | 503 | 504)
            );
            prop_assert_eq!(error.is_credentials(), matches!(status, 400 | 401));
            assert_clean(&error);
        }

        #[test]
        fn fuzz_jwt_claims_never_panic(token in text(), payload in any::<Vec<u8>>()) {
            let _ = jwt_lifetime(&token, SystemTime::now());
            let crafted = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(&payload));
            if let Some(left) = jwt_lifetime(&crafted, SystemTime::now()) {
                prop_assert!(!left.is_zero());
            }
        }
    }
}
