//! One token for a fleet of real processes sharing a `FileStore` or a `RedisStore`.
//!
//! Each fleet member is this test binary run again as a child process: the test
//! `fleet_member` does nothing unless `FLEET_MEMBER` is set, and then it builds a provider on
//! the store the parent names, makes its concurrent `token()` calls and writes what it got to
//! a file. The token server (`FakeTokenServer`) and Redis (a real `redis-server` on a free
//! loopback port) run in the parent, which counts the requests.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use cells_auth::CellsAuth;
use cells_auth::store::FileStore;
use cells_auth::testing::{FakeTokenServer, Gate, Reply};

/// What the parent tells a member, through the environment.
const MEMBER: &str = "FLEET_MEMBER";
const STORE: &str = "FLEET_STORE";
const BASE_URL: &str = "FLEET_BASE_URL";
const SECRET: &str = "FLEET_SECRET";
const CALLERS: &str = "FLEET_CALLERS";
const DEADLINE_MS: &str = "FLEET_DEADLINE_MS";
const OUTPUT: &str = "FLEET_OUTPUT";

/// A fleet member: `CALLERS` concurrent `token()` calls on one provider; writes one line per
/// caller to `OUTPUT`: `ok <token>` or `err <message>`.
#[test]
fn fleet_member() {
    let Ok(_) = std::env::var(MEMBER) else {
        return; // Run as an ordinary test: nothing to do.
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let builder = CellsAuth::builder()
        .client_id(FakeTokenServer::CLIENT_ID)
        .client_secret(var(SECRET))
        .base_url(var(BASE_URL))
        .deadline(Duration::from_millis(var(DEADLINE_MS).parse().unwrap()));
    let store = var(STORE);
    let builder = match store.split_once(':') {
        Some(("file", dir)) => builder.store(FileStore::new(dir).unwrap()),
        #[cfg(feature = "redis")]
        Some(("redis", _)) => builder.store(cells_auth::store::RedisStore::new(&store).unwrap()),
        _ => panic!("unknown store {store}"),
    };
    let auth = builder.build().unwrap();
    let callers: usize = var(CALLERS).parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lines = runtime.block_on(async {
        let calls: Vec<_> = (0..callers)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.token().await })
            })
            .collect();
        let mut lines = String::new();
        for call in calls {
            match call.await.unwrap() {
                Ok(token) => lines.push_str(&format!("ok {}\n", token.secret())),
                Err(error) => lines.push_str(&format!("err {error}\n")),
            }
        }
        lines
    });
    std::fs::write(var(OUTPUT), lines).unwrap();
}

/// How to start fleet members against one server and store.
struct Fleet {
    store: String,
    base_url: String,
    secret: String,
    callers: usize,
    deadline: Duration,
    outputs: tempfile::TempDir,
}

impl Fleet {
    fn new(store: String, server: &FakeTokenServer) -> Self {
        Self {
            store,
            base_url: server.base_url(),
            secret: FakeTokenServer::CLIENT_SECRET.to_owned(),
            callers: 200,
            deadline: Duration::from_secs(20),
            outputs: tempfile::tempdir().unwrap(),
        }
    }

    fn spawn(&self, number: usize) -> Member {
        let output = self.outputs.path().join(format!("member-{number}"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["fleet_member", "--exact", "--test-threads=1"])
            .env(MEMBER, "1")
            .env(STORE, &self.store)
            .env(BASE_URL, &self.base_url)
            .env(SECRET, &self.secret)
            .env(CALLERS, self.callers.to_string())
            .env(DEADLINE_MS, self.deadline.as_millis().to_string())
            .env(OUTPUT, &output)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Member { child, output }
    }

    fn spawn_many(&self, count: usize) -> Vec<Member> {
        (0..count).map(|number| self.spawn(number)).collect()
    }
}

struct Member {
    child: Child,
    output: PathBuf,
}

impl Member {
    /// Waits for the member to exit (on a blocking thread, so the fake server keeps serving)
    /// and returns its callers' lines.
    async fn results(mut self) -> Vec<String> {
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, self.output)
        })
        .await
        .unwrap();
        assert!(status.0.success(), "a fleet member failed: {:?}", status.0);
        read_lines(&status.1)
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every caller of every member got the same token, and it is the server's first.
async fn assert_one_token(members: Vec<Member>, server: &FakeTokenServer, callers: usize) {
    let mut tokens = std::collections::HashSet::new();
    let mut calls = 0;
    for member in members {
        for line in member.results().await {
            let token = line.strip_prefix("ok ").unwrap_or_else(|| panic!("{line}"));
            tokens.insert(token.to_owned());
            calls += 1;
        }
    }
    assert_eq!(calls, callers);
    assert_eq!(tokens.len(), 1, "one token for the whole fleet");
    assert!(tokens.contains(&server.issued_tokens()[0]));
}

fn file_store(dir: &tempfile::TempDir) -> String {
    format!("file:{}", dir.path().join("store").display())
}

/// Asserts that no file under `dir` holds the token or the secret.
fn assert_nothing_readable_in(dir: &Path, tokens: &[String]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            support::assert_no_secrets(&String::from_utf8_lossy(&bytes), tokens);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_fleet_of_processes_makes_one_request_through_files() {
    let server = FakeTokenServer::start().await.unwrap();
    // Held until every member is running, so that they really start together.
    let gate = Gate::new();
    server.push_reply(
        Reply::token()
            .after(&gate)
            .delay(Duration::from_millis(200)),
    );
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(file_store(&dir), &server);
    let members = fleet.spawn_many(6);
    server.wait_for_requests(1).await;
    gate.open();
    assert_one_token(members, &server, 6 * fleet.callers).await;
    assert_eq!(server.request_count(), 1);
    assert_nothing_readable_in(&dir.path().join("store"), &server.issued_tokens());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_costs_the_fleet_one_request_through_files() {
    let server = FakeTokenServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(file_store(&dir), &server);
    fleet.secret = "a-rotated-secret".to_owned();
    fleet.callers = 5;
    for member in fleet.spawn_many(8) {
        for line in member.results().await {
            assert!(
                line.starts_with("err ") && line.contains("rejected"),
                "{line}"
            );
        }
    }
    assert_eq!(server.request_count(), 1, "one request per latch period");
}

/// A process killed with SIGKILL while it holds the lock and fetches: the others take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_mid_fetch_costs_one_more_request_through_files() {
    let server = FakeTokenServer::start().await.unwrap();
    // The first request never gets an answer: its process is killed while waiting for it.
    let never = Gate::new();
    server.push_reply(Reply::token().after(&never));
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(file_store(&dir), &server);
    fleet.callers = 20;
    fleet.deadline = Duration::from_secs(4);
    let mut holder = fleet.spawn(0);
    server.wait_for_requests(1).await;
    let others = fleet.spawn_many(4);
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let started = std::time::Instant::now();
    for member in others {
        for line in member.results().await {
            assert!(line.starts_with("ok "), "{line}");
        }
    }
    assert!(
        server.request_count() <= 2,
        "{} requests",
        server.request_count()
    );
    // Within the lease (half the deadline) and a fetch; generous for a loaded machine.
    assert!(
        started.elapsed() < fleet.deadline,
        "{:?}",
        started.elapsed()
    );
}

#[cfg(feature = "redis")]
mod redis {
    use cells_auth::testing::RedisServer;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cold_fleet_of_processes_makes_one_request_through_redis() {
        let redis = RedisServer::start();
        let server = FakeTokenServer::start().await.unwrap();
        let gate = Gate::new();
        server.push_reply(
            Reply::token()
                .after(&gate)
                .delay(Duration::from_millis(200)),
        );
        let fleet = Fleet::new(redis.url(), &server);
        let members = fleet.spawn_many(6);
        server.wait_for_requests(1).await;
        gate.open();
        assert_one_token(members, &server, 6 * fleet.callers).await;
        assert_eq!(server.request_count(), 1);
        let tokens = server.issued_tokens();
        for value in redis.raw_values() {
            support::assert_no_secrets(&String::from_utf8_lossy(&value), &tokens);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_killed_mid_fetch_costs_one_more_request_through_redis() {
        let redis = RedisServer::start();
        let server = FakeTokenServer::start().await.unwrap();
        let never = Gate::new();
        server.push_reply(Reply::token().after(&never));
        let mut fleet = Fleet::new(redis.url(), &server);
        fleet.callers = 20;
        fleet.deadline = Duration::from_secs(4);
        let mut holder = fleet.spawn(0);
        server.wait_for_requests(1).await;
        let others = fleet.spawn_many(4);
        holder.child.kill().unwrap();
        holder.child.wait().unwrap();
        for member in others {
            for line in member.results().await {
                assert!(line.starts_with("ok "), "{line}");
            }
        }
        assert!(
            server.request_count() <= 2,
            "{} requests",
            server.request_count()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_down_or_restarted_is_no_dependency() {
        let mut redis = RedisServer::start();
        let server = FakeTokenServer::start().await.unwrap();
        // On the real clock: the store's operation timeouts must really pass.
        let url = redis.url();
        let provider = || {
            CellsAuth::builder()
                .client_id(FakeTokenServer::CLIENT_ID)
                .client_secret(FakeTokenServer::CLIENT_SECRET)
                .base_url(server.base_url())
                .store(cells_auth::store::RedisStore::new(&url).unwrap())
                .build()
                .unwrap()
        };
        // Down before the run: every call succeeds, each provider fetching on its own.
        redis.stop();
        let first = provider();
        first.token().await.unwrap();
        // Restarted (empty: no persistence) mid-run: still no error, and the store is used
        // again.
        redis.restart();
        let second = provider();
        let third = provider();
        let token = second.token().await.unwrap();
        assert_eq!(third.token().await.unwrap().secret(), token.secret());
        assert_eq!(server.request_count(), 2);
        // Down again during use: a provider whose token is invalidated still gets one.
        redis.stop();
        second.invalidate(&token);
        second.token().await.unwrap();
        assert_eq!(server.request_count(), 3);
    }

    /// A provider on a real clock (store timeouts must really pass) that shares `redis`.
    fn on_redis(server: &FakeTokenServer, redis: &RedisServer) -> CellsAuth {
        CellsAuth::builder()
            .client_id(FakeTokenServer::CLIENT_ID)
            .client_secret(FakeTokenServer::CLIENT_SECRET)
            .base_url(server.base_url())
            .store(cells_auth::store::RedisStore::new(&redis.url()).unwrap())
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_redis_is_no_dependency() {
        let redis = RedisServer::start();
        let server = FakeTokenServer::start().await.unwrap();
        redis.pause();
        // Each store operation gives up after its short timeout; the calls still succeed.
        let first = on_redis(&server, &redis);
        let second = on_redis(&server, &redis);
        first.token().await.unwrap();
        second.token().await.unwrap();
        redis.resume();
        assert_eq!(server.request_count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_redis_is_no_dependency() {
        let redis = RedisServer::start();
        let server = FakeTokenServer::start().await.unwrap();
        redis.fill_up();
        let first = on_redis(&server, &redis);
        let second = on_redis(&server, &redis);
        first.token().await.unwrap();
        second.token().await.unwrap();
        // Nothing could be written, so each fetched its own.
        assert_eq!(server.request_count(), 2);
        assert!(redis.keys().is_empty(), "{:?}", redis.keys());
    }
}
