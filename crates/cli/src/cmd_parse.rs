//! `stepforge parse FILE`: the front end alone, for people and agents who want to see what the
//! grammar made of their text.

use std::path::{Path, PathBuf};

use serde_json::json;
use stepforge_syntax::{Diagnostic, Parsed, Source, print};

use crate::common::CommonArgs;
use crate::{Format, Status, output, read_input};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A task file if the YAML has task keys, a program if the text uses `step.`, else a snippet.
    Auto,
    Task,
    /// A STeP program or a raw LLM answer around one (fenced, YAML `impl:`, prose).
    Program,
    /// A reference snippet, element-function body or `global` block.
    Snippet,
    Dtype,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to parse: a task (YAML), a program or raw LLM answer, a snippet, or a dtype.
    pub file: PathBuf,
    /// Output format: `human` (the pretty-printed form on stdout, diagnostics on stderr) or
    /// `json` (one object with the AST and diagnostics on stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub common: CommonArgs,
    /// What the file holds.
    #[arg(long = "as", value_enum, default_value_t = Kind::Auto)]
    pub kind: Kind,
}

pub fn run(args: &Args) -> Status {
    let text = match read_input(&args.file, &args.common) {
        Ok(t) => t,
        Err(s) => return s,
    };
    let name = args.file.display().to_string();
    match resolve_kind(args.kind, &args.file, &text) {
        Kind::Task => parse_task(&name, &text, args.format, args.common.max_diagnostics),
        Kind::Program => emit(
            args.format,
            args.common.max_diagnostics,
            "program",
            Source::new(name, text.clone()),
            {
                let p = stepforge_syntax::parse_answer(&text);
                map(p, |ast| {
                    (serde_json::to_value(ast).ok(), print::program(ast))
                })
            },
        ),
        Kind::Snippet => {
            let p = stepforge_syntax::parse_snippet(&text);
            let max = args.common.max_diagnostics;
            // Guessed as a snippet but it does not parse and holds no program either: it is a
            // prose answer, so say what `verify` says (E0118), not a pile of syntax errors.
            if args.kind == Kind::Auto
                && p.has_errors()
                && let Err(d) = stepforge_syntax::answer::extract(&text)
            {
                let r = Rendered {
                    ast: None,
                    pretty: None,
                    diagnostics: vec![d],
                };
                return emit(
                    args.format,
                    max,
                    "program",
                    Source::new(name, text.clone()),
                    r,
                );
            }
            let r = map(p, |ast| (serde_json::to_value(ast).ok(), print::block(ast)));
            emit(
                args.format,
                max,
                "snippet",
                Source::new(name, text.clone()),
                r,
            )
        }
        Kind::Dtype => emit(
            args.format,
            args.common.max_diagnostics,
            "dtype",
            Source::new(name, text.clone()),
            {
                let p = stepforge_syntax::parse_dtype(&text);
                map(p, |ast| (serde_json::to_value(ast).ok(), print::dtype(ast)))
            },
        ),
        Kind::Auto => unreachable_kind(),
    }
}

/// `resolve_kind` never returns `Auto`; keep the match exhaustive without a panic path.
fn unreachable_kind() -> Status {
    output::error("internal: could not decide what the file holds; pass --as");
    Status::Usage
}

fn resolve_kind(kind: Kind, path: &Path, text: &str) -> Kind {
    if kind != Kind::Auto {
        return kind;
    }
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let task_keys = text.lines().any(|l| {
        ["inputs:", "fns:", "outputs:", "test_name:"]
            .iter()
            .any(|k| l.starts_with(k))
    });
    if yaml && task_keys {
        Kind::Task
    } else if text.contains("step.") || text.contains("impl:") {
        Kind::Program
    } else {
        Kind::Snippet
    }
}

struct Rendered {
    ast: Option<serde_json::Value>,
    pretty: Option<String>,
    diagnostics: Vec<Diagnostic>,
}

fn map<T>(p: Parsed<T>, f: impl Fn(&T) -> (Option<serde_json::Value>, String)) -> Rendered {
    let (ast, pretty) = match p.value.as_ref().map(f) {
        Some((a, s)) => (a, Some(s)),
        None => (None, None),
    };
    Rendered {
        ast,
        pretty,
        diagnostics: p.diagnostics,
    }
}

fn emit(format: Format, max_diags: usize, kind: &str, source: Source, r: Rendered) -> Status {
    let ok = !r.diagnostics.iter().any(Diagnostic::is_error);
    match format {
        Format::Json => {
            let (list, omitted) = output::diagnostics_json(&source, &r.diagnostics, max_diags);
            output::json(&json!({
                "kind": kind,
                "ok": ok,
                "ast": r.ast,
                "diagnostics": list,
                "diagnostics_omitted": omitted,
            }))
        }
        Format::Human => {
            output::diagnostics_human(&source, &r.diagnostics, max_diags);
            if let Some(p) = r.pretty.filter(|_| ok) {
                output::line(p.trim_end());
            }
        }
    }
    if ok { Status::Ok } else { Status::Rejected }
}

fn parse_task(name: &str, text: &str, format: Format, max_diags: usize) -> Status {
    let loaded = stepforge_task::load_str(name, text);
    let mut diagnostics = loaded.diagnostics.clone();
    let mut fns = Vec::new();
    let mut outputs = Vec::new();
    let mut impl_pretty = None;
    if let Some(task) = &loaded.task {
        for f in &task.fns {
            fns.push(json!({
                "func_name": f.func_name.name,
                "kind": if f.is_reducer() { "reducer" } else { "stateless" },
                "input_dtype": print::dtype(&f.input_dtype),
                "output_dtype": print::dtype(&f.output_dtype),
                "apply": print::block(&f.body),
            }));
        }
        for o in &task.outputs {
            outputs.push(json!({
                "name": o.name.name,
                "dtype": print::dtype(&o.dtype),
                "dims": o.dims.iter().map(print::dim).collect::<Vec<_>>(),
                "data_transform": o.transforms.iter().map(print::block).collect::<Vec<_>>(),
            }));
        }
        if task.reference_impl.is_some() {
            let p = stepforge_task::parse_impl(task);
            diagnostics.extend(p.diagnostics);
            impl_pretty = p.value.as_ref().map(print::program);
        }
    }
    let ok = loaded.task.is_some() && !diagnostics.iter().any(Diagnostic::is_error);
    match format {
        Format::Json => {
            let (list, omitted) = output::diagnostics_json(&loaded.source, &diagnostics, max_diags);
            output::json(&json!({
                "kind": "task",
                "ok": ok,
                "task": loaded.task.as_ref().map(|t| t.name.clone()),
                "fns": fns,
                "outputs": outputs,
                "impl": impl_pretty,
                "diagnostics": list,
                "diagnostics_omitted": omitted,
            }))
        }
        Format::Human => {
            output::diagnostics_human(&loaded.source, &diagnostics, max_diags);
            if let Some(task) = loaded.task.as_ref().filter(|_| ok) {
                output::line(&format!(
                    "task {}: {} inputs, {} parameters, {} fns, {} outputs{}",
                    task.name,
                    task.inputs.len(),
                    task.parameters.len(),
                    task.fns.len(),
                    task.outputs.len(),
                    if impl_pretty.is_some() {
                        ", reference impl"
                    } else {
                        ""
                    }
                ));
                if let Some(p) = &impl_pretty {
                    for l in p.lines() {
                        output::line(&format!("    {l}"));
                    }
                }
            }
        }
    }
    if ok { Status::Ok } else { Status::Rejected }
}
