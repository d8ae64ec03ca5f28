//! The fake `PostAccessToken` server: configuration, state and the token logic.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::RecordedRequest;
use super::connection::{self, Action};
use super::reply::{Gate, RawReply, Reply, ReplyKind};

/// The path the server answers, below any base-URL prefix (`/v4.0`, `/v3.0`, ...).
const TOKEN_PATH_SUFFIX: &str = "/cells/connect/token";

/// A real HTTP server on 127.0.0.1 that speaks Aspose.Cells Cloud's `PostAccessToken`.
///
/// It checks `grant_type` and the configured credentials (answering 400
/// `{"error":"invalid_client"}` otherwise), issues distinct JWT-shaped tokens, records every
/// request, and plays queued [`Reply`]s first, one per request, to script faults. It stops when
/// dropped.
///
/// Its `Debug` output shows the base URL and counts of requests and issued tokens, never the
/// client secret or a token, so a failing test can print it.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// use cells_auth::testing::{FakeTokenServer, Reply};
///
/// let server = FakeTokenServer::builder()
///     .credentials("my-id", "my-secret")
///     .expires_in(3600)
///     .start()
///     .await?;
/// server.push_reply(Reply::status(503)); // the first request fails, the next gets a token
/// let base_url = server.base_url();      // "http://127.0.0.1:<port>/v4.0"
/// # let _ = base_url;
/// # Ok(())
/// # }
/// ```
pub struct FakeTokenServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    requests_seen: watch::Receiver<usize>,
    // Dropping the set aborts the accept loop and every connection task.
    _tasks: JoinSet<()>,
}

/// Configures a [`FakeTokenServer`]; from [`FakeTokenServer::builder`].
///
/// Its `Debug` output redacts the client secret and the TLS certificate and key.
#[derive(Clone)]
pub struct FakeTokenServerBuilder {
    client_id: String,
    client_secret: String,
    expires_in: i64,
    tls: Option<(String, String)>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    expires_in: i64,
    state: Mutex<State>,
    requests_seen: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    issued: Vec<String>,
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for FakeTokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copied out so the lock is not held while the formatter writes.
        let (request_count, issued_token_count, queued_reply_count) = self.shared.lock().counts();
        f.debug_struct("FakeTokenServer")
            .field("base_url", &self.base_url())
            .field("client_id", &self.shared.client_id)
            .field("client_secret", &REDACTED)
            .field("expires_in", &self.shared.expires_in)
            .field("request_count", &request_count)
            .field("issued_token_count", &issued_token_count)
            .field("queued_reply_count", &queued_reply_count)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for FakeTokenServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTokenServerBuilder")
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("tls", &self.tls.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (request_count, issued_token_count, queued_reply_count) = self.lock().counts();
        f.debug_struct("Shared")
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("request_count", &request_count)
            .field("issued_token_count", &issued_token_count)
            .field("queued_reply_count", &queued_reply_count)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (request_count, issued_token_count, queued_reply_count) = self.counts();
        f.debug_struct("State")
            .field("request_count", &request_count)
            .field("issued_token_count", &issued_token_count)
            .field("queued_reply_count", &queued_reply_count)
            .finish()
    }
}

impl State {
    /// Requests received, tokens issued and replies queued: what `Debug` shows of the state,
    /// since requests and tokens themselves hold secrets.
    fn counts(&self) -> (usize, usize, usize) {
        (self.requests.len(), self.issued.len(), self.replies.len())
    }
}

impl FakeTokenServer {
    /// The client ID a default server accepts.
    pub const CLIENT_ID: &'static str = "fake-client-id";
    /// The client secret a default server accepts.
    pub const CLIENT_SECRET: &'static str = "fake-client-secret";

    /// Starts a server with the default credentials ([`Self::CLIENT_ID`],
    /// [`Self::CLIENT_SECRET`]) and one-hour tokens.
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    /// A builder for a server with other credentials or token lifetime.
    pub fn builder() -> FakeTokenServerBuilder {
        FakeTokenServerBuilder {
            client_id: Self::CLIENT_ID.to_owned(),
            client_secret: Self::CLIENT_SECRET.to_owned(),
            expires_in: 3600,
            tls: None,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a client: `http://127.0.0.1:<port>/v4.0` (`https` when built
    /// with [`FakeTokenServerBuilder::tls`]).
    pub fn base_url(&self) -> String {
        format!("{}://{}/v4.0", self.scheme, self.addr)
    }

    /// Queues a scripted reply; queued replies answer requests in order before any token is
    /// issued.
    pub fn push_reply(&self, reply: Reply) {
        self.shared.lock().replies.push_back(reply);
    }

    /// How many requests the server has received, on any path.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every access token issued so far, in order (for secret-leak scans).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued.clone()
    }

    /// Waits until at least `count` requests have arrived. Returns at once if they already have.
    pub async fn wait_for_requests(&self, count: usize) {
        let mut seen = self.requests_seen.clone();
        // The sender lives as long as `self`, so this only ends by reaching the count.
        let _ = seen.wait_for(|seen| *seen >= count).await;
    }
}

impl FakeTokenServerBuilder {
    /// The client ID and secret the server accepts.
    pub fn credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = client_id.to_owned();
        self.client_secret = client_secret.to_owned();
        self
    }

    /// The `expires_in` of issued tokens, in seconds (default 3600), and the lifetime their JWT
    /// `exp` claim gives unless a [`Reply`] announces another.
    pub fn expires_in(mut self, seconds: i64) -> Self {
        self.expires_in = seconds;
        self
    }

    /// Serves HTTPS with this certificate chain and private key (PEM), for example a
    /// self-signed certificate for `127.0.0.1` made with `rcgen`.
    pub fn tls(mut self, cert_chain_pem: &str, private_key_pem: &str) -> Self {
        self.tls = Some((cert_chain_pem.to_owned(), private_key_pem.to_owned()));
        self
    }

    /// Binds an ephemeral port on 127.0.0.1 and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeTokenServer> {
        let acceptor = self
            .tls
            .as_ref()
            .map(|(cert, key)| tls_acceptor(cert, key))
            .transpose()?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (requests_seen_tx, requests_seen) = watch::channel(0);
        let shared = Arc::new(Shared {
            client_id: self.client_id,
            client_secret: self.client_secret,
            expires_in: self.expires_in,
            state: Mutex::new(State::default()),
            requests_seen: requests_seen_tx,
        });
        let mut tasks = JoinSet::new();
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tasks.spawn(accept_loop(listener, acceptor, Arc::clone(&shared)));
        Ok(FakeTokenServer {
            addr,
            scheme,
            shared,
            requests_seen,
            _tasks: tasks,
        })
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Without it, a response written in two parts waits out Nagle's algorithm
                // against the client's delayed ACK: about 40 ms on a reused connection.
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    // A connection or handshake error ends that connection only; the client
                    // sees it.
                    let answer = |request| shared.answer(request);
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => connection::serve(stream, answer).await,
                            Err(error) => Err(error),
                        },
                        None => connection::serve(stream, answer).await,
                    };
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not turn every later assertion into a poison error.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `request` and decides the answer: the next queued reply, or a token.
    fn answer(&self, request: RecordedRequest) -> (Duration, Option<Gate>, Action) {
        let (reply, action) = {
            let mut state = self.lock();
            let reply = state.replies.pop_front().unwrap_or_else(Reply::token);
            let action = match &reply.kind {
                ReplyKind::Close => Action::Close,
                ReplyKind::Raw(raw) => Action::Send(raw.clone()),
                ReplyKind::Token {
                    expires_in,
                    exp_claim,
                } => Action::Send(self.issue(&request, expires_in.clone(), *exp_claim, &mut state)),
            };
            state.requests.push(request);
            let count = state.requests.len();
            self.requests_seen.send_replace(count);
            (reply, action)
        };
        (reply.delay, reply.gate, action)
    }

    /// The protocol itself: validate the form, then mint a token whose `exp` claim (if any)
    /// agrees with the `expires_in` the reply announces.
    fn issue(
        &self,
        request: &RecordedRequest,
        expires_in: Option<serde_json::Value>,
        exp_claim: bool,
        state: &mut State,
    ) -> RawReply {
        if !request.path().ends_with(TOKEN_PATH_SUFFIX) {
            return json_reply(404, serde_json::json!({ "error": "not_found" }));
        }
        if request.method() != "POST" {
            return json_reply(405, serde_json::json!({ "error": "invalid_request" }));
        }
        let form_ok = request
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if !form_ok {
            return json_reply(400, serde_json::json!({ "error": "invalid_request" }));
        }
        if request.form_field("grant_type").as_deref() != Some("client_credentials") {
            return json_reply(
                400,
                serde_json::json!({ "error": "unsupported_grant_type" }),
            );
        }
        let id_ok = request.form_field("client_id").as_deref() == Some(self.client_id.as_str());
        let secret_ok =
            request.form_field("client_secret").as_deref() == Some(self.client_secret.as_str());
        if !(id_ok && secret_ok) {
            return json_reply(400, serde_json::json!({ "error": "invalid_client" }));
        }

        let serial = state.issued.len() + 1;
        let expires_in = expires_in.unwrap_or_else(|| self.expires_in.into());
        // An `expires_in` that announces no lifetime (`null`, "soon") leaves `exp` at the
        // server's default, so such a token still expires; `without_exp_claim` removes it.
        let exp_lifetime =
            exp_claim.then(|| announced_seconds(&expires_in).unwrap_or(self.expires_in));
        let token = mint_jwt(&self.client_id, exp_lifetime, serial);
        state.issued.push(token.clone());
        json_reply(
            200,
            serde_json::json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": expires_in,
            }),
        )
    }
}

fn tls_acceptor(cert_chain_pem: &str, private_key_pem: &str) -> std::io::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |error: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, error);
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("certificate PEM: {error}")))?;
    let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
        .map_err(|error| invalid(format!("private key PEM: {error}")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| invalid(error.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|error| invalid(error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn json_reply(status: u16, body: serde_json::Value) -> RawReply {
    RawReply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        truncate_at: None,
        trickle: None,
    }
}

/// The lifetime an `expires_in` value announces, in seconds, read as clients read it: a JSON
/// number or a string of an integer. `None` for `null` and anything else.
fn announced_seconds(expires_in: &serde_json::Value) -> Option<i64> {
    match expires_in {
        // `as` saturates: a number beyond `i64` (or a fraction) still announces a lifetime.
        serde_json::Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|seconds| seconds as i64)),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// A JWT-shaped token (header.payload.signature, base64url), unsigned: clients decode `exp` but
/// never verify, exactly as with the real identity server's tokens. `exp` is `iat` plus
/// `lifetime`, or absent without one.
///
/// The `nonce` claim makes every token distinct, across servers and test processes too: `jti`
/// counts per server and `iat` has whole seconds, so without it two servers with the same
/// client ID would issue the same first token within a second.
fn mint_jwt(client_id: &str, lifetime: Option<i64>, serial: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
    let mut payload = serde_json::json!({
        "iss": "cells-auth FakeTokenServer",
        "client_id": client_id,
        "iat": now,
        "jti": serial,
        "nonce": format!("{:032x}", fastrand::u128(..)),
    });
    if let Some(lifetime) = lifetime {
        payload["exp"] = now.saturating_add(lifetime).into();
    }
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signature = URL_SAFE_NO_PAD.encode(format!("fake-signature-{serial}"));
    format!("{}.{}.{signature}", encode(&header), encode(&payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-of-the-test";
    const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKEYMATERIAL\n-----END PRIVATE KEY-----\n";

    /// A valid token request, answered without the network.
    fn ask(server: &FakeTokenServer, client_secret: &str) -> RawReply {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={client_secret}",
            server.shared.client_id
        );
        let request = RecordedRequest {
            method: "POST".into(),
            target: "/v4.0/cells/connect/token".into(),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.into_bytes(),
        };
        match server.shared.answer(request).2 {
            Action::Send(raw) => raw,
            Action::Close => panic!("the connection was closed"),
        }
    }

    /// The reply's JSON and its token's decoded JWT claims.
    fn ask_token(server: &FakeTokenServer) -> (serde_json::Value, serde_json::Value) {
        let raw = ask(server, SECRET);
        assert_eq!(raw.status, 200);
        let reply: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        let token = reply["access_token"].as_str().unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        (reply.clone(), serde_json::from_slice(&payload).unwrap())
    }

    async fn server(expires_in: i64) -> FakeTokenServer {
        FakeTokenServer::builder()
            .credentials("the-id", SECRET)
            .expires_in(expires_in)
            .start()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn debug_shows_counts_but_no_secret_token_or_key() {
        let builder = FakeTokenServer::builder()
            .credentials("the-id", SECRET)
            .tls(
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                KEY_PEM,
            );
        let server = server(3600).await;
        ask_token(&server);
        ask_token(&server);
        assert_eq!(ask(&server, "wrong").status, 400);
        server.push_reply(Reply::status(503));

        let tokens = server.issued_tokens();
        assert_eq!(tokens.len(), 2);
        let state = [
            format!("{:?}", *server.shared.lock()),
            format!("{:#?}", *server.shared.lock()),
        ];
        let outputs = [
            format!("{builder:?}"),
            format!("{builder:#?}"),
            format!("{server:?}"),
            format!("{server:#?}"),
            format!("{:?}", server.shared),
            format!("{:#?}", server.shared),
        ];
        for debug in outputs.iter().chain(&state) {
            assert!(!debug.contains(SECRET), "{debug}");
            assert!(!debug.contains("KEYMATERIAL"), "{debug}");
            for token in &tokens {
                // No whole token, nor its payload or signature part.
                for part in std::iter::once(token.as_str()).chain(token.split('.').skip(1)) {
                    assert!(!debug.contains(part), "{debug}");
                }
            }
        }
        for debug in &outputs[2..] {
            assert!(debug.contains("request_count: 3"), "{debug}");
            assert!(debug.contains("issued_token_count: 2"), "{debug}");
            assert!(debug.contains("queued_reply_count: 1"), "{debug}");
            assert!(debug.contains("the-id"), "{debug}");
        }
        for debug in &outputs[2..4] {
            assert!(debug.contains(&server.base_url()), "{debug}");
        }
        for debug in &state {
            assert!(debug.contains("issued_token_count: 2"), "{debug}");
        }
    }

    #[test]
    fn identical_requests_get_distinct_tokens() {
        // Same client, serial and second: only the nonce tells them apart.
        let first = mint_jwt("the-id", Some(3600), 1);
        let second = mint_jwt("the-id", Some(3600), 1);
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn exp_follows_the_announced_lifetime() {
        let server = server(600).await;
        let cases = [
            (Reply::token(), serde_json::json!(600), Some(600)),
            (
                Reply::token_with_expires_in(120.into()),
                serde_json::json!(120),
                Some(120),
            ),
            (
                Reply::token_with_expires_in("86399".into()),
                serde_json::json!("86399"),
                Some(86399),
            ),
            (
                Reply::token_with_expires_in((-5).into()),
                serde_json::json!(-5),
                Some(-5),
            ),
            (
                Reply::token_with_expires_in(i64::MAX.into()),
                serde_json::json!(i64::MAX),
                None, // `exp` saturates; checked below.
            ),
            // No lifetime announced: `exp` keeps the server's default.
            (
                Reply::token_with_expires_in(serde_json::Value::Null),
                serde_json::Value::Null,
                Some(600),
            ),
            (
                Reply::token_with_expires_in("soon".into()),
                serde_json::json!("soon"),
                Some(600),
            ),
        ];
        for (reply, expires_in, lifetime) in cases {
            server.push_reply(reply);
            let (reply, claims) = ask_token(&server);
            assert_eq!(reply["expires_in"], expires_in);
            let iat = claims["iat"].as_i64().unwrap();
            let exp = claims["exp"].as_i64().unwrap();
            match lifetime {
                Some(lifetime) => assert_eq!(exp - iat, lifetime, "{expires_in}"),
                None => assert_eq!(exp, i64::MAX),
            }
            assert!(claims["nonce"].is_string(), "{claims}");
        }
    }

    #[tokio::test]
    async fn without_exp_claim_leaves_no_lifetime_anywhere() {
        let server = server(600).await;
        server
            .push_reply(Reply::token_with_expires_in(serde_json::Value::Null).without_exp_claim());
        let (reply, claims) = ask_token(&server);
        assert_eq!(reply["expires_in"], serde_json::Value::Null);
        assert!(claims.get("exp").is_none(), "{claims}");

        // Only the JWT loses its lifetime; `expires_in` is still the server's.
        server.push_reply(Reply::token().without_exp_claim());
        let (reply, claims) = ask_token(&server);
        assert_eq!(reply["expires_in"], 600);
        assert!(claims.get("exp").is_none(), "{claims}");

        // Replies that issue no token ignore it.
        server.push_reply(Reply::status(503).without_exp_claim());
        assert_eq!(ask(&server, SECRET).status, 503);
    }
}
