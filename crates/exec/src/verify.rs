//! Verification (DESIGN §9) of a checked program: execute on seeded data → compare with the
//! task's reference snippets, producing a [`VerifyReport`] with one verdict. Parsing and
//! checking are the driver's (`stepforge-driver`); this module starts from a
//! [`CheckedProgram`] and a [`TaskSpec`].
//!
//! Order of work, chosen so the cheapest rejection comes first: the checker's verdict (syntax
//! and type errors need no data), then dimension values and `global`, element-function
//! preparation (task errors), then per seed: data generation (size limits are checked before
//! allocating), the program, the references, the comparison. The first failing seed ends the
//! run.

use std::time::Instant;

use stepforge_diag::codes::{Code, Phase};
use stepforge_diag::{Diagnostic, Span};
use stepforge_ir::OpKind;
use stepforge_task::Tolerance;
use stepforge_tensor::{Tensor, fmt_shape};

use crate::cache::{DimsPrep, SeedData, VerifyCache, perturbed_expected, rounding_expected};
use crate::compare::{
    EPS_F32, FieldStats, MAX_EXCUSED_FRACTION, ToleranceRule, compare_rounding_aware,
    compare_values, effective_tolerance, tolerance_with_rms,
};
use crate::error::{ErrorClass, ExecError, Origin};
use crate::exec::Prepared;
use crate::limits::{Clock, ExecLimits};
use crate::report::{OutputReport, Verdict, VerifyReport};
use crate::spec::{CheckedProgram, TaskSpec};

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

    /// The tolerance: flags over the task's `tolerance:` (`task`) over the defaults.
    pub fn tolerance(&self, task: Option<Tolerance>) -> Tolerance {
        let base = task.unwrap_or_default();
        Tolerance {
            rtol: self.rtol.unwrap_or(base.rtol),
            atol: self.atol.unwrap_or(base.atol),
        }
    }
}

/// Verifies a checked program against `task`, reusing the task-level work in `cache` (dims,
/// `global`, prepared functions, seeded data, expected outputs); the cache must only ever be
/// used with this task. `elapsed_us` covers this call only: callers that parse and check
/// first add their time.
pub fn verify_checked(
    task: &TaskSpec,
    program: &CheckedProgram,
    opts: &VerifyOptions,
    cache: &VerifyCache,
) -> VerifyReport {
    // The tensor crate's own deadline: long builtins (a big matmul, einsum, topk, stack) stop
    // inside the call when the verification's time is up, whoever calls `verify`.
    let _deadline = stepforge_tensor::limits::DeadlineGuard::after(opts.limits.time_limit);
    let start = Instant::now();
    let mut r = VerifyReport::new(
        task.name,
        task.source.clone(),
        program.source.cloned(),
        opts.seeds.clone(),
    );
    run_checked(task, program, opts, cache, &mut r);
    r.elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    r
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
    let phase = |d: &&Diagnostic| d.code.phase();
    if errors.iter().any(|d| phase(d) == Phase::Syntax) {
        Verdict::SyntaxError
    } else if !errors.is_empty()
        && errors
            .iter()
            .all(|d| phase(d) == Phase::Task || d.code == Code::E0315)
    {
        Verdict::TaskError
    } else if errors.iter().any(|d| phase(d) == Phase::Limit) {
        Verdict::LimitExceeded
    } else {
        Verdict::TypeError
    }
}

fn run_checked(
    task: &TaskSpec,
    program: &CheckedProgram,
    opts: &VerifyOptions,
    cache: &VerifyCache,
    r: &mut VerifyReport,
) {
    r.linear = program.linear;
    r.linear_compat = program.linear_compat;
    r.copies_needed = program.copies_needed;
    // Errors in the task's element functions and references (the checker reports them with
    // every program) belong to the task: they are shown at their place in the task file.
    let task_fn = |d: &Diagnostic| {
        task.function_diagnostics
            .iter()
            .find(|t| t.code == d.code && t.message == d.message)
    };
    for d in program.diagnostics {
        match task_fn(d) {
            Some(t) => r.push(Origin::Task, t.clone()),
            None => r.push(Origin::Program, d.clone()),
        }
    }
    let Some(graph) = program.graph else {
        r.verdict = static_verdict(program.diagnostics, |d| task_fn(d).is_some());
        return;
    };
    if let Err(e) = execute(task, graph, opts, cache, r) {
        r.verdict = match e.class {
            ErrorClass::Runtime => Verdict::RuntimeError,
            ErrorClass::Limit => Verdict::LimitExceeded,
            ErrorClass::Task => Verdict::TaskError,
        };
        r.push_exec(e);
    }
}

/// The two antithetic draws of the references on perturbed inputs (DESIGN §9, tie-aware
/// comparison), with a relative noise of the field's tolerance.
fn perturbed_draws(
    task: &TaskSpec,
    prep: &DimsPrep,
    data: &SeedData,
    tol: Tolerance,
    clock: &Clock,
) -> Result<Vec<Vec<Vec<Tensor>>>, ExecError> {
    let rel = tol.rtol.max(EPS_F32);
    let mut draws = (0..2)
        .map(|draw| perturbed_expected(task, prep, data, rel, draw, clock))
        .collect::<Result<Vec<_>, _>>()?;
    // Draws ROUNDING_DRAWS..: f32 rounding noise on the reference's arithmetic.
    for draw in 0..2 {
        draws.push(rounding_expected(
            task,
            prep,
            data,
            ROUNDING_REL,
            draw,
            clock,
        )?);
    }
    Ok(draws)
}

/// Where the rounding draws start in [`perturbed_draws`]'s result.
const ROUNDING_DRAWS: usize = 2;

/// Relative size of the rounding noise: four f32 epsilons per arithmetic op.
const ROUNDING_REL: f64 = 4.0 * EPS_F32;

/// The longest reduction that can feed an output (DESIGN §9, the depth of the tolerance
/// formula): the elements one Accum or Scan folds, the branches a Merge folds, and the longest
/// dimension of any element buffer or parameter (element functions contract over those:
/// `x @ W`, `x.sum()`). A conservative bound read off the graph and the dims, so a correct
/// f32 program is not rejected for rounding the f64 reference does not make.
fn reduction_depth(
    graph: &stepforge_ir::Graph,
    dims: &std::collections::BTreeMap<String, i64>,
) -> u64 {
    let env = stepforge_ir::DimEnv::from_statics(dims.iter().map(|(k, v)| (k.clone(), *v)));
    let value = |d: &stepforge_ir::Dim| d.eval(&env).and_then(|v| u64::try_from(v).ok());
    let mut depth = 1u64;
    for op in graph.ops() {
        let folded = match &op.kind {
            OpKind::Accum { b, .. } | OpKind::Scan { b, .. } => {
                graph.inputs_of(op.id).first().map(|s| {
                    graph
                        .stream(*s)
                        .ty
                        .dims
                        .iter()
                        .take(*b)
                        .filter_map(value)
                        .product()
                })
            }
            OpKind::Merge { n, .. } => Some(*n as u64),
            _ => None,
        };
        depth = depth.max(folded.unwrap_or(1));
    }
    let buffer_dims = graph
        .streams()
        .iter()
        .flat_map(|s| s.ty.elem.fields().to_vec())
        .flat_map(|f| f.field_tensor_dims());
    let param_dims = graph.params().iter().flat_map(|p| p.dims.clone());
    for d in buffer_dims.chain(param_dims) {
        depth = depth.max(value(&d).unwrap_or(1));
    }
    depth
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs every seed; on a mismatch sets the verdict and returns `Ok`.
fn execute(
    task: &TaskSpec,
    graph: &stepforge_ir::Graph,
    opts: &VerifyOptions,
    cache: &VerifyCache,
    r: &mut VerifyReport,
) -> Result<(), ExecError> {
    let limits = &opts.limits;
    let mut clock = Clock::new(limits);
    let prep = cache.dims(task, &opts.dims, limits)?;
    let prepared = Prepared::new_cached(graph, task.functions, &prep.env, &prep.plans)?;
    let rule = ToleranceRule {
        base: opts.tolerance(task.tolerance),
        depth: reduction_depth(graph, &prep.env.dims),
        exact: opts.rtol.is_some() || opts.atol.is_some(),
    };
    // Per output field: the error statistics, and whether its shape matched (else the field
    // was not compared and reports no errors).
    let mut stats: Vec<Vec<(FieldStats, bool)>> = task
        .outputs
        .iter()
        .map(|o| vec![(FieldStats::default(), true); o.fields.max(1)])
        .collect();
    let mut shape_bad = false;
    let mut value_bad = false;
    for &seed in &opts.seeds {
        let data = cache.seed(task, &prep, seed, limits, &clock)?;
        r.timing.generate_us += data.generate_us;
        r.timing.reference_us += data.reference_us;
        let started = Instant::now();
        let outputs = prepared.run(&data.env, &data.inputs, limits, &mut clock)?;
        r.timing.program_us += micros(started);
        let started = Instant::now();
        // The references on perturbed inputs, computed at the first mismatch of this seed.
        let mut perturbed: Option<Vec<Vec<Vec<Tensor>>>> = None;
        for (oi, ((decl, found), expected)) in task
            .outputs
            .iter()
            .zip(&outputs)
            .zip(&data.expected)
            .enumerate()
        {
            for (k, expected) in expected.iter().enumerate() {
                let Some(field) = found.fields.get(k) else {
                    continue;
                };
                let shape = found.field_shape(k);
                let name = field_name(&decl.name, k, decl.fields);
                if shape != expected.shape() {
                    shape_bad = true;
                    let d = shape_mismatch(&name, &shape, expected.shape());
                    r.push(Origin::Program, at_output(d, graph, oi));
                    if let Some(s) = stats.get_mut(oi).and_then(|v| v.get_mut(k)) {
                        s.1 = false;
                    }
                    continue;
                }
                let Some(expected_v) = data.expected_f64.get(oi).and_then(|o| o.get(k)) else {
                    continue;
                };
                let rms = data.expected_rms.get(oi).and_then(|o| o.get(k)).copied();
                let tol = match rms {
                    Some(rms) => tolerance_with_rms(rule, rms),
                    None => effective_tolerance(rule, expected_v),
                };
                let mut st = compare_values(&field.data, expected_v, &shape, tol);
                if st.first_mismatch.is_some() {
                    let draws = match &perturbed {
                        Some(p) => p,
                        None => perturbed.insert(perturbed_draws(task, &prep, &data, tol, &clock)?),
                    };
                    let values: Vec<Vec<f64>> = draws
                        .iter()
                        .filter_map(|d| d.get(oi).and_then(|o| o.get(k)))
                        .map(Tensor::to_f64_vec)
                        .collect();
                    let refs: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                    let (refs, rounding) = refs.split_at(ROUNDING_DRAWS.min(refs.len()));
                    st = compare_rounding_aware(
                        &field.data,
                        expected_v,
                        refs,
                        rounding,
                        &shape,
                        tol,
                        MAX_EXCUSED_FRACTION,
                    );
                }
                if let Some(m) = &st.first_mismatch
                    && !value_bad
                {
                    let d = value_mismatch(&name, m, seed, tol);
                    r.push(Origin::Program, at_output(d, graph, oi));
                }
                if st.first_mismatch.is_some() {
                    value_bad = true;
                }
                if let Some(s) = stats.get_mut(oi).and_then(|v| v.get_mut(k)) {
                    s.0.merge(st);
                }
            }
        }
        r.timing.compare_us += micros(started);
        if shape_bad || value_bad {
            break;
        }
    }
    r.outputs = output_reports(task, stats);
    r.jit = prepared.jit_report();
    r.verdict = if shape_bad {
        Verdict::ShapeMismatch
    } else if value_bad {
        Verdict::ValueMismatch
    } else {
        Verdict::Pass
    };
    Ok(())
}

/// One report per output field, with its error statistics (none when not compared).
fn output_reports(task: &TaskSpec, stats: Vec<Vec<(FieldStats, bool)>>) -> Vec<OutputReport> {
    task.outputs
        .iter()
        .zip(stats)
        .flat_map(|(decl, fields)| {
            let n = fields.len();
            fields
                .into_iter()
                .enumerate()
                .map(move |(k, (s, compared))| OutputReport {
                    name: field_name(&decl.name, k, n),
                    max_abs_err: compared.then_some(s.max_abs_err),
                    max_rel_err: compared.then_some(s.max_rel_err),
                    first_mismatch: s.first_mismatch,
                    excused: s.excused,
                })
        })
        .collect()
}

fn shape_mismatch(name: &str, found: &[usize], expected: &[usize]) -> Diagnostic {
    Diagnostic::new(
        Code::E0610,
        format!(
            "output `{name}` has shape {}, but the reference has shape {}",
            fmt_shape(found),
            fmt_shape(expected)
        ),
    )
    .note(format!("expected shape {}", fmt_shape(expected)))
    .note(format!("found shape {}", fmt_shape(found)))
}

fn value_mismatch(
    name: &str,
    m: &crate::compare::Mismatch,
    seed: u64,
    tol: Tolerance,
) -> Diagnostic {
    Diagnostic::new(
        Code::E0611,
        format!(
            "output `{name}` differs from the reference at index {:?} (seed {seed}): expected {}, found {}",
            m.index, m.expected as f32, m.found as f32
        ),
    )
    .note(format!(
        "tolerance: |found - expected| <= {} + {} * |expected|",
        tol.atol, tol.rtol
    ))
}

/// `d` located where the program produces output `oi` (when that has a real location).
fn at_output(d: Diagnostic, graph: &stepforge_ir::Graph, oi: usize) -> Diagnostic {
    match output_span(graph, oi) {
        Some(s) => d.at(s),
        None => d,
    }
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
