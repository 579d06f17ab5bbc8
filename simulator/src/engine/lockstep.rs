//! Lockstep runs: a unit and its passive load or store neighbour fired element by element
//! in one loop, each element popped right after it is pushed, without going through the FIFO's
//! queue.
//!
//! Why this is exact: the result of the engine does not depend on the order units run in
//! (see [`crate::chan`]), only on the push and pop cycles, which each side computes from the
//! other's earlier pops and pushes. In lockstep the producer computes push `i` after pop
//! `i - 1` has been recorded, so every pop it may wait for (pop `i - depth` for room, pop
//! `i - window` for a load's request window) is in the channel's pop ring, exactly as in the
//! scheduler's order; the consumer then pops at the same cycle it would have. The FIFO's
//! counts, pop ring and occupancy bookkeeping go through [`Chan::pass_through`], which keeps
//! them as a push and a pop would. A run covers only firings that cannot block: the elements
//! of a Bufferize tile before its last one (no output), and those of a Streamify tile before its
//! last one into a store (which never blocks). The last element of each tile takes the ordinary
//! path, which also leaves the FIFO as the scheduler would for a deadlock report.
//!
//! Pass-through runs ([`takes`], [`pass_into`]) extend this to scheduled units: an element a
//! unit pushes into an empty FIFO is taken at once by its consumer when that firing cannot
//! block (a Bufferize element before the tile's last, a Promote/Flatten/Copy whose outputs
//! are taken the same way), recursively down the tree. Each consumer fires exactly as it would
//! when scheduled next (its input has the element, its outputs have room), and it pushes only
//! into FIFOs that are taken through, so no unit other than the one running needs waking.
//!
//! Runs are timing-only and untraced: values and trace spans take the ordinary path.

use super::io::{LoadCur, StoreCur};
use super::{Cx, Flow, Unit};
use crate::chan::Chan;
use crate::plan::UnitKind;

/// The unit `v` of the run (not `ui`), from the units before and after `ui`.
fn neighbour<'a>(
    ui: usize,
    lo: &'a mut [Unit],
    hi: &'a mut [Unit],
    v: usize,
) -> Option<&'a mut Unit> {
    match v.cmp(&ui) {
        std::cmp::Ordering::Less => lo.get_mut(v),
        std::cmp::Ordering::Greater => hi.get_mut(v - ui - 1),
        std::cmp::Ordering::Equal => None,
    }
}

/// Read-only [`neighbour`].
fn peer<'a>(ui: usize, lo: &'a [Unit], hi: &'a [Unit], v: usize) -> Option<&'a Unit> {
    match v.cmp(&ui) {
        std::cmp::Ordering::Less => lo.get(v),
        std::cmp::Ordering::Greater => hi.get(v - ui - 1),
        std::cmp::Ordering::Equal => None,
    }
}

/// Whether channel `c` may run in lockstep once its FIFO is empty: untraced, carrying no
/// tiles (no on-chip memory events) and no routing masks (elements without a value).
fn eligible(cx: &Cx, c: usize) -> bool {
    !cx.env.functional()
        && cx.u.spans.is_none()
        && cx.chans[c].occ.is_none()
        && cx.env.buf.get(c).copied() == Some(0)
        && cx.env.mask.get(c).is_some_and(Option::is_none)
}

/// Whether channel `c` may run in lockstep: [`eligible`] and empty.
fn plain(cx: &Cx, c: usize) -> bool {
    let ch: &Chan = &cx.chans[c];
    ch.q.is_empty() && eligible(cx, c)
}

/// The passive load feeding channel `inp` (its unit and element count) when `inp` is
/// [`plain`]: where a run from the load applies.
fn passive_load(cx: &Cx, inp: usize) -> Option<(usize, u64)> {
    let v = cx.env.plan.chans[inp].producer;
    let UnitKind::Load { count, .. } = cx.env.plan.units[v].kind else {
        return None;
    };
    (cx.env.passive.get(v).copied().unwrap_or(false) && plain(cx, inp)).then_some((v, count))
}

/// Bufferize (input `inp`, tiles of `group` elements, `cost` cycles each) fed by a passive
/// load: takes the current tile's elements before its last one, loading each just before.
/// Does nothing when the run does not apply.
pub(super) fn load_into_tile(
    cx: &mut Cx,
    inp: usize,
    group: u64,
    cost: u64,
    tile: i64,
) -> Result<(), Flow> {
    let Some((v, count)) = passive_load(cx, inp) else {
        return Ok(());
    };
    let (ui, env, chans, u) = (cx.ui, &mut *cx.env, &mut *cx.chans, &mut *cx.u);
    let Some(lu) = neighbour(ui, cx.lo, cx.hi, v).filter(|w| !w.done && w.spans.is_none()) else {
        return Ok(());
    };
    let n = group
        .saturating_sub(u.st.pos + 1)
        .min(count.saturating_sub(lu.st.pos));
    if n == 0 {
        return Ok(());
    }
    let c = &mut chans[inp];
    let hop = c.hop;
    let mut cur = LoadCur::open(env, v, lu, c);
    let (mut clock, mut stall_in, mut pos) = (u.clock, u.stall_in, u.st.pos);
    for _ in 0..n {
        let sp = c.space_empty();
        env.tick(v)?;
        let push = cur.next(c, sp);
        env.tick(ui)?;
        // `Unit::fire(push + hop, cost, cost, 0)`, with no output to wait for.
        let start = clock.max(push + hop);
        stall_in += start - clock;
        clock = start + cost;
        if pos == 0 {
            env.mem.push((start, tile));
        }
        c.pass_through(push, start);
        pos += 1;
    }
    cur.close(lu, env);
    u.clock = clock;
    u.stall_in = stall_in;
    u.st.pos = pos;
    u.busy += cost * n;
    u.moves += n;
    u.elements_in += n;
    Ok(())
}

/// Streamify (output `out`, `count` elements per tile, `cost` cycles each) into a passive
/// store: emits the held tile's elements before its last one, storing each right after.
/// Does nothing when the run does not apply.
pub(super) fn tile_into_store(cx: &mut Cx, out: usize, count: u64, cost: u64) -> Result<(), Flow> {
    let plan = cx.env.plan;
    let Some(v) = plan.chans[out].consumer else {
        return Ok(());
    };
    if !matches!(plan.units[v].kind, UnitKind::Store)
        || !cx.env.passive.get(v).copied().unwrap_or(false)
        || !eligible(cx, out)
    {
        return Ok(());
    }
    if !cx.chans[out].q.is_empty() {
        // A store may drain whenever its FIFO holds elements (the result does not depend on
        // the order units run in). Left to be driven only when the FIFO is full, it would
        // keep the tile's last element queued, and no later tile could run in lockstep.
        cx.drive(v)?;
        if !cx.chans[out].q.is_empty() {
            return Ok(());
        }
    }
    let (ui, env, chans, u) = (cx.ui, &mut *cx.env, &mut *cx.chans, &mut *cx.u);
    let Some(su) = neighbour(ui, cx.lo, cx.hi, v).filter(|w| !w.done && w.spans.is_none()) else {
        return Ok(());
    };
    let n = count.saturating_sub(u.st.pos + 1);
    if n == 0 {
        return Ok(());
    }
    let c = &mut chans[out];
    let hop = c.hop;
    let mut cur = StoreCur::open(env, v, su);
    let (mut clock, mut stall_out) = (u.clock, u.stall_out);
    for _ in 0..n {
        let sp = c.space_empty();
        env.tick(ui)?;
        // `Unit::fire(0, cost, cost, sp)`: no input to wait for.
        let done = clock + cost;
        let push = done.max(sp);
        stall_out += push - done;
        clock = push;
        env.tick(v)?;
        let start = cur.next(push + hop);
        c.pass_through(push, start);
    }
    cur.close(su);
    u.clock = clock;
    u.stall_out = stall_out;
    u.st.pos += n;
    u.busy += cost * n;
    u.moves += n;
    u.elements_out += n;
    Ok(())
}

/// Longest chain of units a pass-through run goes down (bounds the recursion).
const MAX_CHAIN: u32 = 16;

/// Whether an element pushed into channel `c` now can be taken through in lockstep: the FIFO
/// is [`plain`] and its consumer is a scheduled unit whose next firing cannot block and pushes
/// only into FIFOs that are taken through themselves — a Bufferize element before the tile's
/// last, or a one-input Promote/Flatten/Reshape/Copy.
pub(super) fn takes(cx: &Cx, c: usize) -> bool {
    takes_at(cx, c, 0)
}

fn takes_at(cx: &Cx, c: usize, depth: u32) -> bool {
    if depth >= MAX_CHAIN || !plain(cx, c) {
        return false;
    }
    let plan = cx.env.plan;
    let Some(v) = plan.chans[c].consumer else {
        return false;
    };
    if cx.env.passive.get(v).copied().unwrap_or(true) {
        return false;
    }
    let Some(w) = peer(cx.ui, &*cx.lo, &*cx.hi, v).filter(|w| !w.done && w.spans.is_none()) else {
        return false;
    };
    let info = &plan.units[v];
    if info.inputs[..] != [c] {
        return false;
    }
    match info.kind {
        UnitKind::Bufferize { group, .. } => w.st.pos + 1 < group,
        UnitKind::Copy | UnitKind::Pass => info.outputs.iter().all(|&o| takes_at(cx, o, depth + 1)),
        _ => false,
    }
}

/// Hands the element pushed into channel `c` at cycle `push` to its consumer, which fires at
/// once (only after [`takes`] said it may): the firings of `bufferize` (an element before the
/// tile's last) and `pass` (one input), with the FIFO bookkeeping of a push and a pop.
pub(super) fn pass_into(cx: &mut Cx, c: usize, push: u64) -> Result<(), Flow> {
    let plan = cx.env.plan;
    let Some(v) = plan.chans[c].consumer else {
        return Ok(());
    };
    let at = push + cx.chans[c].hop;
    let info = &plan.units[v];
    if let UnitKind::Bufferize { cost, .. } = info.kind {
        let tile = info.outputs.first().map_or(0, |&o| {
            i64::try_from(plan.chans[o].buf_bytes).unwrap_or(i64::MAX)
        });
        cx.env.tick(v)?;
        let Some(w) = neighbour(cx.ui, cx.lo, cx.hi, v) else {
            return Ok(());
        };
        let (start, _) = w.fire(at, cost, cost, 0);
        if w.st.pos == 0 {
            cx.env.mem.push((start, tile));
        }
        w.elements_in += 1;
        w.st.pos += 1;
        cx.chans[c].pass_through(push, start);
        return Ok(());
    }
    // Copy or a shape-only op with one input: one element per cycle, once every output has
    // room (each is empty, so room from its last pop `depth` places back).
    let mut sp = 0;
    for &o in &info.outputs {
        sp = sp.max(cx.chans[o].space_empty());
    }
    cx.env.tick(v)?;
    let Some(w) = neighbour(cx.ui, cx.lo, cx.hi, v) else {
        return Ok(());
    };
    let (start, out) = w.fire(at, 1, 0, sp);
    w.elements_in += 1;
    w.elements_out += info.outputs.len() as u64;
    cx.chans[c].pass_through(push, start);
    for &o in &info.outputs {
        pass_into(cx, o, out)?;
    }
    Ok(())
}

/// A one-input Copy/Promote/Flatten/Reshape (`ui`, input `inp`, outputs `outs`) fed by a
/// passive load, with every output taken through ([`takes`]): loads each element just before
/// the unit fires on it, as long as the outputs keep being taken through. Does nothing when
/// the run does not apply.
pub(super) fn load_into_pass(cx: &mut Cx, inp: usize, outs: &[usize]) -> Result<(), Flow> {
    let Some((v, count)) = passive_load(cx, inp) else {
        return Ok(());
    };
    let ready = peer(cx.ui, &*cx.lo, &*cx.hi, v)
        .is_some_and(|w| !w.done && w.spans.is_none() && w.st.pos < count);
    if !ready || !outs.iter().all(|&o| takes(cx, o)) {
        return Ok(());
    }
    let Some(lu) = neighbour(cx.ui, cx.lo, cx.hi, v) else {
        return Ok(());
    };
    let mut cur = LoadCur::open(cx.env, v, lu, &cx.chans[inp]);
    let res = load_pass_run(cx, &mut cur, (v, count), inp, outs);
    if let Some(lu) = neighbour(cx.ui, cx.lo, cx.hi, v) {
        cur.close(lu, cx.env);
    }
    res
}

/// The loop of [`load_into_pass`]: load unit `v` with `count` elements in all.
fn load_pass_run(
    cx: &mut Cx,
    cur: &mut LoadCur,
    (v, count): (usize, u64),
    inp: usize,
    outs: &[usize],
) -> Result<(), Flow> {
    let hop = cx.chans[inp].hop;
    while cur.pos < count && outs.iter().all(|&o| takes(cx, o)) {
        let sp = cx.chans[inp].space_empty();
        cx.env.tick(v)?;
        let push = cur.next(&cx.chans[inp], sp);
        // `pass`: one element per cycle once every output has room.
        let mut room = 0;
        for &o in outs {
            room = room.max(cx.chans[o].space_empty());
        }
        cx.env.tick(cx.ui)?;
        let (start, out) = cx.u.fire(push + hop, 1, 0, room);
        cx.chans[inp].pass_through(push, start);
        cx.u.elements_in += 1;
        for &o in outs {
            cx.u.elements_out += 1;
            pass_into(cx, o, out)?;
        }
    }
    Ok(())
}
