//! The cache: one request for many callers, refresh ahead, static stability, invalidation.

mod support;

use std::time::Duration;

use cells_auth::testing::{FakeTokenServer, Gate, ManualClock, Reply};
use support::{advance, provider, settle};

const HOUR: Duration = Duration::from_secs(3600);

/// `callers` concurrent `token()` calls, all started before the server (holding its answer
/// behind `gate`) answers the first request.
async fn concurrent_tokens(
    auth: &cells_auth::CellsAuth,
    callers: usize,
    server: &FakeTokenServer,
    gate: &Gate,
) -> Vec<Result<cells_auth::AccessToken, cells_auth::Error>> {
    let callers: Vec<_> = (0..callers)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.token().await })
        })
        .collect();
    server.wait_for_requests(1).await;
    gate.open();
    let mut outcomes = Vec::with_capacity(callers.len());
    for caller in callers {
        outcomes.push(caller.await.unwrap());
    }
    outcomes
}

#[tokio::test]
async fn two_calls_make_one_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());
    let first = auth.token().await.unwrap();
    let second = auth.token().await.unwrap();
    assert_eq!(first.secret(), second.secret());
    assert_eq!(first.secret(), server.issued_tokens()[0]);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn clones_share_one_cache() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());
    let clone = auth.clone();
    auth.token().await.unwrap();
    clone.token().await.unwrap();
    assert_eq!(server.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_on_a_cold_cache_make_one_request() {
    let server = FakeTokenServer::start().await.unwrap();
    // Hold the answer until every caller is waiting, so they really overlap.
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let auth = provider(&server, &ManualClock::new());

    let outcomes = concurrent_tokens(&auth, 1000, &server, &gate).await;
    let mut secrets = std::collections::BTreeSet::new();
    for outcome in outcomes {
        secrets.insert(outcome.unwrap().secret().to_owned());
    }
    assert_eq!(server.request_count(), 1, "requests for 1,000 cold callers");
    assert_eq!(secrets.len(), 1, "every caller got the same token");
}

#[tokio::test]
async fn concurrent_callers_share_one_failure_too() {
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::oauth_error(400, "invalid_client").after(&gate));
    let auth = provider(&server, &ManualClock::new());
    for outcome in concurrent_tokens(&auth, 50, &server, &gate).await {
        assert!(outcome.unwrap_err().is_credentials());
    }
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn refresh_ahead_serves_the_old_token_while_the_new_one_is_fetched() {
    let server = FakeTokenServer::start().await.unwrap(); // one-hour tokens
    let clock = ManualClock::new();
    // Request timeouts follow the manual clock: the held refresh must outlast the 190 s below.
    let auth = support::builder(&server, &clock)
        .deadline(HOUR)
        .build()
        .unwrap();
    let old = auth.token().await.unwrap();

    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    // Past the refresh point (five minutes before expiry, minus jitter) but before expiry: the
    // next caller starts the refresh and is served the old token without waiting.
    advance(&clock, HOUR - Duration::from_secs(200)).await;
    assert_eq!(auth.token().await.unwrap().secret(), old.secret());
    server.wait_for_requests(2).await;

    // The refresh is in flight and held; callers still get the old token at once.
    for _ in 0..3 {
        assert_eq!(auth.token().await.unwrap().secret(), old.secret());
    }

    gate.open();
    // Once the old token is past use, callers get the new one (waiting for it if needed).
    advance(&clock, Duration::from_secs(190)).await;
    let new = auth.token().await.unwrap();
    assert_ne!(new.secret(), old.secret());
    assert_eq!(new.secret(), server.issued_tokens()[1]);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn the_refresh_point_scales_with_the_lifetime() {
    let server = FakeTokenServer::builder()
        .expires_in(6)
        .start()
        .await
        .unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let first = auth.token().await.unwrap();
    // A six-second token is not treated as expired on arrival.
    assert_eq!(auth.token().await.unwrap().secret(), first.secret());
    assert_eq!(server.request_count(), 1);

    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    // Half-life is the refresh point for short tokens; 5.5 s in, it is still served.
    advance(&clock, Duration::from_millis(5500)).await;
    assert_eq!(auth.token().await.unwrap().secret(), first.secret());
    server.wait_for_requests(2).await;
    assert_eq!(auth.token().await.unwrap().secret(), first.secret());
    gate.open();
}

/// Attempts per fetch, as the crate documents.
const ATTEMPTS_PER_FETCH: usize = 5;

#[tokio::test]
async fn a_failing_refresh_keeps_serving_the_valid_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let token = auth.token().await.unwrap();

    for _ in 0..100 {
        server.push_reply(Reply::status(503));
    }
    advance(&clock, HOUR - Duration::from_secs(200)).await;
    assert_eq!(auth.token().await.unwrap().secret(), token.secret());
    // The background refresh spends its attempts and fails.
    server.wait_for_requests(1 + ATTEMPTS_PER_FETCH).await;
    settle().await;
    for _ in 0..5 {
        assert_eq!(auth.token().await.unwrap().secret(), token.secret());
    }
    // The next attempt is spaced out: nothing more while time stands still.
    assert_eq!(server.request_count(), 1 + ATTEMPTS_PER_FETCH);

    // A quarter of the remaining time later, it tries again, still serving the old token.
    advance(&clock, Duration::from_secs(60)).await;
    assert_eq!(auth.token().await.unwrap().secret(), token.secret());
    server.wait_for_requests(1 + 2 * ATTEMPTS_PER_FETCH).await;
    assert_eq!(auth.token().await.unwrap().secret(), token.secret());
}

#[tokio::test]
async fn an_expired_token_is_never_served() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let first = auth.token().await.unwrap();
    advance(&clock, HOUR).await;
    let next = auth.token().await.unwrap();
    assert_ne!(next.secret(), first.secret());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn when_refreshes_fail_until_expiry_the_error_surfaces() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    auth.token().await.unwrap();
    for _ in 0..100 {
        server.push_reply(Reply::status(503));
    }
    advance(&clock, HOUR).await;
    let error = auth.token().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.status(), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_refreshes_once_however_many_callers_report_it() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());
    let rejected = auth.token().await.unwrap();

    // A hundred callers whose requests were refused report the token at once, then each asks
    // for a new one.
    let reports: Vec<_> = (0..100)
        .map(|_| {
            let auth = auth.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move {
                auth.invalidate(&rejected);
                auth.token().await.unwrap()
            })
        })
        .collect();
    let mut fresh_tokens = std::collections::HashSet::new();
    for report in reports {
        fresh_tokens.insert(report.await.unwrap().secret().to_owned());
    }
    assert_eq!(fresh_tokens.len(), 1, "every caller got the one new token");
    let fresh = auth.token().await.unwrap();
    assert!(fresh_tokens.contains(fresh.secret()));
    assert_ne!(fresh.secret(), rejected.secret());
    // Late reports of the old token change nothing.
    auth.invalidate(&rejected);
    assert_eq!(auth.token().await.unwrap().secret(), fresh.secret());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_token_outlives_the_runtime_that_fetched_it() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());

    // Fetch on a runtime that then shuts down. It runs on a blocking thread so that this
    // runtime keeps serving the fake server meanwhile.
    let first = {
        let auth = auth.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(auth.token()).unwrap()
        })
        .await
        .unwrap()
    };
    // This runtime is served the same token, without a request.
    assert_eq!(auth.token().await.unwrap().secret(), first.secret());
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn expires_in_as_a_string_and_the_jwt_exp_fallback() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    server.push_reply(Reply::token_with_expires_in(serde_json::json!("120")));
    let auth = provider(&server, &clock);
    let token = auth.token().await.unwrap();
    let left = token
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(120) && left > Duration::from_secs(100));

    // Without expires_in the JWT's exp claim (one hour here) gives the lifetime.
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::token_with_expires_in(serde_json::Value::Null));
    let auth = provider(&server, &clock);
    let token = auth.token().await.unwrap();
    let left = token
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3000) && left <= HOUR, "{left:?}");
}

/// A program that drives every call with `block_on` on a current-thread runtime never lets
/// background tasks run between calls; expiry and refresh must not depend on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_caller_sees_refreshes_and_expiry() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let (first, second) = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = runtime.block_on(auth.token()).unwrap();
        for _ in 0..100 {
            assert_eq!(
                runtime.block_on(auth.token()).unwrap().secret(),
                first.secret()
            );
        }
        clock.advance(HOUR);
        let second = runtime.block_on(auth.token()).unwrap();
        (first, second)
    })
    .await
    .unwrap();
    assert_ne!(first.secret(), second.secret());
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_token_that_expires_before_it_arrives_is_refused() {
    let server = FakeTokenServer::builder()
        .expires_in(10)
        .start()
        .await
        .unwrap();
    let clock = ManualClock::new();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let auth = provider(&server, &clock);
    let waiting = tokio::spawn({
        let auth = auth.clone();
        async move { auth.token().await }
    });
    server.wait_for_requests(1).await;
    clock.advance(Duration::from_secs(20));
    gate.open();
    let error = waiting.await.unwrap().unwrap_err();
    assert!(
        error.to_string().contains("expired before it arrived"),
        "{error}"
    );
}

#[tokio::test]
async fn another_providers_token_does_not_invalidate_this_one() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let ours = provider(&server, &clock);
    let theirs = provider(&server, &clock);
    let our_token = ours.token().await.unwrap();
    let their_token = theirs.token().await.unwrap();
    ours.invalidate(&their_token);
    assert_eq!(ours.token().await.unwrap().secret(), our_token.secret());
    assert_eq!(server.request_count(), 2);
}

/// Fails the test instead of hanging it: a minute is far beyond any outcome expected here.
async fn no_hang<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the call hung")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A program that drives every call with `block_on` on a current-thread runtime runs spawned
/// tasks only while a call is pending: the refresh must still complete before expiry, carried
/// forward by the calls themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_caller_gets_its_refresh_ahead_of_expiry() {
    const MAX_CALLS: usize = 1_000_000;
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let (first, refreshed) = tokio::task::spawn_blocking(move || {
        let runtime = current_thread_runtime();
        let first = runtime.block_on(auth.token()).unwrap();
        // Into the refresh window, two minutes before the token stops being served.
        clock.advance(HOUR - Duration::from_secs(150));
        for _ in 0..MAX_CALLS {
            let token = runtime.block_on(auth.token()).unwrap();
            if token.secret() != first.secret() {
                return (first, token);
            }
        }
        panic!("still no new token after {MAX_CALLS} calls in the refresh window");
    })
    .await
    .unwrap();
    assert_ne!(first.secret(), refreshed.secret());
    assert_eq!(server.request_count(), 2);
}

/// A fetch spawned on a current-thread runtime that nobody drives again never starts; a caller
/// on a runtime that runs must take it over rather than wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_left_unstarted_on_an_idle_runtime_is_taken_over() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());
    let first = auth.token().await.unwrap();

    // The invalidation spawns the new fetch on this runtime, which is then never driven.
    let idle = {
        let auth = auth.clone();
        let first = first.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = current_thread_runtime();
            let _entered = runtime.enter();
            auth.invalidate(&first);
            drop(_entered);
            runtime
        })
        .await
        .unwrap()
    };

    let second = no_hang(auth.token()).await.unwrap();
    assert_ne!(second.secret(), first.secret());
    assert_eq!(server.request_count(), 2, "one fetch, taken over, not two");
    idle.shutdown_background();
}

/// The same when the idle runtime started a refresh before it stopped being driven: a caller
/// that needs a token does not wait for a refresh that only an idle runtime would run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_stuck_midway_on_an_idle_runtime_is_taken_over() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let first = auth.token().await.unwrap();
    clock.advance(HOUR - Duration::from_secs(150));

    // Served the current token, this call starts the refresh on its runtime and gives it one
    // step; then that runtime is never driven again.
    let idle = {
        let auth = auth.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = current_thread_runtime();
            let served = runtime.block_on(auth.token()).unwrap();
            (runtime, served)
        })
        .await
        .unwrap()
    };
    assert_eq!(idle.1.secret(), first.secret());

    // The token runs out: this caller must get a new one, not wait for the stuck refresh.
    clock.advance(Duration::from_secs(150));
    let second = no_hang(auth.token()).await.unwrap();
    assert_ne!(second.secret(), first.secret());
    idle.0.shutdown_background();
}

/// A fetch spawned on a runtime that has shut down is dropped before it starts; its waiters and
/// the next callers must not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_dropped_before_it_starts_does_not_strand_its_waiters() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = provider(&server, &ManualClock::new());
    let first = auth.token().await.unwrap();

    let gone = {
        let auth = auth.clone();
        let first = first.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let handle = runtime.handle().clone();
            runtime.shutdown_background();
            // The invalidation spawns the new fetch on the runtime that is gone.
            let _entered = handle.enter();
            auth.invalidate(&first);
        })
    };
    gone.await.unwrap();

    let second = no_hang(auth.token()).await.unwrap();
    assert_ne!(second.secret(), first.secret());
    assert_eq!(server.request_count(), 2);
}

/// The deadline may be as long as a `Duration` goes; no time arithmetic may overflow.
#[tokio::test]
async fn the_longest_deadline_is_accepted() {
    let server = FakeTokenServer::start().await.unwrap();
    let auth = support::builder(&server, &ManualClock::new())
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    let token = no_hang(auth.token()).await.unwrap();
    assert_eq!(token.secret(), server.issued_tokens()[0]);
}

/// Monotonic clocks stop while a laptop or VM sleeps; a token that expired during a suspend
/// must not be served after the resume.
#[tokio::test]
async fn a_token_that_expired_during_a_suspend_is_not_served() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    let auth = provider(&server, &clock);
    let before = auth.token().await.unwrap();
    // Cached on this thread, then the machine sleeps for two hours.
    assert_eq!(auth.token().await.unwrap().secret(), before.secret());
    clock.suspend(2 * HOUR);
    let after = auth.token().await.unwrap();
    assert_ne!(after.secret(), before.secret());
    assert_eq!(server.request_count(), 2);
}

/// Aspose locks a client ID out for ten minutes (429, `Retry-After: 600`) after five failed
/// requests; asking again before then only prolongs the lockout.
#[tokio::test]
async fn a_rate_limit_lockout_is_remembered_until_it_ends() {
    let server = FakeTokenServer::start().await.unwrap();
    let clock = ManualClock::new();
    server.push_reply(Reply::status(429).header("retry-after", "600"));
    let auth = provider(&server, &clock);
    let first = auth.token().await.unwrap_err();
    assert_eq!(first.status(), Some(429));
    assert_eq!(first.retry_after(), Some(Duration::from_secs(600)));

    // A thousand calls over the next minute: not one request, and each caller learns how long
    // the lockout still lasts.
    let mut last_wait = Duration::from_secs(600);
    for _ in 0..1000 {
        clock.advance(Duration::from_millis(60));
        let error = auth.token().await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let wait = error.retry_after().expect("the remaining wait");
        assert!(wait <= last_wait && !wait.is_zero(), "{wait:?}");
        last_wait = wait;
    }
    assert_eq!(last_wait, Duration::from_secs(540));
    assert_eq!(server.request_count(), 1);

    // Once it has passed, the next caller asks again.
    clock.advance(Duration::from_secs(540));
    auth.token().await.unwrap();
    assert_eq!(server.request_count(), 2);
}
