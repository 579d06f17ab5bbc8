//! The simulation report (DESIGN §12): JSON, human summary, speed-of-light bound and the
//! bottleneck in words.

use serde::Serialize;
use stepforge_ir::OpKind;
use stepforge_syntax::{Diagnostic, Source, Span};

use crate::SimInput;
use crate::chan::Chan;
use crate::engine::Unit;
use crate::hw::HwConfig;
use crate::plan::{Plan, UnitKind};

#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    pub id: usize,
    pub op: String,
    pub line: Option<u32>,
    pub busy: u64,
    pub stall_input: u64,
    pub stall_output: u64,
    pub elements_in: u64,
    pub elements_out: u64,
    pub flops: u64,
    #[serde(skip)]
    pub span: Span,
    /// What bounds its cycles per element: "compute", "memory", "stream" (1 element/cycle),
    /// "offchip".
    #[serde(skip)]
    pub limit: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// The stream's program name.
    pub name: String,
    pub from: usize,
    pub to: Option<usize>,
    pub depth: usize,
    pub max_occupancy: usize,
    pub elements: u64,
}

/// One unit of a deadlock cycle and what it waits for.
#[derive(Debug, Clone, Serialize)]
pub struct DeadlockUnit {
    pub id: usize,
    pub op: String,
    pub line: Option<u32>,
    pub waits_for: String,
}

/// One FIFO of a deadlock cycle.
#[derive(Debug, Clone, Serialize)]
pub struct DeadlockChannel {
    pub name: String,
    pub from: usize,
    pub to: Option<usize>,
    pub depth: usize,
    pub occupancy: usize,
    pub full: bool,
}

/// A deadlock: the cycle of units and FIFOs, and the diagnostic (E0801).
#[derive(Debug, Clone)]
pub struct DeadlockReport {
    /// The cycle (simulated time) the last unit of the cycle stopped.
    pub at_cycle: u64,
    pub units: Vec<DeadlockUnit>,
    pub channels: Vec<DeadlockChannel>,
    /// `(stream name, depth)`: the smallest depth of that FIFO alone that lets the run
    /// complete, when a search found one.
    pub suggested_depth: Option<(String, usize)>,
    pub diagnostic: Diagnostic,
    /// Stream index of each full FIFO of the cycle (for the depth search).
    pub(crate) full: Vec<usize>,
}

impl DeadlockReport {
    pub fn to_json(&self, source: &Source) -> serde_json::Value {
        serde_json::json!({
            "at_cycle": self.at_cycle,
            "units": self.units,
            "channels": self.channels,
            "suggested_depth": self.suggested_depth.as_ref().map(|(c, d)| serde_json::json!({"channel": c, "depth": d})),
            "diagnostic": self.diagnostic.to_json(source),
        })
    }
}

/// One term of the speed-of-light bound.
#[derive(Debug, Clone, Serialize)]
pub struct SolTerm {
    pub name: &'static str,
    pub cycles: u64,
}

#[derive(Debug, Clone)]
pub struct SimReport {
    /// Set by the caller (task name).
    pub task: String,
    pub functional: bool,
    pub cycles: u64,
    pub seconds: f64,
    pub sol_cycles: u64,
    pub sol_fraction: f64,
    pub sol: Vec<SolTerm>,
    pub bottleneck: String,
    pub deadlock: Option<DeadlockReport>,
    pub offchip_read: u64,
    pub offchip_write: u64,
    pub onchip_peak_bytes: u64,
    pub onchip_capacity_bytes: u64,
    pub compute_utilization: f64,
    pub offchip_bw_utilization: f64,
    pub units: Vec<UnitReport>,
    pub channels: Vec<ChannelReport>,
    pub wall_ms: f64,
}

pub(crate) fn line_of(input: &SimInput, kind: &OpKind, span: Span) -> Option<u32> {
    if span == Span::DUMMY || (matches!(kind, OpKind::Input { .. }) && !input.same_source) {
        return None;
    }
    input.source.map(|s| s.line_col(span.lo).line)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The longest path of per-unit first-element latencies and hops: no element can leave the
/// graph sooner. Ops behind a Partition may see no element at all, so only their hops count.
fn critical_path(
    plan: &Plan,
    hw: &HwConfig,
    share_bw: &dyn Fn(usize) -> f64,
    topo: &[usize],
) -> u64 {
    let n = plan.units.len();
    let mut finish = vec![0u64; n];
    let mut cond = vec![false; n];
    for &u in topo {
        let info = &plan.units[u];
        let mut ready = 0u64;
        let mut c = false;
        for &ch in &info.inputs {
            let p = plan.chans[ch].producer;
            ready = ready.max(finish[p] + hw.hop_latency);
            c |= cond[p] || matches!(plan.units[p].kind, UnitKind::Partition { .. });
        }
        if matches!(info.kind, UnitKind::Merge { .. }) {
            c = false;
        }
        cond[u] = c;
        let xfer = |ch: Option<&usize>| {
            ch.and_then(|&c| plan.chans.get(c))
                .map_or(0, |c| (c.elem_bytes as f64 / share_bw(u)).ceil() as u64)
        };
        let lat = match &info.kind {
            UnitKind::Load { .. } => {
                hw.offchip.startup + hw.offchip.latency + xfer(info.outputs.first())
            }
            UnitKind::Store => xfer(info.inputs.first()) + hw.offchip.latency,
            _ if c => 0,
            UnitKind::Map { cost, .. } => *cost,
            UnitKind::Fold {
                cost, inner, scan, ..
            } => {
                if *scan {
                    *cost
                } else {
                    cost.saturating_mul(*inner)
                }
            }
            UnitKind::Bufferize { cost, group } => cost.saturating_mul(*group),
            UnitKind::Merge { cost, .. } => *cost,
            _ => 0,
        };
        finish[u] = ready.saturating_add(lat);
    }
    finish.into_iter().max().unwrap_or(0)
}

fn limit_of(kind: &UnitKind, hw: &HwConfig, flops: u64) -> &'static str {
    match kind {
        UnitKind::Load { .. } | UnitKind::Store => "offchip",
        UnitKind::Map { cost, .. } | UnitKind::Fold { cost, .. } | UnitKind::Merge { cost, .. } => {
            let _ = flops;
            if *cost <= 1 {
                "stream"
            } else if flops_cost(kind, hw) == *cost {
                "compute"
            } else {
                "memory"
            }
        }
        UnitKind::Bufferize { cost, .. } | UnitKind::Streamify { cost, .. } if *cost > 1 => {
            "memory"
        }
        _ => "stream",
    }
}

fn flops_cost(kind: &UnitKind, hw: &HwConfig) -> u64 {
    match kind {
        UnitKind::Map { flops, .. }
        | UnitKind::Fold { flops, .. }
        | UnitKind::Merge { flops, .. } => flops.div_ceil(hw.compute_flops_per_cycle),
        _ => 0,
    }
}

/// Peak of the on-chip tile footprint over time.
fn peak(mem: &mut [(u64, i64)]) -> u64 {
    mem.sort_unstable();
    let mut cur: i64 = 0;
    let mut best: i64 = 0;
    for &(_, d) in mem.iter() {
        cur = cur.saturating_add(d);
        best = best.max(cur);
    }
    u64::try_from(best).unwrap_or(0)
}

pub(crate) fn build(
    input: &SimInput,
    hw: &HwConfig,
    plan: &Plan,
    units: &[Unit],
    chans: &[Chan],
    mem: &mut [(u64, i64)],
    deadlock: Option<DeadlockReport>,
) -> SimReport {
    let g = input.graph;
    let cycles = units.iter().map(|u| u.clock).max().unwrap_or(0);
    let urep: Vec<UnitReport> = plan
        .units
        .iter()
        .zip(units)
        .map(|(info, u)| {
            let op = g.op(stepforge_ir::OpId::new(info.op));
            UnitReport {
                id: info.op,
                op: info.label.clone(),
                line: line_of(input, &op.kind, op.span),
                busy: u.busy,
                stall_input: u.stall_in,
                stall_output: u.stall_out,
                elements_in: u.elements_in,
                elements_out: u.elements_out,
                flops: u.flops,
                span: op.span,
                limit: limit_of(&info.kind, hw, u.flops),
            }
        })
        .collect();
    let crep: Vec<ChannelReport> = plan
        .chans
        .iter()
        .zip(chans)
        .map(|(c, ch)| ChannelReport {
            name: c.name.clone(),
            from: c.producer,
            to: c.consumer,
            depth: c.depth,
            // Entries still queued (a deadlock) were never popped, so count them here.
            max_occupancy: ch.max_occ.max(ch.q.len()),
            elements: ch.elements,
        })
        .collect();
    let flops: u64 = urep.iter().map(|u| u.flops).sum();
    let compute_units = plan
        .units
        .iter()
        .filter(|u| {
            matches!(
                u.kind,
                UnitKind::Map { .. } | UnitKind::Fold { .. } | UnitKind::Merge { .. }
            )
        })
        .count()
        .max(1) as u64;
    let total_compute = hw.compute_flops_per_cycle.saturating_mul(compute_units);
    let offchip = plan.offchip_read.saturating_add(plan.offchip_write);
    let total: u64 = plan.offchip.values().sum();
    let bw = hw.offchip.bytes_per_cycle as f64;
    let share = |u: usize| match plan.offchip.get(&u) {
        Some(&b) if total > 0 && b > 0 => bw * b as f64 / total as f64,
        _ => bw,
    };
    let topo: Vec<usize> = g.topo_order().iter().map(|o| o.index()).collect();
    let busiest = urep
        .iter()
        .max_by_key(|u| (u.busy, std::cmp::Reverse(u.id)));
    let sol = vec![
        SolTerm {
            name: "compute",
            cycles: flops.div_ceil(total_compute),
        },
        SolTerm {
            name: "offchip",
            cycles: offchip.div_ceil(hw.offchip.bytes_per_cycle),
        },
        SolTerm {
            name: "critical_path",
            cycles: critical_path(plan, hw, &share, &topo),
        },
        SolTerm {
            name: "busiest_unit",
            cycles: busiest.map_or(0, |u| u.busy),
        },
    ];
    let sol_cycles = sol.iter().map(|t| t.cycles).max().unwrap_or(0);
    let mut r = SimReport {
        task: String::new(),
        functional: input.inputs.is_some(),
        cycles,
        seconds: cycles as f64 / hw.clock_hz as f64,
        sol_cycles,
        sol_fraction: ratio(sol_cycles as f64, cycles as f64).min(1.0),
        sol,
        bottleneck: String::new(),
        deadlock,
        offchip_read: plan.offchip_read,
        offchip_write: plan.offchip_write,
        onchip_peak_bytes: peak(mem),
        onchip_capacity_bytes: hw.onchip_capacity_bytes,
        compute_utilization: ratio(flops as f64, total_compute as f64 * cycles as f64),
        offchip_bw_utilization: ratio(offchip as f64, bw * cycles as f64),
        units: urep,
        channels: crep,
        wall_ms: 0.0,
    };
    r.bottleneck = bottleneck(&r);
    r
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn at_line(u: &UnitReport) -> String {
    match u.line {
        Some(l) => format!("{} (line {l})", u.op),
        None => u.op.clone(),
    }
}

/// The bottleneck in words, from the largest speed-of-light term.
fn bottleneck(r: &SimReport) -> String {
    if let Some(d) = &r.deadlock {
        return format!("deadlock: {}", d.diagnostic.message);
    }
    let top = r
        .sol
        .iter()
        .max_by_key(|t| t.cycles)
        .map_or("critical_path", |t| t.name);
    let c = r.cycles as f64;
    let main = match top {
        "offchip" => format!(
            "memory-bound: off-chip traffic at {} of bandwidth ({} B read, {} B written)",
            pct(r.offchip_bw_utilization),
            r.offchip_read,
            r.offchip_write
        ),
        "compute" => format!(
            "compute-bound: {} of total compute",
            pct(r.compute_utilization)
        ),
        "busiest_unit" => {
            let u = r
                .units
                .iter()
                .max_by_key(|u| (u.busy, std::cmp::Reverse(u.id)));
            match u {
                Some(u) => {
                    let what = match u.limit {
                        "compute" => "compute-bound",
                        "memory" => "on-chip-memory-bound",
                        "offchip" => "memory-bound",
                        _ => "stream-rate-bound (one element per cycle)",
                    };
                    format!(
                        "{what}: {} busy {} of cycles",
                        at_line(u),
                        pct(ratio(u.busy as f64, c))
                    )
                }
                None => "idle".into(),
            }
        }
        _ => format!(
            "latency-bound: critical path of {} cycles",
            r.sol
                .iter()
                .find(|t| t.name == "critical_path")
                .map_or(0, |t| t.cycles)
        ),
    };
    if r.sol_fraction < 0.8 {
        let stalled = r
            .units
            .iter()
            .max_by_key(|u| (u.stall_input + u.stall_output, std::cmp::Reverse(u.id)));
        if let Some(u) = stalled.filter(|u| u.stall_input + u.stall_output > 0) {
            let (side, n) = if u.stall_output >= u.stall_input {
                ("output (back-pressure)", u.stall_output)
            } else {
                ("input", u.stall_input)
            };
            return format!(
                "{main}; the run takes {:.1}x the bound, most stalled: {} waiting on its {side} {} of cycles",
                ratio(c, r.sol_cycles as f64),
                at_line(u),
                pct(ratio(n as f64, c))
            );
        }
    }
    main
}

impl SimReport {
    /// The JSON of `stepforge sim --format json` (DESIGN §12).
    pub fn to_json(&self, source: &Source) -> serde_json::Value {
        serde_json::json!({
            "task": self.task,
            "mode": if self.functional { "functional" } else { "timing-only" },
            "cycles": self.cycles,
            "seconds": self.seconds,
            "sol_cycles": self.sol_cycles,
            "sol_fraction": if self.deadlock.is_some() { None } else { Some(self.sol_fraction) },
            "bottleneck": self.bottleneck,
            "deadlock": self.deadlock.as_ref().map(|d| d.to_json(source)),
            "offchip_bytes": {"read": self.offchip_read, "write": self.offchip_write},
            "onchip_peak_bytes": self.onchip_peak_bytes,
            "compute_utilization": self.compute_utilization,
            "offchip_bw_utilization": self.offchip_bw_utilization,
            "units": self.units,
            "channels": self.channels,
            "wall_ms": self.wall_ms,
        })
    }

    /// The human summary: totals, bound, bottleneck, top stalled units, and the deadlock
    /// diagnostic when there is one.
    pub fn render_human(&self, source: &Source, color: bool) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let name = if self.task.is_empty() {
            "sim"
        } else {
            &self.task
        };
        let mode = if self.functional {
            "functional"
        } else {
            "timing-only"
        };
        if self.deadlock.is_some() {
            let _ = writeln!(s, "{name}: DEADLOCK at cycle {} ({mode})", self.cycles);
        } else {
            let _ = writeln!(
                s,
                "{name}: {} cycles ({:.3} us, {mode}) · speed of light {} cycles ({} of it)",
                self.cycles,
                self.seconds * 1e6,
                self.sol_cycles,
                pct(self.sol_fraction)
            );
        }
        let _ = writeln!(s, "  bottleneck: {}", self.bottleneck);
        let _ = writeln!(
            s,
            "  off-chip: {} B read, {} B written ({} of bandwidth) · on-chip peak {} B · compute {}",
            self.offchip_read,
            self.offchip_write,
            pct(self.offchip_bw_utilization),
            self.onchip_peak_bytes,
            pct(self.compute_utilization)
        );
        if self.onchip_peak_bytes > self.onchip_capacity_bytes {
            let _ = writeln!(
                s,
                "  warning: on-chip peak exceeds the capacity of {} B",
                self.onchip_capacity_bytes
            );
        }
        let mut stalled: Vec<&UnitReport> = self
            .units
            .iter()
            .filter(|u| u.stall_input + u.stall_output > 0)
            .collect();
        stalled.sort_by_key(|u| (std::cmp::Reverse(u.stall_input + u.stall_output), u.id));
        if !stalled.is_empty() {
            let _ = writeln!(s, "  top stalled units:");
        }
        let c = self.cycles.max(1) as f64;
        for u in stalled.iter().take(3) {
            let _ = writeln!(
                s,
                "    {:<32} busy {:>4}  stalled on input {:>4}  on output {:>4}",
                at_line(u),
                pct(u.busy as f64 / c),
                pct(u.stall_input as f64 / c),
                pct(u.stall_output as f64 / c)
            );
        }
        if let Some(d) = &self.deadlock {
            s.push('\n');
            s.push_str(&d.diagnostic.render_human(source, color));
        }
        s
    }
}
