//! The fake `PostAccessToken` server: configuration, state and the token logic.

use std::collections::VecDeque;
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
#[derive(Debug)]
pub struct FakeTokenServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    requests_seen: watch::Receiver<usize>,
    // Dropping the set aborts the accept loop and every connection task.
    _tasks: JoinSet<()>,
}

/// Configures a [`FakeTokenServer`]; from [`FakeTokenServer::builder`].
#[derive(Debug, Clone)]
pub struct FakeTokenServerBuilder {
    client_id: String,
    client_secret: String,
    expires_in: i64,
    tls: Option<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    client_id: String,
    client_secret: String,
    expires_in: i64,
    state: Mutex<State>,
    requests_seen: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct State {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    issued: Vec<String>,
}

/// What a connection does with one request.
pub(crate) enum Action {
    Send(RawReply),
    Close,
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

    /// The `expires_in` of issued tokens, in seconds (default 3600).
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
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => super::connection::serve(stream, &shared).await,
                            Err(error) => Err(error),
                        },
                        None => super::connection::serve(stream, &shared).await,
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
    pub(crate) fn answer(&self, request: RecordedRequest) -> (Duration, Option<Gate>, Action) {
        let (reply, action) = {
            let mut state = self.lock();
            let reply = state.replies.pop_front().unwrap_or_else(Reply::token);
            let action = match &reply.kind {
                ReplyKind::Close => Action::Close,
                ReplyKind::Raw(raw) => Action::Send(raw.clone()),
                ReplyKind::Token { expires_in } => {
                    Action::Send(self.issue(&request, expires_in.clone(), &mut state))
                }
            };
            state.requests.push(request);
            let count = state.requests.len();
            self.requests_seen.send_replace(count);
            (reply, action)
        };
        (reply.delay, reply.gate, action)
    }

    /// The protocol itself: validate the form, then mint a token.
    fn issue(
        &self,
        request: &RecordedRequest,
        expires_in: Option<serde_json::Value>,
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
        let token = mint_jwt(&self.client_id, self.expires_in, serial);
        state.issued.push(token.clone());
        let expires_in = expires_in.unwrap_or_else(|| self.expires_in.into());
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

/// A JWT-shaped token (header.payload.signature, base64url) with `exp` set, unsigned: clients
/// decode `exp` but never verify, exactly as with the real identity server's tokens.
fn mint_jwt(client_id: &str, expires_in: i64, serial: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
    let payload = serde_json::json!({
        "iss": "cells-auth FakeTokenServer",
        "client_id": client_id,
        "iat": now,
        "exp": now.saturating_add(expires_in),
        "jti": serial,
    });
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signature = URL_SAFE_NO_PAD.encode(format!("fake-signature-{serial}"));
    format!("{}.{}.{signature}", encode(&header), encode(&payload))
}
