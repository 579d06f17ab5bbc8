//! In-process tests of the servers crate: the MCP tool table and the MCP server over in-memory
//! streams. The tests that drive the real `stepforge` binary over stdio are in `stdio/`; they
//! are compiled into the CLI's test binary, which is the one that knows where the binary is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tables;
