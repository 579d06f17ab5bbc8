//! Integration tests of the agent: a loopback server speaking both APIs (misbehaving on
//! purpose), the loop end to end over `operators/`, replay, batch round trips, the report and
//! the overhead bench.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

mod bench;
mod common;
mod e2e;
mod optimize;
mod providers;
mod report;
mod server;
