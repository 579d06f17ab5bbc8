//! Task-level work shared by every verification of one task: the agent verifies thousands of
//! candidates per task, and most of a small verification used to be spent redoing what does
//! not depend on the candidate at all — dimension values, the `global` scope, the seeded
//! input data and the references' expected outputs.
//!
//! A [`VerifyCache`] keeps that work per (dims overrides, limits) and per seed. Entries are
//! computed on first use, under the verification that needs them first, so a broken
//! reference still fails where it always did (a task error). Memory is bounded: a seed's data
//! is kept only while the cache holds less than [`MAX_CACHED_BYTES`], and at most
//! [`MAX_DIM_SETS`] dims bindings are kept (the oldest goes first).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use stepforge_diag::codes::{Code, Phase};
use stepforge_diag::{Diagnostic, Span};
use stepforge_task::GenLimits;
use stepforge_tensor::Tensor;

use crate::error::ExecError;
use crate::eval::{self, Env, EvalLimits};
use crate::limits::{Clock, ExecLimits};
use crate::spec::TaskSpec;

/// Bytes of generated inputs and expected outputs a cache may hold.
pub const MAX_CACHED_BYTES: u64 = 256 << 20;
/// Distinct dims bindings a cache keeps.
pub const MAX_DIM_SETS: usize = 8;

/// What the cache is keyed by: everything task-level work depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PrepKey {
    dims: Vec<(String, i64)>,
    fuel: u64,
    max_tensor_elements: u64,
    max_live_bytes: u64,
}

impl PrepKey {
    fn new(dims: &[(String, i64)], limits: &ExecLimits) -> PrepKey {
        let mut dims = dims.to_vec();
        dims.sort();
        PrepKey {
            dims,
            fuel: limits.fuel,
            max_tensor_elements: limits.max_tensor_elements,
            max_live_bytes: limits.max_live_bytes,
        }
    }
}

/// One seed's inputs and the references' verdict on them.
#[derive(Debug)]
pub struct SeedData {
    /// The environment element functions and references see (dims, globals, `input_data`).
    pub env: Env,
    /// Per task input, one buffer per tuple field, in task order.
    pub inputs: Vec<Vec<Arc<Vec<f32>>>>,
    /// Per task output, one expected tensor per field.
    pub expected: Vec<Vec<Tensor>>,
    /// The same values as `f64`, converted once for every candidate's comparison.
    pub expected_f64: Vec<Vec<Vec<f64>>>,
    /// Per output field, the rms of its finite expected values (the magnitude term of the
    /// comparison's tolerance, `compare::expected_rms`): the same for every candidate.
    pub expected_rms: Vec<Vec<f64>>,
    pub generate_us: u64,
    pub reference_us: u64,
    bytes: u64,
}

/// Task-level state for one dims binding.
#[derive(Debug)]
pub struct DimsPrep {
    /// Dimension values and the `global` scope (no data yet).
    pub env: Env,
    /// The references, prepared against `env` (one shared scope, file order).
    refs: eval::References,
    /// Element functions prepared against `env`, shared by every candidate program.
    pub plans: crate::exec::PlanCache,
    seeds: Mutex<BTreeMap<u64, Arc<SeedData>>>,
}

/// See the module docs. `Send + Sync`; share one per task.
#[derive(Debug, Default)]
pub struct VerifyCache {
    dims: Mutex<Vec<(PrepKey, Arc<DimsPrep>)>>,
    bytes: Mutex<u64>,
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl VerifyCache {
    pub fn new() -> VerifyCache {
        VerifyCache::default()
    }

    /// The dims-level state for these overrides and limits (computed on first use).
    pub fn dims(
        &self,
        task: &TaskSpec,
        dims: &[(String, i64)],
        limits: &ExecLimits,
    ) -> Result<Arc<DimsPrep>, ExecError> {
        let key = PrepKey::new(dims, limits);
        if let Some((_, p)) = self
            .dims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(p.clone());
        }
        let values = task.data.dim_values(dims).map_err(ExecError::task)?;
        let max_numel = usize::try_from(limits.max_tensor_elements).unwrap_or(usize::MAX);
        let base = Env {
            limits: EvalLimits {
                fuel: limits.fuel,
                max_numel,
                ..EvalLimits::default()
            },
            ..Env::new(values)
        };
        let functions = task.functions;
        let global = functions
            .global
            .as_ref()
            .map_err(|d| ExecError::task((**d).clone()))?;
        let env =
            eval::eval_global(global.as_ref(), base).map_err(|e| ExecError::from_eval_task(&e))?;
        let refs = functions
            .references
            .as_ref()
            .map_err(|d| ExecError::task((**d).clone()))?;
        let refs =
            eval::References::from_ir(refs, &env).map_err(|e| ExecError::from_eval_task(&e))?;
        let prep = Arc::new(DimsPrep {
            env,
            refs,
            plans: crate::exec::PlanCache::default(),
            seeds: Mutex::new(BTreeMap::new()),
        });
        let mut all = self.dims.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= MAX_DIM_SETS {
            all.remove(0);
        }
        all.push((key, prep.clone()));
        Ok(prep)
    }

    /// One seed's data and expected outputs under `prep` (computed on first use, charged to
    /// `clock`).
    pub fn seed(
        &self,
        task: &TaskSpec,
        prep: &DimsPrep,
        seed: u64,
        limits: &ExecLimits,
        clock: &Clock,
    ) -> Result<Arc<SeedData>, ExecError> {
        if let Some(s) = prep
            .seeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&seed)
        {
            return Ok(s.clone());
        }
        let data = Arc::new(prepare_seed(task, prep, seed, limits, clock)?);
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.saturating_add(data.bytes) <= MAX_CACHED_BYTES {
            *bytes += data.bytes;
            prep.seeds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(seed, data.clone());
        }
        Ok(data)
    }
}

fn limit_diag(d: Diagnostic) -> ExecError {
    if d.code.phase() == Phase::Limit {
        ExecError::limit(d, crate::error::Origin::Task)
    } else {
        ExecError::task(d)
    }
}

/// Generates one seed's inputs and evaluates every reference snippet on them.
fn prepare_seed(
    task: &TaskSpec,
    prep: &DimsPrep,
    seed: u64,
    limits: &ExecLimits,
    clock: &Clock,
) -> Result<SeedData, ExecError> {
    clock.check(Span::DUMMY)?;
    let started = Instant::now();
    let gen_limits = GenLimits {
        max_tensor_elements: limits.max_tensor_elements,
        max_total_elements: limits.max_live_bytes / 4,
        max_total_bytes: limits.max_live_bytes,
    };
    let data = task
        .data
        .generate(&prep.env.dims, seed, &gen_limits)
        .map_err(limit_diag)?;
    let mut env = prep.env.clone();
    let mut inputs: Vec<Vec<Arc<Vec<f32>>>> = Vec::with_capacity(data.inputs.len());
    let mut bytes = 0u64;
    let n_inputs = data.inputs.len();
    for (i, t) in data.inputs.into_iter().chain(data.parameters).enumerate() {
        let mut fields = Vec::with_capacity(t.fields.len());
        for (k, f) in t.fields.into_iter().enumerate() {
            bytes += 4 * f.data.len() as u64;
            let buf = Arc::new(f.data);
            // `input_data['X']` is the first field (DESIGN §7 names whole tensors).
            if k == 0 {
                // shares the buffer: at model dims an input is hundreds of megabytes
                let tensor = Tensor::from_f32_shared(f.shape, Arc::clone(&buf))
                    .map_err(|e| ExecError::task(Diagnostic::new(Code::E0701, e.message)))?;
                env.set_data(t.name.clone(), tensor);
            }
            fields.push(buf);
        }
        if i < n_inputs {
            inputs.push(fields);
        }
    }
    let generate_us = micros(started);
    let started = Instant::now();
    // References contract in f64 (DESIGN §9: references may be more exact than programs).
    let _acc = stepforge_tensor::AccumulationGuard::new(stepforge_tensor::Accumulation::F64);
    clock.check(Span::DUMMY)?;
    let expected = evaluate_references(task, prep, &env)?;
    let expected_f64: Vec<Vec<Vec<f64>>> = expected
        .iter()
        .map(|o| o.iter().map(Tensor::to_f64_vec).collect())
        .collect();
    let expected_rms = expected_f64
        .iter()
        .map(|o| o.iter().map(|e| crate::compare::expected_rms(e)).collect())
        .collect();
    bytes += expected
        .iter()
        .flatten()
        .map(|t| 16 * t.numel() as u64)
        .sum::<u64>();
    Ok(SeedData {
        env,
        inputs,
        expected,
        expected_f64,
        expected_rms,
        generate_us,
        reference_us: micros(started),
        bytes,
    })
}

/// The references' outputs for `seed` with every input and parameter perturbed by a relative
/// noise `rel` (draw `draw` of [`crate::compare::perturb_f32`]): what the tie-aware comparison
/// needs to tell an ill-conditioned reference position (a near-tie the program may decide
/// either way) from a wrong program. Computed only after a mismatch, never cached.
pub fn perturbed_expected(
    task: &TaskSpec,
    prep: &DimsPrep,
    data: &SeedData,
    rel: f64,
    draw: u64,
    clock: &Clock,
) -> Result<Vec<Vec<Tensor>>, ExecError> {
    let mut env = data.env.clone();
    for t in env.data.values_mut() {
        if let Some(values) = t.as_f32() {
            let mut values = values.to_vec();
            crate::compare::perturb_f32(&mut values, rel, draw);
            let p = Tensor::from_f32(t.shape().to_vec(), values)
                .map_err(|e| ExecError::task(Diagnostic::new(Code::E0701, e.message)))?;
            *t = Arc::new(p);
        }
    }
    let _acc = stepforge_tensor::AccumulationGuard::new(stepforge_tensor::Accumulation::F64);
    // Exact f32 ties (a saturated softmax) are split too, in index order by draw (eval::ties).
    let _ties = eval::TieSplitGuard::new(if draw.is_multiple_of(2) {
        eval::TieOrder::LowFirst
    } else {
        eval::TieOrder::HighFirst
    });
    clock.check(Span::DUMMY)?;
    evaluate_references(task, prep, &env)
}

/// The references' outputs for `seed` with rounding noise `rel` on every value an arithmetic
/// builtin computes (draw `draw`; inputs unchanged): how far the reference moves when the same
/// math is rounded differently, which widens each element's tolerance
/// (`compare::compare_rounding_aware`). Computed only after a mismatch, never cached.
pub fn rounding_expected(
    task: &TaskSpec,
    prep: &DimsPrep,
    data: &SeedData,
    rel: f64,
    draw: u64,
    clock: &Clock,
) -> Result<Vec<Vec<Tensor>>, ExecError> {
    let _acc = stepforge_tensor::AccumulationGuard::new(stepforge_tensor::Accumulation::F64);
    let _noise = eval::RoundingNoiseGuard::new(draw, rel);
    clock.check(Span::DUMMY)?;
    evaluate_references(task, prep, &data.env)
}

/// Every reference snippet in one shared scope (DESIGN §7), grouped per output.
fn evaluate_references(
    task: &TaskSpec,
    prep: &DimsPrep,
    env: &Env,
) -> Result<Vec<Vec<Tensor>>, ExecError> {
    let mut all = prep
        .refs
        .eval(env)
        .map_err(|e| ExecError::from_eval_task(&e))?
        .into_iter();
    Ok(task
        .outputs
        .iter()
        .map(|decl| all.by_ref().take(decl.fields).collect())
        .collect())
}
