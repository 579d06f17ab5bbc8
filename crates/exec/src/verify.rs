//! Verification (DESIGN §9): parse → lower → check → execute on seeded data → compare with the
//! task's reference snippets, producing a [`VerifyReport`] with one verdict.
//!
//! Order of work, chosen so the cheapest rejection comes first: the checker (syntax and type
//! errors need no data), then dimension values and `global`, element-function compilation
//! (task errors), then per seed: data generation (size limits are checked before allocating),
//! the program, the references, the comparison. The first failing seed ends the run.

use std::sync::Arc;
use std::time::Instant;

use stepforge_check::CheckOutput;
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Span};
use stepforge_task::{GenLimits, Loaded, Task, Tolerance};
use stepforge_tensor::{Tensor, fmt_shape};

use crate::compare::{FieldStats, compare_values};
use crate::error::{ErrorClass, ExecError, Origin};
use crate::eval::{self, Env, EvalLimits};
use crate::exec::Prepared;
use crate::limits::{Clock, ExecLimits};
use crate::report::{OutputReport, Verdict, VerifyReport};

/// How to verify.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// The seeds to run, in order (DESIGN §9 default: 3 seeds).
    pub seeds: Vec<u64>,
    /// `--dims` overrides.
    pub dims: Vec<(String, i64)>,
    /// Override the task's (or the default) relative tolerance.
    pub rtol: Option<f64>,
    /// Override the task's (or the default) absolute tolerance.
    pub atol: Option<f64>,
    pub limits: ExecLimits,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions::with_seed_count(3)
    }
}

impl VerifyOptions {
    /// Seeds `0..n`.
    pub fn with_seed_count(n: u32) -> VerifyOptions {
        VerifyOptions {
            seeds: (0..u64::from(n)).collect(),
            dims: Vec::new(),
            rtol: None,
            atol: None,
            limits: ExecLimits::default(),
        }
    }

    /// The tolerance for `task`: flags over the task's `tolerance:` over the defaults.
    pub fn tolerance(&self, task: &Task) -> Tolerance {
        let base = task.tolerance.unwrap_or_default();
        Tolerance {
            rtol: self.rtol.unwrap_or(base.rtol),
            atol: self.atol.unwrap_or(base.atol),
        }
    }
}

/// Verifies `program_text` (a bare program or a raw LLM answer; `None` = the task's reference
/// impl) against `task`.
pub fn verify(task: &Task, program_text: Option<&str>, opts: &VerifyOptions) -> VerifyReport {
    let start = Instant::now();
    let (program_source, check) = match program_text {
        Some(text) => {
            let (src, out) = stepforge_check::check_answer_with(task, text, &opts.dims);
            (Some(src), Some(out))
        }
        None => (None, stepforge_check::check_task_with(task, &opts.dims)),
    };
    let mut r = VerifyReport::new(
        &task.name,
        task.source.clone(),
        program_source,
        opts.seeds.clone(),
    );
    match check {
        Some(check) => run_checked(task, &check, opts, &mut r),
        None => {
            r.verdict = Verdict::TaskError;
            r.push(
                Origin::Task,
                Diagnostic::new(Code::E0502, "the task has no reference `impl` to verify")
                    .help("pass the program to verify with --impl FILE"),
            );
        }
    }
    r.elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    r
}

/// Verifies against a loaded task file; a file that did not load is a `task_error` carrying
/// the loader's diagnostics.
pub fn verify_loaded(
    loaded: &Loaded,
    program_text: Option<&str>,
    opts: &VerifyOptions,
) -> VerifyReport {
    match loaded.ok_task() {
        Some(task) => verify(task, program_text, opts),
        None => {
            let name = loaded
                .task
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_else(|| stem(&loaded.source.name));
            let mut r = VerifyReport::new(&name, loaded.source.clone(), None, opts.seeds.clone());
            r.verdict = Verdict::TaskError;
            for d in &loaded.diagnostics {
                r.push(Origin::Task, d.clone());
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

/// The verdict of a program the checker could not type: the earliest phase that failed.
/// `task_fn` tells the errors found in the task's own element functions and references.
fn static_verdict(diags: &[Diagnostic], task_fn: impl Fn(&Diagnostic) -> bool) -> Verdict {
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.is_error() && !task_fn(d))
        .collect();
    if errors.is_empty() && diags.iter().any(Diagnostic::is_error) {
        return Verdict::TaskError;
    }
    let code = |d: &&Diagnostic| d.code.as_str();
    if errors.iter().any(|d| code(d).starts_with("E01")) {
        Verdict::SyntaxError
    } else if !errors.is_empty()
        && errors
            .iter()
            .all(|d| code(d).starts_with("E05") || d.code == Code::E0315)
    {
        Verdict::TaskError
    } else if errors.iter().any(|d| code(d).starts_with("E07")) {
        Verdict::LimitExceeded
    } else {
        Verdict::TypeError
    }
}

fn run_checked(task: &Task, check: &CheckOutput, opts: &VerifyOptions, r: &mut VerifyReport) {
    r.linear = check.linear;
    r.linear_compat = check.linear_compat;
    r.copies_needed = check.copies_needed;
    // Errors in the task's element functions and references (the checker reports them with
    // every program) belong to the task: they are shown at their place in the task file.
    let (_, task_fn_diags) = stepforge_check::lower_task_functions(task);
    let task_fn = |d: &Diagnostic| {
        task_fn_diags
            .iter()
            .find(|t| t.code == d.code && t.message == d.message)
    };
    for d in &check.diagnostics {
        match task_fn(d) {
            Some(t) => r.push(Origin::Task, t.clone()),
            None => r.push(Origin::Program, d.clone()),
        }
    }
    let Some(graph) = &check.graph else {
        r.verdict = static_verdict(&check.diagnostics, |d| task_fn(d).is_some());
        return;
    };
    if let Err(e) = execute(task, graph, opts, r) {
        r.verdict = match e.class {
            ErrorClass::Runtime => Verdict::RuntimeError,
            ErrorClass::Limit => Verdict::LimitExceeded,
            ErrorClass::Task => Verdict::TaskError,
        };
        r.push_exec(e);
    }
}

fn limit_diag(d: Diagnostic) -> ExecError {
    if d.code.as_str().starts_with("E07") {
        ExecError::limit(d, Origin::Task)
    } else {
        ExecError::task(d)
    }
}

/// Runs every seed; on a mismatch sets the verdict and returns `Ok`.
fn execute(
    task: &Task,
    graph: &stepforge_ir::Graph,
    opts: &VerifyOptions,
    r: &mut VerifyReport,
) -> Result<(), ExecError> {
    let limits = &opts.limits;
    let mut clock = Clock::new(limits);
    let dims = stepforge_task::dim_values(task, &opts.dims).map_err(ExecError::task)?;
    let max_numel = usize::try_from(limits.max_tensor_elements).unwrap_or(usize::MAX);
    let base = Env {
        limits: EvalLimits {
            fuel: limits.fuel,
            max_numel,
            ..EvalLimits::default()
        },
        ..Env::new(dims)
    };
    let mut env = eval::eval_global_in(task.global.as_ref(), base)
        .map_err(|e| ExecError::from_eval_task(&e))?;
    // Lowered once per task (the session will cache this; see crates/driver).
    let (functions, _) = stepforge_check::lower_task_functions(task);
    let prepared = Prepared::new(graph, task, &functions, &env)?;
    let gen_limits = GenLimits {
        max_tensor_elements: limits.max_tensor_elements,
        max_total_elements: limits.max_live_bytes / 4,
        max_total_bytes: limits.max_live_bytes,
    };
    let tol = opts.tolerance(task);
    // Per output field: the error statistics, and whether its shape matched (else the field
    // was not compared and reports no errors).
    let mut stats: Vec<Vec<(FieldStats, bool)>> = task
        .outputs
        .iter()
        .map(|o| vec![(FieldStats::default(), true); o.transforms.len().max(1)])
        .collect();
    // References share one scope in file order; they are compiled at their first use and
    // reused for every seed: only `input_data` changes between seeds.
    let blocks: Vec<&stepforge_syntax::ast::Block> =
        task.outputs.iter().flat_map(|o| &o.transforms).collect();
    let mut refs: Option<eval::References> = None;
    let mut shape_bad = false;
    let mut value_bad = false;
    for &seed in &opts.seeds {
        clock.check(Span::DUMMY)?;
        let data =
            stepforge_task::generate(task, &env.dims, seed, &gen_limits).map_err(limit_diag)?;
        let mut streams: Vec<Vec<Arc<Vec<f32>>>> = Vec::with_capacity(data.inputs.len());
        for t in data.inputs.into_iter().chain(data.parameters) {
            let is_input = streams.len() < task.inputs.len();
            let mut fields = Vec::with_capacity(t.fields.len());
            let mut first = true;
            for f in t.fields {
                if first {
                    let tensor = Tensor::from_f32(f.shape, f.data.clone())
                        .map_err(|e| ExecError::task(Diagnostic::new(Code::E0701, e.message)))?;
                    env.set_data(t.name.clone(), tensor);
                    first = false;
                }
                if is_input {
                    fields.push(Arc::new(f.data));
                }
            }
            if is_input {
                streams.push(fields);
            }
        }
        let outputs = prepared.run(&env, &streams, limits, &mut clock)?;
        drop(streams);
        clock.check(Span::DUMMY)?;
        let r_all = match &refs {
            Some(r) => r,
            None => refs.insert(
                eval::References::compile(&blocks, &env)
                    .map_err(|e| ExecError::from_eval_task(&e))?,
            ),
        };
        let mut all_expected = r_all
            .eval(&env)
            .map_err(|e| ExecError::from_eval_task(&e))?
            .into_iter();
        for (oi, (decl, found)) in task.outputs.iter().zip(&outputs).enumerate() {
            for k in 0..decl.transforms.len() {
                clock.check(Span::DUMMY)?;
                let Some(expected) = all_expected.next() else {
                    continue;
                };
                let Some(field) = found.fields.get(k) else {
                    continue;
                };
                let shape = found.field_shape(k);
                let name = field_name(&decl.name.name, k, decl.transforms.len());
                if shape != expected.shape() {
                    shape_bad = true;
                    let mut d = Diagnostic::new(
                        Code::E0610,
                        format!(
                            "output `{name}` has shape {}, but the reference has shape {}",
                            fmt_shape(&shape),
                            fmt_shape(expected.shape())
                        ),
                    )
                    .note(format!("expected shape {}", fmt_shape(expected.shape())))
                    .note(format!("found shape {}", fmt_shape(&shape)));
                    if let Some(s) = output_span(graph, oi) {
                        d = d.at(s);
                    }
                    r.push(Origin::Program, d);
                    if let Some(s) = stats.get_mut(oi).and_then(|v| v.get_mut(k)) {
                        s.1 = false;
                    }
                    continue;
                }
                let st = compare_values(&field.data, &expected.to_f64_vec(), &shape, tol);
                if let Some(m) = &st.first_mismatch
                    && !value_bad
                {
                    let mut d = Diagnostic::new(
                        Code::E0611,
                        format!(
                            "output `{name}` differs from the reference at index {:?} (seed {seed}): expected {}, found {}",
                            m.index, m.expected as f32, m.found as f32
                        ),
                    )
                    .note(format!(
                        "tolerance: |found - expected| <= {} + {} * |expected|",
                        tol.atol, tol.rtol
                    ));
                    if let Some(s) = output_span(graph, oi) {
                        d = d.at(s);
                    }
                    r.push(Origin::Program, d);
                }
                if st.first_mismatch.is_some() {
                    value_bad = true;
                }
                if let Some(s) = stats.get_mut(oi).and_then(|v| v.get_mut(k)) {
                    s.0.merge(st);
                }
            }
        }
        if shape_bad || value_bad {
            break;
        }
    }
    r.outputs = task
        .outputs
        .iter()
        .zip(stats)
        .flat_map(|(decl, fields)| {
            let n = fields.len();
            fields
                .into_iter()
                .enumerate()
                .map(move |(k, (s, compared))| OutputReport {
                    name: field_name(&decl.name.name, k, n),
                    max_abs_err: compared.then_some(s.max_abs_err),
                    max_rel_err: compared.then_some(s.max_rel_err),
                    first_mismatch: s.first_mismatch,
                })
        })
        .collect();
    r.verdict = if shape_bad {
        Verdict::ShapeMismatch
    } else if value_bad {
        Verdict::ValueMismatch
    } else {
        Verdict::Pass
    };
    Ok(())
}

/// Where the program produces output `oi`, if it has a real location.
fn output_span(graph: &stepforge_ir::Graph, oi: usize) -> Option<Span> {
    graph
        .outputs()
        .get(oi)
        .map(|&o| graph.op(o).span)
        .filter(|s| *s != Span::DUMMY)
}

fn field_name(name: &str, k: usize, n: usize) -> String {
    if n <= 1 {
        name.to_string()
    } else {
        format!("{name}[{k}]")
    }
}
