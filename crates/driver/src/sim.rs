//! [`Session::simulate`]: the cycle-level simulator (DESIGN §12) behind the session API.
//!
//! A program is checked (or the task's reference taken), then simulated timing-only or
//! functionally on seed-0 data. Element functions reach the simulator through
//! [`stepforge_sim::ElemFns`], implemented here once ([`EvalFns`]) over the evaluator, with
//! FLOP counts from the element-function IR, the builtin table and the run's shapes.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use stepforge_exec::ExecLimits;

use stepforge_exec::eval::{Env, Function, Module, Value as EvalValue};
use stepforge_exec::limits::Clock;
use stepforge_ir::builtin::Builtin;
use stepforge_ir::func::{Body, TaskFunctions};
use stepforge_ir::{DimEnv, FnId, FnKind, Graph};
use stepforge_sim::flops::{AVal, FlopCount, ShapeEnv, count};
use stepforge_sim::{ElemFns, HwConfig, ShapeFlops, SimInput, simulate};
use stepforge_syntax::ast::DtypeAst;
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Source};
use stepforge_task::Task;
use stepforge_tensor::Tensor;

use crate::Session;

/// How to simulate.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// `--dims` overrides.
    pub dims: Vec<(String, i64)>,
    pub hw: HwConfig,
    /// Shapes only (no data, no element functions run).
    pub timing_only: bool,
    /// Also render the annotated DOT graph.
    pub dot: bool,
    /// Engine options (FIFO depth override, trace, limits).
    pub engine: stepforge_sim::SimOptions,
}

/// The result of [`Session::simulate`].
#[derive(Debug, Clone)]
pub struct SimReport {
    pub task: String,
    /// The run itself; `None` when the program did not check or could not be simulated.
    pub run: Option<stepforge_sim::SimReport>,
    /// Check errors, a simulation error, or the deadlock diagnostic.
    pub diagnostics: Vec<Diagnostic>,
    /// Chrome trace JSON (when asked for).
    pub trace: Option<Value>,
    /// Annotated DOT (when asked for).
    pub dot: Option<String>,
    source: Source,
}

impl SimReport {
    /// The run completed without deadlock.
    pub fn ok(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.deadlock.is_none())
    }

    /// The text the diagnostics' spans point into.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// DESIGN §12 report JSON plus `task` and `diagnostics`; without a run, the numeric
    /// fields are `null`.
    pub fn to_json(&self) -> Value {
        let diags: Vec<Value> = self
            .diagnostics
            .iter()
            .map(|d| d.to_json(&self.source))
            .collect();
        let mut v = match &self.run {
            Some(r) => r.to_json(&self.source),
            None => {
                json!({"cycles": null, "seconds": null, "sol_cycles": null, "sol_fraction": null,
                           "deadlock": null, "offchip_bytes": null, "onchip_peak_bytes": null,
                           "compute_utilization": null, "offchip_bw_utilization": null,
                           "units": [], "channels": [], "wall_ms": null})
            }
        };
        v["task"] = json!(self.task);
        v["diagnostics"] = json!(diags);
        v
    }

    /// The human summary (or the diagnostics that prevented a run).
    pub fn render_human(&self, color: bool) -> String {
        match &self.run {
            Some(r) => r.render_human(&self.source, color),
            None => self
                .diagnostics
                .iter()
                .map(|d| d.render_human(&self.source, color))
                .collect(),
        }
    }
}

/// Element functions as the simulator sees them, over the evaluator: values from the
/// prepared bodies (functional mode), FLOPs from the element-function IR and the run's shapes
/// ([`stepforge_sim::flops::fn_flops`], the builtin table's costs). The session and the
/// simulator's tests share this one adapter.
pub struct EvalFns<'a> {
    graph: &'a Graph,
    env: &'a Env,
    /// Per graph function (by [`FnId`]): its lowered body.
    bodies: Vec<Option<Arc<Body>>>,
    /// Per graph function: the body prepared for `env`.
    fns: Vec<Option<Function>>,
    /// Shapes of `input_data` entries as the task declares them (timing-only runs have no
    /// data).
    declared: BTreeMap<String, Vec<usize>>,
}

/// The shape of every scalar- or Multihot-typed input and parameter the task declares
/// (`input_data[X]` has the stream dims reversed, then the element's own axis).
fn declared_shapes(task: &Task, dims: &BTreeMap<String, i64>) -> BTreeMap<String, Vec<usize>> {
    let decls = task
        .inputs
        .iter()
        .map(|i| (&i.name, &i.dims, &i.dtype))
        .chain(task.parameters.iter().map(|p| (&p.name, &p.dims, &p.dtype)));
    let mut out = BTreeMap::new();
    for (name, ds, dtype) in decls {
        let axes: Option<Vec<usize>> = ds
            .iter()
            .rev()
            .map(|d| {
                let v = stepforge_task::eval_dim(d, dims).ok()?;
                usize::try_from(v).ok()
            })
            .collect();
        let Some(mut shape) = axes else { continue };
        match dtype {
            DtypeAst::Fp32(_) => {}
            DtypeAst::Multihot { len, .. } => {
                let Some(n) = stepforge_task::eval_dim(len, dims)
                    .ok()
                    .and_then(|v| usize::try_from(v).ok())
                else {
                    continue;
                };
                shape.push(n);
            }
            _ => continue,
        }
        out.insert(name.name.clone(), shape);
    }
    out
}

impl<'a> EvalFns<'a> {
    /// The graph's functions, matched by name to the task's declarations and their lowered
    /// bodies (`functions`), prepared for `env`.
    pub fn new(graph: &'a Graph, env: &'a Env, task: &Task, functions: &TaskFunctions) -> Self {
        let bodies: Vec<Option<Arc<Body>>> = graph
            .fns()
            .iter()
            .map(|sig| functions.fns.get(sig.id.index())?.clone().ok())
            .collect();
        let fns = graph
            .fns()
            .iter()
            .zip(&bodies)
            .map(|(sig, b)| Function::from_ir(sig.name.clone(), b.clone()?, env).ok())
            .collect();
        EvalFns {
            graph,
            env,
            bodies,
            fns,
            declared: declared_shapes(task, &env.dims),
        }
    }
}

/// The names of an evaluator env as the FLOP walker sees them.
struct EnvShapes<'a>(&'a Env, &'a BTreeMap<String, Vec<usize>>);

fn abstract_value(v: &EvalValue) -> AVal {
    match v {
        EvalValue::None => AVal::None,
        EvalValue::Bool(b) => AVal::Int(i64::from(*b)),
        EvalValue::Int(i) => AVal::Int(*i),
        EvalValue::Float(_) => AVal::Num,
        EvalValue::Tensor(t) => AVal::Tensor(t.shape().to_vec()),
        EvalValue::List(l) | EvalValue::Tuple(l) if l.len() <= stepforge_sim::flops::MAX_UNROLL => {
            AVal::List(l.iter().map(abstract_value).collect())
        }
        EvalValue::Module(m) => match m {
            Module::Gelu { .. } => AVal::Callable(Builtin::Gelu, None),
            Module::Sigmoid => AVal::Callable(Builtin::Sigmoid, None),
            Module::Softmax { dim } => AVal::Callable(Builtin::Softmax, *dim),
            Module::LogSoftmax { dim } => AVal::Callable(Builtin::LogSoftmax, *dim),
            Module::Silu => AVal::Callable(Builtin::Silu, None),
            Module::Relu => AVal::Callable(Builtin::Relu, None),
            Module::Tanh => AVal::Callable(Builtin::Tanh, None),
            Module::Identity => AVal::Callable(Builtin::Identity, None),
        },
        _ => AVal::Unknown,
    }
}

impl ShapeEnv for EnvShapes<'_> {
    fn global(&self, name: &str) -> AVal {
        self.0.names.get(name).map_or(AVal::Unknown, abstract_value)
    }
    fn data(&self, name: &str) -> Option<Vec<usize>> {
        match self.0.data.get(name) {
            Some(t) => Some(t.shape().to_vec()),
            None => self.1.get(name).cloned(),
        }
    }
    fn dim(&self, name: &str) -> Option<i64> {
        self.0.dims.get(name).copied()
    }
}

impl EvalFns<'_> {
    /// FLOPs of one call of `f` (see [`ElemFns::flops`]) and how many of its nodes had to be
    /// estimated; `None` when `f` has no lowered body.
    pub fn flop_count(
        &self,
        f: FnId,
        inputs: &[Vec<usize>],
        outputs: &[Vec<usize>],
    ) -> Option<FlopCount> {
        let body = self.bodies.get(f.index())?.as_ref()?;
        let reducer = matches!(self.graph.fn_sig(f).kind, FnKind::Reducer { .. });
        let state = reducer.then_some(outputs);
        Some(count(
            body,
            inputs,
            state,
            &EnvShapes(self.env, &self.declared),
        ))
    }
}

impl ElemFns for EvalFns<'_> {
    fn flops(&self, f: FnId, inputs: &[Vec<usize>], outputs: &[Vec<usize>]) -> u64 {
        match self.flop_count(f, inputs, outputs) {
            Some(c) => c.flops,
            None => ShapeFlops.flops(f, inputs, outputs),
        }
    }

    fn apply(
        &self,
        f: FnId,
        state: Option<&[Tensor]>,
        input: &[Tensor],
    ) -> Result<Vec<Tensor>, String> {
        let func = self
            .fns
            .get(f.index())
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("{f} has no compiled body"))?;
        func.call(self.env, input.to_vec(), state.map(<[Tensor]>::to_vec))
            .map_err(|e| e.to_diagnostic().message)
    }

    fn init(&self, f: FnId, outputs: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
        let FnKind::Reducer { init } = &self.graph.fn_sig(f).kind else {
            return Err(format!(
                "fn `{}` is not a reducer",
                self.graph.fn_sig(f).name
            ));
        };
        outputs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let v = init.get(i).or(init.last()).copied().unwrap_or(0.0) as f32;
                Tensor::from_f32(s.clone(), vec![v; s.iter().product()]).map_err(|e| e.message)
            })
            .collect()
    }
}

impl Session {
    /// Simulates a program (`None`: the task's reference `impl`) on the hardware model.
    pub fn simulate(&self, program: Option<&str>, opts: &SimOptions) -> SimReport {
        let (check, same_source) = match program {
            Some(p) => (Some(self.check_with_dims(p, &opts.dims)), false),
            None => (self.check_reference(&opts.dims), true),
        };
        let mut report = SimReport {
            task: self.name().to_string(),
            run: None,
            diagnostics: Vec::new(),
            trace: None,
            dot: None,
            source: self.task_source().clone(),
        };
        let Some(check) = check else {
            report.diagnostics.push(
                Diagnostic::new(Code::E0502, "the task has no reference `impl` to simulate")
                    .help("pass the program to simulate with --impl FILE"),
            );
            return report;
        };
        report.source = check.source().clone();
        let errors: Vec<Diagnostic> = check
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        let Some(graph) = check.output.graph.as_ref().filter(|_| errors.is_empty()) else {
            report.diagnostics = errors;
            return report;
        };
        // Dims, `global`, the lowered functions and (functional mode) seed 0's data come from
        // the session's verification cache: the same values `verify` runs on.
        let te = self.task_env(&opts.dims);
        let prepared = crate::verify::with_spec(self.task(), &te.functions, |spec| {
            let limits = ExecLimits::default();
            let prep = self.cache.dims(spec, &opts.dims, &limits)?;
            let seed = match opts.timing_only {
                true => None,
                false => Some(
                    self.cache
                        .seed(spec, &prep, 0, &limits, &Clock::new(&limits))?,
                ),
            };
            Ok::<_, stepforge_exec::ExecError>((prep, seed))
        });
        let (prep, seed) = match prepared {
            Ok(p) => p,
            Err(e) => {
                report.diagnostics.push(*e.diagnostic);
                return report;
            }
        };
        let env = seed.as_ref().map_or(&prep.env, |s| &s.env);
        let dims = DimEnv::from_statics(env.dims.iter().map(|(k, v)| (k.clone(), *v)));
        let fns = EvalFns::new(graph, env, self.task(), &te.functions);
        let input = SimInput {
            graph,
            dims: &dims,
            hw: &opts.hw,
            fns: &fns,
            inputs: seed.as_ref().map(|s| &s.inputs[..]),
            source: Some(check.source()),
            same_source,
        };
        match simulate(&input, &opts.engine) {
            Ok(mut run) => {
                run.report.task = report.task.clone();
                if let Some(d) = &run.report.deadlock {
                    report.diagnostics.push(d.diagnostic.clone());
                }
                report.dot = opts.dot.then(|| stepforge_sim::to_dot(graph, &run.report));
                report.trace = run.trace.take();
                report.run = Some(run.report);
            }
            Err(e) => report.diagnostics.push(*e.diagnostic),
        }
        report
    }
}
