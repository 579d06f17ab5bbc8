//! Integration tests of the checker: sample tasks, one snapshot per diagnostic code, IR dumps,
//! generated programs.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod diags;
mod explain_examples;
mod generator;
mod graph_props;
mod ir_dumps;
mod props;
mod samples;
