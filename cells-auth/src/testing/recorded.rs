//! What the fake server saw: one request, with its secrets kept out of `Debug`.

use std::fmt;

/// A request received by [`FakeTokenServer`](super::FakeTokenServer).
///
/// Its `Debug` output redacts the `client_secret` form field, the raw body and any
/// `Authorization` header, so a failing assertion that prints it leaks nothing.
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

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(key, value)| {
                if key.eq_ignore_ascii_case("authorization") {
                    (key.as_str(), "<redacted>")
                } else {
                    (key.as_str(), value.as_str())
                }
            })
            .collect();
        let form: Vec<(String, String)> = self
            .form()
            .into_iter()
            .map(|(key, value)| {
                if key == "client_secret" {
                    (key, "<redacted>".to_owned())
                } else {
                    (key, value)
                }
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &headers)
            .field("form", &form)
            .field(
                "body",
                &format_args!("<{} bytes, redacted>", self.body.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret_and_authorization() {
        let request = RecordedRequest {
            method: "POST".into(),
            target: "/v4.0/cells/connect/token".into(),
            headers: vec![("Authorization".into(), "Bearer tok-123".into())],
            body: b"client_id=id&client_secret=s3cr3t&grant_type=client_credentials".to_vec(),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(!debug.contains("tok-123"), "{debug}");
        assert!(debug.contains("client_id"), "{debug}");
        assert_eq!(
            request.form_field("client_secret").as_deref(),
            Some("s3cr3t")
        );
    }
}
