//! `stepforge check TASK.yaml [--impl FILE] [--fix] [--emit ir|dot] [--dims K=V,..]`: type-,
//! shape- and linearity-check the task's reference impl or a given program (DESIGN §11).
//!
//! stdout carries the result (the fixed program with `--fix`, the graph with `--emit`, or the
//! one JSON object with `--format json`); human diagnostics and the summary go to stderr.

use std::path::PathBuf;

use serde_json::json;
use stepforge_check::CheckOutput;
use stepforge_syntax::Source;
use stepforge_syntax::diag::apply_fixes;

use crate::{Format, Status, dims_flag, output, read_input};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// The typed stream graph as text.
    Ir,
    /// The typed stream graph as Graphviz DOT.
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    pub task: PathBuf,
    /// Check this program (or LLM answer) instead of the task's reference `impl`.
    #[arg(long = "impl")]
    pub impl_file: Option<PathBuf>,
    /// Print the program with every safe fix applied (e.g. Copy insertion).
    #[arg(long)]
    pub fix: bool,
    /// Print the typed graph (only for a well-typed program).
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Dimension overrides, `K=V,..`.
    #[arg(long)]
    pub dims: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(args: &Args) -> Status {
    let task_text = match read_input(&args.task) {
        Ok(t) => t,
        Err(s) => return s,
    };
    let dims = match dims_flag(args.dims.as_deref()) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let loaded = stepforge_task::load_str(&args.task.display().to_string(), &task_text);
    let task = match (&loaded.task, loaded.has_errors()) {
        (Some(t), false) => t,
        _ => {
            report(args, &loaded.source, &loaded.diagnostics, None);
            return Status::Rejected;
        }
    };
    // Task-file warnings are shown against the task file whatever is being checked.
    let task_warnings = &loaded.diagnostics;

    let (source, out) = match &args.impl_file {
        Some(path) => {
            let text = match read_input(path) {
                Ok(t) => t,
                Err(s) => return s,
            };
            let (src, out) = stepforge_check::check_answer_with(task, &text, &dims);
            (Source::new(path.display().to_string(), src.text), out)
        }
        None => match stepforge_check::check_task_with(task, &dims) {
            Some(out) => (loaded.source.clone(), out),
            None => {
                output::error(&format!(
                    "{} has no reference `impl`; pass a program with --impl FILE",
                    args.task.display()
                ));
                return Status::Usage;
            }
        },
    };

    if args.impl_file.is_some() && args.format == Format::Human && !task_warnings.is_empty() {
        output::diagnostics_human(&loaded.source, task_warnings);
    }
    let fixed = args
        .fix
        .then(|| apply_fixes(&source.text, &out.diagnostics, true));
    let emitted = match (args.emit, &out.graph) {
        (Some(Emit::Ir), Some(g)) => Some(g.dump()),
        (Some(Emit::Dot), Some(g)) => Some(g.to_dot()),
        _ => None,
    };
    report(args, &source, &out.diagnostics, Some(&out));
    if let (Some(f), Format::Human) = (&fixed, args.format) {
        output::line(f.trim_end_matches('\n'));
    }
    if let (Some(e), Format::Human) = (&emitted, args.format) {
        output::line(e.trim_end_matches('\n'));
    }
    if args.format == Format::Json {
        let mut v = out.to_json(&source);
        v["task"] = json!(task.name);
        v["graph_hash"] = json!(out.graph_hash().map(|h| h.to_string()));
        if let Some(f) = &fixed {
            v["fixed"] = json!(f);
        }
        if let Some(e) = &emitted {
            v["emit"] = json!(e);
        }
        output::json(&v);
    }
    if args.emit.is_some() && out.graph.is_none() && args.format == Format::Human {
        output::error("no graph to emit: the program is not well typed");
    }
    if out.ok { Status::Ok } else { Status::Rejected }
}

/// Human diagnostics plus a one-line summary (stderr); for JSON with no check result, the
/// loader's diagnostics as the one object.
fn report(
    args: &Args,
    source: &Source,
    diags: &[stepforge_syntax::Diagnostic],
    out: Option<&CheckOutput>,
) {
    match (args.format, out) {
        (Format::Human, _) => {
            output::print_diagnostics(Format::Human, source, diags);
            let (errors, warnings) = output::summary_counts(diags);
            let summary = match out {
                Some(o) => format!(
                    "check: {} error(s), {} warning(s); linear: {}, linear_compat: {}, copies_needed: {}",
                    errors, warnings, o.linear, o.linear_compat, o.copies_needed
                ),
                None => format!("check: the task file has {errors} error(s)"),
            };
            summary_line(&summary);
        }
        (Format::Json, None) => output::json(&json!({
            "ok": false,
            "linear": false,
            "linear_compat": false,
            "copies_needed": 0,
            "diagnostics": output::diagnostics_json(source, diags),
            "streams": [],
        })),
        (Format::Json, Some(_)) => {}
    }
}

/// The summary shares stderr with the diagnostics, without the `error:` prefix.
#[allow(clippy::print_stderr)]
fn summary_line(s: &str) {
    eprintln!("{s}");
}
