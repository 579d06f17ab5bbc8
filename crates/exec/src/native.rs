//! The executor's side of the native backend (`stepforge-jit`, DESIGN §13): tiering, the
//! per-function compile cache, and the fused stream loops.
//!
//! A Map whose element function compiles runs as native calls over the stream's flat field
//! buffers (lanes = stream elements, in chunks that bound the scratch memory); an Accum/Scan
//! runs one native call per fold step over all independent folds (lanes = folds, strided
//! reads, double-buffered state). No per-element `Tensor` is built on either path.
//!
//! Tiering ([`JitMode`]): `never` interprets; `always` compiles every function the backend
//! supports; `auto` compiles when the op's estimated work (stream elements × FLOPs per
//! element, FLOPs from the builtin table's costs) reaches [`AUTO_THRESHOLD`], so
//! default-dims runs stay interpreted. A function the backend cannot compile falls back to the
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
        if mode == JitMode::Auto && (elements as u64).saturating_mul(*flops) < AUTO_THRESHOLD {
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
            (None, None) => Some("not analysed (--jit never, or never run)".to_string()),
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
        let lanes = chunk.min(count - start);
        let ins: Vec<In<'_>> = fields
            .iter()
            .map(|fd| In {
                data: &fd.data,
                offset: start * fd.elem_len(),
                lane_stride: fd.elem_len(),
            })
            .collect();
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

/// Accum (`scan == false`) or Scan over `outer` independent folds of `inner` steps natively;
/// `None` to interpret. `init` holds one element per state field.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fold(
    slot: &NativeSlot,
    f: &FnFacts<'_>,
    env: &Env,
    mode: JitMode,
    init: &[&[f32]],
    input: &StreamData,
    inner: usize,
    outer: usize,
    scan: bool,
) -> Option<Vec<Vec<f32>>> {
    let k = slot.kernel(f, env, mode, inner.saturating_mul(outer))?;
    let t = Instant::now();
    let data = data_slices(&k, env)?;
    let lens: Vec<usize> = f.outs.iter().map(|s| s.iter().product()).collect();
    if init.len() != lens.len() || init.iter().zip(&lens).any(|(i, &l)| i.len() != l) {
        return None;
    }
    let steps = if scan { inner } else { 1 };
    let mut out: Vec<Vec<f32>> = lens
        .iter()
        .map(|&l| vec![0.0; outer * steps * l])
        .collect();
    let chunk = chunk_lanes(&k, outer);
    let mut scratch = Vec::new();
    let mut o0 = 0;
    while o0 < outer {
        let lanes = chunk.min(outer - o0);
        let mut cur: Vec<Vec<f32>> = init.iter().map(|i| i.repeat(lanes)).collect();
        let mut next: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; lanes * l]).collect();
        for i in 0..inner {
            let ins: Vec<In<'_>> = input
                .fields
                .iter()
                .map(|fd| In {
                    data: &fd.data,
                    offset: (o0 * inner + i) * fd.elem_len(),
                    lane_stride: inner * fd.elem_len(),
                })
                .collect();
            let st: Vec<In<'_>> = cur
                .iter()
                .zip(&lens)
                .map(|(c, &l)| In {
                    data: c,
                    offset: 0,
                    lane_stride: l,
                })
                .collect();
            let mut outs: Vec<Out<'_>> = next
                .iter_mut()
                .zip(&lens)
                .map(|(n, &l)| Out {
                    data: n,
                    offset: 0,
                    lane_stride: l,
                })
                .collect();
            k.compiled
                .kernel
                .run(lanes, &ins, &st, &mut outs, &data, &mut scratch)
                .ok()?;
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
    Some(out)
}
