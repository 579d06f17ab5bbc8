//! FLOPs of one element-function call, from its IR body and concrete shapes (DESIGN §12).
//!
//! [`fn_flops`] walks a lowered [`Body`] once with *abstract* values: a tensor is only its
//! shape, a Python int its value when known. Every builtin call is charged by its row of the
//! one builtin table ([`Builtin::cost`]): `PerOut(c)` × output elements, `PerIn(c)` × input
//! elements, contractions 2·(batch)·m·k·n from the operand shapes (einsum: 2 × the product of
//! every index's size), shape and indexing moves nothing. Operators count like their builtin
//! (`+ - * /` and comparisons 1 per output element, `**` 4, `@` a contraction).
//!
//! Assumptions, stated once:
//! - Both arms of a conditional expression are walked; the dearer one is charged.
//! - A list comprehension over a list of known length is walked per item; over anything else
//!   once.
//! - Where a shape cannot be derived (a construct the walker does not model, such as advanced
//!   indexing into an unknown tensor), an elementwise node is charged as if its result had as
//!   many elements as the largest input or output field of the call. The walker never fails:
//!   an unknown value is a value too.
//!
//! The walk is bounded by the body's size (each statement once, list comprehensions at most
//! [`MAX_UNROLL`] times), so it is safe on any body the lowering produced.

use stepforge_ir::builtin::{Builtin, Class, Cost};
use stepforge_ir::func::{Attr, BinOp, Body, Const, Expr, ExprId, Index, Key, Stmt, Target, UnOp};

/// The most items a list comprehension is walked for; longer ones are charged per item from
/// one walk.
pub const MAX_UNROLL: usize = 256;

/// An abstract value: what the FLOP count needs to know about a runtime value.
#[derive(Debug, Clone, PartialEq)]
pub enum AVal {
    /// Not modelled.
    Unknown,
    None,
    /// A Python int (or bool) with its value.
    Int(i64),
    /// A Python float (value not needed).
    Num,
    /// A tensor of this shape (outermost first; `[]` is a 0-d tensor).
    Tensor(Vec<usize>),
    List(Vec<AVal>),
    /// A callable value: a builtin (`torch.sigmoid`) or a module object (`torch.nn.GELU()`),
    /// with a module's fixed `dim` (Softmax).
    Callable(Builtin, Option<i64>),
}

/// What a body's names denote at a run: `global` bindings, `input_data` tensors, dims.
pub trait ShapeEnv {
    /// A name bound by the task's `global` block.
    fn global(&self, name: &str) -> AVal;
    /// The shape of `input_data[name]`.
    fn data(&self, name: &str) -> Option<Vec<usize>>;
    /// A dimension's value.
    fn dim(&self, name: &str) -> Option<i64>;
}

/// A [`ShapeEnv`] that knows nothing (globals and parameters unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl ShapeEnv for NoNames {
    fn global(&self, _: &str) -> AVal {
        AVal::Unknown
    }
    fn data(&self, _: &str) -> Option<Vec<usize>> {
        None
    }
    fn dim(&self, _: &str) -> Option<i64> {
        None
    }
}

/// FLOPs of one call of `body` on an element whose fields have the shapes `inputs`; a
/// reducer's state fields have the shapes `state`. At least 1.
pub fn fn_flops(
    body: &Body,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    names: &dyn ShapeEnv,
) -> u64 {
    count(body, inputs, state, names).flops
}

/// A FLOP count and how many nodes were charged by the fallback size (0: every shape was
/// derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlopCount {
    pub flops: u64,
    pub estimated: u32,
}

/// [`fn_flops`] with the number of estimated nodes.
pub fn count(
    body: &Body,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    names: &dyn ShapeEnv,
) -> FlopCount {
    let numel = |s: &Vec<usize>| s.iter().map(|&d| d as u64).product::<u64>();
    let fallback = inputs
        .iter()
        .chain(state.unwrap_or(&[]))
        .map(numel)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut w = Walker {
        body,
        names,
        slots: vec![AVal::Unknown; body.slot_names.len().max(2)],
        flops: 0,
        fallback,
        equation: None,
        estimated: 0,
    };
    let tensors = |s: &[Vec<usize>]| AVal::List(s.iter().cloned().map(AVal::Tensor).collect());
    w.slots[0] = tensors(inputs);
    if let Some(s) = state {
        w.slots[1] = tensors(s);
    }
    for s in &body.stmts {
        match s {
            Stmt::Assign(t, e) => {
                let v = w.eval(*e);
                w.bind(t, v);
            }
            Stmt::Expr(e) => {
                w.eval(*e);
            }
            Stmt::Return(e) => {
                w.eval(*e);
                break;
            }
        }
    }
    FlopCount {
        flops: w.flops.max(1),
        estimated: w.estimated,
    }
}

fn numel(s: &[usize]) -> u64 {
    s.iter().map(|&d| d as u64).fold(1u64, u64::saturating_mul)
}

/// Normalises a possibly negative dim index against `rank`.
fn axis(d: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if d < 0 { d + r } else { d };
    usize::try_from(a).ok().filter(|&a| a < rank.max(1))
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    stepforge_tensor::broadcast_shapes(a, b).ok()
}

/// Shape and FLOPs of `a @ b` (torch.matmul rules).
fn matmul(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, u64)> {
    let (a2, drop_m) = if a.len() == 1 {
        (vec![1, a[0]], true)
    } else {
        (a.to_vec(), false)
    };
    let (b2, drop_n) = if b.len() == 1 {
        (vec![b[0], 1], true)
    } else {
        (b.to_vec(), false)
    };
    if a2.len() < 2 || b2.len() < 2 {
        return None;
    }
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let n = b2[b2.len() - 1];
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let batch = numel(&out);
    if !drop_m {
        out.push(m);
    }
    if !drop_n {
        out.push(n);
    }
    let flops = 2u64
        .saturating_mul(batch)
        .saturating_mul(m as u64)
        .saturating_mul(k as u64)
        .saturating_mul(n as u64);
    Some((out, flops))
}

/// Shape and FLOPs of `torch.einsum(eq, ops..)`.
fn einsum(eq: &str, ops: &[Vec<usize>]) -> Option<(Vec<usize>, u64)> {
    let (lhs, rhs) = eq.split_once("->")?;
    let mut size = std::collections::BTreeMap::new();
    for (term, shape) in lhs.split(',').zip(ops) {
        let letters: Vec<char> = term.trim().chars().collect();
        if letters.len() != shape.len() {
            return None;
        }
        for (c, &d) in letters.into_iter().zip(shape) {
            size.insert(c, d);
        }
    }
    let out: Option<Vec<usize>> = rhs.trim().chars().map(|c| size.get(&c).copied()).collect();
    let all: u64 = size.values().map(|&d| d as u64).product();
    let f = if ops.len() > 1 { 2 } else { 1 };
    Some((out?, all.saturating_mul(f)))
}

struct Walker<'a> {
    body: &'a Body,
    names: &'a dyn ShapeEnv,
    slots: Vec<AVal>,
    flops: u64,
    fallback: u64,
    /// The equation of the einsum call being charged.
    equation: Option<String>,
    estimated: u32,
}

impl Walker<'_> {
    fn add(&mut self, f: u64) {
        self.flops = self.flops.saturating_add(f);
    }

    /// Charges `per` FLOPs per element of `shape` (the fallback size when unknown).
    fn per(&mut self, per: u32, shape: Option<&[usize]>) {
        if shape.is_none() {
            self.estimated = self.estimated.saturating_add(1);
        }
        let n = shape.map_or(self.fallback, numel);
        self.add(n.saturating_mul(u64::from(per)));
    }

    fn bind(&mut self, t: &Target, v: AVal) {
        match t {
            Target::Slot(s) | Target::DimName { slot: s, .. } => {
                if let Some(x) = self.slots.get_mut(*s as usize) {
                    *x = v;
                }
            }
            Target::Tuple(items, _) => {
                for (i, t) in items.iter().enumerate() {
                    let item = match &v {
                        AVal::List(l) => l.get(i).cloned().unwrap_or(AVal::Unknown),
                        _ => AVal::Unknown,
                    };
                    self.bind(t, item);
                }
            }
            Target::Item { .. } | Target::Ctx(..) => {}
        }
    }

    fn int(&mut self, e: ExprId) -> Option<i64> {
        match self.eval(e) {
            AVal::Int(i) => Some(i),
            _ => None,
        }
    }

    fn eval(&mut self, id: ExprId) -> AVal {
        match self.body.expr(id) {
            Expr::Const(c) => match c {
                Const::None => AVal::None,
                Const::Bool(b) => AVal::Int(i64::from(*b)),
                Const::Int(i) => AVal::Int(*i),
                Const::Float(_) => AVal::Num,
                Const::Builtin(b) => AVal::Callable(*b, None),
                _ => AVal::Unknown,
            },
            Expr::Slot(s) => self
                .slots
                .get(*s as usize)
                .cloned()
                .unwrap_or(AVal::Unknown),
            Expr::Global(n) => self.names.global(n),
            Expr::DimValue(d) => self.names.dim(d).map_or(AVal::Unknown, AVal::Int),
            Expr::CtxGet(Key::Const(k)) => self.names.dim(k).map_or(AVal::Unknown, AVal::Int),
            Expr::DataGet(Key::Const(k)) => self.names.data(k).map_or(AVal::Unknown, AVal::Tensor),
            Expr::CtxGet(Key::Dyn(e)) | Expr::DataGet(Key::Dyn(e)) => {
                self.eval(*e);
                AVal::Unknown
            }
            Expr::Attr(v, a) => {
                let v = self.eval(*v);
                attr(v, *a)
            }
            Expr::Call {
                func, recv, args, ..
            } => {
                let mut ops = Vec::with_capacity(args.len() + 1);
                if let Some(r) = recv {
                    ops.push(self.eval(*r));
                }
                for a in args {
                    ops.push(self.eval(*a));
                }
                let kw = self.kwargs(id);
                if *func == Builtin::Einsum {
                    // The equation is the first argument, a string constant.
                    self.equation = args.first().and_then(|a| match self.body.expr(*a) {
                        Expr::Const(Const::Str(s)) => Some(s.to_string()),
                        _ => None,
                    });
                }
                self.call(*func, None, ops, &kw)
            }
            Expr::CallValue { func, args, .. } => {
                let f = self.eval(*func);
                let ops: Vec<AVal> = args.iter().map(|a| self.eval(*a)).collect();
                let kw = self.kwargs(id);
                match f {
                    AVal::Callable(b, dim) => self.call(b, dim, ops, &kw),
                    _ => {
                        self.per(1, None);
                        AVal::Unknown
                    }
                }
            }
            Expr::Subscript(v, items) => {
                let v = self.eval(*v);
                self.subscript(v, items)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.eval(*a), self.eval(*b));
                self.binary(*op, a, b)
            }
            Expr::Unary(op, a) => {
                let a = self.eval(*a);
                match (op, a) {
                    (UnOp::Not, _) => AVal::Int(0),
                    (UnOp::Neg, AVal::Int(i)) => AVal::Int(i.saturating_neg()),
                    (UnOp::Neg, AVal::Tensor(s)) => {
                        self.per(1, Some(&s));
                        AVal::Tensor(s)
                    }
                    (_, v) => v,
                }
            }
            Expr::Compare(first, rest) => {
                let mut shape = self.eval(*first);
                for (_, e) in rest {
                    let b = self.eval(*e);
                    shape = self.elementwise(1, &[shape, b]);
                }
                shape
            }
            Expr::IfElse { cond, then, orelse } => {
                self.eval(*cond);
                let before = self.flops;
                let t = self.eval(*then);
                let ft = self.flops - before;
                self.flops = before;
                self.eval(*orelse);
                let fe = self.flops - before;
                self.flops = before + ft.max(fe);
                t
            }
            Expr::List(items) | Expr::Tuple(items) => {
                AVal::List(items.iter().map(|e| self.eval(*e)).collect())
            }
            Expr::ListComp { elt, target, iter } => {
                let it = self.eval(*iter);
                match it {
                    AVal::List(items) if items.len() <= MAX_UNROLL => {
                        let mut out = Vec::with_capacity(items.len());
                        for item in items {
                            self.bind(target, item);
                            out.push(self.eval(*elt));
                        }
                        AVal::List(out)
                    }
                    AVal::List(items) => {
                        let before = self.flops;
                        self.bind(target, items.first().cloned().unwrap_or(AVal::Unknown));
                        self.eval(*elt);
                        let one = self.flops - before;
                        self.flops = before.saturating_add(one.saturating_mul(items.len() as u64));
                        AVal::Unknown
                    }
                    _ => {
                        self.bind(target, AVal::Unknown);
                        self.eval(*elt);
                        AVal::Unknown
                    }
                }
            }
            Expr::FString(_) => AVal::Unknown,
        }
    }

    /// The keyword arguments of call `id`, evaluated.
    fn kwargs(&mut self, id: ExprId) -> Vec<(&'static str, AVal)> {
        let kw: Vec<(&'static str, ExprId)> = match self.body.expr(id) {
            Expr::Call { kwargs, .. } | Expr::CallValue { kwargs, .. } => kwargs.clone(),
            _ => Vec::new(),
        };
        kw.into_iter().map(|(k, e)| (k, self.eval(e))).collect()
    }

    /// Elementwise over `ops` (broadcast), `per` FLOPs per output element.
    fn elementwise(&mut self, per: u32, ops: &[AVal]) -> AVal {
        let mut shape: Option<Vec<usize>> = None;
        let mut unknown = false;
        let mut any_tensor = false;
        for o in ops {
            match o {
                AVal::Tensor(s) => {
                    any_tensor = true;
                    shape = match shape {
                        None => Some(s.clone()),
                        Some(p) => broadcast(&p, s),
                    };
                    if shape.is_none() {
                        unknown = true;
                    }
                }
                AVal::Unknown | AVal::List(_) => unknown = true,
                _ => {}
            }
        }
        if !any_tensor && !unknown {
            // Python arithmetic on numbers costs nothing on the accelerator.
            return AVal::Num;
        }
        match shape.filter(|_| !unknown || any_tensor) {
            Some(s) => {
                self.per(per, Some(&s));
                AVal::Tensor(s)
            }
            None => {
                self.per(per, None);
                AVal::Unknown
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: AVal, b: AVal) -> AVal {
        if let (AVal::Int(x), AVal::Int(y)) = (&a, &b) {
            let (x, y) = (*x, *y);
            let v = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::FloorDiv => x.checked_div_euclid(y),
                BinOp::Mod => x.checked_rem_euclid(y),
                _ => None,
            };
            return v.map_or(AVal::Num, AVal::Int);
        }
        match op {
            BinOp::MatMul => self.contract(&a, &b),
            BinOp::Pow => self.elementwise(4, &[a, b]),
            _ => self.elementwise(1, &[a, b]),
        }
    }

    fn contract(&mut self, a: &AVal, b: &AVal) -> AVal {
        match (a, b) {
            (AVal::Tensor(x), AVal::Tensor(y)) => match matmul(x, y) {
                Some((s, f)) => {
                    self.add(f);
                    AVal::Tensor(s)
                }
                None => {
                    self.per(2, None);
                    AVal::Unknown
                }
            },
            _ => {
                self.per(2, None);
                AVal::Unknown
            }
        }
    }

    fn subscript(&mut self, v: AVal, items: &[Index]) -> AVal {
        match v {
            AVal::List(l) => match items {
                [Index::Index(e)] => match self.eval(*e) {
                    AVal::Int(i) => {
                        let n = l.len() as i64;
                        let i = if i < 0 { i + n } else { i };
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| l.get(i).cloned())
                            .unwrap_or(AVal::Unknown)
                    }
                    _ => AVal::Unknown,
                },
                _ => AVal::Unknown,
            },
            AVal::Tensor(s) => self
                .index_tensor(&s, items)
                .map_or(AVal::Unknown, AVal::Tensor),
            _ => {
                for i in items {
                    if let Index::Index(e) = i {
                        self.eval(*e);
                    }
                }
                AVal::Unknown
            }
        }
    }

    /// The shape of `t[items]` for a tensor of shape `s`.
    fn index_tensor(&mut self, s: &[usize], items: &[Index]) -> Option<Vec<usize>> {
        let consumed = items
            .iter()
            .filter(|i| match i {
                Index::Index(e) => !matches!(self.body.expr(*e), Expr::Const(Const::None)),
                Index::Slice(..) => true,
                Index::Ellipsis => false,
            })
            .count();
        let mut out = Vec::new();
        let mut d = 0usize;
        for it in items {
            match it {
                Index::Ellipsis => {
                    let skip = s.len().checked_sub(consumed)?;
                    out.extend_from_slice(s.get(d..d + skip)?);
                    d += skip;
                }
                Index::Index(e) => match self.eval(*e) {
                    AVal::None => out.push(1),
                    AVal::Int(_) => d += 1,
                    AVal::Tensor(ix) => {
                        out.extend(ix);
                        d += 1;
                    }
                    _ => return None,
                },
                Index::Slice(a, b, c) => {
                    let n = *s.get(d)? as i64;
                    let mut get = |e: &Option<ExprId>| e.map(|e| self.int(e));
                    let (a, b, c) = (get(a), get(b), get(c));
                    let step = match c {
                        None => 1,
                        Some(Some(c)) if c > 0 => c,
                        _ => return None,
                    };
                    let clamp = |x: i64| if x < 0 { (x + n).max(0) } else { x.min(n) };
                    let lo = match a {
                        None => 0,
                        Some(Some(a)) => clamp(a),
                        Some(None) => return None,
                    };
                    let hi = match b {
                        None => n,
                        Some(Some(b)) => clamp(b),
                        Some(None) => return None,
                    };
                    let len = if hi > lo {
                        (hi - lo + step - 1) / step
                    } else {
                        0
                    };
                    out.push(usize::try_from(len).ok()?);
                    d += 1;
                }
            }
        }
        out.extend_from_slice(s.get(d..)?);
        Some(out)
    }

    /// A builtin applied to `ops` (the receiver first for methods).
    fn call(
        &mut self,
        b: Builtin,
        fixed_dim: Option<i64>,
        ops: Vec<AVal>,
        kw: &[(&'static str, AVal)],
    ) -> AVal {
        let kwarg = |name: &str| kw.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let first_shape = || match ops.first() {
            Some(AVal::Tensor(s)) => Some(s.clone()),
            _ => None,
        };
        match b.class() {
            Class::Unary | Class::Binary => {
                let per = match b.cost() {
                    Cost::PerOut(c) => c,
                    _ => 1,
                };
                self.elementwise(per, &ops)
            }
            Class::Reduce => self.reduce(b, fixed_dim, &ops, kw),
            Class::Linalg => match b {
                Builtin::Einsum => {
                    let shapes: Option<Vec<Vec<usize>>> = ops
                        .iter()
                        .filter(|o| !matches!(o, AVal::Unknown))
                        .map(|o| match o {
                            AVal::Tensor(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    let eq = self.equation.take();
                    match eq.zip(shapes).and_then(|(eq, sh)| einsum(&eq, &sh)) {
                        Some((s, f)) => {
                            self.add(f);
                            AVal::Tensor(s)
                        }
                        None => self.elementwise(2, &ops),
                    }
                }
                Builtin::Outer => match (ops.first(), ops.get(1)) {
                    (Some(AVal::Tensor(a)), Some(AVal::Tensor(c))) => {
                        let s = vec![numel(a) as usize, numel(c) as usize];
                        self.per(1, Some(&s));
                        AVal::Tensor(s)
                    }
                    _ => self.elementwise(1, &ops),
                },
                _ => match (ops.first(), ops.get(1)) {
                    (Some(a), Some(c)) => {
                        let (a, c) = (a.clone(), c.clone());
                        self.contract(&a, &c)
                    }
                    _ => self.elementwise(2, &ops),
                },
            },
            Class::Shape => shape_op(b, &ops, &kwarg),
            Class::Index => {
                let s = match b {
                    Builtin::Gather => match ops.get(2) {
                        Some(AVal::Tensor(ix)) => Some(ix.clone()),
                        _ => None,
                    },
                    Builtin::OneHot => None,
                    Builtin::IndexSelect => None,
                    _ => first_shape(),
                };
                if let Cost::PerOut(c) = b.cost() {
                    self.per(c, s.as_deref());
                }
                s.map_or(AVal::Unknown, AVal::Tensor)
            }
            Class::Creation => creation(b, &ops, &kwarg),
            Class::Nn => match b {
                Builtin::LayerNorm | Builtin::NativeLayerNorm => {
                    let s = first_shape();
                    if let Cost::PerIn(c) = b.cost() {
                        self.per(c, s.as_deref());
                    }
                    let t = s.map_or(AVal::Unknown, AVal::Tensor);
                    if b == Builtin::NativeLayerNorm {
                        AVal::List(vec![t, AVal::Unknown, AVal::Unknown])
                    } else {
                        t
                    }
                }
                Builtin::NnGelu => AVal::Callable(Builtin::Gelu, None),
                Builtin::NnSigmoid => AVal::Callable(Builtin::Sigmoid, None),
                Builtin::NnSilu => AVal::Callable(Builtin::Silu, None),
                Builtin::NnRelu => AVal::Callable(Builtin::Relu, None),
                Builtin::NnTanh => AVal::Callable(Builtin::Tanh, None),
                Builtin::NnIdentity => AVal::Callable(Builtin::Identity, None),
                Builtin::NnSoftmax | Builtin::NnLogSoftmax => {
                    let dim = match kwarg("dim").or_else(|| ops.first().cloned()) {
                        Some(AVal::Int(d)) => Some(d),
                        _ => None,
                    };
                    let f = if b == Builtin::NnSoftmax {
                        Builtin::Softmax
                    } else {
                        Builtin::LogSoftmax
                    };
                    AVal::Callable(f, dim)
                }
                _ => AVal::Unknown,
            },
            Class::Py => py_op(b, &ops),
        }
    }

    fn reduce(
        &mut self,
        b: Builtin,
        fixed_dim: Option<i64>,
        ops: &[AVal],
        kw: &[(&'static str, AVal)],
    ) -> AVal {
        let kwarg = |name: &str| kw.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let tensors = ops.iter().filter(|o| matches!(o, AVal::Tensor(_))).count();
        if matches!(b, Builtin::Max | Builtin::Min) && tensors >= 2 {
            return self.elementwise(1, ops);
        }
        let Some(AVal::Tensor(s)) = ops.first().cloned() else {
            self.per(1, None);
            return AVal::Unknown;
        };
        let per = match b.cost() {
            Cost::PerIn(c) | Cost::PerOut(c) => c,
            _ => 1,
        };
        self.per(per, Some(&s));
        let rank = s.len();
        let dim_arg = kwarg("dim")
            .or_else(|| fixed_dim.map(AVal::Int))
            .or_else(|| match b {
                Builtin::Topk => None,
                _ => ops.get(1).cloned(),
            });
        let dims: Option<Vec<usize>> = match &dim_arg {
            Some(AVal::Int(d)) => axis(*d, rank).map(|a| vec![a]),
            Some(AVal::List(l)) => l
                .iter()
                .map(|v| match v {
                    AVal::Int(d) => axis(*d, rank),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        let keep = matches!(kwarg("keepdim"), Some(AVal::Int(1)));
        match b {
            Builtin::Softmax
            | Builtin::LogSoftmax
            | Builtin::Cumsum
            | Builtin::Cumprod
            | Builtin::Argsort => AVal::Tensor(s),
            Builtin::Sort => AVal::List(vec![AVal::Tensor(s.clone()), AVal::Tensor(s)]),
            Builtin::Topk => {
                let k = match kwarg("k").or_else(|| ops.get(1).cloned()) {
                    Some(AVal::Int(k)) => usize::try_from(k).ok(),
                    _ => None,
                };
                let d = match kwarg("dim").or_else(|| ops.get(2).cloned()) {
                    Some(AVal::Int(d)) => axis(d, rank),
                    _ => rank.checked_sub(1),
                };
                match (k, d) {
                    (Some(k), Some(d)) => {
                        let mut o = s;
                        o[d] = k;
                        AVal::List(vec![AVal::Tensor(o.clone()), AVal::Tensor(o)])
                    }
                    _ => AVal::List(vec![AVal::Unknown, AVal::Unknown]),
                }
            }
            _ => {
                let out = match &dims {
                    Some(ds) => s
                        .iter()
                        .enumerate()
                        .filter_map(|(i, &d)| {
                            if !ds.contains(&i) {
                                Some(d)
                            } else if keep {
                                Some(1)
                            } else {
                                None
                            }
                        })
                        .collect(),
                    None if dim_arg.is_none() => Vec::new(),
                    None => return AVal::Unknown,
                };
                if matches!(b, Builtin::Max | Builtin::Min) && dims.is_some() {
                    AVal::List(vec![AVal::Tensor(out.clone()), AVal::Tensor(out)])
                } else {
                    AVal::Tensor(out)
                }
            }
        }
    }
}

fn attr(v: AVal, a: Attr) -> AVal {
    match (a, v) {
        (Attr::T, AVal::Tensor(mut s)) => {
            s.reverse();
            AVal::Tensor(s)
        }
        (Attr::MT, AVal::Tensor(mut s)) if s.len() >= 2 => {
            let n = s.len();
            s.swap(n - 2, n - 1);
            AVal::Tensor(s)
        }
        (Attr::Shape, AVal::Tensor(s)) => AVal::List(
            s.iter()
                .map(|&d| AVal::Int(i64::try_from(d).unwrap_or(i64::MAX)))
                .collect(),
        ),
        (Attr::Ndim, AVal::Tensor(s)) => AVal::Int(s.len() as i64),
        (Attr::Data, v) => v,
        (Attr::Values, AVal::List(l)) => l.first().cloned().unwrap_or(AVal::Unknown),
        (Attr::Indices, AVal::List(l)) => l.get(1).cloned().unwrap_or(AVal::Unknown),
        _ => AVal::Unknown,
    }
}

/// Integers from `ops` (several int arguments, or one list/tuple of them).
fn int_list(ops: &[AVal]) -> Option<Vec<i64>> {
    match ops {
        [AVal::List(l)] => l
            .iter()
            .map(|v| match v {
                AVal::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => ops
            .iter()
            .map(|v| match v {
                AVal::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
    }
}

fn to_usize(v: &[i64]) -> Option<Vec<usize>> {
    v.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// Shapes of data-movement builtins (they cost nothing).
fn shape_op(b: Builtin, ops: &[AVal], kwarg: &dyn Fn(&str) -> Option<AVal>) -> AVal {
    let Some(AVal::Tensor(s)) = ops.first().cloned() else {
        return match (b, ops.first()) {
            (Builtin::Cat | Builtin::Stack, Some(AVal::List(l))) => join(b, l, ops, kwarg),
            _ => AVal::Unknown,
        };
    };
    let rest = &ops[1..];
    let int_at = |i: usize, name: &str| match kwarg(name).or_else(|| rest.get(i).cloned()) {
        Some(AVal::Int(d)) => Some(d),
        _ => None,
    };
    let rank = s.len();
    let out: Option<Vec<usize>> = match b {
        Builtin::Reshape | Builtin::View => int_list(rest).and_then(|want| {
            let total = numel(&s);
            let known: u64 = want
                .iter()
                .filter(|&&d| d >= 0)
                .map(|&d| d as u64)
                .product();
            let fill = total.checked_div(known).unwrap_or(0);
            to_usize(
                &want
                    .iter()
                    .map(|&d| if d < 0 { fill as i64 } else { d })
                    .collect::<Vec<_>>(),
            )
        }),
        Builtin::Unsqueeze => int_at(0, "dim").and_then(|d| {
            let a = axis(d, rank + 1)?;
            let mut o = s.clone();
            o.insert(a, 1);
            Some(o)
        }),
        Builtin::Squeeze => match int_at(0, "dim") {
            Some(d) => axis(d, rank).map(|a| {
                let mut o = s.clone();
                if o[a] == 1 {
                    o.remove(a);
                }
                o
            }),
            None => Some(s.iter().copied().filter(|&d| d != 1).collect()),
        },
        Builtin::Flatten => {
            let a = axis(int_at(0, "start_dim").unwrap_or(0), rank);
            let z = axis(int_at(1, "end_dim").unwrap_or(-1), rank);
            match (a, z) {
                (Some(a), Some(z)) if a <= z && rank > 0 => {
                    let mut o = s[..a].to_vec();
                    o.push(numel(&s[a..=z]) as usize);
                    o.extend_from_slice(&s[z + 1..]);
                    Some(o)
                }
                _ if rank == 0 => Some(vec![1]),
                _ => None,
            }
        }
        Builtin::Transpose => match (int_at(0, "dim0"), int_at(1, "dim1")) {
            (Some(x), Some(y)) => match (axis(x, rank), axis(y, rank)) {
                (Some(x), Some(y)) => {
                    let mut o = s.clone();
                    o.swap(x, y);
                    Some(o)
                }
                _ => None,
            },
            _ => None,
        },
        Builtin::TMethod => Some(s.iter().rev().copied().collect()),
        Builtin::Permute => int_list(rest).and_then(|p| {
            p.iter()
                .map(|&d| axis(d, rank).map(|a| s[a]))
                .collect::<Option<Vec<_>>>()
        }),
        Builtin::Expand => int_list(rest).and_then(|want| {
            let off = want.len().checked_sub(rank)?;
            want.iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d < 0 {
                        i.checked_sub(off).and_then(|j| s.get(j).copied())
                    } else {
                        usize::try_from(d).ok()
                    }
                })
                .collect()
        }),
        Builtin::ExpandAs => match rest.first() {
            Some(AVal::Tensor(o)) => Some(o.clone()),
            _ => None,
        },
        Builtin::Repeat => int_list(rest).and_then(|r| {
            let r = to_usize(&r)?;
            let off = r.len().checked_sub(rank)?;
            Some(
                r.iter()
                    .enumerate()
                    .map(|(i, &k)| k * i.checked_sub(off).map_or(1, |j| s[j]))
                    .collect(),
            )
        }),
        Builtin::Chunk | Builtin::Split | Builtin::Unbind => return AVal::Unknown,
        Builtin::Size => {
            return match int_at(0, "dim") {
                Some(d) => axis(d, rank).map_or(AVal::Unknown, |a| AVal::Int(s[a] as i64)),
                None => attr(AVal::Tensor(s), Attr::Shape),
            };
        }
        Builtin::Dim => return AVal::Int(rank as i64),
        Builtin::Numel => return AVal::Int(i64::try_from(numel(&s)).unwrap_or(i64::MAX)),
        Builtin::Item => return AVal::Num,
        Builtin::Movedim | Builtin::RepeatInterleave => None,
        // Identity-shaped moves: clone, dtype casts, flip.
        _ => Some(s),
    };
    out.map_or(AVal::Unknown, AVal::Tensor)
}

/// `torch.cat` / `torch.stack` of a list of tensors.
fn join(b: Builtin, l: &[AVal], ops: &[AVal], kwarg: &dyn Fn(&str) -> Option<AVal>) -> AVal {
    let shapes: Option<Vec<Vec<usize>>> = l
        .iter()
        .map(|v| match v {
            AVal::Tensor(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let Some(shapes) = shapes.filter(|s| !s.is_empty()) else {
        return AVal::Unknown;
    };
    let d = match kwarg("dim").or_else(|| ops.get(1).cloned()) {
        Some(AVal::Int(d)) => d,
        _ => 0,
    };
    let first = shapes[0].clone();
    let out = if b == Builtin::Stack {
        axis(d, first.len() + 1).map(|a| {
            let mut o = first.clone();
            o.insert(a, shapes.len());
            o
        })
    } else {
        axis(d, first.len()).map(|a| {
            let mut o = first.clone();
            o[a] = shapes.iter().map(|s| s.get(a).copied().unwrap_or(0)).sum();
            o
        })
    };
    out.map_or(AVal::Unknown, AVal::Tensor)
}

fn creation(b: Builtin, ops: &[AVal], kwarg: &dyn Fn(&str) -> Option<AVal>) -> AVal {
    match b {
        Builtin::ZerosLike | Builtin::OnesLike | Builtin::FullLike => match ops.first() {
            Some(AVal::Tensor(s)) => AVal::Tensor(s.clone()),
            _ => AVal::Unknown,
        },
        Builtin::Zeros | Builtin::Ones => {
            // Method forms (`t.new_zeros(sizes)`) have the receiver first.
            let sizes = match ops.first() {
                Some(AVal::Tensor(_)) => &ops[1..],
                _ => ops,
            };
            int_list(sizes)
                .and_then(|v| to_usize(&v))
                .map_or(AVal::Unknown, AVal::Tensor)
        }
        Builtin::Full => match ops.first() {
            Some(AVal::List(_)) => int_list(&ops[..1])
                .and_then(|v| to_usize(&v))
                .map_or(AVal::Unknown, AVal::Tensor),
            _ => AVal::Unknown,
        },
        Builtin::Arange => {
            let get = |v: Option<AVal>| match v {
                Some(AVal::Int(i)) => Some(i),
                _ => None,
            };
            let (start, end, step) = match ops.len() {
                1 => (Some(0), get(ops.first().cloned()), Some(1)),
                2 => (get(ops.first().cloned()), get(ops.get(1).cloned()), Some(1)),
                _ => (
                    get(ops.first().cloned().or_else(|| kwarg("start"))),
                    get(ops.get(1).cloned().or_else(|| kwarg("end"))),
                    get(ops.get(2).cloned().or_else(|| kwarg("step"))),
                ),
            };
            match (start, end, step) {
                (Some(a), Some(z), Some(st)) if st > 0 && z >= a => {
                    AVal::Tensor(vec![usize::try_from((z - a + st - 1) / st).unwrap_or(0)])
                }
                _ => AVal::Unknown,
            }
        }
        _ => AVal::Unknown,
    }
}

fn py_op(b: Builtin, ops: &[AVal]) -> AVal {
    match (b, ops.first()) {
        (Builtin::PyLen, Some(AVal::List(l))) => AVal::Int(l.len() as i64),
        (Builtin::PyLen, Some(AVal::Tensor(s))) => {
            s.first().map_or(AVal::Unknown, |&d| AVal::Int(d as i64))
        }
        (Builtin::PyRange, _) => {
            let ints = int_list(ops);
            match ints.as_deref() {
                Some([n]) if (0..=MAX_UNROLL as i64).contains(n) => {
                    AVal::List((0..*n).map(AVal::Int).collect())
                }
                Some([a, z]) if z >= a && z - a <= MAX_UNROLL as i64 => {
                    AVal::List((*a..*z).map(AVal::Int).collect())
                }
                _ => AVal::Unknown,
            }
        }
        (Builtin::PyInt, Some(AVal::Int(i))) => AVal::Int(*i),
        (Builtin::PyList | Builtin::PyTuple, Some(AVal::List(l))) => AVal::List(l.clone()),
        (Builtin::PyZip, _) => {
            let lists: Option<Vec<&Vec<AVal>>> = ops
                .iter()
                .map(|o| match o {
                    AVal::List(l) => Some(l),
                    _ => None,
                })
                .collect();
            match lists {
                Some(ls) if !ls.is_empty() => {
                    let n = ls.iter().map(|l| l.len()).min().unwrap_or(0);
                    AVal::List(
                        (0..n)
                            .map(|i| AVal::List(ls.iter().map(|l| l[i].clone()).collect()))
                            .collect(),
                    )
                }
                _ => AVal::Unknown,
            }
        }
        (Builtin::PyEnumerate, Some(AVal::List(l))) => AVal::List(
            l.iter()
                .enumerate()
                .map(|(i, v)| AVal::List(vec![AVal::Int(i as i64), v.clone()]))
                .collect(),
        ),
        (Builtin::PyMin | Builtin::PyMax | Builtin::PyAbs, Some(AVal::Int(_))) => int_list(ops)
            .map_or(AVal::Num, |v| {
                let r = match b {
                    Builtin::PyMin => v.iter().min().copied(),
                    Builtin::PyMax => v.iter().max().copied(),
                    _ => v.first().map(|x| x.saturating_abs()),
                };
                r.map_or(AVal::Num, AVal::Int)
            }),
        _ => AVal::Num,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_follows_torch_rules() {
        assert_eq!(matmul(&[4, 8], &[8, 3]), Some((vec![4, 3], 2 * 4 * 8 * 3)));
        assert_eq!(matmul(&[8], &[8, 3]), Some((vec![3], 2 * 8 * 3)));
        assert_eq!(matmul(&[4, 8], &[8]), Some((vec![4], 2 * 4 * 8)));
        assert_eq!(matmul(&[8], &[8]), Some((vec![], 16)));
        assert_eq!(
            matmul(&[2, 4, 8], &[8, 3]),
            Some((vec![2, 4, 3], 2 * 2 * 4 * 8 * 3))
        );
        assert_eq!(matmul(&[4, 8], &[7, 3]).map(|x| x.1), Some(2 * 4 * 8 * 3));
    }

    #[test]
    fn broadcasting_and_einsum() {
        assert_eq!(broadcast(&[4, 1], &[3]), Some(vec![4, 3]));
        assert_eq!(broadcast(&[4, 2], &[3]), None);
        assert_eq!(
            einsum("ij,jk->ik", &[vec![2, 3], vec![3, 5]]),
            Some((vec![2, 5], 2 * 2 * 3 * 5))
        );
    }
}
