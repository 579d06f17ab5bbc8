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

use crate::common::{CommonArgs, check_dim_names};
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
    /// The task file (YAML) whose inputs, functions and outputs the program is checked against.
    pub task: PathBuf,
    /// Check this program (or LLM answer) instead of the task's reference `impl`.
    #[arg(long = "impl", value_name = "FILE")]
    pub impl_file: Option<PathBuf>,
    /// Print the program with every safe fix applied (e.g. Copy insertion).
    #[arg(long)]
    pub fix: bool,
    /// Print the typed graph (only for a well-typed program; with --fix, of the fixed one).
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Dimension overrides, `K=V,..` (names must be the task's dimensions).
    #[arg(long, value_name = "K=V,..")]
    pub dims: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format: `human` (diagnostics and a summary on stderr; the fixed program or graph
    /// on stdout) or `json` (one object on stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(args: &Args) -> Status {
    let task_text = match read_input(&args.task, &args.common) {
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
    if let Err(msg) = check_dim_names(
        &dims,
        args.dims.as_deref(),
        &stepforge_task::used_symbols(task),
    ) {
        output::error(&msg);
        return Status::Usage;
    }
    // Task-file warnings are shown against the task file whatever is being checked.
    let task_warnings = &loaded.diagnostics;

    let (source, out) = match &args.impl_file {
        Some(path) => {
            let text = match read_input(path, &args.common) {
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
        output::diagnostics_human(&loaded.source, task_warnings, args.common.max_diagnostics);
    }
    let fixed = args
        .fix
        .then(|| apply_fixes(&source.text, &out.diagnostics, true));
    // With --fix, the graph shown is the fixed program's: check the fixed text again (the
    // reference impl's fixes apply to the task file, whose text is the whole task).
    let refixed = match (&fixed, args.emit) {
        (Some(f), Some(_)) if args.impl_file.is_some() => {
            Some(stepforge_check::check_answer_with(task, f, &dims).1)
        }
        (Some(f), Some(_)) => {
            let l = stepforge_task::load_str(&args.task.display().to_string(), f);
            l.task
                .as_ref()
                .and_then(|t| stepforge_check::check_task_with(t, &dims))
        }
        _ => None,
    };
    let graph = match &refixed {
        Some(o) => o.graph.as_ref(),
        None => out.graph.as_ref(),
    };
    let emitted = match (args.emit, graph) {
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
        let mut capped = out.clone();
        capped.graph = None;
        let (kept, omitted) = output::capped(&out.diagnostics, args.common.max_diagnostics);
        capped.diagnostics = kept.into_iter().cloned().collect();
        let mut v = capped.to_json(&source);
        if !omitted.is_empty() {
            v["diagnostics_omitted"] = output::omitted_json(&omitted);
        }
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
    if args.emit.is_some() && graph.is_none() && args.format == Format::Human {
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
            output::print_diagnostics(Format::Human, source, diags, args.common.max_diagnostics);
            let (errors, warnings) = output::summary_counts(diags);
            let summary = match out {
                Some(o) => format!(
                    "check: {} error(s), {} warning(s); linear: {}, linear_compat: {}, copies_needed: {}",
                    errors,
                    warnings,
                    crate::cmd_verify::linear_text(o.linear),
                    crate::cmd_verify::linear_text(o.linear_compat),
                    o.copies_needed
                ),
                None => format!("check: the task file has {errors} error(s)"),
            };
            summary_line(&summary);
        }
        (Format::Json, None) => {
            let (list, omitted) =
                output::diagnostics_json(source, diags, args.common.max_diagnostics);
            output::json(&json!({
                "ok": false,
                "linear": null,
                "linear_compat": null,
                "copies_needed": 0,
                "diagnostics": list,
                "diagnostics_omitted": omitted,
                "streams": [],
            }))
        }
        (Format::Json, Some(_)) => {}
    }
}

/// The summary shares stderr with the diagnostics, without the `error:` prefix.
#[allow(clippy::print_stderr)]
fn summary_line(s: &str) {
    eprintln!("{s}");
}
