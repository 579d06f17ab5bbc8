//! The event engine: runs every unit as far as its FIFOs let it, in simulation order, until
//! all units have finished or none can move (a deadlock).
//!
//! There is no global cycle counter and no idle tick: each unit keeps its own clock, and each
//! firing computes its start, end and push cycles from the arrival cycles of its inputs and
//! the pop cycles of its outputs' earlier entries (see [`crate::chan`]). A unit that cannot
//! move in simulation order records why (an empty input or a full output); moving it wakes its
//! neighbours. When the worklist empties with units unfinished, every one of them is blocked,
//! and following "waits for" from any of them finds the cycle the deadlock report names.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use stepforge_tensor::Tensor;

use crate::chan::{Chan, Token, Val, synth_mask};
use crate::fns::ElemFns;
use crate::hw::HwConfig;
use crate::plan::{Plan, UnitKind};
use crate::{SimError, SimOptions};

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

    fn span(&mut self, a: u64, b: u64, kind: u8) {
        if b <= a {
            return;
        }
        if let Some(s) = &mut self.spans {
            if let Some(last) = s.last_mut()
                && last.2 == kind
                && last.1 == a
            {
                last.1 = b;
                return;
            }
            s.push((a, b, kind));
        }
    }

    /// One firing: inputs arrive by `t_in`; `ii` cycles of work (busy), the result is ready
    /// `lat` cycles after the start and pushed once there is room (`space`). Returns
    /// `(start, push)` cycles.
    #[inline]
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
}

impl Env<'_> {
    fn functional(&self) -> bool {
        self.inputs.is_some()
    }

    fn mem(&mut self, ch: usize, t: u64, sign: i64) {
        let b = self.plan.chans.get(ch).map_or(0, |c| c.buf_bytes);
        if b > 0 {
            self.mem
                .push((t, sign.saturating_mul(i64::try_from(b).unwrap_or(i64::MAX))));
        }
    }

    fn err(&self, u: usize, msg: impl Into<String>) -> SimError {
        SimError::runtime(msg, self.span.get(u).copied().unwrap_or_default())
    }

    /// A freshly computed timing-only element for channel `ch`: a synthesized routing mask
    /// when it is a selector, else nothing.
    fn synth(&self, ch: usize, index: u64) -> Val {
        match self.plan.chans.get(ch).and_then(|c| c.mask_bits) {
            Some(bits) => Val::Mask(synth_mask(index, bits, self.opts.routing_hot)),
            None => Val::Shape,
        }
    }

    fn tick(&mut self, u: usize) -> Result<(), SimError> {
        self.steps += 1;
        if self.steps > self.opts.max_steps {
            return Err(SimError::limit(
                format!(
                    "the simulation took more than {} unit firings",
                    self.opts.max_steps
                ),
                self.span.get(u).copied().unwrap_or_default(),
            ));
        }
        if self.steps & 0xFFFF == 0
            && let Some(d) = self.deadline
            && Instant::now() > d
        {
            return Err(SimError::limit(
                "the simulation ran past its wall-clock limit",
                self.span.get(u).copied().unwrap_or_default(),
            ));
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

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(b) => return Ok(Status::Blocked(b)),
        }
    };
}

/// Runs the engine; returns the units' final state.
pub(crate) fn run(env: &mut Env, chans: &mut [Chan], units: &mut [Unit]) -> Result<(), SimError> {
    let n = units.len();
    let mut queued = vec![true; n];
    let mut queue: VecDeque<usize> = (0..n).collect();
    let plan = env.plan;
    while let Some(u) = queue.pop_front() {
        queued[u] = false;
        if units[u].done {
            continue;
        }
        let before = units[u].moves;
        let status = step(u, env, chans, &mut units[u])?;
        match status {
            Status::Done => {
                units[u].done = true;
                units[u].blocked = None;
            }
            Status::Blocked(b) => units[u].blocked = Some(b),
        }
        if units[u].moves != before || units[u].done {
            let info = &plan.units[u];
            let near = info
                .inputs
                .iter()
                .map(|&c| Some(plan.chans[c].producer))
                .chain(info.outputs.iter().map(|&c| plan.chans[c].consumer));
            for v in near.flatten() {
                if !queued[v] && !units[v].done {
                    queued[v] = true;
                    queue.push_back(v);
                }
            }
        }
    }
    Ok(())
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

fn step(ui: usize, env: &mut Env, chans: &mut [Chan], u: &mut Unit) -> Result<Status, SimError> {
    let plan = env.plan;
    let info = &plan.units[ui];
    let (ins, outs) = (&info.inputs[..], &info.outputs[..]);
    match &info.kind {
        UnitKind::Load { index, count } => load(ui, *index, *count, env, chans, u),
        UnitKind::Store => store(ui, env, chans, u),
        UnitKind::Map { f, cost, flops } => map(ui, *f, *cost, *flops, env, chans, u),
        UnitKind::Fold {
            f,
            inner,
            scan,
            cost,
            flops,
        } => fold(ui, *f, *inner, *scan, *cost, *flops, env, chans, u),
        UnitKind::Zip | UnitKind::Copy | UnitKind::Pass => loop {
            let mut t_in = 0;
            let mut stops = 0;
            for &c in ins {
                let (at, stop) = tri!(front_at(chans, c));
                t_in = t_in.max(at);
                stops += usize::from(stop);
            }
            if stops == ins.len() {
                return Ok(tri!(finish(u, ins, outs, chans)));
            }
            if stops > 0 {
                return Err(env.err(ui, "Zip: one input stream ended before the other"));
            }
            let mut sp = 0;
            for &c in outs {
                sp = sp.max(tri!(space(chans, c)));
            }
            env.tick(ui)?;
            let (start, push) = u.fire(t_in, 1, 0, sp);
            let mut vals: Vec<Val> = Vec::with_capacity(ins.len());
            for &c in ins {
                vals.push(pop_val(chans, c, start));
                env.mem(c, push, -1);
            }
            u.elements_in += ins.len() as u64;
            let v = if vals.len() > 1 && env.functional() {
                let mut all = Vec::new();
                for v in &vals {
                    all.extend(fields(v).iter().cloned());
                }
                Val::Fields(Rc::new(all))
            } else {
                vals.into_iter()
                    .find(|v| !matches!(v, Val::Shape))
                    .unwrap_or(Val::Shape)
            };
            for &c in outs {
                chans[c].push(push, Token::Data(v.clone()));
                env.mem(c, push, 1);
                u.elements_out += 1;
            }
        },
        UnitKind::Bufferize { group, cost } => bufferize(ui, *group, *cost, env, chans, u),
        UnitKind::Streamify { count, cost } => streamify(ui, *count, *cost, env, chans, u),
        UnitKind::Repeat { n } => repeat(ui, *n, false, env, chans, u),
        UnitKind::RepeatRef { n } => repeat(ui, *n, true, env, chans, u),
        UnitKind::Partition { chunk, n } => partition(ui, *chunk, *n, env, chans, u),
        UnitKind::Merge {
            f,
            n,
            chunk,
            cost,
            flops,
        } => merge(ui, *f, *n, *chunk, *cost, *flops, env, chans, u),
    }
}

fn apply(
    env: &Env,
    ui: usize,
    f: stepforge_ir::FnId,
    state: Option<&[Tensor]>,
    input: &[Tensor],
) -> Result<Vec<Tensor>, SimError> {
    env.fns.apply(f, state, input).map_err(|e| env.err(ui, e))
}

fn load(
    ui: usize,
    index: usize,
    count: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let out = env.plan.units[ui].outputs[0];
    let share = env.share[ui];
    let e = env.plan.chans[out].elem_bytes as f64;
    let lat = env.hw.offchip.latency;
    if u.st.pos == 0 && u.st.bw == 0.0 {
        u.st.bw = env.hw.offchip.startup as f64;
    }
    loop {
        if u.st.pos == count {
            u.busy = u.busy.max(u.st.xfer.ceil() as u64);
            return Ok(tri!(finish(u, &[], &[out], chans)));
        }
        let sp = tri!(space(chans, out));
        env.tick(ui)?;
        let i = u.st.pos;
        // Requests run ahead of the consumer by the FIFO plus the window that covers the
        // latency; the oldest entry they may overtake must have been popped.
        let c = &chans[out];
        let window = (c.depth as u64).saturating_add(load_window(env.hw, share, e));
        let gate = i
            .checked_sub(window)
            .and_then(|k| c.pop_time_of(k))
            .unwrap_or(0) as f64;
        let issue = u.st.bw.max(gate);
        u.st.bw = issue + e / share;
        u.st.xfer += e / share;
        let arrive = u.st.bw.ceil() as u64 + lat;
        let push = arrive.max(sp).max(u.clock);
        u.stall_out += push - arrive.max(u.clock);
        u.clock = push + 1;
        u.moves += 1;
        u.span(push, push + 1, BUSY);
        let v = match env.inputs {
            Some(inputs) => Val::Fields(Rc::new(input_elem(env, ui, inputs, index, out, i)?)),
            None => env.synth(out, i),
        };
        chans[out].push(push, Token::Data(v));
        env.mem(out, push, 1);
        u.elements_out += 1;
        u.st.pos += 1;
    }
}

/// Entries a load stream keeps in flight beyond its FIFO: enough to cover the latency.
pub(crate) fn load_window(hw: &HwConfig, share: f64, elem_bytes: f64) -> u64 {
    let w = (hw.offchip.latency as f64 * share / elem_bytes.max(1.0)).ceil();
    (w as u64).saturating_add(1).min(1 << 20)
}

fn input_elem(
    env: &Env,
    ui: usize,
    inputs: &[Vec<Arc<Vec<f32>>>],
    index: usize,
    out: usize,
    i: u64,
) -> Result<Vec<Tensor>, SimError> {
    let data = inputs
        .get(index)
        .ok_or_else(|| env.err(ui, format!("no data for input {index}")))?;
    let shapes = &env.plan.chans[out].field_shapes;
    let mut ts = Vec::with_capacity(shapes.len());
    for (d, shape) in data.iter().zip(shapes) {
        let len: usize = shape.iter().product();
        let lo = usize::try_from(i).unwrap_or(usize::MAX).saturating_mul(len);
        let slice = d
            .get(lo..lo + len)
            .ok_or_else(|| env.err(ui, "input data shorter than its dims"))?;
        ts.push(
            Tensor::from_f32(shape.clone(), slice.to_vec()).map_err(|e| env.err(ui, e.message))?,
        );
    }
    Ok(ts)
}

fn store(ui: usize, env: &mut Env, chans: &mut [Chan], u: &mut Unit) -> Result<Status, SimError> {
    let inp = env.plan.units[ui].inputs[0];
    let share = env.share[ui];
    let e = env.plan.chans[inp].elem_bytes as f64;
    if u.elements_in == 0 && u.st.bw == 0.0 {
        u.st.bw = env.hw.offchip.startup as f64;
    }
    loop {
        let (at, stop) = tri!(front_at(chans, inp));
        if stop {
            let r = tri!(finish(u, &[inp], &[], chans));
            u.clock = u.clock.max(u.st.last);
            u.busy = u.busy.max(u.st.xfer.ceil() as u64);
            return Ok(r);
        }
        env.tick(ui)?;
        let ready = u.clock.max(u.st.bw.ceil() as u64);
        let start = ready.max(at);
        u.stall_in += start - ready;
        u.span(u.clock, start, STALL_IN);
        u.span(start, start + 1, BUSY);
        let v = pop_val(chans, inp, start);
        u.st.bw = u.st.bw.max(start as f64) + e / share;
        u.st.xfer += e / share;
        u.st.last = u.st.bw.ceil() as u64 + env.hw.offchip.latency;
        env.mem(inp, u.st.last, -1);
        u.clock = start + 1;
        u.moves += 1;
        u.elements_in += 1;
        if let Val::Fields(f) = &v {
            if u.st.out.len() < f.len() {
                u.st.out.resize(f.len(), Vec::new());
            }
            for (o, t) in u.st.out.iter_mut().zip(f.iter()) {
                o.extend(t.to_f32_vec());
            }
        }
    }
}

/// The output data a store unit collected (functional mode).
pub(crate) fn take_output(u: &mut Unit) -> Vec<Vec<f32>> {
    std::mem::take(&mut u.st.out)
}

#[allow(clippy::too_many_arguments)]
fn map(
    ui: usize,
    f: stepforge_ir::FnId,
    cost: u64,
    flops: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (ins, out) = (&info.inputs[..], info.outputs[0]);
    loop {
        let mut t_in = 0;
        let mut stops = 0;
        for &c in ins {
            let (at, stop) = tri!(front_at(chans, c));
            t_in = t_in.max(at);
            stops += usize::from(stop);
        }
        if stops == ins.len() {
            return Ok(tri!(finish(u, ins, &[out], chans)));
        }
        if stops > 0 {
            return Err(env.err(ui, "Map: one input stream ended before the others"));
        }
        let sp = tri!(space(chans, out));
        env.tick(ui)?;
        let (start, push) = u.fire(t_in, cost, cost, sp);
        let mut args: Vec<Tensor> = Vec::new();
        for &c in ins {
            let v = pop_val(chans, c, start);
            env.mem(c, start + cost, -1);
            if env.functional() {
                args.extend(fields(&v).iter().cloned());
            }
        }
        let v = if env.functional() {
            Val::Fields(Rc::new(apply(env, ui, f, None, &args)?))
        } else {
            env.synth(out, u.elements_out)
        };
        u.elements_in += ins.len() as u64;
        u.flops += flops;
        chans[out].push(push, Token::Data(v));
        env.mem(out, push, 1);
        u.elements_out += 1;
    }
}

fn init_state(
    env: &Env,
    ui: usize,
    f: stepforge_ir::FnId,
    out: usize,
) -> Result<Vec<Tensor>, SimError> {
    env.fns
        .init(f, &env.plan.chans[out].field_shapes)
        .map_err(|e| env.err(ui, e))
}

#[allow(clippy::too_many_arguments)]
fn fold(
    ui: usize,
    f: stepforge_ir::FnId,
    inner: u64,
    scan: bool,
    cost: u64,
    flops: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    loop {
        let (at, stop) = tri!(front_at(chans, inp));
        if stop {
            if u.st.pos != 0 {
                return Err(env.err(ui, "the stream ended in the middle of a fold"));
            }
            return Ok(tri!(finish(u, &[inp], &[out], chans)));
        }
        let last = u.st.pos + 1 >= inner;
        let sp = if scan || last {
            tri!(space(chans, out))
        } else {
            0
        };
        env.tick(ui)?;
        let (start, push) = u.fire(at, cost, cost, sp);
        let v = pop_val(chans, inp, start);
        env.mem(inp, start + cost, -1);
        u.elements_in += 1;
        u.flops += flops;
        if env.functional() {
            let state = match u.st.acc.take() {
                Some(s) => s,
                None => init_state(env, ui, f, out)?,
            };
            u.st.acc = Some(apply(env, ui, f, Some(&state), fields(&v))?);
        }
        if scan || last {
            let val = match &u.st.acc {
                Some(s) => Val::Fields(Rc::new(s.clone())),
                None => env.synth(out, u.elements_out),
            };
            chans[out].push(push, Token::Data(val));
            env.mem(out, push, 1);
            u.elements_out += 1;
        }
        if last {
            u.st.pos = 0;
            u.st.acc = None;
        } else {
            u.st.pos += 1;
        }
    }
}

fn bufferize(
    ui: usize,
    group: u64,
    cost: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    let tile = i64::try_from(env.plan.chans[out].buf_bytes).unwrap_or(i64::MAX);
    loop {
        let (at, stop) = tri!(front_at(chans, inp));
        if stop {
            if u.st.pos != 0 {
                return Err(env.err(ui, "the stream ended in the middle of a tile"));
            }
            return Ok(tri!(finish(u, &[inp], &[out], chans)));
        }
        let last = u.st.pos + 1 >= group;
        let sp = if last { tri!(space(chans, out)) } else { 0 };
        env.tick(ui)?;
        let (start, push) = u.fire(at, cost, cost, sp);
        if u.st.pos == 0 {
            env.mem.push((start, tile));
        }
        let v = pop_val(chans, inp, start);
        env.mem(inp, start + cost, -1);
        u.elements_in += 1;
        if let Val::Fields(fs) = &v {
            if u.st.tile.len() < fs.len() {
                u.st.tile.resize(fs.len(), Vec::new());
            }
            for (t, x) in u.st.tile.iter_mut().zip(fs.iter()) {
                t.extend(x.to_f32_vec());
            }
        }
        if last {
            env.mem.push((push, -tile));
            let val = if env.functional() {
                let shapes = &env.plan.chans[out].field_shapes;
                let data = std::mem::take(&mut u.st.tile);
                let mut ts = Vec::with_capacity(shapes.len());
                for (d, s) in data.into_iter().zip(shapes) {
                    ts.push(Tensor::from_f32(s.clone(), d).map_err(|e| env.err(ui, e.message))?);
                }
                Val::Fields(Rc::new(ts))
            } else {
                Val::Shape
            };
            chans[out].push(push, Token::Data(val));
            env.mem(out, push, 1);
            u.elements_out += 1;
            u.st.pos = 0;
        } else {
            u.st.pos += 1;
        }
    }
}

fn streamify(
    ui: usize,
    count: u64,
    cost: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    loop {
        let Some(held) = &u.st.held else {
            let (at, stop) = tri!(front_at(chans, inp));
            if stop {
                return Ok(tri!(finish(u, &[inp], &[out], chans)));
            }
            let (start, _) = u.fire(at, 0, 0, 0);
            u.st.held = Some(pop_val(chans, inp, start));
            u.elements_in += 1;
            u.st.pos = 0;
            if count == 0 {
                env.mem(inp, start, -1);
                u.st.held = None;
            }
            continue;
        };
        let sp = tri!(space(chans, out));
        env.tick(ui)?;
        let held = held.clone();
        let (_, push) = u.fire(0, cost, cost, sp);
        let val = match &held {
            Val::Fields(fs) => {
                let shape = &env.plan.chans[out].field_shapes[0];
                let len: usize = shape.iter().product();
                let t = fs
                    .first()
                    .ok_or_else(|| env.err(ui, "Streamify of an empty element"))?;
                let data = t.to_f32_vec();
                let lo = usize::try_from(u.st.pos)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(len);
                let slice = data
                    .get(lo..lo + len)
                    .ok_or_else(|| env.err(ui, "Streamify: tile smaller than its type"))?;
                Val::Fields(Rc::new(vec![
                    Tensor::from_f32(shape.clone(), slice.to_vec())
                        .map_err(|e| env.err(ui, e.message))?,
                ]))
            }
            _ => env.synth(out, u.elements_out),
        };
        chans[out].push(push, Token::Data(val));
        env.mem(out, push, 1);
        u.elements_out += 1;
        u.st.pos += 1;
        if u.st.pos >= count {
            env.mem(inp, push, -1);
            u.st.held = None;
        }
    }
}

fn repeat(
    ui: usize,
    n: u64,
    by_ref: bool,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (inp, out) = (info.inputs[0], info.outputs[0]);
    let rf = info.inputs.get(1).copied();
    loop {
        let Some(held) = &u.st.held else {
            let (at, stop) = tri!(front_at(chans, inp));
            if stop {
                return Ok(tri!(finish(u, &info.inputs, &[out], chans)));
            }
            let (start, _) = u.fire(at, 0, 0, 0);
            u.st.held = Some(pop_val(chans, inp, start));
            u.elements_in += 1;
            u.st.pos = 0;
            if n == 0 {
                env.mem(inp, start, -1);
                u.st.held = None;
            }
            continue;
        };
        let mut t_in = 0;
        if by_ref && let Some(r) = rf {
            let (at, stop) = tri!(front_at(chans, r));
            if stop {
                return Err(env.err(ui, "RepeatRef: the reference stream ended before the data"));
            }
            t_in = at;
        }
        let sp = tri!(space(chans, out));
        env.tick(ui)?;
        let held = held.clone();
        let (start, push) = u.fire(t_in, 1, 0, sp);
        if by_ref && let Some(r) = rf {
            chans[r].pop(start);
            env.mem(r, start, -1);
            u.elements_in += 1;
        }
        chans[out].push(push, Token::Data(held));
        env.mem(out, push, 1);
        u.elements_out += 1;
        u.st.pos += 1;
        if u.st.pos >= n {
            env.mem(inp, push, -1);
            u.st.held = None;
        }
    }
}

fn partition(
    ui: usize,
    chunk: u64,
    n: usize,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (data, sel) = (info.inputs[0], info.inputs[1]);
    loop {
        let Some(ch) = &u.st.chosen else {
            let (at, stop) = tri!(front_at(chans, sel));
            if stop {
                let (_, dstop) = tri!(front_at(chans, data));
                if !dstop {
                    return Err(env.err(
                        ui,
                        "Partition: the data has more chunks than the selector has elements",
                    ));
                }
                return Ok(tri!(finish(u, &info.inputs, &info.outputs, chans)));
            }
            let (start, _) = u.fire(at, 0, 0, 0);
            let v = pop_val(chans, sel, start);
            u.elements_in += 1;
            let c = chosen(&v, n).map_err(|e| env.err(ui, e))?;
            u.st.chosen = Some(c);
            u.st.pos = 0;
            if chunk == 0 {
                u.st.chosen = None;
            }
            continue;
        };
        let (at, stop) = tri!(front_at(chans, data));
        if stop {
            return Err(env.err(
                ui,
                "Partition: the selector has more elements than the data has chunks",
            ));
        }
        let mut sp = 0;
        for &b in ch {
            let c = *info
                .outputs
                .get(b)
                .ok_or_else(|| env.err(ui, "Partition: branch out of range"))?;
            sp = sp.max(tri!(space(chans, c)));
        }
        env.tick(ui)?;
        let ch = u.st.chosen.take().unwrap_or_default();
        let (start, push) = u.fire(at, 1, 0, sp);
        let v = pop_val(chans, data, start);
        env.mem(data, start, -1);
        u.elements_in += 1;
        for &b in &ch {
            let c = info.outputs[b];
            chans[c].push(push, Token::Data(v.clone()));
            env.mem(c, push, 1);
            u.elements_out += 1;
        }
        u.st.pos += 1;
        if u.st.pos < chunk {
            u.st.chosen = Some(ch);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn merge(
    ui: usize,
    f: stepforge_ir::FnId,
    n: usize,
    chunk: u64,
    cost: u64,
    flops: u64,
    env: &mut Env,
    chans: &mut [Chan],
    u: &mut Unit,
) -> Result<Status, SimError> {
    let info = &env.plan.units[ui];
    let (branches, sel, out) = (&info.inputs[..n], info.inputs[n], info.outputs[0]);
    loop {
        let Some(ch) = &u.st.chosen else {
            let (at, stop) = tri!(front_at(chans, sel));
            if stop {
                for (i, &b) in branches.iter().enumerate() {
                    let (_, bstop) = tri!(front_at(chans, b));
                    if !bstop {
                        return Err(env.err(
                            ui,
                            format!(
                                "Merge: branch {i} carries more chunks than the selector picks it"
                            ),
                        ));
                    }
                }
                return Ok(tri!(finish(u, &info.inputs, &[out], chans)));
            }
            let (start, _) = u.fire(at, 0, 0, 0);
            let v = pop_val(chans, sel, start);
            u.elements_in += 1;
            u.st.chosen = Some(chosen(&v, n).map_err(|e| env.err(ui, e))?);
            u.st.pos = 0;
            u.st.k = 0;
            u.st.acc = None;
            if chunk == 0 {
                u.st.chosen = None;
            }
            continue;
        };
        let (empty, b) = (ch.is_empty(), ch.get(u.st.k).copied().unwrap_or(0));
        let n_chosen = ch.len();
        if empty {
            let sp = tri!(space(chans, out));
            env.tick(ui)?;
            let (_, push) = u.fire(0, 1, 1, sp);
            let val = if env.functional() {
                let mut zs = Vec::new();
                for s in &env.plan.chans[out].field_shapes {
                    zs.push(
                        Tensor::zeros(s, stepforge_tensor::DType::F32)
                            .map_err(|e| env.err(ui, e.message))?,
                    );
                }
                Val::Fields(Rc::new(zs))
            } else {
                env.synth(out, u.elements_out)
            };
            chans[out].push(push, Token::Data(val));
            env.mem(out, push, 1);
            u.elements_out += 1;
        } else {
            let c = *branches
                .get(b)
                .ok_or_else(|| env.err(ui, "Merge: branch out of range"))?;
            let (at, stop) = tri!(front_at(chans, c));
            if stop {
                return Err(env.err(
                    ui,
                    format!("Merge: the selector picks branch {b} after that branch ended"),
                ));
            }
            let last = u.st.k + 1 == n_chosen;
            let sp = if last { tri!(space(chans, out)) } else { 0 };
            env.tick(ui)?;
            let (start, push) = u.fire(at, cost, cost, sp);
            let v = pop_val(chans, c, start);
            env.mem(c, start + cost, -1);
            u.elements_in += 1;
            u.flops += flops;
            if env.functional() {
                let state = match u.st.acc.take() {
                    Some(s) => s,
                    None => init_state(env, ui, f, out)?,
                };
                u.st.acc = Some(apply(env, ui, f, Some(&state), fields(&v))?);
            }
            if !last {
                u.st.k += 1;
                continue;
            }
            let val = match u.st.acc.take() {
                Some(s) => Val::Fields(Rc::new(s)),
                None => env.synth(out, u.elements_out),
            };
            chans[out].push(push, Token::Data(val));
            env.mem(out, push, 1);
            u.elements_out += 1;
            u.st.k = 0;
        }
        u.st.pos += 1;
        if u.st.pos >= chunk {
            u.st.chosen = None;
        }
    }
}
