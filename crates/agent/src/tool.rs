//! The one place where the agent reaches the toolchain. Everything the loop needs from a task
//! (its prompt text, checking, the Copy fix, verification, and simulation) goes through
//! [`Tool`], so the rest of the crate never names a toolchain crate.

use std::sync::Arc;

use serde_json::Value;

/// What a checked answer looks like to the loop.
#[derive(Debug, Clone)]
pub struct CheckSummary {
    /// No error diagnostics.
    pub ok: bool,
    /// Every error is a consume-once error (the linearity phase, E04xx): the guardian's Copy
    /// fix applies.
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

/// What the simulator says about a verified program.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSummary {
    pub cycles: u64,
    pub onchip_peak_bytes: u64,
    pub deadlock: bool,
    /// The simulator's report JSON (bottleneck, stalls, sol_fraction) for optimize prompts.
    pub json: Value,
}

/// A cycle-level simulator behind the session API. The loop is written against this trait so
/// a run can go without one (the functional criterion of the paper, and fast tests);
/// [`SessionSimulator`] is the real one.
pub trait Simulator: Send + Sync {
    /// Simulates a verified program; `fifo_depth` overrides the hardware model's FIFO depth.
    /// `None` when the simulator could not run it (the reason is in `Err`).
    fn simulate(
        &self,
        tool: &Tool,
        program: &str,
        fifo_depth: Option<usize>,
    ) -> Result<SimSummary, String>;
}

/// [`Session::simulate`](stepforge_driver::Session::simulate) in functional mode on seed 0 at
/// the task's default dims with the default hardware model: the same data `verify` ran on, so
/// data-dependent routing (Partition, top-k) is simulated as it really flows.
#[derive(Debug, Clone)]
pub struct SessionSimulator {
    /// Wall-clock limit per simulation: an LLM answer must not stall the loop.
    pub wall_limit: std::time::Duration,
}

impl Default for SessionSimulator {
    fn default() -> SessionSimulator {
        SessionSimulator {
            wall_limit: std::time::Duration::from_secs(20),
        }
    }
}

impl Simulator for SessionSimulator {
    fn simulate(
        &self,
        tool: &Tool,
        program: &str,
        fifo_depth: Option<usize>,
    ) -> Result<SimSummary, String> {
        tool.inner.simulate(program, fifo_depth, self.wall_limit)
    }
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
    stepforge_driver::answer_program(answer).unwrap_or_else(|| answer.to_string())
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
    stepforge_driver::manual()
}

mod backend {
    //! The session API: one `stepforge_driver::Session` per task.
    use super::{CheckSummary, SimSummary, VerifySummary};
    use stepforge_driver::{Session, SimOptions, VerifyOptions};

    pub struct Inner {
        session: Session,
    }

    impl Inner {
        pub fn from_yaml(path: &str, text: &str) -> Result<Inner, String> {
            Session::from_yaml(path, text)
                .map(|session| Inner { session })
                .map_err(|e| format!("{path}: the task file does not load: {e}"))
        }

        pub fn name(&self) -> &str {
            self.session.name()
        }

        pub fn task_text(&self) -> &str {
            self.session.task_text()
        }

        pub fn reference_impl(&self) -> Option<&str> {
            self.session.reference_impl()
        }

        pub fn impl_range(&self) -> Option<std::ops::Range<usize>> {
            self.session.impl_range()
        }

        pub fn check(&self, answer: &str) -> CheckSummary {
            let c = self.session.check(answer);
            let mut errors = c.diagnostics.iter().filter(|d| d.is_error()).peekable();
            let only_lin = errors.peek().is_some()
                && errors.all(|d| d.code.phase() == stepforge_driver::Phase::Linearity);
            CheckSummary {
                ok: c.ok,
                only_linearity_errors: only_lin,
                json: c.to_json(),
                graph_hash: c.graph_hash().map(str::to_string),
            }
        }

        pub fn fix(&self, program: &str) -> (String, usize) {
            let f = self.session.fix(program);
            (f.program, f.applied)
        }

        pub fn verify(&self, program: &str, seeds: u32) -> VerifySummary {
            let opts = VerifyOptions::with_seed_count(seeds.max(1));
            let r = self.session.verify(Some(program), &opts);
            let json = r.to_json();
            let linear = json.get("linear").and_then(serde_json::Value::as_bool);
            VerifySummary {
                verdict: r.verdict.as_str().to_string(),
                linear,
                json,
            }
        }

        pub fn simulate(
            &self,
            program: &str,
            fifo_depth: Option<usize>,
            wall_limit: std::time::Duration,
        ) -> Result<SimSummary, String> {
            let mut opts = SimOptions::default();
            opts.engine.fifo_depth = fifo_depth;
            opts.engine.wall_limit = Some(wall_limit);
            let r = self.session.simulate(Some(program), &opts);
            let Some(run) = &r.run else {
                let why: Vec<String> = r.diagnostics.iter().map(|d| d.message.clone()).collect();
                return Err(format!(
                    "the simulator could not run it: {}",
                    why.join("; ")
                ));
            };
            let mut json = r.to_json();
            // Per-channel rows are long and say little to a proposer; units keep the stalls.
            if let Some(o) = json.as_object_mut() {
                o.remove("channels");
                o.remove("wall_ms");
            }
            Ok(SimSummary {
                cycles: run.cycles,
                onchip_peak_bytes: run.onchip_peak_bytes,
                deadlock: run.deadlock.is_some(),
                json,
            })
        }
    }

    pub fn explain(code: &str) -> Option<String> {
        stepforge_driver::explain(code)
    }
}
