//! The `stepforge` binary: the only crate that talks to the terminal.
//!
//! Each command lives in its own `cmd_*` module and returns an [`ExitCode`]-like status instead
//! of exiting, so every command is testable as a function. Exit codes (DESIGN §11): 0 success or
//! pass, 1 the program or task was rejected, 2 usage error or unreadable input file.

mod cmd_agent;
mod cmd_bench;
mod cmd_bench_sim;
mod cmd_check;
mod cmd_explain;
mod cmd_parse;
mod cmd_serve;
mod cmd_sim;
mod cmd_verify;
mod common;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator: checking a program allocates many small strings
/// and vectors (the AST, the typed graph, diagnostics), and glibc's malloc/free were about a
/// third of a 10,000-line LSP re-check (issue 13; numbers in the servers' `lsp_latency` bench).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Readable diagnostics with source snippets on stderr, results on stdout.
    #[default]
    Human,
    /// Machine-readable JSON on stdout only (stderr carries nothing but real errors).
    Json,
}

/// Outcome of a command, mapped to the process exit code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: success, or the program passed.
    Ok,
    /// 1: the program or task was rejected (diagnostics, mismatch, limit).
    Rejected,
    /// 2: usage error or unreadable input.
    Usage,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(match s {
            Status::Ok => 0,
            Status::Rejected => 1,
            Status::Usage => 2,
        })
    }
}

/// Shown at the end of `--help`.
const EXIT_CODES: &str = "Exit codes:\n  0  success, or the program passed\n  1  the program or task was rejected (diagnostics, mismatch, limit exceeded)\n  2  usage error, or an input file that cannot be read (missing, not a regular file, too large, not UTF-8)";

#[derive(Debug, Parser)]
#[command(
    name = "stepforge",
    version,
    about = "Toolchain for STeP (Streaming Tensor Programs) kernels",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a program, a raw LLM answer, a snippet or a task file; print its AST or pretty form.
    #[command(after_help = EXIT_CODES)]
    Parse(cmd_parse::Args),
    /// Type-, shape- and linearity-check a task's reference impl or a given program.
    #[command(after_help = EXIT_CODES)]
    Check(cmd_check::Args),
    /// Explain a diagnostic code, with a wrong and a right example.
    Explain(cmd_explain::Args),
    /// Check a program, run it on seeded data and compare with the task's references.
    #[command(after_help = EXIT_CODES)]
    Verify(cmd_verify::Args),
    /// Measure verification latency per task (median, p95) as a markdown table.
    #[command(after_help = EXIT_CODES)]
    Bench(cmd_bench::Args),
    /// The adaptive self-improvement agent loop: run, resume, export, report.
    Agent(cmd_agent::Args),
    /// Serve the Model Context Protocol over stdio (tools for coding agents).
    Mcp(cmd_serve::McpArgs),
    /// Serve the Language Server Protocol over stdio (for editors).
    Lsp(cmd_serve::LspArgs),
    /// Simulate a program cycle by cycle on the accelerator model (cycles, stalls, deadlocks).
    Sim(cmd_sim::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage_error = e.use_stderr();
            // clap prints help/version to stdout and errors to stderr itself.
            let _ = e.print();
            return if usage_error {
                Status::Usage
            } else {
                Status::Ok
            }
            .into();
        }
    };
    let status = match cli.command {
        Command::Parse(args) => cmd_parse::run(&args),
        Command::Check(args) => cmd_check::run(&args),
        Command::Explain(args) => cmd_explain::run(&args),
        Command::Verify(args) => cmd_verify::run(&args),
        Command::Bench(args) => cmd_bench::run(&args),
        Command::Agent(args) => cmd_agent::run(&args),
        Command::Mcp(args) => cmd_serve::run_mcp(&args),
        Command::Lsp(args) => cmd_serve::run_lsp(&args),
        Command::Sim(args) => cmd_sim::run(&args),
    };
    status.into()
}

/// The `--dims K=V,..` overrides (none without the flag); a malformed flag is a usage error.
pub fn dims_flag(flag: Option<&str>) -> Result<Vec<(String, i64)>, Status> {
    match flag.map(stepforge_task::parse_dims_flag) {
        None => Ok(Vec::new()),
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => {
            output::error(&format!("--dims: {e}"));
            Err(Status::Usage)
        }
    }
}

/// [`read_input`] of an optional `--impl FILE` (`None` when the flag is absent).
pub fn read_optional_input(
    path: Option<&std::path::PathBuf>,
    common: &common::CommonArgs,
) -> Result<Option<String>, Status> {
    path.map(|p| read_input(p, common)).transpose()
}

/// Reads a program or answer file (bounded by `--max-input-bytes`); failure is one error line
/// and exit 2.
pub fn read_input(path: &std::path::Path, common: &common::CommonArgs) -> Result<String, Status> {
    common::read_bounded(path, common.max_input_bytes)
}
