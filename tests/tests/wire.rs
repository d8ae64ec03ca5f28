//! The generated client on the wire, against a real HTTP server on 127.0.0.1: the exact request
//! it sends and how it parses each kind of answer.

use cells_auth::testing::{FakeTokenServer, Reply};
use cells_auth_gen::types::{AccessTokenRequest, ExpiresIn, GrantType};
use cells_auth_gen::{Client, Error};

const SECRET_WITH_RESERVED_CHARACTERS: &str = "a+b&c=d?e";

fn client(server: &FakeTokenServer) -> Client {
    Client::new_with_client(&server.base_url(), reqwest::Client::new())
}

fn request(client_id: &str, client_secret: &str) -> AccessTokenRequest {
    AccessTokenRequest {
        grant_type: GrantType::ClientCredentials,
        client_id: client_id.try_into().unwrap(),
        client_secret: client_secret.try_into().unwrap(),
    }
}

fn default_request() -> AccessTokenRequest {
    request(FakeTokenServer::CLIENT_ID, FakeTokenServer::CLIENT_SECRET)
}

#[tokio::test]
async fn sends_a_form_post_to_the_token_path() {
    let server = FakeTokenServer::builder()
        .credentials("my id", SECRET_WITH_RESERVED_CHARACTERS)
        .start()
        .await
        .unwrap();
    client(&server)
        .post_access_token(&request("my id", SECRET_WITH_RESERVED_CHARACTERS))
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method(), "POST");
    assert_eq!(
        sent.target(),
        "/v4.0/cells/connect/token",
        "no query string"
    );
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(sent.header("accept"), Some("application/json"));
    assert_eq!(
        sent.header("user-agent"),
        Some(cells_auth_gen::USER_AGENT),
        "hooks.rs sets the User-Agent"
    );
    assert_eq!(
        sent.header("api-version"),
        None,
        "hooks.rs drops progenitor's header"
    );
    // The exact bytes: fields in progenitor's (alphabetical) order, reserved characters
    // percent-encoded and spaces as `+`.
    assert_eq!(
        std::str::from_utf8(sent.body()).unwrap(),
        "client_id=my+id&client_secret=a%2Bb%26c%3Dd%3Fe&grant_type=client_credentials"
    );
    assert_eq!(
        sent.form_field("client_secret").as_deref(),
        Some(SECRET_WITH_RESERVED_CHARACTERS)
    );
}

#[tokio::test]
async fn parses_a_numeric_expires_in() {
    let server = FakeTokenServer::builder()
        .expires_in(86399)
        .start()
        .await
        .unwrap();
    let response = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let token = response.into_inner();
    assert_eq!(
        token.access_token.expose_secret(),
        server.issued_tokens()[0]
    );
    assert_eq!(token.token_type.as_deref(), Some("bearer"));
    assert_eq!(token.expires_in, Some(ExpiresIn::Int64(86399)));
}

#[tokio::test]
async fn parses_a_string_expires_in() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::token_with_expires_in(serde_json::json!("86399")));
    let token = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap()
        .into_inner();
    match token.expires_in {
        Some(ExpiresIn::String(text)) => assert_eq!(text.as_str(), "86399"),
        other => panic!("expected a string expires_in, got {other:?}"),
    }
}

#[tokio::test]
async fn ignores_unknown_fields_and_reads_legacy_ones() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::json(
        200,
        &serde_json::json!({
            "access_token": "header.payload.sig",
            "token_type": "bearer",
            "expires_in": 86399,
            "refresh_token": "refresh",
            "client_id": "legacy-id",
            "clientRefreshTokenLifeTimeInMinutes": "15",
            ".issued": "Tue, 25 Nov 2026 10:00:00 GMT",
            ".expires": "Wed, 26 Nov 2026 10:00:00 GMT",
            "something_new": {"nested": [1, 2, 3]},
        }),
    ));
    let token = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.access_token.expose_secret(), "header.payload.sig");
    assert_eq!(
        token
            .refresh_token
            .as_ref()
            .map(|token| token.expose_secret()),
        Some("refresh")
    );
    assert_eq!(token.client_id.as_deref(), Some("legacy-id"));
    assert_eq!(
        token.client_refresh_token_life_time_in_minutes.as_deref(),
        Some("15")
    );
    assert_eq!(
        token.issued.as_deref(),
        Some("Tue, 25 Nov 2026 10:00:00 GMT")
    );
    assert_eq!(
        token.expires.as_deref(),
        Some("Wed, 26 Nov 2026 10:00:00 GMT")
    );
}

#[tokio::test]
async fn a_400_invalid_client_arrives_with_status_and_body() {
    let server = FakeTokenServer::start().await.unwrap();
    let error = client(&server)
        .post_access_token(&request("wrong-id", "wrong-secret"))
        .await
        .unwrap_err();
    let Error::ErrorResponse(response) = error else {
        panic!("expected an error response, got {error:?}");
    };
    assert_eq!(response.status().as_u16(), 400);
    let body = collect(response.into_inner()).await;
    let oauth: cells_auth_gen::types::OAuthError = serde_json::from_slice(&body).unwrap();
    assert_eq!(oauth.error, "invalid_client");
}

#[tokio::test]
async fn a_503_with_an_html_body_keeps_status_headers_and_body() {
    let server = FakeTokenServer::start().await.unwrap();
    let page = "<html><body>Service Unavailable</body></html>";
    server.push_reply(
        Reply::status(503)
            .header("Content-Type", "text/html")
            .header("Retry-After", "7")
            .body(page),
    );
    let error = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap_err();
    let Error::ErrorResponse(response) = error else {
        panic!("expected an error response, got {error:?}");
    };
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(collect(response.into_inner()).await, page.as_bytes());
}

/// The statuses `cells-auth` retries (429, 500, 502, 503, 504) and the credential errors are
/// all declared in the spec, so each arrives as an `ErrorResponse` with its status and body,
/// the one path `cells-auth` reads error statuses by.
#[tokio::test]
async fn every_error_status_the_library_acts_on_is_declared() {
    const ACTED_ON: [u16; 7] = [400, 401, 429, 500, 502, 503, 504];
    let spec: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(xtask::workspace_root().join(xtask::SPEC_PATH)).unwrap(),
    )
    .unwrap();
    let responses = spec["paths"]["/cells/connect/token"]["post"]["responses"]
        .as_object()
        .unwrap();
    for status in ACTED_ON {
        assert_eq!(
            responses
                .get(&status.to_string())
                .and_then(|response| response["$ref"].as_str()),
            Some("#/components/responses/ErrorBody"),
            "{status} must be declared with the shared error body"
        );
    }

    let server = FakeTokenServer::start().await.unwrap();
    for status in ACTED_ON {
        server.push_reply(Reply::status(status).body(format!("body of {status}")));
        let error = client(&server)
            .post_access_token(&default_request())
            .await
            .unwrap_err();
        let Error::ErrorResponse(response) = error else {
            panic!("{status}: expected an error response, got {error:?}");
        };
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            collect(response.into_inner()).await,
            format!("body of {status}").as_bytes()
        );
    }
}

#[tokio::test]
async fn an_undeclared_status_arrives_as_the_whole_response() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(404).body("not found"));
    let error = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap_err();
    let Error::UnexpectedResponse(response) = error else {
        panic!("expected an unexpected response, got {error:?}");
    };
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.text().await.unwrap(), "not found");
}

#[tokio::test]
async fn a_200_with_malformed_json_is_an_invalid_payload() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(r#"{"access_token": "abc", "#),
    );
    let error = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidResponsePayload(..)),
        "expected an invalid payload, got {error:?}"
    );
}

#[tokio::test]
async fn a_body_over_the_cap_is_not_read_into_memory() {
    let server = FakeTokenServer::start().await.unwrap();
    let huge = format!(
        r#"{{"access_token": "{}"}}"#,
        "x".repeat(cells_auth_gen::MAX_RESPONSE_BYTES)
    );
    server.push_reply(
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(huge),
    );
    let error = client(&server)
        .post_access_token(&default_request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ResponseBodyError(..)),
        "expected a body error, got {error:?}"
    );
}

async fn collect(mut stream: cells_auth_gen::ByteStream) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        body.extend_from_slice(&chunk.unwrap());
    }
    body
}
