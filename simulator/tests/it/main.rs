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
mod harness;
mod library;
