//! `stepforge-sim` owns the cycle-level simulator (DESIGN §12): the hardware model
//! ([`HwConfig`], TOML), the lowering of a typed stream graph to units and bounded FIFO
//! channels, the discrete-event engine, deadlock detection with a diagnostic (E0801), the
//! speed-of-light bound, the report (JSON and human), Chrome traces and annotated DOT.
//!
//! It consumes `stepforge_ir::Graph` plus concrete dimension values, and element functions
//! only through the [`ElemFns`] trait; never the AST or the task. It never prints, never
//! exits, and bounds its work (`max_steps`, a wall-clock limit): bad input is a
//! [`SimError`] carrying a [`Diagnostic`].
//!
//! # Model and assumptions (DESIGN §12)
//! - One unit per op; one FIFO of `fifo_depth` entries per stream; crossing a FIFO costs
//!   `hop_latency` cycles. A unit handles one element at a time; a compute unit's cycles per
//!   element (its initiation interval and its latency) are max(⌈bytes read from tiles /
//!   memory bandwidth⌉, ⌈FLOPs / compute⌉, ⌈bytes written to tiles / memory bandwidth⌉, 1).
//!   Bytes "from tiles" are the element's `Buffer` fields (scalars and Multihot vectors travel
//!   in the FIFO itself); a reducer also reads its state's buffer fields. Parameters that
//!   element functions read are assumed resident on chip and are not charged. FLOPs come from
//!   the element function's IR and the shapes ([`flops`]).
//! - Dims: every stream dim must be known before the run except the outermost (Partition's
//!   data-dependent counts; stop tokens end every stream). A dynamic inner dim is E0802.
//! - Shape-only ops (Zip, Copy, Promote, Flatten, Reshape) move one element per cycle with no
//!   latency beyond the hop. Repeat, RepeatRef, Streamify and Partition emit one element per
//!   cycle (Streamify at least ⌈element bytes / memory bandwidth⌉). Bufferize writes each
//!   element into its tile (⌈element bytes / memory bandwidth⌉, at least 1 cycle) and emits
//!   the tile after the last one.
//! - A tile (a `Buffer` element) occupies on-chip memory from the first element Bufferize
//!   writes into it until its last reader is done with it; every copy in flight counts
//!   (Copy and Repeat of a tile count once per copy, an upper bound).
//! - Off-chip: each load or store stream gets a fixed share of the bandwidth, proportional to
//!   its traffic (rounded up to whole requests), so all streams finish together when the
//!   kernel is memory-bound; the channels are modelled in aggregate. A stream waits
//!   `startup` cycles before its first request; each element arrives `latency` cycles after
//!   its bytes were transferred; a load runs ahead of its consumer by its FIFO plus the
//!   entries that cover the latency.
//! - A back-pressured unit stops (it does not skip ahead); a Copy pushes both outputs
//!   together, so a full FIFO on either branch stops it (the classic deadlock).
//! - Timing-only Partition/Merge: selector values are unknown, so selector element `j` of an
//!   `X`-way Multihot routes to `routing_hot` branches round-robin (`j·hot … j·hot+hot−1`
//!   mod X): every expert sees the same load. Functional runs use the real bits.

mod chan;
mod deadlock;
mod engine;
pub mod flops;
pub mod fns;
pub mod hw;
mod plan;
mod report;
mod trace;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stepforge_ir::{DimEnv, Graph, StreamId};
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Source, Span};

pub use chan::{Token, Val};
pub use fns::{ElemFns, ShapeFlops};
pub use hw::HwConfig;
pub use report::{ChannelReport, DeadlockReport, SimReport, SolTerm, UnitReport};

/// How to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Overrides the config's FIFO depth.
    pub fifo_depth: Option<usize>,
    /// Depth of single FIFOs (after `fifo_depth`).
    pub depths: BTreeMap<StreamId, usize>,
    /// Timing-only routing: hot bits per selector element.
    pub routing_hot: usize,
    /// Record a Chrome trace.
    pub trace: bool,
    /// Upper bound on unit firings (work limit).
    pub max_steps: u64,
    /// Wall-clock limit.
    pub wall_limit: Option<Duration>,
    /// On a deadlock, re-simulate (timing-only) to find the FIFO depth that avoids it.
    pub suggest_depth: bool,
    /// Called now and then during a run (every 65536 unit firings) with the elements the
    /// load units have read so far and the total they will read: for a progress bar.
    pub progress: Option<Progress>,
}

/// A progress callback: `(elements loaded, elements to load)`.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            fifo_depth: None,
            depths: BTreeMap::new(),
            routing_hot: 1,
            trace: false,
            max_steps: 20_000_000_000,
            wall_limit: Some(Duration::from_secs(600)),
            suggest_depth: true,
            progress: None,
        }
    }
}

/// What to simulate.
#[derive(Clone, Copy)]
pub struct SimInput<'a> {
    pub graph: &'a Graph,
    /// Values of the static dims.
    pub dims: &'a DimEnv,
    pub hw: &'a HwConfig,
    pub fns: &'a dyn ElemFns,
    /// Functional mode: per task input, one flat f32 buffer per tuple field (DESIGN §3
    /// layout). `None`: timing-only.
    pub inputs: Option<&'a [Vec<Arc<Vec<f32>>>]>,
    /// The text the program's spans point into (for line numbers).
    pub source: Option<&'a Source>,
    /// The task's declarations (the spans of `Input` ops) live in `source` too: the program is
    /// the task file's own `impl`.
    pub same_source: bool,
}

/// One output stream's data (functional mode): dims innermost first, one buffer per field.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOutput {
    pub dims: Vec<usize>,
    pub fields: Vec<Vec<f32>>,
}

/// A finished (or deadlocked) run.
#[derive(Debug, Clone)]
pub struct SimRun {
    pub report: SimReport,
    /// Functional mode, when the run completed: one value per task output.
    pub outputs: Option<Vec<SimOutput>>,
    /// Chrome trace JSON, when asked for.
    pub trace: Option<serde_json::Value>,
}

/// Why a graph could not be simulated.
#[derive(Debug, Clone, PartialEq)]
pub struct SimError {
    pub diagnostic: Box<Diagnostic>,
}

impl SimError {
    fn new(code: Code, msg: impl Into<String>, span: Span) -> SimError {
        let mut d = Diagnostic::new(code, msg);
        if span != Span::DUMMY {
            d = d.at(span);
        }
        SimError {
            diagnostic: Box::new(d),
        }
    }
    pub(crate) fn unsupported(msg: impl Into<String>, span: Span) -> SimError {
        SimError::new(Code::E0802, msg, span)
    }
    pub(crate) fn runtime(msg: impl Into<String>, span: Span) -> SimError {
        SimError::new(Code::E0803, msg, span)
    }
    pub(crate) fn internal(msg: impl Into<String>, span: Span) -> SimError {
        SimError::new(Code::E0803, format!("internal: {}", msg.into()), span)
    }
    pub(crate) fn limit(msg: impl Into<String>, span: Span) -> SimError {
        SimError::new(Code::E0702, msg, span)
    }
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.diagnostic.code, self.diagnostic.message)
    }
}

/// Simulates `input` (functional when it carries input data, else timing-only).
pub fn simulate(input: &SimInput, opts: &SimOptions) -> Result<SimRun, SimError> {
    let start = Instant::now();
    let mut hw = input.hw.clone();
    if let Some(d) = opts.fifo_depth {
        hw.fifo_depth = d.max(1);
    }
    hw.validate()
        .map_err(|e| SimError::unsupported(e, Span::DUMMY))?;
    let plan = plan::lower(input.graph, input.dims, &hw, input.fns, &opts.depths)?;
    let mut out = engine_run(input, &hw, &plan, opts, start)?;
    if let (Some(d), true) = (&mut out.report.deadlock, opts.suggest_depth) {
        deadlock::suggest(input, &hw, &plan, opts, d);
    }
    out.report.wall_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}

/// Runs the engine once over a lowered plan and builds the report.
fn engine_run(
    input: &SimInput,
    hw: &HwConfig,
    plan: &plan::Plan,
    opts: &SimOptions,
    start: Instant,
) -> Result<SimRun, SimError> {
    let g = input.graph;
    let total: u64 = plan.offchip.values().sum();
    let bw = hw.offchip.bytes_per_cycle as f64;
    let mut share = vec![bw; plan.units.len()];
    for (&u, &b) in &plan.offchip {
        if total > 0 && b > 0 {
            share[u] = bw * b as f64 / total as f64;
        }
    }
    let mut chans: Vec<chan::Chan> = plan
        .chans
        .iter()
        .map(|c| {
            let producer = &plan.units[c.producer];
            let extra = match producer.kind {
                plan::UnitKind::Load { .. } => {
                    engine::load_window(hw, share[c.producer], c.elem_bytes as f64) as usize
                }
                _ => 0,
            };
            chan::Chan::new(c.depth, extra, hw.hop_latency, opts.trace)
        })
        .collect();
    let mut units: Vec<engine::Unit> = (0..plan.units.len())
        .map(|_| engine::Unit::new(opts.trace))
        .collect();
    let mut env = engine::Env {
        plan,
        hw,
        fns: input.fns,
        opts,
        inputs: input.inputs,
        mem: Vec::new(),
        share,
        steps: 0,
        deadline: opts.wall_limit.map(|d| start + d),
        buf: plan
            .chans
            .iter()
            .map(|c| i64::try_from(c.buf_bytes).unwrap_or(i64::MAX))
            .collect(),
        mask: plan.chans.iter().map(|c| c.mask_bits).collect(),
        loaded: 0,
        to_load: plan
            .units
            .iter()
            .map(|u| match u.kind {
                plan::UnitKind::Load { count, .. } => count,
                _ => 0,
            })
            .fold(0u64, u64::saturating_add),
        span: g.ops().map(|o| o.span).collect(),
        passive: engine::passive_units(plan),
    };
    engine::run(&mut env, &mut chans, &mut units)?;
    let deadlock = if units.iter().all(|u| u.done) {
        None
    } else {
        Some(deadlock::analyse(input, plan, &chans, &units))
    };
    let outputs = match (input.inputs, &deadlock) {
        (Some(_), None) => Some(collect_outputs(g, plan, &mut units)),
        _ => None,
    };
    let trace = opts
        .trace
        .then(|| trace::chrome(input, plan, &units, &chans));
    let report = report::build(input, hw, plan, &units, &chans, &mut env.mem, deadlock);
    Ok(SimRun {
        report,
        outputs,
        trace,
    })
}

fn collect_outputs(g: &Graph, plan: &plan::Plan, units: &mut [engine::Unit]) -> Vec<SimOutput> {
    g.outputs()
        .iter()
        .map(|&o| {
            let u = o.index();
            let fields = engine::take_output(&mut units[u]);
            let ch = plan.units[u]
                .inputs
                .first()
                .and_then(|&c| plan.chans.get(c));
            let dims = ch.map_or_else(Vec::new, |c| {
                c.dims
                    .iter()
                    .map(|d| d.and_then(|d| usize::try_from(d).ok()).unwrap_or(0))
                    .collect()
            });
            SimOutput { dims, fields }
        })
        .collect()
}

/// DOT of the graph annotated with a run's busy/stall figures.
pub fn to_dot(graph: &Graph, report: &SimReport) -> String {
    trace::dot(graph, report)
}
