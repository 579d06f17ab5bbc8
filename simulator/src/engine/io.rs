//! Load and store units (off-chip traffic) and their timing cursors.
//!
//! A cursor holds a unit's hot timing state in locals for a run of firings (opened from the
//! unit, written back on close) and is the one place a load's push cycles and a store's pop
//! cycles are computed: the units' own firing loops here and the lockstep runs of
//! [`super::lockstep`] both go through it, so they cannot drift apart.

use std::rc::Rc;
use std::sync::Arc;

use stepforge_tensor::Tensor;

use super::{BUSY, Block, Cx, Env, Fire, Flow, STALL_IN, Unit, finish, pop_val};
use crate::SimError;
use crate::chan::{Chan, Token, Val, synth_mask};
use crate::hw::HwConfig;

/// A load unit's timing state for a run of firings.
pub(super) struct LoadCur {
    bw: f64,
    xfer: f64,
    clock: u64,
    stall_out: u64,
    /// Index of the next element to load.
    pub pos: u64,
    first: u64,
    window: u64,
    per: f64,
    lat: u64,
}

impl LoadCur {
    /// Opens load unit `ui` (output channel `c`), setting up its start-up cycles and request
    /// window on the first firing.
    #[inline]
    pub fn open(env: &Env, ui: usize, u: &mut Unit, c: &Chan) -> LoadCur {
        let out = env.plan.units[ui].outputs[0];
        let share = env.share[ui];
        let e = env.plan.chans[out].elem_bytes as f64;
        if u.st.pos == 0 && u.st.bw == 0.0 {
            u.st.bw = env.hw.offchip.startup as f64;
        }
        // Requests run ahead of the consumer by the FIFO plus the window that covers the
        // latency; the oldest entry they may overtake must have been popped.
        if u.st.window == 0 {
            u.st.window = (c.depth as u64).saturating_add(load_window(env.hw, share, e));
        }
        LoadCur {
            bw: u.st.bw,
            xfer: u.st.xfer,
            clock: u.clock,
            stall_out: u.stall_out,
            pos: u.st.pos,
            first: u.st.pos,
            window: u.st.window,
            per: e / share,
            lat: env.hw.offchip.latency,
        }
    }

    /// The push cycle of the next element into `c`, whose FIFO has room from cycle `sp`.
    #[inline(always)]
    pub fn next(&mut self, c: &Chan, sp: u64) -> u64 {
        let gate = self
            .pos
            .checked_sub(self.window)
            .and_then(|k| c.pop_time_of(k))
            .map_or(0.0, cycle_f64);
        let issue = self.bw.max(gate);
        self.bw = issue + self.per;
        self.xfer += self.per;
        let arrive = ceil_u64(self.bw) + self.lat;
        let push = arrive.max(sp).max(self.clock);
        self.stall_out += push - arrive.max(self.clock);
        self.clock = push + 1;
        self.pos += 1;
        push
    }

    /// Writes the state back to the unit.
    #[inline]
    pub fn close(&self, u: &mut Unit, env: &mut Env) {
        let fired = self.pos - self.first;
        u.st.bw = self.bw;
        u.st.xfer = self.xfer;
        u.clock = self.clock;
        u.stall_out = self.stall_out;
        u.st.pos = self.pos;
        u.moves += fired;
        u.elements_out += fired;
        env.loaded += fired;
    }
}

/// A store unit's timing state for a run of firings.
pub(super) struct StoreCur {
    bw: f64,
    xfer: f64,
    /// Completion cycle of the last write.
    pub last: u64,
    clock: u64,
    stall_in: u64,
    fired: u64,
    per: f64,
    lat: u64,
}

impl StoreCur {
    /// Opens store unit `ui`, setting up its start-up cycles on the first firing.
    #[inline]
    pub fn open(env: &Env, ui: usize, u: &mut Unit) -> StoreCur {
        let inp = env.plan.units[ui].inputs[0];
        let e = env.plan.chans[inp].elem_bytes as f64;
        if u.elements_in == 0 && u.st.bw == 0.0 {
            u.st.bw = env.hw.offchip.startup as f64;
        }
        StoreCur {
            bw: u.st.bw,
            xfer: u.st.xfer,
            last: u.st.last,
            clock: u.clock,
            stall_in: u.stall_in,
            fired: 0,
            per: e / env.share[ui],
            lat: env.hw.offchip.latency,
        }
    }

    /// The cycle the store is ready for its next element (before its arrival).
    #[inline(always)]
    pub fn ready(&self) -> u64 {
        self.clock.max(ceil_u64(self.bw))
    }

    /// Takes the next element, arrived at `at`: returns the cycle it is popped.
    #[inline(always)]
    pub fn next(&mut self, at: u64) -> u64 {
        let ready = self.ready();
        let start = ready.max(at);
        self.stall_in += start - ready;
        self.bw = self.bw.max(cycle_f64(start)) + self.per;
        self.xfer += self.per;
        self.last = ceil_u64(self.bw) + self.lat;
        self.clock = start + 1;
        self.fired += 1;
        start
    }

    /// Writes the state back to the unit.
    #[inline]
    pub fn close(&self, u: &mut Unit) {
        u.st.bw = self.bw;
        u.st.xfer = self.xfer;
        u.st.last = self.last;
        u.clock = self.clock;
        u.stall_in = self.stall_in;
        u.moves += self.fired;
        u.elements_in += self.fired;
    }
}

pub(super) fn load(cx: &mut Cx, index: usize, count: u64) -> Fire {
    let (ui, env, chans, u) = (cx.ui, &mut *cx.env, &mut *cx.chans, &mut *cx.u);
    let out = env.plan.units[ui].outputs[0];
    let mut cur = LoadCur::open(env, ui, u, &chans[out]);
    let tracing = u.spans.is_some();
    let buf = env.buf.get(out).copied().unwrap_or(0);
    let bits = env.mask.get(out).copied().flatten();
    let hot = env.opts.routing_hot;
    let res: Result<(), Flow> = loop {
        let i = cur.pos;
        if i == count {
            break Ok(());
        }
        let Some(sp) = chans[out].space() else {
            break Err(Flow::Blocked(Block::Output(out)));
        };
        if let Err(e) = env.tick(ui) {
            break Err(e.into());
        }
        let push = cur.next(&chans[out], sp);
        if tracing {
            u.span(push, push + 1, BUSY);
        }
        let v = match env.inputs {
            Some(inputs) => match input_elem(env, ui, inputs, index, out, i) {
                Ok(ts) => Val::Fields(Rc::new(ts)),
                Err(e) => break Err(e.into()),
            },
            None => match bits {
                Some(b) => Val::Mask(synth_mask(i, b, hot)),
                None => Val::Shape,
            },
        };
        chans[out].push(push, Token::Data(v));
        if buf > 0 {
            env.mem.push((push, buf));
        }
    };
    cur.close(u, env);
    res?;
    u.busy = u.busy.max(ceil_u64(u.st.xfer));
    Ok(finish(u, &[], &[out], chans)?)
}

pub(super) fn store(cx: &mut Cx) -> Fire {
    let (ui, env, chans, u) = (cx.ui, &mut *cx.env, &mut *cx.chans, &mut *cx.u);
    let inp = env.plan.units[ui].inputs[0];
    let mut cur = StoreCur::open(env, ui, u);
    let tracing = u.spans.is_some();
    let buf = env.buf.get(inp).copied().unwrap_or(0);
    let res: Result<(), Flow> = loop {
        let Some(e) = chans[inp].front() else {
            break Err(Flow::Blocked(Block::Input(inp)));
        };
        if matches!(e.tok, Token::Stop) {
            break Ok(());
        }
        let at = e.at;
        if let Err(e) = env.tick(ui) {
            break Err(e.into());
        }
        if tracing {
            let (clock, start) = (cur.clock, cur.ready().max(at));
            u.span(clock, start, STALL_IN);
            u.span(start, start + 1, BUSY);
        }
        let start = cur.next(at);
        let v = pop_val(chans, inp, start);
        if buf > 0 {
            env.mem.push((cur.last, -buf));
        }
        if let Val::Fields(f) = &v {
            if u.st.out.len() < f.len() {
                u.st.out.resize(f.len(), Vec::new());
            }
            for (o, t) in u.st.out.iter_mut().zip(f.iter()) {
                o.extend(t.to_f32_vec());
            }
        }
    };
    cur.close(u);
    res?;
    let r = finish(u, &[inp], &[], chans)?;
    u.clock = u.clock.max(u.st.last);
    u.busy = u.busy.max(ceil_u64(u.st.xfer));
    Ok(r)
}

/// The output data a store unit collected (functional mode).
pub(crate) fn take_output(u: &mut Unit) -> Vec<Vec<f32>> {
    std::mem::take(&mut u.st.out)
}

/// ⌈x⌉ of a non-negative cycle count (no libm call on baseline x86-64; cycle counts stay
/// far below 2⁶³, where the signed conversions are single instructions).
#[inline]
fn ceil_u64(x: f64) -> u64 {
    let t = x as i64;
    let up = if (t as f64) < x { t + 1 } else { t };
    u64::try_from(up).unwrap_or(0)
}

/// A cycle as f64 (exact below 2⁵³).
#[inline]
fn cycle_f64(t: u64) -> f64 {
    i64::try_from(t).map_or(t as f64, |t| t as f64)
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
