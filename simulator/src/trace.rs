//! Chrome trace event JSON (loads in Perfetto and chrome://tracing) and annotated DOT.
//!
//! Trace time is in cycles shown as microseconds (1 µs on the timeline = 1 cycle). One track
//! (thread) per unit with `busy`, `stall_input` and `stall_output` spans (adjacent spans of one
//! kind are merged); one counter track per FIFO with its occupancy. At most
//! [`MAX_EVENTS`] events are written; a `truncated` metadata event says when more existed.

use serde_json::{Value, json};
use stepforge_ir::Graph;

use crate::SimInput;
use crate::chan::Chan;
use crate::engine::{BUSY, STALL_IN, Unit};
use crate::plan::Plan;
use crate::report::SimReport;

pub const MAX_EVENTS: usize = 1_000_000;

pub(crate) fn chrome(input: &SimInput, plan: &Plan, units: &[Unit], chans: &[Chan]) -> Value {
    let _ = input;
    let mut ev: Vec<Value> = Vec::new();
    ev.push(
        json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "units"}}),
    );
    ev.push(
        json!({"name": "process_name", "ph": "M", "pid": 2, "tid": 0, "args": {"name": "FIFOs"}}),
    );
    for (i, info) in plan.units.iter().enumerate() {
        ev.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": i,
                       "args": {"name": format!("op{} {}", info.op, info.label)}}));
    }
    let mut truncated = false;
    'units: for (i, u) in units.iter().enumerate() {
        for &(a, b, k) in u.spans.iter().flatten() {
            if ev.len() >= MAX_EVENTS {
                truncated = true;
                break 'units;
            }
            let name = match k {
                BUSY => "busy",
                STALL_IN => "stall_input",
                _ => "stall_output",
            };
            ev.push(json!({"name": name, "cat": "unit", "ph": "X", "ts": a, "dur": b - a, "pid": 1, "tid": i}));
        }
    }
    'chans: for (c, ch) in chans.iter().enumerate() {
        let Some(occ) = &ch.occ else { continue };
        let mut sorted = occ.clone();
        sorted.sort_by_key(|&(t, d)| (t, d));
        let name = format!("FIFO {}", plan.chans[c].name);
        let mut cur: i64 = 0;
        let mut i = 0;
        while i < sorted.len() {
            let t = sorted[i].0;
            while i < sorted.len() && sorted[i].0 == t {
                cur += i64::from(sorted[i].1);
                i += 1;
            }
            if ev.len() >= MAX_EVENTS {
                truncated = true;
                break 'chans;
            }
            ev.push(
                json!({"name": name, "ph": "C", "ts": t, "pid": 2, "args": {"occupancy": cur}}),
            );
        }
    }
    if truncated {
        ev.push(json!({"name": "truncated", "ph": "M", "pid": 1, "tid": 0,
                       "args": {"name": format!("trace truncated at {MAX_EVENTS} events")}}));
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns",
           "otherData": {"time_unit": "1 trace microsecond = 1 cycle"}})
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// DOT with one node per unit (busy/stall shares, red when mostly stalled) and one edge per
/// FIFO (name, depth, peak occupancy; bold red when part of a deadlock).
pub(crate) fn dot(g: &Graph, r: &SimReport) -> String {
    use std::fmt::Write;
    let _ = g;
    let c = r.cycles.max(1) as f64;
    let mut s = String::from(
        "digraph sim {\n  rankdir=TB;\n  node [shape=box, style=filled, fontname=\"monospace\"];\n",
    );
    let in_cycle = |id: usize| {
        r.deadlock
            .as_ref()
            .is_some_and(|d| d.units.iter().any(|u| u.id == id))
    };
    for u in &r.units {
        let busy = u.busy as f64 / c;
        let stall = (u.stall_input + u.stall_output) as f64 / c;
        let color = if in_cycle(u.id) {
            "#ff9999"
        } else if busy >= 0.8 {
            "#ffcc66"
        } else if stall >= 0.5 {
            "#ffdddd"
        } else {
            "#ddeeff"
        };
        let line = u.line.map(|l| format!(" line {l}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "  u{} [label=\"{}{}\\nbusy {:.0}%  stall in {:.0}% out {:.0}%\\n{} in / {} out\", fillcolor=\"{color}\"];",
            u.id,
            esc(&u.op),
            line,
            busy * 100.0,
            u.stall_input as f64 / c * 100.0,
            u.stall_output as f64 / c * 100.0,
            u.elements_in,
            u.elements_out
        );
    }
    for ch in &r.channels {
        let Some(to) = ch.to else { continue };
        let dead = r
            .deadlock
            .as_ref()
            .is_some_and(|d| d.channels.iter().any(|x| x.name == ch.name && x.full));
        let style = if dead { ", color=red, penwidth=2" } else { "" };
        let _ = writeln!(
            s,
            "  u{} -> u{to} [label=\"{} ({} el)\\ndepth {} peak {}\"{style}];",
            ch.from,
            esc(&ch.name),
            ch.elements,
            ch.depth,
            ch.max_occupancy
        );
    }
    s.push_str("}\n");
    s
}
