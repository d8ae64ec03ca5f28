//! `Debug` of the generated models never shows a credential: the request's client secret and
//! the response's tokens are redacting types (`secret.rs`, wired in by `cargo xtask codegen`).

use cells_auth_gen::types::{AccessTokenRequest, AccessTokenResponse, GrantType};

const CLIENT_SECRET: &str = "Ab3dEf+Gh1jK/LmN0pQ=";
const ACCESS_TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2lnbmF0dXJl";
const REFRESH_TOKEN: &str = "refresh-9f8e7d6c5b4a";

fn request() -> AccessTokenRequest {
    AccessTokenRequest {
        grant_type: GrantType::ClientCredentials,
        client_id: "my-client-id".try_into().unwrap(),
        client_secret: CLIENT_SECRET.try_into().unwrap(),
    }
}

fn response() -> AccessTokenResponse {
    serde_json::from_value(serde_json::json!({
        "access_token": ACCESS_TOKEN,
        "token_type": "bearer",
        "expires_in": 86399,
        "refresh_token": REFRESH_TOKEN,
    }))
    .unwrap()
}

/// Both the compact and the pretty form, which derived `Debug` writes differently.
fn shown(value: &impl std::fmt::Debug) -> [String; 2] {
    [format!("{value:?}"), format!("{value:#?}")]
}

#[test]
fn debug_of_the_client_secret_is_redacted() {
    let request = request();
    for text in shown(&request.client_secret) {
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
    assert_eq!(request.client_secret.expose_secret(), CLIENT_SECRET);
}

#[test]
fn debug_of_the_request_shows_everything_but_the_secret() {
    for text in shown(&request()) {
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        assert!(
            text.contains("my-client-id"),
            "the rest still shows: {text}"
        );
        assert!(text.contains("ClientCredentials"), "{text}");
    }
}

#[test]
fn debug_of_the_response_shows_neither_token() {
    let response = response();
    for text in shown(&response) {
        assert!(!text.contains(ACCESS_TOKEN), "{text}");
        assert!(!text.contains(REFRESH_TOKEN), "{text}");
        assert!(text.contains("bearer") && text.contains("86399"), "{text}");
    }
    assert_eq!(response.access_token.expose_secret(), ACCESS_TOKEN);
}

/// Redaction is for people: the wire still carries the values themselves.
#[test]
fn serialization_still_carries_the_values() {
    let json = serde_json::to_value(response()).unwrap();
    assert_eq!(json["access_token"], ACCESS_TOKEN);
    assert_eq!(json["refresh_token"], REFRESH_TOKEN);
    let json = serde_json::to_value(request()).unwrap();
    assert_eq!(json["client_secret"], CLIENT_SECRET);
}
