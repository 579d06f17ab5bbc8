//! The event engine: runs every unit as far as its FIFOs let it, in simulation order, until
//! all units have finished or none can move (a deadlock).
//!
//! There is no global cycle counter and no idle tick: each unit keeps its own clock, and each
//! firing computes its start, end and push cycles from the arrival cycles of its inputs and
//! the pop cycles of its outputs' earlier entries (see [`crate::chan`]). A unit that cannot
//! move in simulation order records why (an empty input or a full output); moving it wakes its
//! neighbours. When the worklist empties with units unfinished, every one of them is blocked,
//! and following "waits for" from any of them finds the cycle the deadlock report names.
//!
//! Speed (timing-only runs at model dims push tens of millions of elements): the result does
//! not depend on the order units run in, so the engine picks the cheap order. Loads and stores
//! are *passive* ([`passive_units`]): their one neighbour runs them inline when it finds their
//! FIFO empty (a load) or full (a store), so a scalar stream costs one scheduled activation per
//! FIFO's worth of elements instead of two; a final round runs every passive unit to where it
//! would have got, so a deadlock leaves the same FIFOs as before. The worklist is a stack over
//! a flat adjacency list; load and store keep their hot state in locals for a run of firings;
//! the work-limit check and the FIFO's out-of-order occupancy search are out of line.

mod io;
mod lockstep;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use stepforge_ir::FnId;
use stepforge_tensor::Tensor;

use crate::chan::{Chan, Token, Val, synth_mask};
use crate::fns::ElemFns;
use crate::hw::HwConfig;
use crate::plan::{Plan, UnitKind};

use crate::{SimError, SimOptions};
pub(crate) use io::{load_window, take_output};

/// Why a unit cannot move in simulation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// Waits for an entry of this channel.
    Input(usize),
    /// Waits for room in this channel.
    Output(usize),
}

/// Trace span kinds.
pub(crate) const BUSY: u8 = 0;
pub(crate) const STALL_IN: u8 = 1;
pub(crate) const STALL_OUT: u8 = 2;

/// Per-kind mutable state.
#[derive(Debug, Default)]
struct State {
    /// Position in the current group (fold step, tile element, repeat, chunk element).
    pos: u64,
    /// Which branch of the chosen list Merge reads next.
    k: usize,
    /// Partition/Merge: the branches of the current selector element; `None` between chunks.
    chosen: Option<Vec<usize>>,
    /// The element being repeated / streamed, or a reducer's state.
    held: Option<Val>,
    acc: Option<Vec<Tensor>>,
    /// Bufferize: per field, the tile's data so far.
    tile: Vec<Vec<f32>>,
    /// Load/Store: off-chip bandwidth cursor (fractional cycles).
    bw: f64,
    xfer: f64,
    /// Load: how many entries back the oldest one a request may overtake is (0: not yet
    /// computed; computed once, it needs a libm `ceil`).
    window: u64,
    /// Store: completion cycle of the last write.
    last: u64,
    /// Store: collected data per field.
    out: Vec<Vec<f32>>,
}

#[derive(Debug, Default)]
pub(crate) struct Unit {
    pub clock: u64,
    pub busy: u64,
    pub stall_in: u64,
    pub stall_out: u64,
    pub elements_in: u64,
    pub elements_out: u64,
    pub flops: u64,
    pub done: bool,
    pub blocked: Option<Block>,
    moves: u64,
    st: State,
    /// Merged `(start, end, kind)` spans, when tracing.
    pub spans: Option<Vec<(u64, u64, u8)>>,
}

impl Unit {
    pub fn new(trace: bool) -> Unit {
        Unit {
            spans: trace.then(Vec::new),
            ..Unit::default()
        }
    }

    #[inline]
    fn span(&mut self, a: u64, b: u64, kind: u8) {
        let Some(s) = &mut self.spans else { return };
        if b <= a {
            return;
        }
        if let Some(last) = s.last_mut()
            && last.2 == kind
            && last.1 == a
        {
            last.1 = b;
            return;
        }
        s.push((a, b, kind));
    }

    /// One firing: inputs arrive by `t_in`; `ii` cycles of work (busy), the result is ready
    /// `lat` cycles after the start and pushed once there is room (`space`). Returns
    /// `(start, push)` cycles.
    #[inline(always)]
    fn fire(&mut self, t_in: u64, ii: u64, lat: u64, space: u64) -> (u64, u64) {
        let start = self.clock.max(t_in);
        let done = start + lat;
        let push = done.max(space);
        if self.spans.is_some() {
            self.span(self.clock, start, STALL_IN);
            self.span(start, start + ii, BUSY);
            self.span(done.max(start + ii), push, STALL_OUT);
        }
        self.stall_in += start - self.clock;
        self.stall_out += push - done;
        self.busy += ii;
        self.clock = (start + ii).max(push);
        self.moves += 1;
        (start, push)
    }
}

/// Result of running a unit as far as it goes.
enum Status {
    Blocked(Block),
    Done,
}

/// Everything a step needs besides the unit and the channels.
pub(crate) struct Env<'a> {
    pub plan: &'a Plan,
    pub hw: &'a HwConfig,
    pub fns: &'a dyn ElemFns,
    pub opts: &'a SimOptions,
    /// Functional mode: per task input, one flat buffer per field.
    pub inputs: Option<&'a [Vec<Arc<Vec<f32>>>]>,
    /// `(cycle, ±bytes)` of on-chip tiles.
    pub mem: Vec<(u64, i64)>,
    /// Bandwidth share (bytes/cycle) per load/store unit.
    pub share: Vec<f64>,
    pub steps: u64,
    pub deadline: Option<Instant>,
    pub span: Vec<stepforge_syntax::Span>,
    /// Per channel: bytes of its elements' tiles (0: none), and a selector's bits (the hot
    /// per-element facts of the plan, kept compact).
    pub buf: Vec<i64>,
    pub mask: Vec<Option<usize>>,
    /// Per unit: driven by its neighbour rather than scheduled ([`passive_units`]).
    pub passive: Vec<bool>,
    /// Elements the load units have read, and will read in all (for progress).
    pub loaded: u64,
    pub to_load: u64,
}

impl Env<'_> {
    fn functional(&self) -> bool {
        self.inputs.is_some()
    }

    #[inline]
    fn mem(&mut self, ch: usize, t: u64, sign: i64) {
        let b = self.buf.get(ch).copied().unwrap_or(0);
        if b > 0 {
            self.mem.push((t, sign.saturating_mul(b)));
        }
    }

    fn err(&self, u: usize, msg: impl Into<String>) -> SimError {
        SimError::runtime(msg, self.span.get(u).copied().unwrap_or_default())
    }

    /// A freshly computed timing-only element for channel `ch`: a synthesized routing mask
    /// when it is a selector, else nothing.
    #[inline]
    fn synth(&self, ch: usize, index: u64) -> Val {
        match self.mask.get(ch).copied().flatten() {
            Some(bits) => Val::Mask(synth_mask(index, bits, self.opts.routing_hot)),
            None => Val::Shape,
        }
    }

    /// Counts one firing against the work limit; every 65536 firings also reports progress
    /// and checks the wall clock (the rare part is out of line, so the hot path is two
    /// compares).
    #[inline(always)]
    fn tick(&mut self, u: usize) -> Result<(), SimError> {
        self.steps += 1;
        if self.steps > self.opts.max_steps || self.steps & 0xFFFF == 0 {
            return self.tick_slow(u);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn tick_slow(&mut self, u: usize) -> Result<(), SimError> {
        if self.steps > self.opts.max_steps {
            return Err(SimError::limit(
                format!(
                    "the simulation took more than {} unit firings",
                    self.opts.max_steps
                ),
                self.span.get(u).copied().unwrap_or_default(),
            ));
        }
        if self.steps & 0xFFFF == 0 {
            if let Some(p) = &self.opts.progress {
                (p.0)(self.loaded, self.to_load);
            }
            if let Some(d) = self.deadline
                && Instant::now() > d
            {
                return Err(SimError::limit(
                    "the simulation ran past its wall-clock limit",
                    self.span.get(u).copied().unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }
}

/// The branches a selector element picks.
fn chosen(val: &Val, n: usize) -> Result<Vec<usize>, String> {
    match val {
        Val::Mask(m) => Ok((0..n.min(64)).filter(|&i| (m >> i) & 1 == 1).collect()),
        Val::Fields(f) => {
            let t = f.first().ok_or("selector without data")?;
            let v = t.to_f32_vec();
            if v.len() != n {
                return Err(format!("selector of {} bits for {n} branches", v.len()));
            }
            Ok((0..n).filter(|&i| v[i] != 0.0).collect())
        }
        Val::Shape => Err("timing-only selector without a routing mask".into()),
    }
}

fn fields(v: &Val) -> &[Tensor] {
    match v {
        Val::Fields(f) => f,
        _ => &[],
    }
}

fn front_at(chans: &[Chan], c: usize) -> Result<(u64, bool), Block> {
    match chans[c].front() {
        Some(e) => Ok((e.at, matches!(e.tok, Token::Stop))),
        None => Err(Block::Input(c)),
    }
}

fn space(chans: &[Chan], c: usize) -> Result<u64, Block> {
    chans[c].space().ok_or(Block::Output(c))
}

fn pop_val(chans: &mut [Chan], c: usize, t: u64) -> Val {
    match chans[c].pop(t) {
        Some(Token::Data(v)) => v,
        _ => Val::Shape,
    }
}

/// Runs the engine; returns the units' final state.
///
/// The worklist is a stack (the unit just woken runs next, so an element travels down a
/// pipeline while its FIFOs are hot); the result does not depend on the order (see
/// [`crate::chan`]), only the speed does.
pub(crate) fn run(env: &mut Env, chans: &mut [Chan], units: &mut [Unit]) -> Result<(), SimError> {
    let n = units.len();
    let plan = env.plan;
    // Per unit, each adjacent channel and the unit at its other end, flattened:
    // `adj[off[u]..off[u + 1]]`.
    let mut adj: Vec<(usize, usize)> = Vec::new();
    let mut off: Vec<usize> = Vec::with_capacity(n + 1);
    for info in &plan.units {
        off.push(adj.len());
        adj.extend(info.inputs.iter().map(|&c| (c, plan.chans[c].producer)));
        adj.extend(
            info.outputs
                .iter()
                .filter_map(|&c| plan.chans[c].consumer.map(|v| (c, v))),
        );
    }
    off.push(adj.len());
    let passive = env.passive.clone();
    let mut queued = vec![true; n];
    let mut stack: Vec<usize> = (0..n).rev().collect();
    loop {
        let mut moved = false;
        while let Some(u) = stack.pop() {
            queued[u] = false;
            if units[u].done {
                continue;
            }
            let before = units[u].moves;
            let status = step(u, env, chans, units)?;
            settle(&mut units[u], status);
            if units[u].moves == before && !units[u].done {
                continue;
            }
            moved = true;
            // Moving changed only the channels next to `u`: wake the neighbours blocked on
            // one of those (a unit blocked elsewhere stays blocked, so waking it would be
            // wasted). Passive units are driven by their neighbour, not woken.
            for &(c, v) in adj.get(off[u]..off[u + 1]).unwrap_or(&[]) {
                if queued[v] || units[v].done || passive[v] {
                    continue;
                }
                let waits = match units[v].blocked {
                    Some(Block::Input(x) | Block::Output(x)) => x == c,
                    None => true,
                };
                if waits {
                    queued[v] = true;
                    stack.push(v);
                }
            }
        }
        // Nothing else can move: let the passive units run to where they would have got
        // (a load fills its FIFO, a store drains what is left), and go on while that moves.
        if !moved {
            break;
        }
        let mut any = false;
        for u in (0..n).rev() {
            if passive[u] && !units[u].done && !queued[u] {
                queued[u] = true;
                stack.push(u);
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    Ok(())
}

/// Loads and stores whose one neighbour drives them (pulls a load's next elements when its
/// FIFO runs empty, drains a store when its FIFO is full) instead of being scheduled: half
/// the activations of a scalar stream. A load feeding a store directly stays scheduled.
pub(crate) fn passive_units(plan: &Plan) -> Vec<bool> {
    let is = |u: usize, f: fn(&UnitKind) -> bool| plan.units.get(u).is_some_and(|i| f(&i.kind));
    let load = |k: &UnitKind| matches!(k, UnitKind::Load { .. });
    let store = |k: &UnitKind| matches!(k, UnitKind::Store);
    plan.units
        .iter()
        .map(|info| match info.kind {
            UnitKind::Load { .. } => info
                .outputs
                .first()
                .and_then(|&c| plan.chans[c].consumer)
                .is_some_and(|v| !is(v, store)),
            UnitKind::Store => info
                .inputs
                .first()
                .is_some_and(|&c| !is(plan.chans[c].producer, load)),
            _ => false,
        })
        .collect()
}

/// Pops a stop from every input and pushes one to every output, then the unit is done.
fn finish(
    u: &mut Unit,
    ins: &[usize],
    outs: &[usize],
    chans: &mut [Chan],
) -> Result<Status, Block> {
    let mut t = u.clock;
    for &c in ins {
        let (at, stop) = front_at(chans, c)?;
        debug_assert!(stop);
        t = t.max(at);
    }
    let mut push = t;
    for &c in outs {
        push = push.max(space(chans, c)?);
    }
    for &c in ins {
        chans[c].pop(t);
    }
    for &c in outs {
        chans[c].push(push, Token::Stop);
    }
    u.clock = u.clock.max(push);
    u.moves += 1;
    Ok(Status::Done)
}

/// Why a firing loop stopped early: blocked on a FIFO, or an error.
pub(crate) enum Flow {
    Blocked(Block),
    Fail(SimError),
}

impl From<Block> for Flow {
    fn from(b: Block) -> Flow {
        Flow::Blocked(b)
    }
}

impl From<SimError> for Flow {
    fn from(e: SimError) -> Flow {
        Flow::Fail(e)
    }
}

/// A firing loop's result: `Done` after the stop tokens, else why it stopped.
type Fire = Result<Status, Flow>;

/// What a unit's firing loop works with: its index, the run, the channels and the unit.
struct Cx<'a, 'e> {
    ui: usize,
    env: &'a mut Env<'e>,
    chans: &'a mut [Chan],
    u: &'a mut Unit,
    /// The units before and after `ui` (a passive neighbour is driven from here).
    lo: &'a mut [Unit],
    hi: &'a mut [Unit],
}

impl Cx<'_, '_> {
    fn err(&self, msg: impl Into<String>) -> Flow {
        Flow::Fail(self.env.err(self.ui, msg))
    }

    /// The front entry of input `c` (arrival, is it the stop token); an empty FIFO fed by a
    /// passive load is refilled first.
    #[inline]
    fn front(&mut self, c: usize) -> Result<(u64, bool), Flow> {
        if let Some(e) = self.chans[c].front() {
            return Ok((e.at, matches!(e.tok, Token::Stop)));
        }
        self.drive(self.env.plan.chans[c].producer)?;
        Ok(front_at(self.chans, c)?)
    }

    /// The earliest cycle the next push to `c` may happen; a full FIFO read by a passive
    /// store is drained first.
    #[inline]
    fn space(&mut self, c: usize) -> Result<u64, Flow> {
        if let Some(t) = self.chans[c].space() {
            return Ok(t);
        }
        if let Some(v) = self.env.plan.chans[c].consumer {
            self.drive(v)?;
        }
        Ok(space(self.chans, c)?)
    }

    /// Runs the passive unit `v` (a load or store whose only FIFO this unit is at the other
    /// end of) as far as it goes, as the scheduler would.
    #[inline]
    fn drive(&mut self, v: usize) -> Result<(), Flow> {
        if !self.env.passive.get(v).copied().unwrap_or(false) {
            return Ok(());
        }
        let unit = match v.cmp(&self.ui) {
            std::cmp::Ordering::Less => self.lo.get_mut(v),
            std::cmp::Ordering::Greater => self.hi.get_mut(v - self.ui - 1),
            std::cmp::Ordering::Equal => None,
        };
        let Some(unit) = unit.filter(|w| !w.done) else {
            return Ok(());
        };
        let status = step_unit(v, self.env, self.chans, unit, &mut [], &mut [])?;
        settle(unit, status);
        Ok(())
    }

    /// The cycle the next element of every input in `ins` has arrived by; `None` when all of
    /// them carry their stop token (an error when only some do).
    #[inline]
    fn heads(&mut self, ins: &[usize], what: &str) -> Result<Option<u64>, Flow> {
        let mut t = 0;
        let mut stops = 0;
        for &c in ins {
            let (at, stop) = self.front(c)?;
            t = t.max(at);
            stops += usize::from(stop);
        }
        if stops == ins.len() {
            return Ok(None);
        }
        if stops > 0 {
            return Err(self.err(format!("{what}: one input stream ended before the others")));
        }
        Ok(Some(t))
    }

    /// The next element of a grouping unit's input (Accum, Scan, Bufferize): its arrival, or
    /// `None` at the stop token, which must fall on a group boundary.
    #[inline]
    fn next_in_group(&mut self, inp: usize, what: &str) -> Result<Option<u64>, Flow> {
        let (at, stop) = self.front(inp)?;
        if !stop {
            return Ok(Some(at));
        }
        if self.u.st.pos != 0 {
            return Err(self.err(format!("the stream ended in the middle of a {what}")));
        }
        Ok(None)
    }

    /// Pops the front element of `c` at cycle `at`; its tile is freed at `free`.
    #[inline]
    fn take(&mut self, c: usize, at: u64, free: u64) -> Val {
        let v = pop_val(self.chans, c, at);
        self.env.mem(c, free, -1);
        self.u.elements_in += 1;
        v
    }

    /// Pushes a data element to `out` at cycle `push`.
    #[inline]
    fn emit(&mut self, out: usize, push: u64, v: Val) {
        self.chans[out].push(push, Token::Data(v));
        self.env.mem(out, push, 1);
        self.u.elements_out += 1;
    }

    fn finish(&mut self, ins: &[usize], outs: &[usize]) -> Fire {
        // Passive neighbours first (same order of checks as `finish`, so the same block).
        for &c in ins {
            self.front(c)?;
        }
        for &c in outs {
            self.space(c)?;
        }
        Ok(finish(self.u, ins, outs, self.chans)?)
    }

    fn apply(
        &self,
        f: FnId,
        state: Option<&[Tensor]>,
        input: &[Tensor],
    ) -> Result<Vec<Tensor>, Flow> {
        self.env.fns.apply(f, state, input).map_err(|e| self.err(e))
    }

    /// Functional mode: one reducer step, state ← f(state, v) (from `init` at a group's start).
    fn reduce(&mut self, f: FnId, out: usize, v: &Val) -> Result<(), Flow> {
        if !self.env.functional() {
            return Ok(());
        }
        let state = match self.u.st.acc.take() {
            Some(s) => s,
            None => self
                .env
                .fns
                .init(f, &self.env.plan.chans[out].field_shapes)
                .map_err(|e| self.err(e))?,
        };
        self.u.st.acc = Some(self.apply(f, Some(&state), fields(v))?);
        Ok(())
    }

    /// The value a reducer emits: its state (functional), else a timing-only element.
    fn state_val(&mut self, out: usize, keep: bool) -> Val {
        let acc = if keep {
            self.u.st.acc.clone()
        } else {
            self.u.st.acc.take()
        };
        match acc {
            Some(s) => Val::Fields(Rc::new(s)),
            None => self.env.synth(out, self.u.elements_out),
        }
    }

    /// Takes the next element of `inp` to hold (Streamify's tile, Repeat's value) for
    /// `count` outputs; `true` at the stop token.
    fn hold(&mut self, inp: usize, count: u64) -> Result<bool, Flow> {
        let (at, stop) = self.front(inp)?;
        if stop {
            return Ok(true);
        }
        let (start, _) = self.u.fire(at, 0, 0, 0);
        self.u.st.held = Some(pop_val(self.chans, inp, start));
        self.u.elements_in += 1;
        self.u.st.pos = 0;
        if count == 0 {
            self.env.mem(inp, start, -1);
            self.u.st.held = None;
        }
        Ok(false)
    }

    /// Reads the next selector element (Partition, Merge) and makes its branches the current
    /// choice for `chunk` elements; `false` at the selector's stop token.
    fn select(&mut self, sel: usize, n: usize, chunk: u64) -> Result<bool, Flow> {
        let (at, stop) = self.front(sel)?;
        if stop {
            return Ok(false);
        }
        let (start, _) = self.u.fire(at, 0, 0, 0);
        let v = pop_val(self.chans, sel, start);
        self.u.elements_in += 1;
        let c = chosen(&v, n).map_err(|e| self.err(e))?;
        self.u.st.chosen = (chunk != 0).then_some(c);
        self.u.st.pos = 0;
        self.u.st.k = 0;
        self.u.st.acc = None;
        Ok(true)
    }

    /// After one element of a chunk: the choice ends with the chunk.
    fn chunk_step(&mut self, chunk: u64) {
        self.u.st.pos += 1;
        if self.u.st.pos >= chunk {
            self.u.st.chosen = None;
        }
    }
}

/// Records a step's outcome on its unit.
#[inline]
fn settle(u: &mut Unit, status: Status) {
    match status {
        Status::Done => {
            u.done = true;
            u.blocked = None;
        }
        Status::Blocked(b) => u.blocked = Some(b),
    }
}

/// Runs unit `ui` as far as it goes (the other units are there for its passive neighbours).
fn step(
    ui: usize,
    env: &mut Env,
    chans: &mut [Chan],
    units: &mut [Unit],
) -> Result<Status, SimError> {
    let (lo, rest) = units.split_at_mut(ui);
    let Some((u, hi)) = rest.split_first_mut() else {
        return Err(SimError::internal("unit out of range", Default::default()));
    };
    step_unit(ui, env, chans, u, lo, hi)
}

fn step_unit(
    ui: usize,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
    lo: &mut [Unit],
    hi: &mut [Unit],
) -> Result<Status, SimError> {
    let plan = env.plan;
    let mut cx = Cx {
        ui,
        env,
        chans,
        u,
        lo,
        hi,
    };
    let r = match &plan.units[ui].kind {
        UnitKind::Load { index, count } => io::load(&mut cx, *index, *count),
        UnitKind::Store => io::store(&mut cx),
        UnitKind::Map { f, cost, flops } => map(&mut cx, *f, *cost, *flops),
        UnitKind::Fold {
            f,
            inner,
            scan,
            cost,
            flops,
        } => fold(&mut cx, *f, *inner, *scan, *cost, *flops),
        UnitKind::Zip | UnitKind::Copy | UnitKind::Pass => pass(&mut cx),
        UnitKind::Bufferize { group, cost } => bufferize(&mut cx, *group, *cost),
        UnitKind::Streamify { count, cost } => streamify(&mut cx, *count, *cost),
        UnitKind::Repeat { n } => repeat(&mut cx, *n, false),
        UnitKind::RepeatRef { n } => repeat(&mut cx, *n, true),
        UnitKind::Partition { chunk, n } => partition(&mut cx, *chunk, *n),
        UnitKind::Merge {
            f,
            n,
            chunk,
            cost,
            flops,
        } => merge(&mut cx, *f, *n, *chunk, *cost, *flops),
    };
    match r {
        Ok(s) => Ok(s),
        Err(Flow::Blocked(b)) => Ok(Status::Blocked(b)),
        Err(Flow::Fail(e)) => Err(e),
    }
}

/// Zip, Copy and the shape-only ops: one element per cycle, values passed through (Zip
/// concatenates its inputs' fields).
fn pass(cx: &mut Cx) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (ins, outs) = (&info.inputs[..], &info.outputs[..]);
    loop {
        if let [c] = ins {
            lockstep::load_into_pass(cx, *c, outs)?;
        }
        let Some(t_in) = cx.heads(ins, "Zip")? else {
            return cx.finish(ins, outs);
        };
        let mut sp = 0;
        for &c in outs {
            sp = sp.max(cx.space(c)?);
        }
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(t_in, 1, 0, sp);
        let v = if let [c] = ins {
            cx.take(*c, start, push)
        } else {
            let vals: Vec<Val> = ins.iter().map(|&c| cx.take(c, start, push)).collect();
            if cx.env.functional() {
                let all: Vec<Tensor> = vals
                    .iter()
                    .flat_map(|v| fields(v).iter().cloned())
                    .collect();
                Val::Fields(Rc::new(all))
            } else {
                vals.into_iter()
                    .find(|v| !matches!(v, Val::Shape))
                    .unwrap_or(Val::Shape)
            }
        };
        for &c in outs {
            if lockstep::takes(cx, c) {
                cx.u.elements_out += 1;
                lockstep::pass_into(cx, c, push)?;
            } else {
                cx.emit(c, push, v.clone());
            }
        }
    }
}

fn map(cx: &mut Cx, f: FnId, cost: u64, flops: u64) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (ins, out) = (&info.inputs[..], info.outputs[0]);
    let functional = cx.env.functional();
    loop {
        let Some(t_in) = cx.heads(ins, "Map")? else {
            return cx.finish(ins, &[out]);
        };
        let sp = cx.space(out)?;
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(t_in, cost, cost, sp);
        let mut args: Vec<Tensor> = Vec::new();
        for &c in ins {
            let v = cx.take(c, start, start + cost);
            if functional {
                args.extend(fields(&v).iter().cloned());
            }
        }
        let v = if functional {
            Val::Fields(Rc::new(cx.apply(f, None, &args)?))
        } else {
            cx.env.synth(out, cx.u.elements_out)
        };
        cx.u.flops += flops;
        cx.emit(out, push, v);
    }
}

/// Accum (emits at the end of each group of `inner`) and Scan (emits after every element).
fn fold(cx: &mut Cx, f: FnId, inner: u64, scan: bool, cost: u64, flops: u64) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    loop {
        let Some(at) = cx.next_in_group(inp, "fold")? else {
            return cx.finish(&[inp], &[out]);
        };
        let last = cx.u.st.pos + 1 >= inner;
        let emits = scan || last;
        let sp = if emits { cx.space(out)? } else { 0 };
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(at, cost, cost, sp);
        let v = cx.take(inp, start, start + cost);
        cx.u.flops += flops;
        cx.reduce(f, out, &v)?;
        if emits {
            let val = cx.state_val(out, !last);
            cx.emit(out, push, val);
        }
        if last {
            cx.u.st.pos = 0;
            cx.u.st.acc = None;
        } else {
            cx.u.st.pos += 1;
        }
    }
}

fn bufferize(cx: &mut Cx, group: u64, cost: u64) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    let tile = i64::try_from(plan.chans[out].buf_bytes).unwrap_or(i64::MAX);
    loop {
        if cx.u.st.pos + 1 < group {
            lockstep::load_into_tile(cx, inp, group, cost, tile)?;
        }
        let Some(at) = cx.next_in_group(inp, "tile")? else {
            return cx.finish(&[inp], &[out]);
        };
        let last = cx.u.st.pos + 1 >= group;
        let sp = if last { cx.space(out)? } else { 0 };
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(at, cost, cost, sp);
        if cx.u.st.pos == 0 {
            cx.env.mem.push((start, tile));
        }
        let v = cx.take(inp, start, start + cost);
        if let Val::Fields(fs) = &v {
            let tile = &mut cx.u.st.tile;
            if tile.len() < fs.len() {
                tile.resize(fs.len(), Vec::new());
            }
            for (t, x) in tile.iter_mut().zip(fs.iter()) {
                match x.as_f32() {
                    Some(d) => t.extend_from_slice(d),
                    None => t.extend(x.to_f32_vec()),
                }
            }
        }
        if !last {
            cx.u.st.pos += 1;
            continue;
        }
        cx.env.mem.push((push, -tile));
        let val = if cx.env.functional() {
            let data = std::mem::take(&mut cx.u.st.tile);
            let mut ts = Vec::with_capacity(data.len());
            for (d, s) in data.into_iter().zip(&plan.chans[out].field_shapes) {
                ts.push(Tensor::from_f32(s.clone(), d).map_err(|e| cx.err(e.message))?);
            }
            Val::Fields(Rc::new(ts))
        } else {
            Val::Shape
        };
        cx.emit(out, push, val);
        cx.u.st.pos = 0;
    }
}

fn streamify(cx: &mut Cx, count: u64, cost: u64) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    loop {
        if cx.u.st.held.is_none() {
            if cx.hold(inp, count)? {
                return cx.finish(&[inp], &[out]);
            }
            continue;
        }
        if cx.u.st.pos + 1 < count {
            lockstep::tile_into_store(cx, out, count, cost)?;
        }
        let sp = cx.space(out)?;
        cx.env.tick(cx.ui)?;
        let (_, push) = cx.u.fire(0, cost, cost, sp);
        let val = match &cx.u.st.held {
            Some(Val::Fields(fs)) => {
                let shape = &plan.chans[out].field_shapes[0];
                let len: usize = shape.iter().product();
                let t = fs
                    .first()
                    .ok_or_else(|| cx.err("Streamify of an empty element"))?;
                let lo = usize::try_from(cx.u.st.pos)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(len);
                // Slice the tile in place (no copy of the whole tile per element).
                let owned;
                let data = match t.as_f32() {
                    Some(d) => d,
                    None => {
                        owned = t.to_f32_vec();
                        &owned[..]
                    }
                };
                let slice = data
                    .get(lo..lo + len)
                    .ok_or_else(|| cx.err("Streamify: tile smaller than its type"))?;
                Val::Fields(Rc::new(vec![
                    Tensor::from_f32(shape.clone(), slice.to_vec())
                        .map_err(|e| cx.err(e.message))?,
                ]))
            }
            _ => cx.env.synth(out, cx.u.elements_out),
        };
        if lockstep::takes(cx, out) {
            cx.u.elements_out += 1;
            lockstep::pass_into(cx, out, push)?;
        } else {
            cx.emit(out, push, val);
        }
        cx.u.st.pos += 1;
        if cx.u.st.pos >= count {
            cx.env.mem(inp, push, -1);
            cx.u.st.held = None;
        }
    }
}

/// Repeat (`n` copies of each element) and RepeatRef (one copy per element of the
/// reference stream, consumed as it goes).
fn repeat(cx: &mut Cx, n: u64, by_ref: bool) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    let rf = info.inputs.get(1).copied().filter(|_| by_ref);
    loop {
        if cx.u.st.held.is_none() {
            if cx.hold(inp, n)? {
                return cx.finish(&info.inputs, &[out]);
            }
            continue;
        }
        let mut t_in = 0;
        if let Some(r) = rf {
            let (at, stop) = cx.front(r)?;
            if stop {
                return Err(cx.err("RepeatRef: the reference stream ended before the data"));
            }
            t_in = at;
        }
        let sp = cx.space(out)?;
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(t_in, 1, 0, sp);
        if let Some(r) = rf {
            cx.take(r, start, start);
        }
        let held = cx.u.st.held.clone().unwrap_or(Val::Shape);
        cx.emit(out, push, held);
        cx.u.st.pos += 1;
        if cx.u.st.pos >= n {
            cx.env.mem(inp, push, -1);
            cx.u.st.held = None;
        }
    }
}

fn partition(cx: &mut Cx, chunk: u64, n: usize) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (data, sel) = (info.inputs[0], info.inputs[1]);
    loop {
        if cx.u.st.chosen.is_none() {
            if !cx.select(sel, n, chunk)? {
                if !cx.front(data)?.1 {
                    return Err(cx.err(
                        "Partition: the data has more chunks than the selector has elements",
                    ));
                }
                return cx.finish(&info.inputs, &info.outputs);
            }
            continue;
        }
        let (at, stop) = cx.front(data)?;
        if stop {
            return Err(
                cx.err("Partition: the selector has more elements than the data has chunks")
            );
        }
        let mut sp = 0;
        let mut i = 0;
        while let Some(&b) = cx.u.st.chosen.as_deref().and_then(|ch| ch.get(i)) {
            let c = *info
                .outputs
                .get(b)
                .ok_or_else(|| cx.err("Partition: branch out of range"))?;
            sp = sp.max(cx.space(c)?);
            i += 1;
        }
        cx.env.tick(cx.ui)?;
        let (start, push) = cx.u.fire(at, 1, 0, sp);
        let v = cx.take(data, start, start);
        let ch = cx.u.st.chosen.take().unwrap_or_default();
        for &b in &ch {
            cx.emit(info.outputs[b], push, v.clone());
        }
        cx.u.st.chosen = Some(ch);
        cx.chunk_step(chunk);
    }
}

fn merge(cx: &mut Cx, f: FnId, n: usize, chunk: u64, cost: u64, flops: u64) -> Fire {
    let plan = cx.env.plan;
    let info = &plan.units[cx.ui];
    let (branches, sel, out) = (&info.inputs[..n], info.inputs[n], info.outputs[0]);
    loop {
        if cx.u.st.chosen.is_none() {
            if !cx.select(sel, n, chunk)? {
                for (i, &b) in branches.iter().enumerate() {
                    if !cx.front(b)?.1 {
                        return Err(cx.err(format!(
                            "Merge: branch {i} carries more chunks than the selector picks it"
                        )));
                    }
                }
                return cx.finish(&info.inputs, &[out]);
            }
            continue;
        }
        let ch = cx.u.st.chosen.as_deref().unwrap_or(&[]);
        let (n_chosen, b) = (ch.len(), ch.get(cx.u.st.k).copied().unwrap_or(0));
        if n_chosen == 0 {
            // No branch picked: the chunk's elements are zeros.
            let sp = cx.space(out)?;
            cx.env.tick(cx.ui)?;
            let (_, push) = cx.u.fire(0, 1, 1, sp);
            let val = if cx.env.functional() {
                let mut zs = Vec::new();
                for s in &plan.chans[out].field_shapes {
                    zs.push(
                        Tensor::zeros(s, stepforge_tensor::DType::F32)
                            .map_err(|e| cx.err(e.message))?,
                    );
                }
                Val::Fields(Rc::new(zs))
            } else {
                cx.env.synth(out, cx.u.elements_out)
            };
            cx.emit(out, push, val);
        } else {
            let c = *branches
                .get(b)
                .ok_or_else(|| cx.err("Merge: branch out of range"))?;
            let (at, stop) = cx.front(c)?;
            if stop {
                return Err(cx.err(format!(
                    "Merge: the selector picks branch {b} after that branch ended"
                )));
            }
            let last = cx.u.st.k + 1 == n_chosen;
            let sp = if last { cx.space(out)? } else { 0 };
            cx.env.tick(cx.ui)?;
            let (start, push) = cx.u.fire(at, cost, cost, sp);
            let v = cx.take(c, start, start + cost);
            cx.u.flops += flops;
            cx.reduce(f, out, &v)?;
            if !last {
                cx.u.st.k += 1;
                continue;
            }
            let val = cx.state_val(out, false);
            cx.emit(out, push, val);
            cx.u.st.k = 0;
        }
        cx.chunk_step(chunk);
    }
}
