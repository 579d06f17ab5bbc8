//! Integration tests of the simulator over real programs (the operator library and small
//! hand-written tasks), with the executor as the oracle for functional mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod analytic;
mod deadlock;
mod differential;
/// The checker's random well-typed program generator, shared by path.
#[path = "../../../crates/check/tests/it/generator.rs"]
#[allow(dead_code)]
mod generator;
mod harness;
mod library;
