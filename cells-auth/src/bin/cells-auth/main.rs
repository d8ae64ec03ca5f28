//! `cells-auth`: prints access tokens for Aspose.Cells Cloud, for scripts, in the manner of
//! `gcloud auth print-access-token` and `az account get-access-token`.
//!
//! `main` parses the command line, runs the command and turns its error into one line on
//! standard error and an exit status. The options are in `args`, credential resolution in
//! `credentials`, the cross-process token cache in `disk_cache` and the output formats in
//! `output`.

mod args;
mod credentials;
mod disk_cache;
mod output;

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cells_auth::{CellsAuth, CellsAuthBuilder};
use clap::Parser as _;
use secrecy::ExposeSecret as _;

use crate::args::{CacheCommand, CacheLocation, Cli, Command, TokenArgs};
use crate::credentials::Credentials;
use crate::disk_cache::{
    CacheKey, CachedToken, DiskCache, FailureKind, NoToken, time_left, unix_now, unix_seconds,
};

/// Exit statuses, as `--help` lists them. Clap's own usage errors exit with 2 as well.
const EXIT_LOCAL_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_CREDENTIALS: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

/// Stands in for a `--timeout` so long that no instant that far ahead can be represented: about
/// 136 years is as good as for ever.
const FOREVER: Duration = Duration::from_secs(u32::MAX as u64);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
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
    /// The library could not get a token.
    Auth(cells_auth::Error),
    /// Another process failed this way moments ago, as its marker in the disk cache says.
    RecentFailure(FailureKind),
    /// The deadline passed while another process was getting a token for the same
    /// credentials.
    OutOfTime {
        /// The whole time the command had.
        after: Duration,
    },
    /// The whole run took longer than `--timeout` while this process was fetching.
    Timeout {
        /// The whole time the command had.
        after: Duration,
    },
    /// A local operation failed.
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        source: io::Error,
    },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_CONFIG,
            Self::Io { .. } => EXIT_LOCAL_FAILURE,
            Self::Auth(error) if error.is_credentials() => EXIT_CREDENTIALS,
            Self::RecentFailure(FailureKind::Credentials) => EXIT_CREDENTIALS,
            Self::RecentFailure(FailureKind::Unavailable)
            | Self::OutOfTime { .. }
            | Self::Timeout { .. } => EXIT_UNAVAILABLE,
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

    /// The kind of failure to share with the processes waiting for this one's fetch: the
    /// failures that the next attempt, a moment later, would very likely repeat.
    fn shared_failure(&self) -> Option<FailureKind> {
        match self {
            Self::Auth(error) if error.is_credentials() => Some(FailureKind::Credentials),
            Self::Auth(error) if error.is_transient() => Some(FailureKind::Unavailable),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => f.write_str(message),
            // The library's messages never contain the secret or a token.
            Self::Auth(error) => error.fmt(f),
            Self::RecentFailure(FailureKind::Credentials) => f.write_str(
                "Aspose Cloud rejected these client credentials moments ago, when another \
                 cells-auth process asked; check the client ID and secret at the Aspose Cloud \
                 dashboard (https://dashboard.aspose.cloud/applications)",
            ),
            Self::RecentFailure(FailureKind::Unavailable) => f.write_str(
                "another cells-auth process failed to get a token moments ago: the Aspose Cloud \
                 token service was unavailable, unreachable or too slow; try again in a few \
                 seconds",
            ),
            Self::OutOfTime { after } => write!(
                f,
                "no token within {:.1}s: another cells-auth process was getting one for the \
                 same credentials all that time; if it is stuck, end it or pass --no-cache",
                after.as_secs_f64()
            ),
            Self::Timeout { after } => write!(
                f,
                "no token within {:.1}s; the Aspose Cloud token service or the network is slow",
                after.as_secs_f64()
            ),
            Self::Io { action, source } => write!(f, "{action}: {source}"),
        }
    }
}

/// Prints a warning: something went wrong that did not stop the command.
pub(crate) fn warn(message: &str) {
    eprintln!("cells-auth: warning: {message}");
}

/// Logs to standard error with `-v` (debug) or `-vv` (trace). Without `-v` nothing is
/// installed, so the library's own error events do not add lines to the one error line.
/// `RUST_LOG` is deliberately not read: the verbosity flags are the whole interface.
fn init_tracing(verbosity: u8) {
    let directives = match verbosity {
        0 => return,
        1 => "warn,cells_auth=debug",
        _ => "debug,cells_auth=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_writer(io::stderr)
        .init();
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
    // The one deadline of the run, set before anything waits on another process or the
    // network: waiting for the cache lock and the fetch both end by it. It starts after the
    // credentials are read, so a secret typed or piped in slowly does not count.
    let timeout = args.timeout.unwrap_or(cells_auth::DEFAULT_DEADLINE);
    let started = Instant::now();
    let deadline = started
        .checked_add(timeout)
        .unwrap_or_else(|| started + FOREVER);
    let secret = credentials.client_secret.expose_secret();
    let base_url = credentials
        .base_url
        .as_deref()
        .unwrap_or(cells_auth::DEFAULT_BASE_URL);
    let builder = CellsAuth::builder()
        .client_id(credentials.client_id.as_str())
        .client_secret(secret)
        .base_url(base_url);
    // The provider is built only when a token must be requested: building sets up TLS with
    // the platform's trust store, which takes about 2 ms, more than all the rest of a run that
    // the disk cache answers. Skipping it loses no check, because nothing is ever cached for
    // a configuration that fails to build.
    let fetch = move |left: Duration| request_token(builder.deadline(left), timeout);
    let cache = if args.no_cache {
        None
    } else {
        token_cache(&args.location, DiskCache::default_location)
    };
    let token = match cache {
        None => {
            let left = time_left(deadline).ok_or(CliError::Timeout { after: timeout })?;
            fetch(left)?
        }
        Some(cache) => {
            let key = CacheKey::new(&cache_key_url(base_url), &credentials.client_id, secret);
            cache
                .get_or_fetch(&key, deadline, fetch, CliError::shared_failure)
                .map_err(|no_token| match no_token {
                    NoToken::Fetch(error) => error,
                    NoToken::RecentFailure(kind) => CliError::RecentFailure(kind),
                    NoToken::OutOfTime => CliError::OutOfTime { after: timeout },
                })?
        }
    };
    let text = output::render(
        args.format,
        &token.access_token,
        token.expires_at_unix,
        unix_now(),
    );
    print(&text)
}

/// The base URL as the cache key sees it: normalised as the library normalises it (parsed,
/// re-serialised, trailing slashes removed), so `https://host/v4.0/` and `https://host/v4.0`
/// share an entry while any other difference keeps entries apart. A URL that does not parse is
/// keyed as given: building the provider then fails with the library's message, and nothing
/// is cached for it.
fn cache_key_url(raw: &str) -> String {
    match reqwest::Url::parse(raw.trim()) {
        Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
        Err(_) => raw.to_owned(),
    }
}

/// Builds the provider and requests a token, on a runtime made for the purpose: a process
/// that finds its token in the disk cache builds neither. The builder's deadline is what is
/// left of the command's `timeout`, which a timeout error reports as the time it took.
fn request_token(builder: CellsAuthBuilder, timeout: Duration) -> Result<CachedToken, CliError> {
    let auth = builder.build().map_err(CliError::Auth)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            action: "cannot start the async runtime".to_owned(),
            source,
        })?;
    let obtained_at_unix = unix_now();
    let token = runtime
        .block_on(auth.token())
        .map_err(|error| match error {
            cells_auth::Error::Timeout { .. } => CliError::Timeout { after: timeout },
            other => CliError::Auth(other),
        })?;
    Ok(CachedToken {
        access_token: token.secret().to_owned(),
        obtained_at_unix,
        expires_at_unix: unix_seconds(token.expires_at()),
    })
}

/// `cells-auth cache clear`.
fn clear_cache(location: &CacheLocation) -> Result<(), CliError> {
    let cache = cache_at(location)?;
    let removed = cache.clear().map_err(|source| CliError::Io {
        action: format!("cannot clear the token cache in {}", cache.dir().display()),
        source,
    })?;
    let plural = if removed == 1 { "" } else { "s" };
    print(&format!(
        "removed {removed} cached token{plural} from {}\n",
        cache.dir().display()
    ))
}

/// The cache `token` uses: the one `--cache-dir` names, else `default`'s. Without either (the
/// platform has no cache directory) a warning says so and the token is fetched without a
/// cache: the cache saves requests, it is not needed for a token.
fn token_cache(
    location: &CacheLocation,
    default: impl FnOnce() -> Option<DiskCache>,
) -> Option<DiskCache> {
    if let Some(dir) = &location.cache_dir {
        return Some(DiskCache::at(dir.clone()));
    }
    let cache = default();
    if cache.is_none() {
        warn(
            "this platform has no cache directory (is HOME set?); requesting a token without \
             the cache (pass --cache-dir DIR to use one)",
        );
    }
    cache
}

/// The cache `--cache-dir` names, or the default one.
fn cache_at(location: &CacheLocation) -> Result<DiskCache, CliError> {
    match &location.cache_dir {
        Some(dir) => Ok(DiskCache::at(dir.clone())),
        None => DiskCache::default_location().ok_or_else(|| {
            CliError::Config(
                "this platform has no cache directory (is HOME set?); pass --cache-dir DIR or \
                 --no-cache"
                    .to_owned(),
            )
        }),
    }
}

/// Writes to standard output, reporting a closed pipe as an error instead of panicking as
/// `print!` would.
fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Io {
            action: "cannot write to standard output".to_owned(),
            source,
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
    fn failures_shared_through_the_cache_keep_their_exit_codes() {
        // A process's own timeout says nothing about the service: it is not shared, so it
        // cannot make other processes with longer timeouts give up.
        let timeout = CliError::Timeout {
            after: Duration::from_secs(1),
        };
        for (error, shared) in [
            (CliError::Auth(rejected()), Some(FailureKind::Credentials)),
            (
                CliError::Auth(unavailable()),
                Some(FailureKind::Unavailable),
            ),
            (timeout, None),
            (CliError::Config("x".to_owned()), None),
        ] {
            assert_eq!(error.shared_failure(), shared, "{error}");
            // A waiter that reads the marker exits as the process that failed did.
            if let Some(kind) = shared {
                assert_eq!(CliError::RecentFailure(kind).exit_code(), error.exit_code());
            }
        }
        let out_of_time = CliError::OutOfTime {
            after: Duration::from_secs(10),
        };
        assert_eq!(out_of_time.exit_code(), 4);
        assert!(out_of_time.to_string().starts_with("no token within 10.0s"));
    }

    #[test]
    fn without_a_cache_directory_the_token_is_fetched_uncached() {
        let nowhere = CacheLocation { cache_dir: None };
        assert!(token_cache(&nowhere, || None).is_none());
        let named = CacheLocation {
            cache_dir: Some("/tmp/x".into()),
        };
        let cache = token_cache(&named, || unreachable!("--cache-dir wins"));
        assert_eq!(cache.unwrap().dir(), std::path::Path::new("/tmp/x"));
    }

    #[test]
    fn cache_keys_use_the_normalised_base_url() {
        let key = cache_key_url("https://api.aspose.cloud/v4.0");
        assert_eq!(key, "https://api.aspose.cloud/v4.0");
        assert_eq!(cache_key_url(" https://API.aspose.cloud/v4.0/ "), key);
        assert_ne!(cache_key_url("https://api.aspose.cloud/v3.0"), key);
        assert_ne!(cache_key_url("https://api.aspose.cloud:8443/v4.0"), key);
        assert_ne!(cache_key_url("http://api.aspose.cloud/v4.0"), key);
        assert_eq!(cache_key_url("not a url"), "not a url");
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
