//! The `cells-auth` binary, run for real against a `FakeTokenServer` on 127.0.0.1.
//!
//! Each test has its own temporary cache directory and passes credentials through the child's
//! environment only, after removing every credential variable, so the developer's environment
//! and cache never take part.

#![cfg(feature = "cli")]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use cells_auth::testing::{FakeTokenServer, Gate, Reply};
use tempfile::TempDir;

/// The debug log line of a cache hit (`-v`), after the target.
const CACHE_HIT_LOG: &str = "disk_cache: using the cached token path=";
/// The debug log line of a process that starts waiting for another one's fetch (`-v`).
const LOCK_WAIT_LOG: &str = "another cells-auth process is fetching a token; waiting for it";

/// Every variable the tool reads credentials or the endpoint from.
fn credential_vars() -> impl Iterator<Item = &'static str> {
    cells_auth::CLIENT_ID_VARS
        .into_iter()
        .chain(cells_auth::CLIENT_SECRET_VARS)
        .chain(cells_auth::BASE_URL_VARS)
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

    /// `cells-auth` with no credentials in its environment and `XDG_CACHE_HOME` inside the
    /// sandbox, so that even a run without `--cache-dir` stays in it.
    fn bare(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("cells-auth"));
        for name in credential_vars() {
            command.env_remove(name);
        }
        command.env("XDG_CACHE_HOME", self.root.path().join("xdg"));
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
}

/// Runs the command to completion on a blocking thread, so the fake server keeps serving on
/// the test's runtime meanwhile.
async fn run(command: std::process::Command) -> Output {
    run_assert(Command::from_std(command)).await
}

/// [`run`] for an `assert_cmd` command (to give it standard input).
async fn run_assert(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// A `cells-auth` process running in the background, its standard error read line by line as
/// it comes so that a test can wait for a log line instead of sleeping.
struct Background {
    child: std::process::Child,
    stderr_lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr_seen: Vec<String>,
}

impl Background {
    fn spawn(mut command: std::process::Command) -> Self {
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
            stderr_lines,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits until a line of standard error contains `text`.
    async fn wait_for_stderr(&mut self, text: &str) {
        loop {
            let line = self.stderr_lines.recv().await.unwrap_or_else(|| {
                panic!(
                    "exited without logging {text:?}: {}",
                    self.stderr_seen.join("\n")
                )
            });
            let found = line.contains(text);
            self.stderr_seen.push(line);
            if found {
                return;
            }
        }
    }

    /// Waits for the process to exit and returns all it wrote.
    async fn finish(mut self) -> Output {
        let mut child = self.child;
        let (status, stdout) = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut stdout = Vec::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_end(&mut stdout)
                .unwrap();
            (child.wait().unwrap(), stdout)
        })
        .await
        .unwrap();
        while let Some(line) = self.stderr_lines.recv().await {
            self.stderr_seen.push(line);
        }
        let mut stderr = self.stderr_seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        Output {
            status,
            stdout,
            stderr: stderr.into_bytes(),
        }
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

/// Asserts a failure with `code`, nothing on standard output, exactly one error line on
/// standard error, and none of `secrets` nor any token `servers` issued anywhere in it.
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
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked");
    }
    for server in servers {
        for token in server.issued_tokens() {
            assert!(!text.contains(&token), "a token leaked");
        }
    }
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

/// A base URL on which nothing listens: a port the OS just handed out, then released.
fn closed_port_base_url() -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v4.0")
}

#[tokio::test]
async fn prints_the_token_raw_as_json_and_as_a_header() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();

    let raw = success(&run(sandbox.token(&server, &[])).await);
    let issued = server.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(raw, format!("{}\n", issued[0]));

    let explicit_raw = success(&run(sandbox.token(&server, &["--format", "raw"])).await);
    assert_eq!(explicit_raw, raw);

    let header = success(&run(sandbox.token(&server, &["--format", "header"])).await);
    assert_eq!(header, format!("Authorization: Bearer {}\n", issued[0]));

    let before = unix_now();
    let json = success(&run(sandbox.token(&server, &["--format", "json"])).await);
    let after = unix_now();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["access_token"], issued[0].as_str());
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

    // All four runs shared one token request through the cache.
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_second_run_reuses_the_cached_token() {
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
        let mut command = sandbox.bare();
        command
            .env("ASPOSE_CLOUD_API_URL", server.base_url())
            .env("ASPOSE_CLOUD_CLIENT_ID", FakeTokenServer::CLIENT_ID)
            .env("ASPOSE_CLOUD_CLIENT_SECRET", FakeTokenServer::CLIENT_SECRET)
            .args(["token", "--no-cache"]);
        printed.push(success(&run(command).await));
    }
    assert_eq!(server.request_count(), 2);
    let issued = server.issued_tokens();
    assert_eq!(
        printed,
        [format!("{}\n", issued[0]), format!("{}\n", issued[1])]
    );
    assert!(!sandbox.root.path().join("xdg").exists());
}

#[tokio::test]
async fn cache_clear_removes_the_cached_tokens() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    assert!(!sandbox.cache_files().is_empty());
    // A file that is not the cache's stays.
    fs::write(sandbox.cache_dir().join("notes.txt"), "mine").unwrap();

    let mut clear = sandbox.bare();
    clear
        .args(["cache", "clear", "--cache-dir"])
        .arg(sandbox.cache_dir());
    let printed = success(&run(clear).await);
    assert!(
        printed.starts_with("removed 1 cached token from "),
        "{printed}"
    );
    assert_eq!(
        sandbox.cache_files(),
        [sandbox.cache_dir().join("notes.txt")]
    );

    // The next run has to ask again.
    let token = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, format!("{}\n", server.issued_tokens()[1]));
}

#[tokio::test]
async fn twenty_processes_on_a_cold_cache_make_one_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    let commands: Vec<std::process::Command> = (0..20)
        .map(|_| {
            let mut command = sandbox.token(&server, &[]);
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        // Start all twenty before waiting for any.
        let children: Vec<std::process::Child> = commands
            .into_iter()
            .map(|mut command| command.spawn().unwrap())
            .collect();
        children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect::<Vec<Output>>()
    })
    .await
    .unwrap();

    assert_eq!(server.request_count(), 1);
    let expected = format!("{}\n", server.issued_tokens()[0]);
    for output in &outputs {
        assert_eq!(success(output), expected);
    }
}

/// While one process's request hangs and then fails, processes waiting on the cache lock for
/// the same credentials report the same kind of failure, with the same exit status, without
/// sending requests of their own.
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
        let error = failure(&holder.finish().await, code, &secrets, &[&server]);
        assert_one_error_line(&error);
        for waiter in waiters {
            let logs = failure(&waiter.finish().await, code, &secrets, &[&server]);
            let last = logs.lines().last().unwrap();
            assert!(last.starts_with("cells-auth: error: "), "{logs}");
        }
        assert_eq!(server.request_count(), 1, "exit code {code}");
        // The marker in the cache holds no secret either.
        for file in sandbox.cache_files() {
            let content = String::from_utf8_lossy(&fs::read(&file).unwrap()).into_owned();
            assert_no_secrets(&content, &secrets, &[&server]);
        }
    }
}

/// A process whose deadline passes while another one holds the cache lock fails with exit
/// status 4 and sends no request of its own (it used to fetch without the lock).
#[tokio::test]
async fn a_waiter_gives_up_at_its_deadline_without_a_request() {
    let server = FakeTokenServer::start().await.unwrap();
    let gate = Gate::new();
    server.push_reply(Reply::token().after(&gate));
    let sandbox = Sandbox::new();

    let holder = Background::spawn(sandbox.token(&server, &[]));
    server.wait_for_requests(1).await;

    let output = run(sandbox.token(&server, &["--timeout", "0.5"])).await;
    let error = failure(&output, 4, &[FakeTokenServer::CLIENT_SECRET], &[&server]);
    assert_one_error_line(&error);
    assert!(error.contains("another cells-auth process"), "{error}");
    assert_eq!(server.request_count(), 1);

    // The holder still gets its token, and caches it for the next run.
    gate.open();
    let token = success(&holder.finish().await);
    assert_eq!(token, format!("{}\n", server.issued_tokens()[0]));
    assert_eq!(success(&run(sandbox.token(&server, &[])).await), token);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn the_cache_is_private() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);

    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sandbox.cache_dir()), 0o700);
    let files = sandbox.cache_files();
    assert!(!files.is_empty());
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        // The names are hashes: no credential, no URL.
        for revealing in ["fake", "127.0.0.1", "v4.0"] {
            assert!(!name.contains(revealing), "{name}");
        }
    }
}

#[tokio::test]
async fn a_corrupt_cache_file_is_replaced() {
    let server = FakeTokenServer::start().await.unwrap();
    let sandbox = Sandbox::new();
    success(&run(sandbox.token(&server, &[])).await);
    for file in sandbox.cache_files() {
        fs::write(&file, b"\x00garbage{{{ not json").unwrap();
    }

    let token = success(&run(sandbox.token(&server, &[])).await);
    assert_eq!(server.request_count(), 2);
    assert_eq!(token, format!("{}\n", server.issued_tokens()[1]));

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
    assert_eq!(from_alpha, format!("{}\n", alpha.issued_tokens()[0]));
    assert_eq!(from_beta, format!("{}\n", beta.issued_tokens()[0]));
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
    assert_eq!(v3, format!("{}\n", alpha.issued_tokens()[1]));
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
    assert_eq!(token, format!("{}\n", server.issued_tokens()[0]));

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
    assert_eq!(token, format!("{}\n", server.issued_tokens()[1]));

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

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let sandbox = Sandbox::new();
    for args in [
        &["token", "--format", "yaml"][..],
        // There is deliberately no way to put the secret on the command line.
        &["token", "--client-secret", "s3cret-on-the-command-line"],
        &["token", "--timeout", "0"],
        &["token", "--no-cache", "--cache-dir", "x"],
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
    // A failure caches nothing.
    let entries = sandbox
        .cache_files()
        .into_iter()
        .filter(|file| {
            file.extension()
                .is_some_and(|extension| extension == "json")
        })
        .count();
    assert_eq!(entries, 0);
}

#[tokio::test]
async fn an_unreachable_service_exits_with_4() {
    let sandbox = Sandbox::new();
    let output = run(sandbox.token_with(
        &closed_port_base_url(),
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

    // A cache hit, logged at debug, and no request.
    assert_eq!(server.request_count(), 1);
    let output = run(sandbox.token(&server, &["-v"])).await;
    success(&output);
    let logs = stderr(&output);
    assert!(
        logs.lines().any(|line| line.contains(CACHE_HIT_LOG)),
        "{logs}"
    );
    assert!(!logs.contains("no cached token"), "{logs}");
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
    let token = || {
        let mut command = sandbox.bare();
        command
            .env("ASPOSE_CLOUD_API_URL", server.base_url())
            .env("ASPOSE_CLOUD_CLIENT_ID", FakeTokenServer::CLIENT_ID)
            .env("ASPOSE_CLOUD_CLIENT_SECRET", FakeTokenServer::CLIENT_SECRET)
            .arg("token");
        command
    };
    let first = success(&run(token()).await);
    let second = success(&run(token()).await);
    assert_eq!(first, second);
    assert_eq!(server.request_count(), 1);

    let default_dir = sandbox.root.path().join("xdg").join("cells-auth");
    let entries = fs::read_dir(&default_dir).unwrap().count();
    assert!(entries >= 1, "{}", default_dir.display());

    let mut clear = sandbox.bare();
    clear.args(["cache", "clear"]);
    let printed = success(&run(clear).await);
    assert!(printed.starts_with("removed 1 cached token"), "{printed}");
}

#[tokio::test]
async fn help_documents_the_exit_codes() {
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
    assert_eq!(token, format!("{}\n", server.issued_tokens()[0]));
    let warning = stderr(&output);
    assert!(warning.starts_with("cells-auth: warning: "), "{warning}");
    assert_no_secrets(&warning, &[FakeTokenServer::CLIENT_SECRET], &[&server]);

    // Clearing it is a local failure: exit status 1.
    let mut clear = sandbox.bare();
    clear
        .args(["cache", "clear", "--cache-dir"])
        .arg(sandbox.cache_dir());
    let error = failure(&run(clear).await, 1, &[], &[&server]);
    assert_one_error_line(&error);
}
