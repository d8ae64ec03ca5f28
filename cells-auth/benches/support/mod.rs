//! Helpers shared by the benchmarks: how a summary tells a real run from a smoke test, and how
//! it prints its figures.
#![allow(dead_code)] // Each benchmark uses a different subset.

use std::time::Duration;

use cells_auth::testing::FakeTokenServer;
use criterion::Criterion;

/// A multi-thread runtime with `workers` worker threads (one per core when `None`) and a
/// `FakeTokenServer` running on it; keep the runtime alive while the server is used.
pub(crate) fn serving(workers: Option<usize>) -> (tokio::runtime::Runtime, FakeTokenServer) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let server = runtime
        .block_on(FakeTokenServer::start())
        .expect("fake token server");
    (runtime, server)
}

/// Criterion's settings for a bench: a one-second warm-up, then `samples` samples over
/// `measurement`.
pub(crate) fn config(measurement: Duration, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
        .sample_size(samples)
}

/// `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once without it,
/// as does `cargo bench -- --test`, and then a summary's extra seconds are not wanted.
pub(crate) fn is_benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|arg| arg == "--bench")
        && !args.iter().any(|arg| arg == "--list" || arg == "--test")
}

/// The median (the upper one for an even count); `values` must not be empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// One line of a summary: whether `measured` meets `target`.
pub(crate) fn verdict(target: &str, measured: &str, pass: bool) {
    let outcome = if pass { "PASS" } else { "MISS" };
    println!("  {outcome}  {target}: {measured}");
}
