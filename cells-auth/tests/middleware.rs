//! `BearerAuth` against real servers on 127.0.0.1: a `FakeTokenServer` for tokens and a small
//! fake API (below) that records the `Authorization` header of each request and refuses chosen
//! tokens with 401.

#![cfg(feature = "middleware")]

use cells_auth::CellsAuth;
use cells_auth::middleware::BearerAuth;
use cells_auth::testing::{FakeTokenServer, ManualClock};
use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;

use fake_api::FakeApi;

/// Tokens from `server`, attached to requests for `api`: the two run on different ports, so
/// the API origin is given explicitly.
fn client_for(auth: &CellsAuth, api: &FakeApi) -> ClientWithMiddleware {
    let middleware = BearerAuth::with_api_origin(auth.clone(), &api.base_url()).unwrap();
    reqwest_middleware::ClientBuilder::new(plain_client())
        .with(middleware)
        .build()
}

fn plain_client() -> reqwest::Client {
    // No proxy: a developer's `HTTP_PROXY` must not capture loopback traffic.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn provider(server: &FakeTokenServer) -> CellsAuth {
    CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(FakeTokenServer::CLIENT_SECRET)
        .base_url(server.base_url())
        .build()
        .unwrap()
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn requests_to_the_api_carry_the_bearer_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let client = client_for(&provider(&server), &api);

    for _ in 0..2 {
        let response = client
            .get(api.url("/cells/storage/disc"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let token = &server.issued_tokens()[0];
    assert_eq!(api.authorizations(), [bearer(token), bearer(token)]);
    assert_eq!(
        server.request_count(),
        1,
        "the second request used the cached token"
    );
}

#[tokio::test]
async fn requests_to_another_origin_carry_no_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let elsewhere = FakeApi::start().await;
    let client = client_for(&provider(&server), &api);

    let response = client
        .get(elsewhere.url("/v4.0/cells"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(elsewhere.authorizations(), [None]);
    assert_eq!(
        server.request_count(),
        0,
        "no token is fetched for a foreign request"
    );
}

#[tokio::test]
async fn a_401_from_a_redirect_target_on_another_host_keeps_the_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let storage = FakeApi::start().await;
    storage.reject_all();
    // Another host name for the same machine: a different origin, as a storage host would be.
    let storage_url = storage
        .url("/signed/book.xlsx")
        .replace("127.0.0.1", "localhost");
    api.redirect_all_to(&storage_url);
    let auth = provider(&server);
    let client = client_for(&auth, &api);
    let token = auth.token().await.unwrap();

    let response = client
        .get(api.url("/cells/book.xlsx"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.authorizations(), [bearer(token.secret())]);
    assert_eq!(storage.authorizations(), [None], "no token left the origin");
    assert_eq!(server.request_count(), 1, "the token was not replaced");
    assert_eq!(auth.token().await.unwrap().secret(), token.secret());
}

#[tokio::test]
async fn new_authenticates_requests_to_the_base_url_origin() {
    // In production the token endpoint and the API share `https://api.aspose.cloud`; here the
    // fake token server plays both, answering 404 to the API path but recording the header.
    let server = FakeTokenServer::start().await.unwrap();
    let middleware = BearerAuth::new(provider(&server));
    assert_eq!(middleware.api_origin(), format!("http://{}", server.addr()));
    let client = reqwest_middleware::ClientBuilder::new(plain_client())
        .with(middleware)
        .build();

    client
        .get(format!("{}/cells/storage/disc", server.base_url()))
        .send()
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "the token request, then the API request");
    assert_eq!(requests[1].path(), "/v4.0/cells/storage/disc");
    let expected = bearer(&server.issued_tokens()[0]);
    assert_eq!(
        requests[1].header("authorization").map(str::to_owned),
        expected
    );
}

#[tokio::test]
async fn no_auth_mode_sends_no_header() {
    let api = FakeApi::start().await;
    let client = reqwest_middleware::ClientBuilder::new(plain_client())
        .with(BearerAuth::new(
            CellsAuth::no_auth(&api.base_url()).unwrap(),
        ))
        .build();

    let response = client
        .get(api.url("/cells/storage/disc"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.authorizations(), [None]);
}

#[tokio::test]
async fn a_callers_own_authorization_header_is_kept() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let client = client_for(&provider(&server), &api);

    client
        .get(api.url("/cells/storage/disc"))
        .header(reqwest::header::AUTHORIZATION, "Bearer the-callers-own")
        .send()
        .await
        .unwrap();

    assert_eq!(api.authorizations(), [bearer("the-callers-own")]);
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn a_401_invalidates_the_token_and_retries_once_with_a_new_one() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let auth = provider(&server);
    let client = client_for(&auth, &api);
    let first = auth.token().await.unwrap();
    api.reject(first.secret());

    let response = client
        .post(api.url("/cells/book.xlsx"))
        .body("replayable body")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let issued = server.issued_tokens();
    assert_eq!(issued.len(), 2, "one refresh");
    assert_eq!(issued[0], first.secret());
    assert_eq!(
        api.authorizations(),
        [bearer(&issued[0]), bearer(&issued[1])]
    );
    assert_eq!(api.bodies(), ["replayable body", "replayable body"]);
}

#[tokio::test]
async fn a_second_401_is_returned_without_another_retry() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    api.reject_all();
    let client = client_for(&provider(&server), &api);

    let response = client
        .get(api.url("/cells/storage/disc"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.authorizations().len(), 2, "the request and one retry");
    assert_eq!(server.request_count(), 2, "the first token and one refresh");
}

#[tokio::test]
async fn an_api_that_always_answers_401_costs_at_most_one_refresh() {
    // An API that refuses every token, as one does for an account without a subscription: a
    // refresh cannot cure that, so sequential 401s must not each cost a token request.
    const REQUESTS: usize = 50;
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    api.reject_all();
    // Frozen time: every request falls within the window in which the provider ignores a
    // report of a token that an earlier report made it fetch, whatever the machine's speed.
    let clock = ManualClock::new();
    let auth = CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(FakeTokenServer::CLIENT_SECRET)
        .base_url(server.base_url())
        .clock(&clock)
        .build()
        .unwrap();
    let client = client_for(&auth, &api);

    for request in 0..REQUESTS {
        let response = client
            .get(api.url("/cells/storage/disc"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "request {request} gets the API's answer"
        );
    }

    assert!(
        server.request_count() <= 2,
        "{} token requests for {REQUESTS} sequential 401s: expected the first token and at \
         most one refresh",
        server.request_count()
    );
    // Each request reached the API, and a replay happened only after a refresh.
    let seen = api.authorizations().len();
    assert!(
        (REQUESTS..=REQUESTS + 1).contains(&seen),
        "{seen} API requests for {REQUESTS} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_for_one_token_cause_one_refresh() {
    const REQUESTS: usize = 50;
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let auth = provider(&server);
    let client = client_for(&auth, &api);
    let first = auth.token().await.unwrap();
    api.reject(first.secret());
    // Every 401 waits until all requests have arrived, so all of them carry the first token
    // and all of them report it.
    api.hold_replies_until(REQUESTS);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let request = client.get(api.url("/cells/storage/disc"));
        requests.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = requests.join_all().await;

    assert_eq!(statuses, [StatusCode::OK; REQUESTS]);
    assert_eq!(
        server.request_count(),
        2,
        "the first token and exactly one refresh"
    );
    let issued = server.issued_tokens();
    let seen = api.authorizations();
    let count = |token: &str| seen.iter().filter(|seen| **seen == bearer(token)).count();
    assert_eq!(count(&issued[0]), REQUESTS);
    assert_eq!(count(&issued[1]), REQUESTS);
    assert_eq!(seen.len(), 2 * REQUESTS);
}

#[tokio::test]
async fn a_streaming_body_gets_the_401_back_without_a_retry() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let auth = provider(&server);
    let client = client_for(&auth, &api);
    let first = auth.token().await.unwrap();
    api.reject(first.secret());

    let response = client
        .post(api.url("/cells/book.xlsx"))
        .body(reqwest::Body::wrap(String::from("streamed once")))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.authorizations(), [bearer(first.secret())]);
    assert_eq!(api.bodies(), ["streamed once"]);
    // The rejected token was still reported: the provider has moved on to a new one.
    let next = auth.token().await.unwrap();
    assert_ne!(next.secret(), first.secret());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_token_error_stops_the_request_and_keeps_the_cells_auth_error() {
    let server = FakeTokenServer::start().await.unwrap();
    let api = FakeApi::start().await;
    let auth = CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret("not-the-secret")
        .base_url(server.base_url())
        .build()
        .unwrap();
    let client = client_for(&auth, &api);

    let error = client
        .get(api.url("/cells/storage/disc"))
        .send()
        .await
        .unwrap_err();

    let reqwest_middleware::Error::Middleware(error) = error else {
        panic!("expected a middleware error, got {error:?}");
    };
    let auth_error = error
        .downcast_ref::<cells_auth::Error>()
        .expect("the cells_auth::Error is reachable by downcast");
    assert!(auth_error.is_credentials(), "{auth_error}");
    assert!(api.authorizations().is_empty(), "nothing reached the API");
}

/// A minimal HTTP/1.1 API server: it answers every request 200, or 401 to chosen tokens, and
/// records what it received. Written on raw sockets like `FakeTokenServer`, with no framework.
mod fake_api {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, PoisonError};

    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use tokio::task::JoinSet;

    pub(crate) struct FakeApi {
        addr: SocketAddr,
        shared: Arc<Shared>,
        // Dropping the set stops the server.
        _tasks: JoinSet<()>,
    }

    struct Shared {
        state: Mutex<State>,
        arrived: watch::Sender<usize>,
    }

    #[derive(Default)]
    struct State {
        requests: Vec<Seen>,
        rejected: HashSet<String>,
        reject_all: bool,
        hold_until: usize,
        redirect_to: Option<String>,
    }

    struct Seen {
        authorization: Option<String>,
        body: String,
    }

    impl FakeApi {
        pub(crate) async fn start() -> Self {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Arc::new(Shared {
                state: Mutex::default(),
                arrived: watch::Sender::new(0),
            });
            let mut tasks = JoinSet::new();
            tasks.spawn(accept_loop(listener, Arc::clone(&shared)));
            Self {
                addr,
                shared,
                _tasks: tasks,
            }
        }

        pub(crate) fn base_url(&self) -> String {
            format!("http://{}/v4.0", self.addr)
        }

        pub(crate) fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base_url())
        }

        /// Answers 401 to requests that carry `token`.
        pub(crate) fn reject(&self, token: &str) {
            self.shared
                .lock()
                .rejected
                .insert(format!("Bearer {token}"));
        }

        /// Answers 401 to every request.
        pub(crate) fn reject_all(&self) {
            self.shared.lock().reject_all = true;
        }

        /// Answers every request with `302 Found` to `location`.
        pub(crate) fn redirect_all_to(&self, location: &str) {
            self.shared.lock().redirect_to = Some(location.to_owned());
        }

        /// Holds each reply until `count` requests have arrived.
        pub(crate) fn hold_replies_until(&self, count: usize) {
            self.shared.lock().hold_until = count;
        }

        /// The `Authorization` header of each request, in arrival order.
        pub(crate) fn authorizations(&self) -> Vec<Option<String>> {
            let state = self.shared.lock();
            state
                .requests
                .iter()
                .map(|seen| seen.authorization.clone())
                .collect()
        }

        /// The body of each request, in arrival order.
        pub(crate) fn bodies(&self) -> Vec<String> {
            let state = self.shared.lock();
            state
                .requests
                .iter()
                .map(|seen| seen.body.clone())
                .collect()
        }
    }

    impl Shared {
        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            // A failed assertion in one task must not hide the state from the others.
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Records a request and decides its answer: a redirect when one is set, 401 for a
        /// rejected token, else 200.
        fn answer(&self, seen: Seen) -> (u16, Option<String>, usize) {
            let mut state = self.lock();
            let rejected = state.reject_all
                || seen
                    .authorization
                    .as_ref()
                    .is_some_and(|value| state.rejected.contains(value));
            state.requests.push(seen);
            self.arrived.send_replace(state.requests.len());
            let status = match (&state.redirect_to, rejected) {
                (Some(_), _) => 302,
                (None, true) => 401,
                (None, false) => 200,
            };
            (status, state.redirect_to.clone(), state.hold_until)
        }
    }

    async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // A broken connection ends only itself; the client sees the error.
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    async fn serve(stream: TcpStream, shared: Arc<Shared>) {
        let mut stream = BufReader::new(stream);
        while let Some(seen) = read_request(&mut stream).await {
            let (status, location, hold_until) = shared.answer(seen);
            let mut arrived = shared.arrived.subscribe();
            // The sender lives in `shared`, so this only ends by reaching the count.
            let _ = arrived.wait_for(|count| *count >= hold_until).await;
            let (reason, extra) = match status {
                401 => (
                    "Unauthorized",
                    "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n".to_owned(),
                ),
                302 => (
                    "Found",
                    format!("Location: {}\r\n", location.unwrap_or_default()),
                ),
                _ => ("OK", String::new()),
            };
            let reply = format!("HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 2\r\n\r\nok");
            if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Reads one request; `None` at the end of the connection or on malformed input.
    async fn read_request<S: AsyncBufRead + Unpin>(stream: &mut S) -> Option<Seen> {
        let request_line = read_line(stream).await?;
        if request_line.is_empty() {
            return None;
        }
        let mut authorization = None;
        let mut content_length = 0;
        let mut chunked = false;
        loop {
            let line = read_line(stream).await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.to_owned()),
                "content-length" => content_length = value.parse().ok()?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(stream).await?
        } else {
            read_exact(stream, content_length).await?
        };
        Some(Seen {
            authorization,
            body: String::from_utf8(body).ok()?,
        })
    }

    async fn read_chunked<S: AsyncBufRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(stream).await?;
            let size_hex = size_line.split(';').next()?.trim();
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            if size == 0 {
                // No trailers are sent by reqwest: just the final empty line.
                read_line(stream).await?;
                return Some(body);
            }
            body.extend(read_exact(stream, size).await?);
            read_line(stream).await?;
        }
    }

    async fn read_exact<S: AsyncBufRead + Unpin>(stream: &mut S, len: usize) -> Option<Vec<u8>> {
        let mut bytes = vec![0; len];
        stream.read_exact(&mut bytes).await.ok()?;
        Some(bytes)
    }

    /// One line without its CRLF; `None` when the connection ends first.
    async fn read_line<S: AsyncBufRead + Unpin>(stream: &mut S) -> Option<String> {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
