//! Helpers shared by the disk cache's unit tests.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{CacheKey, CachedToken, DiskCache, NoToken};

pub(super) fn token(
    access_token: &str,
    obtained_at_unix: u64,
    expires_at_unix: u64,
) -> CachedToken {
    CachedToken {
        access_token: access_token.to_owned(),
        obtained_at_unix,
        expires_at_unix,
    }
}

pub(super) fn key() -> CacheKey {
    CacheKey::new("https://api.test/v4.0", "id", "secret")
}

/// A deadline no test reaches.
pub(super) fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

/// [`DiskCache::get_or_fetch`] with a far deadline and no failure shared.
pub(super) fn get_or_fetch<E>(
    cache: &DiskCache,
    key: &CacheKey,
    fetch: impl FnOnce() -> Result<CachedToken, E>,
) -> Result<CachedToken, NoToken<E>> {
    cache.get_or_fetch(key, far(), |_| fetch(), |_| None)
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}
