//! Test doubles for code that uses cells-auth (cargo feature `testing`).
//!
//! [`FakeTokenServer`] is a real HTTP server on 127.0.0.1 that speaks the `PostAccessToken`
//! protocol and can be scripted with faults ([`Reply`]); it records what it receives
//! ([`RecordedRequest`]). [`ManualClock`] lets tests move time instead of waiting for it.
//! With feature `redis`, `RedisServer` starts a real `redis-server` (Debian package
//! `redis-server`) on a free loopback port, without persistence, for tests of a `RedisStore`.

mod clock;
mod connection;
mod recorded;
#[cfg(feature = "redis")]
mod redis_server;
mod reply;
mod server;

pub use clock::ManualClock;
pub(crate) use clock::ManualState;
pub use recorded::RecordedRequest;
#[cfg(feature = "redis")]
pub use redis_server::{RedisServer, store_key};
pub use reply::{Gate, Reply};
pub use server::{FakeTokenServer, FakeTokenServerBuilder};
