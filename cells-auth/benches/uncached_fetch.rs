//! One uncached fetch through `CellsAuth` against the raw request it wraps: a `reqwest` POST of
//! the same form (`grant_type=client_credentials`, `client_id`, `client_secret`) to the same
//! `FakeTokenServer`, with the JSON answer parsed.
//!
//! Two pairs, so that both sides always use the same kind of HTTP client:
//! - `fresh_client`: a fresh provider per fetch, which builds its own reqwest client, against a
//!   raw POST through a reqwest client built per fetch with the same settings.
//! - `shared_client`: a fresh provider per fetch given one shared client through
//!   `CellsAuthBuilder::http_client`, against a raw POST through that same client.
//!
//! Every fetch opens a new connection: the shared client keeps no idle connection. Reusing one
//! against `FakeTokenServer` measures something else: the server writes the head and the body of
//! an answer separately on a socket without `TCP_NODELAY`, so on a kept-alive connection Nagle's
//! algorithm holds the body back until the client's delayed ACK, about 25 ms later. The summary
//! shows that effect once, as a diagnostic.
//!
//! Only the fetch is timed; building the provider or client happens before the clock starts and
//! is reported separately in the summary. Every fetch runs inside a task on a multi-thread
//! runtime, as an application's would. Criterion reports the four variants; afterwards the bench
//! repeats them in interleaved rounds and prints the ratios, with diagnostics: the raw POST run in
//! a task of its own (as `CellsAuth` runs its fetch), and everything again on a current-thread
//! runtime, where no fetch has to wake another worker thread. Run with
//! `cargo bench -p cells-auth --bench uncached_fetch`.

use std::time::{Duration, Instant};

use cells_auth::CellsAuth;
use cells_auth::testing::FakeTokenServer;
use criterion::{Criterion, criterion_group, criterion_main};

mod support;
use support::{config, is_benchmarking, median, verdict};

/// Target from the brief: a fetch through `CellsAuth` takes at most this many times the raw POST.
const TARGET_OVERHEAD: f64 = 1.10;

/// Interleaved rounds for the printed ratios; the median round counts.
const SUMMARY_ROUNDS: usize = 15;
/// Fetches per variant in one summary round.
const SUMMARY_FETCHES: u32 = 50;
/// Fetches per side for the keep-alive diagnostic, each about 25 ms against the fake server.
const KEEP_ALIVE_FETCHES: u32 = 10;

/// The settings `cells-auth` gives the client it builds (see `src/tls.rs`).
fn reqwest_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(cells_auth_gen::USER_AGENT)
}

fn reqwest_client() -> reqwest::Client {
    reqwest_builder().build().expect("reqwest client")
}

fn provider(base_url: &str, client: Option<&reqwest::Client>) -> CellsAuth {
    let mut builder = CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(FakeTokenServer::CLIENT_SECRET)
        .base_url(base_url);
    if let Some(client) = client {
        builder = builder.http_client(client.clone());
    }
    builder.build().expect("provider")
}

/// The request `CellsAuth` makes, written by hand: POST the form, check the status, parse the
/// JSON, take the token and its lifetime.
async fn raw_fetch(client: &reqwest::Client, token_url: &str) -> (String, i64) {
    let response = client
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", FakeTokenServer::CLIENT_ID),
            ("client_secret", FakeTokenServer::CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token request");
    assert!(response.status().is_success(), "{}", response.status());
    let body: serde_json::Value = response.json().await.expect("JSON answer");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    (token, expires_in)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    CellsAuthFreshClient,
    RawFreshClient,
    /// Diagnostic: the raw POST in a task of its own, awaited through its `JoinHandle`, the way
    /// `CellsAuth` runs each fetch (so that a caller giving up does not cancel it for others).
    RawFreshClientOwnTask,
    CellsAuthSharedClient,
    RawSharedClient,
    /// Diagnostic: both sides through one client that keeps its connection alive.
    CellsAuthKeepAlive,
    RawKeepAlive,
}

/// The variants criterion measures.
const MAIN_VARIANTS: [(Variant, &str); 4] = [
    (Variant::CellsAuthFreshClient, "fresh_client/cells_auth"),
    (Variant::RawFreshClient, "fresh_client/raw_reqwest"),
    (Variant::CellsAuthSharedClient, "shared_client/cells_auth"),
    (Variant::RawSharedClient, "shared_client/raw_reqwest"),
];

/// The variants of the interleaved summary.
const SUMMARY_VARIANTS: [(Variant, &str); 5] = [
    MAIN_VARIANTS[0],
    MAIN_VARIANTS[1],
    (
        Variant::RawFreshClientOwnTask,
        "fresh_client/raw_reqwest_own_task",
    ),
    MAIN_VARIANTS[2],
    MAIN_VARIANTS[3],
];

struct Bench {
    runtime: tokio::runtime::Runtime,
    server: FakeTokenServer,
    /// Keeps no idle connection: every fetch connects anew, as with a fresh client.
    shared_client: reqwest::Client,
    keep_alive_client: reqwest::Client,
}

impl Bench {
    fn new(multi_thread: bool) -> Self {
        let mut builder = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        let runtime = builder.enable_all().build().expect("tokio runtime");
        let server = runtime
            .block_on(FakeTokenServer::start())
            .expect("fake token server");
        Self {
            runtime,
            server,
            shared_client: reqwest_builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("reqwest client"),
            keep_alive_client: reqwest_client(),
        }
    }

    /// The total time of `fetches` fetches of `variant`, each timed from just before the request
    /// until the token is parsed and dropped.
    fn fetch(&self, variant: Variant, fetches: u64) -> Duration {
        let base_url = self.server.base_url();
        let token_url = format!("{base_url}/cells/connect/token");
        let shared = match variant {
            Variant::CellsAuthKeepAlive | Variant::RawKeepAlive => self.keep_alive_client.clone(),
            _ => self.shared_client.clone(),
        };
        let before = self.server.request_count();
        let total = self
            .runtime
            .block_on(self.runtime.spawn(async move {
                let mut total = Duration::ZERO;
                for _ in 0..fetches {
                    total += fetch_once(variant, &base_url, &token_url, &shared).await;
                }
                total
            }))
            .expect("fetch task");
        assert_eq!(
            self.server.request_count() - before,
            usize::try_from(fetches).expect("fits"),
            "one request per uncached fetch"
        );
        total
    }
}

/// One fetch of `variant`; returns the time it took, construction excluded.
async fn fetch_once(
    variant: Variant,
    base_url: &str,
    token_url: &str,
    shared: &reqwest::Client,
) -> Duration {
    match variant {
        Variant::CellsAuthFreshClient
        | Variant::CellsAuthSharedClient
        | Variant::CellsAuthKeepAlive => {
            let client = (variant != Variant::CellsAuthFreshClient).then_some(shared);
            let auth = provider(base_url, client);
            let start = Instant::now();
            let token = auth.token().await.expect("a token");
            drop(std::hint::black_box(token));
            start.elapsed()
        }
        Variant::RawFreshClientOwnTask => {
            let client = reqwest_client();
            let token_url = token_url.to_owned();
            let start = Instant::now();
            let token = tokio::spawn(async move { raw_fetch(&client, &token_url).await })
                .await
                .expect("fetch task");
            drop(std::hint::black_box(token));
            start.elapsed()
        }
        Variant::RawFreshClient | Variant::RawSharedClient | Variant::RawKeepAlive => {
            let fresh;
            let client = if variant == Variant::RawFreshClient {
                fresh = reqwest_client();
                &fresh
            } else {
                shared
            };
            let start = Instant::now();
            let token = raw_fetch(client, token_url).await;
            drop(std::hint::black_box(token));
            start.elapsed()
        }
    }
}

fn bench_uncached_fetch(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncached_fetch");
    for (variant, name) in MAIN_VARIANTS {
        // A server per variant: the fake server keeps every request it sees.
        let bench = Bench::new(true);
        group.bench_function(name, |b| b.iter_custom(|iters| bench.fetch(variant, iters)));
    }
    group.finish();

    if is_benchmarking() {
        summary();
    }
}

/// Median microseconds per fetch of each summary variant, in interleaved rounds.
fn interleaved(bench: &Bench) -> Vec<f64> {
    let mut samples = vec![Vec::new(); SUMMARY_VARIANTS.len()];
    for _ in 0..SUMMARY_ROUNDS {
        for (index, (variant, _)) in SUMMARY_VARIANTS.iter().enumerate() {
            let total = bench.fetch(*variant, u64::from(SUMMARY_FETCHES));
            samples[index].push(total.as_secs_f64() * 1e6 / f64::from(SUMMARY_FETCHES));
        }
    }
    samples.iter().map(|values| median(values)).collect()
}

/// The variants again, interleaved round by round, on both runtime flavours; then the ratios
/// the target is stated in, the diagnostics, and what construction costs.
fn summary() {
    let multi = Bench::new(true);
    let multi_medians = interleaved(&multi);
    let current_medians = interleaved(&Bench::new(false));

    println!();
    println!(
        "uncached_fetch summary: median of {SUMMARY_ROUNDS} interleaved rounds of \
         {SUMMARY_FETCHES} fetches per variant; microseconds per fetch, construction not timed"
    );
    println!(
        "{:<36} {:>14} {:>16}",
        "variant", "multi_thread", "current_thread"
    );
    for (index, (_, name)) in SUMMARY_VARIANTS.iter().enumerate() {
        println!(
            "{name:<36} {:>11.1} us {:>13.1} us",
            multi_medians[index], current_medians[index]
        );
    }
    let ratio = |medians: &[f64], over: usize, under: usize| medians[over] / medians[under];
    println!(
        "cells_auth / raw, fresh client each:   {:.3}x multi_thread, {:.3}x current_thread",
        ratio(&multi_medians, 0, 1),
        ratio(&current_medians, 0, 1)
    );
    println!(
        "cells_auth / raw, one shared client:   {:.3}x multi_thread, {:.3}x current_thread",
        ratio(&multi_medians, 3, 4),
        ratio(&current_medians, 3, 4)
    );
    println!(
        "cells_auth / raw POST in its own task: {:.3}x multi_thread, {:.3}x current_thread \
         (diagnostic: the cost of running the fetch in a task of its own)",
        ratio(&multi_medians, 0, 2),
        ratio(&current_medians, 0, 2)
    );

    // Keep-alive, a few fetches per side: see the module documentation.
    let keep_alive = |variant| {
        multi
            .fetch(variant, u64::from(KEEP_ALIVE_FETCHES))
            .as_secs_f64()
            * 1e6
            / f64::from(KEEP_ALIVE_FETCHES)
    };
    let raw_keep_alive = keep_alive(Variant::RawKeepAlive);
    let cells_keep_alive = keep_alive(Variant::CellsAuthKeepAlive);
    println!(
        "diagnostic, one client reusing its connection: cells_auth {cells_keep_alive:.1} us, raw \
         {raw_keep_alive:.1} us per fetch{}",
        if raw_keep_alive > 5_000.0 {
            " (Nagle + delayed ACK in FakeTokenServer, not the client)"
        } else {
            ""
        }
    );

    let base_url = multi.server.base_url();
    let build_provider = median_time(|| drop(provider(&base_url, None)));
    let build_provider_shared =
        median_time(|| drop(provider(&base_url, Some(&multi.shared_client))));
    let build_client = median_time(|| drop(reqwest_client()));
    println!(
        "construction (not in the figures above): provider with its own client {:.1} us, \
         provider given a client {:.1} us, reqwest client alone {:.1} us",
        build_provider * 1e6,
        build_provider_shared * 1e6,
        build_client * 1e6
    );

    println!("targets (multi_thread runtime):");
    let fresh = ratio(&multi_medians, 0, 1);
    let shared = ratio(&multi_medians, 3, 4);
    verdict(
        &format!("cells_auth <= {TARGET_OVERHEAD}x raw POST, fresh client each"),
        &format!("{fresh:.3}x"),
        fresh <= TARGET_OVERHEAD,
    );
    verdict(
        &format!("cells_auth <= {TARGET_OVERHEAD}x raw POST, shared client"),
        &format!("{shared:.3}x"),
        shared <= TARGET_OVERHEAD,
    );
}

/// The median of 31 timings of `work`, in seconds.
fn median_time(mut work: impl FnMut()) -> f64 {
    let samples: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(&samples)
}

criterion_group! {
    name = benches;
    config = config(Duration::from_secs(3), 30);
    targets = bench_uncached_fetch
}
criterion_main!(benches);
