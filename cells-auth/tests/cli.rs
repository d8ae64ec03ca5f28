//! The `cells-auth` binary, run for real against a `FakeTokenServer` on 127.0.0.1 (and a real
//! `redis-server` for `--store`).
//!
//! Each test has its own temporary cache directory and passes credentials through the child's
//! environment only, after removing every credential and store variable, so the developer's
//! environment and cache never take part. Every child runs under a hard time limit, so a
//! regression that blocks fails the test instead of hanging it.

#![cfg(feature = "cli")]

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use cells_auth::testing::{FakeTokenServer, Gate, RedisServer, Reply};
use rustix::fs::{CWD, FileType, Mode, OFlags};
use tempfile::TempDir;

/// The variable that names a Redis store.
const STORE_VAR: &str = "CELLS_AUTH_STORE";
/// The library's debug line (`-v`) when a process adopts a token from the store.
const ADOPTED_LOG: &str = "adopted a token from the store";
/// The library's debug line (`-v`) when a process starts waiting for another one's fetch.
const LOCK_WAIT_LOG: &str = "another process holds the token store's lock; waiting for its token";
/// The longest any child may run before the test kills it and fails: far beyond any run here,
/// so it only ends a run that blocks.
const HARD_LIMIT: Duration = Duration::from_secs(60);
/// How long a run whose `--timeout` is a second may take at most, process start and exit
/// included; a run that waited for a lease (10 s) or another process (30 s) fails this.
const ONE_SECOND_RUN_LIMIT: Duration = Duration::from_secs(4);

/// Every variable the tool reads credentials, the endpoint or the store from.
fn tool_vars() -> impl Iterator<Item = &'static str> {
    cells_auth::CLIENT_ID_VARS
        .into_iter()
        .chain(cells_auth::CLIENT_SECRET_VARS)
        .chain(cells_auth::BASE_URL_VARS)
        .chain([STORE_VAR])
}

/// A temporary home for one test: the cache directory and any files live under it.
struct Sandbox {
    root: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// The cache directory passed with `--cache-dir`; it does not exist until the tool
    /// creates it.
    fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// The default cache directory's parent, `XDG_CACHE_HOME` of every child.
    fn xdg(&self) -> PathBuf {
        self.root.path().join("xdg")
    }

    /// `cells-auth` with no credentials or store in its environment and `XDG_CACHE_HOME`
    /// inside the sandbox, so that even a run without `--cache-dir` stays in it.
    fn bare(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("cells-auth"));
        for name in tool_vars() {
            command.env_remove(name);
        }
        command.env("XDG_CACHE_HOME", self.xdg());
        command
    }

    /// `cells-auth token <args>` with `server`'s credentials in the environment.
    fn token_without_store(
        &self,
        server: &FakeTokenServer,
        args: &[&str],
    ) -> std::process::Command {
        let mut command = self.bare();
        command
            .env("ASPOSE_CLOUD_API_URL", server.base_url())
            .env("ASPOSE_CLOUD_CLIENT_ID", FakeTokenServer::CLIENT_ID)
            .env("ASPOSE_CLOUD_CLIENT_SECRET", FakeTokenServer::CLIENT_SECRET)
            .arg("token")
            .args(args);
        command
    }

    /// `cells-auth token --cache-dir <sandbox> <args>` with `server`'s credentials in the
    /// environment.
    fn token(&self, server: &FakeTokenServer, args: &[&str]) -> std::process::Command {
        self.token_with(
            &server.base_url(),
            FakeTokenServer::CLIENT_ID,
            FakeTokenServer::CLIENT_SECRET,
            args,
        )
    }

    /// Like [`token`](Self::token) with explicit credentials.
    fn token_with(
        &self,
        base_url: &str,
        client_id: &str,
        client_secret: &str,
        args: &[&str],
    ) -> std::process::Command {
        let mut command = self.bare();
        command
            .env("ASPOSE_CLOUD_API_URL", base_url)
            .env("ASPOSE_CLOUD_CLIENT_ID", client_id)
            .env("ASPOSE_CLOUD_CLIENT_SECRET", client_secret)
            .arg("token")
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .args(args);
        command
    }

    /// The files in the cache directory.
    fn cache_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.cache_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// The one store entry in the cache directory (`<key>.entry`; its name is derived from the
    /// credentials under a secret-derived key, so a test finds it rather than computes it).
    fn only_entry(&self) -> PathBuf {
        let entries: Vec<PathBuf> = self
            .cache_files()
            .into_iter()
            .filter(|file| file.extension().is_some_and(|ext| ext == "entry"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.into_iter().next().unwrap()
    }
}

/// Runs the command to completion on a blocking thread, so the fake server keeps serving on
/// the test's runtime meanwhile; a run longer than [`HARD_LIMIT`] is killed.
async fn run(command: std::process::Command) -> Output {
    run_assert(Command::from_std(command)).await
}

/// [`run`] for an `assert_cmd` command (to give it standard input).
async fn run_assert(mut command: Command) -> Output {
    command.timeout(HARD_LIMIT);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// [`run`], also returning how long the run took.
async fn run_timed(command: std::process::Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = run(command).await;
    (output, started.elapsed())
}

/// A `cells-auth` process running in the background, its standard error read line by line as
/// it comes so that a test can wait for a log line instead of sleeping.
struct Background {
    child: std::process::Child,
    started: Instant,
    stderr_lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr_seen: Vec<String>,
}

impl Background {
    fn spawn(mut command: std::process::Command) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, stderr_lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            started,
            stderr_lines,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits until a line of standard error contains `text`.
    async fn wait_for_stderr(&mut self, text: &str) {
        let found = tokio::time::timeout(HARD_LIMIT, async {
            while let Some(line) = self.stderr_lines.recv().await {
                let found = line.contains(text);
                self.stderr_seen.push(line);
                if found {
                    return true;
                }
            }
            false
        })
        .await;
        if found != Ok(true) {
            let _ = self.child.kill();
            panic!("no {text:?} on stderr: {}", self.stderr_seen.join("\n"));
        }
    }

    /// Waits for the process to exit and returns all it wrote and how long it ran; kills it
    /// and fails after [`HARD_LIMIT`].
    async fn finish(mut self) -> (Output, Duration) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let mut child = self.child;
        let waited = tokio::time::timeout(
            HARD_LIMIT,
            tokio::task::spawn_blocking(move || {
                let mut stdout = Vec::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_end(&mut stdout)
                    .unwrap();
                (child.wait().unwrap(), stdout)
            }),
        )
        .await;
        let Ok(joined) = waited else {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("the process ran longer than {HARD_LIMIT:?}");
        };
        let (status, stdout) = joined.unwrap();
        let elapsed = self.started.elapsed();
        while let Some(line) = self.stderr_lines.recv().await {
            self.stderr_seen.push(line);
        }
        let mut stderr = self.stderr_seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        let output = Output {
            status,
            stdout,
            stderr: stderr.into_bytes(),
        };
        (output, elapsed)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts success and returns standard output.
fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        stderr(output)
    );
    stdout(output)
}

/// Asserts a failure with `code`, nothing on standard output, and none of `secrets` nor any
/// token `servers` issued on standard error; returns standard error.
fn failure(output: &Output, code: i32, secrets: &[&str], servers: &[&FakeTokenServer]) -> String {
    let error = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {error}");
    assert_eq!(stdout(output), "", "nothing on stdout on failure");
    assert_no_secrets(&error, secrets, servers);
    error
}

fn assert_one_error_line(error: &str) {
    assert!(error.starts_with("cells-auth: error: "), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
}

fn assert_no_secrets(text: &str, secrets: &[&str], servers: &[&FakeTokenServer]) {
    assert_no_secret_bytes(text.as_bytes(), secrets, servers);
}

/// Like [`assert_no_secrets`] for bytes that need not be text (a file, a Redis value).
fn assert_no_secret_bytes(bytes: &[u8], secrets: &[&str], servers: &[&FakeTokenServer]) {
    let contains = |needle: &str| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    for secret in secrets {
        assert!(!contains(secret), "a secret leaked");
    }
    for server in servers {
        for token in server.issued_tokens() {
            assert!(!contains(&token), "a token leaked");
        }
    }
}

/// The token line `server` issued as its `index`th token.
fn token_line(server: &FakeTokenServer, index: usize) -> String {
    format!("{}\n", server.issued_tokens()[index])
}

/// Asserts that `line` is a token line of one of the tokens `server` issued. (A token for a
/// reply held behind a gate counts as issued when the request arrives, so indexes depend on
/// arrival order.)
fn assert_issued(server: &FakeTokenServer, line: &str) {
    let issued = server.issued_tokens();
    assert!(
        issued.iter().any(|token| format!("{token}\n") == line),
        "not a token the server issued"
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 3339 of `unix` by rearranging `httpdate`'s independent formatting
/// ("Wed, 25 Nov 2026 17:00:00 GMT" to "2026-11-25T17:00:00Z").
fn rfc3339_via_httpdate(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix));
    let parts: Vec<&str> = http.split(' ').collect();
    let month = MONTHS.iter().position(|name| *name == parts[2]).unwrap() + 1;
    format!("{}-{month:02}-{}T{}Z", parts[3], parts[1], parts[4])
}

/// A port on 127.0.0.1 on which nothing listens: one the OS just handed out, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn prints_the_token_raw_as_json_and_as_a_header() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();

    let raw = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(server.issued_tokens().len(), 1);
    assert_eq!(raw, token_line(&server, 0));

    let explicit_raw = success(&run(sandbox.token(&server, &["--format", "raw"])).await);
    assert_eq!(explicit_raw, raw);

    let header = success(&run(sandbox.token(&server, &["--format", "header"])).await);
    assert_eq!(
        header,
        format!("Authorization: Bearer {}\n", server.issued_tokens()[0])
    );

    let before = unix_now();
    let json = success(&run(sandbox.token(&server, &["--format", "json"])).await);
    let after = unix_now();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["access_token"], server.issued_tokens()[0].as_str());
    assert_eq!(value["token_type"], "bearer");
    let expires_in = value["expires_in"].as_u64().unwrap();
    assert!(expires_in <= 3600 && expires_in > 3000, "{expires_in}");
    // `expires_at` is `expires_in` after the moment the tool printed, which lies between
    // `before` and `after`.
    let expires_at = value["expires_at"].as_str().unwrap();
    assert!(
        (before..=after).any(|now| rfc3339_via_httpdate(now + expires_in) == expires_at),
        "{expires_at} is not {expires_in}s after a moment in {before}..={after}"
    );
    assert_eq!(
        value.as_object().unwrap().len(),
        4,
        "no other fields: {json}"
    );

    // All four runs shared one token request through the store.
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_warm_cache_makes_no_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let first = success(&run(sandbox.token(&server, &[])).await);
    let second = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(first, second);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn no_cache_requests_a_token_every_time_and_writes_nothing() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let mut printed = Vec::new();
    for _ in 0..2 {
        let command = sandbox.token_without_store(&server, &["--no-cache"]);
        printed.push(success(&run(command).await));
    }
    assert_eq!(server.request_count(), 2);
    assert_eq!(printed, [token_line(&server, 0), token_line(&server, 1)]);
    assert!(!sandbox.xdg().exists());
    assert!(!sandbox.cache_dir().exists());
}

#[tokio::test]
async fn cache_clear_removes_the_cached_tokens() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    let entry = sandbox.only_entry();
    // A file that is not the store's stays.
    let notes = sandbox.cache_dir().join("notes.txt");
    fs::write(&notes, "mine").unwrap();

    let mut clear = sandbox.bare();
    clear
        .args(["cache", "clear", "--cache-dir"])
        .arg(sandbox.cache_dir());
    let printed = success(&run(clear).await);
    assert!(
        printed.starts_with("removed 1 cache entry from "),
        "{printed}"
    );
    // The lock file stays too: the store never removes one (a process could hold it).
    let left = sandbox.cache_files();
    assert!(!left.contains(&entry), "{left:?}");
    assert!(left.contains(&notes), "{left:?}");
    assert!(
        left.iter()
            .all(|file| *file == notes || file.extension().is_some_and(|ext| ext == "lock")),
        "{left:?}"
    );

    // The next run has to ask again.
    let token = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, token_line(&server, 1));
}

#[tokio::test]
async fn twenty_processes_on_a_cold_cache_make_one_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    // Start all twenty before waiting for any.
    let processes: Vec<Background> = (0..20)
        .map(|_| Background::spawn(sandbox.token(&server, &[])))
        .collect();
    let mut outputs = Vec::new();
    for process in processes {
        outputs.push(process.finish().await.0);
    }

    assert_eq!(server.request_count(), 1);
    let expected = token_line(&server, 0);
    for output in &outputs {
        assert_eq!(success(output), expected);
    }
}

/// While one process's request hangs and then fails, processes waiting on the store's lock for
/// the same credentials report the same kind of failure, with the same exit status, without
/// sending requests of their own: the library remembers the failure in the store.
#[tokio::test]
async fn waiters_report_the_lock_holder_s_failure_without_asking_again() {
    for (reply, code) in [
        (Reply::status(503).header("Retry-After", "60"), 4),
        (Reply::oauth_error(400, "invalid_client"), 3),
    ] {
        let server = FakeTokenServer::start().await.unwrap();
        let gate = Gate::new();
        server.push_reply(reply.after(&gate));
        let sandbox = Sandbox::new();

        let holder = Background::spawn(sandbox.token(&server, &[]));
        // Its request has arrived, so it holds the lock.
        server.wait_for_requests(1).await;
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let mut waiter = Background::spawn(sandbox.token(&server, &["-v"]));
            waiter.wait_for_stderr(LOCK_WAIT_LOG).await;
            waiters.push(waiter);
        }
        gate.open();

        let secrets = [FakeTokenServer::CLIENT_SECRET];
        let error = failure(&holder.finish().await.0, code, &secrets, &[&server]);
        assert_one_error_line(&error);
        for waiter in waiters {
            let logs = failure(&waiter.finish().await.0, code, &secrets, &[&server]);
            let last = logs.lines().last().unwrap();
            assert!(last.starts_with("cells-auth: error: "), "{logs}");
        }
        assert_eq!(server.request_count(), 1, "exit code {code}");
        // The remembered failure in the store holds no secret either.
        for file in sandbox.cache_files() {
            assert_no_secret_bytes(&fs::read(&file).unwrap(), &secrets, &[&server]);
        }
    }
}

/// A process whose own `--timeout` is tiny times out within it, and leaves nothing behind that
/// makes the next process fail or wait: no failure is remembered for a timeout, and the lock
/// dies with its holder. (The tool's old cache made every process fail for 5 s after it.)
#[tokio::test]
async fn a_process_whose_own_timeout_expires_does_not_hold_up_the_next() {
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let sandbox = Sandbox::new();

    let hasty = Background::spawn(sandbox.token(&server, &["--timeout", "0.5"]));
    server.wait_for_requests(1).await;
    // Started while the hasty one holds the lock, almost always; either way it must succeed.
    let patient = Background::spawn(sandbox.token(&server, &[]));

    let (output, elapsed) = hasty.finish().await;
    let error = failure(&output, 4, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
    assert_one_error_line(&error);
    assert!(error.contains("no token within 0.5s"), "{error}");
    assert!(elapsed < ONE_SECOND_RUN_LIMIT, "{elapsed:?}");

    let (output, elapsed) = patient.finish().await;
    assert_issued(&server, &success(&output));
    assert!(elapsed < ONE_SECOND_RUN_LIMIT, "{elapsed:?}");
    assert_eq!(server.request_count(), 2);
    gate.open();
}

/// `--timeout` bounds the whole run, waiting for another process's fetch included: a process
/// that finds the store locked by a process whose request hangs gives up by its own deadline.
#[tokio::test]
async fn timeout_bounds_the_run_while_another_process_fetches() {
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    server.push_reply(Reply::token().after(&gate));
    let sandbox = Sandbox::new();

    let holder = Background::spawn(sandbox.token(&server, &[]));
    server.wait_for_requests(1).await;

    let (output, elapsed) = run_timed(sandbox.token(&server, &["--timeout", "1"])).await;
    let error = failure(&output, 4, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
    // Having waited for the lock as long as its deadline allowed, it warned that it would
    // fetch on its own, and did.
    let (error_line, warnings) = error
        .trim_end()
        .lines()
        .collect::<Vec<_>>()
        .split_last()
        .map(|(last, rest)| (last.to_string(), rest.to_vec()))
        .unwrap();
    assert!(
        error_line.starts_with("cells-auth: error: no token within 1.0s"),
        "{error}"
    );
    assert!(
        warnings
            .iter()
            .all(|line| line.starts_with("cells-auth: warning: ")),
        "{error}"
    );
    assert_eq!(server.request_count(), 2);
    assert!(elapsed < ONE_SECOND_RUN_LIMIT, "{elapsed:?}");

    // The holder still gets its token, and stores it for the next run.
    gate.open();
    let token = success(&holder.finish().await.0);
    assert_issued(&server, &token);
    let requests = server.request_count();
    assert_eq!(success(&run(sandbox.token(&server, &[])).await), token);
    assert_eq!(server.request_count(), requests);
}

/// A FIFO planted under the entry's name neither blocks a run (opening or reading one waits for
/// a writer) nor receives the token (writing into one hands it to whoever reads).
#[tokio::test]
async fn a_fifo_planted_as_the_entry_neither_blocks_nor_receives_the_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    let entry = sandbox.only_entry();
    fs::remove_file(&entry).unwrap();
    rustix::fs::mknodat(CWD, &entry, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    // The planter listens: a reader is open, so a writer's open would not block, and whatever
    // is written reaches it.
    let listener =
        rustix::fs::open(&entry, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
    let mut listener = fs::File::from(listener);

    let (output, elapsed) = run_timed(sandbox.token(&server, &["--timeout", "1"])).await;
    let token = success(&output);
    assert!(elapsed < ONE_SECOND_RUN_LIMIT, "{elapsed:?}");
    assert_no_secrets(
        &stderr(&output),
        &[FakeTokenServer::CLIENT_SECRET],
        &[&server],
    );
    // The FIFO is no entry: the run asked for a token, and stored it in a file of its own.
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, token_line(&server, 1));
    assert!(fs::symlink_metadata(&entry).unwrap().file_type().is_file());

    let mut heard = Vec::new();
    match listener.read_to_end(&mut heard) {
        Ok(_) => {}
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}"),
    }
    assert!(heard.is_empty(), "{} bytes went into the FIFO", heard.len());

    // The replacement is a good entry.
    assert_eq!(success(&run(sandbox.token(&server, &[])).await), token);
    assert_eq!(server.request_count(), 2);
}

/// A symlink planted under the entry's name is followed neither to read (it points at a
/// genuine entry, which would be adopted without a request) nor to write.
#[tokio::test]
async fn a_symlink_planted_as_the_entry_is_not_followed() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    let entry = sandbox.only_entry();
    let elsewhere = sandbox.root.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("entry");
    fs::rename(&entry, &target).unwrap();
    let genuine = fs::read(&target).unwrap();
    symlink(&target, &entry).unwrap();

    let (output, elapsed) = run_timed(sandbox.token(&server, &["--timeout", "1"])).await;
    let token = success(&output);
    assert!(elapsed < ONE_SECOND_RUN_LIMIT, "{elapsed:?}");
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, token_line(&server, 1));
    // The link was replaced, not written through.
    assert!(fs::symlink_metadata(&entry).unwrap().file_type().is_file());
    assert_eq!(fs::read(&target).unwrap(), genuine);
}

/// The library trims the secret it sends; the store's entry is keyed on that same trimmed
/// secret, so a secret with white space around it shares the trimmed one's token.
#[tokio::test]
async fn a_secret_with_surrounding_white_space_shares_the_trimmed_secret_s_entry() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let token = success(&run(sandbox.token(&server, &[])).await);

    // The tool drops one trailing newline from the file; the rest is the library's to trim.
    let secret_file = sandbox.root.path().join("secret");
    fs::write(
        &secret_file,
        format!("  {} \n\n", FakeTokenServer::CLIENT_SECRET),
    )
    .unwrap();
    let mut from_file = sandbox.token(&server, &[]);
    from_file.arg("--client-secret-file").arg(&secret_file);
    assert_eq!(success(&run(from_file).await), token);

    let mut from_env = sandbox.token(&server, &[]);
    from_env.env(
        "ASPOSE_CLOUD_CLIENT_SECRET",
        format!("{}\n", FakeTokenServer::CLIENT_SECRET),
    );
    assert_eq!(success(&run(from_env).await), token);

    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn the_cache_is_private_and_holds_no_secret_in_clear() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);

    assert_eq!(mode(&sandbox.cache_dir()), 0o700);
    let files = sandbox.cache_files();
    assert!(!files.is_empty());
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        // The names are derived under a secret-derived key: no credential, no URL.
        for revealing in ["fake", "127.0.0.1", "v4.0"] {
            assert!(!name.contains(revealing), "{name}");
        }
        // The entry is sealed: neither the token nor the secret is in it.
        assert_no_secret_bytes(
            &fs::read(file).unwrap(),
            &[FakeTokenServer::CLIENT_SECRET, FakeTokenServer::CLIENT_ID],
            &[&server],
        );
    }
}

#[tokio::test]
async fn a_corrupt_cache_file_is_replaced() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    for file in sandbox.cache_files() {
        fs::write(&file, b"\x00garbage{{{ not an entry").unwrap();
    }

    let token = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, token_line(&server, 1));

    // The replacement is a good entry again.
    let again = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(again, token);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn different_credentials_or_endpoints_never_share_a_token() {
    let alpha = FakeTokenServer::builder()
        .credentials("alpha-id", "alpha-secret")
        .start()
        .await
        .unwrap();
    let beta = FakeTokenServer::builder()
        .credentials("beta-id", "beta-secret")
        .start()
        .await
        .unwrap();
    let sandbox = Sandbox::new();
    let alpha_token =
        |sandbox: &Sandbox| sandbox.token_with(&alpha.base_url(), "alpha-id", "alpha-secret", &[]);

    let from_alpha = success(&run(alpha_token(&sandbox)).await);
    let from_beta =
        success(&run(sandbox.token_with(&beta.base_url(), "beta-id", "beta-secret", &[])).await);
    assert_eq!(from_alpha, token_line(&alpha, 0));
    assert_eq!(from_beta, token_line(&beta, 0));
    assert_eq!((alpha.request_count(), beta.request_count()), (1, 1));
    // Both stay cached side by side.
    assert_eq!(success(&run(alpha_token(&sandbox)).await), from_alpha);
    assert_eq!(alpha.request_count(), 1);

    // The same ID and endpoint with another secret must not get alpha's cached token: it
    // asks the server, which refuses.
    let wrong_secret =
        run(sandbox.token_with(&alpha.base_url(), "alpha-id", "not-alpha-secret", &[])).await;
    failure(&wrong_secret, 3, &["not-alpha-secret"], &[&alpha, &beta]);
    assert_eq!(alpha.request_count(), 2);

    // Another client ID likewise.
    let wrong_id =
        run(sandbox.token_with(&alpha.base_url(), "other-id", "alpha-secret", &[])).await;
    failure(&wrong_id, 3, &["alpha-secret"], &[&alpha, &beta]);
    assert_eq!(alpha.request_count(), 3);

    // Another base URL on the same server (it answers under any prefix) is another entry...
    let other_prefix = alpha.base_url().replace("/v4.0", "/v3.0");
    let v3 =
        success(&run(sandbox.token_with(&other_prefix, "alpha-id", "alpha-secret", &[])).await);
    assert_eq!(alpha.request_count(), 4);
    assert_eq!(v3, token_line(&alpha, 1));
    // ...but a trailing slash is the same URL, so the same entry.
    let slash = format!("{}/", alpha.base_url());
    let same = success(&run(sandbox.token_with(&slash, "alpha-id", "alpha-secret", &[])).await);
    assert_eq!(same, from_alpha);
    assert_eq!(alpha.request_count(), 4);
}

#[tokio::test]
async fn the_secret_can_come_from_standard_input_or_a_file() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();

    let mut command = sandbox.bare();
    command
        .env("ASPOSE_CLOUD_API_URL", server.base_url())
        .args([
            "token",
            "--no-cache",
            "--client-id",
            FakeTokenServer::CLIENT_ID,
        ])
        .args(["--client-secret-file", "-"]);
    let mut command = Command::from_std(command);
    command.write_stdin(format!("{}\n", FakeTokenServer::CLIENT_SECRET));
    let token = success(&run_assert(command).await);
    assert_eq!(token, token_line(&server, 0));

    let secret_file = sandbox.root.path().join("secret");
    fs::write(
        &secret_file,
        format!("{}\r\n", FakeTokenServer::CLIENT_SECRET),
    )
    .unwrap();
    let mut command = sandbox.bare();
    command
        .args([
            "token",
            "--no-cache",
            "--client-id",
            FakeTokenServer::CLIENT_ID,
        ])
        .args(["--base-url", &server.base_url(), "--client-secret-file"])
        .arg(&secret_file);
    let token = success(&run(command).await);
    assert_eq!(token, token_line(&server, 1));

    // The file wins over the environment's (wrong) secret.
    let mut command = sandbox.token_with(
        &server.base_url(),
        FakeTokenServer::CLIENT_ID,
        "env-secret",
        &[],
    );
    command.arg("--client-secret-file").arg(&secret_file);
    success(&run(command).await);
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn missing_configuration_exits_with_2() {
    let sandbox = Sandbox::new();

    let mut nothing = sandbox.bare();
    nothing.args(["token", "--no-cache"]);
    let error = failure(&run(nothing).await, 2, &[], &[]);
    assert_one_error_line(&error);
    assert!(error.contains("ASPOSE_CLOUD_CLIENT_ID"), "{error}");

    let mut no_secret = sandbox.bare();
    no_secret
        .env("ASPOSE_CLOUD_CLIENT_ID", "some-id")
        .args(["token", "--no-cache"]);
    let error = failure(&run(no_secret).await, 2, &[], &[]);
    assert_one_error_line(&error);
    assert!(error.contains("--client-secret-file"), "{error}");

    let mut bad_url = sandbox.bare();
    bad_url
        .env("ASPOSE_CLOUD_CLIENT_ID", "some-id")
        .env("ASPOSE_CLOUD_CLIENT_SECRET", "bad-url-secret")
        .args(["token", "--base-url", "ftp://example.test/v4.0"]);
    let error = failure(&run(bad_url).await, 2, &["bad-url-secret"], &[]);
    assert_one_error_line(&error);

    let mut missing_file = sandbox.bare();
    missing_file.args(["token", "--client-id", "x", "--client-secret-file"]);
    missing_file.arg(sandbox.root.path().join("no-such-file"));
    let error = failure(&run(missing_file).await, 2, &[], &[]);
    assert_one_error_line(&error);
}

/// A bad store is a configuration error: a URL the store cannot use (TLS is not supported), a
/// Redis password on the command line (where `ps` shows it), and `cache clear` of a Redis
/// store. None of the messages repeats the password.
#[tokio::test]
async fn store_misconfiguration_exits_with_2_without_showing_the_password() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let password = "redis-pass-4711";

    let with_password = format!("redis://:{password}@127.0.0.1:{}", closed_port());
    let output = run(sandbox.token_without_store(&server, &["--store", &with_password])).await;
    let error = failure(&output, 2, &[password, FakeTokenServer::CLIENT_SECRET], &[]);
    assert_one_error_line(&error);
    assert!(error.contains(STORE_VAR), "{error}");

    let mut tls = sandbox.token_without_store(&server, &[]);
    tls.env(STORE_VAR, format!("rediss://:{password}@127.0.0.1:6379"));
    let error = failure(&run(tls).await, 2, &[password], &[]);
    assert_one_error_line(&error);

    let mut clear = sandbox.bare();
    clear
        .env(STORE_VAR, &with_password)
        .args(["cache", "clear"]);
    let error = failure(&run(clear).await, 2, &[password], &[]);
    assert_one_error_line(&error);
    assert!(error.contains("not supported"), "{error}");

    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let sandbox = Sandbox::new();
    for args in [
        &["token", "--format", "yaml"][..],
        // There is deliberately no way to put the secret on the command line.
        &["token", "--client-secret", "s3cret-on-the-command-line"],
        &["token", "--timeout", "0"],
        &["token", "--no-cache", "--cache-dir", "x"],
        &["token", "--no-cache", "--store", "redis://127.0.0.1"],
        &["token", "--cache-dir", "x", "--store", "redis://127.0.0.1"],
        &["frobnicate"],
        &[],
    ] {
        let mut command = sandbox.bare();
        command.args(args);
        let output = run(command).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

#[tokio::test]
async fn rejected_credentials_exit_with_3() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let output = run(sandbox.token_with(
        &server.base_url(),
        FakeTokenServer::CLIENT_ID,
        "wrong-secret-4711",
        &[],
    ))
    .await;
    let error = failure(&output, 3, &["wrong-secret-4711"], &[&server]);
    assert_one_error_line(&error);
    assert!(error.contains("invalid_client"), "{error}");
    // Never retried.
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn an_unavailable_service_exits_with_4() {
    let server = FakeTokenServer::start().await.unwrap();
    // Asking for a minute's wait, longer than the 30 s deadline, makes the library give up
    // after the first answer: the outcome does not depend on how fast the machine is.
    for _ in 0..20 {
        server.push_reply(Reply::status(503).header("Retry-After", "60"));
    }
    let sandbox = Sandbox::new();
    let output = run(sandbox.token(&server, &[])).await;
    let error = failure(&output, 4, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
    assert_one_error_line(&error);
    assert!(error.contains("HTTP 503"), "{error}");
    assert_eq!(server.request_count(), 1);

    // The next process honours the `Retry-After` the first one was given, without asking.
    let output = run(sandbox.token(&server, &[])).await;
    let error = failure(&output, 4, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
    assert_one_error_line(&error);
    assert!(error.contains("HTTP 503"), "{error}");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn an_unreachable_service_exits_with_4() {
    let sandbox = Sandbox::new();
    let base_url = format!("http://127.0.0.1:{}/v4.0", closed_port());
    let output = run(sandbox.token_with(
        &base_url,
        "some-id",
        "unreachable-secret",
        &["--timeout", "1"],
    ))
    .await;
    let error = failure(&output, 4, &["unreachable-secret"], &[]);
    assert_one_error_line(&error);
}

#[tokio::test]
async fn verbose_logs_never_show_the_secret_or_the_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();

    let output = run(sandbox.token(&server, &["-vv"])).await;
    success(&output);
    let logs = stderr(&output);
    assert!(!logs.is_empty(), "-vv logs something");
    assert_no_secrets(&logs, &[FakeTokenServer::CLIENT_SECRET], &[&server]);

    // A token from the store, logged at debug, and no request.
    assert_eq!(server.request_count(), 1);
    let output = run(sandbox.token(&server, &["-v"])).await;
    success(&output);
    let logs = stderr(&output);
    assert!(
        logs.lines().any(|line| line.contains(ADOPTED_LOG)),
        "{logs}"
    );
    assert_eq!(server.request_count(), 1);
    assert_no_secrets(&logs, &[FakeTokenServer::CLIENT_SECRET], &[&server]);

    // A failure with logs: more than one line, still nothing secret.
    let output = run(sandbox.token_with(
        &server.base_url(),
        FakeTokenServer::CLIENT_ID,
        "verbose-wrong-secret",
        &["-vv"],
    ))
    .await;
    let logs = failure(
        &output,
        3,
        &["verbose-wrong-secret", FakeTokenServer::CLIENT_SECRET],
        &[&server],
    );
    assert!(logs.lines().count() > 1, "{logs}");
    assert!(
        logs.lines()
            .last()
            .unwrap()
            .starts_with("cells-auth: error: "),
        "{logs}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_default_cache_is_under_xdg_cache_home() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let first = success(&run(sandbox.token_without_store(&server, &[])).await);
    let second = success(&run(sandbox.token_without_store(&server, &[])).await);
    assert_eq!(first, second);
    assert_eq!(server.request_count(), 1);

    let default_dir = sandbox.xdg().join("cells-auth");
    let entries = fs::read_dir(&default_dir).unwrap().count();
    assert!(entries >= 1, "{}", default_dir.display());

    let mut clear = sandbox.bare();
    clear.args(["cache", "clear"]);
    let printed = success(&run(clear).await);
    assert!(printed.starts_with("removed 1 cache entry"), "{printed}");
}

#[tokio::test]
async fn help_documents_the_exit_codes_and_the_store() {
    let sandbox = Sandbox::new();
    for args in [&["--help"][..], &["token", "--help"]] {
        let mut command = sandbox.bare();
        command.args(args);
        let help = success(&run(command).await);
        for line in [
            "  0  success",
            "  1  a local failure",
            "  2  usage or configuration error",
            "  3  ",
            "  4  ",
            STORE_VAR,
        ] {
            assert!(help.contains(line), "{args:?} lacks {line:?}: {help}");
        }
        assert!(!help.contains("--client-secret "), "{help}");
    }
}

#[tokio::test]
async fn an_unusable_cache_directory_costs_a_warning_not_the_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    // A regular file where the cache directory should be: nothing can be created in it.
    fs::write(sandbox.cache_dir(), "not a directory").unwrap();

    let output = run(sandbox.token(&server, &[])).await;
    let token = success(&output);
    assert_eq!(token, token_line(&server, 0));
    let warning = stderr(&output);
    assert!(warning.starts_with("cells-auth: warning: "), "{warning}");
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert_no_secrets(&warning, &[FakeTokenServer::CLIENT_SECRET], &[&server]);

    // Clearing it is a local failure: exit status 1.
    let mut clear = sandbox.bare();
    clear
        .args(["cache", "clear", "--cache-dir"])
        .arg(sandbox.cache_dir());
    let error = failure(&run(clear).await, 1, &[], &[&server]);
    assert_one_error_line(&error);
}

/// Runs on two machines sharing one Redis, as far as the tool can tell: `--store` and
/// `CELLS_AUTH_STORE` runs share one token, and Redis holds it sealed.
#[tokio::test]
async fn a_redis_store_shares_one_token_and_holds_it_sealed() {
    let server = FakeTokenServer::start().await.unwrap();
    let redis = RedisServer::start();
    let sandbox = Sandbox::new();

    let first =
        success(&run(sandbox.token_without_store(&server, &["--store", &redis.url()])).await);
    let mut from_env = sandbox.token_without_store(&server, &["-v"]);
    from_env.env(STORE_VAR, redis.url());
    let output = run(from_env).await;
    assert_eq!(success(&output), first);
    assert!(stderr(&output).contains(ADOPTED_LOG), "{}", stderr(&output));
    assert_eq!(server.request_count(), 1);
    assert_eq!(first, token_line(&server, 0));

    let values = redis.raw_values();
    assert!(!values.is_empty());
    for value in &values {
        assert_no_secret_bytes(
            value,
            &[FakeTokenServer::CLIENT_SECRET, FakeTokenServer::CLIENT_ID],
            &[&server],
        );
    }
    for key in redis.keys() {
        assert!(!key.contains(FakeTokenServer::CLIENT_ID), "{key}");
    }
    // No cache directory was used besides.
    assert!(!sandbox.xdg().exists());
}

#[tokio::test]
async fn an_unreachable_redis_costs_a_warning_not_the_token() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let output = run(sandbox.token_without_store(&server, &["--store", &url])).await;
    assert_eq!(success(&output), token_line(&server, 0));
    let warning = stderr(&output);
    assert!(warning.starts_with("cells-auth: warning: "), "{warning}");
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert_no_secrets(&warning, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
}
