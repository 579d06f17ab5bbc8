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

/// Whether channel `c` may run in lockstep: empty, untraced, carrying no tiles (no on-chip
/// memory events) and no routing masks (elements without a value).
fn plain(cx: &Cx, c: usize) -> bool {
    let ch: &Chan = &cx.chans[c];
    !cx.env.functional()
        && cx.u.spans.is_none()
        && ch.q.is_empty()
        && ch.occ.is_none()
        && cx.env.buf.get(c).copied() == Some(0)
        && cx.env.mask.get(c).is_some_and(Option::is_none)
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
    let plan = cx.env.plan;
    let v = plan.chans[inp].producer;
    let UnitKind::Load { count, .. } = plan.units[v].kind else {
        return Ok(());
    };
    if !cx.env.passive.get(v).copied().unwrap_or(false) || !plain(cx, inp) {
        return Ok(());
    }
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
        || !plain(cx, out)
    {
        return Ok(());
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
