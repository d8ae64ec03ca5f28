//! Helpers shared by the provider's integration tests.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cells_auth::testing::{FakeTokenServer, ManualClock};
use cells_auth::{CellsAuth, CellsAuthBuilder};

/// A builder for a provider that talks to `server` with its default credentials, on `clock`.
pub fn builder(server: &FakeTokenServer, clock: &ManualClock) -> CellsAuthBuilder {
    CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(FakeTokenServer::CLIENT_SECRET)
        .base_url(server.base_url())
        .clock(clock)
}

pub fn provider(server: &FakeTokenServer, clock: &ManualClock) -> CellsAuth {
    builder(server, clock).build().unwrap()
}

/// Lets every task woken by a clock change run before the test goes on. Deterministic on a
/// current-thread runtime: woken tasks are queued ahead of the yielding one.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Advances `clock` and lets the tasks it wakes (request timeouts on the manual clock) run.
pub async fn advance(clock: &ManualClock, by: Duration) {
    clock.advance(by);
    settle().await;
}

/// Everything logged at TRACE level while the returned guard lives (on this thread, which on a
/// current-thread runtime includes spawned tasks).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails the test if `text` contains the client secret or any of `tokens`.
pub fn assert_no_secrets(text: &str, tokens: &[String]) {
    assert!(
        !text.contains(FakeTokenServer::CLIENT_SECRET),
        "the client secret leaked into: {text}"
    );
    for token in tokens {
        assert!(
            !text.contains(token.as_str()),
            "a token leaked into: {text}"
        );
        // The signature alone identifies a token too.
        if let Some(signature) = token.rsplit('.').next() {
            assert!(
                !text.contains(signature),
                "a token signature leaked into: {text}"
            );
        }
    }
}

/// A base URL on 127.0.0.1 where nothing listens: connecting is refused.
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v4.0")
}

/// An HTTPS fake server with a fresh self-signed certificate for 127.0.0.1, and that
/// certificate as PEM.
pub async fn self_signed_server() -> (FakeTokenServer, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let server = FakeTokenServer::builder()
        .tls(&cert_pem, &certified.signing_key.serialize_pem())
        .start()
        .await
        .unwrap();
    (server, cert_pem)
}
