//! Integration tests of the checker: sample tasks, one snapshot per diagnostic code, IR dumps,
//! generated programs.

mod common;
mod diags;
mod generator;
mod ir_dumps;
mod props;
mod samples;
