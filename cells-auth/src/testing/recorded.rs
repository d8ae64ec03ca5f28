//! What the fake server saw: one request, with its secrets kept out of `Debug`.

use std::fmt;

/// A request received by [`FakeTokenServer`](super::FakeTokenServer).
///
/// Its `Debug` output is safe to print in a failing assertion: it shows the method, the path
/// (a query string becomes `?<redacted>`), every header name with the values of all but a few
/// ordinary headers (`Host`, `Content-Type`, `User-Agent`, ...) redacted, the names of form
/// fields with every value redacted except `grant_type` and `client_id`, and the body's length,
/// never its bytes. The accessors ([`target`](Self::target), [`headers`](Self::headers),
/// [`body`](Self::body), ...) still return everything as received.
#[derive(Clone)]
pub struct RecordedRequest {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RecordedRequest {
    /// The request method, such as `POST`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: the path and any query string.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path, without any query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string, if the target had one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every header in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The raw body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body decoded as `application/x-www-form-urlencoded`, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The decoded value of one form field.
    pub fn form_field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

const REDACTED: &str = "<redacted>";

/// Headers whose values `Debug` shows; every other header's value is redacted. An allowlist,
/// because a name alone cannot tell a credential (`Authorization`, `Cookie`, `X-Api-Key`, a
/// vendor's own) from an ordinary header.
const PLAIN_HEADERS: [&str; 9] = [
    "accept",
    "accept-encoding",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "host",
    "transfer-encoding",
    "user-agent",
];

/// Form fields whose values `Debug` shows: neither is a secret, and a failing test about the
/// protocol usually needs to see them.
const PLAIN_FORM_FIELDS: [&str; 2] = ["grant_type", "client_id"];

/// The longest form field name `Debug` shows.
const MAX_SHOWN_NAME: usize = 64;

impl RecordedRequest {
    fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    }

    /// The form fields for `Debug`: names, and only the values of [`PLAIN_FORM_FIELDS`].
    ///
    /// A "name" is shown only if it came before an `=` and looks like a field name: a body that
    /// is not really a form (a bare secret, JSON sent with a form `Content-Type`) would
    /// otherwise parse into one long name that is the secret itself.
    fn redacted_form(&self) -> Vec<(String, String)> {
        self.body
            .split(|byte| *byte == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = form_urlencoded::parse(pair).next().unwrap_or_default();
                let name_shown = pair.contains(&b'=')
                    && name.len() <= MAX_SHOWN_NAME
                    && name
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"_-.[]".contains(&byte));
                if !name_shown {
                    (REDACTED.to_owned(), REDACTED.to_owned())
                } else if PLAIN_FORM_FIELDS.contains(&name.as_ref()) {
                    (name.into_owned(), value.into_owned())
                } else {
                    (name.into_owned(), REDACTED.to_owned())
                }
            })
            .collect()
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.query() {
            Some(_) => format!("{}?{REDACTED}", self.path()),
            None => self.path().to_owned(),
        };
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let plain = PLAIN_HEADERS
                    .iter()
                    .any(|plain| name.eq_ignore_ascii_case(plain));
                (name.as_str(), if plain { value.as_str() } else { REDACTED })
            })
            .collect();
        let mut debug = f.debug_struct("RecordedRequest");
        debug
            .field("method", &self.method)
            .field("target", &target)
            .field("headers", &headers);
        if self.is_form() {
            debug.field("form", &self.redacted_form());
        }
        debug
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, headers: &[(&str, &str)], body: &str) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Both `{:?}` and `{:#?}`, so a test checks every way a failing assertion prints.
    fn debug_both(request: &RecordedRequest) -> [String; 2] {
        [format!("{request:?}"), format!("{request:#?}")]
    }

    #[test]
    fn debug_shows_form_names_and_only_harmless_values() {
        let request = request(
            "/v4.0/cells/connect/token",
            &[
                ("Host", "127.0.0.1:8080"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "grant_type=client_credentials&client_id=my-id&client_secret=s3cr3t&extra=hidden-too",
        );
        for debug in debug_both(&request) {
            for shown in [
                "POST",
                "/v4.0/cells/connect/token",
                "127.0.0.1:8080",
                "application/x-www-form-urlencoded",
                "client_credentials",
                "my-id",
                "client_secret",
                "extra",
                "<83 bytes>",
            ] {
                assert!(debug.contains(shown), "{shown} missing from {debug}");
            }
            assert!(!debug.contains("s3cr3t"), "{debug}");
            assert!(!debug.contains("hidden-too"), "{debug}");
        }
        // Only `Debug` redacts; the accessors give what was received.
        assert_eq!(
            request.form_field("client_secret").as_deref(),
            Some("s3cr3t")
        );
    }

    #[test]
    fn debug_redacts_secrets_wherever_they_travel() {
        let requests = [
            // A JSON body, with and without a form `Content-Type`.
            request(
                "/token",
                &[("Content-Type", "application/json")],
                r#"{"client_secret":"s3cr3t"}"#,
            ),
            request(
                "/token",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                r#"{"client_secret":"s3cr3t","a":"b=c"}"#,
            ),
            // A bare secret as a form body: it would parse as a field name.
            request(
                "/token",
                &[("Content-Type", "Application/X-WWW-Form-Urlencoded")],
                "s3cr3t",
            ),
            // The query string.
            request("/token?client_id=id&client_secret=s3cr3t", &[], ""),
            // Credential headers, known and not.
            request(
                "/token",
                &[
                    ("Authorization", "Bearer s3cr3t"),
                    ("proxy-authorization", "Basic s3cr3t"),
                    ("Cookie", "session=s3cr3t"),
                    ("X-Api-Key", "s3cr3t"),
                ],
                "",
            ),
        ];
        for request in &requests {
            for debug in debug_both(request) {
                assert!(!debug.contains("s3cr3t"), "{debug}");
                assert!(debug.contains("/token"), "{debug}");
            }
        }
        let [with_query, _] = debug_both(&requests[3]);
        assert!(with_query.contains("/token?<redacted>"), "{with_query}");
        let [headers, _] = debug_both(&requests[4]);
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "X-Api-Key",
        ] {
            assert!(headers.contains(name), "{name} missing from {headers}");
        }
        let [json, _] = debug_both(&requests[0]);
        assert!(
            json.contains("<26 bytes>") && !json.contains("form"),
            "{json}"
        );
    }
}
