//! Hand-written: the types that hold credentials in the generated models.
//!
//! progenitor derives `Debug` on every model, which would print the client secret of an
//! `AccessTokenRequest` and the tokens of an `AccessTokenResponse` into any log line that
//! formats one. `cargo xtask codegen` therefore replaces the spec's `ClientSecret` and `Token`
//! schemas with [`ClientSecret`] and [`Secret`]: on the wire they are plain JSON or form
//! strings, exactly as before, but their `Debug` shows `<redacted>`, they have no `Display`,
//! the value is only reachable through an explicitly named accessor, and it is wiped from
//! memory when dropped.

use std::borrow::Cow;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::types::error::ConversionError;

/// What `Debug` prints instead of a credential.
const REDACTED: &str = "<redacted>";

/// A credential string (an access or refresh token) that never shows itself.
///
/// It serializes and deserializes as a plain string; `Debug` prints `<redacted>`; the value is
/// reachable only through [`Secret::expose_secret`], and it is zeroized when dropped.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The credential itself. Named so that every use stands out in review.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// Equality is what the models' derived `PartialEq` needs; comparing tokens in constant time is
// not: this crate is the client, and whoever compares holds both values already.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// Hands the credential over without copying it, for callers that keep secrets as `secrecy`
/// types.
impl From<Secret> for SecretString {
    fn from(value: Secret) -> Self {
        value.0
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose_secret())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Moved into the secret, not copied: no unwiped duplicate stays behind.
        String::deserialize(deserializer).map(Self::new)
    }
}

impl schemars::JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// The client secret of a token request: a non-empty [`Secret`].
///
/// The spec gives the secret `minLength: 1`, so building one from an empty string fails, before
/// any request is sent, just as for the generated string types with a `minLength`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Secret);

impl ClientSecret {
    /// The secret itself. Named so that every use stands out in review.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::str::FromStr for ClientSecret {
    type Err = ConversionError;

    fn from_str(value: &str) -> Result<Self, ConversionError> {
        Self::try_from(value.to_owned())
    }
}

impl TryFrom<&str> for ClientSecret {
    type Error = ConversionError;

    fn try_from(value: &str) -> Result<Self, ConversionError> {
        value.parse()
    }
}

impl TryFrom<String> for ClientSecret {
    type Error = ConversionError;

    fn try_from(value: String) -> Result<Self, ConversionError> {
        // Wrapped before the check, so that a rejected value is wiped too. The message names
        // the rule, never the value.
        let secret = Secret::new(value);
        if secret.expose_secret().is_empty() {
            return Err("the client secret is empty".into());
        }
        Ok(Self(secret))
    }
}

impl serde::Serialize for ClientSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for ClientSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::try_from(value).map_err(|error| serde::de::Error::custom(error.to_string()))
    }
}

impl schemars::JsonSchema for ClientSecret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ClientSecret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "minLength": 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "Ab3dEf+Gh1jK/LmN0pQ=";

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from(VALUE);
        let client_secret = ClientSecret::try_from(VALUE).unwrap();
        for shown in [
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{client_secret:?}"),
            format!("{client_secret:#?}"),
        ] {
            assert_eq!(shown, REDACTED);
        }
        assert_eq!(secret.expose_secret(), VALUE);
        assert_eq!(client_secret.expose_secret(), VALUE);
    }

    #[test]
    fn the_wire_form_is_a_plain_string() {
        let json = serde_json::to_string(&Secret::from(VALUE)).unwrap();
        assert_eq!(json, serde_json::to_string(VALUE).unwrap());
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose_secret(), VALUE);

        let client_secret: ClientSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&client_secret).unwrap(), json);
    }

    #[test]
    fn an_empty_client_secret_is_refused_without_echoing_anything() {
        assert!(ClientSecret::try_from("").is_err());
        let error = serde_json::from_str::<ClientSecret>(r#""""#).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        // An empty access token is the caller's to judge (cells-auth reports it as such).
        assert_eq!(serde_json::from_str::<Secret>(r#""""#).unwrap(), "".into());
    }

    #[test]
    fn secret_string_takes_the_value_over() {
        let moved = SecretString::from(Secret::from(VALUE));
        assert_eq!(moved.expose_secret(), VALUE);
    }
}
