//! `stepforge-agent` owns the adaptive self-improvement agent system (DESIGN §14): LLM
//! providers (OpenAI-compatible, Anthropic, replay, batch), prompts, parallel sampling with the
//! guardian and repair turns, the paper's Algorithm 1, the SQLite experience store and reports.
//!
//! It reaches the toolchain only through [`tool`] (in-process, never a subprocess), never
//! prints and never exits: the CLI renders what it returns. LLM answers are untrusted input:
//! bounded in size and checked like any program.

pub mod campaign;
pub mod config;
pub mod engine;
pub mod prompt;
pub mod provider;
pub mod report;
pub mod store;
pub mod tool;
mod util;
pub mod writer;

pub use campaign::{Hooks, export, resume, start};
pub use config::RunConfig;
pub use engine::{Progress, Status, Summary};
