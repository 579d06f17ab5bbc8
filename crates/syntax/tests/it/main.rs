//! Integration tests of stepforge-syntax: parse every construct, snapshot diagnostics in both
//! renderers, round-trip through the printer, and property tests.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod constructs;
mod explain;
mod props;
mod snapshots;
