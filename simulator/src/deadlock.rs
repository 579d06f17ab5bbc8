//! Deadlock analysis: when no unit can move, find the cycle of units and FIFOs that wait on
//! each other, turn it into an E0801 diagnostic mapped to the program, and (optionally) find
//! by re-simulation the smallest depth of one full FIFO that lets the run complete.

use std::collections::BTreeMap;
use std::time::Instant;

use stepforge_ir::{OpId, OpKind};
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Span};

use crate::chan::Chan;
use crate::engine::{Block, Unit};
use crate::hw::HwConfig;
use crate::plan::Plan;
use crate::report::{DeadlockChannel, DeadlockReport, DeadlockUnit, line_of};
use crate::{SimInput, SimOptions};

fn described(input: &SimInput, plan: &Plan, u: usize) -> String {
    let op = input.graph.op(OpId::new(plan.units[u].op));
    match line_of(input, &op.kind, op.span) {
        Some(l) => format!("{} (line {l})", plan.units[u].label),
        None => plan.units[u].label.clone(),
    }
}

/// The units (in wait order) of the cycle reached from the lowest blocked unit, and whether
/// the chain ended at a FIFO nobody reads instead of closing.
fn find_cycle(plan: &Plan, units: &[Unit]) -> (Vec<usize>, bool) {
    let Some(start) = units.iter().position(|u| !u.done) else {
        return (Vec::new(), false);
    };
    let mut path: Vec<usize> = Vec::new();
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut u = start;
    loop {
        if let Some(&i) = seen.get(&u) {
            return (path.split_off(i), false);
        }
        seen.insert(u, path.len());
        path.push(u);
        let next = match units[u].blocked {
            Some(Block::Input(c)) => Some(plan.chans[c].producer),
            Some(Block::Output(c)) => plan.chans[c].consumer,
            None => None,
        };
        match next {
            Some(v) if !units[v].done => u = v,
            _ => return (path, true),
        }
    }
}

pub(crate) fn analyse(
    input: &SimInput,
    plan: &Plan,
    chans: &[Chan],
    units: &[Unit],
) -> DeadlockReport {
    let (mut cyc, open) = find_cycle(plan, units);
    // Start the cycle at the lowest-numbered unit stuck on a full FIFO (deterministic, and
    // that unit — usually the Copy — is where the fix goes).
    if !open
        && let Some(i) = cyc
            .iter()
            .enumerate()
            .filter(|&(_, &u)| matches!(units[u].blocked, Some(Block::Output(_))))
            .min_by_key(|&(_, &u)| u)
            .map(|(i, _)| i)
    {
        cyc.rotate_left(i);
    }
    let at_cycle = cyc.iter().map(|&u| units[u].clock).max().unwrap_or(0);
    let mut dunits = Vec::new();
    let mut dchans = Vec::new();
    let mut full = Vec::new();
    let mut labels: Vec<(Span, String)> = Vec::new();
    for &u in &cyc {
        let op = input.graph.op(OpId::new(plan.units[u].op));
        let (c, out) = match units[u].blocked {
            Some(Block::Input(c)) => (c, false),
            Some(Block::Output(c)) => (c, true),
            None => continue,
        };
        let info = &plan.chans[c];
        let occ = chans[c].q.len();
        let waits_for = if out {
            match info.consumer {
                Some(v) => format!(
                    "room in FIFO `{}` ({occ}/{} full), read by {}",
                    info.name,
                    info.depth,
                    described(input, plan, v)
                ),
                None => format!(
                    "room in FIFO `{}` ({occ}/{} full), which nothing reads",
                    info.name, info.depth
                ),
            }
        } else {
            format!(
                "an element of `{}` from {}",
                info.name,
                described(input, plan, info.producer)
            )
        };
        if out {
            full.push(c);
        }
        if !matches!(op.kind, OpKind::Input { .. }) || input.same_source {
            labels.push((
                op.span,
                format!("{} waits for {waits_for}", plan.units[u].label),
            ));
        }
        dunits.push(DeadlockUnit {
            id: plan.units[u].op,
            op: plan.units[u].label.clone(),
            line: line_of(input, &op.kind, op.span),
            waits_for,
        });
        dchans.push(DeadlockChannel {
            name: info.name.clone(),
            from: info.producer,
            to: info.consumer,
            depth: info.depth,
            occupancy: occ,
            full: out,
        });
    }
    let names: Vec<String> = cyc.iter().map(|&u| described(input, plan, u)).collect();
    let message = if open {
        format!(
            "deadlock at cycle {at_cycle}: a FIFO that nothing reads fills up and stalls {}",
            names.last().cloned().unwrap_or_default()
        )
    } else {
        format!(
            "deadlock at cycle {at_cycle}: {} ops wait on each other through bounded FIFOs ({})",
            cyc.len(),
            names.join(" → ")
        )
    };
    let mut d = Diagnostic::new(Code::E0801, message);
    let primary = cyc
        .iter()
        .map(|&u| input.graph.op(OpId::new(plan.units[u].op)))
        .find(|op| {
            op.span != Span::DUMMY
                && (!matches!(op.kind, OpKind::Input { .. }) || input.same_source)
        });
    if let Some(op) = primary {
        d = d.at(op.span);
    }
    for (span, msg) in labels {
        if span != Span::DUMMY {
            d = d.label(span, msg);
        }
    }
    for c in &dchans {
        d = d.note(format!(
            "FIFO `{}` holds {}/{} elements{}",
            c.name,
            c.occupancy,
            c.depth,
            if c.full { " (full)" } else { "" }
        ));
    }
    let x = full
        .first()
        .map(|&c| plan.chans[c].name.clone())
        .unwrap_or_default();
    d = d.help(format!(
        "deepen FIFO `{x}`, or Bufferize the direct path so it waits in on-chip memory instead of a FIFO (Streamify it again before the join)"
    ));
    full.sort_unstable();
    full.dedup();
    DeadlockReport {
        at_cycle,
        units: dunits,
        channels: dchans,
        suggested_depth: None,
        diagnostic: d,
        full,
    }
}

/// Finds, by timing-only re-simulation, the smallest depth of one full FIFO of the cycle that
/// lets the run complete, and puts it in the report and the help line.
pub(crate) fn suggest(
    input: &SimInput,
    hw: &HwConfig,
    plan: &Plan,
    opts: &SimOptions,
    d: &mut DeadlockReport,
) {
    let started = Instant::now();
    let budget = std::time::Duration::from_secs(10);
    let timing = SimInput {
        inputs: None,
        ..*input
    };
    let mut best: Option<(usize, usize)> = None;
    for &c in &d.full {
        let info = &plan.chans[c];
        let count = info
            .dims
            .iter()
            .try_fold(1u64, |a, d| d.and_then(|d| a.checked_mul(d)))
            .unwrap_or(1 << 20)
            .saturating_add(1)
            .min(1 << 24) as usize;
        let completes = |depth: usize| {
            if started.elapsed() > budget {
                return None;
            }
            let mut o = opts.clone();
            o.trace = false;
            o.suggest_depth = false;
            o.progress = None;
            o.fifo_depth = Some(hw.fifo_depth);
            o.depths.insert(info.id, depth);
            o.wall_limit = Some(budget);
            crate::simulate(&timing, &o)
                .ok()
                .map(|r| r.report.deadlock.is_none())
        };
        if completes(count) != Some(true) {
            continue;
        }
        let (mut lo, mut hi) = (info.depth, count);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match completes(mid) {
                Some(true) => hi = mid,
                Some(false) => lo = mid,
                None => return,
            }
        }
        if best.is_none_or(|(_, b)| hi < b) {
            best = Some((c, hi));
        }
    }
    if let Some((c, depth)) = best {
        let name = plan.chans[c].name.clone();
        d.diagnostic.help = Some(format!(
            "deepen FIFO `{name}` to {depth}, or Bufferize the direct path so it waits in on-chip memory instead of a FIFO (Streamify it again before the join)"
        ));
        d.suggested_depth = Some((name, depth));
    }
}
