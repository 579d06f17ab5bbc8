//! Which element functions may be run on a whole batch of elements in one call, and the
//! body that does it.
//!
//! Calling the evaluator once per element costs a few microseconds of interpretation, which
//! dominates verification of small kernels. Many element functions are *lane-parallel*: given
//! a batch tensor `(..elem, B)` per field (the lanes on the *last* axis) they compute exactly
//! the `B` results they compute element by element. That holds for
//! - elementwise operations and comparisons: operands of different element shapes broadcast
//!   right-aligned, so the lane axes align with each other and the element axes align as they
//!   do per element. A lane-invariant tensor operand of shape `c` is given a trailing unit
//!   axis, `(..c, 1)`, so it too aligns with the element axes and not with the lanes;
//! - reductions, softmax, `topk`, `chunk` and `cat` over one literal dim of an element, once a
//!   negative dim is shifted by one so it skips the lane axis (positive dims already index the
//!   same axes); `stack` and `unsqueeze`, whose new axis is counted the same way; `flatten`
//!   with its (normalised, non-negative) start and end dims;
//! - indexing an element with literal integers and slices: they address the leading element
//!   axes, and after an `...` a trailing `:` keeps the lane axis out of reach;
//! - `a if c else b` with a per-element 0-d comparison `c` and branches of one element shape:
//!   `torch.where(c, a, b)` picks, lane by lane, the value the selected branch computes.
//!
//! *Lane-invariant* subexpressions (no element data: literals, globals, `torch.arange(..)`,
//! `x.size(-1)` of an element of known shape) are evaluated once here, on stand-in elements of
//! the right shapes, and replaced by their value: a literal for a Python number, else a
//! constant the batched function is compiled with ([`Batched::compile`]).
//!
//! [`batched_body`] proves that for a body and returns the rewritten body. It is deliberately
//! conservative: matmul, `input_data`, chained comparisons, full reductions, non-literal dims
//! and anything it does not know make the function per-element only. The executor also checks
//! every batched result's shape and falls back to per-element calls on any mismatch or error,
//! so the per-element path keeps producing the exact diagnostics; a property test checks
//! batched and per-element results bit for bit.

use std::collections::BTreeMap;

use stepforge_ir::builtin::{Builtin, Class, Ns};
use stepforge_syntax::Span;
use stepforge_syntax::ast::{
    BinOp, Block, Expr, ExprKind, Ident, PyStmt, PyStmtKind, SliceItem, Target, UnOp,
};
use stepforge_tensor::{DType, Tensor};

use crate::eval::{self, Env, EvalError, Function, Module, Value};

/// A batched body and the lane-invariant constants it names.
#[derive(Debug, Clone)]
pub struct Batched {
    pub body: Block,
    /// Names the parser cannot produce (`#c0`, ..), so no user name can shadow them.
    pub consts: Vec<(String, Value)>,
}

impl Batched {
    /// Compiles the batched body against `env` plus its constants. The result is called with
    /// `env` itself: constants are baked in at compile time.
    pub fn compile(&self, name: impl Into<String>, env: &Env) -> Result<Function, EvalError> {
        if self.consts.is_empty() {
            return Function::compile(name, &self.body, env);
        }
        let mut names = env.names.clone();
        names.extend(self.consts.iter().cloned());
        let with_consts = Env {
            dims: env.dims.clone(),
            names,
            data: BTreeMap::new(),
            limits: env.limits,
        };
        Function::compile(name, &self.body, &with_consts)
    }
}

/// What the analysis knows about a value.
#[derive(Debug, Clone)]
enum Kind {
    /// The same for every element, and known: a Python number or bool, or a tensor.
    Const(Value),
    /// A per-element value with this element shape.
    Elem(Vec<usize>),
    /// An elementwise callable (module object).
    Module(Module),
    /// A tuple of per-element values (`x.chunk(..)`, `x.topk(..)`).
    Tuple(Vec<Kind>),
    /// The same for every element but only known at call time: `input_data['W']` (and values
    /// computed from it elementwise), of this shape.
    Data(Vec<usize>),
}

impl Kind {
    /// A lane-invariant value that broadcasts against anything without alignment.
    fn is_scalar(&self) -> bool {
        match self {
            Kind::Const(Value::Int(_) | Value::Float(_) | Value::Bool(_)) => true,
            Kind::Const(Value::Tensor(t)) => t.ndim() == 0,
            Kind::Data(s) => s.is_empty(),
            _ => false,
        }
    }

    fn elem(&self) -> Option<&[usize]> {
        match self {
            Kind::Elem(s) => Some(s),
            _ => None,
        }
    }
}

struct Cx<'a> {
    env: &'a Env,
    data: &'a BTreeMap<String, Vec<usize>>,
    inputs: &'a [Vec<usize>],
    state: Option<&'a [Vec<usize>]>,
    locals: BTreeMap<String, Kind>,
    /// Where lane-invariant subexpressions are evaluated: the globals, `input`/`state` and
    /// every local bound to a stand-in of its kind (zeros of an element's shape). Built at
    /// the first probe: most bodies never need one.
    probe_env: Option<Env>,
    consts: Vec<(String, Value)>,
}

/// An elementwise one-operand torch function or method (`torch.exp(x)`, `x.exp()`).
fn is_unary(ns: Ns, name: &str) -> bool {
    Builtin::lookup(ns, name).is_some_and(|b| b.class() == Class::Unary)
}

/// `torch.max(a, b)` and friends: elementwise when both operands are tensors.
fn is_binary_extreme(name: &str) -> bool {
    matches!(
        Builtin::lookup(Ns::Torch, name),
        Some(Builtin::Max | Builtin::Maximum | Builtin::Min | Builtin::Minimum)
    )
}

/// The reductions over literal dims the analysis shifts past the lane axis.
fn is_reduction(name: &str) -> bool {
    matches!(
        Builtin::lookup(Ns::Method, name),
        Some(
            Builtin::Sum
                | Builtin::Mean
                | Builtin::Var
                | Builtin::Std
                | Builtin::Amax
                | Builtin::Amin
        )
    )
}

const RESERVED: &[&str] = &["input", "state", "torch", "input_data", "ctx"];

/// The lane-parallel form of `body` (see the module doc) when `body`, called with element
/// fields of shapes `inputs` (and reducer state of shapes `state`), is lane-parallel and
/// returns fields of exactly `outputs`' shapes; `None` otherwise. `data` holds the shapes of
/// the `input_data` tensors the calls will see (others make a body per-element only).
pub fn batched_body(
    body: &Block,
    env: &Env,
    data: &BTreeMap<String, Vec<usize>>,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    outputs: &[Vec<usize>],
) -> Option<Batched> {
    let mut cx = Cx {
        env,
        data,
        inputs,
        state,
        locals: BTreeMap::new(),
        probe_env: None,
        consts: Vec::new(),
    };
    let mut body = body.clone();
    let n = body.stmts.len();
    for (i, stmt) in body.stmts.iter_mut().enumerate() {
        match &mut stmt.kind {
            PyStmtKind::Assign { target, value } if i + 1 < n => {
                let k = cx.expr(value)?;
                match target {
                    Target::Name(id) => cx.bind(&id.name, k)?,
                    Target::Tuple(ts, _) => {
                        let Kind::Tuple(ks) = k else {
                            return None;
                        };
                        if ks.len() != ts.len() {
                            return None;
                        }
                        for (t, k) in ts.iter().zip(ks) {
                            let Target::Name(id) = t else {
                                return None;
                            };
                            cx.bind(&id.name, k)?;
                        }
                    }
                    Target::Subscript { .. } => return None,
                }
            }
            PyStmtKind::Return(e) if i + 1 == n => {
                distribute_if(e);
                let ExprKind::List(items) = &mut e.kind else {
                    return None;
                };
                if items.len() != outputs.len() {
                    return None;
                }
                for (it, shape) in items.iter_mut().zip(outputs) {
                    match cx.expr(it)? {
                        Kind::Elem(s) if s == *shape => {}
                        _ => return None,
                    }
                }
                return Some(Batched {
                    body,
                    consts: cx.consts,
                });
            }
            _ => return None,
        }
    }
    None
}

/// Zeros of each shape, as the `input`/`state` list probes see.
fn stand_ins(shapes: &[Vec<usize>], env: &Env) -> Option<Value> {
    let mut items = Vec::with_capacity(shapes.len());
    for s in shapes {
        items.push(Value::tensor(zeros(s, env)?));
    }
    Some(Value::list(items))
}

/// Zeros of an element's shape, unless the shape is over the evaluation's size limit.
fn zeros(shape: &[usize], env: &Env) -> Option<Tensor> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    if n > env.limits.max_numel {
        return None;
    }
    Tensor::zeros(shape, DType::F32).ok()
}

/// `return [a] if c else [b]` is `return [a if c else b]` (both branches the same length).
fn distribute_if(e: &mut Expr) {
    let ExprKind::IfElse { body, orelse, .. } = &e.kind else {
        return;
    };
    let (ExprKind::List(a), ExprKind::List(b)) = (&body.kind, &orelse.kind) else {
        return;
    };
    if a.len() != b.len() {
        return;
    }
    let old = std::mem::replace(&mut e.kind, ExprKind::None);
    let ExprKind::IfElse { cond, body, orelse } = old else {
        e.kind = old;
        return;
    };
    let (ExprKind::List(a), ExprKind::List(b)) = (body.kind, orelse.kind) else {
        return;
    };
    e.kind = ExprKind::List(
        a.into_iter()
            .zip(b)
            .map(|(x, y)| Expr {
                span: x.span.to(y.span),
                kind: ExprKind::IfElse {
                    cond: cond.clone(),
                    body: Box::new(x),
                    orelse: Box::new(y),
                },
            })
            .collect(),
    );
}

impl Cx<'_> {
    /// Records a local's kind, and its stand-in for later probes.
    fn bind(&mut self, name: &str, k: Kind) -> Option<()> {
        if RESERVED.contains(&name) {
            return None;
        }
        if self.probe_env.is_some() {
            let v = self.stand_in(&k)?;
            if let Some(pe) = &mut self.probe_env {
                pe.names.insert(name.to_string(), v);
            }
        }
        self.locals.insert(name.to_string(), k);
        Some(())
    }

    fn probe_env(&mut self) -> Option<&Env> {
        if self.probe_env.is_none() {
            let env = self.env;
            let mut names = env.names.clone();
            names.insert("input".into(), stand_ins(self.inputs, env)?);
            if let Some(s) = self.state {
                names.insert("state".into(), stand_ins(s, env)?);
            }
            for (name, k) in &self.locals {
                names.insert(name.clone(), self.stand_in(k)?);
            }
            let mut data = BTreeMap::new();
            for (name, shape) in self.data {
                data.insert(name.clone(), std::sync::Arc::new(zeros(shape, env)?));
            }
            self.probe_env = Some(Env {
                dims: env.dims.clone(),
                names,
                data,
                limits: env.limits,
            });
        }
        self.probe_env.as_ref()
    }

    fn stand_in(&self, k: &Kind) -> Option<Value> {
        Some(match k {
            Kind::Const(v) => v.clone(),
            Kind::Elem(s) | Kind::Data(s) => Value::tensor(zeros(s, self.env)?),
            Kind::Module(m) => Value::Module(*m),
            Kind::Tuple(ks) => {
                let mut items = Vec::with_capacity(ks.len());
                for k in ks {
                    items.push(self.stand_in(k)?);
                }
                Value::tuple(items)
            }
        })
    }

    /// Evaluates a (per-element form of an) expression on the stand-ins.
    fn probe(&mut self, e: &Expr) -> Option<Value> {
        let block = Block {
            stmts: vec![PyStmt {
                kind: PyStmtKind::Return(e.clone()),
                span: e.span,
            }],
            span: e.span,
        };
        eval::eval_block(&block, self.probe_env()?).ok()
    }

    /// The kind of a probed per-element value: an element or a tuple of elements.
    fn probe_kind(&mut self, e: &Expr) -> Option<Kind> {
        fn kind(v: &Value) -> Option<Kind> {
            match v {
                Value::Tensor(t) => Some(Kind::Elem(t.shape().to_vec())),
                Value::Tuple(items) => items
                    .iter()
                    .map(kind)
                    .collect::<Option<_>>()
                    .map(Kind::Tuple),
                _ => None,
            }
        }
        kind(&self.probe(e)?)
    }

    /// Evaluates a lane-invariant expression once and puts its value in its place.
    fn fold(&mut self, e: &mut Expr) -> Option<Kind> {
        let v = self.probe(e)?;
        e.kind = match &v {
            Value::Int(x) => ExprKind::Int(*x),
            Value::Float(x) => ExprKind::Float(*x, format!("{x:?}")),
            Value::Bool(b) => ExprKind::Bool(*b),
            Value::Tensor(_) => ExprKind::Name(self.constant(v.clone())),
            _ => return None,
        };
        Some(Kind::Const(v))
    }

    fn constant(&mut self, v: Value) -> String {
        let name = format!("#c{}", self.consts.len());
        self.consts.push((name.clone(), v));
        name
    }

    /// Whether `e`'s value is the same for every element (it reads no element data; the
    /// shape of an element is known).
    fn invariant(&self, e: &Expr) -> bool {
        let opt = |x: &Option<Expr>| x.as_ref().is_none_or(|x| self.invariant(x));
        match &e.kind {
            ExprKind::Int(_)
            | ExprKind::Float(..)
            | ExprKind::Bool(_)
            | ExprKind::None
            | ExprKind::Str(_) => true,
            ExprKind::Name(n) => match self.locals.get(n.as_str()) {
                Some(k) => matches!(k, Kind::Const(_) | Kind::Module(_)),
                None => !matches!(n.as_str(), "input" | "state" | "input_data" | "ctx"),
            },
            ExprKind::Attr { value, attr } => {
                (matches!(attr.name.as_str(), "shape" | "ndim") && self.shape_known(value))
                    || self.invariant(value)
            }
            ExprKind::Call { func, args, kwargs } => {
                let head = match &func.kind {
                    // In-place methods write to a local: evaluating them once here would
                    // lose the write.
                    ExprKind::Attr { attr, .. } if attr.name.ends_with('_') => false,
                    ExprKind::Attr { value, attr }
                        if matches!(attr.name.as_str(), "size" | "dim" | "numel") =>
                    {
                        self.shape_known(value)
                    }
                    _ => self.invariant(func),
                };
                head && args.iter().all(|a| self.invariant(a))
                    && kwargs.iter().all(|(_, v)| self.invariant(v))
            }
            ExprKind::Subscript { value, index } => {
                self.invariant(value)
                    && index.iter().all(|i| match i {
                        SliceItem::Index(x) => self.invariant(x),
                        SliceItem::Slice { lo, hi, step, .. } => opt(lo) && opt(hi) && opt(step),
                        SliceItem::Ellipsis(_) => true,
                    })
            }
            ExprKind::Binary { lhs, rhs, .. } => self.invariant(lhs) && self.invariant(rhs),
            ExprKind::Unary { operand, .. } => self.invariant(operand),
            ExprKind::Compare { first, rest } => {
                self.invariant(first) && rest.iter().all(|(_, x)| self.invariant(x))
            }
            ExprKind::IfElse { cond, body, orelse } => {
                self.invariant(cond) && self.invariant(body) && self.invariant(orelse)
            }
            ExprKind::List(xs) | ExprKind::Tuple(xs) => xs.iter().all(|x| self.invariant(x)),
            ExprKind::ListComp { .. } | ExprKind::FString(_) => false,
        }
    }

    /// `x.size(d)` of an element `x` with a literal `d`, without a probe.
    fn size_of(&self, e: &Expr) -> Option<i64> {
        let ExprKind::Call { func, args, kwargs } = &e.kind else {
            return None;
        };
        let (ExprKind::Attr { value, attr }, [d], []) = (&func.kind, &args[..], &kwargs[..]) else {
            return None;
        };
        if attr.name != "size" {
            return None;
        }
        let shape = match &value.kind {
            ExprKind::Name(n) => self.locals.get(n.as_str())?.elem()?.to_vec(),
            ExprKind::Subscript { value, index } => match self.field(value, index)? {
                Kind::Elem(s) => s,
                _ => return None,
            },
            _ => return None,
        };
        let d = int_literal(d)?;
        let r = i64::try_from(shape.len()).ok()?;
        let axis = usize::try_from(if d < 0 { d + r } else { d }).ok()?;
        i64::try_from(*shape.get(axis)?).ok()
    }

    /// Whether the shape of `e` is known (its stand-in has the element's shape).
    fn shape_known(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Name(n) if matches!(self.locals.get(n.as_str()), Some(Kind::Elem(_))) => true,
            ExprKind::Subscript { value, index } if self.field(value, index).is_some() => true,
            _ => self.invariant(e),
        }
    }

    fn expr(&mut self, e: &mut Expr) -> Option<Kind> {
        match &e.kind {
            ExprKind::Int(v) => return Some(Kind::Const(Value::Int(*v))),
            ExprKind::Float(v, _) => return Some(Kind::Const(Value::Float(*v))),
            ExprKind::Bool(b) => return Some(Kind::Const(Value::Bool(*b))),
            ExprKind::Name(n) => {
                let n = n.clone();
                if let Some(k) = self.name(&n) {
                    return Some(k);
                }
                // `D_value` and other names the evaluator resolves to constants.
                if self.locals.contains_key(&n) || self.env.names.contains_key(&n) {
                    return None;
                }
                return self.fold(e);
            }
            _ if self.invariant(e) => {
                if let Some(n) = self.size_of(e) {
                    e.kind = ExprKind::Int(n);
                    return Some(Kind::Const(Value::Int(n)));
                }
                return self.fold(e);
            }
            _ => {}
        }
        if let ExprKind::Binary {
            op: BinOp::MatMul, ..
        } = &e.kind
        {
            let orig = e.clone();
            let ExprKind::Binary { lhs, rhs, .. } = &mut e.kind else {
                return None;
            };
            let ka = self.expr(lhs)?;
            let kb = self.expr(rhs)?;
            return self.matmul(e, &orig, &ka, &kb);
        }
        match &mut e.kind {
            ExprKind::Subscript { value, index } => {
                if let Some(k) = self.field(value, index) {
                    return Some(k);
                }
                if let Some(s) = self.data_shape(value, index) {
                    return Some(Kind::Data(s));
                }
                let orig = e.clone();
                let ExprKind::Subscript { value, index } = &mut e.kind else {
                    return None;
                };
                match self.expr(value)? {
                    Kind::Tuple(items) => {
                        let [SliceItem::Index(i)] = &index[..] else {
                            return None;
                        };
                        let i = int_literal(i)?;
                        let n = i64::try_from(items.len()).ok()?;
                        let i = usize::try_from(if i < 0 { i + n } else { i }).ok()?;
                        items.into_iter().nth(i)
                    }
                    Kind::Elem(shape) => {
                        self.index(index, shape.len(), orig.span)?;
                        self.probe_kind(&orig)
                    }
                    _ => None,
                }
            }
            ExprKind::Binary {
                op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow,
                lhs,
                rhs,
            } => self.combine(lhs, rhs),
            ExprKind::Compare { first, rest } => match &mut rest[..] {
                [(_, rhs)] => self.combine(first, rhs),
                _ => None,
            },
            ExprKind::Unary { op, operand } => match op {
                UnOp::Neg | UnOp::Pos => unary(self.expr(operand)?),
                UnOp::Not => None,
            },
            ExprKind::IfElse { cond, body, orelse } => {
                if !matches!(&cond.kind, ExprKind::Compare { rest, .. } if rest.len() == 1) {
                    return None;
                }
                if !self.expr(cond)?.elem()?.is_empty() {
                    return None;
                }
                let a = self.expr(body)?;
                let b = self.expr(orelse)?;
                let shape = a.elem()?.to_vec();
                if b.elem()? != &shape[..] {
                    return None;
                }
                let span = e.span;
                let ExprKind::IfElse { cond, body, orelse } =
                    std::mem::replace(&mut e.kind, ExprKind::None)
                else {
                    return None;
                };
                e.kind = ExprKind::Call {
                    func: Box::new(torch_attr("where", span)),
                    args: vec![*cond, *body, *orelse],
                    kwargs: Vec::new(),
                };
                Some(Kind::Elem(shape))
            }
            ExprKind::Call { .. } => self.call(e),
            _ => None,
        }
    }

    fn name(&mut self, n: &str) -> Option<Kind> {
        if let Some(k) = self.locals.get(n) {
            return Some(k.clone());
        }
        match self.env.names.get(n)? {
            v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Tensor(_)) => {
                Some(Kind::Const(v.clone()))
            }
            Value::Module(m) => Some(Kind::Module(*m)),
            _ => None,
        }
    }

    /// The shape of `input_data['name']`, when `name` is a known tensor.
    fn data_shape(&self, value: &Expr, index: &[SliceItem]) -> Option<Vec<usize>> {
        match (&value.kind, index) {
            (ExprKind::Name(base), [SliceItem::Index(key)])
                if base == "input_data" && !self.locals.contains_key(base.as_str()) =>
            {
                match &key.kind {
                    ExprKind::Str(k) => self.data.get(k.as_str()).cloned(),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// `input[i]` / `state[i]` with a literal index.
    fn field(&self, value: &Expr, index: &[SliceItem]) -> Option<Kind> {
        let ExprKind::Name(base) = &value.kind else {
            return None;
        };
        if self.locals.contains_key(base.as_str()) {
            return None;
        }
        let [SliceItem::Index(i)] = index else {
            return None;
        };
        let ExprKind::Int(i) = i.kind else {
            return None;
        };
        let i = usize::try_from(i).ok()?;
        let shapes = match base.as_str() {
            "input" => self.inputs,
            "state" => self.state?,
            _ => return None,
        };
        shapes.get(i).map(|s| Kind::Elem(s.clone()))
    }

    /// `x @ W` with a per-element `x` of rank 1 or 2 and a lane-invariant matrix `W` becomes
    /// `(x.movedim(-1, 0) @ W).movedim(0, -1)`: every lane is one row of the product, and each
    /// output row is accumulated exactly as the per-element product accumulates it. `W @ v`
    /// with a per-element vector `v` needs nothing: the lanes are the product's columns.
    fn matmul(&mut self, e: &mut Expr, orig: &Expr, ka: &Kind, kb: &Kind) -> Option<Kind> {
        let matrix = |k: &Kind| match k {
            Kind::Data(s) if s.len() == 2 => Some(s.clone()),
            Kind::Const(Value::Tensor(t)) if t.ndim() == 2 => Some(t.shape().to_vec()),
            _ => None,
        };
        if let (Some(w), Some(v)) = (matrix(ka), kb.elem())
            && v.len() == 1
            && w.get(1) == v.first()
        {
            return Some(Kind::Elem(vec![*w.first()?]));
        }
        if let (Some(x), Some(y)) = (ka.elem(), kb.elem()) {
            return self.matmul_lanes(e, orig, x.len(), y.len());
        }
        let (x, w) = (ka.elem()?, matrix(kb)?);
        if !matches!(x.len(), 1 | 2) || x.last() != w.first() {
            return None;
        }
        let mut shape = x[..x.len() - 1].to_vec();
        shape.push(*w.get(1)?);
        let span = e.span;
        let ExprKind::Binary { op, lhs, rhs } = std::mem::replace(&mut e.kind, ExprKind::None)
        else {
            return None;
        };
        let product = Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(method(*lhs, "movedim", &[-1, 0])),
                rhs,
            },
            span,
        };
        *e = method(product, "movedim", &[0, -1]);
        Some(Kind::Elem(shape))
    }

    /// `x @ y` with both operands per element (ranks 1 or 2): the lanes become the batch axis
    /// of one batched product, `(x.movedim(-1, 0)[.unsqueeze(-2)] @
    /// y.movedim(-1, 0)[.unsqueeze(-1)])[.squeeze(..)].movedim(0, -1)`, where each lane's
    /// product is accumulated as the per-element one is.
    fn matmul_lanes(&mut self, e: &mut Expr, orig: &Expr, rx: usize, ry: usize) -> Option<Kind> {
        if !matches!(rx, 1 | 2) || !matches!(ry, 1 | 2) {
            return None;
        }
        let shape = self.probe_kind(orig)?;
        shape.elem()?;
        let span = e.span;
        let ExprKind::Binary { op, lhs, rhs } = std::mem::replace(&mut e.kind, ExprKind::None)
        else {
            return None;
        };
        let mut x = method(*lhs, "movedim", &[-1, 0]);
        if rx == 1 {
            x = method(x, "unsqueeze", &[-2]);
        }
        let mut y = method(*rhs, "movedim", &[-1, 0]);
        if ry == 1 {
            y = method(y, "unsqueeze", &[-1]);
        }
        let mut product = Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(x),
                rhs: Box::new(y),
            },
            span,
        };
        match (rx, ry) {
            (1, 1) => product = method(method(product, "squeeze", &[-1]), "squeeze", &[-1]),
            (_, 1) => product = method(product, "squeeze", &[-1]),
            (1, _) => product = method(product, "squeeze", &[-2]),
            _ => {}
        }
        *e = method(product, "movedim", &[0, -1]);
        Some(shape)
    }

    /// Checks the index of an element of rank `rank`: literal integers and slices on its
    /// axes, at most one `...`, after which a `:` is appended for the lane axis.
    fn index(&mut self, index: &mut Vec<SliceItem>, rank: usize, span: Span) -> Option<()> {
        let mut axes = 0;
        let mut ellipsis = false;
        for item in index.iter_mut() {
            match item {
                SliceItem::Index(x) => {
                    if !matches!(self.expr(x)?, Kind::Const(Value::Int(_))) {
                        return None;
                    }
                    axes += 1;
                }
                SliceItem::Slice { lo, hi, step, .. } => {
                    for p in [lo, hi, step].into_iter().flatten() {
                        if !matches!(self.expr(p)?, Kind::Const(Value::Int(_))) {
                            return None;
                        }
                    }
                    axes += 1;
                }
                SliceItem::Ellipsis(_) if !ellipsis => ellipsis = true,
                SliceItem::Ellipsis(_) => return None,
            }
        }
        if axes > rank {
            return None;
        }
        if ellipsis {
            index.push(SliceItem::Slice {
                lo: None,
                hi: None,
                step: None,
                span,
            });
        }
        Some(())
    }

    /// Two operands of an elementwise op: their element shapes broadcast (right-aligned, as in
    /// torch). The executor puts the batch lanes on the *last* axis, so the batched operands
    /// are `(..s, B)` and `(..t, B)`: the lanes align with each other and `s`, `t` align
    /// exactly as they do per element. A lane-invariant tensor gets a unit lane axis.
    fn combine(&mut self, a: &mut Expr, b: &mut Expr) -> Option<Kind> {
        let ka = self.expr(a)?;
        let kb = self.expr(b)?;
        self.combine_kinds(a, ka, b, kb)
    }

    fn combine_kinds(&mut self, a: &mut Expr, ka: Kind, b: &mut Expr, kb: Kind) -> Option<Kind> {
        let sa = self.operand(a, &ka, kb.elem().is_some())?;
        let sb = self.operand(b, &kb, ka.elem().is_some())?;
        match (sa, sb) {
            (Some(s), Some(t)) => broadcast(&s, &t).map(Kind::Elem),
            (Some(s), None) | (None, Some(s)) => Some(Kind::Elem(s)),
            (None, None) => None,
        }
    }

    /// The element shape an operand contributes (`None` for a scalar), aligning a
    /// lane-invariant tensor that meets an element.
    fn operand(&mut self, e: &mut Expr, k: &Kind, other_elem: bool) -> Option<Option<Vec<usize>>> {
        if k.is_scalar() {
            return Some(None);
        }
        match k {
            Kind::Elem(s) => Some(Some(s.clone())),
            Kind::Const(Value::Tensor(t)) if other_elem => {
                let aligned = t.unsqueeze(-1).ok()?;
                let shape = t.shape().to_vec();
                e.kind = ExprKind::Name(self.constant(Value::tensor(aligned)));
                Some(Some(shape))
            }
            Kind::Data(s) if other_elem => {
                let x = std::mem::replace(&mut e.kind, ExprKind::None);
                let x = Expr {
                    kind: x,
                    span: e.span,
                };
                *e = method(x, "unsqueeze", &[-1]);
                Some(Some(s.clone()))
            }
            _ => None,
        }
    }

    fn call(&mut self, e: &mut Expr) -> Option<Kind> {
        let orig = e.clone();
        let ExprKind::Call { func, args, kwargs } = &mut e.kind else {
            return None;
        };
        // A module object bound in `global`, or a local alias of one.
        if matches!(func.kind, ExprKind::Name(_)) {
            let (Kind::Module(m), [x]) = (self.expr(func)?, &mut args[..]) else {
                return None;
            };
            if !kwargs.is_empty() {
                return None;
            }
            let k = self.expr(x)?;
            // Softmax modules normalise over their literal dim: a negative one is shifted
            // past the lane axis by calling a copy of the module with the shifted dim.
            let shifted = match m {
                Module::Softmax { dim } => Module::Softmax {
                    dim: Some(lane_dim(dim?, k.elem()?.len())?),
                },
                Module::LogSoftmax { dim } => Module::LogSoftmax {
                    dim: Some(lane_dim(dim?, k.elem()?.len())?),
                },
                _ => return unary(k),
            };
            if shifted != m {
                func.kind = ExprKind::Name(self.constant(Value::Module(shifted)));
            }
            return Some(k);
        }
        let ExprKind::Attr { value, attr } = &mut func.kind else {
            return None;
        };
        let name = attr.name.clone();
        let name = name.as_str();
        // `torch.f(x, ..)` is `x.f(..)`: `off` is where the arguments after `x` start.
        let (recv, off) = if is_torch(value) && !self.locals.contains_key("torch") {
            match (name, &mut args[..]) {
                (n, [x]) if is_unary(Ns::Torch, n) && kwargs.is_empty() => {
                    return unary(self.expr(x)?);
                }
                (n, [a, b]) if is_binary_extreme(n) && kwargs.is_empty() => {
                    // `torch.max(x, 1)` would reduce over dim 1: both must be tensors.
                    let ka = self.expr(a)?;
                    let kb = self.expr(b)?;
                    if is_number(&ka) || is_number(&kb) {
                        return None;
                    }
                    return self.combine_kinds(a, ka, b, kb);
                }
                ("where", [c, a, b]) if kwargs.is_empty() => {
                    let ks = [self.expr(c)?, self.expr(a)?, self.expr(b)?];
                    let mut shape: Option<Vec<usize>> = None;
                    for (e, k) in [c, a, b].into_iter().zip(&ks) {
                        if let Some(s) = self.operand(e, k, true)? {
                            shape = Some(match shape {
                                None => s,
                                Some(t) => broadcast(&s, &t)?,
                            });
                        }
                    }
                    return shape.map(Kind::Elem);
                }
                ("cat" | "stack", [list, rest @ ..]) => {
                    return self.join(name == "stack", list, rest, kwargs, &orig);
                }
                (
                    "sum" | "mean" | "softmax" | "topk" | "chunk" | "flatten" | "unsqueeze"
                    | "zeros_like" | "ones_like",
                    [x, ..],
                ) => (self.expr(x)?, 1),
                _ => return None,
            }
        } else {
            (self.expr(value)?, 0)
        };
        match name {
            // `x.float()` is elementwise too (a dtype conversion).
            m if (is_unary(Ns::Method, m) || m == "float")
                && args.len() == off
                && kwargs.is_empty() =>
            {
                unary(recv)
            }
            "pow" if off == 0 && kwargs.is_empty() => {
                let [p] = &mut args[..] else {
                    return None;
                };
                if !self.expr(p)?.is_scalar() {
                    return None;
                }
                unary(recv)
            }
            m if is_reduction(m) => {
                let torch_ok = off == 0 || matches!(m, "sum" | "mean");
                torch_ok.then_some(())?;
                reduce(
                    recv,
                    &mut args[off..],
                    kwargs,
                    matches!(m, "var" | "std"),
                    false,
                )
            }
            "softmax" => reduce(recv, &mut args[off..], kwargs, false, true),
            "view" | "reshape" if off == 0 && kwargs.is_empty() => {
                // The element's new shape, made explicit, then the lanes: row-major order
                // keeps the lane axis last and each element's values in order.
                recv.elem()?;
                if args.iter().any(|a| int_literal(a).is_none()) {
                    return None;
                }
                let k = self.probe_kind(&orig)?;
                let shape = k.elem()?;
                let span = orig.span;
                *args = shape
                    .iter()
                    .map(|&d| i64::try_from(d).ok())
                    .chain([Some(-1)])
                    .map(|d| {
                        d.map(|d| Expr {
                            kind: ExprKind::Int(d),
                            span,
                        })
                    })
                    .collect::<Option<_>>()?;
                Some(k)
            }
            "zeros_like" | "ones_like"
                if args.len() == off
                    && kwargs
                        .iter()
                        .all(|(k, v)| k.name == "dtype" && self.invariant(v)) =>
            {
                recv.elem()?;
                Some(recv)
            }
            // `x.scatter(dim, index, value)`: an index of the element's rank and a number.
            "scatter" if off == 0 && kwargs.is_empty() => {
                let shape = recv.elem()?;
                let [d, idx, v] = &mut args[..] else {
                    return None;
                };
                if self.expr(idx)?.elem()?.len() != shape.len() || !is_number(&self.expr(v)?) {
                    return None;
                }
                shift_dim(d, shape.len())?;
                Some(recv)
            }
            "topk" => self.topk(recv, args, off, kwargs, &orig),
            "chunk" => self.chunk(recv, args, off, kwargs, &orig),
            "flatten" => {
                flatten(recv, args, off, kwargs, orig.span).and_then(|()| self.probe_kind(&orig))
            }
            "unsqueeze" => {
                let rank = recv.elem()?.len();
                match (&mut args[off..], &mut kwargs[..]) {
                    ([d], []) => shift_new_dim(d, rank + 1)?,
                    ([], [(k, d)]) if k.name == "dim" => shift_new_dim(d, rank + 1)?,
                    _ => return None,
                }
                self.probe_kind(&orig)
            }
            _ => None,
        }
    }

    /// `x.topk(k, dim, largest)`: `k` lane-invariant, `dim` literal (made explicit, since its
    /// default -1 would name the lane axis).
    fn topk(
        &mut self,
        recv: Kind,
        args: &mut [Expr],
        off: usize,
        kwargs: &mut Vec<(Ident, Expr)>,
        orig: &Expr,
    ) -> Option<Kind> {
        let rank = recv.elem()?.len();
        if rank == 0 {
            return None;
        }
        let (k, more) = args.get_mut(off..)?.split_first_mut()?;
        if !matches!(self.expr(k)?, Kind::Const(Value::Int(_))) {
            return None;
        }
        let mut has_dim = false;
        match more {
            [] => {}
            [d] => {
                shift_dim(d, rank)?;
                has_dim = true;
            }
            [d, l] => {
                shift_dim(d, rank)?;
                bool_literal(l)?;
                has_dim = true;
            }
            _ => return None,
        }
        for (name, v) in kwargs.iter_mut() {
            match name.name.as_str() {
                "dim" if !has_dim => {
                    shift_dim(v, rank)?;
                    has_dim = true;
                }
                "largest" => {
                    bool_literal(v)?;
                }
                _ => return None,
            }
        }
        if !has_dim {
            let span = orig.span;
            kwargs.push((
                Ident {
                    name: "dim".into(),
                    span,
                },
                Expr {
                    kind: ExprKind::Int(-2),
                    span,
                },
            ));
        }
        self.probe_kind(orig)
    }

    /// `x.chunk(n, dim)`: `n` lane-invariant, `dim` literal.
    fn chunk(
        &mut self,
        recv: Kind,
        args: &mut [Expr],
        off: usize,
        kwargs: &mut [(Ident, Expr)],
        orig: &Expr,
    ) -> Option<Kind> {
        let rank = recv.elem()?.len();
        if rank == 0 {
            return None;
        }
        let (n, more) = args.get_mut(off..)?.split_first_mut()?;
        if !matches!(self.expr(n)?, Kind::Const(Value::Int(_))) {
            return None;
        }
        match (more, kwargs) {
            ([], []) => {}
            ([d], []) => {
                shift_dim(d, rank)?;
            }
            ([], [(k, d)]) if k.name == "dim" => {
                shift_dim(d, rank)?;
            }
            _ => return None,
        }
        self.probe_kind(orig)
    }

    /// `torch.cat([..], dim)` / `torch.stack([..], dim)` of elements of one rank.
    fn join(
        &mut self,
        stack: bool,
        list: &mut Expr,
        rest: &mut [Expr],
        kwargs: &mut [(Ident, Expr)],
        orig: &Expr,
    ) -> Option<Kind> {
        let (ExprKind::List(items) | ExprKind::Tuple(items)) = &mut list.kind else {
            return None;
        };
        let mut rank = None;
        for it in items.iter_mut() {
            let r = self.expr(it)?.elem()?.len();
            if rank.replace(r).is_some_and(|q| q != r) {
                return None;
            }
        }
        let rank = rank?;
        let dim = match (rest, kwargs) {
            ([], []) => None,
            ([d], []) => Some(d),
            ([], [(k, d)]) if k.name == "dim" => Some(d),
            _ => return None,
        };
        match dim {
            Some(d) if stack => shift_new_dim(d, rank + 1)?,
            Some(d) => {
                shift_dim(d, rank)?;
            }
            None if stack || rank > 0 => {}
            None => return None,
        }
        self.probe_kind(orig)
    }
}

/// `x.flatten(start, end)` of an element: both dims made explicit and non-negative, so they
/// keep naming element axes (the default end -1 would name the lane axis).
fn flatten(
    recv: Kind,
    args: &mut Vec<Expr>,
    off: usize,
    kwargs: &mut Vec<(Ident, Expr)>,
    span: Span,
) -> Option<()> {
    let rank = i64::try_from(recv.elem()?.len()).ok()?;
    if rank == 0 {
        return None;
    }
    let mut start = 0;
    let mut end = -1;
    for (i, a) in args.get(off..)?.iter().enumerate() {
        match i {
            0 => start = int_literal(a)?,
            1 => end = int_literal(a)?,
            _ => return None,
        }
    }
    for (k, v) in kwargs.iter() {
        match k.name.as_str() {
            "start_dim" if args.len() == off => start = int_literal(v)?,
            "end_dim" if args.len() <= off + 1 => end = int_literal(v)?,
            _ => return None,
        }
    }
    let norm = |d: i64| {
        let d = if d < 0 { d + rank } else { d };
        (0..rank).contains(&d).then_some(d)
    };
    let (start, end) = (norm(start)?, norm(end)?);
    if start > end {
        return None;
    }
    args.truncate(off);
    kwargs.clear();
    for d in [start, end] {
        args.push(Expr {
            kind: ExprKind::Int(d),
            span,
        });
    }
    Some(())
}

/// `recv.name(args..)` with integer arguments.
fn method(recv: Expr, name: &str, args: &[i64]) -> Expr {
    let span = recv.span;
    Expr {
        kind: ExprKind::Call {
            func: Box::new(Expr {
                kind: ExprKind::Attr {
                    value: Box::new(recv),
                    attr: Ident {
                        name: name.into(),
                        span,
                    },
                },
                span,
            }),
            args: args
                .iter()
                .map(|&a| Expr {
                    kind: ExprKind::Int(a),
                    span,
                })
                .collect(),
            kwargs: Vec::new(),
        },
        span,
    }
}

fn torch_attr(name: &str, span: Span) -> Expr {
    Expr {
        kind: ExprKind::Attr {
            value: Box::new(Expr {
                kind: ExprKind::Name("torch".into()),
                span,
            }),
            attr: Ident {
                name: name.into(),
                span,
            },
        },
        span,
    }
}

fn is_torch(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if n == "torch")
}

/// A Python number (not a tensor).
fn is_number(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Const(Value::Int(_) | Value::Float(_) | Value::Bool(_))
    )
}

fn unary(k: Kind) -> Option<Kind> {
    match k {
        Kind::Module(_) | Kind::Tuple(_) => None,
        k => Some(k),
    }
}

/// An integer literal (`2`, `-1`).
fn int_literal(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(v) => Some(*v),
        ExprKind::Unary {
            op: UnOp::Neg,
            operand,
        } => match operand.kind {
            ExprKind::Int(v) => v.checked_neg(),
            _ => None,
        },
        _ => None,
    }
}

fn bool_literal(e: &Expr) -> Option<bool> {
    match e.kind {
        ExprKind::Bool(b) => Some(b),
        _ => None,
    }
}

/// Checks a literal dim of an element of rank `rank` and rewrites a negative one to skip the
/// lane axis. Returns the element axis it names.
fn shift_dim(d: &mut Expr, rank: usize) -> Option<usize> {
    let v = int_literal(d)?;
    let r = i64::try_from(rank).ok()?;
    if v < 0 {
        let axis = usize::try_from(r + v).ok()?;
        d.kind = ExprKind::Int(v - 1);
        Some(axis)
    } else {
        (v < r).then(|| usize::try_from(v).ok())?
    }
}

/// A dim of an element of rank `rank` as it names the same axis of the batch (`None` when it
/// is out of range).
fn lane_dim(d: i64, rank: usize) -> Option<i64> {
    let r = i64::try_from(rank).ok()?;
    match d {
        d if d < -r || d >= r => None,
        d if d < 0 => Some(d - 1),
        d => Some(d),
    }
}

/// Like [`shift_dim`] for the new axis of `stack`/`unsqueeze`, whose result has rank `rank`.
fn shift_new_dim(d: &mut Expr, rank: usize) -> Option<()> {
    shift_dim(d, rank).map(|_| ())
}

/// A reduction (or, with `keep_shape`, softmax) over one literal dim of an element: the dim
/// comes positionally or as `dim=`; `keepdim=` (and for var/std `unbiased=`) must be literals.
fn reduce(
    recv: Kind,
    args: &mut [Expr],
    kwargs: &mut [(Ident, Expr)],
    allow_unbiased: bool,
    keep_shape: bool,
) -> Option<Kind> {
    let Kind::Elem(mut shape) = recv else {
        return None;
    };
    let mut keepdim = false;
    let mut dim: Option<&mut Expr> = None;
    match args {
        [] => {}
        [d] => dim = Some(d),
        _ => return None,
    }
    for (k, v) in kwargs.iter_mut() {
        match k.name.as_str() {
            "dim" if dim.is_none() => dim = Some(v),
            "keepdim" if !keep_shape => keepdim = bool_literal(v)?,
            "unbiased" if allow_unbiased => {
                bool_literal(v)?;
            }
            _ => return None,
        }
    }
    let axis = shift_dim(dim?, shape.len())?;
    if !keep_shape {
        if keepdim {
            *shape.get_mut(axis)? = 1;
        } else {
            shape.remove(axis);
        }
    }
    Some(Kind::Elem(shape))
}

/// torch's broadcast of two shapes, or `None` when they do not broadcast.
fn broadcast(s: &[usize], t: &[usize]) -> Option<Vec<usize>> {
    let n = s.len().max(t.len());
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        // k-th axis from the right
        let a = s.iter().rev().nth(k).copied().unwrap_or(1);
        let b = t.iter().rev().nth(k).copied().unwrap_or(1);
        out.push(match (a, b) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    out.reverse();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        body: &str,
        inputs: &[Vec<usize>],
        state: Option<&[Vec<usize>]>,
        out: &[Vec<usize>],
    ) -> bool {
        let b = stepforge_syntax::parse_block(body).ok().unwrap();
        let mut env = Env::default();
        env.names
            .insert("gelu".into(), Value::Module(Module::Gelu { tanh: false }));
        env.names.insert(
            "softmax".into(),
            Value::Module(Module::Softmax { dim: Some(-1) }),
        );
        batched_body(&b, &env, &BTreeMap::new(), inputs, state, out).is_some()
    }

    #[test]
    fn elementwise_bodies_batch() {
        // different element shapes broadcast as they would per element (lanes go last)
        assert!(check(
            "return [state[0] * input[0]]",
            &[vec![]],
            Some(&[vec![4]]),
            &[vec![4]]
        ));
        assert!(check(
            "return [input[0] + input[1]]",
            &[vec![2, 1], vec![3]],
            None,
            &[vec![2, 3]]
        ));
        let s = vec![vec![]];
        assert!(check(
            "return [input[0] * input[1]]",
            &[vec![], vec![]],
            None,
            &s
        ));
        assert!(check(
            "return [torch.tensor(1.0) + 0.1 * input[0]]",
            &[vec![]],
            None,
            &s
        ));
        assert!(check(
            "return [state[0] + input[0]]",
            &[vec![4]],
            Some(&[vec![4]]),
            &[vec![4]]
        ));
        assert!(check(
            "y = gelu(input[0])\nreturn [y.exp() * 2]",
            &[vec![3]],
            None,
            &[vec![3]]
        ));
        assert!(check(
            "m = torch.max(state[0], input[0])\nreturn [m, torch.exp(state[0] - m)]",
            &[vec![]],
            Some(&[vec![], vec![]]),
            &[vec![], vec![]]
        ));
    }

    #[test]
    fn reductions_over_one_literal_dim_batch_with_negative_dims_shifted() {
        let body = "x = input[0]\nmu = x.mean(dim=-1)\nv = x.var(-1, unbiased=False)\nreturn [(x - mu) / torch.sqrt(v + 1e-5) + x.sum(0, keepdim=True) / x.size(-1)]";
        let b = stepforge_syntax::parse_block(body).ok().unwrap();
        let out = batched_body(
            &b,
            &Env::default(),
            &BTreeMap::new(),
            &[vec![4]],
            None,
            &[vec![4]],
        )
        .unwrap();
        let printed = stepforge_syntax::print::block(&out.body);
        assert!(printed.contains("mean(dim=-2)"), "{printed}");
        assert!(printed.contains("var(-2, unbiased=False)"), "{printed}");
        assert!(printed.contains("sum(0, keepdim=True)"), "{printed}");
        // the element's size is lane-invariant: it becomes a literal
        assert!(printed.contains("/ 4"), "{printed}");
        assert!(check(
            "return [torch.softmax(input[0], dim=-1)]",
            &[vec![2, 3]],
            None,
            &[vec![2, 3]]
        ));
        assert!(check(
            "return [input[0].amax(dim=1)]",
            &[vec![2, 3]],
            None,
            &[vec![2]]
        ));
    }

    #[test]
    fn conditionals_indexing_and_shape_ops_batch() {
        let s = vec![vec![]];
        assert!(check(
            "return [input[0] if input[0] > 0 else -input[0]]",
            &[vec![]],
            None,
            &s
        ));
        assert!(check(
            "x = input[0]\nreturn [x.exp()] if (input[1] > 0.5) else [x * 2]",
            &[vec![4], vec![]],
            None,
            &[vec![4]]
        ));
        assert!(check("return [input[0][0]]", &[vec![4]], None, &s));
        // a softmax module's negative dim is shifted past the lanes
        assert!(check(
            "return [softmax(input[0])]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(check(
            "return [torch.zeros_like(input[0]).scatter(-1, torch.topk(input[0], 2, dim=-1)[1], 1.0)]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(check(
            "x = input[0].view(-1, 2)\nreturn [(x[:, 0] * x[:, 1]).reshape(2, 1)]",
            &[vec![4]],
            None,
            &[vec![2, 1]]
        ));
        assert!(check(
            "x = input[0]\nreturn [x[..., ::2] * x[..., 1::2]]",
            &[vec![4]],
            None,
            &[vec![2]]
        ));
        assert!(check(
            "x1, x2 = input[0].chunk(2, dim=-1)\nreturn [torch.cat([-x2, x1], dim=-1)]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(check(
            "idx = torch.topk(input[0], 1, dim=0)[1]\nreturn [(torch.arange(input[0].size(0)) == idx).float()]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(check(
            "d = input[0].size(-1)\ninv = torch.arange(d, dtype=torch.float)[::2] / d\na = input[1] * inv\nreturn [torch.stack([a.cos(), a.sin()], dim=-1).flatten()]",
            &[vec![4], vec![]],
            None,
            &[vec![4]]
        ));
    }

    #[test]
    fn anything_else_does_not() {
        // full reductions, dims out of range, non-literal dims
        assert!(!check(
            "return [input[0].sum()]",
            &[vec![4]],
            None,
            &[vec![]]
        ));
        assert!(!check(
            "return [input[0].sum(dim=1)]",
            &[vec![4]],
            None,
            &[vec![]]
        ));
        assert!(!check(
            "return [input[0].mean(dim=-1)]",
            &[vec![]],
            None,
            &[vec![]]
        ));
        assert!(!check(
            "d = 0\nreturn [input[0].sum(dim=d)]",
            &[vec![4]],
            None,
            &[vec![]]
        ));
        let s = vec![vec![]];
        // reductions, matmul, indexing into an element, data, conditionals
        assert!(!check("return [input[0].sum()]", &[vec![4]], None, &s));
        assert!(!check(
            "return [input[0] @ input_data['W']]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));

        // a softmax module over a whole 0-d element has no dim to normalise
        assert!(!check("return [softmax(input[0])]", &[vec![]], None, &s));
        // a conditional on a whole element, branches of different shapes, a chained condition
        assert!(!check(
            "return [input[0] if input[1] > 0 else -input[0]]",
            &[vec![4], vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(!check(
            "return [input[0] if input[1] > 0 else input[0].sum(0, keepdim=True)]",
            &[vec![4], vec![]],
            None,
            &[vec![4]]
        ));
        assert!(!check(
            "return [input[0] if 0 < input[1] < 1 else -input[0]]",
            &[vec![4], vec![]],
            None,
            &[vec![4]]
        ));
        // an in-place method on a lane-invariant local is not evaluated ahead of time (its
        // out-of-place form is)
        assert!(check(
            "c = torch.zeros(4)\nd = c.add(1.0)\nreturn [input[0] * c + d]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(!check(
            "c = torch.zeros(4)\nd = c.add_(1.0)\nreturn [input[0] * c]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        // indexing past the element's rank would reach the lane axis
        assert!(!check("return [input[0][0, 1]]", &[vec![4]], None, &s));
        // a lane-invariant tensor where an element belongs
        assert!(!check(
            "return [torch.cat([input[0], torch.zeros(2)], dim=0)]",
            &[vec![4]],
            None,
            &[vec![6]]
        ));
        assert!(!check(
            "return [torch.max(input[0], 0)]",
            &[vec![4]],
            None,
            &s
        ));
        // element shapes that do not broadcast
        assert!(!check(
            "return [input[0] * input[1]]",
            &[vec![3], vec![4]],
            None,
            &[vec![4]]
        ));
        // a declared output shape the body does not produce
        assert!(!check("return [input[0] * 2]", &[vec![]], None, &[vec![4]]));
        assert!(!check("return [input[0], input[0]]", &[vec![]], None, &s));
    }
}
