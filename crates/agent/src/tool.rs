//! The one place where the agent reaches the toolchain. Everything the loop needs from a task
//! (its prompt text, checking, the Copy fix, verification, and later simulation) goes through
//! [`Tool`], so the rest of the crate never names a toolchain crate.

use std::sync::Arc;

use serde_json::Value;

/// What a checked answer looks like to the loop.
#[derive(Debug, Clone)]
pub struct CheckSummary {
    /// No error diagnostics.
    pub ok: bool,
    /// Every error is a consume-once (E04xx) error: the guardian's Copy fix applies.
    pub only_linearity_errors: bool,
    /// Canonical hash of the typed graph; `None` when the program is not well typed.
    pub graph_hash: Option<String>,
    /// The JSON of `stepforge check --format json`.
    pub json: Value,
}

/// A verification outcome.
#[derive(Debug, Clone)]
pub struct VerifySummary {
    /// `pass`, `syntax_error`, `type_error`, ...
    pub verdict: String,
    pub linear: Option<bool>,
    /// The verify JSON of DESIGN §11 (timing removed so it is reproducible).
    pub json: Value,
}

impl VerifySummary {
    /// The agent's bar (DESIGN §9): `verdict == pass` and `linear == true`.
    pub fn passed(&self) -> bool {
        self.verdict == "pass" && self.linear == Some(true)
    }
}

/// What the simulator says about a program; filled only when a simulator is present.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSummary {
    pub cycles: u64,
    pub onchip_peak_bytes: u64,
    pub deadlock: bool,
    /// The simulator's report JSON (bottleneck, stalls, sol_fraction) for optimize prompts.
    pub json: Value,
}

/// A cycle-level simulator behind the session API. None is built yet; the loop, the store and
/// the optimize prompt are written against this trait so they fill in once `Session::simulate`
/// exists.
pub trait Simulator: Send + Sync {
    fn simulate(&self, tool: &Tool, program: &str) -> SimSummary;
}

/// An open task.
pub struct Tool {
    inner: backend::Inner,
    path: String,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("path", &self.path).finish()
    }
}

impl Tool {
    /// Opens a task from its text. `path` is only a label (and the group, by its directory).
    pub fn from_yaml(path: &str, text: &str) -> Result<Arc<Tool>, String> {
        let inner = backend::Inner::from_yaml(path, text)?;
        Ok(Arc::new(Tool {
            inner,
            path: path.to_string(),
        }))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    pub fn task_text(&self) -> &str {
        self.inner.task_text()
    }

    pub fn reference_impl(&self) -> Option<&str> {
        self.inner.reference_impl()
    }

    /// The task file without its `impl:` entry, text otherwise unchanged (what the proposer sees).
    pub fn prompt_text(&self) -> String {
        let text = self.task_text();
        match self.inner.impl_range() {
            Some(r) if r.end <= text.len() => {
                let mut s = String::with_capacity(text.len());
                s.push_str(&text[..r.start]);
                s.push_str(&text[r.end..]);
                s
            }
            _ => text.to_string(),
        }
    }

    pub fn check(&self, answer: &str) -> CheckSummary {
        self.inner.check(answer)
    }

    /// The program with every safe fix applied (the guardian) and the number of fixes.
    pub fn fix(&self, program: &str) -> (String, usize) {
        self.inner.fix(program)
    }

    pub fn verify(&self, program: &str, seeds: u32) -> VerifySummary {
        let mut v = self.inner.verify(program, seeds);
        if let Some(o) = v.json.as_object_mut() {
            o.remove("timing");
            o.remove("elapsed_us");
        }
        v
    }
}

/// The extracted program of a raw answer (fence, YAML `impl:` or bare), or the answer itself
/// when no program can be found (the checker then reports why).
pub fn extract_program(answer: &str) -> String {
    match stepforge_syntax::answer::extract(answer) {
        Ok(x) => {
            let p = x.program(answer);
            dedent(p)
        }
        Err(_) => answer.to_string(),
    }
}

/// Removes the common leading indentation (YAML block scalars come indented).
fn dedent(p: &str) -> String {
    let ind = p
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(p.len());
    for l in p.lines() {
        out.push_str(l.get(ind..).unwrap_or(l.trim_start()));
        out.push('\n');
    }
    out
}

/// The `stepforge explain CODE` text.
pub fn explain(code: &str) -> Option<String> {
    backend::explain(code)
}

/// The version recorded with every sample.
pub fn toolchain_version() -> String {
    format!("stepforge {}", env!("CARGO_PKG_VERSION"))
}

/// The operator manual of the proposer prompt.
pub fn manual() -> String {
    crate::manual::manual()
}

mod backend {
    //! Temporary: direct calls into the checker and executor until `stepforge-driver` lands.
    use super::{CheckSummary, VerifySummary};
    use sha2::{Digest, Sha256};

    pub struct Inner {
        task: stepforge_task::Task,
        text: String,
    }

    impl Inner {
        pub fn from_yaml(path: &str, text: &str) -> Result<Inner, String> {
            let loaded = stepforge_task::load_str(path, text);
            match loaded.ok_task() {
                Some(t) => Ok(Inner {
                    task: t.clone(),
                    text: text.to_string(),
                }),
                None => Err(format!(
                    "{path}: the task file does not load ({})",
                    loaded
                        .diagnostics
                        .iter()
                        .map(|d| d.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            }
        }

        pub fn name(&self) -> &str {
            &self.task.name
        }

        pub fn task_text(&self) -> &str {
            &self.text
        }

        pub fn reference_impl(&self) -> Option<&str> {
            self.task.reference_impl.as_ref().map(|e| e.text.as_str())
        }

        /// The top-level `impl:` entry: from its key line to the next top-level key.
        pub fn impl_range(&self) -> Option<std::ops::Range<usize>> {
            let mut pos = 0usize;
            let mut start = None;
            for line in self.text.split_inclusive('\n') {
                let top = !line.starts_with([' ', '\t', '#', '\n', '\r']) && !line.is_empty();
                if let Some(s) = start {
                    if top {
                        return Some(s..pos);
                    }
                } else if line.starts_with("impl:") {
                    start = Some(pos);
                }
                pos += line.len();
            }
            start.map(|s| s..self.text.len())
        }

        pub fn check(&self, answer: &str) -> CheckSummary {
            let (src, out) = stepforge_check::check_answer(&self.task, answer);
            let errors: Vec<_> = out.diagnostics.iter().filter(|d| d.is_error()).collect();
            let only_lin = !errors.is_empty() && errors.iter().all(|d| d.code.as_str().starts_with("E04"));
            let graph_hash = out.graph.as_ref().map(|_| {
                let printed = stepforge_syntax::parse_answer(answer)
                    .value
                    .map(|p| stepforge_syntax::print::program(&p))
                    .unwrap_or_default();
                let mut h = Sha256::new();
                h.update(printed.as_bytes());
                crate::util::hex(&h.finalize())
            });
            CheckSummary {
                json: out.to_json(&src),
                ok: out.ok,
                only_linearity_errors: only_lin,
                graph_hash,
            }
        }

        pub fn fix(&self, program: &str) -> (String, usize) {
            let (_, out) = stepforge_check::check_answer(&self.task, program);
            let n = out
                .diagnostics
                .iter()
                .map(|d| d.fixes.len())
                .sum::<usize>();
            (
                stepforge_syntax::diag::apply_fixes(program, &out.diagnostics, true),
                n,
            )
        }

        pub fn verify(&self, program: &str, seeds: u32) -> VerifySummary {
            let opts = stepforge_exec::VerifyOptions::with_seed_count(seeds.max(1));
            let r = stepforge_exec::verify(&self.task, Some(program), &opts);
            let json = r.to_json();
            let linear = json.get("linear").and_then(serde_json::Value::as_bool);
            VerifySummary {
                verdict: r.verdict.as_str().to_string(),
                linear,
                json,
            }
        }
    }

    pub fn explain(code: &str) -> Option<String> {
        let c = stepforge_syntax::codes::Code::parse(code)?;
        Some(c.explanation().to_string())
    }
}
