//! The functional executor: runs every op of a checked typed graph (DESIGN §4) on real data.
//!
//! Streams are [`StreamData`] values (one flat buffer per tuple field, DESIGN §3 layout), so
//! Bufferize, Streamify, Promote, Flatten and Reshape only rewrite dims, Copy shares buffers,
//! and only Map/Accum/Scan/Merge (element-function calls), Repeat/RepeatRef and Partition write
//! data. Element functions are compiled once per verification ([`Prepared`]) and called per
//! element in stream order (innermost fastest); each result is checked against the function's
//! declared output type (shape and arity) before it is used. Functions with a lane-parallel
//! form ([`crate::batch`]: elementwise bodies, conditionals, reductions and shape ops over
//! element dims, products with lane-invariant matrices) instead take a whole Map, one step of
//! all independent Accum/Scan folds, or one Merge chunk per call, with a per-element retry
//! whenever the batched call fails or returns an unexpected shape. The lane-parallel form is
//! found at a function's first call with at least two lanes.
//!
//! Every output buffer is sized and checked against [`ExecLimits`] before it is allocated, and
//! the clock is consulted every `check_every` element calls.
//!
//! The graph came from the checker, so its types hold symbolically; the executor still checks
//! the concrete dims of every stream it produces against the stream's type (an internal
//! consistency check that turns a checker bug into a runtime error, never a panic).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use stepforge_diag::codes::Code;
use stepforge_diag::{Diagnostic, Span};
use stepforge_ir::func::{Body, TaskFunctions};
use stepforge_ir::{
    Dim, DimEnv, DynDim, ElemType, Extent, FnId, FnKind, Graph, Instance, Op, OpId, OpKind,
    StreamId, StreamShape,
};
use stepforge_tensor::{Tensor, fmt_shape};

use crate::error::{ExecError, Origin};
use crate::eval::{self, Env, Function};
use crate::limits::{Clock, ExecLimits, checked_product};
use crate::stream::{FieldData, StreamData};

/// An element function ready to call: compiled body, output shapes, reducer init.
/// Fewer elements than this go through per-element calls. Measured: even 5 lanes pay for
/// the batch layout when a fold makes one call per inner step instead of one per element.
const MIN_LANES: usize = 2;

struct FnPlan {
    name: String,
    func: Function,
    /// Per output field: printable type and concrete element shape (for `check_result`).
    out: Vec<(String, Vec<usize>)>,
    /// Per output field, the element length (product of the shape).
    out_len: Vec<usize>,
    /// Reducers: the initial state, one tensor per output field (shared, never mutated).
    init: Option<Vec<Arc<Tensor>>>,
    /// The lowered body and the shapes of its input fields, for the batching pass.
    body: Arc<Body>,
    in_shapes: Vec<Vec<usize>>,
    /// The lane-parallel form of the body, when it has one: many elements go through one
    /// call ([`crate::batch`]). Analysed at the first call with enough lanes, since many
    /// functions never see one.
    batched: OnceLock<Option<Function>>,
    /// Native code for this function (`crate::native`): compiled on demand, cached here.
    native: crate::native::NativeSlot,
}

impl FnPlan {
    fn facts(&self) -> crate::native::FnFacts<'_> {
        crate::native::FnFacts {
            body: self.func.ir(),
            ins: &self.in_shapes,
            outs: self.out.iter().map(|(_, s)| s.clone()).collect(),
            reducer: self.init.is_some(),
        }
    }

    /// The stream of this function's results: one field per output, `out[k]` its data.
    fn stream(&self, dims: Vec<usize>, out: Vec<Vec<f32>>) -> StreamData {
        StreamData {
            dims,
            fields: out
                .into_iter()
                .zip(&self.out)
                .map(|(d, (_, shape))| FieldData::new(d, shape.clone()))
                .collect(),
        }
    }
}

/// Prepared element functions by name, shared by every program of one task under one `env`
/// (see [`Prepared::new_cached`]). Only successful preparations are kept.
#[derive(Default)]
pub struct PlanCache {
    plans: std::sync::Mutex<BTreeMap<String, Arc<FnPlan>>>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache").finish_non_exhaustive()
    }
}

impl PlanCache {
    fn get(&self, name: &str) -> Option<Arc<FnPlan>> {
        self.plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn insert(&self, name: &str, plan: Arc<FnPlan>) {
        self.plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), plan);
    }
}

/// A graph prepared for execution under one set of dimension values: element functions
/// compiled, their output shapes evaluated. Reused across seeds.
pub struct Prepared<'g> {
    graph: &'g Graph,
    fns: Vec<Option<Arc<FnPlan>>>,
    dims: DimEnv,
    /// Concrete shapes of the streams under these dims (`None` when some dim is only known
    /// at run time): what every produced stream is checked against without evaluating dims.
    instance: Option<Instance>,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("ops", &self.graph.op_count())
            .finish_non_exhaustive()
    }
}

fn internal(msg: impl Into<String>, span: Span) -> ExecError {
    ExecError::runtime(
        Diagnostic::new(Code::E0612, format!("internal: {}", msg.into()))
            .at(span)
            .note("the checker accepted this graph; please report the program"),
        Origin::Program,
    )
}

fn op_error(msg: impl Into<String>, span: Span) -> ExecError {
    ExecError::runtime(Diagnostic::new(Code::E0612, msg).at(span), Origin::Program)
}

fn eval_dims(dims: &[Dim], env: &DimEnv, what: &str, span: Span) -> Result<Vec<usize>, ExecError> {
    dims.iter()
        .map(|d| {
            d.eval(env)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| internal(format!("{what}: dimension {d} has no value"), span))
        })
        .collect()
}

impl<'g> Prepared<'g> {
    /// Compiles every element function the graph uses against `env` (its `global` names and
    /// dims) and evaluates their output shapes. A function body the evaluator cannot compile
    /// is a task error.
    ///
    /// `functions` are the task's lowered element functions, indexed by [`stepforge_ir::FnId`].
    pub fn new(
        graph: &'g Graph,
        functions: &TaskFunctions,
        env: &Env,
    ) -> Result<Prepared<'g>, ExecError> {
        Prepared::new_cached(graph, functions, env, &PlanCache::default())
    }

    /// [`Prepared::new`] reusing (and filling) `plans`: prepared element functions and their
    /// batching analysis depend only on the task and the dims, not on the program, so one
    /// cache serves every candidate program of a task under one `env`.
    pub fn new_cached(
        graph: &'g Graph,
        functions: &TaskFunctions,
        env: &Env,
        plans: &PlanCache,
    ) -> Result<Prepared<'g>, ExecError> {
        let dims = DimEnv::from_statics(env.dims.iter().map(|(k, v)| (k.clone(), *v)));
        let mut fns: Vec<Option<Arc<FnPlan>>> = (0..graph.fns().len()).map(|_| None).collect();
        for op in graph.ops() {
            let Some(f) = op.kind.fn_id() else { continue };
            let Some(slot) = fns.get_mut(f.index()) else {
                return Err(internal(
                    format!("{} names a missing function", op.id),
                    op.span,
                ));
            };
            if slot.is_some() {
                continue;
            }
            let sig = graph.fn_sig(f);
            let plan = match plans.get(&sig.name) {
                Some(plan) => plan,
                None => {
                    let plan = Arc::new(prepare_fn(graph, f, functions, env, &dims, op.span)?);
                    plans.insert(&sig.name, plan.clone());
                    plan
                }
            };
            // One more program runs this function: a shared plan gets hot (`native.rs`).
            plan.native.note_use();
            *slot = Some(plan);
        }
        let instance = graph.instantiate(&dims).ok();
        Ok(Prepared {
            graph,
            fns,
            dims,
            instance,
        })
    }

    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// What the native backend did with each element function of the graph (by name).
    pub fn jit_report(&self) -> Vec<crate::native::JitFnReport> {
        let mut out: Vec<_> = self
            .fns
            .iter()
            .flatten()
            .map(|p| p.native.report(&p.name))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        out
    }

    /// Runs the graph on one set of input data (one `Vec` of field buffers per task input, in
    /// task order). Returns one value per task output, in task order.
    pub fn run(
        &self,
        env: &Env,
        inputs: &[Vec<Arc<Vec<f32>>>],
        limits: &ExecLimits,
        clock: &mut Clock,
    ) -> Result<Vec<StreamData>, ExecError> {
        let g = self.graph;
        if g.op_count() > limits.max_ops {
            return Err(ExecError::limit(
                Diagnostic::new(
                    Code::E0704,
                    format!(
                        "the program has {} ops, more than the limit of {}",
                        g.op_count(),
                        limits.max_ops
                    ),
                ),
                Origin::Program,
            ));
        }
        let mut run = Run {
            p: self,
            env,
            limits,
            clock,
            dims: self.dims.clone(),
            vals: vec![None; g.streams().len()],
            remaining: g
                .streams()
                .iter()
                .map(|s| g.consumers(s.id).len())
                .collect(),
            results: vec![None; g.outputs().len()],
            fused: Vec::new(),
        };
        for &id in g.topo_order() {
            if run.fused.contains(&id) {
                continue;
            }
            let op = g.op(id);
            run.clock.check(op.span)?;
            run.step(op, inputs)?;
        }
        run.results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ok_or_else(|| internal(format!("output {i} was never produced"), Span::DUMMY))
            })
            .collect()
    }
}

/// Prepares element function `f` for `env`: its lowered body, its output shapes (sized with
/// checked arithmetic before anything is allocated) and a reducer's initial state.
fn prepare_fn(
    graph: &Graph,
    f: FnId,
    functions: &TaskFunctions,
    env: &Env,
    dims: &DimEnv,
    at: Span,
) -> Result<FnPlan, ExecError> {
    let sig = graph.fn_sig(f);
    let body = match functions.fns.get(f.index()) {
        Some(Ok(body)) => body.clone(),
        // The lowering's own diagnostic (E0602 with a did-you-mean, located in the task file).
        Some(Err(d)) => return Err(ExecError::task((**d).clone())),
        None => {
            return Err(internal(
                format!("fn `{}` has no lowered body", sig.name),
                at,
            ));
        }
    };
    let func = Function::from_ir(sig.name.clone(), body.clone(), env)
        .map_err(|e| ExecError::from_eval_task(&e))?;
    let shapes = |ty: &ElemType| -> Result<Vec<(String, Vec<usize>)>, ExecError> {
        ty.fields()
            .iter()
            .map(|field| {
                eval_dims(&field.field_tensor_dims(), dims, &sig.name, sig.span)
                    .map(|s| (field.to_string(), s))
                    .map_err(|e| ExecError::task(*e.diagnostic))
            })
            .collect()
    };
    let out = shapes(&sig.output)?;
    // Element shapes come from task dims that `--dims` may make huge: size them with checked
    // arithmetic before anything (the init state) is allocated.
    let mut out_len = Vec::with_capacity(out.len());
    for (ty, shape) in &out {
        let n = checked_product(shape)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= env.limits.max_numel);
        let Some(n) = n else {
            return Err(ExecError::limit(
                Diagnostic::new(
                    Code::E0701,
                    format!(
                        "fn `{}` returns {ty} = shape {}, more than the limit of {} elements per tensor",
                        sig.name,
                        fmt_shape(shape),
                        env.limits.max_numel
                    ),
                )
                .at(at)
                .help("use smaller dimensions (--dims) or raise the limit"),
                Origin::Program,
            ));
        };
        out_len.push(n);
    }
    let init = match &sig.kind {
        FnKind::Stateless => None,
        FnKind::Reducer { init } => Some(reducer_init(init, &out, &out_len, sig.span)?),
    };
    let in_shapes = shapes(&sig.input)?.into_iter().map(|(_, s)| s).collect();
    Ok(FnPlan {
        name: sig.name.clone(),
        func,
        out,
        out_len,
        init,
        body,
        in_shapes,
        batched: OnceLock::new(),
        native: Default::default(),
    })
}

/// A reducer's initial state: one value per output field (a single value serves every field).
fn reducer_init(
    init: &[f64],
    out: &[(String, Vec<usize>)],
    out_len: &[usize],
    span: Span,
) -> Result<Vec<Arc<Tensor>>, ExecError> {
    let mut ts = Vec::with_capacity(out.len());
    for (i, ((_, shape), &n)) in out.iter().zip(out_len).enumerate() {
        let v = init.get(i).or(init.last()).copied().unwrap_or(0.0);
        let t = Tensor::from_f32(shape.clone(), vec![v as f32; n])
            .map_err(|e| ExecError::task(Diagnostic::new(Code::E0507, e.message).at(span)))?;
        ts.push(Arc::new(t));
    }
    Ok(ts)
}

struct Run<'a, 'g> {
    p: &'a Prepared<'g>,
    env: &'a Env,
    limits: &'a ExecLimits,
    clock: &'a mut Clock,
    dims: DimEnv,
    vals: Vec<Option<StreamData>>,
    remaining: Vec<usize>,
    results: Vec<Option<StreamData>>,
    /// Ops already run, fused into the Map that feeds them.
    fused: Vec<OpId>,
}

/// Whether `kind` takes repeat views as they are (shape-only ops pass them on; Map and
/// Accum/Scan read them natively or materialise them before interpreting).
fn reads_views(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::Map { .. }
            | OpKind::Accum { .. }
            | OpKind::Scan { .. }
            | OpKind::Zip
            | OpKind::Copy
            | OpKind::Bufferize { .. }
            | OpKind::Streamify
            | OpKind::Promote { .. }
            | OpKind::Flatten { .. }
            | OpKind::Reshape { .. }
            | OpKind::Repeat { .. }
            | OpKind::RepeatRef
    )
}

/// The stream element `e` of `field` as a tensor.
#[inline]
fn elem_tensor(field: &FieldData, e: usize, span: Span) -> Result<Arc<Tensor>, ExecError> {
    let len = field.elem_len();
    let lo = e * len;
    let slice = field
        .data
        .get(lo..lo + len)
        .ok_or_else(|| internal("stream element out of range", span))?;
    let t = if field.elem_shape.is_empty() {
        Tensor::scalar_f32(slice.first().copied().unwrap_or(0.0))
    } else {
        Tensor::from_f32(field.elem_shape.clone(), slice.to_vec())
            .map_err(|e| internal(e.message, span))?
    };
    Ok(Arc::new(t))
}

/// Whether a stream value has exactly the static shape `sh` (false when `sh` has a dynamic
/// extent: the caller then evaluates the dims it was bound to at run time).
fn static_shape_matches(sh: &StreamShape, v: &StreamData) -> bool {
    let same = |ext: &[Extent], got: &[usize]| {
        ext.len() == got.len() && ext.iter().zip(got).all(|(e, g)| e.get() == Some(*g))
    };
    same(&sh.dims, &v.dims)
        && sh.fields.len() == v.fields.len()
        && sh.fields.iter().zip(&v.fields).all(|(ext, f)| {
            same(ext, &f.elem_shape)
                && checked_product(&v.dims)
                    .zip(checked_product(&f.elem_shape))
                    .and_then(|(a, b)| a.checked_mul(b))
                    == Some(f.len())
        })
}

/// Element `e` of every field: the arguments of one per-element call.
fn elem_args<'f>(
    fields: impl ExactSizeIterator<Item = &'f FieldData>,
    e: usize,
    span: Span,
) -> Result<Vec<Arc<Tensor>>, ExecError> {
    let mut args = Vec::with_capacity(fields.len());
    for fd in fields {
        args.push(elem_tensor(fd, e, span)?);
    }
    Ok(args)
}

fn append<T: std::borrow::Borrow<Tensor>>(out: &mut [Vec<f32>], res: &[T]) {
    for (o, t) in out.iter_mut().zip(res) {
        let t = t.borrow();
        match t.as_f32() {
            Some(d) => o.extend_from_slice(d),
            None => o.extend(t.to_f32_vec()),
        }
    }
}

impl<'g> Run<'_, 'g> {
    fn take(&mut self, s: StreamId, span: Span) -> Result<StreamData, ExecError> {
        let i = s.index();
        let left = self
            .remaining
            .get_mut(i)
            .ok_or_else(|| internal(format!("{s} does not exist"), span))?;
        *left = left.saturating_sub(1);
        let last = *left == 0;
        let slot = self
            .vals
            .get_mut(i)
            .ok_or_else(|| internal(format!("{s} does not exist"), span))?;
        let v = if last { slot.take() } else { slot.clone() };
        v.ok_or_else(|| internal(format!("{s} is read before it is produced"), span))
    }

    /// Bytes of stream data alive now (shared buffers counted once), plus `extra`.
    fn live_bytes(&self, held: &[StreamData]) -> u64 {
        let mut ptrs: Vec<(usize, u64)> = self
            .vals
            .iter()
            .flatten()
            .chain(held)
            .chain(self.results.iter().flatten())
            .flat_map(|s| s.fields.iter())
            .map(|f| (Arc::as_ptr(&f.data) as usize, (f.data.len() as u64) * 4))
            .collect();
        ptrs.sort_unstable();
        ptrs.dedup_by_key(|p| p.0);
        ptrs.iter().map(|p| p.1).sum()
    }

    /// Checks that a new buffer of `elems` f32 values may be allocated.
    fn reserve(
        &self,
        elems: Option<u64>,
        held: &[StreamData],
        span: Span,
        what: &str,
    ) -> Result<usize, ExecError> {
        let limit = self.limits.max_tensor_elements;
        let Some(n) = elems.filter(|&n| n <= limit) else {
            let found = elems.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            return Err(ExecError::limit(
                Diagnostic::new(
                    Code::E0701,
                    format!("{what} would hold {found} elements, more than the limit of {limit}"),
                )
                .at(span)
                .help("use smaller dimensions (--dims) or raise the limit"),
                Origin::Program,
            ));
        };
        let live = self.live_bytes(held);
        let bytes = n.saturating_mul(4);
        if live.saturating_add(bytes) > self.limits.max_live_bytes {
            return Err(ExecError::limit(
                Diagnostic::new(
                    Code::E0703,
                    format!(
                        "{what} needs {bytes} bytes with {live} bytes of streams alive, more than the limit of {}",
                        self.limits.max_live_bytes
                    ),
                )
                .at(span)
                .help("use smaller dimensions (--dims) or raise the limit"),
                Origin::Program,
            ));
        }
        usize::try_from(n).map_err(|_| internal("size overflow", span))
    }

    fn step(&mut self, op: &Op, inputs: &[Vec<Arc<Vec<f32>>>]) -> Result<(), ExecError> {
        let span = op.span;
        let graph = self.p.graph;
        let mut ins = Vec::with_capacity(graph.inputs_of(op.id).len());
        for &s in graph.inputs_of(op.id) {
            let v = self.take(s, span)?;
            ins.push(if reads_views(&op.kind) {
                v
            } else {
                self.materialise(v, span)?
            });
        }
        let outs: Vec<StreamData> = match &op.kind {
            OpKind::Input { index, name } => {
                let data = inputs
                    .get(*index)
                    .ok_or_else(|| internal(format!("no data for input `{name}`"), span))?;
                vec![self.input(op, data)?]
            }
            OpKind::Output { index, .. } => {
                let v = ins
                    .pop()
                    .ok_or_else(|| internal("output without a stream", span))?;
                let slot = self
                    .results
                    .get_mut(*index)
                    .ok_or_else(|| internal("output index out of range", span))?;
                *slot = Some(v);
                Vec::new()
            }
            OpKind::Map { f } => {
                if let Some((fold_op, v)) = self.map_fold(op, *f, &ins)? {
                    // the Map's stream was never built; its reader is done too
                    for &sid in graph.outputs_of(op.id) {
                        if let Some(r) = self.remaining.get_mut(sid.index()) {
                            *r = 0;
                        }
                    }
                    self.fused.push(fold_op.id);
                    return self.store(fold_op, vec![v]);
                }
                vec![self.map(*f, &ins, span)?]
            }
            OpKind::Accum { f, b } => vec![self.fold(*f, *b, false, one(ins, span)?, span)?],
            OpKind::Scan { f, b } => vec![self.fold(*f, *b, true, one(ins, span)?, span)?],
            OpKind::Zip => {
                let mut it = ins.into_iter();
                let (Some(mut a), Some(b)) = (it.next(), it.next()) else {
                    return Err(internal("Zip needs two streams", span));
                };
                if a.dims != b.dims {
                    return Err(internal(
                        format!("Zip of streams with dims {:?} and {:?}", a.dims, b.dims),
                        span,
                    ));
                }
                a.fields.extend(b.fields);
                vec![a]
            }
            OpKind::Copy => {
                let a = one(ins, span)?;
                vec![a.clone(), a]
            }
            OpKind::Bufferize { a } => {
                let mut s = one(ins, span)?;
                if *a == 0 || *a >= s.dims.len() {
                    return Err(internal(
                        format!(
                            "Bufferize(a={a}) of rank {}",
                            s.dims.len().saturating_sub(1)
                        ),
                        span,
                    ));
                }
                let inner: Vec<usize> = s.dims.drain(..*a).rev().collect();
                for f in &mut s.fields {
                    let mut shape = inner.clone();
                    shape.extend_from_slice(&f.elem_shape);
                    f.elem_shape = shape;
                }
                vec![s]
            }
            OpKind::Streamify => {
                let nb = match graph
                    .inputs_of(op.id)
                    .first()
                    .map(|&s| &self.p.graph.stream(s).ty.elem)
                {
                    Some(ElemType::Buffer { dims, .. }) => dims.len(),
                    _ => return Err(internal("Streamify of a non-buffer stream", span)),
                };
                let mut s = one(ins, span)?;
                let Some(f) = s.fields.first_mut().filter(|f| f.elem_shape.len() >= nb) else {
                    return Err(internal("Streamify: buffer rank mismatch", span));
                };
                let b: Vec<usize> = f.elem_shape.drain(..nb).rev().collect();
                let mut dims = b;
                dims.extend_from_slice(&s.dims);
                s.dims = dims;
                vec![s]
            }
            OpKind::Promote { b } => {
                let mut s = one(ins, span)?;
                if *b > s.dims.len() {
                    return Err(internal(format!("Promote(b={b}) out of range"), span));
                }
                s.dims.insert(*b, 1);
                vec![s]
            }
            OpKind::Flatten { dims } => {
                let mut s = one(ins, span)?;
                let (Some(&first), Some(&last)) = (dims.first(), dims.last()) else {
                    return Err(internal("Flatten with no dims", span));
                };
                if first == 0 || last >= s.dims.len() || first > last {
                    return Err(internal(format!("Flatten(L={dims:?}) out of range"), span));
                }
                let merged: usize = s.dims[first - 1..=last].iter().product();
                s.dims.splice(first - 1..=last, [merged]);
                vec![s]
            }
            OpKind::Reshape { dims, chunk } => {
                let mut s = one(ins, span)?;
                let c = chunk
                    .eval(&self.dims)
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&c| c > 0)
                    .ok_or_else(|| {
                        op_error(
                            format!("Reshape: chunk size {chunk} has no positive value"),
                            span,
                        )
                    })?;
                let mut sorted = dims.clone();
                sorted.sort_unstable();
                sorted.dedup();
                for &i in sorted.iter().rev() {
                    let Some(&d) = s.dims.get(i) else {
                        return Err(internal(format!("Reshape(L={dims:?}) out of range"), span));
                    };
                    if d % c != 0 {
                        return Err(op_error(
                            format!("Reshape(S={c}): dim {i} has size {d}, not divisible by {c}"),
                            span,
                        ));
                    }
                    s.dims.splice(i..=i, [c, d / c]);
                }
                vec![s]
            }
            OpKind::Repeat { n } => {
                let n = n
                    .eval(&self.dims)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| op_error(format!("Repeat: n = {n} has no value"), span))?;
                let s = one(ins, span)?;
                let mut dims = vec![n];
                dims.extend_from_slice(&s.dims);
                vec![self.repeat(s, n, dims, span)?]
            }
            OpKind::RepeatRef => {
                let mut it = ins.into_iter();
                let (Some(data), Some(rf)) = (it.next(), it.next()) else {
                    return Err(internal("RepeatRef needs (data, ref)", span));
                };
                if rf.dims.len() != data.dims.len() + 1 || rf.dims[1..] != data.dims[..] {
                    return Err(internal(
                        format!(
                            "RepeatRef: ref dims {:?} vs data dims {:?}",
                            rf.dims, data.dims
                        ),
                        span,
                    ));
                }
                let n = rf.dims[0];
                let dims = rf.dims.clone();
                drop(rf);
                vec![self.repeat(data, n, dims, span)?]
            }
            OpKind::Partition { n, sel_dims } => self.partition(op, *n, *sel_dims, ins)?,
            OpKind::Merge { f, n } => vec![self.merge(*f, *n, ins, span)?],
        };
        self.store(op, outs)
    }

    /// Keeps the streams `op` produced for their readers (after checking their types).
    fn store(&mut self, op: &Op, outs: Vec<StreamData>) -> Result<(), ExecError> {
        let span = op.span;
        let op_outputs = self.p.graph.outputs_of(op.id);
        if outs.len() != op_outputs.len() {
            return Err(internal(
                format!(
                    "{} produced {} streams, expected {}",
                    op.kind.name(),
                    outs.len(),
                    op_outputs.len()
                ),
                span,
            ));
        }
        for (&sid, v) in op_outputs.iter().zip(outs) {
            self.check_type(sid, &v, span)?;
            if let Some(slot) = self.vals.get_mut(sid.index()) {
                // A stream nobody reads is dropped at once.
                if self.remaining.get(sid.index()).copied().unwrap_or(0) > 0 {
                    *slot = Some(v);
                }
            }
        }
        Ok(())
    }

    /// The concrete dims of a produced value must be its type's dims under the run's values.
    fn check_type(&self, sid: StreamId, v: &StreamData, span: Span) -> Result<(), ExecError> {
        if let Some(sh) = self.p.instance.as_ref().and_then(|i| i.stream(sid))
            && static_shape_matches(sh, v)
        {
            return Ok(());
        }
        let st = &self.p.graph.stream(sid).ty;
        let dims = eval_dims(&st.dims, &self.dims, "stream", span)?;
        let fields = st.elem.fields();
        let ok = dims == v.dims
            && fields.len() == v.fields.len()
            && fields.iter().zip(&v.fields).all(|(t, f)| {
                eval_dims(&t.field_tensor_dims(), &self.dims, "", span)
                    .is_ok_and(|s| s == f.elem_shape)
                    && checked_product(&v.dims)
                        .zip(checked_product(&f.elem_shape))
                        .and_then(|(a, b)| a.checked_mul(b))
                        == Some(f.len())
            });
        if ok {
            Ok(())
        } else {
            Err(internal(
                format!(
                    "stream {sid} of type {st} has dims {:?} and element shapes {:?} at run time",
                    v.dims,
                    v.fields
                        .iter()
                        .map(|f| fmt_shape(&f.elem_shape))
                        .collect::<Vec<_>>()
                ),
                span,
            ))
        }
    }

    fn input(&self, op: &Op, data: &[Arc<Vec<f32>>]) -> Result<StreamData, ExecError> {
        let span = op.span;
        let sid = *self
            .p
            .graph
            .outputs_of(op.id)
            .first()
            .ok_or_else(|| internal("input without a stream", span))?;
        let st = &self.p.graph.stream(sid).ty;
        let dims = eval_dims(&st.dims, &self.dims, "input", span)?;
        let fields = st.elem.fields();
        if fields.len() != data.len() {
            return Err(internal("input data has the wrong number of fields", span));
        }
        let mut out = Vec::with_capacity(fields.len());
        for (t, d) in fields.iter().zip(data) {
            let elem_shape = eval_dims(&t.field_tensor_dims(), &self.dims, "input", span)?;
            out.push(FieldData {
                data: Arc::clone(d),
                elem_shape,
                reps: Vec::new(),
            });
        }
        Ok(StreamData { dims, fields: out })
    }

    fn alloc_outputs(
        &self,
        plan: &FnPlan,
        count: usize,
        held: &[StreamData],
        span: Span,
    ) -> Result<Vec<Vec<f32>>, ExecError> {
        let mut total = 0usize;
        let mut caps = Vec::with_capacity(plan.out_len.len());
        for &len in &plan.out_len {
            let n = (count as u64).checked_mul(len as u64);
            let n = self.reserve(n, held, span, &format!("the result of fn `{}`", plan.name))?;
            total = total.saturating_add(n);
            caps.push(n);
        }
        self.reserve(
            Some(total as u64),
            held,
            span,
            &format!("the results of fn `{}`", plan.name),
        )?;
        Ok(caps.into_iter().map(Vec::with_capacity).collect())
    }

    fn call(
        &mut self,
        plan: &FnPlan,
        inputs: Vec<Arc<Tensor>>,
        state: Option<Vec<Arc<Tensor>>>,
        span: Span,
    ) -> Result<Vec<Tensor>, ExecError> {
        self.clock.tick(span)?;
        let res = plan
            .func
            .call_shared(self.env, inputs, state)
            .map_err(|e| ExecError::from_eval(&e, span))?;
        eval::check_result(&plan.name, span, &res, &plan.out)
            .map_err(|e| ExecError::runtime(e.to_diagnostic(), Origin::Program))?;
        Ok(res)
    }

    /// Calls an elementwise function once on a batch whose lanes are the *last* axis (see
    /// [`crate::batch`]); `None` (fall back to per-element calls) when the evaluator fails or a
    /// result does not have the shape `(..field, lanes)`.
    fn call_batched(
        &mut self,
        plan: &FnPlan,
        args: Vec<Arc<Tensor>>,
        state: Option<Vec<Arc<Tensor>>>,
        lanes: usize,
        span: Span,
    ) -> Result<Option<Vec<Tensor>>, ExecError> {
        self.clock.tick(span)?;
        let Some(func) = self.batched_fn(plan) else {
            return Ok(None);
        };
        let Ok(res) = func.call_shared(self.env, args, state) else {
            return Ok(None);
        };
        if res.len() != plan.out.len() {
            return Ok(None);
        }
        for (t, (_, shape)) in res.iter().zip(&plan.out) {
            let ts = t.shape();
            if ts.last() != Some(&lanes) || ts[..ts.len() - 1] != shape[..] || t.as_f32().is_none()
            {
                return Ok(None);
            }
        }
        Ok(Some(res))
    }

    /// The plan's batched function, analysed and compiled at its first use.
    fn batched_fn<'p>(&self, plan: &'p FnPlan) -> Option<&'p Function> {
        plan.batched
            .get_or_init(|| {
                let out: Vec<Vec<usize>> = plan.out.iter().map(|(_, s)| s.clone()).collect();
                crate::batch::batched_body(
                    &plan.body,
                    self.env,
                    &plan.in_shapes,
                    plan.init.is_some().then_some(&out[..]),
                    &out,
                )
                .and_then(|b| b.prepare(plan.name.clone(), self.env).ok())
            })
            .as_ref()
    }

    fn map_batched(
        &mut self,
        plan: &FnPlan,
        fields: &[&FieldData],
        count: usize,
        span: Span,
    ) -> Result<Option<Vec<Vec<f32>>>, ExecError> {
        let mut args = Vec::with_capacity(fields.len());
        for f in fields {
            match lanes_last(&f.data, count, &f.elem_shape) {
                Some(t) => args.push(Arc::new(t)),
                None => return Ok(None),
            }
        }
        let Some(res) = self.call_batched(plan, args, None, count, span)? else {
            return Ok(None);
        };
        Ok(Some(
            res.iter()
                .zip(&plan.out_len)
                .map(|(t, &len)| rows_of(t.as_f32().unwrap_or(&[]), count, len))
                .collect(),
        ))
    }

    /// Accum/Scan with the `outer` independent folds as lanes of one batch: `inner` calls.
    #[allow(clippy::too_many_arguments)]
    fn fold_batched(
        &mut self,
        plan: &FnPlan,
        init: &[Arc<Tensor>],
        input: &StreamData,
        inner: usize,
        outer: usize,
        scan: bool,
        span: Span,
    ) -> Result<Option<Vec<Vec<f32>>>, ExecError> {
        let Some(mut state) = batch_init(init, outer) else {
            return Ok(None);
        };
        let mut out: Vec<Vec<f32>> = if scan {
            plan.out_len
                .iter()
                .map(|&l| vec![0.0; outer * inner * l])
                .collect()
        } else {
            Vec::new()
        };
        for i in 0..inner {
            let mut args = Vec::with_capacity(input.fields.len());
            for f in &input.fields {
                let len = f.elem_len();
                // lane o of step i is stream element o*inner + i; lanes are the last axis
                let mut d = vec![0.0f32; outer * len];
                for o in 0..outer {
                    let e = o * inner + i;
                    let Some(x) = f.data.get(e * len..(e + 1) * len) else {
                        return Err(internal("stream element out of range", span));
                    };
                    for (l, &v) in x.iter().enumerate() {
                        d[l * outer + o] = v;
                    }
                }
                let mut shape = f.elem_shape.clone();
                shape.push(outer);
                match Tensor::from_f32(shape, d) {
                    Ok(t) => args.push(Arc::new(t)),
                    Err(_) => return Ok(None),
                }
            }
            let Some(res) = self.call_batched(plan, args, Some(state), outer, span)? else {
                return Ok(None);
            };
            if scan {
                for ((dst, t), &len) in out.iter_mut().zip(&res).zip(&plan.out_len) {
                    let src = t.as_f32().unwrap_or(&[]);
                    for o in 0..outer {
                        let e = o * inner + i;
                        for l in 0..len {
                            if let (Some(d), Some(&x)) =
                                (dst.get_mut(e * len + l), src.get(l * outer + o))
                            {
                                *d = x;
                            }
                        }
                    }
                }
            }
            state = res.into_iter().map(Arc::new).collect();
        }
        if !scan {
            out = state
                .iter()
                .zip(&plan.out_len)
                .map(|(t, &len)| rows_of(t.as_f32().unwrap_or(&[]), outer, len))
                .collect();
        }
        Ok(Some(out))
    }

    /// One Merge selector element with the `c` chunk positions as lanes.
    #[allow(clippy::too_many_arguments)]
    fn merge_batched(
        &mut self,
        plan: &FnPlan,
        init: &[Arc<Tensor>],
        branches: &[StreamData],
        chosen: &[usize],
        cursor: &[usize],
        c: usize,
        span: Span,
    ) -> Result<Option<Vec<Vec<f32>>>, ExecError> {
        let Some(mut state) = batch_init(init, c) else {
            return Ok(None);
        };
        for &i in chosen {
            let (Some(br), Some(&at)) = (branches.get(i), cursor.get(i)) else {
                return Ok(None);
            };
            let mut args = Vec::with_capacity(br.fields.len());
            for f in &br.fields {
                let w = c * f.elem_len();
                let Some(x) = f.data.get(at * w..(at + 1) * w) else {
                    return Err(internal("Merge chunk out of range", span));
                };
                match lanes_last(x, c, &f.elem_shape) {
                    Some(t) => args.push(Arc::new(t)),
                    None => return Ok(None),
                }
            }
            let Some(res) = self.call_batched(plan, args, Some(state), c, span)? else {
                return Ok(None);
            };
            state = res.into_iter().map(Arc::new).collect();
        }
        Ok(Some(
            state
                .iter()
                .zip(&plan.out_len)
                .map(|(t, &len)| rows_of(t.as_f32().unwrap_or(&[]), c, len))
                .collect(),
        ))
    }

    fn map(&mut self, f: FnId, ins: &[StreamData], span: Span) -> Result<StreamData, ExecError> {
        let plan = plan_of(self.p, f, span)?;
        let first = ins
            .first()
            .ok_or_else(|| internal("Map without input", span))?;
        if ins.iter().any(|s| s.dims != first.dims) {
            return Err(internal("Map over streams of different dims", span));
        }
        let dims = first.dims.clone();
        let count = first.count();
        let fields: Vec<&FieldData> = ins.iter().flat_map(|s| s.fields.iter()).collect();
        let mut out = self.alloc_outputs(plan, count, ins, span)?;
        let t0 = std::time::Instant::now();
        if let Some(res) = crate::native::map(
            &plan.native,
            &plan.facts(),
            self.env,
            self.limits.jit,
            &fields,
            count,
        ) {
            return Ok(plan.stream(dims, res));
        }
        let mut flat = Vec::with_capacity(ins.len());
        for s in ins {
            flat.push(self.materialise(s.clone(), span)?);
        }
        let fields: Vec<&FieldData> = flat.iter().flat_map(|s| s.fields.iter()).collect();
        let batched = match count >= MIN_LANES && self.batched_fn(plan).is_some() {
            true => self.map_batched(plan, &fields, count, span)?,
            false => None,
        };
        match batched {
            Some(res) => out = res,
            None => {
                for e in 0..count {
                    let args = elem_args(fields.iter().copied(), e, span)?;
                    let res = self.call(plan, args, None, span)?;
                    append(&mut out, &res);
                }
            }
        }
        plan.native.record_interp(t0);
        Ok(plan.stream(dims, out))
    }

    /// A Map whose only reader is an Accum/Scan (reading nothing else), run natively as
    /// one loop with it: each fold step maps just the elements it folds, so the Map's stream
    /// is never built. `None` when that does not apply or either function stays
    /// interpreted; the ops then run one by one.
    fn map_fold(
        &mut self,
        op: &Op,
        f: FnId,
        ins: &[StreamData],
    ) -> Result<Option<(&'g Op, StreamData)>, ExecError> {
        let graph = self.p.graph;
        if self.limits.jit == crate::native::JitMode::Never {
            return Ok(None);
        }
        let [sid] = graph.outputs_of(op.id) else {
            return Ok(None);
        };
        let [reader] = graph.consumers(*sid) else {
            return Ok(None);
        };
        let fold_op = graph.op(reader.op);
        let (g, b, scan) = match &fold_op.kind {
            OpKind::Accum { f, b } => (*f, *b, false),
            OpKind::Scan { f, b } => (*f, *b, true),
            _ => return Ok(None),
        };
        let Some(first) = ins.first() else {
            return Ok(None);
        };
        if graph.inputs_of(reader.op) != [*sid]
            || b == 0
            || b >= first.dims.len()
            || ins.iter().any(|s| s.dims != first.dims)
        {
            return Ok(None);
        }
        let mplan = plan_of(self.p, f, op.span)?;
        let plan = plan_of(self.p, g, fold_op.span)?;
        let Some(init) = plan.init.as_ref() else {
            return Ok(None);
        };
        let Some(init_data) = init.iter().map(|t| t.as_f32()).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let inner: usize = first.dims[..b].iter().product();
        let outer: usize = first.dims[b..].iter().product();
        let (dims, count) = if scan {
            (first.dims.clone(), first.count())
        } else {
            (first.dims[b..].to_vec(), outer)
        };
        self.alloc_outputs(plan, count, ins, fold_op.span)?;
        let input = StreamData {
            dims: first.dims.clone(),
            fields: ins.iter().flat_map(|s| s.fields.iter().cloned()).collect(),
        };
        let pre = crate::native::PreMap {
            slot: &mplan.native,
            facts: mplan.facts(),
        };
        let res = crate::native::fold(
            &plan.native,
            &plan.facts(),
            Some(&pre),
            self.env,
            self.limits.jit,
            &init_data,
            &input,
            inner,
            outer,
            scan,
        );
        Ok(res.map(|r| (fold_op, plan.stream(dims, r))))
    }

    fn fold(
        &mut self,
        f: FnId,
        b: usize,
        scan: bool,
        input: StreamData,
        span: Span,
    ) -> Result<StreamData, ExecError> {
        let plan = plan_of(self.p, f, span)?;
        let init = plan
            .init
            .as_ref()
            .ok_or_else(|| internal(format!("fn `{}` is not a reducer", plan.name), span))?;
        if b == 0 || b >= input.dims.len() {
            return Err(internal(
                format!("b={b} out of range for dims {:?}", input.dims),
                span,
            ));
        }
        let inner: usize = input.dims[..b].iter().product();
        let outer: usize = input.dims[b..].iter().product();
        let (dims, count) = if scan {
            (input.dims.clone(), input.count())
        } else {
            (input.dims[b..].to_vec(), outer)
        };
        let held = std::slice::from_ref(&input);
        let mut out = self.alloc_outputs(plan, count, held, span)?;
        let t0 = std::time::Instant::now();
        let init_data: Option<Vec<&[f32]>> = init.iter().map(|t| t.as_f32()).collect();
        if let Some(init_data) = init_data
            && let Some(res) = crate::native::fold(
                &plan.native,
                &plan.facts(),
                None,
                self.env,
                self.limits.jit,
                &init_data,
                &input,
                inner,
                outer,
                scan,
            )
        {
            return Ok(plan.stream(dims, res));
        }
        let input = self.materialise(input, span)?;
        if outer >= MIN_LANES
            && self.batched_fn(plan).is_some()
            && let Some(res) = self.fold_batched(plan, init, &input, inner, outer, scan, span)?
        {
            out = res;
            plan.native.record_interp(t0);
            return Ok(plan.stream(dims, out));
        }
        for o in 0..outer {
            let mut state: Vec<Arc<Tensor>> = init.clone();
            for i in 0..inner {
                let args = elem_args(input.fields.iter(), o * inner + i, span)?;
                let res = self.call(plan, args, Some(state), span)?;
                if scan {
                    append(&mut out, &res);
                }
                state = res.into_iter().map(Arc::new).collect();
            }
            if !scan {
                append(&mut out, &state);
            }
        }
        plan.native.record_interp(t0);
        Ok(plan.stream(dims, out))
    }

    /// Repeats every element of `s` `n` times in a row; the result has `dims`. The result is
    /// a view of `s`'s buffers (no copy): its size is checked against the tensor limit here
    /// and against the live-bytes limit where a consumer materialises it.
    fn repeat(
        &mut self,
        s: StreamData,
        n: usize,
        dims: Vec<usize>,
        span: Span,
    ) -> Result<StreamData, ExecError> {
        let mut fields = Vec::with_capacity(s.fields.len());
        for f in s.fields {
            let total = f.len().checked_mul(n as u64);
            if total.is_none_or(|t| t > self.limits.max_tensor_elements) {
                // the same diagnostic as an allocation of that size
                self.reserve(total, &[], span, "the repeated stream")?;
            }
            let len = f.elem_len();
            fields.push(f.repeated(len, n));
        }
        Ok(StreamData { dims, fields })
    }

    /// `s` without views: what every consumer but the shape-only ops and the native loops
    /// reads. A materialised view is a new buffer, so it is checked against the limits.
    fn materialise(&mut self, s: StreamData, span: Span) -> Result<StreamData, ExecError> {
        if s.fields.iter().all(|f| f.reps.is_empty()) {
            return Ok(s);
        }
        let held = std::slice::from_ref(&s);
        let mut fields = Vec::with_capacity(s.fields.len());
        for f in &s.fields {
            if !f.reps.is_empty() {
                self.reserve(Some(f.len()), held, span, "the repeated stream")?;
                self.clock.check(span)?;
            }
            fields.push(f.materialised());
        }
        Ok(StreamData {
            dims: s.dims,
            fields,
        })
    }

    /// The set bits of selector element `j` (a nonzero entry is a set bit).
    fn bits(sel: &FieldData, j: usize, span: Span) -> Result<&[f32], ExecError> {
        let x = sel.elem_len();
        sel.data
            .get(j * x..(j + 1) * x)
            .ok_or_else(|| internal("selector element out of range", span))
    }

    fn partition(
        &mut self,
        op: &Op,
        n: usize,
        sel_dims: usize,
        ins: Vec<StreamData>,
    ) -> Result<Vec<StreamData>, ExecError> {
        let span = op.span;
        let mut it = ins.into_iter();
        let (Some(data), Some(sel)) = (it.next(), it.next()) else {
            return Err(internal("Partition needs (data, sel)", span));
        };
        let sf = sel
            .fields
            .first()
            .ok_or_else(|| internal("selector without data", span))?;
        let r1 = data.dims.len();
        if sel_dims == 0
            || sel_dims > r1
            || sel.dims.len() != sel_dims
            || data.dims[r1 - sel_dims..] != sel.dims[..]
        {
            return Err(internal(
                format!(
                    "Partition: data dims {:?}, selector dims {:?}",
                    data.dims, sel.dims
                ),
                span,
            ));
        }
        if sf.elem_len() != n {
            return Err(internal(
                format!("Partition(N={n}) with a selector of {} bits", sf.elem_len()),
                span,
            ));
        }
        let chunk_dims = data.dims[..r1 - sel_dims].to_vec();
        let c: usize = chunk_dims.iter().product();
        let chunks = sel.count();
        let mut counts = vec![0usize; n];
        for j in 0..chunks {
            for (i, &b) in Self::bits(sf, j, span)?.iter().enumerate() {
                if b != 0.0 {
                    counts[i] += 1;
                }
            }
        }
        let held = std::slice::from_ref(&data);
        let mut outs: Vec<Vec<Vec<f32>>> = Vec::with_capacity(n);
        for &k in &counts {
            let mut fs = Vec::with_capacity(data.fields.len());
            for f in &data.fields {
                let total = (k as u64)
                    .checked_mul(c as u64)
                    .and_then(|x| x.checked_mul(f.elem_len() as u64));
                let cap = self.reserve(total, held, span, "a Partition branch")?;
                fs.push(Vec::with_capacity(cap));
            }
            outs.push(fs);
        }
        for j in 0..chunks {
            self.clock.tick(span)?;
            let bits = Self::bits(sf, j, span)?;
            for (i, &b) in bits.iter().enumerate() {
                if b == 0.0 {
                    continue;
                }
                for (k, f) in data.fields.iter().enumerate() {
                    let w = c * f.elem_len();
                    let chunk = f
                        .data
                        .get(j * w..(j + 1) * w)
                        .ok_or_else(|| internal("Partition chunk out of range", span))?;
                    if let Some(dst) = outs.get_mut(i).and_then(|o| o.get_mut(k)) {
                        dst.extend_from_slice(chunk);
                    }
                }
            }
        }
        let mut result = Vec::with_capacity(n);
        for (i, (fs, &k)) in outs.into_iter().zip(&counts).enumerate() {
            let branch = u32::try_from(i).unwrap_or(u32::MAX);
            self.dims
                .set_dynamic(DynDim { op: op.id, branch }, k as i64);
            let mut dims = chunk_dims.clone();
            dims.push(k);
            result.push(StreamData {
                dims,
                fields: fs
                    .into_iter()
                    .zip(&data.fields)
                    .map(|(d, f)| FieldData::new(d, f.elem_shape.clone()))
                    .collect(),
            });
        }
        Ok(result)
    }

    fn merge(
        &mut self,
        f: FnId,
        n: usize,
        ins: Vec<StreamData>,
        span: Span,
    ) -> Result<StreamData, ExecError> {
        let plan = plan_of(self.p, f, span)?;
        let init = plan
            .init
            .as_ref()
            .ok_or_else(|| internal(format!("fn `{}` is not a reducer", plan.name), span))?;
        if ins.len() != n + 1 {
            return Err(internal(
                format!("Merge(n={n}) with {} operands", ins.len()),
                span,
            ));
        }
        let (branches, sel) = ins.split_at(n);
        let sel = sel
            .first()
            .ok_or_else(|| internal("Merge without selector", span))?;
        let sf = sel
            .fields
            .first()
            .ok_or_else(|| internal("selector without data", span))?;
        if sf.elem_len() != n {
            return Err(internal(
                format!("Merge(n={n}) with a selector of {} bits", sf.elem_len()),
                span,
            ));
        }
        // Every branch is chunk dims + [P_i]; the chunk dims agree across branches.
        let chunk_dims: Vec<usize> = match branches.first() {
            Some(b0) => b0.dims[..b0.dims.len().saturating_sub(1)].to_vec(),
            None => Vec::new(),
        };
        for b in branches {
            if b.dims.len() != chunk_dims.len() + 1 || b.dims[..chunk_dims.len()] != chunk_dims[..]
            {
                return Err(internal(
                    format!("Merge branches with dims {:?} and {chunk_dims:?}", b.dims),
                    span,
                ));
            }
        }
        let c: usize = chunk_dims.iter().product();
        let chunks = sel.count();
        let mut dims = chunk_dims.clone();
        dims.extend_from_slice(&sel.dims);
        let count = c
            .checked_mul(chunks)
            .ok_or_else(|| internal("size overflow", span))?;
        let mut out = self.alloc_outputs(plan, count, &ins, span)?;
        if let Some(res) = self.merge_native(plan, init, branches, sf, chunks, c) {
            return Ok(plan.stream(dims, res));
        }
        let t0 = std::time::Instant::now();
        let mut cursor = vec![0usize; n];
        let mut chosen: Vec<usize> = Vec::with_capacity(n);
        for j in 0..chunks {
            chosen.clear();
            for (i, &b) in Self::bits(sf, j, span)?.iter().enumerate() {
                if b != 0.0 {
                    chosen.push(i);
                }
            }
            for &i in &chosen {
                let have = branches
                    .get(i)
                    .map_or(0, |b| b.dims.last().copied().unwrap_or(0));
                if cursor[i] >= have {
                    return Err(op_error(
                        format!(
                            "Merge: selector element {j} picks branch {i}, but that branch has only {have} chunk{}",
                            if have == 1 { "" } else { "s" }
                        ),
                        span,
                    )
                    .map_diag(|d| d.help("the Merge selector must route exactly the chunks its Partition produced")));
                }
            }
            if c >= MIN_LANES
                && self.batched_fn(plan).is_some()
                && !chosen.is_empty()
                && let Some(res) =
                    self.merge_batched(plan, init, branches, &chosen, &cursor, c, span)?
            {
                for (o, r) in out.iter_mut().zip(res) {
                    o.extend_from_slice(&r);
                }
                for &i in &chosen {
                    cursor[i] += 1;
                }
                continue;
            }
            for pos in 0..c {
                if chosen.is_empty() {
                    self.clock.tick(span)?;
                    for (o, &len) in out.iter_mut().zip(&plan.out_len) {
                        o.extend(std::iter::repeat_n(0.0, len));
                    }
                    continue;
                }
                let mut state: Vec<Arc<Tensor>> = init.clone();
                for &i in &chosen {
                    let Some(br) = branches.get(i) else { continue };
                    let args = elem_args(br.fields.iter(), cursor[i] * c + pos, span)?;
                    let res = self.call(plan, args, Some(state), span)?;
                    state = res.into_iter().map(Arc::new).collect();
                }
                append(&mut out, &state);
            }
            for &i in &chosen {
                cursor[i] += 1;
            }
        }
        for (i, b) in branches.iter().enumerate() {
            let have = b.dims.last().copied().unwrap_or(0);
            if cursor[i] != have {
                return Err(op_error(
                    format!(
                        "Merge: branch {i} carries {have} chunk{} but the selector picks it {} time{}",
                        if have == 1 { "" } else { "s" },
                        cursor[i],
                        if cursor[i] == 1 { "" } else { "s" }
                    ),
                    span,
                )
                .map_diag(|d| d.help("the Merge selector must route exactly the chunks its Partition produced")));
            }
        }
        plan.native.record_interp(t0);
        Ok(plan.stream(dims, out))
    }

    /// A Merge through the native backend, when the tiering compiles its function and the
    /// selector routes exactly the chunks the branches carry (otherwise `None`, and the
    /// interpreted Merge runs and reports the routing error).
    #[allow(clippy::too_many_arguments)]
    fn merge_native(
        &self,
        plan: &FnPlan,
        init: &[Arc<Tensor>],
        branches: &[StreamData],
        sf: &FieldData,
        chunks: usize,
        c: usize,
    ) -> Option<Vec<Vec<f32>>> {
        if self.limits.jit == crate::native::JitMode::Never {
            return None;
        }
        let n = branches.len();
        let mut cursor = vec![0usize; n];
        let mut picks = Vec::with_capacity(chunks);
        for j in 0..chunks {
            let bits = sf.data.get(j * n..(j + 1) * n)?;
            let mut p = Vec::new();
            for (i, &b) in bits.iter().enumerate() {
                if b != 0.0 {
                    if cursor[i] >= branches[i].dims.last().copied().unwrap_or(0) {
                        return None;
                    }
                    p.push((i, cursor[i]));
                    cursor[i] += 1;
                }
            }
            picks.push(p);
        }
        if branches
            .iter()
            .zip(&cursor)
            .any(|(b, &k)| b.dims.last().copied().unwrap_or(0) != k)
        {
            return None;
        }
        let init: Vec<&[f32]> = init.iter().map(|t| t.as_f32()).collect::<Option<_>>()?;
        crate::native::merge(
            &plan.native,
            &plan.facts(),
            self.env,
            self.limits.jit,
            &init,
            branches,
            &picks,
            c,
        )
    }
}

/// `lanes` consecutive elements of shape `elem` (row-major rows) as one tensor of shape
/// `(..elem, lanes)`: the lanes become the last axis, so elementwise broadcasting between
/// fields of different element shapes aligns exactly as it does per element.
fn lanes_last(rows: &[f32], lanes: usize, elem: &[usize]) -> Option<Tensor> {
    let len: usize = elem.iter().product();
    if rows.len() != lanes * len {
        return None;
    }
    let mut d = vec![0.0f32; rows.len()];
    for (b, row) in rows.chunks_exact(len.max(1)).enumerate().take(lanes) {
        for (l, &v) in row.iter().enumerate() {
            d[l * lanes + b] = v;
        }
    }
    let mut shape = elem.to_vec();
    shape.push(lanes);
    Tensor::from_f32(shape, d).ok()
}

/// The inverse of [`lanes_last`]: `(len, lanes)` column data back to `lanes` rows of `len`.
fn rows_of(cols: &[f32], lanes: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; lanes * len];
    for l in 0..len {
        for b in 0..lanes {
            if let (Some(d), Some(&x)) = (out.get_mut(b * len + l), cols.get(l * lanes + b)) {
                *d = x;
            }
        }
    }
    out
}

/// The reducer's init state for `lanes` lanes: `(..field, lanes)` per field.
fn batch_init(init: &[Arc<Tensor>], lanes: usize) -> Option<Vec<Arc<Tensor>>> {
    init.iter()
        .map(|t| {
            let v = t.as_f32()?;
            let mut d = Vec::with_capacity(lanes * v.len());
            for &x in v {
                d.extend(std::iter::repeat_n(x, lanes));
            }
            let mut shape = t.shape().to_vec();
            shape.push(lanes);
            Tensor::from_f32(shape, d).ok().map(Arc::new)
        })
        .collect()
}

/// The prepared function `f` (borrowed from the plan, not from the run, so the run stays
/// mutable while the function is called).
fn plan_of<'p>(p: &'p Prepared<'_>, f: FnId, span: Span) -> Result<&'p FnPlan, ExecError> {
    p.fns
        .get(f.index())
        .and_then(Option::as_deref)
        .ok_or_else(|| internal(format!("{f} was not prepared"), span))
}

fn one(ins: Vec<StreamData>, span: Span) -> Result<StreamData, ExecError> {
    ins.into_iter()
        .next()
        .ok_or_else(|| internal("op without an input stream", span))
}

impl ExecError {
    fn map_diag(mut self, f: impl FnOnce(Diagnostic) -> Diagnostic) -> ExecError {
        self.diagnostic = Box::new(f(*self.diagnostic));
        self
    }
}
