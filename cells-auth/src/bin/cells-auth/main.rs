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
use std::time::Duration;

use cells_auth::{CellsAuth, CellsAuthBuilder};
use clap::Parser as _;
use secrecy::ExposeSecret as _;

use crate::args::{CacheCommand, CacheLocation, Cli, Command, TokenArgs};
use crate::credentials::Credentials;
use crate::disk_cache::{CacheKey, CachedToken, DiskCache, unix_now, unix_seconds};

/// Exit statuses, as `--help` lists them. Clap's own usage errors exit with 2 as well.
const EXIT_LOCAL_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_CREDENTIALS: u8 = 3;
const EXIT_UNAVAILABLE: u8 = 4;

/// How much longer than its own deadline a process waits for another one's fetch: the other
/// process may have started a moment earlier or with a longer `--timeout`, and waiting is
/// cheaper for the token service than a second request.
const LOCK_WAIT_SLACK: Duration = Duration::from_secs(5);

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

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => f.write_str(message),
            // The library's messages never contain the secret or a token.
            Self::Auth(error) => error.fmt(f),
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
    let secret = credentials.client_secret.expose_secret();
    let base_url = credentials
        .base_url
        .as_deref()
        .unwrap_or(cells_auth::DEFAULT_BASE_URL);
    let mut builder = CellsAuth::builder()
        .client_id(credentials.client_id.as_str())
        .client_secret(secret)
        .base_url(base_url);
    if let Some(timeout) = args.timeout {
        builder = builder.deadline(timeout);
    }
    // The provider is built only when a token must be requested: building sets up TLS with
    // the platform's trust store, which takes about 2 ms, more than all the rest of a run that
    // the disk cache answers. Skipping it loses no check, because nothing is ever cached for
    // a configuration that fails to build.
    let fetch = move || request_token(builder);
    let token = if args.no_cache {
        fetch()?
    } else {
        let cache = cache_at(&args.location)?;
        let key = CacheKey::new(&cache_key_url(base_url), &credentials.client_id, secret);
        let lock_wait = args.timeout.unwrap_or(cells_auth::DEFAULT_DEADLINE) + LOCK_WAIT_SLACK;
        cache.get_or_fetch(&key, lock_wait, fetch)?
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
/// that finds its token in the disk cache builds neither.
fn request_token(builder: CellsAuthBuilder) -> Result<CachedToken, CliError> {
    let auth = builder.build().map_err(CliError::Auth)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            action: "cannot start the async runtime".to_owned(),
            source,
        })?;
    let obtained_at_unix = unix_now();
    let token = runtime.block_on(auth.token()).map_err(CliError::Auth)?;
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

    #[test]
    fn library_errors_map_to_documented_exit_codes() {
        let rejected = cells_auth::Error::CredentialsRejected {
            status: 400,
            code: Some("invalid_client".to_owned()),
            description: None,
        };
        let unavailable = cells_auth::Error::ServiceUnavailable {
            status: 503,
            retry_after: None,
        };
        let timeout = cells_auth::Error::Timeout {
            after: Duration::from_secs(1),
        };
        let config = CellsAuth::builder().build().unwrap_err();
        assert_eq!(CliError::Auth(rejected).exit_code(), 3);
        assert_eq!(CliError::Auth(unavailable).exit_code(), 4);
        assert_eq!(CliError::Auth(timeout).exit_code(), 4);
        assert_eq!(CliError::Auth(config).exit_code(), 2);
        assert_eq!(CliError::Config("x".to_owned()).exit_code(), 2);
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
