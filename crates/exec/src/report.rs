//! The verification report and its JSON form (DESIGN §11):
//! `{"task","verdict","linear","linear_compat","copies_needed","diagnostics":[..],
//!   "outputs":[{"name","max_abs_err","max_rel_err","first_mismatch":{"index","expected","found"},"excused"?}],
//!   "seeds":[..],"elapsed_us"}`.

use std::fmt;

use serde::Serialize;
use stepforge_diag::{Diagnostic, Source, Span};

use crate::compare::Mismatch;
use crate::error::{ExecError, Origin};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    SyntaxError,
    TypeError,
    ShapeMismatch,
    ValueMismatch,
    RuntimeError,
    LimitExceeded,
    TaskError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::SyntaxError => "syntax_error",
            Verdict::TypeError => "type_error",
            Verdict::ShapeMismatch => "shape_mismatch",
            Verdict::ValueMismatch => "value_mismatch",
            Verdict::RuntimeError => "runtime_error",
            Verdict::LimitExceeded => "limit_exceeded",
            Verdict::TaskError => "task_error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A diagnostic and the text its spans point into.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDiagnostic {
    pub origin: Origin,
    pub diagnostic: Diagnostic,
    /// For a task-file diagnostic raised while the program ran: the op that was running
    /// (a span into the program text).
    pub op_span: Option<Span>,
}

/// Comparison result of one output field (`Y`, or `Y[k]` for a tuple output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputReport {
    pub name: String,
    /// `None` when the field was not compared (its shape differed).
    pub max_abs_err: Option<f64>,
    pub max_rel_err: Option<f64>,
    pub first_mismatch: Option<Mismatch>,
    /// Elements outside the tolerance that the tie-aware comparison excused as near-ties of a
    /// discrete decision in the reference (DESIGN §9). The error statistics above include them,
    /// so a pass can show a large `max_abs_err`; this count says why. Omitted when zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub excused: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where a verification's time went (DESIGN §9: `"timing"` in the JSON), summed over seeds.
/// Task-level work served from a session's cache costs nothing here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTiming {
    /// Seeded input generation.
    pub generate_us: u64,
    /// Evaluating the references.
    pub reference_us: u64,
    /// Running the program.
    pub program_us: u64,
    /// Comparing outputs with the references.
    pub compare_us: u64,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub task: String,
    pub verdict: Verdict,
    /// `None` when the program never reached the linearity check (it did not parse, or the
    /// task failed before checking): JSON `null`, human "not checked".
    pub linear: Option<bool>,
    pub linear_compat: Option<bool>,
    pub copies_needed: usize,
    pub diagnostics: Vec<ReportDiagnostic>,
    pub outputs: Vec<OutputReport>,
    pub seeds: Vec<u64>,
    pub elapsed_us: u64,
    pub timing: PhaseTiming,
    /// The task file.
    pub task_source: Source,
    /// The verified program's text; `None` when the task's own `impl` was verified (then
    /// program spans point into `task_source`).
    pub program_source: Option<Source>,
    /// What the native backend did with each element function (`--jit-report`; not part of
    /// the report's JSON, which the CLI extends on request).
    pub jit: Vec<crate::native::JitFnReport>,
}

impl VerifyReport {
    pub fn new(
        task: &str,
        task_source: Source,
        program_source: Option<Source>,
        seeds: Vec<u64>,
    ) -> VerifyReport {
        VerifyReport {
            task: task.to_string(),
            verdict: Verdict::TaskError,
            linear: None,
            linear_compat: None,
            copies_needed: 0,
            diagnostics: Vec::new(),
            outputs: Vec::new(),
            seeds,
            elapsed_us: 0,
            timing: PhaseTiming::default(),
            task_source,
            program_source,
            jit: Vec::new(),
        }
    }

    /// The agent's bar (DESIGN §9): verdict `pass` and linear.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass && self.linear == Some(true)
    }

    pub fn push(&mut self, origin: Origin, diagnostic: Diagnostic) {
        self.diagnostics.push(ReportDiagnostic {
            origin,
            diagnostic,
            op_span: None,
        });
    }

    pub fn push_exec(&mut self, e: ExecError) {
        self.diagnostics.push(ReportDiagnostic {
            origin: e.origin,
            diagnostic: *e.diagnostic,
            op_span: e.op_span,
        });
    }

    /// The text a diagnostic of `origin` points into.
    pub fn source(&self, origin: Origin) -> &Source {
        match (origin, &self.program_source) {
            (Origin::Program, Some(p)) => p,
            _ => &self.task_source,
        }
    }

    /// The diagnostic as rendered: a task-file diagnostic raised by a program op gets a note
    /// saying which program line was running.
    pub fn resolved(&self, d: &ReportDiagnostic) -> Diagnostic {
        let mut out = d.diagnostic.clone();
        if let Some(op) = d.op_span {
            let src = self.source(Origin::Program);
            let lc = src.line_col(op.lo);
            let text = src.slice(op).lines().next().unwrap_or("").trim();
            out = out.note(format!(
                "while running `{text}` at {}:{}:{}",
                src.name, lc.line, lc.column
            ));
        }
        out
    }

    /// Errors only: the diagnostics that explain the verdict.
    pub fn errors(&self) -> impl Iterator<Item = &ReportDiagnostic> {
        self.diagnostics.iter().filter(|d| d.diagnostic.is_error())
    }

    /// The JSON object of DESIGN §11.
    pub fn to_json(&self) -> serde_json::Value {
        let diagnostics: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let src = self.source(d.origin);
                // Which text the line numbers count in: the task file or the program.
                let in_task = d.origin == Origin::Task || self.program_source.is_none();
                let resolved = self.resolved(d);
                let mut v = match in_task {
                    true => resolved.in_task().to_json(src),
                    false => resolved.to_json(src),
                };
                v["source"] = serde_json::json!(if in_task { "task" } else { "program" });
                v["path"] = serde_json::json!(src.name);
                v
            })
            .collect();
        serde_json::json!({
            "task": self.task,
            "verdict": self.verdict,
            "linear": self.linear,
            "linear_compat": self.linear_compat,
            "copies_needed": self.copies_needed,
            "diagnostics": diagnostics,
            "outputs": self.outputs,
            "seeds": self.seeds,
            "elapsed_us": self.elapsed_us,
            "timing": self.timing,
        })
    }

    /// Every diagnostic rendered for people (source snippets, carets).
    pub fn render_human(&self, color: bool) -> String {
        self.diagnostics
            .iter()
            .map(|d| self.resolved(d).render_human(self.source(d.origin), color))
            .collect()
    }

    /// Elements excused as near-ties, over all outputs.
    pub fn excused(&self) -> usize {
        self.outputs.iter().map(|o| o.excused).sum()
    }

    /// The largest absolute error over all compared outputs.
    pub fn max_abs_err(&self) -> Option<f64> {
        self.outputs
            .iter()
            .filter_map(|o| o.max_abs_err)
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            })
    }
}
