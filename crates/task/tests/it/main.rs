//! Integration tests of `stepforge-task`: sample and library task files load cleanly, loader
//! diagnostics (snapshots in both renderers), robustness properties, and data generation.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod diagnostics;
mod generation;
mod props;
mod samples;

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}
