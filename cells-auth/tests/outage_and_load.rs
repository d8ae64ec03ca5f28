//! An outage of the token endpoint, and a million reads across refreshes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cells_auth::testing::{FakeTokenServer, ManualClock, Reply};
use support::{advance, provider};

const HOUR: Duration = Duration::from_secs(3600);

/// With a valid token cached and every request failing, no caller fails until the token
/// really expires, and the refresh attempts stay few.
#[tokio::test]
async fn an_outage_costs_no_failed_call_until_the_token_expires() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let token = auth.token().await.unwrap();
    for _ in 0..10_000 {
        server.push_reply(Reply::status(503));
    }

    // Walk through the hour in 5-second steps, calling token() at each.
    let step = Duration::from_secs(5);
    let mut calls = 0;
    let usable = HOUR - Duration::from_secs(30); // the crate's expiry safety margin for 1 h
    while clock.elapsed() + step < usable {
        advance(&clock, step).await;
        let served = auth
            .token()
            .await
            .expect("no failed call while the token is valid");
        assert_eq!(served.secret(), token.secret());
        calls += 1;
    }
    let refresh_requests = server.request_count() - 1;
    println!(
        "outage: {calls} calls, 0 failed, {refresh_requests} refresh requests (refreshing \
         starts about five minutes before expiry)"
    );
    assert!(calls > 600);
    // Refreshing starts ~5 minutes before expiry; attempts then come at a quarter of the
    // remaining time (at least 1 s apart), five tries each: a few dozen requests, not thousands.
    assert!(refresh_requests >= 5, "the refresh was attempted");
    assert!(refresh_requests <= 200, "{refresh_requests} requests");

    // Once it has really expired, the failure surfaces.
    advance(&clock, Duration::from_secs(60)).await;
    assert!(auth.token().await.unwrap_err().is_transient());
}

/// A million `token()` calls over 64 tasks while the token is refreshed at least 20 times:
/// no errors, and one request per refresh plus the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_reads_across_twenty_refreshes() {
    const CALLS: usize = 1_000_000;
    const TASKS: usize = 64;
    const REFRESHES: usize = 20;

    let server = Arc::new(FakeTokenServer::start().await.unwrap());
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    auth.token().await.unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let refreshed = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..TASKS)
        .map(|_| {
            let (auth, calls, refreshed) = (auth.clone(), calls.clone(), refreshed.clone());
            tokio::spawn(async move {
                let mut errors = 0;
                loop {
                    for _ in 0..1000 {
                        if auth.token().await.is_err() {
                            errors += 1;
                        }
                    }
                    let done = calls.fetch_add(1000, Ordering::Relaxed) + 1000;
                    if done >= CALLS && refreshed.load(Ordering::Acquire) {
                        return errors;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    // Force refreshes by moving time past each token's refresh point (not its expiry).
    for refresh in 1..=REFRESHES {
        clock.advance(HOUR - Duration::from_secs(200));
        server.wait_for_requests(refresh + 1).await;
        // Wait until the new token is served before moving on.
        let newest = loop {
            let issued = server.issued_tokens();
            if issued.len() == refresh + 1 {
                break issued[refresh].clone();
            }
            tokio::task::yield_now().await;
        };
        while auth.token().await.unwrap().secret() != newest {
            tokio::task::yield_now().await;
        }
    }
    refreshed.store(true, Ordering::Release);

    let mut errors = 0;
    for reader in readers {
        errors += reader.await.unwrap();
    }
    let total = calls.load(Ordering::Relaxed);
    println!(
        "load: {total} calls over {TASKS} tasks, {errors} errors, {} requests for {REFRESHES} refreshes",
        server.request_count()
    );
    assert!(total >= CALLS);
    assert_eq!(errors, 0);
    assert!(server.request_count() <= REFRESHES + 1);
    assert_eq!(server.issued_tokens().len(), REFRESHES + 1);
}
