//! The `stepforge` binary: the only crate that talks to the terminal.
//!
//! Each command lives in its own `cmd_*` module and returns an [`ExitCode`]-like status instead
//! of exiting, so every command is testable as a function. Exit codes (DESIGN §11): 0 success or
//! pass, 1 the program or task was rejected, 2 usage error or unreadable input file.

mod cmd_bench;
mod cmd_check;
mod cmd_explain;
mod cmd_parse;
mod cmd_sim;
mod cmd_verify;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
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

#[derive(Debug, Parser)]
#[command(
    name = "stepforge",
    version,
    about = "Toolchain for STeP (Streaming Tensor Programs) kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a program, a raw LLM answer, a snippet or a task file; print its AST or pretty form.
    Parse(cmd_parse::Args),
    /// Type-, shape- and linearity-check a task's reference impl or a given program.
    Check(cmd_check::Args),
    /// Explain a diagnostic code, with a wrong and a right example.
    Explain(cmd_explain::Args),
    /// Check a program, run it on seeded data and compare with the task's references.
    Verify(cmd_verify::Args),
    /// Measure verification latency per task (median, p95) as a markdown table.
    Bench(cmd_bench::Args),
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

/// Reads an input file, mapping failure to a usage-class error message.
pub fn read_input(path: &PathBuf) -> Result<String, Status> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => {
                output::error(&format!("{}: not UTF-8 text", path.display()));
                Err(Status::Usage)
            }
        },
        Err(e) => {
            output::error(&format!("cannot read {}: {e}", path.display()));
            Err(Status::Usage)
        }
    }
}
