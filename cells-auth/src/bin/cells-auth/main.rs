//! `cells-auth`: prints access tokens for Aspose.Cells Cloud, for scripts, in the manner of
//! `gcloud auth print-access-token` and `az account get-access-token`.
//!
//! `main` parses the command line, runs the command and turns its error into one line on
//! standard error and an exit status. The options are in `args`, credential resolution in
//! `credentials`, the choice of token store in `store`, logging in `logging` and the output
//! formats in `output`. Sharing tokens between processes is the library's job: the tool hands
//! `CellsAuth` a store, and has no cache of its own.

mod args;
mod credentials;
mod logging;
mod output;
mod store;

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cells_auth::CellsAuth;
use clap::Parser as _;
use secrecy::ExposeSecret as _;

use crate::args::{CacheCommand, CacheLocation, Cli, Command, TokenArgs};
use crate::credentials::Credentials;
use crate::store::Store;

/// Exit statuses, as `--help` lists them. Clap's own usage errors exit with 2 as well.
const EXIT_LOCAL_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_CREDENTIALS: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever failed; `-v` adds the logs before it.
            eprintln!("cells-auth: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Why a command failed; each variant maps to an exit status.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Missing or invalid configuration found before anything was sent.
    Config(String),
    /// The library could not get a token, or refused the configuration.
    Auth(cells_auth::Error),
    /// The whole run took longer than `--timeout`.
    Timeout {
        /// The whole time the command had.
        after: Duration,
    },
    /// A local operation failed.
    Local {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_CONFIG,
            Self::Local { .. } => EXIT_LOCAL_FAILURE,
            Self::Auth(error) if error.is_credentials() => EXIT_CREDENTIALS,
            Self::Timeout { .. } => EXIT_UNAVAILABLE,
            Self::Auth(error)
                if error.is_config() || matches!(error, cells_auth::Error::NoAuth) =>
            {
                EXIT_CONFIG
            }
            // Unavailable, network, timeout, invalid response, and whatever a later version
            // of the library adds: all mean "no token from the service this time".
            Self::Auth(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl CliError {
    /// The library's error for a run that had `timeout`. Its timeout is reported as the run's:
    /// the library may have had only what was left of `--timeout` for its last attempt, and
    /// the user asked for the whole.
    fn from_library(error: cells_auth::Error, timeout: Duration) -> Self {
        match error {
            cells_auth::Error::Timeout { .. } => Self::Timeout { after: timeout },
            other => Self::Auth(other),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => f.write_str(message),
            // The library's messages never contain the secret or a token.
            Self::Auth(error) => error.fmt(f),
            Self::Timeout { after } => write!(
                f,
                "no token within {:.1}s; the Aspose Cloud token service or the network is slow",
                after.as_secs_f64()
            ),
            Self::Local { action, source } => write!(f, "{action}: {source}"),
        }
    }
}

/// Prints a warning: something went wrong that did not stop the command.
pub(crate) fn warn(message: &str) {
    eprintln!("cells-auth: warning: {message}");
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Token(args) => token(args),
        Command::Cache {
            command: CacheCommand::Clear { location },
        } => clear_cache(&location),
    }
}

/// `cells-auth token`.
fn token(args: TokenArgs) -> Result<(), CliError> {
    let credentials = Credentials::resolve(&args.credentials)?;
    // The one deadline of the run, which the library is given whole: waiting for another
    // process's fetch through the store, and the fetch with its retries, end by it. It starts
    // after the credentials are read, so a secret typed or piped in slowly does not count.
    let timeout = args.timeout.unwrap_or(cells_auth::DEFAULT_DEADLINE);
    let started = Instant::now();
    let time_left = || timeout.saturating_sub(started.elapsed());
    let mut builder = CellsAuth::builder()
        .client_id(credentials.client_id.as_str())
        .client_secret(credentials.client_secret.expose_secret())
        .deadline(timeout);
    if let Some(base_url) = &credentials.base_url {
        builder = builder.base_url(base_url.as_str());
    }
    let auth = Store::for_token(&args.location, args.no_cache)?
        .install(builder)
        .build()
        .map_err(CliError::Auth)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Local {
            action: "cannot start the async runtime".to_owned(),
            source: source.into(),
        })?;
    // The library keeps its own deadline; this one also bounds what comes before and around
    // the fetch (building the provider above, store operations), so `--timeout` holds for the
    // whole run whatever the store does.
    // Inside the runtime: a tokio timer can only be made there.
    let outcome = runtime.block_on(async { tokio::time::timeout(time_left(), auth.token()).await });
    // A store operation the library gave up on may still run on a blocking thread (a file on a
    // hung network file system); dropping the runtime would wait for it without end.
    runtime.shutdown_timeout(time_left());
    let token = outcome
        .map_err(|_elapsed| CliError::Timeout { after: timeout })?
        .map_err(|error| CliError::from_library(error, timeout))?;
    let text = output::render(
        args.format,
        token.secret(),
        output::unix_seconds(token.expires_at()),
        output::unix_seconds(std::time::SystemTime::now()),
    );
    print(&text)
}

/// `cells-auth cache clear`.
fn clear_cache(location: &CacheLocation) -> Result<(), CliError> {
    let store = Store::for_clear(location)?;
    let removed = store.clear().map_err(|source| CliError::Local {
        action: format!("cannot clear the token cache in {}", store.dir().display()),
        source: source.into(),
    })?;
    let plural = if removed == 1 { "y" } else { "ies" };
    print(&format!(
        "removed {removed} cache entr{plural} from {}\n",
        store.dir().display()
    ))
}

/// Writes to standard output, reporting a closed pipe as an error instead of panicking as
/// `print!` would.
fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Local {
            action: "cannot write to standard output".to_owned(),
            source: source.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a provider returns after the fake server answers with `replies`.
    fn library_error(replies: &[cells_auth::testing::Reply]) -> cells_auth::Error {
        use cells_auth::testing::{FakeTokenServer, ManualClock};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = FakeTokenServer::start().await.unwrap();
            for reply in replies {
                server.push_reply(reply.clone());
            }
            CellsAuth::builder()
                .client_id(FakeTokenServer::CLIENT_ID)
                .client_secret(FakeTokenServer::CLIENT_SECRET)
                .base_url(server.base_url())
                // Retry pauses complete at once on a manual clock.
                .clock(&ManualClock::new())
                .build()
                .unwrap()
                .token()
                .await
                .unwrap_err()
        })
    }

    /// The library's timeout for a provider with a `deadline` whose server never answers.
    fn timed_out(deadline: Duration) -> cells_auth::Error {
        use cells_auth::testing::{FakeTokenServer, Gate, Reply};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = FakeTokenServer::start().await.unwrap();
            let never = Gate::new();
            server.push_reply(Reply::token().after(&never));
            CellsAuth::builder()
                .client_id(FakeTokenServer::CLIENT_ID)
                .client_secret(FakeTokenServer::CLIENT_SECRET)
                .base_url(server.base_url())
                .deadline(deadline)
                .build()
                .unwrap()
                .token()
                .await
                .unwrap_err()
        })
    }

    fn rejected() -> cells_auth::Error {
        library_error(&[cells_auth::testing::Reply::oauth_error(
            400,
            "invalid_client",
        )])
    }

    fn unavailable() -> cells_auth::Error {
        library_error(&vec![cells_auth::testing::Reply::status(503); 5])
    }

    #[test]
    fn library_errors_map_to_documented_exit_codes() {
        let config = CellsAuth::builder().build().unwrap_err();
        assert_eq!(CliError::Auth(rejected()).exit_code(), 3);
        assert_eq!(CliError::Auth(unavailable()).exit_code(), 4);
        let timeout = CliError::Timeout {
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.exit_code(), 4);
        assert_eq!(CliError::Auth(config).exit_code(), 2);
        assert_eq!(CliError::Config("x".to_owned()).exit_code(), 2);
    }

    #[test]
    fn the_library_s_timeout_is_the_run_s_timeout() {
        // As when the library's last attempt had only what was left of the run's 1.5 s.
        let last_attempt = timed_out(Duration::from_millis(50));
        assert!(
            matches!(last_attempt, cells_auth::Error::Timeout { .. }),
            "{last_attempt:?}"
        );
        let error = CliError::from_library(last_attempt, Duration::from_millis(1500));
        assert_eq!(error.exit_code(), EXIT_UNAVAILABLE);
        assert!(
            error.to_string().starts_with("no token within 1.5s"),
            "{error}"
        );
        let rejected = CliError::from_library(rejected(), Duration::from_secs(1));
        assert!(matches!(&rejected, CliError::Auth(_)), "{rejected}");
        assert_eq!(rejected.exit_code(), EXIT_CREDENTIALS);
    }

    #[test]
    fn local_failures_exit_with_1_and_say_what_failed() {
        let error = CliError::Local {
            action: "cannot write to standard output".to_owned(),
            source: io::Error::from(io::ErrorKind::BrokenPipe).into(),
        };
        assert_eq!(error.exit_code(), EXIT_LOCAL_FAILURE);
        assert!(
            error
                .to_string()
                .starts_with("cannot write to standard output: "),
            "{error}"
        );
    }

    #[test]
    fn every_exit_code_is_in_the_help() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        for code in [
            EXIT_LOCAL_FAILURE,
            EXIT_CONFIG,
            EXIT_CREDENTIALS,
            EXIT_UNAVAILABLE,
        ] {
            assert!(help.contains(&format!("\n  {code}  ")), "{code}: {help}");
        }
    }
}
