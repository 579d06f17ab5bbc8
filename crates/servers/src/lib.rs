//! `stepforge-servers` owns stepforge's two editor/agent protocols over stdio (DESIGN §17):
//! [`mcp`], a Model Context Protocol server for coding agents, and [`lsp`], a language server
//! for task files and `.step` programs.
//!
//! It owns protocol framing, request routing, concurrency (slow requests run on worker threads
//! and are answered out of order) and input bounds. It must not contain toolchain logic: every
//! check, fix, verification and explanation goes through the session API of
//! `stepforge-driver`, reached only from [`toolchain`], which keeps one `Session` per task file
//! open so each request is in-process. Like every library crate it never prints or exits; the
//! `stepforge mcp` / `stepforge lsp` commands hand it stdin and stdout.

pub mod lsp;
pub mod mcp;
mod ops_doc;
pub mod text;
pub mod toolchain;
