//! Failures: what is retried, what is not, and what each becomes.

mod support;

use std::time::{Duration, SystemTime};

use cells_auth::Error;
use cells_auth::testing::{FakeTokenServer, ManualClock, Reply};
use support::{advance, builder, provider};

#[tokio::test]
async fn a_503_then_a_200_succeeds() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(503).body("<html>busy</html>"));
    let auth = provider(&server, &ManualClock::new());
    let token = auth.token().await.unwrap();
    assert_eq!(token.secret(), server.issued_tokens()[0]);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn every_transient_status_is_retried() {
    for status in [429, 500, 502, 503, 504] {
        let server = FakeTokenServer::start().await.unwrap();
        server.push_reply(Reply::status(status));
        let auth = provider(&server, &ManualClock::new());
        auth.token().await.unwrap();
        assert_eq!(server.request_count(), 2, "status {status}");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_seconds_is_honoured() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(429).header("Retry-After", "7"));
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
    assert!(
        clock.elapsed() >= Duration::from_secs(7),
        "waited {:?}",
        clock.elapsed()
    );
}

#[tokio::test]
async fn a_429_with_retry_after_as_an_http_date_is_honoured() {
    let server = FakeTokenServer::start().await.unwrap();
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(12));
    server.push_reply(Reply::status(429).header("Retry-After", &date));
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
    assert!(
        clock.elapsed() >= Duration::from_secs(10),
        "{:?}",
        clock.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_gives_up_with_the_hint() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(503).header("Retry-After", "3600"));
    let auth = provider(&server, &ManualClock::new());
    let error = auth.token().await.unwrap_err();
    assert_eq!(server.request_count(), 1);
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert!(error.is_transient());
}

#[tokio::test]
async fn retries_stop_at_the_attempt_budget() {
    let server = FakeTokenServer::start().await.unwrap();
    for _ in 0..20 {
        server.push_reply(Reply::status(500));
    }
    let auth = provider(&server, &ManualClock::new());
    let error = auth.token().await.unwrap_err();
    assert!(
        matches!(error, Error::ServiceUnavailable { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(server.request_count(), 5);
}

#[tokio::test]
async fn invalid_client_makes_one_request_and_is_remembered_briefly() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = builder(&server, &clock)
        .client_secret("wrong-secret")
        .build()
        .unwrap();

    let error = auth.token().await.unwrap_err();
    let Error::CredentialsRejected { status, code, .. } = &error else {
        panic!("expected a credentials error, got {error:?}");
    };
    assert_eq!((*status, code.as_deref()), (400, Some("invalid_client")));
    assert!(error.to_string().contains("check the client ID and secret"));
    assert_eq!(server.request_count(), 1, "never retried");

    // A crowd right after gets the remembered error without a request.
    for _ in 0..10 {
        assert!(auth.token().await.unwrap_err().is_credentials());
    }
    assert_eq!(server.request_count(), 1);

    // A little later the server is asked again (the client ID may have become active).
    advance(&clock, Duration::from_secs(11)).await;
    assert!(auth.token().await.unwrap_err().is_credentials());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_401_is_a_credentials_error_too() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::json(
        401,
        &serde_json::json!({"error": "unauthorized_client", "error_description": "client disabled"}),
    ));
    let auth = provider(&server, &ManualClock::new());
    let error = auth.token().await.unwrap_err();
    let Error::CredentialsRejected {
        status,
        code,
        description,
        ..
    } = &error
    else {
        panic!("expected a credentials error, got {error:?}");
    };
    assert_eq!(*status, 401);
    assert_eq!(code.as_deref(), Some("unauthorized_client"));
    assert_eq!(description.as_deref(), Some("client disabled"));
    assert_eq!(server.request_count(), 1);
}

async fn invalid_response_for(reply: Reply) -> (Error, usize) {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(reply);
    let auth = provider(&server, &ManualClock::new());
    let error = auth.token().await.unwrap_err();
    (error, server.request_count())
}

#[tokio::test]
async fn unusable_bodies_are_invalid_responses() {
    let json = |body: &str| {
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
    };
    let oversized = format!(
        r#"{{"access_token":"{}"}}"#,
        "x".repeat(cells_auth_gen::MAX_RESPONSE_BYTES)
    );
    let cases = [
        ("malformed JSON", json(r#"{"access_token": "abc"#)),
        (
            "HTML",
            Reply::status(200)
                .header("Content-Type", "text/html")
                .body("<html><body>Welcome</body></html>"),
        ),
        ("empty body", Reply::status(200)),
        ("oversized body", json(&oversized)),
        (
            "no access_token",
            json(r#"{"token_type":"bearer","expires_in":3600}"#),
        ),
        (
            "empty access_token",
            json(r#"{"access_token":"","expires_in":3600}"#),
        ),
        (
            "negative expires_in",
            Reply::token_with_expires_in((-5).into()),
        ),
        ("zero expires_in", Reply::token_with_expires_in(0.into())),
        (
            "non-numeric expires_in",
            Reply::token_with_expires_in("soon".into()),
        ),
        (
            "a mac token",
            json(r#"{"access_token":"abc.def.ghi","token_type":"mac","expires_in":3600}"#),
        ),
    ];
    for (name, reply) in cases {
        let (error, requests) = invalid_response_for(reply).await;
        assert!(
            matches!(error, Error::InvalidResponse { .. }),
            "{name}: expected an invalid response, got {error:?}"
        );
        assert!(!error.is_transient(), "{name}");
        assert_eq!(requests, 1, "{name}: not retried");
    }
}

#[tokio::test]
async fn a_huge_expires_in_is_capped() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::token_with_expires_in(i64::MAX.into()));
    let auth = provider(&server, &ManualClock::new());
    let token = auth.token().await.unwrap();
    let left = token
        .expires_at()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(367 * 24 * 3600), "{left:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = FakeTokenServer::start().await.unwrap();
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(307).header(
        "Location",
        &format!("{}/cells/connect/token", elsewhere.base_url()),
    ));
    let auth = provider(&server, &ManualClock::new());
    let error = auth.token().await.unwrap_err();
    assert_eq!(error.status(), Some(307));
    assert!(error.to_string().contains("redirect"), "{error}");
    assert_eq!(
        elsewhere.request_count(),
        0,
        "the credentials went nowhere else"
    );
}

#[tokio::test]
async fn slow_headers_time_out_and_are_retried() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::token().delay(Duration::from_secs(3600)));
    let auth = builder(&server, &ManualClock::new())
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_retried() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(r#"{"access_token":"abc.def.ghi","expires_in":3600}"#)
            .truncate_body_at(10),
    );
    let auth = provider(&server, &ManualClock::new());
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_closed_connection_is_retried() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::close_connection());
    let auth = provider(&server, &ManualClock::new());
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn configuration_mistakes_are_caught_at_build() {
    let missing_secret = cells_auth::CellsAuth::builder().client_id("id").build();
    assert!(missing_secret.unwrap_err().is_config());
    let empty_id = cells_auth::CellsAuth::builder()
        .client_id(" ")
        .client_secret("s")
        .build();
    assert!(empty_id.unwrap_err().is_config());
    let bad_url = cells_auth::CellsAuth::builder()
        .client_id("id")
        .client_secret("s")
        .base_url("http://api.aspose.cloud/v4.0")
        .build()
        .unwrap_err();
    assert!(bad_url.is_config());
    assert!(bad_url.to_string().contains("https"), "{bad_url}");
    let bad_pem = cells_auth::CellsAuth::builder()
        .client_id("id")
        .client_secret("s")
        .add_root_certificate_pem("not a certificate")
        .build()
        .unwrap_err();
    assert!(bad_pem.is_config());
}
