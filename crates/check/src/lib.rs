//! `stepforge-check` owns the static checker (DESIGN §4, §5, §10): lowering a parsed program
//! against its task into the typed stream graph of `stepforge-ir`, name resolution (E02xx), the
//! type and shape rule of every operator (E03xx, in [`rules`]), linearity (E04xx) with the
//! Copy-inserting fix, and lints (W0201, W0202, W0401, W0801 in [`deadlock`]). [`ast_types`]
//! converts written dtypes and dims into IR types (it lives here so that the IR does not depend
//! on the parser).
//!
//! It does no I/O and never panics on user input; every problem is a [`Diagnostic`]. Results
//! are side tables: the graph is built only for a well-typed program (one whose only errors, if
//! any, are linearity errors) and is never mutated afterwards.

pub mod ast_types;
mod deadlock;
pub mod func_lower;
mod linear;
mod lower;
pub mod rules;

use serde::Serialize;
use stepforge_ir::{Graph, StreamType};
use stepforge_syntax::ast::Program;
use stepforge_syntax::{Diagnostic, Parsed, Source, Span};
use stepforge_task::Task;

pub use func_lower::lower_task_functions;
pub use linear::Linearity;
pub use lower::TaskEnv;

/// One typed stream of the program, as shown by `stepforge check --format json`
/// (`{"name", "dtype", "dims"}`, types in DESIGN notation). Formatting is deferred to
/// serialisation: the agent loop checks far more programs than it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedStream {
    pub name: String,
    pub ty: StreamType,
    /// Where the program binds it (`None` for a task input when the program lives in another
    /// file): for editors' hover and go-to-definition. Not serialised.
    pub def_span: Option<Span>,
    /// Every place the program consumes it (operands and `return`), in program order.
    pub consumers: Vec<Span>,
}

impl TypedStream {
    pub fn dtype(&self) -> String {
        self.ty.elem.to_string()
    }

    pub fn dims(&self) -> Vec<String> {
        self.ty.dims.iter().map(ToString::to_string).collect()
    }
}

impl Serialize for TypedStream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TypedStream", 3)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("dtype", &self.dtype())?;
        st.serialize_field("dims", &self.dims())?;
        st.end()
    }
}

/// Everything the checker found.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// The typed graph when the program is well typed (it may still be non-linear).
    pub graph: Option<Graph>,
    /// Sorted by position; errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// No error diagnostics at all (warnings allowed).
    pub ok: bool,
    /// Every stream is consumed at most once (returning counts as consuming). `None` when the
    /// program never reached the linearity check (it did not parse), so "not linear" is never
    /// claimed about a program nobody analysed.
    pub linear: Option<bool>,
    /// The benchmark's older rule: a stream both consumed by one op and returned is fine
    /// (`None` as for `linear`).
    pub linear_compat: Option<bool>,
    /// Copy ops the linearity fix inserts.
    pub copies_needed: usize,
    /// Named streams with their types, in definition order.
    pub streams: Vec<TypedStream>,
}

impl CheckOutput {
    fn failed(diagnostics: Vec<Diagnostic>) -> CheckOutput {
        CheckOutput {
            graph: None,
            ok: !diagnostics.iter().any(Diagnostic::is_error),
            diagnostics,
            linear: None,
            linear_compat: None,
            copies_needed: 0,
            streams: Vec::new(),
        }
    }

    /// Linear by the strict rule (false when not checked).
    pub fn is_linear(&self) -> bool {
        self.linear == Some(true)
    }

    /// True when the only errors (if any) are linearity errors.
    pub fn well_typed(&self) -> bool {
        self.graph.is_some()
    }

    /// The JSON object of `stepforge check --format json` (DESIGN §11).
    /// The canonical hash of the typed graph (`stepforge_ir::graph_hash`), when there is one.
    pub fn graph_hash(&self) -> Option<stepforge_ir::GraphHash> {
        self.graph.as_ref().map(stepforge_ir::graph_hash)
    }

    pub fn to_json(&self, source: &Source) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok,
            "linear": self.linear,
            "linear_compat": self.linear_compat,
            "copies_needed": self.copies_needed,
            "diagnostics": self.diagnostics.iter().map(|d| d.to_json(source)).collect::<Vec<_>>(),
            "streams": self.streams,
        })
    }
}

/// Options for [`check_program_with`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions<'a> {
    /// The text the program's spans point into; needed for the Copy fix to match indentation
    /// (without it, statements are assumed to start at column 1).
    pub text: Option<&'a str>,
    /// `--dims` overrides.
    pub dims: &'a [(String, i64)],
    /// The program's spans point into the task file (its reference impl), so task
    /// declarations may be labelled.
    pub same_source: bool,
}

/// Checks a parsed program against its task (spans into a separate program text).
pub fn check_program(task: &Task, program: &Program) -> CheckOutput {
    check_program_with(task, program, &CheckOptions::default())
}

pub fn check_program_with(task: &Task, program: &Program, opts: &CheckOptions) -> CheckOutput {
    let te = TaskEnv::new(task, opts.dims, opts.same_source);
    check_with_env(&te, program, opts)
}

/// Checks against a prepared [`TaskEnv`] (reuse it to check many programs for one task).
pub fn check_with_env(te: &TaskEnv, program: &Program, opts: &CheckOptions) -> CheckOutput {
    let mut lw = lower::Lowerer::new(te, opts.same_source);
    lw.run(program);
    if lw.any_reuse() {
        lw.collect_names(program);
    }
    let (lin, lin_diags) = linear::analyse(&lw, opts.text);
    let mut diagnostics = te.diagnostics.clone();
    diagnostics.append(&mut lw.diags);
    let type_ok = !diagnostics.iter().any(Diagnostic::is_error);
    diagnostics.extend(lin_diags);
    diagnostics.extend(linear::unused(&lw));

    // Comprehension bodies are lowered once per element: identical reports collapse.
    let mut seen = std::collections::BTreeSet::new();
    diagnostics.retain(|d| seen.insert((d.span, d.code, d.message.clone())));
    diagnostics.sort_by_key(|d| (d.span.map_or(0, |s| s.lo), d.severity, d.code));
    let streams: Vec<TypedStream> = lw
        .streams
        .iter()
        .filter_map(|s| {
            let ty = s.ty.as_ref()?;
            if s.disp().is_empty() {
                return None;
            }
            Some(TypedStream {
                name: s.disp().to_string(),
                ty: ty.clone(),
                def_span: s.def_span.filter(|d| *d != Span::DUMMY),
                consumers: s.uses.iter().map(|u| u.span).collect(),
            })
        })
        .collect();
    let graph = if type_ok { lw.build_graph() } else { None };
    if let Some(g) = &graph {
        diagnostics.extend(deadlock::lint(g, &te.env, opts.text));
        diagnostics.sort_by_key(|d| (d.span.map_or(0, |s| s.lo), d.severity, d.code));
    }
    CheckOutput {
        ok: !diagnostics.iter().any(Diagnostic::is_error),
        graph,
        diagnostics,
        linear: Some(lin.linear),
        linear_compat: Some(lin.linear_compat),
        copies_needed: lin.copies_needed,
        streams,
    }
}

/// Parses an answer (a program, a YAML document with `impl:`, or a fenced block) and checks it.
/// The returned [`Source`] is what the diagnostics' spans point into.
pub fn check_answer(task: &Task, text: &str) -> (Source, CheckOutput) {
    check_answer_with(task, text, &[])
}

pub fn check_answer_with(task: &Task, text: &str, dims: &[(String, i64)]) -> (Source, CheckOutput) {
    let source = Source::new("answer", text);
    let out = check_parsed(
        task,
        stepforge_syntax::parse_answer(text),
        &CheckOptions {
            text: Some(text),
            dims,
            same_source: false,
        },
    );
    (source, out)
}

/// [`check_answer_with`] against a prepared [`TaskEnv`] (built with `same_source: false`):
/// what a session does for the many candidate answers of one task.
pub fn check_answer_in(te: &TaskEnv, text: &str) -> (Source, CheckOutput) {
    let source = Source::new("answer", text);
    let opts = CheckOptions {
        text: Some(text),
        dims: &[],
        same_source: false,
    };
    let parsed = stepforge_syntax::parse_answer(text);
    let out = match (
        parsed.value,
        parsed.diagnostics.iter().any(Diagnostic::is_error),
    ) {
        (Some(p), false) => {
            let mut out = check_with_env(te, &p, &opts);
            let mut all = parsed.diagnostics;
            all.append(&mut out.diagnostics);
            out.diagnostics = all;
            out
        }
        (_, _) => CheckOutput::failed(parsed.diagnostics),
    };
    (source, out)
}

/// Checks the task's own reference `impl` (spans into `task.source`). `None` when the task has
/// no reference implementation.
pub fn check_task(task: &Task) -> Option<CheckOutput> {
    check_task_with(task, &[])
}

pub fn check_task_with(task: &Task, dims: &[(String, i64)]) -> Option<CheckOutput> {
    task.reference_impl.as_ref()?;
    Some(check_parsed(
        task,
        stepforge_task::parse_impl(task),
        &CheckOptions {
            text: Some(&task.source.text),
            dims,
            same_source: true,
        },
    ))
}

/// [`check_task_with`] against a prepared [`TaskEnv`] (built with `same_source: true`, since
/// the reference impl's spans point into the task file).
pub fn check_task_in(te: &TaskEnv, task: &Task) -> Option<CheckOutput> {
    task.reference_impl.as_ref()?;
    let parsed = stepforge_task::parse_impl(task);
    let opts = CheckOptions {
        text: Some(&task.source.text),
        dims: &[],
        same_source: true,
    };
    let has_errors = parsed.has_errors();
    Some(match (parsed.value, has_errors) {
        (Some(p), false) => {
            let mut out = check_with_env(te, &p, &opts);
            let mut all = parsed.diagnostics;
            all.append(&mut out.diagnostics);
            out.diagnostics = all;
            out
        }
        _ => CheckOutput::failed(parsed.diagnostics),
    })
}

/// Checks a parse result: the parser's diagnostics come first; a program with parse errors is
/// not checked at all.
fn check_parsed(task: &Task, parsed: Parsed<Program>, opts: &CheckOptions) -> CheckOutput {
    let has_errors = parsed.has_errors();
    match (parsed.value, has_errors) {
        (Some(p), false) => {
            let mut out = check_program_with(task, &p, opts);
            let mut all = parsed.diagnostics;
            all.append(&mut out.diagnostics);
            out.diagnostics = all;
            out
        }
        _ => CheckOutput::failed(parsed.diagnostics),
    }
}
