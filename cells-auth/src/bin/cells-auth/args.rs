//! The command line: clap definitions and the help text.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::output::Format;

/// Where credentials come from and what the exit statuses mean, shown after `--help`. The
/// variable names are those of `cells_auth::{CLIENT_ID_VARS, CLIENT_SECRET_VARS,
/// BASE_URL_VARS}` (a unit test keeps them in step); the statuses are those of
/// `CliError::exit_code`.
const AFTER_HELP: &str = "\
Credentials:
  --client-id, --client-secret-file and --base-url win; otherwise the environment is read:
  ASPOSE_CLOUD_CLIENT_ID (or CellsCloudClientId), ASPOSE_CLOUD_CLIENT_SECRET (or
  CellsCloudClientSecret), ASPOSE_CLOUD_API_URL (or CellsCloudApiBaseUrl; default
  https://api.aspose.cloud/v4.0). The secret is never taken as a command-line value, where
  other users could read it in `ps`.

Token cache:
  Tokens are kept in a cache directory, by default `cells-auth` in the platform's cache
  directory (such as ~/.cache/cells-auth), or in Redis or Valkey with --store URL or the
  environment variable CELLS_AUTH_STORE, to share one token between machines. --no-cache and
  --cache-dir win over CELLS_AUTH_STORE. Entries are encrypted with a key derived from the
  client secret. A Redis password belongs in CELLS_AUTH_STORE: --store refuses a URL with one.

Exit status:
  0  success
  1  a local failure, such as an unusable cache directory for `cache clear` or a closed
     standard output
  2  usage or configuration error (missing credentials, bad base URL, bad option)
  3  the token service rejected the client ID or secret
  4  the token service is unavailable, unreachable, too slow, or answered something unusable";

/// Gets access tokens for Aspose.Cells Cloud, for scripts: `curl -H "$(cells-auth token
/// --format header)" ...`. Tokens are cached on disk or in Redis, so repeated and parallel
/// invocations, on one machine or many, share one token.
#[derive(Debug, Parser)]
#[command(name = "cells-auth", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// More detail on standard error: `-v` for debug logs, `-vv` for trace logs.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a valid access token, from the cache when it has one with enough time left.
    #[command(after_help = AFTER_HELP)]
    Token(TokenArgs),
    /// Manage the token cache directory.
    Cache {
        /// What to do with the cache.
        #[command(subcommand)]
        command: CacheCommand,
    },
}

/// The `cache` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Remove every cached token (and remembered failure) from the cache directory and print
    /// how many entries were removed. Not supported for a Redis store.
    Clear {
        /// Where the cache lives.
        #[command(flatten)]
        location: CacheLocation,
    },
}

/// The options of `cells-auth token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// How to print the token.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub(crate) format: Format,

    /// The credentials and endpoint.
    #[command(flatten)]
    pub(crate) credentials: CredentialArgs,

    /// How long getting a token may take, in seconds (fractions allowed): the whole run after
    /// the credentials are read, waiting for another cells-auth process that is getting one
    /// and the request with its retries included. The default is the library's, 30 s.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) timeout: Option<Duration>,

    /// Neither read nor write the token cache: always request a new token.
    #[arg(long, conflicts_with_all = ["cache_dir", "store"])]
    pub(crate) no_cache: bool,

    /// Where the cache lives.
    #[command(flatten)]
    pub(crate) location: CacheLocation,
}

/// Where credentials come from when not from the environment.
#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    /// The client ID [default: from the environment].
    #[arg(long, value_name = "ID")]
    pub(crate) client_id: Option<String>,

    /// Read the client secret from this file, `-` for standard input; one trailing newline is
    /// ignored [default: from the environment].
    #[arg(long, value_name = "PATH")]
    pub(crate) client_secret_file: Option<PathBuf>,

    /// The API base URL, version included [default: from the environment, else Aspose Cloud's
    /// v4.0 API].
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
}

/// Where the token cache is, shared by `token` and `cache clear`.
#[derive(Debug, Args)]
pub(crate) struct CacheLocation {
    /// The token cache directory [default: `cells-auth` in the platform's cache directory,
    /// such as ~/.cache/cells-auth].
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Keep tokens in Redis or Valkey at URL (redis://host[:port][/db], valkey://...,
    /// redis+unix:///path) instead of a directory [default: the environment variable
    /// CELLS_AUTH_STORE, if set]. A URL with a password is refused here: set it in
    /// CELLS_AUTH_STORE.
    #[arg(long, value_name = "URL", value_parser = parse_store_url)]
    pub(crate) store: Option<StoreUrl>,
}

/// A `--store` URL as given. Its `Debug` does not show it: it may carry a password, which is
/// refused only after parsing.
#[derive(Clone)]
pub(crate) struct StoreUrl(pub(crate) String);

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreUrl(<redacted>)")
    }
}

/// Takes any text: checking it is `store::choose`'s job, whose messages never echo it (clap's
/// own would).
fn parse_store_url(text: &str) -> Result<StoreUrl, std::convert::Infallible> {
    Ok(StoreUrl(text.to_owned()))
}

/// Parses a positive number of seconds, such as `10` or `2.5`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    // NaN is neither above nor below zero; it is no timeout either.
    if seconds.is_nan() || seconds <= 0.0 {
        return Err("the timeout must be more than zero seconds".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} seconds is too long"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_names_every_environment_variable() {
        let names = cells_auth::CLIENT_ID_VARS
            .iter()
            .chain(&cells_auth::CLIENT_SECRET_VARS)
            .chain(&cells_auth::BASE_URL_VARS)
            .chain([&cells_auth::DEFAULT_BASE_URL]);
        for name in names {
            assert!(AFTER_HELP.contains(name), "{name} is missing from the help");
        }
    }

    #[test]
    fn there_is_no_way_to_pass_the_secret_as_a_value() {
        let command = Cli::command();
        let token = command.find_subcommand("token").unwrap();
        for arg in token.get_arguments() {
            let long = arg.get_long().unwrap_or_default();
            assert!(
                !long.contains("secret") || long == "client-secret-file",
                "--{long} would put the secret on the command line"
            );
        }
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        for bad in ["0", "-1", "NaN", "soon", "1e30"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_one_cache_location_may_be_given() {
        for pair in [
            ["--no-cache", "--cache-dir=x"],
            ["--no-cache", "--store=redis://127.0.0.1"],
            ["--cache-dir=x", "--store=redis://127.0.0.1"],
        ] {
            let parsed = Cli::try_parse_from(["cells-auth", "token"].into_iter().chain(pair));
            assert!(parsed.is_err(), "{pair:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_store_url() {
        let cli = Cli::try_parse_from([
            "cells-auth",
            "token",
            "--store",
            "redis://:hunter2@127.0.0.1",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        assert!(debug.contains("StoreUrl(<redacted>)"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
