//! The `stepforge` binary: the only crate that talks to the terminal.
fn main() {}
