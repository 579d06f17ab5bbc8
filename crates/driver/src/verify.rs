//! Verification through the driver: the answer is parsed and checked here (the checker needs
//! the task's AST), then `stepforge-exec` runs the checked graph against a [`TaskSpec`] that
//! carries only the IR and a [`TaskData`] over the task model.

use std::sync::Arc;
use std::time::Instant;

use stepforge_check::{CheckOutput, TaskEnv};
use stepforge_exec::{
    CheckedProgram, OutputSpec, TaskData, TaskSpec, Verdict, VerifyCache, VerifyOptions,
    VerifyReport,
};
use stepforge_ir::func::TaskFunctions;
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Source};
use stepforge_task::{GenLimits, GeneratedData, Loaded, Task};

/// Dimension values and data generation of a task model.
struct TaskModel<'t>(&'t Task);

impl TaskData for TaskModel<'_> {
    fn dim_values(
        &self,
        overrides: &[(String, i64)],
    ) -> Result<std::collections::BTreeMap<String, i64>, Diagnostic> {
        stepforge_task::dim_values(self.0, overrides)
    }

    fn generate(
        &self,
        dims: &std::collections::BTreeMap<String, i64>,
        seed: u64,
        limits: &GenLimits,
    ) -> Result<GeneratedData, Diagnostic> {
        stepforge_task::generate(self.0, dims, seed, limits)
    }
}

/// Runs `f` with the [`TaskSpec`] of `task` whose functions were lowered into `functions`.
pub(crate) fn with_spec<R>(
    task: &Task,
    functions: &TaskFunctions,
    f: impl FnOnce(&TaskSpec) -> R,
) -> R {
    let outputs: Vec<OutputSpec> = task
        .outputs
        .iter()
        .map(|o| OutputSpec {
            name: o.name.name.clone(),
            fields: o.transforms.len(),
        })
        .collect();
    let function_diagnostics: Vec<Diagnostic> = functions.errors().cloned().collect();
    let data = TaskModel(task);
    f(&TaskSpec {
        name: &task.name,
        source: &task.source,
        tolerance: task.tolerance,
        outputs: &outputs,
        functions,
        function_diagnostics: &function_diagnostics,
        data: &data,
    })
}

/// Verifies `program` (a bare program or a raw LLM answer; `None` = the task's reference
/// impl) against `task`, everything task-level done afresh (the task's functions are lowered
/// once, by the checker's task environment).
pub fn verify(task: &Task, program: Option<&str>, opts: &VerifyOptions) -> VerifyReport {
    verify_in(task, program, opts, &VerifyCache::new(), None)
}

/// Verifies against a loaded task file; a file that did not load is a `task_error` carrying
/// the loader's diagnostics.
pub fn verify_loaded(loaded: &Loaded, program: Option<&str>, opts: &VerifyOptions) -> VerifyReport {
    match loaded.ok_task() {
        Some(task) => verify(task, program, opts),
        None => {
            let name = loaded
                .task
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_else(|| stem(&loaded.source.name));
            let mut r = VerifyReport::new(&name, loaded.source.clone(), None, opts.seeds.clone());
            r.verdict = Verdict::TaskError;
            for d in &loaded.diagnostics {
                r.push(stepforge_exec::Origin::Task, d.clone());
            }
            r
        }
    }
}

fn stem(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(path)
        .to_string()
}

/// Parse + check (against `te` when given: a session's cached environment for answers), then
/// run through `cache`.
pub(crate) fn verify_in(
    task: &Task,
    program: Option<&str>,
    opts: &VerifyOptions,
    cache: &VerifyCache,
    te: Option<Arc<TaskEnv>>,
) -> VerifyReport {
    let start = Instant::now();
    let (source, check, te): (Option<Source>, Option<CheckOutput>, Arc<TaskEnv>) = match program {
        Some(text) => {
            let te = te.unwrap_or_else(|| Arc::new(TaskEnv::new(task, &opts.dims, false)));
            let (src, out) = stepforge_check::check_answer_in(&te, text);
            (Some(src), Some(out), te)
        }
        None => {
            // The reference impl's spans point into the task file.
            let te = Arc::new(TaskEnv::new(task, &opts.dims, true));
            let out = stepforge_check::check_task_in(&te, task);
            (None, out, te)
        }
    };
    let Some(check) = check else {
        let mut r = VerifyReport::new(&task.name, task.source.clone(), None, opts.seeds.clone());
        r.verdict = Verdict::TaskError;
        r.push(
            stepforge_exec::Origin::Task,
            Diagnostic::new(Code::E0502, "the task has no reference `impl` to verify")
                .help("pass the program to verify with --impl FILE"),
        );
        r.elapsed_us = micros(start);
        return r;
    };
    let program = CheckedProgram {
        source: source.as_ref(),
        graph: check.graph.as_ref(),
        diagnostics: &check.diagnostics,
        linear: check.linear,
        linear_compat: check.linear_compat,
        copies_needed: check.copies_needed,
    };
    let mut r = with_spec(task, &te.functions, |spec| {
        stepforge_exec::verify_checked(spec, &program, opts, cache)
    });
    r.elapsed_us = micros(start);
    r
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
