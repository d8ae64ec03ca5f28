//! Which token store a run uses: the options and the environment turned into a `FileStore`, a
//! `RedisStore` or none.
//!
//! Only the choice lives here. What is stored under which name, when a stored token may be
//! used and how failures are shared is the library's policy (`cells_auth::store`), the same for
//! the tool as for any application.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cells_auth::CellsAuthBuilder;
use cells_auth::store::{FileStore, RedisStore};

use crate::CliError;
use crate::args::{CacheLocation, StoreUrl};

/// The environment variable naming a Redis or Valkey store, for when `--store` is not given.
pub(crate) const STORE_VAR: &str = "CELLS_AUTH_STORE";

/// The store a run uses.
#[derive(Debug)]
pub(crate) enum Store {
    /// No store: `--no-cache`, or no cache directory on this platform.
    None,
    /// A cache directory.
    File(FileStore),
    /// Redis or Valkey (boxed: a `RedisStore` is some 240 bytes, the others a few words).
    Redis(Box<RedisStore>),
}

impl Store {
    /// The store for `cells-auth token`. Does no I/O: a store is first used by the provider,
    /// which goes on without it if it fails.
    pub(crate) fn for_token(location: &CacheLocation, no_cache: bool) -> Result<Self, CliError> {
        if no_cache {
            return Ok(Self::None);
        }
        Self::choose(location, env_var, default_dir).map(|store| {
            if matches!(store, Self::None) {
                crate::warn(
                    "this platform has no cache directory (is HOME set?); requesting a token \
                     without the cache (pass --cache-dir DIR to use one)",
                );
            }
            store
        })
    }

    /// The cache directory `cells-auth cache clear` empties.
    pub(crate) fn for_clear(location: &CacheLocation) -> Result<FileStore, CliError> {
        match Self::choose(location, env_var, default_dir)? {
            Self::File(store) => Ok(store),
            Self::Redis(_) => Err(CliError::Config(
                "`cache clear` empties a cache directory; clearing a Redis store is not \
                 supported (its entries expire with their tokens; to remove them at once, \
                 delete the keys under the `cells-auth:` prefix)"
                    .to_owned(),
            )),
            Self::None => Err(CliError::Config(
                "this platform has no cache directory (is HOME set?); pass --cache-dir DIR"
                    .to_owned(),
            )),
        }
    }

    /// Gives the provider this store, if any.
    pub(crate) fn install(self, builder: CellsAuthBuilder) -> CellsAuthBuilder {
        match self {
            Self::None => builder,
            Self::File(store) => builder.store(store),
            Self::Redis(store) => builder.store(*store),
        }
    }

    /// `--cache-dir`, else `--store`, else `CELLS_AUTH_STORE`, else the default directory, if
    /// there is one: an option given on the command line wins over the environment.
    fn choose(
        location: &CacheLocation,
        env: impl Fn(&str) -> Option<OsString>,
        default_dir: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Self, CliError> {
        if let Some(dir) = &location.cache_dir {
            return file_store(dir).map(Self::File);
        }
        if let Some(StoreUrl(url)) = &location.store {
            if has_password(url) {
                return Err(CliError::Config(format!(
                    "--store would show the Redis password to every user of this machine (in \
                     `ps`); set the URL in {STORE_VAR} instead"
                )));
            }
            return redis_store(url).map(Self::Redis);
        }
        if let Some(url) = env(STORE_VAR) {
            // Never echo the value: it may hold a password.
            let url = url.into_string().map_err(|_| {
                CliError::Config(format!(
                    "the environment variable {STORE_VAR} is not valid UTF-8"
                ))
            })?;
            if !url.trim().is_empty() {
                return redis_store(url.trim()).map(Self::Redis);
            }
        }
        match default_dir() {
            Some(dir) => file_store(&dir).map(Self::File),
            None => Ok(Self::None),
        }
    }
}

fn env_var(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// `cells-auth` in the platform's cache directory (`$XDG_CACHE_HOME` or `~/.cache` on Linux),
/// if the platform has one.
fn default_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("cells-auth"))
}

/// A `FileStore` in `dir`, made absolute against the working directory: `FileStore` wants an
/// absolute path, and on a command line a relative one means the working directory's.
fn file_store(dir: &Path) -> Result<FileStore, CliError> {
    let dir = std::path::absolute(dir).map_err(|error| {
        CliError::Config(format!(
            "the cache directory {} cannot be used: {error}",
            dir.display()
        ))
    })?;
    FileStore::new(dir).map_err(CliError::Auth)
}

/// A `RedisStore` for `url`; its errors never repeat the URL.
fn redis_store(url: &str) -> Result<Box<RedisStore>, CliError> {
    RedisStore::new(url).map(Box::new).map_err(CliError::Auth)
}

/// Whether `url` carries a password: in its user-info (`redis://user:password@host`) or as a
/// query parameter (`redis+unix:///path?pass=...`, the redis crate's form for sockets).
fn has_password(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| {
        url.password().is_some()
            || url
                .query_pairs()
                .any(|(name, _)| name == "pass" || name == "password")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(cache_dir: Option<&str>, store: Option<&str>) -> CacheLocation {
        CacheLocation {
            cache_dir: cache_dir.map(PathBuf::from),
            store: store.map(|url| StoreUrl(url.to_owned())),
        }
    }

    fn env(value: Option<&'static str>) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            assert_eq!(name, STORE_VAR);
            value.map(OsString::from)
        }
    }

    fn default() -> Option<PathBuf> {
        Some(PathBuf::from("/home/user/.cache/cells-auth"))
    }

    fn chosen(location: &CacheLocation, env_value: Option<&'static str>) -> String {
        match Store::choose(location, env(env_value), default).unwrap() {
            Store::None => "none".to_owned(),
            Store::File(store) => format!("file {}", store.dir().display()),
            Store::Redis(store) => format!("{store:?}"),
        }
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        let redis = Some("redis://10.0.0.9:6380/2");
        assert_eq!(
            chosen(&location(Some("/srv/cache"), None), redis),
            "file /srv/cache"
        );
        let flag = chosen(&location(None, Some("valkey://10.0.0.7")), redis);
        assert!(flag.contains("10.0.0.7:6379/0"), "{flag}");
        let from_env = chosen(&location(None, None), redis);
        assert!(from_env.contains("10.0.0.9:6380/2"), "{from_env}");
        assert_eq!(
            chosen(&location(None, None), None),
            "file /home/user/.cache/cells-auth"
        );
        // A blank variable is as good as unset, as for the credentials.
        assert_eq!(
            chosen(&location(None, None), Some("  ")),
            "file /home/user/.cache/cells-auth"
        );
    }

    #[test]
    fn a_relative_cache_dir_is_the_working_directory_s() {
        let chosen = chosen(&location(Some("relative/cache"), None), None);
        let expected = std::env::current_dir().unwrap().join("relative/cache");
        assert_eq!(chosen, format!("file {}", expected.display()));
    }

    #[test]
    fn without_a_cache_directory_there_is_no_store() {
        let store = Store::choose(&location(None, None), env(None), || None).unwrap();
        assert!(matches!(store, Store::None));
        let error = Store::for_clear(&location(None, Some("redis://127.0.0.1"))).unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn a_password_is_refused_on_the_command_line_but_not_in_the_environment() {
        for url in [
            "redis://:hunter2@127.0.0.1",
            "redis://admin:hunter2@127.0.0.1:6379/1",
            "redis+unix:///run/redis.sock?db=1&pass=hunter2",
        ] {
            let error = Store::choose(&location(None, Some(url)), env(None), default)
                .unwrap_err()
                .to_string();
            assert!(error.contains(STORE_VAR), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            let from_env = Store::choose(&location(None, None), env(Some(url)), default);
            assert!(matches!(from_env, Ok(Store::Redis(_))), "{url}");
        }
        assert!(!has_password("redis://admin@127.0.0.1"));
        assert!(!has_password("redis://127.0.0.1/3"));
    }

    #[test]
    fn bad_store_urls_are_configuration_errors_that_hide_the_url() {
        for url in ["rediss://127.0.0.1", "http://127.0.0.1", "not a url"] {
            let error = Store::choose(&location(None, Some(url)), env(None), default).unwrap_err();
            assert!(
                matches!(&error, CliError::Auth(inner) if inner.is_config()),
                "{url}: {error}"
            );
        }
        let error = Store::choose(
            &location(None, None),
            env(Some("rediss://:hunter2@127.0.0.1")),
            default,
        )
        .unwrap_err()
        .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
