//! Code that is not ours runs inside the provider: `tracing` subscribers and a user-supplied
//! HTTP client. Whatever it does (panic, print the provider), no caller may hang and every
//! failure must be reported as what it is.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cells_auth::CellsAuth;
use cells_auth::testing::{FakeTokenServer, Gate, ManualClock, Reply};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// A subscriber layer that does something nasty when it sees an event whose message contains
/// `trigger`.
struct Nasty {
    trigger: &'static str,
    action: Action,
}

enum Action {
    Panic,
    /// Formats this provider with `{:?}`, as a subscriber that records context might.
    PrintProvider(Arc<OnceLock<CellsAuth>>),
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Nasty {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                if field.name() == "message" {
                    message = format!("{value:?}");
                }
            },
        );
        if !message.contains(self.trigger) {
            return;
        }
        match &self.action {
            Action::Panic => panic!("the subscriber panicked on {message:?}"),
            Action::PrintProvider(auth) => {
                if let Some(auth) = auth.get() {
                    let printed = format!("{auth:?}");
                    assert!(printed.contains("CellsAuth"));
                }
            }
        }
    }
}

fn subscriber(layer: Nasty) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(layer)
}

/// A subscriber that panics while the fetch's outcome is logged must not leave the other
/// callers asleep.
#[tokio::test]
async fn a_panicking_subscriber_strands_no_waiter() {
    let _guard = tracing::subscriber::set_default(subscriber(Nasty {
        trigger: "token fetched",
        action: Action::Panic,
    }));
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let auth = support::provider(&server, &ManualClock::new());
    // On this current-thread runtime every task sees the subscriber.
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.token().await })
        })
        .collect();
    server.wait_for_requests(1).await;
    gate.open();
    let mut served = 0;
    let mut panicked = 0;
    for caller in callers {
        match tokio::time::timeout(Duration::from_secs(60), caller).await {
            Ok(Ok(token)) => {
                token.unwrap();
                served += 1;
            }
            Ok(Err(join_error)) => {
                assert!(join_error.is_panic());
                panicked += 1;
            }
            Err(_) => panic!("a caller was left waiting"),
        }
    }
    // The panic reaches the one caller that ran the fetch, and nobody else.
    assert_eq!((served, panicked), (19, 1));
    assert_eq!(server.request_count(), 1);
}

/// A subscriber that prints the provider while the provider logs must not deadlock on the
/// provider's own lock: every event of a cold fetch, an expiry and an invalidation.
#[test]
fn a_subscriber_that_prints_the_provider_does_not_deadlock() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // On a thread of its own, so that a deadlock fails the test instead of hanging it.
    std::thread::spawn(move || {
        let provider = Arc::new(OnceLock::new());
        let _guard = tracing::subscriber::set_default(subscriber(Nasty {
            trigger: "",
            action: Action::PrintProvider(Arc::clone(&provider)),
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = FakeTokenServer::start().await.unwrap();
            let clock = ManualClock::new();
            let auth = support::provider(&server, &clock);
            provider.set(auth.clone()).unwrap();
            let first = auth.token().await.unwrap();
            clock.advance(Duration::from_secs(3000)); // refresh ahead
            auth.token().await.unwrap();
            clock.advance(Duration::from_secs(3600)); // expiry
            let second = auth.token().await.unwrap();
            auth.invalidate(&second);
            auth.invalidate(&first);
            auth.token().await.unwrap();
        });
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the provider deadlocked with a subscriber that prints it");
}

/// A panic in the fetch (here a user-supplied client's redirect policy) is reported as a
/// panic, once: not as a runtime shutdown, and not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_http_client_is_reported_once_as_a_panic() {
    let server = FakeTokenServer::start().await.unwrap();
    server.push_reply(Reply::status(302).header("location", "/elsewhere"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(|_| {
            panic!("the redirect policy is broken")
        }))
        .no_proxy()
        .build()
        .unwrap();
    let auth = support::builder(&server, &ManualClock::new())
        .http_client(client)
        .build()
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(60), auth.token())
        .await
        .expect("the call hung")
        .unwrap_err();
    assert!(
        matches!(error, cells_auth::Error::Panicked { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("redirect policy is broken"),
        "{error}"
    );
    assert!(!error.is_transient());
    assert_eq!(server.request_count(), 1);
}
