//! Wall time of the `cells-auth token` command, as a script runs it: a process started, a token
//! printed, the process gone. Three cases against a `FakeTokenServer` on 127.0.0.1:
//!
//! - `warm_cache`: the cache directory (the library's `FileStore`) holds a valid token, so the
//!   run makes no request;
//! - `cold_cache`: the store is cleared (`FileStore::clear`) before each run, so every run
//!   fetches and writes the store;
//! - `no_cache`: `--no-cache`, a fetch and nothing written.
//!
//! Criterion reports each; afterwards the bench runs the three in interleaved rounds and prints
//! the medians, and the server's request count, which must match the runs that fetch. Run with
//! `cargo bench -p cells-auth --features cli --bench cli_token`.

use std::process::Command;
use std::time::{Duration, Instant};

use cells_auth::store::FileStore;
use cells_auth::testing::FakeTokenServer;
use criterion::{Criterion, criterion_group, criterion_main};

mod support;
use support::{config, is_benchmarking, median, serving};

/// Interleaved rounds for the printed medians.
const SUMMARY_ROUNDS: usize = 41;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    /// The store holds a valid token.
    Warm,
    /// The store is cleared first.
    Cold,
    /// `--no-cache`.
    Bypassed,
}

const CASES: [(Case, &str); 3] = [
    (Case::Warm, "warm_cache"),
    (Case::Cold, "cold_cache"),
    (Case::Bypassed, "no_cache"),
];

struct Bench {
    server: FakeTokenServer,
    cache_dir: tempfile::TempDir,
    /// The store in `cache_dir`, as the tool opens it; only to clear it.
    store: FileStore,
    // The server's tasks run here for as long as the bench does.
    _runtime: tokio::runtime::Runtime,
}

impl Bench {
    fn new() -> Self {
        let (runtime, server) = serving(Some(1));
        let cache_dir = tempfile::tempdir().expect("temporary cache directory");
        let store = FileStore::new(cache_dir.path()).expect("an absolute directory");
        Self {
            server,
            cache_dir,
            store,
            _runtime: runtime,
        }
    }

    /// One run of `cells-auth token`; panics unless it printed a token.
    fn run(&self, case: Case) {
        if case == Case::Cold {
            self.store.clear().expect("clear the store");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_cells-auth"));
        for name in cells_auth::CLIENT_ID_VARS
            .into_iter()
            .chain(cells_auth::CLIENT_SECRET_VARS)
            .chain(cells_auth::BASE_URL_VARS)
            .chain(["CELLS_AUTH_STORE"])
        {
            command.env_remove(name);
        }
        command
            .env(cells_auth::CLIENT_ID_VARS[0], FakeTokenServer::CLIENT_ID)
            .env(
                cells_auth::CLIENT_SECRET_VARS[0],
                FakeTokenServer::CLIENT_SECRET,
            )
            .env(cells_auth::BASE_URL_VARS[0], self.server.base_url())
            .arg("token");
        if case == Case::Bypassed {
            command.arg("--no-cache");
        } else {
            command.arg("--cache-dir").arg(self.cache_dir.path());
        }
        let output = command.output().expect("cells-auth runs");
        assert!(
            output.status.success() && output.stdout.len() > 20,
            "cells-auth token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn bench_cli_token(c: &mut Criterion) {
    let bench = Bench::new();
    // Fills the store for the warm case, and proves the command works before timing it.
    bench.run(Case::Cold);
    // The warm case must be answered by the store alone, in criterion's test mode too.
    let before = bench.server.request_count();
    bench.run(Case::Warm);
    assert_eq!(
        bench.server.request_count(),
        before,
        "a warm run made a request"
    );
    let mut group = c.benchmark_group("cli_token");
    for (case, name) in CASES {
        group.bench_function(name, |b| b.iter(|| bench.run(case)));
    }
    group.finish();
    if is_benchmarking() {
        summary(&bench);
    }
}

/// The three cases in interleaved rounds, so background load hits them alike; medians in ms.
fn summary(bench: &Bench) {
    bench.run(Case::Cold);
    let before = bench.server.request_count();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    for _ in 0..SUMMARY_ROUNDS {
        // The warm case first in each round: the round before ended with a store that holds a
        // token (the cold case wrote it, the no-cache case left it alone).
        for (index, (case, _)) in CASES.iter().enumerate() {
            let start = Instant::now();
            bench.run(*case);
            samples[index].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let requests = bench.server.request_count() - before;
    println!("\ncells-auth token, median wall time of {SUMMARY_ROUNDS} interleaved rounds:");
    for ((_, name), times) in CASES.iter().zip(&samples) {
        println!("  {name:<11} {:7.2} ms", median(times));
    }
    println!(
        "  requests: {requests} for {SUMMARY_ROUNDS} rounds (expected {}: the cold and no-cache \
         runs fetch, the warm ones do not)",
        2 * SUMMARY_ROUNDS
    );
    assert_eq!(requests, 2 * SUMMARY_ROUNDS, "a warm run made a request");
}

criterion_group! {
    name = benches;
    config = config(Duration::from_secs(5), 30);
    targets = bench_cli_token
}
criterion_main!(benches);
