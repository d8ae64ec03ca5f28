//! Workspace-level tests of cells-auth; the tests live in `tests/tests/`.
//!
//! - `codegen.rs`: a snapshot of code freshly generated from `openapi/`, the freshness check of
//!   the committed client, and agreement between the spec and the derived JSON Schema.
//! - `wire.rs`: the generated client against a real HTTP server on 127.0.0.1.
