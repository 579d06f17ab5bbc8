//! The tensor IR the code generator consumes, and its construction from an element-function
//! body ([`stepforge_ir::func::Body`]) for concrete shapes.
//!
//! Analysis is an abstract interpretation of the body: Python-level values (lists, ints,
//! floats, module objects) are evaluated at compile time, and every tensor value becomes a
//! [`View`] onto a [`Node`] — a buffer with a static per-lane shape. Indexing with constant
//! indices, slicing, transposes, `unsqueeze`/`expand` and reshapes of contiguous data are
//! views (no code); arithmetic, reductions and products are nodes. Every node either carries
//! a leading *lane* dimension (it depends on `input`/`state`, which differ per stream element)
//! or not (it depends only on `input_data` and constants, computed once per call).
//!
//! Facts the shapes fix are folded here: `size()`, `.shape`, `dim()`, `numel()`, `len()` are
//! Python ints, and `dtype=` arguments (`arange`, `zeros_like`, `to`) pick the node's element
//! type. `arange` is a constant table the kernel owns; `chunk`/`split` are views, `cat`/`stack`
//! a copy node; `topk` is a node whose indices are int64 views ([`Av::Idx`]) that only
//! `scatter` may read (see `tir/build.rs`).
//!
//! Anything outside the supported subset returns [`Unsupported`] with the reason, and the
//! function then runs in the interpreter. The analysis never panics on any body.

use std::collections::BTreeMap;

use stepforge_ir::builtin::Builtin;
use stepforge_ir::func::{
    Attr, BinOp, Body, CmpOp, Const, DType, Expr, ExprId, INPUT_SLOT, Index, Key, STATE_SLOT, Stmt,
    Target, UnOp,
};

mod build;

/// Why a function is not compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

pub(crate) type R<T> = Result<T, Unsupported>;

fn no<T>(msg: impl Into<String>) -> R<T> {
    Err(Unsupported(msg.into()))
}

/// Elementwise functions of one operand: the tensor crate's list, shared with the interpreter.
pub use stepforge_tensor::UnaryOp as Un;

/// Computed by a call to a Rust helper (no Cranelift instruction exists; the helper computes
/// in f64 as the interpreter does): the ops `helpers::unary` has a helper for.
pub fn needs_helper(op: Un) -> bool {
    crate::helpers::unary(op).is_some()
}

/// Elementwise functions of two operands (comparisons give 0/1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Bin {
    pub fn is_cmp(self) -> bool {
        matches!(
            self,
            Bin::Lt | Bin::Le | Bin::Gt | Bin::Ge | Bin::Eq | Bin::Ne
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Red {
    Sum,
    Mean,
    Max,
    Min,
}

/// Element dtype: bools are stored as 0.0/1.0 f32, as the executor stores them in streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dt {
    F32,
    Bool,
}

/// Where a parameter buffer comes from: the call's pointer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Input(usize),
    State(usize),
    /// Index into [`Graph::data`].
    Data(usize),
    /// Index into [`Graph::tables`] (constant tensors the kernel owns, e.g. `arange`).
    Table(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Param(Param),
    /// A scalar constant (never stored: views of it load an immediate).
    Const(f32),
    Unary(Un, View),
    Binary(Bin, View, View),
    /// `where(c, a, b)`.
    Select(View, View, View),
    /// Reduction of `src` over `axes` (of the source shape); the node shape is the kept
    /// dims (with 1s where `keepdim`).
    Reduce {
        op: Red,
        src: View,
        axes: Vec<usize>,
    },
    /// `a @ b` for 1-D/2-D per-lane operands.
    MatMul(View, View),
    /// `torch.cat` of same-rank parts along `dim` (`stack` is a cat of unsqueezed parts).
    Cat {
        parts: Vec<View>,
        dim: usize,
    },
    /// `torch.topk` of `src` (a contiguous view) along `dim`. The node's buffer is
    /// `[2, ..out]`: the values, then the indices as exact f32 integers in `0..n`.
    TopK {
        src: View,
        dim: usize,
        k: usize,
        largest: bool,
    },
    /// `base.scatter(dim, index, src)`: a copy of `base` with `src[q]` stored at `q` with
    /// `q[dim]` replaced by `index[q]`, for every position `q` of the index shape in row-major
    /// order. `index` views a [`NodeKind::TopK`]'s indices, whose range fits `base`'s dim.
    Scatter {
        base: View,
        index: View,
        src: View,
        dim: usize,
    },
}

impl NodeKind {
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            NodeKind::Unary(..) | NodeKind::Binary(..) | NodeKind::Select(..)
        )
    }

    pub fn operands(&self) -> Vec<&View> {
        match self {
            NodeKind::Param(_) | NodeKind::Const(_) => Vec::new(),
            NodeKind::Unary(_, a) => vec![a],
            NodeKind::Binary(_, a, b) | NodeKind::MatMul(a, b) => vec![a, b],
            NodeKind::Select(c, a, b) => vec![c, a, b],
            NodeKind::Reduce { src, .. } | NodeKind::TopK { src, .. } => vec![src],
            NodeKind::Cat { parts, .. } => parts.iter().collect(),
            NodeKind::Scatter {
                base, index, src, ..
            } => vec![base, index, src],
        }
    }
}

/// One buffer of the kernel: per lane `shape` (contiguous, row-major), times the lanes when
/// `batched`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub shape: Vec<usize>,
    pub batched: bool,
    pub dt: Dt,
}

pub type NodeId = usize;

/// A strided window onto a node's per-lane buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub node: NodeId,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for (i, &d) in shape.iter().enumerate().rev() {
        s[i] = acc;
        acc = acc.saturating_mul(d as isize);
    }
    s
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl View {
    fn whole(node: NodeId, shape: &[usize]) -> View {
        View {
            node,
            offset: 0,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
        }
    }

    /// The view is the node's whole buffer in order.
    pub fn is_identity(&self, node_shape: &[usize]) -> bool {
        self.offset == 0
            && self.shape == node_shape
            && self
                .strides
                .iter()
                .zip(contiguous_strides(node_shape))
                .zip(&self.shape)
                .all(|((&s, c), &d)| d == 1 || s == c)
    }

    fn is_contiguous(&self) -> bool {
        self.strides
            .iter()
            .zip(contiguous_strides(&self.shape))
            .zip(&self.shape)
            .all(|((&s, c), &d)| d == 1 || s == c)
    }

    /// Broadcast to `out` (numpy rules, already checked).
    fn expand_to(&self, out: &[usize]) -> View {
        let pad = out.len() - self.shape.len();
        let mut strides = vec![0isize; out.len()];
        for (i, (&d, &s)) in self.shape.iter().zip(&self.strides).enumerate() {
            strides[pad + i] = if d == 1 && out[pad + i] != 1 { 0 } else { s };
        }
        View {
            node: self.node,
            offset: self.offset,
            shape: out.to_vec(),
            strides,
        }
    }
}

/// The analysed function: nodes in dependency order, the views it returns, and the
/// `input_data` tensors it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub outputs: Vec<View>,
    /// `(name, shape)` of every `input_data` tensor read, in first-use order.
    pub data: Vec<(String, Vec<usize>)>,
    /// Constant tensors computed at compile time ([`Param::Table`]), owned by the kernel.
    pub tables: Vec<Vec<f32>>,
    /// Estimated FLOPs per lane (from the builtin table's costs).
    pub flops_per_lane: u64,
}

/// A `torch.nn` activation module held in a global (`gelu = torch.nn.GELU()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Unary(Un),
    Softmax(Option<i64>),
    Identity,
}

/// What a name bound by the `global` block is, as far as compiled code cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    Int(i64),
    Float(f64),
    Bool(bool),
    Act(Act),
    /// Anything else (tensors, lists): a function reading it is not compiled.
    Other,
}

/// What the analysis needs besides the body.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Element shapes of the input fields.
    pub inputs: Vec<Vec<usize>>,
    /// Element shapes of the state fields (reducers only).
    pub state: Option<Vec<Vec<usize>>>,
    /// Element shapes of the output fields.
    pub outputs: Vec<Vec<usize>>,
    /// Shapes of the `input_data` tensors available.
    pub data: BTreeMap<String, Vec<usize>>,
    pub globals: BTreeMap<String, Global>,
    pub dims: BTreeMap<String, i64>,
}

/// List items one analysis may build (element functions build a handful).
const MAX_LIST_ITEMS: usize = 4096;

/// A compile-time value.
#[derive(Debug, Clone)]
enum Av {
    T(View),
    /// Shared, so `a = [a, a]` costs two slots, not a copy of `a` (no exponential blow-up).
    List(std::sync::Arc<Vec<Av>>),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Str,
    Act(Act),
    Func(Builtin),
    /// A torch dtype (`torch.float32`): arguments such as `dtype=` are compile-time facts.
    DType(DType),
    /// An int64 index tensor: a view of a [`NodeKind::TopK`]'s indices, whose values lie in
    /// `0..bound`. Only `scatter` (and subscripts) take it; anything else is unsupported.
    Idx(View, usize),
}

struct Cx<'a> {
    body: &'a Body,
    spec: &'a Spec,
    nodes: Vec<Node>,
    slots: Vec<Option<Av>>,
    data: Vec<(String, Vec<usize>)>,
    flops: u64,
    /// Scalar constants by (bits, is bool).
    consts: BTreeMap<(u32, bool), NodeId>,
    /// List items built so far (bounded: [`MAX_LIST_ITEMS`]).
    list_items: usize,
    tables: Vec<Vec<f32>>,
}

/// Analyses `body` for `spec`.
pub fn analyse(body: &Body, spec: &Spec) -> R<Graph> {
    let mut cx = Cx {
        body,
        spec,
        nodes: Vec::new(),
        slots: vec![None; body.slot_names.len().max(2)],
        data: Vec::new(),
        flops: 0,
        consts: BTreeMap::new(),
        list_items: 0,
        tables: Vec::new(),
    };
    let mut ins = Vec::new();
    for (i, s) in spec.inputs.iter().enumerate() {
        ins.push(cx.param(Param::Input(i), s));
    }
    cx.slots[INPUT_SLOT as usize] = Some(Av::List(ins.into()));
    if let Some(st) = &spec.state {
        let mut v = Vec::new();
        for (i, s) in st.iter().enumerate() {
            v.push(cx.param(Param::State(i), s));
        }
        cx.slots[STATE_SLOT as usize] = Some(Av::List(v.into()));
    }
    let mut ret = None;
    for s in &body.stmts {
        match s {
            Stmt::Assign(t, e) => {
                let v = cx.eval(*e)?;
                cx.assign(t, v)?;
            }
            Stmt::Return(e) => {
                ret = Some(cx.eval(*e)?);
                break;
            }
            Stmt::Expr(_) => return no("an expression statement"),
        }
    }
    let Some(ret) = ret else {
        return no("no return statement");
    };
    let items = match ret {
        Av::List(v) => v.to_vec(),
        one => vec![one],
    };
    if items.len() != spec.outputs.len() {
        return no("returns a different number of fields than declared");
    }
    let mut outputs = Vec::new();
    for (v, shape) in items.into_iter().zip(&spec.outputs) {
        let v = cx.tensor(v)?;
        if &v.shape != shape {
            return no("returns a shape other than the declared one");
        }
        outputs.push(v);
    }
    Ok(Graph {
        nodes: cx.nodes,
        outputs,
        data: cx.data,
        tables: cx.tables,
        flops_per_lane: cx.flops,
    })
}

fn bcast(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    stepforge_tensor::broadcast_shapes(a, b).or_else(|_| no("shapes do not broadcast"))
}

fn norm_dim(d: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let d2 = if d < 0 { d + r.max(1) } else { d };
    if d2 < 0 || d2 >= r.max(1) {
        return no("dim out of range");
    }
    Ok(d2 as usize)
}

impl Cx<'_> {
    fn push(&mut self, kind: NodeKind, shape: Vec<usize>, batched: bool, dt: Dt) -> View {
        let id = self.nodes.len();
        let v = View::whole(id, &shape);
        self.nodes.push(Node {
            kind,
            shape,
            batched,
            dt,
        });
        v
    }

    fn param(&mut self, p: Param, shape: &[usize]) -> Av {
        let batched = !matches!(p, Param::Data(_));
        Av::T(self.push(NodeKind::Param(p), shape.to_vec(), batched, Dt::F32))
    }

    fn constant(&mut self, x: f32) -> View {
        self.constant_dt(x, Dt::F32)
    }

    /// A scalar constant of dtype `dt` (bools are 0.0/1.0).
    fn constant_dt(&mut self, x: f32, dt: Dt) -> View {
        let key = (x.to_bits(), dt == Dt::Bool);
        if let Some(&id) = self.consts.get(&key) {
            return View::whole(id, &[]);
        }
        let v = self.push(NodeKind::Const(x), Vec::new(), false, dt);
        self.consts.insert(key, v.node);
        v
    }

    fn node(&self, v: &View) -> &Node {
        &self.nodes[v.node]
    }

    fn batched(&self, vs: &[&View]) -> bool {
        vs.iter().any(|v| self.node(v).batched)
    }

    fn dt(&self, v: &View) -> Dt {
        self.node(v).dt
    }

    fn tensor(&mut self, v: Av) -> R<View> {
        match v {
            Av::T(t) => Ok(t),
            Av::Float(x) => Ok(self.constant(x as f32)),
            Av::Int(i) => Ok(self.constant(i as f32)),
            Av::Bool(b) => {
                let c = self.constant(if b { 1.0 } else { 0.0 });
                Ok(c)
            }
            Av::Idx(..) => no("an int64 index tensor outside scatter"),
            _ => no("a non-tensor value where a tensor is needed"),
        }
    }

    fn int(&self, v: &Av) -> R<i64> {
        match v {
            Av::Int(i) => Ok(*i),
            Av::Bool(b) => Ok(i64::from(*b)),
            _ => no("a non-constant integer argument"),
        }
    }

    fn ints(&self, v: &Av) -> R<Vec<i64>> {
        match v {
            Av::List(items) => items.iter().map(|x| self.int(x)).collect(),
            other => Ok(vec![self.int(other)?]),
        }
    }

    fn assign(&mut self, t: &Target, v: Av) -> R<()> {
        match t {
            Target::Slot(s) => {
                let Some(slot) = self.slots.get_mut(*s as usize) else {
                    return no("slot out of range");
                };
                *slot = Some(v);
                Ok(())
            }
            Target::Tuple(items, _) => {
                let Av::List(vs) = v else {
                    return no("unpacking a non-sequence");
                };
                if vs.len() != items.len() {
                    return no("unpacking arity mismatch");
                }
                for (t, v) in items.iter().zip(vs.iter()) {
                    self.assign(t, v.clone())?;
                }
                Ok(())
            }
            _ => no("assignment to an item, dimension or ctx"),
        }
    }

    fn eval(&mut self, id: ExprId) -> R<Av> {
        let body = self.body;
        match body.expr(id) {
            Expr::Const(c) => Ok(match c {
                Const::None => Av::None,
                Const::Bool(b) => Av::Bool(*b),
                Const::Int(i) => Av::Int(*i),
                Const::Float(x) => Av::Float(*x),
                Const::Str(_) => Av::Str,
                Const::Builtin(b) => Av::Func(*b),
                Const::DType(d) => Av::DType(*d),
                _ => return no("an input_data or ctx value"),
            }),
            Expr::Slot(s) => match self.slots.get(*s as usize) {
                Some(Some(v)) => Ok(v.clone()),
                _ => no("a local read before assignment"),
            },
            Expr::Global(n) => match self.spec.globals.get(&**n) {
                Some(Global::Int(i)) => Ok(Av::Int(*i)),
                Some(Global::Float(x)) => Ok(Av::Float(*x)),
                Some(Global::Bool(b)) => Ok(Av::Bool(*b)),
                Some(Global::Act(a)) => Ok(Av::Act(*a)),
                _ => no(format!("global `{n}` is not a number or an activation")),
            },
            Expr::DimValue(d) => match self.spec.dims.get(&**d) {
                Some(&v) => Ok(Av::Int(v)),
                None => no("an unknown dimension value"),
            },
            Expr::DataGet(Key::Const(name)) => self.data_get(name),
            Expr::Attr(x, a) => {
                let x = self.eval(*x)?;
                self.attr(x, *a)
            }
            Expr::Call {
                func,
                recv,
                args,
                kwargs,
                inplace,
            } => {
                if inplace.is_some() {
                    return no("an in-place method");
                }
                let (pos, kw) = self.eval_args(*recv, args, kwargs)?;
                self.call(*func, pos, kw)
            }
            Expr::CallValue { func, args, kwargs } => {
                let f = self.eval(*func)?;
                let (mut pos, kw) = self.eval_args(None, args, kwargs)?;
                match f {
                    Av::Func(b) => self.call(b, pos, kw),
                    Av::Act(a) => {
                        if pos.len() != 1 || !kw.is_empty() {
                            return no("a module called with other than one argument");
                        }
                        let x = pos.pop().map(|v| self.tensor(v)).transpose()?;
                        let Some(x) = x else {
                            return no("missing argument");
                        };
                        self.act(a, x)
                    }
                    _ => no("calling a non-callable"),
                }
            }
            Expr::Subscript(x, items) => {
                let x = self.eval(*x)?;
                self.subscript(x, items)
            }
            Expr::Binary(op, a, b) => {
                let a = self.eval(*a)?;
                let b = self.eval(*b)?;
                self.binop(*op, a, b)
            }
            Expr::Unary(op, a) => {
                let a = self.eval(*a)?;
                match (op, a) {
                    (UnOp::Pos, a) => Ok(a),
                    (UnOp::Neg, Av::Int(i)) => Ok(Av::Int(i.wrapping_neg())),
                    (UnOp::Neg, Av::Float(x)) => Ok(Av::Float(-x)),
                    (UnOp::Neg, Av::T(t)) => self.unary(Un::Neg, t).map(Av::T),
                    (UnOp::Not, Av::Bool(b)) => Ok(Av::Bool(!b)),
                    _ => no("a unary operator on this value"),
                }
            }
            Expr::Compare(first, rest) => {
                if rest.len() != 1 {
                    return no("a chained comparison");
                }
                let a = self.eval(*first)?;
                let (op, b) = &rest[0];
                let b = self.eval(*b)?;
                let bin = match op {
                    CmpOp::Lt => Bin::Lt,
                    CmpOp::Le => Bin::Le,
                    CmpOp::Gt => Bin::Gt,
                    CmpOp::Ge => Bin::Ge,
                    CmpOp::Eq => Bin::Eq,
                    CmpOp::Ne => Bin::Ne,
                };
                if !matches!(a, Av::T(_)) && !matches!(b, Av::T(_)) {
                    return no("a comparison of Python values");
                }
                let a = self.tensor(a)?;
                let b = self.tensor(b)?;
                self.binary(bin, a, b).map(Av::T)
            }
            Expr::IfElse { cond, then, orelse } => match self.eval(*cond)? {
                Av::Bool(true) => self.eval(*then),
                Av::Bool(false) => self.eval(*orelse),
                Av::Int(i) => self.eval(if i != 0 { *then } else { *orelse }),
                _ => no("a conditional on a tensor"),
            },
            Expr::List(items) | Expr::Tuple(items) => {
                self.list_items += items.len();
                if self.list_items > MAX_LIST_ITEMS {
                    return no("more list items than the analysis allows");
                }
                let mut v = Vec::new();
                for i in items {
                    v.push(self.eval(*i)?);
                }
                Ok(Av::List(v.into()))
            }
            _ => no("an expression outside the compiled subset (ctx, comprehension, f-string)"),
        }
    }

    /// A call's arguments: positional (the receiver first) and keywords.
    #[allow(clippy::type_complexity)]
    fn eval_args(
        &mut self,
        recv: Option<ExprId>,
        args: &[ExprId],
        kwargs: &[(&'static str, ExprId)],
    ) -> R<(Vec<Av>, Vec<(&'static str, Av)>)> {
        let mut pos = Vec::with_capacity(args.len() + 1);
        for a in recv.iter().chain(args) {
            pos.push(self.eval(*a)?);
        }
        let mut kw = Vec::with_capacity(kwargs.len());
        for (k, e) in kwargs {
            kw.push((*k, self.eval(*e)?));
        }
        Ok((pos, kw))
    }

    fn data_get(&mut self, name: &str) -> R<Av> {
        let Some(shape) = self.spec.data.get(name).cloned() else {
            return no(format!("input_data['{name}'] is not an fp32 tensor"));
        };
        let idx = match self.data.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.data.push((name.to_string(), shape.clone()));
                self.data.len() - 1
            }
        };
        // One node per data tensor.
        let existing = self
            .nodes
            .iter()
            .position(|n| n.kind == NodeKind::Param(Param::Data(idx)));
        match existing {
            Some(id) => Ok(Av::T(View::whole(id, &shape))),
            None => Ok(self.param(Param::Data(idx), &shape)),
        }
    }

    fn attr(&mut self, x: Av, a: Attr) -> R<Av> {
        let Av::T(t) = x else {
            return no("an attribute of a non-tensor");
        };
        match a {
            Attr::T => {
                let mut v = t.clone();
                v.shape.reverse();
                v.strides.reverse();
                Ok(Av::T(v))
            }
            Attr::MT => {
                if t.shape.len() < 2 {
                    return no(".mT of a tensor of rank < 2");
                }
                let r = t.shape.len();
                let mut v = t.clone();
                v.shape.swap(r - 1, r - 2);
                v.strides.swap(r - 1, r - 2);
                Ok(Av::T(v))
            }
            Attr::Ndim => Ok(Av::Int(t.shape.len() as i64)),
            Attr::Dtype => Ok(Av::DType(match self.dt(&t) {
                Dt::F32 => DType::F32,
                Dt::Bool => DType::Bool,
            })),
            Attr::Shape => Ok(Av::List(
                t.shape
                    .iter()
                    .map(|&d| Av::Int(d as i64))
                    .collect::<Vec<_>>()
                    .into(),
            )),
            _ => no("this tensor attribute"),
        }
    }

    fn subscript(&mut self, x: Av, items: &[Index]) -> R<Av> {
        match x {
            Av::List(vs) => {
                let [Index::Index(i)] = items else {
                    return no("a list slice");
                };
                let i = self.eval(*i)?;
                let i = self.int(&i)?;
                let n = vs.len() as i64;
                let j = if i < 0 { i + n } else { i };
                match usize::try_from(j).ok().and_then(|j| vs.get(j)) {
                    Some(v) => Ok(v.clone()),
                    None => no("a list index out of range"),
                }
            }
            Av::T(t) => self.index_view(t, items).map(Av::T),
            Av::Idx(t, bound) => Ok(Av::Idx(self.index_view(t, items)?, bound)),
            _ => no("subscript of a scalar"),
        }
    }

    fn opt_int(&mut self, e: Option<ExprId>) -> R<Option<i64>> {
        match e {
            None => Ok(None),
            Some(e) => match self.eval(e)? {
                Av::None => Ok(None),
                v => Ok(Some(self.int(&v)?)),
            },
        }
    }

    fn index_view(&mut self, t: View, items: &[Index]) -> R<View> {
        let mut out = View {
            node: t.node,
            offset: t.offset,
            shape: Vec::new(),
            strides: Vec::new(),
        };
        let explicit = items
            .iter()
            .filter(|i| !matches!(i, Index::Ellipsis))
            .count();
        let mut d = 0usize;
        for it in items {
            match it {
                Index::Ellipsis => {
                    let skip = t.shape.len().saturating_sub(explicit);
                    for _ in 0..skip {
                        out.shape.push(t.shape[d]);
                        out.strides.push(t.strides[d]);
                        d += 1;
                    }
                }
                Index::Index(e) => {
                    let v = self.eval(*e)?;
                    if matches!(v, Av::None) {
                        out.shape.push(1);
                        out.strides.push(0);
                        continue;
                    }
                    let i = self.int(&v)?;
                    let Some(&n) = t.shape.get(d) else {
                        return no("too many indices");
                    };
                    let j = if i < 0 { i + n as i64 } else { i };
                    if j < 0 || j >= n as i64 {
                        return no("an index out of range");
                    }
                    out.offset = offset_add(out.offset, j as isize * t.strides[d])?;
                    d += 1;
                }
                Index::Slice(a, b, c) => {
                    let Some(&n) = t.shape.get(d) else {
                        return no("too many indices");
                    };
                    let step = self.opt_int(*c)?.unwrap_or(1);
                    if step <= 0 {
                        return no("a slice step that is not positive");
                    }
                    let n = n as i64;
                    let clamp = |x: i64| if x < 0 { (x + n).max(0) } else { x.min(n) };
                    let lo = self.opt_int(*a)?.map_or(0, clamp);
                    let hi = self.opt_int(*b)?.map_or(n, clamp);
                    let len = if hi > lo {
                        (hi - lo + step - 1) / step
                    } else {
                        0
                    };
                    out.offset = offset_add(out.offset, lo as isize * t.strides[d])?;
                    out.shape.push(len as usize);
                    out.strides.push(t.strides[d] * step as isize);
                    d += 1;
                }
            }
        }
        while d < t.shape.len() {
            out.shape.push(t.shape[d]);
            out.strides.push(t.strides[d]);
            d += 1;
        }
        if out.shape.contains(&0) {
            return no("an empty slice");
        }
        Ok(out)
    }

    fn materialise(&mut self, t: View) -> View {
        let dt = self.dt(&t);
        let b = self.batched(&[&t]);
        let shape = t.shape.clone();
        self.push(NodeKind::Unary(Un::Identity, t), shape, b, dt)
    }

    fn reshape(&mut self, t: View, dims: &[i64]) -> R<View> {
        let n = numel(&t.shape) as i64;
        let mut shape = Vec::new();
        let mut infer = None;
        for (i, &d) in dims.iter().enumerate() {
            if d == -1 {
                if infer.is_some() {
                    return no("two -1 in a reshape");
                }
                infer = Some(i);
                shape.push(1);
            } else if d < 0 {
                return no("a negative reshape dim");
            } else {
                shape.push(d as usize);
            }
        }
        if let Some(i) = infer {
            let rest = numel(&shape) as i64;
            if rest == 0 || n % rest != 0 {
                return no("a reshape that does not fit");
            }
            shape[i] = (n / rest) as usize;
        }
        if numel(&shape) as i64 != n {
            return no("a reshape that does not fit");
        }
        let t = if t.is_contiguous() {
            t
        } else {
            self.materialise(t)
        };
        Ok(View {
            node: t.node,
            offset: t.offset,
            strides: contiguous_strides(&shape),
            shape,
        })
    }

    fn unary(&mut self, op: Un, t: View) -> R<View> {
        let dt = self.dt(&t);
        if dt == Dt::Bool && !matches!(op, Un::LogicalNot | Un::Identity) {
            return no("math on a bool tensor");
        }
        if op == Un::LogicalNot && dt != Dt::Bool {
            return no("logical_not of a float tensor");
        }
        self.flops += numel(&t.shape) as u64 * if needs_helper(op) { 4 } else { 1 };
        let b = self.batched(&[&t]);
        let shape = t.shape.clone();
        let out_dt = if op == Un::LogicalNot { Dt::Bool } else { dt };
        Ok(self.push(NodeKind::Unary(op, t), shape, b, out_dt))
    }

    fn binary(&mut self, op: Bin, a: View, b: View) -> R<View> {
        let (da, db) = (self.dt(&a), self.dt(&b));
        if !op.is_cmp() && da == Dt::Bool && db == Dt::Bool {
            return no("arithmetic on two bool tensors");
        }
        let shape = bcast(&a.shape, &b.shape)?;
        self.flops += numel(&shape) as u64;
        let batched = self.batched(&[&a, &b]);
        let (a, b) = (a.expand_to(&shape), b.expand_to(&shape));
        let dt = if op.is_cmp() { Dt::Bool } else { Dt::F32 };
        Ok(self.push(NodeKind::Binary(op, a, b), shape, batched, dt))
    }

    fn select(&mut self, c: View, a: View, b: View) -> R<View> {
        if self.dt(&c) != Dt::Bool {
            return no("where() with a non-bool condition");
        }
        let shape = bcast(&bcast(&c.shape, &a.shape)?, &b.shape)?;
        let batched = self.batched(&[&c, &a, &b]);
        let dt = if self.dt(&a) == Dt::Bool && self.dt(&b) == Dt::Bool {
            Dt::Bool
        } else {
            Dt::F32
        };
        let (c, a, b) = (
            c.expand_to(&shape),
            a.expand_to(&shape),
            b.expand_to(&shape),
        );
        self.flops += numel(&shape) as u64;
        Ok(self.push(NodeKind::Select(c, a, b), shape, batched, dt))
    }

    fn reduce(&mut self, op: Red, t: View, dims: Option<Vec<i64>>, keepdim: bool) -> R<View> {
        if self.dt(&t) == Dt::Bool {
            return no("a reduction of a bool tensor");
        }
        let rank = t.shape.len();
        let mut axes: Vec<usize> = match dims {
            None => (0..rank).collect(),
            Some(ds) => ds
                .iter()
                .map(|&d| norm_dim(d, rank))
                .collect::<R<Vec<_>>>()?,
        };
        axes.sort_unstable();
        axes.dedup();
        if rank == 0 {
            axes.clear();
        }
        let mut shape = Vec::new();
        for (i, &d) in t.shape.iter().enumerate() {
            if axes.contains(&i) {
                if keepdim {
                    shape.push(1);
                }
            } else {
                shape.push(d);
            }
        }
        self.flops += numel(&t.shape) as u64;
        let batched = self.batched(&[&t]);
        Ok(self.push(
            NodeKind::Reduce { op, src: t, axes },
            shape,
            batched,
            Dt::F32,
        ))
    }

    fn softmax(&mut self, t: View, dim: i64, log: bool) -> R<View> {
        let m = self.reduce(Red::Max, t.clone(), Some(vec![dim]), true)?;
        let z = self.binary(Bin::Sub, t, m)?;
        let e = self.unary(Un::Exp, z.clone())?;
        let s = self.reduce(Red::Sum, e.clone(), Some(vec![dim]), true)?;
        if log {
            let ls = self.unary(Un::Log, s)?;
            self.binary(Bin::Sub, z, ls)
        } else {
            self.binary(Bin::Div, e, s)
        }
    }

    fn matmul(&mut self, a: View, b: View) -> R<View> {
        if self.dt(&a) == Dt::Bool || self.dt(&b) == Dt::Bool {
            return no("a product of bool tensors");
        }
        // The GEMM reads buffers: a constant (an immediate) gets one first.
        let mut a = a;
        let mut b = b;
        for v in [&mut a, &mut b] {
            if matches!(self.node(v).kind, NodeKind::Const(_)) {
                *v = self.materialise(v.clone());
            }
        }
        let (ra, rb) = (a.shape.len(), b.shape.len());
        if !(1..=2).contains(&ra) || !(1..=2).contains(&rb) {
            return no("a product of tensors of rank above 2");
        }
        let k = a.shape[ra - 1];
        if b.shape[0] != k {
            return no("a product with mismatched inner dims");
        }
        let mut shape = Vec::new();
        if ra == 2 {
            shape.push(a.shape[0]);
        }
        if rb == 2 {
            shape.push(b.shape[1]);
        }
        let batched = self.batched(&[&a, &b]);
        self.flops += 2 * (numel(&shape).max(1) * k) as u64;
        Ok(self.push(NodeKind::MatMul(a, b), shape, batched, Dt::F32))
    }

    fn act(&mut self, a: Act, x: View) -> R<Av> {
        match a {
            Act::Unary(u) => self.unary(u, x).map(Av::T),
            Act::Identity => Ok(Av::T(x)),
            Act::Softmax(d) => {
                let dim = d.unwrap_or(if x.shape.len() <= 1 { 0 } else { -1 });
                if d.is_none() && !matches!(x.shape.len(), 0 | 1 | 3) {
                    return no("softmax without dim");
                }
                self.softmax(x, dim, false).map(Av::T)
            }
        }
    }

    fn binop(&mut self, op: BinOp, a: Av, b: Av) -> R<Av> {
        // Python arithmetic on constants folds.
        match (&a, &b) {
            (Av::Int(x), Av::Int(y)) => {
                return match op {
                    BinOp::Add => Ok(Av::Int(x.wrapping_add(*y))),
                    BinOp::Sub => Ok(Av::Int(x.wrapping_sub(*y))),
                    BinOp::Mul => Ok(Av::Int(x.wrapping_mul(*y))),
                    BinOp::Div if *y != 0 => Ok(Av::Float(*x as f64 / *y as f64)),
                    BinOp::FloorDiv if *y != 0 => Ok(Av::Int(x.div_euclid(*y))),
                    _ => no("this integer arithmetic"),
                };
            }
            (Av::Int(_) | Av::Float(_), Av::Int(_) | Av::Float(_)) => {
                let f = |v: &Av| match v {
                    Av::Int(i) => *i as f64,
                    Av::Float(x) => *x,
                    _ => 0.0,
                };
                let (x, y) = (f(&a), f(&b));
                return match op {
                    BinOp::Add => Ok(Av::Float(x + y)),
                    BinOp::Sub => Ok(Av::Float(x - y)),
                    BinOp::Mul => Ok(Av::Float(x * y)),
                    BinOp::Div => Ok(Av::Float(x / y)),
                    BinOp::Pow => Ok(Av::Float(x.powf(y))),
                    _ => no("this float arithmetic"),
                };
            }
            (Av::List(_), _) | (_, Av::List(_)) => return no("arithmetic on lists"),
            _ => {}
        }
        let a = self.tensor(a)?;
        let b = self.tensor(b)?;
        let bin = match op {
            BinOp::Add => Bin::Add,
            BinOp::Sub => Bin::Sub,
            BinOp::Mul => Bin::Mul,
            BinOp::Div => Bin::Div,
            BinOp::Pow => Bin::Pow,
            BinOp::MatMul => return self.matmul(a, b).map(Av::T),
            _ => return no("`//` or `%` on tensors"),
        };
        self.binary(bin, a, b).map(Av::T)
    }
}

fn offset_add(off: usize, delta: isize) -> R<usize> {
    match off.checked_add_signed(delta) {
        Some(o) => Ok(o),
        None => no("an index before the start of a buffer"),
    }
}

/// Call arguments: positional (receiver first) and keywords.
struct Args {
    pos: Vec<Av>,
    kw: Vec<(&'static str, Av)>,
}

impl Args {
    fn get(&self, i: usize, name: &str) -> Option<&Av> {
        self.kw
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .or_else(|| self.pos.get(i))
    }

    fn kw(&self, name: &str) -> Option<&Av> {
        self.kw.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn only(&self, names: &[&str]) -> R<()> {
        match self.kw.iter().find(|(k, _)| !names.contains(k)) {
            Some((k, _)) => no(format!("keyword `{k}`")),
            None => Ok(()),
        }
    }
}

impl Cx<'_> {
    fn arg_t(&mut self, a: &Args, i: usize, name: &str) -> R<View> {
        match a.get(i, name) {
            Some(v) => self.tensor(v.clone()),
            None => no(format!("missing argument `{name}`")),
        }
    }

    fn dims_arg(&self, a: &Args, i: usize) -> R<Option<Vec<i64>>> {
        match a.get(i, "dim").or_else(|| a.kw("axis")) {
            None | Some(Av::None) => Ok(None),
            Some(v) => Ok(Some(self.ints(v)?)),
        }
    }

    fn keepdim(&self, a: &Args, i: usize) -> R<bool> {
        match a.get(i, "keepdim") {
            None => Ok(false),
            Some(Av::Bool(b)) => Ok(*b),
            Some(_) => no("a non-constant keepdim"),
        }
    }

    fn shape_args(&self, a: &Args) -> R<Vec<i64>> {
        let rest: Vec<Av> = a.pos.iter().skip(1).cloned().collect();
        match (rest.as_slice(), a.kw("shape").or_else(|| a.kw("size"))) {
            ([Av::List(items)], _) => items.iter().map(|x| self.int(x)).collect(),
            ([], Some(v)) => self.ints(v),
            (items, None) => items.iter().map(|x| self.int(x)).collect(),
            _ => no("shape arguments"),
        }
    }

    fn call(&mut self, f: Builtin, pos: Vec<Av>, kw: Vec<(&'static str, Av)>) -> R<Av> {
        use Builtin as B;
        let a = Args { pos, kw };
        let un = match f.unary_op() {
            Some(Un::Gelu) if a.kw("approximate").is_some() => {
                return no("gelu(approximate=..)");
            }
            u => u,
        };
        if let Some(u) = un {
            a.only(&["input", "approximate"])?;
            if a.pos.len() != 1 && a.kw("input").is_none() {
                return no("a unary function with extra arguments");
            }
            // Python-number math stays Python.
            if let Some(Av::Int(_) | Av::Float(_)) = a.pos.first() {
                return no("math on Python numbers");
            }
            let x = self.arg_t(&a, 0, "input")?;
            return self.unary(u, x).map(Av::T);
        }
        let bin = match f {
            B::Add => Some(Bin::Add),
            B::Sub => Some(Bin::Sub),
            B::Mul => Some(Bin::Mul),
            B::Div => Some(Bin::Div),
            B::Pow => Some(Bin::Pow),
            B::Maximum => Some(Bin::Max),
            B::Minimum => Some(Bin::Min),
            B::Gt => Some(Bin::Gt),
            B::Ge => Some(Bin::Ge),
            B::Lt => Some(Bin::Lt),
            B::Le => Some(Bin::Le),
            B::Eq => Some(Bin::Eq),
            B::Ne => Some(Bin::Ne),
            B::Max | B::Min if a.pos.len() == 2 && matches!(a.pos.get(1), Some(Av::T(_))) => {
                Some(if f == B::Max { Bin::Max } else { Bin::Min })
            }
            _ => None,
        };
        if let Some(op) = bin {
            a.only(&["input", "other", "exponent"])?;
            if a.pos.len() + a.kw.len() != 2 {
                return no("a binary function with other than two arguments");
            }
            let x = self.arg_t(&a, 0, "input")?;
            let y = match a.get(1, "other").or_else(|| a.kw("exponent")) {
                Some(v) => self.tensor(v.clone())?,
                None => return no("missing second operand"),
            };
            return self.binary(op, x, y).map(Av::T);
        }
        self.call_rest(f, a)
    }

    fn call_rest(&mut self, f: Builtin, a: Args) -> R<Av> {
        use Builtin as B;
        match f {
            B::Sum | B::Mean | B::Amax | B::Amin | B::Max | B::Min => {
                a.only(&["input", "dim", "keepdim", "axis"])?;
                let op = match f {
                    B::Sum => Red::Sum,
                    B::Mean => Red::Mean,
                    B::Amax => Red::Max,
                    B::Amin => Red::Min,
                    _ => {
                        if a.get(1, "dim").is_some() || a.kw("axis").is_some() {
                            return self.max_dim(f == B::Max, &a);
                        }
                        if f == B::Max { Red::Max } else { Red::Min }
                    }
                };
                let x = self.arg_t(&a, 0, "input")?;
                let dims = self.dims_arg(&a, 1)?;
                let keep = self.keepdim(&a, 2)?;
                self.reduce(op, x, dims, keep).map(Av::T)
            }
            B::Softmax | B::LogSoftmax => {
                a.only(&["input", "dim"])?;
                let x = self.arg_t(&a, 0, "input")?;
                let Some(dim) = a.get(1, "dim") else {
                    return no("softmax without dim");
                };
                let dim = self.int(dim)?;
                self.softmax(x, dim, f == B::LogSoftmax).map(Av::T)
            }
            B::Matmul | B::Mm | B::Dot => {
                a.only(&["input", "other", "mat2", "vec"])?;
                let x = self.arg_t(&a, 0, "input")?;
                let y = match a
                    .get(1, "other")
                    .or_else(|| a.kw("mat2"))
                    .or_else(|| a.kw("vec"))
                {
                    Some(v) => self.tensor(v.clone())?,
                    None => return no("missing second operand"),
                };
                self.matmul(x, y).map(Av::T)
            }
            B::Where => {
                a.only(&["condition", "input", "other"])?;
                let c = self.arg_t(&a, 0, "condition")?;
                let x = self.arg_t(&a, 1, "input")?;
                let y = self.arg_t(&a, 2, "other")?;
                self.select(c, x, y).map(Av::T)
            }
            B::MaskedFill => {
                a.only(&["input", "mask", "value"])?;
                let x = self.arg_t(&a, 0, "input")?;
                let m = self.arg_t(&a, 1, "mask")?;
                let v = self.arg_t(&a, 2, "value")?;
                self.select(m, v, x).map(Av::T)
            }
            B::Clamp => {
                a.only(&["input", "min", "max"])?;
                let mut x = self.arg_t(&a, 0, "input")?;
                if let Some(lo) = a.get(1, "min").cloned().filter(|v| !matches!(v, Av::None)) {
                    let lo = self.tensor(lo)?;
                    x = self.binary(Bin::Max, x, lo)?;
                }
                if let Some(hi) = a.get(2, "max").cloned().filter(|v| !matches!(v, Av::None)) {
                    let hi = self.tensor(hi)?;
                    x = self.binary(Bin::Min, x, hi)?;
                }
                Ok(Av::T(x))
            }
            _ => self.call_built(f, a),
        }
    }

    fn call_shape(&mut self, f: Builtin, a: Args) -> R<Av> {
        use Builtin as B;
        let x = match a.pos.first() {
            Some(Av::T(t)) => t.clone(),
            _ => return no(format!("`{}` outside the compiled subset", f.name())),
        };
        let rank = x.shape.len();
        match f {
            B::Identity => Ok(Av::T(x)),
            B::ToFloat => {
                if self.dt(&x) == Dt::Bool {
                    // Same 0/1 bits; a copy gives the value its float dtype.
                    let y = self.materialise(x);
                    self.nodes[y.node].dt = Dt::F32;
                    Ok(Av::T(y))
                } else {
                    Ok(Av::T(x))
                }
            }
            B::Reshape | B::View => {
                let dims = self.shape_args(&a)?;
                self.reshape(x, &dims).map(Av::T)
            }
            B::Flatten => {
                a.only(&["start_dim", "end_dim"])?;
                if a.pos.len() > 1 || !a.kw.is_empty() {
                    return no("flatten with dims");
                }
                let n = numel(&x.shape) as i64;
                self.reshape(x, &[n]).map(Av::T)
            }
            B::Unsqueeze => {
                let Some(d) = a.get(1, "dim") else {
                    return no("unsqueeze without dim");
                };
                let d = self.int(d)?;
                let d = norm_dim(d, rank + 1)?;
                let mut v = x;
                v.shape.insert(d, 1);
                v.strides.insert(d, 0);
                Ok(Av::T(v))
            }
            B::Squeeze => {
                let mut v = x;
                match a.get(1, "dim") {
                    None => {
                        let keep: Vec<(usize, isize)> = v
                            .shape
                            .iter()
                            .copied()
                            .zip(v.strides.iter().copied())
                            .filter(|(d, _)| *d != 1)
                            .collect();
                        v.shape = keep.iter().map(|p| p.0).collect();
                        v.strides = keep.iter().map(|p| p.1).collect();
                    }
                    Some(d) => {
                        let d = norm_dim(self.int(d)?, rank)?;
                        if v.shape[d] == 1 {
                            v.shape.remove(d);
                            v.strides.remove(d);
                        }
                    }
                }
                Ok(Av::T(v))
            }
            B::Transpose => {
                let (Some(d0), Some(d1)) = (a.get(1, "dim0"), a.get(2, "dim1")) else {
                    return no("transpose without dims");
                };
                let (d0, d1) = (
                    norm_dim(self.int(d0)?, rank)?,
                    norm_dim(self.int(d1)?, rank)?,
                );
                let mut v = x;
                v.shape.swap(d0, d1);
                v.strides.swap(d0, d1);
                Ok(Av::T(v))
            }
            B::TMethod => {
                let mut v = x;
                v.shape.reverse();
                v.strides.reverse();
                Ok(Av::T(v))
            }
            B::Permute => {
                let dims = self.shape_args(&a)?;
                if dims.len() != rank {
                    return no("permute with the wrong number of dims");
                }
                let mut perm = Vec::new();
                for d in dims {
                    perm.push(norm_dim(d, rank)?);
                }
                let mut seen = perm.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != rank {
                    return no("permute with repeated dims");
                }
                Ok(Av::T(View {
                    node: x.node,
                    offset: x.offset,
                    shape: perm.iter().map(|&p| x.shape[p]).collect(),
                    strides: perm.iter().map(|&p| x.strides[p]).collect(),
                }))
            }
            B::Expand => {
                let dims = self.shape_args(&a)?;
                let want: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if d == -1 {
                            let pad = dims.len().saturating_sub(rank);
                            x.shape.get(i.wrapping_sub(pad)).copied().unwrap_or(1)
                        } else {
                            d.max(0) as usize
                        }
                    })
                    .collect();
                if bcast(&x.shape, &want)? != want {
                    return no("expand to an incompatible shape");
                }
                Ok(Av::T(x.expand_to(&want)))
            }
            _ => no(format!("`{}` outside the compiled subset", f.name())),
        }
    }
}

/// How many times each node is read (by other nodes and by the outputs).
pub fn use_counts(g: &Graph) -> Vec<usize> {
    let mut uses = vec![0usize; g.nodes.len()];
    for n in &g.nodes {
        for v in n.kind.operands() {
            uses[v.node] += 1;
        }
    }
    for v in &g.outputs {
        uses[v.node] += 1;
    }
    uses
}
