//! `RedisServer`: a real `redis-server` on 127.0.0.1 for tests of Redis stores (features
//! `testing` and `redis`).

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::store::StoreKey;

/// The line `redis-server` (and `valkey-server`) logs once it accepts connections.
const READY_LINE: &str = "Ready to accept connections";

/// How long start-up may take before the helper gives up. A local server is ready in
/// milliseconds; this only bounds a test that would otherwise hang on a server that neither
/// starts nor exits.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at start-up with a fresh port: another process may take the free port found
/// between probing it and the server binding it.
const START_ATTEMPTS: usize = 5;

/// Connect and read timeout of the helper's own inspection commands, so that a broken server
/// fails the test instead of hanging it.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A real `redis-server` process on 127.0.0.1, on a free port, with persistence off
/// (`--save '' --appendonly no`): each test gets its own empty server. It is killed when
/// dropped.
///
/// Start-up waits for the server's "Ready to accept connections" line, not for a fixed time.
/// The methods block (briefly, on loopback), which is fine in `#[tokio::test]`s: the server is
/// another process.
///
/// Needs the `redis-server` binary on `PATH` (Debian package `redis-server`; `.ci/run`
/// installs it).
///
/// ```no_run
/// use cells_auth::store::{RedisStore, TokenStore};
/// use cells_auth::testing::{RedisServer, store_key};
/// # async fn demo() {
/// let server = RedisServer::start();
/// let store = RedisStore::new(&server.url()).unwrap();
/// store.save(&store_key("demo"), b"sealed", std::time::Duration::from_secs(60)).await.unwrap();
/// assert_eq!(server.raw_values(), vec![b"sealed".to_vec()]);
/// # }
/// ```
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server that requires `password` (`requirepass`) from every client.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password.to_owned()))
    }

    fn start_inner(password: Option<String>) -> Self {
        let mut last_output = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(port, password.as_deref()) {
                Ok(child) => {
                    return Self {
                        port,
                        password,
                        child: Some(child),
                    };
                }
                Err(output) => last_output = output,
            }
        }
        panic!(
            "redis-server did not start after {START_ATTEMPTS} attempts; it said:\n{last_output}"
        );
    }

    /// The URL to give [`RedisStore::new`](crate::store::RedisStore::new):
    /// `redis://127.0.0.1:<port>/`, with the password if the server requires one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits for it to exit; clients see their connections drop and new
    /// ones refused. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: the point is that it no longer runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts a new, empty one on the same port, as a Redis
    /// restart without persistence would.
    ///
    /// # Panics
    /// When the server does not start again (for instance, another process took the port).
    pub fn restart(&mut self) {
        self.stop();
        match spawn(self.port, self.password.as_deref()) {
            Ok(child) => self.child = Some(child),
            Err(output) => panic!(
                "redis-server did not restart on port {}; it said:\n{output}",
                self.port
            ),
        }
    }

    /// Freezes the server (`SIGSTOP`): it keeps its port and accepts connections, but answers
    /// nothing until [`resume`](Self::resume), like a Redis stalled by a long command or a
    /// saturated host.
    ///
    /// # Panics
    /// When the server is not running or the signal cannot be sent.
    #[cfg(unix)]
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a [paused](Self::pause) server answer again (`SIGCONT`).
    ///
    /// # Panics
    /// When the server is not running or the signal cannot be sent.
    #[cfg(unix)]
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    #[cfg(unix)]
    fn signal(&self, signal: rustix::process::Signal) {
        let child = self
            .child
            .as_ref()
            .expect("RedisServer: the server is not running");
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
            .unwrap_or_else(|error| panic!("RedisServer: cannot signal the server: {error}"));
    }

    /// Makes the server refuse every write, as a Redis that reached its `maxmemory` with the
    /// `noeviction` policy does (`OOM command not allowed`).
    ///
    /// # Panics
    /// When the server does not accept the configuration.
    pub fn fill_up(&self) {
        let _: () = self.inspect(
            ::redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("noeviction"),
        );
        let _: () = self.inspect(::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"));
    }

    /// Every key in the database, sorted.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.inspect(::redis::cmd("KEYS").arg("*"));
        keys.sort();
        keys
    }

    /// The raw bytes of every value in the database, ordered by key: exactly what a store
    /// wrote, to check what it leaves in Redis.
    ///
    /// # Panics
    /// When the server cannot be reached, or a key holds something other than a string.
    pub fn raw_values(&self) -> Vec<Vec<u8>> {
        self.keys()
            .iter()
            .filter_map(|key| self.inspect::<Option<Vec<u8>>>(::redis::cmd("GET").arg(key)))
            .collect()
    }

    /// The time left before `key` expires (`PTTL`): `None` when the key does not exist or has
    /// no expiry.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let millis: i64 = self.inspect(::redis::cmd("PTTL").arg(key));
        u64::try_from(millis).ok().map(Duration::from_millis)
    }

    /// Deletes `key`, as an expiry would; returns whether it existed.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn delete(&self, key: &str) -> bool {
        self.inspect::<i64>(::redis::cmd("DEL").arg(key)) == 1
    }

    /// Runs one command on a new connection of its own, independent of any store's.
    fn inspect<T: ::redis::FromRedisValue>(&self, command: &::redis::Cmd) -> T {
        let client = ::redis::Client::open(self.url())
            .unwrap_or_else(|error| panic!("RedisServer: bad URL: {error}"));
        let mut connection = client
            .get_connection_with_timeout(INSPECT_TIMEOUT)
            .unwrap_or_else(|error| panic!("RedisServer on port {}: {error}", self.port));
        connection
            .set_read_timeout(Some(INSPECT_TIMEOUT))
            .and_then(|()| command.query(&mut connection))
            .unwrap_or_else(|error| panic!("RedisServer on port {}: {error}", self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// A [`StoreKey`] for tests of a store, made from `label` (hex-encoded, as real keys are hex).
/// cells-auth derives the real ones from the credentials.
pub fn store_key(label: &str) -> StoreKey {
    let hex = label.bytes().map(|byte| format!("{byte:02x}")).collect();
    StoreKey::from_hex(hex)
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"))
}

/// Starts `redis-server` on `port` and waits for its ready line. On failure, kills it and
/// returns what it printed.
fn spawn(port: u16, password: Option<&str>) -> Result<Child, String> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        // Any file the server might still write goes to the temporary directory, not the
        // test's working directory.
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(password) = password {
        command.args(["--requirepass", password]);
    }
    let mut child = command.spawn().unwrap_or_else(|error| {
        panic!(
            "cannot run redis-server ({error}); the Redis tests need it: install the Debian \
             package `redis-server` (`apt-get install -y redis-server`, as .ci/run does)"
        )
    });

    // A thread reads the log to its end, so that the server never blocks on a full pipe, and
    // passes each line on until start-up is settled.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Once start-up is settled nobody listens; keep draining regardless.
            let _ = lines_tx.send(line);
        }
    });

    let mut output = String::new();
    loop {
        match lines_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) if line.contains(READY_LINE) => return Ok(child),
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                output.push_str("(not ready in time)\n");
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(output)
}
