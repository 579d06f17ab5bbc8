//! The executor's side of the native backend (`stepforge-jit`, DESIGN §13): tiering, the
//! per-function compile cache, and the fused stream loops.
//!
//! A Map whose element function compiles runs as native calls over the stream's flat field
//! buffers (lanes = stream elements, in chunks that bound the scratch memory); an Accum/Scan
//! runs one native call per fold step over all independent folds (lanes = folds, strided
//! reads, double-buffered state); a Merge runs one native call per fold step over every
//! output element that folds that many chunks (the chosen branches' elements gathered into
//! one buffer). No per-element `Tensor` is built on any path.
//!
//! Tiering ([`JitMode`]): `never` interprets; `always` compiles every function the backend
//! supports; `auto` compiles when the op's estimated work (stream elements × FLOPs per
//! element, FLOPs from the builtin table's costs, at least [`ELEM_COST_FLOOR`]) reaches
//! [`AUTO_THRESHOLD`], so a one-off default-dims run stays interpreted, or when the function
//! is hot: [`HOT_USES`] programs have been prepared with its plan (a session's candidates share
//! one plan per function). A function the backend cannot compile falls back to the
//! interpreter; why is kept for `--jit-report`. Compiled code is cached in the function's
//! prepared plan, i.e. per (task function, dims) — the shapes it was compiled for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use stepforge_ir::func::Body;
use stepforge_jit::{Act, Global, In, Out, Spec, Un};

use crate::eval::{Env, Module, Value};
use crate::stream::{FieldData, StreamData};

/// When element functions are compiled to native code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub enum JitMode {
    /// Compile when the estimated work of an op reaches [`AUTO_THRESHOLD`].
    #[default]
    Auto,
    /// Compile everything the backend supports.
    Always,
    /// Interpret everything.
    Never,
}

impl JitMode {
    pub fn parse(s: &str) -> Option<JitMode> {
        match s {
            "auto" => Some(JitMode::Auto),
            "always" => Some(JitMode::Always),
            "never" => Some(JitMode::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JitMode::Auto => "auto",
            JitMode::Always => "always",
            JitMode::Never => "never",
        }
    }
}

/// Estimated FLOPs (elements × FLOPs per element) from which `auto` compiles: ≈ 16 M, about
/// where interpreting costs tens of milliseconds while compiling costs a few.
pub const AUTO_THRESHOLD: u64 = 1 << 24;

/// In `auto`, a function whose prepared plan this many programs have used runs natively
/// whatever the size of its ops. Plans are shared by every candidate program of a task
/// verified through one cache (a driver `Session`, where the agent verifies thousands), so a
/// hot function is compiled once for the session: compiling costs 0.2–1 ms and a native op is
/// 2–9× faster than the interpreted one at default dims (`stepforge bench --jit`, measured),
/// which the next few candidates repay. A per-call verification prepares each plan once, so
/// it keeps the size threshold alone. The two tiers agree within the verification tolerance
/// (the differential proptests), but they are not bit-identical: a result at the very edge of
/// the tolerance could get a different verdict before and after its functions turn hot
/// (ARCHITECTURE.md, known debts).
pub const HOT_USES: u64 = 8;

/// The least estimated cost of one element: the interpreter's per-element overhead (values,
/// dispatch) dwarfs the arithmetic of tiny functions, so with this floor ~65 K elements
/// (2^24 / 2^8) compile whatever their FLOPs.
pub const ELEM_COST_FLOOR: u64 = 1 << 8;

/// Elements of scratch per native call (bounds the memory of intermediates of a chunk).
const SCRATCH_ELEMS: usize = 1 << 21;

/// The native state of one prepared element function.
#[derive(Default)]
pub(crate) struct NativeSlot {
    /// FLOPs per element, or why the function is outside the compiled subset.
    analysis: OnceLock<Result<u64, String>>,
    kernel: OnceLock<Result<Arc<NativeFn>, String>>,
    native_calls: AtomicU64,
    native_ns: AtomicU64,
    interp_calls: AtomicU64,
    interp_ns: AtomicU64,
    /// Programs prepared with this function's plan (see [`HOT_USES`]).
    uses: AtomicU64,
}

struct NativeFn {
    compiled: stepforge_jit::Compiled,
    compile_us: u64,
}

/// What `--jit-report` and `bench --jit` say about one element function.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JitFnReport {
    pub name: String,
    pub compiled: bool,
    /// Why it runs in the interpreter (unsupported construct, or below the `auto` threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub compile_us: u64,
    /// Stream ops run natively / interpreted, and their total time.
    pub native_calls: u64,
    pub native_us: u64,
    pub interp_calls: u64,
    pub interp_us: u64,
}

/// The static facts of a function the backend needs (borrowed from its plan).
pub(crate) struct FnFacts<'a> {
    pub body: &'a Body,
    pub ins: &'a [Vec<usize>],
    pub outs: Vec<Vec<usize>>,
    pub reducer: bool,
}

fn global_of(v: &Value) -> Global {
    match v {
        Value::Int(i) => Global::Int(*i),
        Value::Float(x) => Global::Float(*x),
        Value::Bool(b) => Global::Bool(*b),
        Value::Module(m) => Global::Act(match m {
            Module::Gelu { tanh: false } => Act::Unary(Un::Gelu),
            Module::Gelu { tanh: true } => Act::Unary(Un::GeluTanh),
            Module::Sigmoid => Act::Unary(Un::Sigmoid),
            Module::Silu => Act::Unary(Un::Silu),
            Module::Relu => Act::Unary(Un::Relu),
            Module::Tanh => Act::Unary(Un::Tanh),
            Module::Identity => Act::Identity,
            Module::Softmax { dim } => Act::Softmax(*dim),
            Module::LogSoftmax { .. } => return Global::Other,
        }),
        _ => Global::Other,
    }
}

fn spec_of(f: &FnFacts<'_>, env: &Env) -> Spec {
    let data: BTreeMap<String, Vec<usize>> = env
        .data
        .iter()
        .filter(|(_, t)| t.as_f32().is_some())
        .map(|(k, t)| (k.clone(), t.shape().to_vec()))
        .collect();
    Spec {
        inputs: f.ins.to_vec(),
        state: f.reducer.then(|| f.outs.clone()),
        outputs: f.outs.clone(),
        data,
        globals: env
            .names
            .iter()
            .map(|(k, v)| (k.clone(), global_of(v)))
            .collect(),
        dims: env.dims.clone(),
    }
}

fn micros(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl NativeSlot {
    /// The compiled kernel when `mode` wants native code for `elements` stream elements.
    fn kernel(
        &self,
        f: &FnFacts<'_>,
        env: &Env,
        mode: JitMode,
        elements: usize,
    ) -> Option<Arc<NativeFn>> {
        if mode == JitMode::Never {
            return None;
        }
        let flops = self
            .analysis
            .get_or_init(|| {
                stepforge_jit::tir::analyse(f.body, &spec_of(f, env))
                    .map(|g| g.flops_per_lane.max(1))
                    .map_err(|e| e.0)
            })
            .as_ref()
            .ok()?;
        let cost = (*flops).max(ELEM_COST_FLOOR);
        if mode == JitMode::Auto
            && (elements as u64).saturating_mul(cost) < AUTO_THRESHOLD
            && self.uses.load(Ordering::Relaxed) < HOT_USES
        {
            return None;
        }
        self.kernel
            .get_or_init(|| {
                let t = Instant::now();
                stepforge_jit::compile(f.body, &spec_of(f, env), cfg!(debug_assertions))
                    .map(|compiled| {
                        Arc::new(NativeFn {
                            compiled,
                            compile_us: micros(t),
                        })
                    })
                    .map_err(|e| e.0)
            })
            .as_ref()
            .ok()
            .cloned()
    }

    /// Records that one more program was prepared with this function's plan.
    pub(crate) fn note_use(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an interpreted stream op of this function.
    pub(crate) fn record_interp(&self, since: Instant) {
        self.interp_calls.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.interp_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn record_native(&self, since: Instant) {
        self.native_calls.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.native_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn report(&self, name: &str) -> JitFnReport {
        let kernel = self.kernel.get();
        let fallback = match (self.analysis.get(), kernel) {
            (_, Some(Err(e))) | (Some(Err(e)), _) => Some(e.clone()),
            (Some(Ok(_)), None) => Some("below the --jit auto threshold".to_string()),
            (None, None) => Some("not run natively (--jit never)".to_string()),
            _ => None,
        };
        let ok = matches!(kernel, Some(Ok(_)));
        JitFnReport {
            name: name.to_string(),
            compiled: ok,
            fallback,
            compile_us: match kernel {
                Some(Ok(k)) => k.compile_us,
                _ => 0,
            },
            native_calls: self.native_calls.load(Ordering::Relaxed),
            native_us: self.native_ns.load(Ordering::Relaxed) / 1000,
            interp_calls: self.interp_calls.load(Ordering::Relaxed),
            interp_us: self.interp_ns.load(Ordering::Relaxed) / 1000,
        }
    }
}

fn data_slices<'e>(k: &NativeFn, env: &'e Env) -> Option<Vec<&'e [f32]>> {
    k.compiled
        .data
        .iter()
        .map(|n| env.data.get(n).and_then(|t| t.as_f32()))
        .collect()
}

/// Lanes per call so that scratch stays under [`SCRATCH_ELEMS`].
fn chunk_lanes(k: &NativeFn, total: usize) -> usize {
    let per = k.compiled.kernel.scratch_per_lane().max(1);
    (SCRATCH_ELEMS / per).clamp(1, total.max(1))
}

/// The inputs of one native call over the stream elements `e0 + k·step` (k < `max`): the
/// first run of them that every field holds at a constant stride, and its length (≥ 1).
/// `None` when an element of a view is not contiguous in its buffer.
fn lane_run<'f>(
    fields: impl Iterator<Item = &'f FieldData>,
    e0: usize,
    step: usize,
    max: usize,
) -> Option<(Vec<In<'f>>, usize)> {
    let mut lanes = max.max(1);
    let mut ins = Vec::new();
    for fd in fields {
        let (offset, lane_stride, run) = fd.affine_run(e0, step, fd.elem_len(), lanes)?;
        lanes = lanes.min(run);
        ins.push(In {
            data: &fd.data,
            offset,
            lane_stride,
        });
    }
    Some((ins, lanes))
}

/// A Map over `count` elements natively; `None` to interpret.
pub(crate) fn map(
    slot: &NativeSlot,
    f: &FnFacts<'_>,
    env: &Env,
    mode: JitMode,
    fields: &[&FieldData],
    count: usize,
) -> Option<Vec<Vec<f32>>> {
    let k = slot.kernel(f, env, mode, count)?;
    let t = Instant::now();
    let data = data_slices(&k, env)?;
    let out_lens: Vec<usize> = f.outs.iter().map(|s| s.iter().product()).collect();
    let mut out: Vec<Vec<f32>> = out_lens.iter().map(|&l| vec![0.0; count * l]).collect();
    let chunk = chunk_lanes(&k, count);
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < count {
        let (ins, lanes) = lane_run(fields.iter().copied(), start, 1, chunk.min(count - start))?;
        let mut outs: Vec<Out<'_>> = out
            .iter_mut()
            .zip(&out_lens)
            .map(|(o, &l)| Out {
                data: o,
                offset: start * l,
                lane_stride: l,
            })
            .collect();
        k.compiled
            .kernel
            .run(lanes, &ins, &[], &mut outs, &data, &mut scratch)
            .ok()?;
        start += lanes;
    }
    slot.record_native(t);
    Some(out)
}

/// A Map fused in front of a fold: its kernel computes each fold step's inputs for all lanes
/// into a small buffer, so the Map's stream is never built.
pub(crate) struct PreMap<'a> {
    pub slot: &'a NativeSlot,
    pub facts: FnFacts<'a>,
}

/// The fused Map's kernel, its output lengths and the buffers one step maps into.
type PreState<'e> = (Ready<'e>, Vec<usize>, Vec<Vec<f32>>);

/// One kernel ready to run: the compiled function and its `input_data` slices.
struct Ready<'e> {
    k: Arc<NativeFn>,
    data: Vec<&'e [f32]>,
    scratch: Vec<f32>,
}

impl<'e> Ready<'e> {
    fn new(k: Arc<NativeFn>, env: &'e Env) -> Option<Ready<'e>> {
        let data = data_slices(&k, env)?;
        Some(Ready {
            k,
            data,
            scratch: Vec::new(),
        })
    }

    fn run(
        &mut self,
        lanes: usize,
        ins: &[In<'_>],
        st: &[In<'_>],
        outs: &mut [Out<'_>],
    ) -> Option<()> {
        self.k
            .compiled
            .kernel
            .run(lanes, ins, st, outs, &self.data, &mut self.scratch)
            .ok()
    }
}

/// `In`s over lanes `l0..` of per-lane buffers `bufs` (element lengths `lens`).
fn lane_ins<'b>(bufs: &'b [Vec<f32>], lens: &[usize], l0: usize) -> Vec<In<'b>> {
    bufs.iter()
        .zip(lens)
        .map(|(c, &l)| In {
            data: c,
            offset: l0 * l,
            lane_stride: l,
        })
        .collect()
}

fn lane_outs<'b>(bufs: &'b mut [Vec<f32>], lens: &[usize], l0: usize) -> Vec<Out<'b>> {
    bufs.iter_mut()
        .zip(lens)
        .map(|(n, &l)| Out {
            data: n,
            offset: l0 * l,
            lane_stride: l,
        })
        .collect()
}

/// One fold step over `lanes` lanes from fold `o0` on: lane `o` reads stream element
/// `(o0+o)·inner + i` (through the fused Map when there is one), folds it into `cur` and
/// writes `next`. One call per run of lanes whose elements lie at a constant stride (one
/// run unless the input is a view).
#[allow(clippy::too_many_arguments)]
fn fold_step(
    fk: &mut Ready<'_>,
    pre: &mut Option<PreState<'_>>,
    input: &StreamData,
    lens: &[usize],
    cur: &[Vec<f32>],
    next: &mut [Vec<f32>],
    (o0, lanes, inner, i): (usize, usize, usize, usize),
) -> Option<()> {
    let mut l0 = 0;
    while l0 < lanes {
        let first = (o0 + l0) * inner + i;
        let (ins, n) = lane_run(input.fields.iter(), first, inner, lanes - l0)?;
        match pre {
            None => fk.run(
                n,
                &ins,
                &lane_ins(cur, lens, l0),
                &mut lane_outs(next, lens, l0),
            )?,
            Some((pk, plens, mid)) => pk.run(n, &ins, &[], &mut lane_outs(mid, plens, l0))?,
        }
        l0 += n;
    }
    if let Some((_, plens, mid)) = pre {
        let ins = lane_ins(mid, plens, 0);
        fk.run(
            lanes,
            &ins,
            &lane_ins(cur, lens, 0),
            &mut lane_outs(next, lens, 0),
        )?;
    }
    Some(())
}

/// Accum (`scan == false`) or Scan over `outer` independent folds of `inner` steps natively;
/// `None` to interpret. `init` holds one element per state field. With `pre`, the fold's
/// input is that Map applied to `input` (computed step by step, never whole).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fold(
    slot: &NativeSlot,
    f: &FnFacts<'_>,
    premap: Option<&PreMap<'_>>,
    env: &Env,
    mode: JitMode,
    init: &[&[f32]],
    input: &StreamData,
    inner: usize,
    outer: usize,
    scan: bool,
) -> Option<Vec<Vec<f32>>> {
    let work = inner.saturating_mul(outer);
    let k = slot.kernel(f, env, mode, work)?;
    let pk = match premap {
        Some(p) => Some(p.slot.kernel(&p.facts, env, mode, work)?),
        None => None,
    };
    let t = Instant::now();
    let lens: Vec<usize> = f.outs.iter().map(|s| s.iter().product()).collect();
    if init.len() != lens.len() || init.iter().zip(&lens).any(|(i, &l)| i.len() != l) {
        return None;
    }
    let mut chunk = chunk_lanes(&k, outer);
    if let Some(pk) = &pk {
        chunk = chunk.min(chunk_lanes(pk, outer));
    }
    let mut fk = Ready::new(k, env)?;
    let mut pre: Option<PreState<'_>> = match (pk, premap) {
        (Some(pk), Some(p)) => {
            let plens: Vec<usize> = p.facts.outs.iter().map(|s| s.iter().product()).collect();
            // the step's mapped elements are scratch too
            let per: usize = plens.iter().sum();
            chunk = chunk.min((SCRATCH_ELEMS / per.max(1)).clamp(1, outer.max(1)));
            Some((Ready::new(pk, env)?, plens, Vec::new()))
        }
        _ => None,
    };
    let steps = if scan { inner } else { 1 };
    let mut out: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; outer * steps * l]).collect();
    let mut o0 = 0;
    while o0 < outer {
        let lanes = chunk.min(outer - o0);
        let mut cur: Vec<Vec<f32>> = init.iter().map(|i| i.repeat(lanes)).collect();
        let mut next: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; lanes * l]).collect();
        if let Some((_, plens, mid)) = &mut pre {
            *mid = plens.iter().map(|&l| vec![0.0; lanes * l]).collect();
        }
        for i in 0..inner {
            let at = (o0, lanes, inner, i);
            fold_step(&mut fk, &mut pre, input, &lens, &cur, &mut next, at)?;
            if scan {
                for ((dst, src), &l) in out.iter_mut().zip(&next).zip(&lens) {
                    for (o, row) in src.chunks_exact(l.max(1)).enumerate().take(lanes) {
                        let e = (o0 + o) * inner + i;
                        dst.get_mut(e * l..(e + 1) * l)?.copy_from_slice(row);
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        if !scan {
            for ((dst, src), &l) in out.iter_mut().zip(&cur).zip(&lens) {
                dst.get_mut(o0 * l..(o0 + lanes) * l)?.copy_from_slice(src);
            }
        }
        o0 += lanes;
    }
    slot.record_native(t);
    if let Some(p) = premap {
        p.slot.record_native(t);
    }
    Some(out)
}

/// The chunk elements one Merge output element folds: `(branch, chunk)` in branch order.
pub(crate) type Picks = Vec<(usize, usize)>;

/// Copies rows `e0..e0 + n` (of `len` scalars) of `fd` to the end of `dst`.
fn gather_rows(
    dst: &mut Vec<f32>,
    fd: &FieldData,
    mut e0: usize,
    mut n: usize,
    len: usize,
) -> Option<()> {
    while n > 0 {
        let (ins, run) = lane_run(std::iter::once(fd), e0, 1, n)?;
        let i = ins.first()?;
        let run = run.min(n);
        for l in 0..run {
            let o = i.offset + l * i.lane_stride;
            dst.extend_from_slice(i.data.get(o..o + len)?);
        }
        e0 += run;
        n -= run;
    }
    Some(())
}

/// A Merge natively; `None` to interpret. Output element `j·c + pos` folds, into `init`, the
/// element `chunk·c + pos` of every `(branch, chunk)` of `picks[j]` in turn (validated by the
/// caller), and is zero when `picks[j]` is empty — what the interpreted Merge computes. Fold
/// step `s` is one native call (per scratch-sized chunk of lanes) over the elements with more
/// than `s` picks, their inputs and states gathered into contiguous buffers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn merge(
    slot: &NativeSlot,
    f: &FnFacts<'_>,
    env: &Env,
    mode: JitMode,
    init: &[&[f32]],
    branches: &[StreamData],
    picks: &[Picks],
    c: usize,
) -> Option<Vec<Vec<f32>>> {
    let count = picks.len().checked_mul(c)?;
    let k = slot.kernel(f, env, mode, count)?;
    let t = Instant::now();
    let lens: Vec<usize> = f.outs.iter().map(|s| s.iter().product()).collect();
    let in_lens: Vec<usize> = f.ins.iter().map(|s| s.iter().product()).collect();
    if init.len() != lens.len() || init.iter().zip(&lens).any(|(i, &l)| i.len() != l) {
        return None;
    }
    let chunk = chunk_lanes(&k, count);
    let mut fk = Ready::new(k, env)?;
    let mut state: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; count * l]).collect();
    for (st, (i, &l)) in state.iter_mut().zip(init.iter().zip(&lens)) {
        for (j, p) in picks.iter().enumerate() {
            if !p.is_empty() {
                for row in st
                    .get_mut(j * c * l..(j + 1) * c * l)?
                    .chunks_exact_mut(l.max(1))
                {
                    row.copy_from_slice(i);
                }
            }
        }
    }
    let steps = picks.iter().map(Vec::len).max().unwrap_or(0);
    let mut active = Vec::new();
    for s in 0..steps {
        active.clear();
        active.extend((0..picks.len()).filter(|&j| picks[j].len() > s));
        let lanes = active.len() * c;
        let mut gin: Vec<Vec<f32>> = in_lens
            .iter()
            .map(|&l| Vec::with_capacity(lanes * l))
            .collect();
        let mut cur: Vec<Vec<f32>> = lens
            .iter()
            .map(|&l| Vec::with_capacity(lanes * l))
            .collect();
        for &j in &active {
            let (b, at) = *picks[j].get(s)?;
            let br = branches.get(b)?;
            if br.fields.len() != in_lens.len() {
                return None;
            }
            for ((g, fd), &l) in gin.iter_mut().zip(&br.fields).zip(&in_lens) {
                if fd.elem_len() != l {
                    return None;
                }
                gather_rows(g, fd, at.checked_mul(c)?, c, l)?;
            }
            for ((cu, st), &l) in cur.iter_mut().zip(&state).zip(&lens) {
                cu.extend_from_slice(st.get(j * c * l..(j + 1) * c * l)?);
            }
        }
        let mut next: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; lanes * l]).collect();
        let mut l0 = 0;
        while l0 < lanes {
            let n = chunk.min(lanes - l0);
            fk.run(
                n,
                &lane_ins(&gin, &in_lens, l0),
                &lane_ins(&cur, &lens, l0),
                &mut lane_outs(&mut next, &lens, l0),
            )?;
            l0 += n;
        }
        for (a, &j) in active.iter().enumerate() {
            for ((st, nx), &l) in state.iter_mut().zip(&next).zip(&lens) {
                st.get_mut(j * c * l..(j + 1) * c * l)?
                    .copy_from_slice(nx.get(a * c * l..(a + 1) * c * l)?);
            }
        }
    }
    slot.record_native(t);
    Some(state)
}

#[cfg(test)]
mod tests {
    //! Differential tests: random element functions from a small grammar over the builtin
    //! table, random shapes and data; the native Map and fold equal the interpreter's
    //! per-element calls within the verification tolerance (Cranelift's verifier is on in
    //! debug builds, so every compiled function is also verified).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use stepforge_tensor::Tensor;

    use super::*;
    use crate::eval::{Function, eval_global};

    fn lower(src: &str, env: &Env, mode: stepforge_ir::func::Mode) -> Arc<Body> {
        let block = stepforge_syntax::parse_block(src).value.unwrap();
        let scope = stepforge_check::func_lower::Scope {
            globals: env.names.keys().cloned().collect(),
            dims: env.dims.keys().cloned().collect(),
        };
        Arc::new(stepforge_check::func_lower::lower_block(&block, &scope, mode).unwrap())
    }

    fn env(d: usize, w: &[f32]) -> Env {
        let dims: BTreeMap<String, i64> = [("D".to_string(), d as i64)].into_iter().collect();
        let e = Env::new(dims);
        let g = lower(
            "gelu = torch.nn.GELU()\nscale = 0.25\n",
            &e,
            stepforge_ir::func::Mode::Global,
        );
        let mut e = eval_global(Some(&g), e).unwrap();
        e.set_data("W", Tensor::from_f32(vec![d, 3], w.to_vec()).unwrap());
        e
    }

    /// Expressions of shape [D] over `x` ([D]) and `y` ([D] or scalar).
    fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("input[0]".to_string()),
            Just("input[1]".to_string()),
            Just("(input[0] * scale)".to_string()),
            Just("(0.5 - input[1])".to_string()),
        ];
        leaf.prop_recursive(4, 24, 2, |e| {
            prop_oneof![
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("({a} - {b})")),
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("({a} * {b})")),
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("({a} / (torch.abs({b}) + 1.0))")),
                e.clone()
                    .prop_map(|a| format!("torch.exp(-torch.abs({a}))")),
                e.clone().prop_map(|a| format!("torch.tanh({a})")),
                e.clone().prop_map(|a| format!("torch.sigmoid({a})")),
                e.clone().prop_map(|a| format!("torch.relu({a})")),
                e.clone().prop_map(|a| format!("gelu({a})")),
                e.clone().prop_map(|a| format!("torch.erf({a})")),
                e.clone().prop_map(|a| format!("torch.sin({a})")),
                e.clone()
                    .prop_map(|a| format!("torch.sqrt(torch.abs({a}))")),
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("torch.maximum({a}, {b})")),
                (e.clone(), e.clone(), e.clone())
                    .prop_map(|(a, b, c)| format!("torch.where({a} > {b}, {c}, {a})")),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| format!("({a} + {b}.sum(dim=-1, keepdim=True))")),
                e.clone()
                    .prop_map(|a| format!("torch.softmax({a}, dim=-1)")),
                (e.clone(), e.clone())
                    .prop_map(|(a, b)| format!("({a} - {b}.mean(dim=-1, keepdim=True))")),
                e.clone()
                    .prop_map(|a| format!("({a} * torch.amax({a}, dim=-1, keepdim=True))")),
                e.clone().prop_map(|a| {
                    format!("((({a} + input[0]) @ input_data['W']) @ input_data['W'].T)")
                }),
                e.clone().prop_map(|a| format!("({a} * {a}.sum())")),
            ]
        })
    }

    fn close(a: f32, b: f32) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * b.abs().max(1.0)
    }

    struct Case {
        f: Function,
        env: Env,
        ins: Vec<Vec<usize>>,
        x: Vec<f32>,
        y: Vec<f32>,
    }

    impl Case {
        fn new(src: &str, d: usize, y_scalar: bool, lanes: usize, data: &[f32]) -> Case {
            let w: Vec<f32> = (0..d * 3).map(|i| data[i % data.len()] * 0.5).collect();
            let env = env(d, &w);
            let body = lower(src, &env, stepforge_ir::func::Mode::Function);
            let f = Function::from_ir("f", body, &env).unwrap();
            let yl = if y_scalar { 1 } else { d };
            let x = (0..lanes * d)
                .map(|i| data[(i * 7 + 1) % data.len()])
                .collect();
            let y = (0..lanes * yl)
                .map(|i| data[(i * 5 + 3) % data.len()])
                .collect();
            let ins = vec![vec![d], if y_scalar { vec![] } else { vec![d] }];
            Case { f, env, ins, x, y }
        }

        fn elem(&self, e: usize) -> Vec<Tensor> {
            let (d, yl) = (self.ins[0][0], self.ins[1].iter().product::<usize>());
            vec![
                Tensor::from_f32(vec![d], self.x[e * d..(e + 1) * d].to_vec()).unwrap(),
                Tensor::from_f32(self.ins[1].clone(), self.y[e * yl..(e + 1) * yl].to_vec())
                    .unwrap(),
            ]
        }

        fn fields(&self) -> (FieldData, FieldData) {
            (
                FieldData::new(self.x.clone(), self.ins[0].clone()),
                FieldData::new(self.y.clone(), self.ins[1].clone()),
            )
        }
    }

    fn check(native: &[f32], interp: &[f32], src: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(native.len(), interp.len());
        for (i, (a, b)) in native.iter().zip(interp).enumerate() {
            prop_assert!(
                close(*a, *b),
                "{}: [{}] native {} interpreted {}",
                src,
                i,
                a,
                b
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn native_map_equals_the_interpreter(
            e in expr(),
            d in 1usize..9,
            lanes in 1usize..6,
            y_scalar in any::<bool>(),
            data in proptest::collection::vec(-3.0f32..3.0, 8..32),
        ) {
            let src = format!("return [{e}]");
            let c = Case::new(&src, d, y_scalar, lanes, &data);
            let mut want: Vec<f32> = Vec::new();
            let mut out_shape = Vec::new();
            for l in 0..lanes {
                let r = c.f.call(&c.env, c.elem(l), None).unwrap();
                out_shape = r[0].shape().to_vec();
                want.extend(r[0].as_f32().unwrap());
            }
            let facts = FnFacts { body: c.f.ir(), ins: &c.ins, outs: vec![out_shape], reducer: false };
            let (fx, fy) = c.fields();
            let slot = NativeSlot::default();
            let got = map(&slot, &facts, &c.env, JitMode::Always, &[&fx, &fy], lanes);
            let report = slot.report("f");
            prop_assert!(got.is_some(), "{}: {:?}", src, report.fallback);
            check(&got.unwrap()[0], &want, &src)?;
        }

        #[test]
        fn native_fold_equals_the_interpreter(
            e in expr(),
            d in 1usize..7,
            inner in 1usize..5,
            outer in 1usize..4,
            scan in any::<bool>(),
            data in proptest::collection::vec(-3.0f32..3.0, 8..32),
        ) {
            let src = format!("return [state[0] * 0.5 + torch.tanh({e})]");
            let c = Case::new(&src, d, false, inner * outer, &data);
            let init = vec![0.25f32; d];
            let mut want = Vec::new();
            let mut finals = Vec::new();
            for o in 0..outer {
                let mut st = Tensor::from_f32(vec![d], init.clone()).unwrap();
                for i in 0..inner {
                    let r = c.f.call(&c.env, c.elem(o * inner + i), Some(vec![st])).unwrap();
                    st = r.into_iter().next().unwrap();
                    want.extend(st.as_f32().unwrap());
                }
                finals.extend(st.as_f32().unwrap());
            }
            let want = if scan { want } else { finals };
            let facts = FnFacts { body: c.f.ir(), ins: &c.ins, outs: vec![vec![d]], reducer: true };
            let (fx, fy) = c.fields();
            let input = StreamData { dims: vec![inner, outer], fields: vec![fx, fy] };
            let slot = NativeSlot::default();
            let got = fold(&slot, &facts, None, &c.env, JitMode::Always, &[&init], &input, inner, outer, scan);
            prop_assert!(got.is_some(), "{}: {:?}", src, slot.report("f").fallback);
            check(&got.unwrap()[0], &want, &src)?;
        }
    }

    /// Bodies over `x = input[0]` and `y = input[1]` (both `[2h]`) with topk, scatter,
    /// max(dim), cat/stack/chunk/split, arange, size and dtype=; `true` when every output is a
    /// selection (copied values, 0/1 masks), which must agree bit for bit.
    fn select_body(h: usize, k: usize, largest: bool) -> impl Strategy<Value = (String, bool)> {
        let d = 2 * h;
        let l = if largest { "True" } else { "False" };
        prop_oneof![
            Just((format!(
                "return [torch.zeros_like(input[0]).scatter(-1, torch.topk(input[0], {k}, dim=-1, largest={l})[1], 1.0)]"
            ), true)),
            Just((format!(
                "v, i = torch.topk(input[0] * input[1], {k}, largest={l})\nreturn [v, torch.zeros_like(input[1]).scatter(0, i, input[1])]"
            ), true)),
            Just((
                "p = input[0].view(2, -1)\nidx = torch.topk(p, 1, dim=0)[1]\nreturn [(p * torch.zeros_like(p).scatter(0, idx, 1.0)).flatten()]".to_string(),
                false,
            )),
            Just((format!(
                "m, i = torch.max(input[0].view(-1, 2), dim=-1, keepdim=True)\nreturn [m.flatten(), torch.zeros_like(input[0].view(-1, 2)).scatter(1, i, 1.0).flatten(), torch.min(input[1], 0)[0], torch.topk(input[1], {k}, largest={l})[0]]"
            ), true)),
            Just((
                "x = input[0]\nd = x.size(-1)\ninv = 1.0 / 10000.0 ** (torch.arange(d, dtype=torch.float32)[::2] / d)\nang = torch.cat([input[1][0] * inv, input[1][0] * inv], dim=-1)\nx1, x2 = x.chunk(2, dim=-1)\nreturn [x * ang.cos() + torch.cat([-x2, x1], dim=-1) * ang.sin()]".to_string(),
                false,
            )),
            Just((
                "d = input[0].size(-1)\nx = input[0].view(-1, 2)\nang = (input[1][0] - 1.0) / 10000.0 ** (torch.arange(d, dtype=torch.float32)[::2] / d)\nc = ang.cos()\ns = ang.sin()\nout = torch.stack([x[:, 0] * c - x[:, 1] * s, x[:, 0] * s + x[:, 1] * c], dim=-1)\nreturn [out.flatten()]".to_string(),
                false,
            )),
            Just((format!(
                "return [input[0].to(torch.float32) * len(input[0]) + (input[0] > input[1]).to(dtype=torch.float32) + torch.ones_like(input[0], dtype=torch.float32) * input[0].numel() + torch.arange(0, {d}, 1.0), (input[0] != 0).float() + input[1].bool().float()]"
            ), false)),
            Just((format!(
                "a, b = input[0].split({h})\nreturn [torch.stack([b, a]).sum(dim=0), torch.cat((a, b, a)), torch.stack([a, b], dim=1).flatten()]"
            ), false)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn native_selection_and_shape_builtins_equal_the_interpreter(
            ((src, exact), h) in (1usize..5, any::<bool>()).prop_flat_map(|(h, largest)| {
                (1..=2 * h).prop_flat_map(move |k| select_body(h, k, largest)).prop_map(move |b| (b, h))
            }),
            lanes in 1usize..5,
            data in proptest::collection::vec(
                prop::sample::select(vec![-1.0f32, 0.0, -0.0, 0.5, 1.0, 2.0, 3.0, f32::NAN]),
                8..32,
            ),
        ) {
            let c = Case::new(&src, 2 * h, false, lanes, &data);
            let mut want: Vec<Vec<f32>> = Vec::new();
            let mut shapes = Vec::new();
            for l in 0..lanes {
                let r = c.f.call(&c.env, c.elem(l), None).unwrap();
                want.resize(r.len(), Vec::new());
                shapes = r.iter().map(|t| t.shape().to_vec()).collect();
                for (w, t) in want.iter_mut().zip(&r) {
                    w.extend(t.to_f64_vec().iter().map(|&x| x as f32));
                }
            }
            let facts = FnFacts { body: c.f.ir(), ins: &c.ins, outs: shapes, reducer: false };
            let (fx, fy) = c.fields();
            let slot = NativeSlot::default();
            let got = map(&slot, &facts, &c.env, JitMode::Always, &[&fx, &fy], lanes);
            prop_assert!(got.is_some(), "{}: {:?}", src, slot.report("f").fallback);
            for (g, w) in got.unwrap().iter().zip(&want) {
                if exact {
                    let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    prop_assert!(same && g.len() == w.len(), "{}: native {:?} interpreted {:?}", src, g, w);
                } else {
                    check(g, w, &src)?;
                }
            }
        }
    }

    #[test]
    fn auto_stays_interpreted_below_the_threshold_and_unsupported_bodies_say_why() {
        let c = Case::new("return [input[0] * input[1]]", 4, true, 3, &[1.0, 2.0, 3.0]);
        let facts = FnFacts {
            body: c.f.ir(),
            ins: &c.ins,
            outs: vec![vec![4]],
            reducer: false,
        };
        let (fx, fy) = c.fields();
        let slot = NativeSlot::default();
        assert!(map(&slot, &facts, &c.env, JitMode::Auto, &[&fx, &fy], 3).is_none());
        assert!(map(&slot, &facts, &c.env, JitMode::Never, &[&fx, &fy], 3).is_none());
        let r = slot.report("f");
        assert!(!r.compiled);
        assert_eq!(
            r.fallback.as_deref(),
            Some("below the --jit auto threshold")
        );

        let c = Case::new(
            "return [torch.sort(input[0])[0][:1]]",
            4,
            true,
            3,
            &[1.0, 2.0],
        );
        let facts = FnFacts {
            body: c.f.ir(),
            ins: &c.ins,
            outs: vec![vec![1]],
            reducer: false,
        };
        let slot = NativeSlot::default();
        assert!(map(&slot, &facts, &c.env, JitMode::Always, &[&fx, &fy], 3).is_none());
        let why = slot.report("f").fallback.unwrap();
        assert!(why.contains("sort"), "{why}");
    }
}
