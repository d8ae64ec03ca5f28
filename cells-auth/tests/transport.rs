//! HTTPS: certificates are checked, and a private CA can be trusted explicitly.

mod support;

use cells_auth::Error;
use cells_auth::testing::{FakeTokenServer, ManualClock};
use support::{builder, self_signed_server};

#[tokio::test]
async fn a_self_signed_certificate_is_rejected_by_default() {
    let (server, _) = self_signed_server().await;
    assert!(server.base_url().starts_with("https://"));
    let auth = builder(&server, &ManualClock::new()).build().unwrap();
    let error = auth.token().await.unwrap_err();
    assert!(matches!(error, Error::Network { .. }), "{error:?}");
    assert_eq!(
        server.request_count(),
        0,
        "no request got through the handshake"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_is_accepted_once_added_as_a_root() {
    let (server, cert_pem) = self_signed_server().await;
    let auth = builder(&server, &ManualClock::new())
        .add_root_certificate_pem(cert_pem)
        .build()
        .unwrap();
    let token = auth.token().await.unwrap();
    assert_eq!(token.secret(), server.issued_tokens()[0]);
}

#[tokio::test]
async fn the_user_agent_names_the_crate_and_version() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = builder(&server, &ManualClock::new()).build().unwrap();
    auth.token().await.unwrap();
    let user_agent = server.requests()[0]
        .header("user-agent")
        .unwrap()
        .to_owned();
    assert_eq!(
        user_agent,
        format!("cells-auth/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_user_supplied_client_is_used() {
    let server = FakeTokenServer::start().await.unwrap();
    let mut marker = reqwest::header::HeaderMap::new();
    marker.insert("x-from-user-client", "yes".parse().unwrap());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(marker)
        .no_proxy()
        .build()
        .unwrap();
    let auth = builder(&server, &ManualClock::new())
        .http_client(client)
        .build()
        .unwrap();
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 1);
    assert_eq!(
        server.requests()[0].header("x-from-user-client"),
        Some("yes")
    );
}

#[tokio::test]
async fn a_request_the_users_client_refuses_to_build_is_a_config_error_not_retried() {
    let server = FakeTokenServer::start().await.unwrap();
    // `https_only` refuses the loopback `http://` URL before anything is sent.
    let client = reqwest::Client::builder().https_only(true).build().unwrap();
    let auth = builder(&server, &ManualClock::new())
        .http_client(client)
        .build()
        .unwrap();
    let error = auth.token().await.unwrap_err();
    assert!(error.is_config(), "{error:?}");
    assert_eq!(server.request_count(), 0);
}
