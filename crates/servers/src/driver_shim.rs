//! TEMPORARY stand-in for `stepforge-driver` (SESSION_API.md) until it lands on main: the same
//! names and signatures, implemented on the phase crates. Only [`crate::toolchain`] uses it;
//! deleting this file and pointing that module at `stepforge_driver` is the whole swap.

use std::ops::Range;
use std::path::Path;

pub use stepforge_check::TypedStream;
pub use stepforge_exec::{Verdict, VerifyOptions, VerifyReport};
use stepforge_syntax::diag::{Applicability, apply_fixes};
use stepforge_syntax::{Diagnostic, Source};
use stepforge_task::{Loaded, Task};

#[derive(Debug, Clone)]
pub struct OpenError {
    pub message: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug)]
pub struct Session {
    loaded: Loaded,
    task: Task,
    path: String,
}

#[derive(Debug, Clone)]
pub struct CheckReport {
    pub ok: bool,
    pub linear: Option<bool>,
    pub linear_compat: Option<bool>,
    pub copies_needed: usize,
    pub graph_hash: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub streams: Vec<TypedStream>,
    source: Source,
    json: serde_json::Value,
}

impl CheckReport {
    pub fn to_json(&self) -> serde_json::Value {
        self.json.clone()
    }
    pub fn source(&self) -> &Source {
        &self.source
    }
}

#[derive(Debug, Clone)]
pub struct FixReport {
    pub program: String,
    pub applied: usize,
    pub after: CheckReport,
}

impl Session {
    pub fn open(path: &Path) -> Result<Session, OpenError> {
        let loaded = stepforge_task::load_file(path).map_err(|e| OpenError {
            message: format!("cannot read {}: {e}", path.display()),
            diagnostics: Vec::new(),
        })?;
        Session::from_loaded(loaded, path.display().to_string())
    }

    pub fn from_yaml(name: &str, text: &str) -> Result<Session, OpenError> {
        Session::from_loaded(stepforge_task::load_str(name, text), name.to_string())
    }

    fn from_loaded(loaded: Loaded, path: String) -> Result<Session, OpenError> {
        match loaded.ok_task().cloned() {
            Some(task) => Ok(Session { loaded, task, path }),
            None => Err(OpenError {
                message: format!("{path}: the task file has errors"),
                diagnostics: loaded.diagnostics,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.task.name
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn task_text(&self) -> &str {
        &self.loaded.source.text
    }
    pub fn reference_impl(&self) -> Option<&str> {
        self.task.reference_impl.as_ref().map(|e| e.text.as_str())
    }
    pub fn impl_range(&self) -> Option<Range<usize>> {
        self.task.reference_impl.as_ref().map(|e| e.span.range())
    }
    pub fn fn_names(&self) -> Vec<String> {
        self.task
            .fns
            .iter()
            .map(|f| f.func_name.name.clone())
            .collect()
    }
    pub fn task_warnings(&self) -> &[Diagnostic] {
        &self.loaded.diagnostics
    }

    pub fn check(&self, program: &str) -> CheckReport {
        let (source, out) = stepforge_check::check_answer(&self.task, program);
        let json = out.to_json(&source);
        let typed = out.graph.is_some();
        CheckReport {
            ok: out.ok,
            linear: typed.then_some(out.linear),
            linear_compat: typed.then_some(out.linear_compat),
            copies_needed: out.copies_needed,
            graph_hash: None,
            diagnostics: out.diagnostics,
            streams: out.streams,
            source,
            json,
        }
    }

    pub fn fix(&self, program: &str) -> FixReport {
        let before = self.check(program);
        let fixed = apply_fixes(program, &before.diagnostics, true);
        let applied = before
            .diagnostics
            .iter()
            .flat_map(|d| d.fixes.iter())
            .filter(|f| f.applicability == Applicability::Safe)
            .count();
        let after = self.check(&fixed);
        FixReport {
            program: fixed,
            applied,
            after,
        }
    }

    pub fn verify(&self, program: Option<&str>, opts: &VerifyOptions) -> VerifyReport {
        stepforge_exec::verify_loaded(&self.loaded, program, opts)
    }
}

pub fn explain(code: &str) -> Option<String> {
    stepforge_syntax::codes::Code::parse(code).map(|c| c.explanation().to_string())
}

pub fn manual() -> String {
    String::new()
}
