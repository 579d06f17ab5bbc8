//! [`Session::simulate`]: the cycle-level simulator (DESIGN §12) behind the session API.
//!
//! A program is checked (or the task's reference taken), then simulated timing-only or
//! functionally on seed-0 data. Element functions reach the simulator through
//! [`stepforge_sim::ElemFns`], implemented here over the evaluator; their FLOP counts use the
//! simulator's shape estimate ([`stepforge_sim::ShapeFlops`]: one FLOP per output scalar)
//! until the element-function IR carries per-builtin costs.

use serde_json::{Value, json};
use stepforge_exec::ExecLimits;
use stepforge_exec::eval::{Env, Function};
use stepforge_exec::limits::Clock;
use stepforge_ir::{DimEnv, FnId, FnKind, Graph};
use stepforge_sim::{ElemFns, HwConfig, ShapeFlops, SimInput, simulate};
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Source};
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

/// Element functions over the evaluator (functional mode).
struct EvalFns<'a> {
    graph: &'a Graph,
    env: &'a Env,
    fns: Vec<Option<Function>>,
}

impl ElemFns for EvalFns<'_> {
    fn flops(&self, f: FnId, inputs: &[Vec<usize>], outputs: &[Vec<usize>]) -> u64 {
        ShapeFlops.flops(f, inputs, outputs)
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
        let fns = EvalFns {
            graph,
            env,
            fns: graph
                .fns()
                .iter()
                .map(|sig| {
                    let body = te.functions.fns.get(sig.id.index())?.clone().ok()?;
                    Function::from_ir(sig.name.clone(), body, env).ok()
                })
                .collect(),
        };
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
