//! What verification needs of a task and of a checked program, handed over by the driver.
//!
//! The executor never sees the task file's AST nor the `Task` itself: the driver (which owns
//! parsing, loading and checking) lowers the task's functions once, checks the program, and
//! hands over the IR plus a [`TaskData`] that evaluates dimension values and generates the
//! seeded inputs.

use std::collections::BTreeMap;

use stepforge_diag::{Diagnostic, Source};
use stepforge_ir::Graph;
use stepforge_ir::func::TaskFunctions;
use stepforge_task::{GenLimits, GeneratedData, Tolerance};

/// Task-level services only the task model can provide.
///
/// The errors are plain diagnostics, as the task model's own functions return them: each is
/// called once per task or seed, never on a hot path.
#[allow(clippy::result_large_err)]
pub trait TaskData: Send + Sync {
    /// Dimension values under `--dims` overrides (E05xx on a bad override).
    fn dim_values(&self, overrides: &[(String, i64)]) -> Result<BTreeMap<String, i64>, Diagnostic>;

    /// Seeded inputs and parameters for `dims` (sizes are checked against `limits` before
    /// anything is allocated).
    fn generate(
        &self,
        dims: &BTreeMap<String, i64>,
        seed: u64,
        limits: &GenLimits,
    ) -> Result<GeneratedData, Diagnostic>;
}

/// One task output: its name and how many reference snippets (fields) it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub fields: usize,
}

/// A task as verification sees it.
pub struct TaskSpec<'a> {
    /// The task's `test_name`.
    pub name: &'a str,
    /// The task file (what task-file spans point into).
    pub source: &'a Source,
    /// The task's `tolerance:`, if any.
    pub tolerance: Option<Tolerance>,
    pub outputs: &'a [OutputSpec],
    /// The task's `global` block, element functions and references, lowered once.
    pub functions: &'a TaskFunctions,
    /// Errors found while lowering `functions` (shown with every program).
    pub function_diagnostics: &'a [Diagnostic],
    pub data: &'a dyn TaskData,
}

impl std::fmt::Debug for TaskSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// A program after the checker: what verification runs.
#[derive(Debug, Clone, Copy)]
pub struct CheckedProgram<'a> {
    /// The text the program's spans point into (`None`: the task's own reference `impl`,
    /// whose spans point into the task file).
    pub source: Option<&'a Source>,
    /// The typed graph, when the program is well typed.
    pub graph: Option<&'a Graph>,
    /// The checker's diagnostics (the task's own function errors among them).
    pub diagnostics: &'a [Diagnostic],
    pub linear: Option<bool>,
    pub linear_compat: Option<bool>,
    pub copies_needed: usize,
}
