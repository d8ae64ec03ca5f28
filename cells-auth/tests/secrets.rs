//! A scan for leaks: across successes and every kind of failure, no error message, `Debug`
//! output or TRACE-level log line contains the client secret or an issued token.

mod support;

use std::time::Duration;

use cells_auth::testing::{FakeTokenServer, Gate, ManualClock, Reply};
use support::{LogCapture, advance, assert_no_secrets, builder, provider};

#[tokio::test]
async fn no_secret_or_token_reaches_errors_debug_or_logs() {
    let (logs, _guard) = LogCapture::start();
    let mut seen = String::new();
    let mut tokens = Vec::new();

    // Success, caching, refresh ahead, invalidation.
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let token = auth.token().await.unwrap();
    seen += &format!("{token:?} {auth:?}\n");
    auth.invalidate(&token);
    auth.token().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    advance(&clock, Duration::from_secs(3500)).await;
    gate.open();
    advance(&clock, Duration::from_secs(100)).await;
    let token = auth.token().await.unwrap();
    seen += &format!("{token:?} {:?}\n", server.requests());
    tokens.extend(server.issued_tokens());

    // Failures whose bodies echo the secret or carry a token.
    let secret = FakeTokenServer::CLIENT_SECRET;
    let leaky_token = tokens[0].clone();
    let replies = [
        Reply::json(
            400,
            &serde_json::json!({"error": "invalid_client", "error_description": format!("bad secret {secret}")}),
        ),
        Reply::json(401, &serde_json::json!({"error": secret})),
        Reply::status(404).body(format!("no route for client_secret={secret}")),
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"access_token": "{leaky_token}", "#)),
        Reply::status(200)
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"access_token": "{leaky_token}", "token_type": "{secret}"}}"#
            )),
        Reply::json(
            200,
            &serde_json::json!({"access_token": leaky_token, "expires_in": -1}),
        ),
        Reply::status(302).header("Location", &format!("http://127.0.0.1:1/?secret={secret}")),
        Reply::status(503)
            .header("Retry-After", "3600")
            .body(secret.to_owned()),
        Reply::close_connection(),
    ];
    for reply in replies {
        let server = FakeTokenServer::start().await.unwrap();
        server.push_reply(reply);
        for _ in 0..5 {
            server.push_reply(Reply::close_connection());
        }
        let auth = builder(&server, &ManualClock::new()).build().unwrap();
        let error = auth.token().await.unwrap_err();
        seen += &format!("{error}\n{error:?}\n{auth:?}\n");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            seen += &format!("{cause}\n{cause:?}\n");
            source = cause.source();
        }
    }

    let logs = logs.text();
    assert!(
        logs.contains("token fetched"),
        "TRACE capture works: {logs}"
    );
    assert_no_secrets(&seen, &tokens);
    assert_no_secrets(&logs, &tokens);
}
