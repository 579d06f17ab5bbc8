//! Lowering of a typed graph instance to units and channels (DESIGN §12).
//!
//! Every op becomes one unit (`Input` a load unit, `Output` a store unit) and every stream one
//! bounded FIFO channel. Everything that depends only on shapes is computed here once: element
//! sizes, per-element cycle costs, group sizes (Accum's fold length, Bufferize's tile size, …)
//! and each load/store stream's share of off-chip bandwidth. Concrete dims come from the
//! [`DimEnv`]; the only dims that may stay unknown are Partition's dynamic ones, and only as a
//! stream's outermost dim, because every stream ends with a stop token and no unit needs to
//! know how many outermost elements it will see.

use std::collections::BTreeMap;

use stepforge_ir::{Dim, DimEnv, ElemType, FnId, Graph, Op, OpKind, StreamId, StreamType};

use crate::SimError;
use crate::fns::ElemFns;
use crate::hw::HwConfig;

/// Static facts about one channel (stream).
#[derive(Debug, Clone)]
pub(crate) struct ChanInfo {
    pub id: StreamId,
    pub name: String,
    pub producer: usize,
    /// `None`: nobody reads the stream (its FIFO fills and stalls the producer).
    pub consumer: Option<usize>,
    pub depth: usize,
    /// Bytes of one element (all fields).
    pub elem_bytes: u64,
    /// Bytes of the element's `Buffer` fields (tiles held in on-chip memory).
    pub buf_bytes: u64,
    /// Per field, the element's tensor shape (outermost first).
    pub field_shapes: Vec<Vec<usize>>,
    /// Bits of a single-field `Multihot` element (a routing selector).
    pub mask_bits: Option<usize>,
    /// Stream dims, `None` where dynamic.
    pub dims: Vec<Option<u64>>,
}

/// What a unit does, with its shape-derived constants.
#[derive(Debug, Clone)]
pub(crate) enum UnitKind {
    Load {
        index: usize,
        count: u64,
    },
    Store,
    Map {
        f: FnId,
        cost: u64,
        flops: u64,
    },
    Fold {
        f: FnId,
        inner: u64,
        scan: bool,
        cost: u64,
        flops: u64,
    },
    Zip,
    Copy,
    /// Promote, Flatten, Reshape: elements pass unchanged.
    Pass,
    Bufferize {
        group: u64,
        cost: u64,
    },
    Streamify {
        count: u64,
        cost: u64,
    },
    Repeat {
        n: u64,
    },
    RepeatRef {
        n: u64,
    },
    Partition {
        chunk: u64,
        n: usize,
    },
    Merge {
        f: FnId,
        n: usize,
        chunk: u64,
        cost: u64,
        flops: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct UnitInfo {
    pub op: usize,
    pub label: String,
    pub kind: UnitKind,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// The lowered graph.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub units: Vec<UnitInfo>,
    pub chans: Vec<ChanInfo>,
    /// Off-chip bytes (rounded to whole requests) per load/store unit, by unit index.
    pub offchip: BTreeMap<usize, u64>,
    pub offchip_read: u64,
    pub offchip_write: u64,
}

fn eval(d: &Dim, env: &DimEnv) -> Option<u64> {
    d.eval(env).and_then(|v| u64::try_from(v).ok())
}

fn shape_err(op: &Op, what: &str, d: &[Option<u64>]) -> SimError {
    SimError::unsupported(
        format!(
            "{}: {what} depends on a dimension known only at run time (dims {d:?}); the simulator supports a dynamic dim only as a stream's outermost dim",
            op.kind.name()
        ),
        op.span,
    )
}

/// Product of the first `k` dims, all of which must be known.
fn inner_count(op: &Op, dims: &[Option<u64>], k: usize, what: &str) -> Result<u64, SimError> {
    let mut p: u64 = 1;
    for d in dims.iter().take(k) {
        let v = d.ok_or_else(|| shape_err(op, what, dims))?;
        p = p
            .checked_mul(v)
            .ok_or_else(|| SimError::unsupported(format!("{what} overflows"), op.span))?;
    }
    Ok(p)
}

fn field_shape(t: &ElemType, env: &DimEnv) -> Option<Vec<usize>> {
    t.field_tensor_dims()
        .iter()
        .map(|d| eval(d, env).and_then(|v| usize::try_from(v).ok()))
        .collect()
}

fn chan_info(
    g: &Graph,
    sid: StreamId,
    ty: &StreamType,
    env: &DimEnv,
    hw: &HwConfig,
    span: stepforge_syntax::Span,
) -> Result<ChanInfo, SimError> {
    let s = g.stream(sid);
    if g.consumers(sid).len() > 1 {
        return Err(SimError::unsupported(
            format!(
                "stream `{}` is read {} times; on the hardware a FIFO has one reader (make the program linear with Copy)",
                stream_name(g, sid),
                g.consumers(sid).len()
            ),
            s.span,
        ));
    }
    let mut field_shapes = Vec::new();
    let mut elem_bytes: u64 = 0;
    let mut buf_bytes: u64 = 0;
    for f in ty.elem.fields() {
        let shape = field_shape(f, env).ok_or_else(|| {
            SimError::unsupported(
                format!(
                    "the element type {f} of `{}` has a dimension without a value",
                    stream_name(g, sid)
                ),
                span,
            )
        })?;
        let n: u64 = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .and_then(|n| n.checked_mul(hw.element_bytes))
            .ok_or_else(|| SimError::unsupported("element size overflows", span))?;
        elem_bytes = elem_bytes.saturating_add(n);
        if f.is_buffer() {
            buf_bytes = buf_bytes.saturating_add(n);
        }
        field_shapes.push(shape);
    }
    let mask_bits = match &ty.elem {
        ElemType::Multihot(_) => field_shapes.first().and_then(|s| s.first().copied()),
        _ => None,
    };
    Ok(ChanInfo {
        id: sid,
        name: stream_name(g, sid),
        producer: g.producer(sid).op.index(),
        consumer: g.consumers(sid).first().map(|c| c.op.index()),
        depth: hw.fifo_depth,
        elem_bytes,
        buf_bytes,
        field_shapes,
        mask_bits,
        dims: ty.dims.iter().map(|d| eval(d, env)).collect(),
    })
}

/// A readable name for a stream: its program name, or `<op> output`.
pub(crate) fn stream_name(g: &Graph, sid: StreamId) -> String {
    let s = g.stream(sid);
    match &s.name {
        Some(n) => n.clone(),
        None => format!(
            "{} output {}",
            g.op(g.producer(sid).op).kind.name(),
            g.producer(sid).port
        ),
    }
}

/// `Map(square)`, `Accum(sum, b=1)`, `Input(E0)`.
pub(crate) fn op_label(g: &Graph, op: &Op) -> String {
    let f = |id: &FnId| g.fn_sig(*id).name.clone();
    match &op.kind {
        OpKind::Input { name, .. } => format!("Input({name})"),
        OpKind::Output { name, .. } => format!("Output({name})"),
        OpKind::Map { f: id } => format!("Map({})", f(id)),
        OpKind::Accum { f: id, b } => format!("Accum({}, b={b})", f(id)),
        OpKind::Scan { f: id, b } => format!("Scan({}, b={b})", f(id)),
        OpKind::Merge { f: id, n } => format!("Merge({}, N={n})", f(id)),
        OpKind::Bufferize { a } => format!("Bufferize(a={a})"),
        OpKind::Promote { b } => format!("Promote(b={b})"),
        OpKind::Flatten { dims } => format!("Flatten(L={dims:?})"),
        OpKind::Reshape { dims, chunk } => format!("Reshape(L={dims:?}, S={chunk})"),
        OpKind::Repeat { n } => format!("Repeat(n={n})"),
        OpKind::Partition { n, .. } => format!("Partition(N={n})"),
        k => k.name().to_string(),
    }
}

/// Cycles per element: max(bytes read / memory bandwidth, FLOPs / compute, bytes written /
/// memory bandwidth), at least 1 (DESIGN §12).
pub(crate) fn cost(hw: &HwConfig, flops: u64, read: u64, write: u64) -> u64 {
    let m = hw.memory_bytes_per_cycle;
    read.div_ceil(m)
        .max(flops.div_ceil(hw.compute_flops_per_cycle))
        .max(write.div_ceil(m))
        .max(1)
}

struct Ctx<'a> {
    g: &'a Graph,
    env: &'a DimEnv,
    hw: &'a HwConfig,
    fns: &'a dyn ElemFns,
    chans: &'a [ChanInfo],
}

impl Ctx<'_> {
    fn ch(&self, op: &Op, port: usize, out: bool) -> Result<&ChanInfo, SimError> {
        let list = if out {
            self.g.outputs_of(op.id)
        } else {
            self.g.inputs_of(op.id)
        };
        list.get(port)
            .and_then(|s| self.chans.get(s.index()))
            .ok_or_else(|| SimError::internal(format!("{} has no port {port}", op.id), op.span))
    }

    /// FLOPs and cycles per element of a function call reading `ins`, writing `out`;
    /// reducers also read and write their state (the output fields).
    fn fn_cost(&self, f: FnId, ins: &[&ChanInfo], out: &ChanInfo, reducer: bool) -> (u64, u64) {
        let in_shapes: Vec<Vec<usize>> = ins
            .iter()
            .flat_map(|c| c.field_shapes.iter().cloned())
            .collect();
        let flops = self.fns.flops(f, &in_shapes, &out.field_shapes);
        let mut read: u64 = ins.iter().map(|c| c.buf_bytes).sum();
        if reducer {
            read = read.saturating_add(out.buf_bytes);
        }
        (flops, cost(self.hw, flops, read, out.buf_bytes))
    }

    fn kind(&self, op: &Op) -> Result<UnitKind, SimError> {
        let input = |p| self.ch(op, p, false);
        let output = |p| self.ch(op, p, true);
        Ok(match &op.kind {
            OpKind::Input { index, .. } => {
                let o = output(0)?;
                let count = inner_count(op, &o.dims, o.dims.len(), "the input's size")?;
                UnitKind::Load {
                    index: *index,
                    count,
                }
            }
            OpKind::Output { .. } => UnitKind::Store,
            OpKind::Map { f } => {
                let ins: Vec<&ChanInfo> = (0..self.g.inputs_of(op.id).len())
                    .map(input)
                    .collect::<Result<_, _>>()?;
                let (flops, cost) = self.fn_cost(*f, &ins, output(0)?, false);
                UnitKind::Map { f: *f, cost, flops }
            }
            OpKind::Accum { f, b } | OpKind::Scan { f, b } => {
                let i = input(0)?;
                let inner = inner_count(op, &i.dims, *b, "the fold length")?;
                let (flops, cost) = self.fn_cost(*f, &[i], output(0)?, true);
                let scan = matches!(op.kind, OpKind::Scan { .. });
                UnitKind::Fold {
                    f: *f,
                    inner,
                    scan,
                    cost,
                    flops,
                }
            }
            OpKind::Merge { f, n } => {
                let b0 = input(0)?;
                let chunk = inner_count(
                    op,
                    &b0.dims,
                    b0.dims.len().saturating_sub(1),
                    "the chunk size",
                )?;
                let (flops, cost) = self.fn_cost(*f, &[b0], output(0)?, true);
                UnitKind::Merge {
                    f: *f,
                    n: *n,
                    chunk,
                    cost,
                    flops,
                }
            }
            OpKind::Zip => UnitKind::Zip,
            OpKind::Copy => UnitKind::Copy,
            OpKind::Promote { .. } | OpKind::Flatten { .. } | OpKind::Reshape { .. } => {
                UnitKind::Pass
            }
            OpKind::Bufferize { a } => {
                let i = input(0)?;
                let group = inner_count(op, &i.dims, *a, "the tile size")?;
                UnitKind::Bufferize {
                    group,
                    cost: cost(self.hw, 0, 0, i.elem_bytes),
                }
            }
            OpKind::Streamify => {
                let (i, o) = (input(0)?, output(0)?);
                let nb = match &self.g.stream(self.g.inputs_of(op.id)[0]).ty.elem {
                    ElemType::Buffer { dims, .. } => dims.len(),
                    _ => return Err(SimError::internal("Streamify of a non-buffer", op.span)),
                };
                let count = inner_count(op, &o.dims, nb, "the tile size")?;
                let _ = i;
                UnitKind::Streamify {
                    count,
                    cost: cost(self.hw, 0, o.elem_bytes, 0),
                }
            }
            OpKind::Repeat { n } => UnitKind::Repeat {
                n: eval(n, self.env).ok_or_else(|| {
                    SimError::unsupported(format!("Repeat: n = {n} has no value"), op.span)
                })?,
            },
            OpKind::RepeatRef => {
                let r = input(1)?;
                UnitKind::RepeatRef {
                    n: inner_count(op, &r.dims, 1, "the repeat count")?,
                }
            }
            OpKind::Partition { n, sel_dims } => {
                let d = input(0)?;
                let k = d.dims.len().saturating_sub(*sel_dims);
                UnitKind::Partition {
                    chunk: inner_count(op, &d.dims, k, "the chunk size")?,
                    n: *n,
                }
            }
        })
    }
}

/// Lowers `g` under `env`. `depths` overrides the FIFO depth of single streams.
pub(crate) fn lower(
    g: &Graph,
    env: &DimEnv,
    hw: &HwConfig,
    fns: &dyn ElemFns,
    depths: &BTreeMap<StreamId, usize>,
) -> Result<Plan, SimError> {
    let mut chans = Vec::with_capacity(g.streams().len());
    for s in g.streams() {
        let span = g.op(g.producer(s.id).op).span;
        let mut c = chan_info(g, s.id, &s.ty, env, hw, span)?;
        if let Some(&d) = depths.get(&s.id) {
            c.depth = d.max(1);
        }
        chans.push(c);
    }
    let ctx = Ctx {
        g,
        env,
        hw,
        fns,
        chans: &chans,
    };
    let mut units = Vec::with_capacity(g.op_count());
    for op in g.ops() {
        units.push(UnitInfo {
            op: op.id.index(),
            label: op_label(g, op),
            kind: ctx.kind(op)?,
            inputs: g.inputs_of(op.id).iter().map(|s| s.index()).collect(),
            outputs: g.outputs_of(op.id).iter().map(|s| s.index()).collect(),
        });
    }
    let req = hw.offchip.request_bytes;
    let mut offchip = BTreeMap::new();
    let (mut read, mut write) = (0u64, 0u64);
    for u in &units {
        let (ch, is_read) = match u.kind {
            UnitKind::Load { .. } => (u.outputs.first(), true),
            UnitKind::Store => (u.inputs.first(), false),
            _ => continue,
        };
        let Some(c) = ch.and_then(|&c| chans.get(c)) else {
            continue;
        };
        // Dynamic outer dims (a Partition branch returned directly) are not known before the
        // run: such a store is charged by the bytes it actually writes, at the full bandwidth
        // share of an average stream.
        let count = c
            .dims
            .iter()
            .try_fold(1u64, |a, d| d.and_then(|d| a.checked_mul(d)));
        let bytes = count
            .and_then(|n| n.checked_mul(c.elem_bytes))
            .map(|b| b.div_ceil(req).saturating_mul(req))
            .unwrap_or(0);
        offchip.insert(u.op, bytes);
        if is_read {
            read = read.saturating_add(bytes);
        } else {
            write = write.saturating_add(bytes);
        }
    }
    Ok(Plan {
        units,
        chans,
        offchip,
        offchip_read: read,
        offchip_write: write,
    })
}
