//! [`Session`]: one task, prepared once, checked and verified many times.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use stepforge_check::{CheckOutput, TaskEnv, TypedStream};
use stepforge_exec::{VerifyCache, VerifyOptions, VerifyReport};
use stepforge_syntax::diag::apply_fixes;
use stepforge_syntax::{Diagnostic, Source};
use stepforge_task::{Loaded, Task};

/// Why a task file could not be opened as a session.
#[derive(Debug, Clone)]
pub enum OpenError {
    /// The file could not be read (missing, unreadable, not a regular file).
    Io { path: String, message: String },
    /// The file was read but is not a valid task: the loader's diagnostics, with the text they
    /// point into.
    Task {
        source: Box<Source>,
        diagnostics: Vec<Diagnostic>,
    },
}

impl OpenError {
    /// The JSON form: `{"error": "io", "path", "message"}` or `{"error": "task",
    /// "diagnostics": [..]}` (diagnostics as in DESIGN §10).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            OpenError::Io { path, message } => {
                json!({"error": "io", "path": path, "message": message})
            }
            OpenError::Task {
                source,
                diagnostics,
            } => json!({
                "error": "task",
                "path": source.name,
                "diagnostics": diagnostics.iter().map(|d| d.to_json(source)).collect::<Vec<_>>(),
            }),
        }
    }

    /// Human rendering (diagnostics with source snippets).
    pub fn render_human(&self, color: bool) -> String {
        match self {
            OpenError::Io { path, message } => format!("error: cannot read {path}: {message}\n"),
            OpenError::Task {
                source,
                diagnostics,
            } => diagnostics
                .iter()
                .map(|d| d.render_human(source, color))
                .collect(),
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            OpenError::Task {
                source,
                diagnostics,
            } => {
                let first = diagnostics.iter().find(|d| d.is_error());
                match first {
                    Some(d) => write!(f, "{}: {}: {}", source.name, d.code, d.message),
                    None => write!(f, "{}: not a valid task file", source.name),
                }
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// The result of [`Session::check`]: the checker's findings plus the canonical graph hash.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// No error diagnostics.
    pub ok: bool,
    /// `None` when the program never reached the linearity check (it did not parse).
    pub linear: Option<bool>,
    pub linear_compat: Option<bool>,
    pub copies_needed: usize,
    /// Canonical hash of the typed graph (hex), computed on first use by
    /// [`CheckReport::graph_hash`]: the language server re-checks whole documents on every
    /// keystroke and never asks for it.
    graph_hash: std::sync::OnceLock<Option<String>>,
    pub diagnostics: Vec<Diagnostic>,
    pub streams: Vec<TypedStream>,
    /// The checker's full output (the typed graph among it). Its `diagnostics` and `streams`
    /// are moved into the fields above (not copied), so they are empty here.
    pub output: CheckOutput,
    source: Source,
}

impl CheckReport {
    fn new(source: Source, mut output: CheckOutput) -> CheckReport {
        CheckReport {
            ok: output.ok,
            linear: output.linear,
            linear_compat: output.linear_compat,
            copies_needed: output.copies_needed,
            graph_hash: std::sync::OnceLock::new(),
            diagnostics: std::mem::take(&mut output.diagnostics),
            streams: std::mem::take(&mut output.streams),
            output,
            source,
        }
    }

    /// Canonical hash of the typed graph (hex); `None` unless well typed. Computed once, on
    /// first use.
    pub fn graph_hash(&self) -> Option<&str> {
        self.graph_hash
            .get_or_init(|| {
                self.output
                    .graph
                    .as_ref()
                    .map(|g| stepforge_ir::graph_hash(g).to_string())
            })
            .as_deref()
    }

    /// The text the diagnostics' spans point into.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The JSON object of `stepforge check --format json` (DESIGN §11).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ok": self.ok,
            "linear": self.linear,
            "linear_compat": self.linear_compat,
            "copies_needed": self.copies_needed,
            "graph_hash": self.graph_hash(),
            "diagnostics": self.diagnostics.iter().map(|d| d.to_json(&self.source)).collect::<Vec<_>>(),
            "streams": self.streams,
        })
    }

    /// Every diagnostic rendered for people.
    pub fn render_human(&self, color: bool) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render_human(&self.source, color))
            .collect()
    }
}

/// The result of [`Session::fix`].
#[derive(Debug, Clone)]
pub struct FixReport {
    /// The program text with every safe fix applied.
    pub program: String,
    /// How many fixes were applied.
    pub applied: usize,
    /// The check of the fixed program.
    pub after: CheckReport,
}

/// One task file, loaded and prepared once; checks and verifies any number of programs.
///
/// `Session` is `Send + Sync`: share it as `Arc<Session>` across threads.
#[derive(Debug)]
pub struct Session {
    loaded: Loaded,
    /// Task-level verification work (dims, `global`, seeded data, expected outputs), shared
    /// by every `verify` of this session.
    pub(crate) cache: VerifyCache,
    /// The checker's task environment per dims overrides (most sessions use one).
    envs: Mutex<Vec<EnvEntry>>,
}

/// A dims binding and the checker's task environment under it.
type EnvEntry = (Vec<(String, i64)>, Arc<TaskEnv>);

/// Distinct dims overrides whose checker environment a session keeps.
const MAX_ENVS: usize = 8;

impl Session {
    /// Reads and loads a task file.
    pub fn open(path: impl AsRef<Path>) -> Result<Session, OpenError> {
        let path = path.as_ref();
        let loaded = stepforge_task::load_file(path).map_err(|e| OpenError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Session::from_loaded(loaded)
    }

    /// Loads a task from its YAML text; `name` is what diagnostics call the file.
    pub fn from_yaml(name: &str, text: &str) -> Result<Session, OpenError> {
        Session::from_loaded(stepforge_task::load_str(name, text))
    }

    /// A session over an already loaded task file (errors in it are an [`OpenError`]).
    pub fn from_loaded(loaded: Loaded) -> Result<Session, OpenError> {
        if loaded.ok_task().is_none() {
            return Err(OpenError::Task {
                source: Box::new(loaded.source),
                diagnostics: loaded.diagnostics,
            });
        }
        Ok(Session {
            loaded,
            cache: VerifyCache::new(),
            envs: Mutex::new(Vec::new()),
        })
    }

    pub fn task(&self) -> &Task {
        // `from_loaded` admits only files whose task was built.
        match &self.loaded.task {
            Some(t) => t,
            None => unreachable!("a session always holds a task"),
        }
    }

    /// The task's `test_name` (or the file stem).
    pub fn name(&self) -> &str {
        &self.task().name
    }

    /// The name the task file was opened with.
    pub fn path(&self) -> &str {
        &self.loaded.source.name
    }

    /// The task file's text, unchanged.
    pub fn task_text(&self) -> &str {
        &self.loaded.source.text
    }

    /// The task file as a [`Source`] (what task-file spans point into).
    pub fn task_source(&self) -> &Source {
        &self.loaded.source
    }

    /// The loader's warnings (errors make [`Session::open`] fail).
    pub fn task_warnings(&self) -> &[Diagnostic] {
        &self.loaded.diagnostics
    }

    /// The task's reference program (`impl:`), if it has one.
    pub fn reference_impl(&self) -> Option<&str> {
        self.task().reference_impl.as_ref().map(|e| e.text.as_str())
    }

    /// The byte range of the whole `impl:` entry (key line through the end of its value) in
    /// [`Session::task_text`], so a prompt can show the task without its solution.
    pub fn impl_range(&self) -> Option<Range<usize>> {
        let span = self.task().reference_impl.as_ref()?.span;
        let text = self.task_text();
        let value_start = (span.lo as usize).min(text.len());
        let before = text.get(..value_start)?;
        let key = before
            .rmatch_indices("impl:")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || before.as_bytes().get(i - 1) == Some(&b'\n'))?;
        let end = (span.hi as usize).min(text.len());
        let end = text
            .get(end..)
            .and_then(|rest| rest.find('\n'))
            .map_or(text.len(), |i| end + i + 1);
        Some(key..end)
    }

    /// `func_name`s of the task's element functions, in declaration order.
    pub fn fn_names(&self) -> Vec<String> {
        self.task()
            .fns
            .iter()
            .map(|f| f.func_name.name.clone())
            .collect()
    }

    /// Checks a program: a bare program, a YAML `impl:` answer or a fenced LLM answer.
    pub fn check(&self, program: &str) -> CheckReport {
        self.check_with_dims(program, &[])
    }

    /// [`Session::check`] with dimension overrides.
    pub fn check_with_dims(&self, program: &str, dims: &[(String, i64)]) -> CheckReport {
        let te = self.task_env(dims);
        let (source, out) = stepforge_check::check_answer_in(&te, program);
        CheckReport::new(source, out)
    }

    /// The checker's view of the task under `dims` (built once per distinct overrides).
    pub(crate) fn task_env(&self, dims: &[(String, i64)]) -> Arc<TaskEnv> {
        let mut envs = self.envs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, te)) = envs.iter().find(|(d, _)| d == dims) {
            return te.clone();
        }
        let te = Arc::new(TaskEnv::new(self.task(), dims, false));
        if envs.len() >= MAX_ENVS {
            envs.remove(0);
        }
        envs.push((dims.to_vec(), te.clone()));
        te
    }

    /// Checks the task's own reference program (spans point into the task file).
    pub fn check_reference(&self, dims: &[(String, i64)]) -> Option<CheckReport> {
        let mut out = stepforge_check::check_task_with(self.task(), dims)?;
        // The reference impl lives in the task file: every span points there.
        for d in &mut out.diagnostics {
            d.map_spans(stepforge_syntax::Span::in_task);
        }
        Some(CheckReport::new(self.loaded.source.clone(), out))
    }

    /// Applies every safe machine-applicable fix (e.g. Copy insertion) and re-checks.
    pub fn fix(&self, program: &str) -> FixReport {
        let before = self.check(program);
        let applied = before
            .diagnostics
            .iter()
            .flat_map(|d| d.fixes.iter())
            .filter(|f| f.applicability == stepforge_syntax::diag::Applicability::Safe)
            .count();
        let fixed = apply_fixes(&before.source.text, &before.diagnostics, true);
        let after = self.check(&fixed);
        FixReport {
            program: fixed,
            applied,
            after,
        }
    }

    /// Verifies a program (`None`: the task's reference `impl`) on seeded data.
    pub fn verify(&self, program: Option<&str>, opts: &VerifyOptions) -> VerifyReport {
        let te = program.map(|_| self.task_env(&opts.dims));
        crate::verify::verify_in(self.task(), program, opts, &self.cache, te)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const RMS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../operators/norm/rmsnorm.yaml"
    );

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_shareable() {
        assert_send_sync::<Session>();
    }

    #[test]
    fn reference_checks_verifies_and_hashes() {
        let s = Session::open(RMS).unwrap();
        let program = s.reference_impl().unwrap().to_string();
        let c = s.check(&program);
        assert!(c.ok, "{}", c.render_human(false));
        assert_eq!(c.linear, Some(true));
        assert_eq!(c.graph_hash().map(str::len), Some(32));
        let v = s.verify(Some(&program), &VerifyOptions::with_seed_count(2));
        assert!(v.passed(), "{}", v.render_human(false));
    }

    #[test]
    fn a_hot_session_runs_the_task_functions_natively() {
        let s = Session::open(RMS).unwrap();
        let program = s.reference_impl().unwrap().to_string();
        let opts = VerifyOptions::with_seed_count(1);
        assert_eq!(opts.limits.jit, stepforge_exec::JitMode::Auto);
        let first = s.verify(Some(&program), &opts);
        assert!(first.passed(), "{}", first.render_human(false));
        assert!(!first.jit.is_empty());
        assert!(first.jit.iter().all(|j| !j.compiled), "{:?}", first.jit);
        let mut last = first;
        for _ in 0..stepforge_exec::native::HOT_USES {
            last = s.verify(Some(&program), &opts);
            assert!(last.passed(), "{}", last.render_human(false));
        }
        assert!(
            last.jit.iter().any(|j| j.compiled && j.native_calls > 0),
            "{:?}",
            last.jit
        );
        // A per-call verification prepares its plans once: it stays interpreted.
        let once = crate::verify(s.task(), Some(&program), &opts);
        assert!(once.passed());
        assert!(once.jit.iter().all(|j| !j.compiled), "{:?}", once.jit);
    }

    #[test]
    fn impl_range_strips_exactly_the_impl_entry() {
        let s = Session::open(RMS).unwrap();
        let r = s.impl_range().unwrap();
        let text = s.task_text();
        assert!(text[r.clone()].starts_with("impl:"));
        let rest = format!("{}{}", &text[..r.start], &text[r.end..]);
        assert!(!rest.contains("impl:"));
        assert!(Session::from_yaml("t.yaml", &rest).is_ok());
    }

    #[test]
    fn syntax_errors_leave_linearity_unknown() {
        let s = Session::open(RMS).unwrap();
        let c = s.check("X = step.Bufferize(a=1).apply(\nreturn X\n");
        assert!(!c.ok);
        assert_eq!(c.linear, None);
        assert!(c.to_json()["linear"].is_null());
    }

    #[test]
    fn fix_inserts_copies_and_clears_the_errors() {
        let s = Session::open(RMS).unwrap();
        let program = s.reference_impl().unwrap();
        // Use the input stream twice: a consume-once error with a Copy fix.
        let input = &s.task().inputs[0].name.name;
        let broken = format!("{program}\n").replacen(
            "return",
            &format!("Extra = step.Promote(b=0).apply({input})\nreturn"),
            1,
        );
        let c = s.check(&broken);
        assert!(c.diagnostics.iter().any(|d| d.code.as_str() == "E0401"));
        let f = s.fix(&broken);
        assert!(f.applied >= 1);
        assert!(
            !f.after
                .diagnostics
                .iter()
                .any(|d| d.code.as_str() == "E0401")
        );
    }

    #[test]
    fn missing_file_and_bad_task_are_open_errors() {
        assert!(matches!(
            Session::open("/nonexistent/task.yaml"),
            Err(OpenError::Io { .. })
        ));
        let e = Session::from_yaml("bad.yaml", "inputs: 3\n").unwrap_err();
        assert!(matches!(e, OpenError::Task { .. }));
        assert_eq!(e.to_json()["error"], "task");
    }
}
