//! The fault matrix: each way the token endpoint can misbehave, with the outcome written down.
//! `RELIABILITY.md` lists the same scenarios; a test keeps the two in step.
//!
//! Every scenario must end without a panic, within the configured deadline, with the expected
//! outcome and request count, and without the secret or a token in any error or log line.

mod support;

use std::time::{Duration, SystemTime};

use cells_auth::Error;
use cells_auth::testing::{FakeTokenServer, ManualClock, Reply};
use support::{LogCapture, assert_no_secrets, builder, refused_base_url};

/// The deadline every scenario runs under; no scenario may take longer in real time.
const DEADLINE: Duration = Duration::from_secs(10);
/// Single requests time out after this (real time), so slow-server scenarios stay quick.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A token, after this many requests.
    Token { requests: usize },
    /// A credentials error after one request.
    Credentials,
    /// A service-unavailable error with this status, after this many requests.
    Unavailable { status: u16, requests: usize },
    /// A network error (nothing usable came back), after this many requests.
    Network { requests: usize },
    /// An invalid-response error with this status, after one request.
    Invalid { status: u16 },
}

struct Scenario {
    name: &'static str,
    /// Replies queued before the first request; afterwards the server issues tokens.
    replies: fn() -> Vec<Reply>,
    expect: Expect,
}

fn json(body: &str) -> Reply {
    Reply::status(200)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
}

fn repeat(reply: Reply, times: usize) -> Vec<Reply> {
    vec![reply; times]
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "500 once",
        replies: || vec![Reply::status(500)],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "502 once",
        replies: || vec![Reply::status(502).body("<html>Bad Gateway</html>")],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "503 once",
        replies: || vec![Reply::status(503)],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "504 once",
        replies: || vec![Reply::status(504)],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "500 on every attempt",
        replies: || repeat(Reply::status(500), 10),
        expect: Expect::Unavailable {
            status: 500,
            requests: 5,
        },
    },
    Scenario {
        name: "429 with Retry-After in seconds",
        replies: || vec![Reply::status(429).header("Retry-After", "2")],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "429 with Retry-After as an HTTP date",
        replies: || {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
            vec![Reply::status(429).header("Retry-After", &date)]
        },
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "503 with Retry-After past the deadline",
        replies: || vec![Reply::status(503).header("Retry-After", "86400")],
        expect: Expect::Unavailable {
            status: 503,
            requests: 1,
        },
    },
    Scenario {
        name: "429 with an absurd Retry-After",
        replies: || vec![Reply::status(429).header("Retry-After", &u64::MAX.to_string())],
        expect: Expect::Unavailable {
            status: 429,
            requests: 1,
        },
    },
    Scenario {
        name: "connection closed without an answer, once",
        replies: || vec![Reply::close_connection()],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "connection closed on every attempt",
        replies: || repeat(Reply::close_connection(), 10),
        expect: Expect::Network { requests: 5 },
    },
    Scenario {
        name: "connection reset mid-body, once",
        replies: || {
            vec![json(r#"{"access_token":"a.b.c","expires_in":3600}"#).truncate_body_at(12)]
        },
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "slow headers past the request timeout, once",
        replies: || vec![Reply::token().delay(Duration::from_secs(3600))],
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "a body that trickles past the request timeout, once",
        replies: || {
            vec![
                json(r#"{"access_token":"a.b.c","expires_in":3600}"#)
                    .trickle(Duration::from_millis(50)),
            ]
        },
        expect: Expect::Token { requests: 2 },
    },
    Scenario {
        name: "truncated JSON",
        replies: || vec![json(r#"{"access_token":"a.b.c","expi"#)],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "an HTML 200",
        replies: || {
            vec![
                Reply::status(200)
                    .header("Content-Type", "text/html")
                    .body("<html><body>Sign in</body></html>"),
            ]
        },
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "an empty 200",
        replies: || vec![Reply::status(200)],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "a body over the size cap",
        replies: || {
            let padding = "x".repeat(cells_auth_gen::MAX_RESPONSE_BYTES);
            vec![json(&format!(r#"{{"access_token":"{padding}"}}"#))]
        },
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "missing access_token",
        replies: || vec![json(r#"{"token_type":"bearer","expires_in":3600}"#)],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "empty access_token",
        replies: || vec![json(r#"{"access_token":"","expires_in":3600}"#)],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "expires_in negative",
        replies: || vec![Reply::token_with_expires_in((-60).into())],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "expires_in zero",
        replies: || vec![Reply::token_with_expires_in(0.into())],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "expires_in huge",
        replies: || vec![Reply::token_with_expires_in(i64::MAX.into())],
        expect: Expect::Token { requests: 1 },
    },
    Scenario {
        name: "expires_in non-numeric",
        replies: || vec![Reply::token_with_expires_in("a day".into())],
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "expires_in as a numeric string",
        replies: || vec![Reply::token_with_expires_in("86399".into())],
        expect: Expect::Token { requests: 1 },
    },
    Scenario {
        name: "token_type other than bearer",
        replies: || {
            vec![json(
                r#"{"access_token":"a.b.c","token_type":"mac","expires_in":60}"#,
            )]
        },
        expect: Expect::Invalid { status: 200 },
    },
    Scenario {
        name: "400 invalid_client",
        replies: || vec![Reply::oauth_error(400, "invalid_client")],
        expect: Expect::Credentials,
    },
    Scenario {
        name: "401 invalid_client",
        replies: || vec![Reply::oauth_error(401, "invalid_client")],
        expect: Expect::Credentials,
    },
    Scenario {
        name: "a redirect",
        replies: || vec![Reply::status(302).header("Location", "http://127.0.0.1:9/token")],
        expect: Expect::Invalid { status: 302 },
    },
    Scenario {
        name: "404 (wrong base URL)",
        replies: || vec![Reply::status(404).body("Not Found")],
        expect: Expect::Invalid { status: 404 },
    },
];

async fn run(scenario: &Scenario) -> (Result<cells_auth::AccessToken, Error>, FakeTokenServer) {
    let server = FakeTokenServer::start().await.unwrap();
    for reply in (scenario.replies)() {
        server.push_reply(reply);
    }
    let auth = builder(&server, &ManualClock::new())
        .deadline(DEADLINE)
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(DEADLINE, auth.token())
        .await
        .unwrap_or_else(|_| panic!("{}: hung past the deadline", scenario.name));
    (outcome, server)
}

fn check(scenario: &Scenario, outcome: &Result<cells_auth::AccessToken, Error>, requests: usize) {
    let name = scenario.name;
    match (scenario.expect, outcome) {
        (Expect::Token { requests: expected }, Ok(_)) => assert_eq!(requests, expected, "{name}"),
        (Expect::Credentials, Err(error)) => {
            assert!(error.is_credentials(), "{name}: {error:?}");
            assert_eq!(requests, 1, "{name}: never retried");
        }
        (
            Expect::Unavailable {
                status,
                requests: expected,
            },
            Err(error),
        ) => {
            assert!(
                matches!(error, Error::ServiceUnavailable { status: s, .. } if *s == status),
                "{name}: {error:?}"
            );
            assert_eq!(requests, expected, "{name}");
        }
        (Expect::Network { requests: expected }, Err(error)) => {
            assert!(matches!(error, Error::Network { .. }), "{name}: {error:?}");
            assert_eq!(
                requests, expected,
                "{name}: retried up to the attempt budget"
            );
        }
        (Expect::Invalid { status }, Err(error)) => {
            assert!(
                matches!(error, Error::InvalidResponse { status: s, .. } if *s == status),
                "{name}: {error:?}"
            );
            assert_eq!(requests, 1, "{name}: not retried");
        }
        (expect, outcome) => panic!("{name}: expected {expect:?}, got {outcome:?}"),
    }
}

#[tokio::test]
async fn every_fault_has_its_expected_outcome_and_leaks_nothing() {
    assert!(SCENARIOS.len() >= 20);
    let (logs, _guard) = LogCapture::start();
    let mut shown = String::new();
    let mut tokens = Vec::new();
    for scenario in SCENARIOS {
        let (outcome, server) = run(scenario).await;
        check(scenario, &outcome, server.request_count());
        match &outcome {
            Ok(token) => shown += &format!("{token:?}\n"),
            Err(error) => shown += &format!("{error}\n{error:?}\n"),
        }
        tokens.extend(server.issued_tokens());
    }
    // The scripted bodies carry the fake token "a.b.c"; the server's tokens are real JWTs.
    assert_no_secrets(&shown, &tokens);
    assert_no_secrets(&logs.text(), &tokens);
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let auth = cells_auth::CellsAuth::builder()
        .client_id("id")
        .client_secret("secret")
        .base_url(refused_base_url())
        .clock(&ManualClock::new())
        .deadline(DEADLINE)
        .build()
        .unwrap();
    let error = auth.token().await.unwrap_err();
    assert!(matches!(error, Error::Network { .. }), "{error:?}");
}

/// RELIABILITY.md documents every scenario of this file by name.
#[test]
fn reliability_md_lists_every_scenario() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../RELIABILITY.md"))
        .expect("RELIABILITY.md at the workspace root");
    for scenario in SCENARIOS {
        assert!(
            doc.contains(&format!("| {} |", scenario.name)),
            "RELIABILITY.md lacks the scenario {:?}",
            scenario.name
        );
    }
    for extra in ["untrusted TLS certificate", "connection refused"] {
        assert!(doc.contains(extra), "RELIABILITY.md lacks {extra:?}");
    }
}
