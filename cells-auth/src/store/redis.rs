//! `RedisStore` (feature `redis`): entries and leases in Redis or Valkey (placeholder).

/// A [`TokenStore`](super::TokenStore) in Redis (placeholder).
#[derive(Debug)]
pub struct RedisStore {}
