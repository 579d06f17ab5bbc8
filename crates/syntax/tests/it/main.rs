//! Integration tests of stepforge-syntax: parse every construct, snapshot diagnostics in both
//! renderers, round-trip through the printer, and property tests.

mod constructs;
mod explain;
mod props;
mod snapshots;
