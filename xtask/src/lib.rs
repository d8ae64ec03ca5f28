//! The code generator behind `cargo xtask codegen`, as a library so that the workspace tests
//! run the very same code as the command.
//!
//! [`generate`] turns the OpenAPI document into the source of `cells-auth-gen/src/generated.rs`;
//! [`ensure_file_contents`] writes it, or in check mode reports how the committed file differs.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

mod codegen;
mod freshness;

pub use codegen::{GENERATED_HEADER, SECRET_REPLACEMENTS, generate};
pub use freshness::{Mode, Outcome, ensure_file_contents};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The OpenAPI document, relative to the workspace root: the only input of code generation.
pub const SPEC_PATH: &str = "openapi/cells-auth.yaml";

/// The generated file, relative to the workspace root.
pub const GENERATED_PATH: &str = "cells-auth-gen/src/generated.rs";

/// Reads the spec under `root`, generates the client and writes it or, in [`Mode::Check`],
/// reports whether the committed file is stale.
pub fn codegen(root: &Path, mode: Mode) -> Result<Outcome> {
    let spec_path = root.join(SPEC_PATH);
    let spec = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let source = generate(&spec, SPEC_PATH)?;
    ensure_file_contents(&root.join(GENERATED_PATH), &source, mode)
}
