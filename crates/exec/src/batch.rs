//! The lane-batching pass: an IR→IR rewrite of an element function's body
//! ([`stepforge_ir::func::Body`]) into a body that computes a whole batch of elements in one
//! call, when the function allows it.
//!
//! Calling the evaluator once per element costs a few microseconds of interpretation, which
//! dominates verification of small kernels. Many element functions are *lane-parallel*: given
//! a batch tensor `(..elem, B)` per field (the lanes on the *last* axis) they compute exactly
//! the `B` results they compute element by element. That holds for
//! - elementwise operations and comparisons (the builtin table's `Unary`/`Binary` classes):
//!   operands of different element shapes broadcast right-aligned, so the lane axes align
//!   with each other and the element axes align as they do per element. A lane-invariant
//!   tensor operand of shape `c` is given a trailing unit axis, `(..c, 1)`, so it too aligns
//!   with the element axes and not with the lanes;
//! - reductions, softmax, `topk`, `chunk` and `cat` over one literal dim of an element, once a
//!   negative dim is shifted by one so it skips the lane axis (positive dims already index the
//!   same axes); `stack` and `unsqueeze`, whose new axis is counted the same way; `flatten`
//!   with its (normalised, non-negative) start and end dims;
//! - indexing an element with literal integers and slices: they address the leading element
//!   axes, and after an `...` a trailing `:` keeps the lane axis out of reach;
//! - `a if c else b` with a per-element 0-d comparison `c` and branches of one element shape:
//!   `torch.where(c, a, b)` picks, lane by lane, the value the selected branch computes.
//!
//! The pass is an abstract interpretation over the IR: every node gets a [`Kind`] — a known
//! lane-invariant value, a per-element value of a known element shape, a sequence of those,
//! or the known-shape `input_data` tensor — computed from its operands' kinds by shape rules
//! (no evaluation on stand-in data). Lane-invariant nodes (literals, globals, dims, shapes of
//! elements, and builtins applied to those) are constant-folded: evaluated once on their real
//! values and replaced by a literal, or by a constant the batched function is prepared with
//! ([`Batched::prepare`]).
//!
//! [`batched_body`] returns the rewritten body or `None`. It is deliberately conservative:
//! non-literal dims, chained comparisons, full reductions, in-place methods and anything it
//! does not know make the function per-element only. The executor also checks every batched
//! result's shape and falls back to per-element calls on any mismatch or error, so the
//! per-element path keeps producing the exact diagnostics; a property test checks batched and
//! per-element results bit for bit.

use std::collections::BTreeMap;
use std::sync::Arc;

use stepforge_diag::Span;
use stepforge_ir::builtin::{Builtin, Class};
use stepforge_ir::func::{
    BinOp, Body, Const, Expr, ExprId, INPUT_SLOT, Index, Key, Mode, STATE_SLOT, Stmt, Target, UnOp,
};

use crate::eval::{self, Env, EvalError, Function, Module, Value};

/// A batched body and the lane-invariant constants it names.
#[derive(Debug, Clone)]
pub struct Batched {
    pub body: Arc<Body>,
    /// Global names no program can write (`#c0`, ..), so no user name can shadow them.
    pub consts: Vec<(String, Value)>,
}

impl Batched {
    /// Prepares the batched body against `env` plus its constants. The result is called with
    /// `env` itself: constants are resolved at preparation time.
    pub fn prepare(&self, name: impl Into<String>, env: &Env) -> Result<Function, EvalError> {
        if self.consts.is_empty() {
            return Function::from_ir(name, self.body.clone(), env);
        }
        let mut names = env.names.clone();
        names.extend(self.consts.iter().cloned());
        let with_consts = Env {
            dims: env.dims.clone(),
            names,
            data: BTreeMap::new(),
            limits: env.limits,
        };
        Function::from_ir(name, self.body.clone(), &with_consts)
    }
}

/// What the pass knows about a value.
#[derive(Debug, Clone)]
enum Kind {
    /// The same for every element, and known (a number, a tensor, a module object, ..).
    Const(Value),
    /// A per-element value with this element shape.
    Elem(Vec<usize>),
    /// A list or tuple of values not all constant (`x.chunk(..)`, `[a, b]`).
    Seq(Vec<Kind>),
    /// The same for every element but only known at call time: `input_data['W']`, of this
    /// shape.
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

    fn value(&self) -> Option<&Value> {
        match self {
            Kind::Const(v) => Some(v),
            _ => None,
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Kind::Const(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A Python number (not a tensor).
    fn is_number(&self) -> bool {
        matches!(
            self,
            Kind::Const(Value::Int(_) | Value::Float(_) | Value::Bool(_))
        )
    }
}

/// An analysed node: its kind and its id in the rewritten body.
type Node = (Kind, ExprId);

struct Cx<'a> {
    src: &'a Body,
    out: Body,
    env: &'a Env,
    inputs: &'a [Vec<usize>],
    state: Option<&'a [Vec<usize>]>,
    /// The kind of every local bound so far, by slot.
    locals: Vec<Option<Kind>>,
    consts: Vec<(String, Value)>,
}

/// The lane-parallel form of `body` (see the module doc) when `body`, called with element
/// fields of shapes `inputs` (and reducer state of shapes `state`), is lane-parallel and
/// returns fields of exactly `outputs`' shapes; `None` otherwise. The shapes of the
/// `input_data` tensors are read from `env`.
pub fn batched_body(
    body: &Body,
    env: &Env,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    outputs: &[Vec<usize>],
) -> Option<Batched> {
    if body.mode != Mode::Function {
        return None;
    }
    let mut out = Body::new(Mode::Function, body.span);
    out.slot_names = body.slot_names.clone();
    let mut cx = Cx {
        src: body,
        out,
        env,
        inputs,
        state,
        locals: vec![None; body.slot_names.len()],
        consts: Vec::new(),
    };
    let n = body.stmts.len();
    for (i, stmt) in body.stmts.iter().enumerate() {
        match stmt {
            Stmt::Assign(target, value) if i + 1 < n => {
                let (k, id) = cx.expr(*value)?;
                cx.bind(target, k)?;
                cx.out.stmts.push(Stmt::Assign(target.clone(), id));
            }
            Stmt::Return(e) if i + 1 == n => {
                let id = cx.ret(*e, outputs)?;
                cx.out.stmts.push(Stmt::Return(id));
                return Some(Batched {
                    body: Arc::new(cx.out),
                    consts: cx.consts,
                });
            }
            _ => return None,
        }
    }
    None
}

/// An integer literal of the source (`2`, `-1`): dims must be written, not computed.
fn int_literal(b: &Body, id: ExprId) -> Option<i64> {
    match b.expr(id) {
        Expr::Const(Const::Int(v)) => Some(*v),
        Expr::Unary(UnOp::Neg, x) => match b.expr(*x) {
            Expr::Const(Const::Int(v)) => v.checked_neg(),
            _ => None,
        },
        _ => None,
    }
}

fn bool_literal(b: &Body, id: ExprId) -> Option<bool> {
    match b.expr(id) {
        Expr::Const(Const::Bool(v)) => Some(*v),
        _ => None,
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

/// The axis `d` names in a rank-`rank` shape.
fn axis(d: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if d < 0 { d + r } else { d };
    if (0..r).contains(&a) {
        usize::try_from(a).ok()
    } else {
        None
    }
}

/// torch's broadcast of two shapes, or `None` when they do not broadcast.
fn broadcast(s: &[usize], t: &[usize]) -> Option<Vec<usize>> {
    stepforge_tensor::broadcast_shapes(s, t).ok()
}

/// The length of `lo:hi:step` over an axis of length `n` (Python's rules; `step > 0`).
fn slice_len(n: usize, lo: Option<i64>, hi: Option<i64>, step: i64) -> Option<usize> {
    if step <= 0 {
        return None;
    }
    let n = i64::try_from(n).ok()?;
    let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
    let lo = lo.map_or(0, clamp);
    let hi = hi.map_or(n, clamp);
    let len = if hi > lo {
        (hi - lo + step - 1) / step
    } else {
        0
    };
    usize::try_from(len).ok()
}

/// The element shape `x.view(args)` gives an element of `shape` (one `-1` allowed).
fn view_shape(shape: &[usize], args: &[i64]) -> Option<Vec<usize>> {
    let numel: usize = shape.iter().product();
    let known: usize = args
        .iter()
        .filter(|&&a| a != -1)
        .map(|&a| usize::try_from(a).ok())
        .product::<Option<usize>>()?;
    let holes = args.iter().filter(|&&a| a == -1).count();
    let fill = match holes {
        0 if known == numel => 0,
        1 if known > 0 && numel.is_multiple_of(known) => numel / known,
        _ => return None,
    };
    Some(
        args.iter()
            .map(|&a| usize::try_from(a).unwrap_or(fill))
            .collect(),
    )
}

impl Cx<'_> {
    fn emit(&mut self, e: Expr, span: Span) -> ExprId {
        self.out.push(e, span)
    }

    fn emit_int(&mut self, v: i64, span: Span) -> ExprId {
        self.emit(Expr::Const(Const::Int(v)), span)
    }

    /// A constant the batched function is prepared with.
    fn constant(&mut self, v: Value, span: Span) -> ExprId {
        let name = format!("#c{}", self.consts.len());
        self.consts.push((name.clone(), v));
        self.emit(Expr::Global(name.into()), span)
    }

    /// A known value as a node: a literal for a Python number, else a constant.
    fn value_node(&mut self, v: Value, span: Span) -> Node {
        let id = match &v {
            Value::Int(x) => self.emit(Expr::Const(Const::Int(*x)), span),
            Value::Float(x) => self.emit(Expr::Const(Const::Float(*x)), span),
            Value::Bool(x) => self.emit(Expr::Const(Const::Bool(*x)), span),
            _ => self.constant(v.clone(), span),
        };
        (Kind::Const(v), id)
    }

    /// `recv.f(args..)` with integer arguments.
    fn method(&mut self, recv: ExprId, f: Builtin, args: &[i64]) -> ExprId {
        let span = self.out.span(recv);
        let args = args.iter().map(|&a| self.emit_int(a, span)).collect();
        self.emit(
            Expr::Call {
                func: f,
                recv: Some(recv),
                args,
                kwargs: Vec::new(),
                inplace: None,
            },
            span,
        )
    }

    /// Records a local's kind. `input` and `state` are never rebound.
    fn bind(&mut self, target: &Target, k: Kind) -> Option<()> {
        match (target, k) {
            (Target::Slot(s), k) if *s != INPUT_SLOT && *s != STATE_SLOT => {
                *self.locals.get_mut(*s as usize)? = Some(k);
                Some(())
            }
            (Target::Tuple(ts, _), Kind::Seq(ks)) if ts.len() == ks.len() => {
                for (t, k) in ts.iter().zip(ks) {
                    let Target::Slot(_) = t else { return None };
                    self.bind(t, k)?;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// The returned list: one element of each output's shape. `return [a] if c else [b]` is
    /// `return [a if c else b]`.
    fn ret(&mut self, e: ExprId, outputs: &[Vec<usize>]) -> Option<ExprId> {
        let span = self.src.span(e);
        let items: Vec<Node> = match self.src.expr(e) {
            Expr::List(items) => {
                let items = items.clone();
                items
                    .iter()
                    .map(|&it| self.expr(it))
                    .collect::<Option<_>>()?
            }
            Expr::IfElse { cond, then, orelse } => {
                let (cond, then, orelse) = (*cond, *then, *orelse);
                let (Expr::List(a), Expr::List(b)) = (self.src.expr(then), self.src.expr(orelse))
                else {
                    return None;
                };
                if a.len() != b.len() {
                    return None;
                }
                let (a, b) = (a.clone(), b.clone());
                let c = self.cond(cond)?;
                let mut items = Vec::with_capacity(a.len());
                for (x, y) in a.into_iter().zip(b) {
                    let (nx, ny) = (self.expr(x)?, self.expr(y)?);
                    items.push(self.select(&c, nx, ny, span)?);
                }
                items
            }
            _ => return None,
        };
        if items.len() != outputs.len() {
            return None;
        }
        let mut ids = Vec::with_capacity(items.len());
        for ((k, id), shape) in items.into_iter().zip(outputs) {
            if k.elem()? != &shape[..] {
                return None;
            }
            ids.push(id);
        }
        Some(self.emit(Expr::List(ids), span))
    }

    /// The condition of a conditional: one comparison, per element, 0-d.
    fn cond(&mut self, cond: ExprId) -> Option<Node> {
        if !matches!(self.src.expr(cond), Expr::Compare(_, rest) if rest.len() == 1) {
            return None;
        }
        let c = self.expr(cond)?;
        c.0.elem()?.is_empty().then_some(c)
    }

    /// `a if c else b` as `torch.where(c, a, b)` (branches of one element shape).
    fn select(&mut self, c: &Node, a: Node, b: Node, span: Span) -> Option<Node> {
        let shape = a.0.elem()?.to_vec();
        if b.0.elem()? != &shape[..] {
            return None;
        }
        let id = self.emit(
            Expr::Call {
                func: Builtin::Where,
                recv: None,
                args: vec![c.1, a.1, b.1],
                kwargs: Vec::new(),
                inplace: None,
            },
            span,
        );
        Some((Kind::Elem(shape), id))
    }

    /// Evaluates the source node `id` once, its operands being the known values in `vals`
    /// (by source id), and puts the value in its place.
    fn fold(&mut self, id: ExprId, vals: &[(ExprId, Value)]) -> Option<Node> {
        let span = self.src.span(id);
        let mut mini = Body::new(Mode::Snippet, span);
        let mut names = Vec::new();
        let mut map = BTreeMap::new();
        for (src, v) in vals {
            let e = match v {
                Value::Int(x) => Expr::Const(Const::Int(*x)),
                Value::Float(x) => Expr::Const(Const::Float(*x)),
                Value::Bool(x) => Expr::Const(Const::Bool(*x)),
                Value::None => Expr::Const(Const::None),
                v => {
                    let name = format!("#m{}", names.len());
                    names.push((name.clone(), v.clone()));
                    Expr::Global(name.into())
                }
            };
            map.insert(*src, mini.push(e, span));
        }
        let node = self
            .src
            .expr(id)
            .map_ids(&mut |o| map.get(&o).copied().unwrap_or(o));
        if node
            .operands()
            .iter()
            .any(|o| !map.values().any(|m| m == o))
        {
            return None;
        }
        let root = mini.push(node, span);
        mini.stmts.push(Stmt::Return(root));
        let mut env = self.env.clone();
        env.names.extend(names);
        let v = eval::eval_body(Arc::new(mini), &env).ok()?;
        Some(self.value_node(v, span))
    }

    /// Analyses the operands of `id` (source ids); when all are known, folds `id`.
    fn fold_if_const(&mut self, id: ExprId, ops: &[(ExprId, Node)]) -> Option<Option<Node>> {
        let mut vals = Vec::with_capacity(ops.len());
        for (src, (k, _)) in ops {
            match k.value() {
                Some(v) => vals.push((*src, v.clone())),
                None => return Some(None),
            }
        }
        self.fold(id, &vals).map(Some)
    }

    /// Analyses every operand of `id` in order.
    fn operands(&mut self, id: ExprId) -> Option<Vec<(ExprId, Node)>> {
        let ops = self.src.expr(id).operands();
        ops.into_iter()
            .map(|o| self.expr(o).map(|n| (o, n)))
            .collect()
    }

    /// Copies source node `id` with its operands replaced by their rewritten ids.
    fn copy(&mut self, id: ExprId, ops: &[(ExprId, Node)]) -> ExprId {
        let map: BTreeMap<ExprId, ExprId> = ops.iter().map(|(s, (_, o))| (*s, *o)).collect();
        let e = self
            .src
            .expr(id)
            .map_ids(&mut |o| map.get(&o).copied().unwrap_or(o));
        let span = self.src.span(id);
        self.emit(e, span)
    }

    fn expr(&mut self, id: ExprId) -> Option<Node> {
        let span = self.src.span(id);
        match self.src.expr(id) {
            Expr::Const(c) => {
                let v = eval::const_value(c);
                let e = Expr::Const(c.clone());
                Some((Kind::Const(v), self.emit(e, span)))
            }
            Expr::Slot(s) => {
                let k = self.locals.get(*s as usize)?.clone()?;
                let s = *s;
                Some((k, self.emit(Expr::Slot(s), span)))
            }
            Expr::Global(n) => {
                let v = self.env.names.get(&**n)?.clone();
                let e = Expr::Global(n.clone());
                Some((Kind::Const(v), self.emit(e, span)))
            }
            Expr::DimValue(d) => {
                let v = *self.env.dims.get(&**d)?;
                Some(self.value_node(Value::Int(v), span))
            }
            Expr::CtxGet(Key::Const(d)) => {
                let v = *self.env.dims.get(&**d)?;
                Some(self.value_node(Value::Int(v), span))
            }
            Expr::DataGet(Key::Const(k)) => {
                let shape = self.env.data.get(&**k)?.shape().to_vec();
                let e = self.src.expr(id).clone();
                Some((Kind::Data(shape), self.emit(e, span)))
            }
            Expr::Attr(..) => self.attr(id),
            Expr::Call { .. } => self.call(id),
            Expr::CallValue { .. } => self.call_value(id),
            Expr::Subscript(..) => self.subscript(id),
            Expr::Binary(..) | Expr::Unary(..) | Expr::Compare(..) => self.arith(id),
            Expr::IfElse { cond, .. } => {
                let cond = *cond;
                let ops = self.operands(id)?;
                if let Some(n) = self.fold_if_const(id, &ops)? {
                    return Some(n);
                }
                let [_, a, b] = &ops[..] else { return None };
                let (a, b) = (a.1.clone(), b.1.clone());
                // The condition was analysed with the operands; its rewritten id is reused.
                if !matches!(self.src.expr(cond), Expr::Compare(_, rest) if rest.len() == 1) {
                    return None;
                }
                let c = ops[0].1.clone();
                if !c.0.elem()?.is_empty() {
                    return None;
                }
                self.select(&c, a, b, span)
            }
            Expr::List(_) | Expr::Tuple(_) => {
                let ops = self.operands(id)?;
                if let Some(n) = self.fold_if_const(id, &ops)? {
                    return Some(n);
                }
                let kinds = ops.iter().map(|(_, (k, _))| k.clone()).collect();
                Some((Kind::Seq(kinds), self.copy(id, &ops)))
            }
            Expr::CtxGet(_) | Expr::DataGet(_) | Expr::ListComp { .. } | Expr::FString(_) => None,
        }
    }

    /// `x.shape` / `x.ndim` of an element are known; other attributes only of constants.
    fn attr(&mut self, id: ExprId) -> Option<Node> {
        let Expr::Attr(_, a) = self.src.expr(id) else {
            return None;
        };
        let a = *a;
        let span = self.src.span(id);
        let ops = self.operands(id)?;
        if let Some(n) = self.fold_if_const(id, &ops)? {
            return Some(n);
        }
        let shape = ops.first()?.1.0.elem()?.to_vec();
        match a {
            stepforge_ir::func::Attr::Shape => Some(self.value_node(shape_value(&shape)?, span)),
            stepforge_ir::func::Attr::Ndim => {
                Some(self.value_node(Value::Int(i64::try_from(shape.len()).ok()?), span))
            }
            _ => None,
        }
    }

    /// Arithmetic, unary operators and one comparison.
    fn arith(&mut self, id: ExprId) -> Option<Node> {
        let ops = self.operands(id)?;
        if let Some(n) = self.fold_if_const(id, &ops)? {
            return Some(n);
        }
        let span = self.src.span(id);
        match self.src.expr(id).clone() {
            Expr::Binary(BinOp::MatMul, ..) => {
                let [(_, a), (_, b)] = &ops[..] else {
                    return None;
                };
                self.matmul(a.clone(), b.clone(), span)
            }
            Expr::Binary(
                op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow),
                ..,
            ) => {
                let [(_, a), (_, b)] = &ops[..] else {
                    return None;
                };
                let (k, a, b) = self.combine(a, b)?;
                Some((k, self.emit(Expr::Binary(op, a, b), span)))
            }
            Expr::Compare(_, rest) if rest.len() == 1 => {
                let [(_, a), (_, b)] = &ops[..] else {
                    return None;
                };
                let (k, a, b) = self.combine(a, b)?;
                let e = Expr::Compare(a, vec![(rest[0].0, b)]);
                Some((k, self.emit(e, span)))
            }
            Expr::Unary(UnOp::Neg | UnOp::Pos, ..) => {
                let k = unary(ops.first()?.1.0.clone())?;
                Some((k, self.copy(id, &ops)))
            }
            _ => None,
        }
    }

    /// The element shape an operand contributes (`None` for a scalar) and its rewritten id,
    /// aligning a lane-invariant tensor that meets an element.
    fn operand(&mut self, n: &Node, other_elem: bool) -> Option<(Option<Vec<usize>>, ExprId)> {
        let (k, id) = n;
        if k.is_scalar() {
            return Some((None, *id));
        }
        match k {
            Kind::Elem(s) => Some((Some(s.clone()), *id)),
            Kind::Const(Value::Tensor(t)) if other_elem => {
                let aligned = t.unsqueeze(-1).ok()?;
                let span = self.out.span(*id);
                let c = self.constant(Value::tensor(aligned), span);
                Some((Some(t.shape().to_vec()), c))
            }
            Kind::Data(s) if other_elem => {
                let u = self.method(*id, Builtin::Unsqueeze, &[-1]);
                Some((Some(s.clone()), u))
            }
            _ => None,
        }
    }

    /// Two operands of an elementwise op: their element shapes broadcast (right-aligned, as in
    /// torch). The lanes are the *last* axis of both batched operands, so they align with each
    /// other and the element axes align exactly as they do per element.
    fn combine(&mut self, a: &Node, b: &Node) -> Option<(Kind, ExprId, ExprId)> {
        let (sa, ia) = self.operand(a, b.0.elem().is_some())?;
        let (sb, ib) = self.operand(b, a.0.elem().is_some())?;
        let k = match (sa, sb) {
            (Some(s), Some(t)) => Kind::Elem(broadcast(&s, &t)?),
            (Some(s), None) | (None, Some(s)) => Kind::Elem(s),
            (None, None) => return None,
        };
        Some((k, ia, ib))
    }

    /// `x @ W` with a per-element `x` of rank 1 or 2 and a lane-invariant matrix `W` becomes
    /// `(x.movedim(-1, 0) @ W).movedim(0, -1)`: every lane is one row of the product, and each
    /// output row is accumulated exactly as the per-element product accumulates it. `W @ v`
    /// with a per-element vector `v` needs nothing: the lanes are the product's columns.
    fn matmul(&mut self, a: Node, b: Node, span: Span) -> Option<Node> {
        let matrix = |k: &Kind| match k {
            Kind::Data(s) if s.len() == 2 => Some(s.clone()),
            Kind::Const(Value::Tensor(t)) if t.ndim() == 2 => Some(t.shape().to_vec()),
            _ => None,
        };
        if let (Some(w), Some(v)) = (matrix(&a.0), b.0.elem())
            && v.len() == 1
            && w.get(1) == v.first()
        {
            let shape = vec![*w.first()?];
            let id = self.emit(Expr::Binary(BinOp::MatMul, a.1, b.1), span);
            return Some((Kind::Elem(shape), id));
        }
        if let (Some(x), Some(y)) = (a.0.elem(), b.0.elem()) {
            let (x, y) = (x.to_vec(), y.to_vec());
            return self.matmul_lanes(a.1, b.1, &x, &y, span);
        }
        let (x, w) = (a.0.elem()?, matrix(&b.0)?);
        if !matches!(x.len(), 1 | 2) || x.last() != w.first() {
            return None;
        }
        let mut shape = x[..x.len() - 1].to_vec();
        shape.push(*w.get(1)?);
        let lhs = self.method(a.1, Builtin::Movedim, &[-1, 0]);
        let product = self.emit(Expr::Binary(BinOp::MatMul, lhs, b.1), span);
        Some((
            Kind::Elem(shape),
            self.method(product, Builtin::Movedim, &[0, -1]),
        ))
    }

    /// `x @ y` with both operands per element (ranks 1 or 2): the lanes become the batch axis
    /// of one batched product, `(x.movedim(-1, 0)[.unsqueeze(-2)] @
    /// y.movedim(-1, 0)[.unsqueeze(-1)])[.squeeze(..)].movedim(0, -1)`, where each lane's
    /// product is accumulated as the per-element one is.
    fn matmul_lanes(
        &mut self,
        a: ExprId,
        b: ExprId,
        x: &[usize],
        y: &[usize],
        span: Span,
    ) -> Option<Node> {
        let shape = match (x, y) {
            ([k], [l]) if k == l => vec![],
            ([m, k], [l]) if k == l => vec![*m],
            ([k], [l, n]) if k == l => vec![*n],
            ([m, k], [l, n]) if k == l => vec![*m, *n],
            _ => return None,
        };
        let mut xm = self.method(a, Builtin::Movedim, &[-1, 0]);
        if x.len() == 1 {
            xm = self.method(xm, Builtin::Unsqueeze, &[-2]);
        }
        let mut ym = self.method(b, Builtin::Movedim, &[-1, 0]);
        if y.len() == 1 {
            ym = self.method(ym, Builtin::Unsqueeze, &[-1]);
        }
        let mut p = self.emit(Expr::Binary(BinOp::MatMul, xm, ym), span);
        match (x.len(), y.len()) {
            (1, 1) => {
                p = self.method(p, Builtin::Squeeze, &[-1]);
                p = self.method(p, Builtin::Squeeze, &[-1]);
            }
            (_, 1) => p = self.method(p, Builtin::Squeeze, &[-1]),
            (1, _) => p = self.method(p, Builtin::Squeeze, &[-2]),
            _ => {}
        }
        Some((
            Kind::Elem(shape),
            self.method(p, Builtin::Movedim, &[0, -1]),
        ))
    }

    fn subscript(&mut self, id: ExprId) -> Option<Node> {
        let Expr::Subscript(base, items) = self.src.expr(id) else {
            return None;
        };
        let (base, items) = (*base, items.clone());
        let span = self.src.span(id);
        // `input[i]` / `state[i]` with a literal index.
        if let (Expr::Slot(s), [Index::Index(i)]) = (self.src.expr(base), &items[..]) {
            let shapes = match *s {
                INPUT_SLOT => Some(self.inputs),
                STATE_SLOT => self.state,
                _ => None,
            };
            if let Some(shapes) = shapes {
                let Expr::Const(Const::Int(i)) = self.src.expr(*i) else {
                    return None;
                };
                let shape = shapes.get(usize::try_from(*i).ok()?)?.clone();
                let (s, i) = (*s, *i);
                let b = self.emit(Expr::Slot(s), span);
                let i = self.emit_int(i, span);
                let e = Expr::Subscript(b, vec![Index::Index(i)]);
                return Some((Kind::Elem(shape), self.emit(e, span)));
            }
        }
        let ops = self.operands(id)?;
        if let Some(n) = self.fold_if_const(id, &ops)? {
            return Some(n);
        }
        let (bk, bid) = ops.first()?.1.clone();
        match bk {
            Kind::Seq(kinds) => {
                let [(_, (Kind::Const(Value::Int(i)), iid))] = &ops[1..] else {
                    return None;
                };
                let n = i64::try_from(kinds.len()).ok()?;
                let k = kinds.get(usize::try_from(if *i < 0 { i + n } else { *i }).ok()?)?;
                let e = Expr::Subscript(bid, vec![Index::Index(*iid)]);
                Some((k.clone(), self.emit(e, span)))
            }
            Kind::Elem(shape) => self.index(bid, &items, &ops[1..], &shape, span),
            _ => None,
        }
    }

    /// Indexes an element of `shape` with literal integers and slices on its axes and at most
    /// one `...`, after which a `:` is appended for the lane axis.
    fn index(
        &mut self,
        base: ExprId,
        items: &[Index],
        ops: &[(ExprId, Node)],
        shape: &[usize],
        span: Span,
    ) -> Option<Node> {
        let map: BTreeMap<ExprId, (Option<i64>, ExprId)> =
            ops.iter().map(|(s, (k, o))| (*s, (k.int(), *o))).collect();
        let get = |e: &Option<ExprId>| -> Option<(Option<i64>, Option<ExprId>)> {
            match e {
                None => Some((None, None)),
                Some(e) => map.get(e).and_then(|(v, o)| v.map(|v| (Some(v), Some(*o)))),
            }
        };
        let ell = items.iter().position(|i| matches!(i, Index::Ellipsis));
        if items
            .iter()
            .filter(|i| matches!(i, Index::Ellipsis))
            .count()
            > 1
        {
            return None;
        }
        let axes = items.len() - usize::from(ell.is_some());
        if axes > shape.len() {
            return None;
        }
        let mut out_items = Vec::with_capacity(items.len() + 1);
        let mut out_shape = Vec::with_capacity(shape.len());
        let mut ax = 0usize;
        for (pos, item) in items.iter().enumerate() {
            match item {
                Index::Index(e) => {
                    let (v, o) = get(&Some(*e))?;
                    let (v, o) = (v?, o?);
                    axis(v, *shape.get(ax)?)?;
                    ax += 1;
                    out_items.push(Index::Index(o));
                }
                Index::Slice(lo, hi, st) => {
                    let (lo_v, lo_o) = get(lo)?;
                    let (hi_v, hi_o) = get(hi)?;
                    let (st_v, st_o) = get(st)?;
                    out_shape.push(slice_len(*shape.get(ax)?, lo_v, hi_v, st_v.unwrap_or(1))?);
                    ax += 1;
                    out_items.push(Index::Slice(lo_o, hi_o, st_o));
                }
                Index::Ellipsis => {
                    // The axes the items after `...` do not index stay as they are.
                    let after = items.len() - pos - 1;
                    let skip = shape.len() - ax - after;
                    out_shape.extend_from_slice(shape.get(ax..ax + skip)?);
                    ax += skip;
                    out_items.push(Index::Ellipsis);
                }
            }
        }
        out_shape.extend_from_slice(shape.get(ax..)?);
        if ell.is_some() {
            out_items.push(Index::Slice(None, None, None));
        }
        let e = Expr::Subscript(base, out_items);
        Some((Kind::Elem(out_shape), self.emit(e, span)))
    }

    /// A module object (bound in `global`) called on one element. Softmax modules normalise
    /// over their literal dim: a negative one is shifted past the lane axis by calling a copy
    /// of the module with the shifted dim.
    fn call_value(&mut self, id: ExprId) -> Option<Node> {
        let Expr::CallValue { args, kwargs, .. } = self.src.expr(id) else {
            return None;
        };
        if args.len() != 1 || !kwargs.is_empty() {
            return None;
        }
        let span = self.src.span(id);
        let ops = self.operands(id)?;
        if let Some(n) = self.fold_if_const(id, &ops)? {
            return Some(n);
        }
        let [(_, (Kind::Const(Value::Module(m)), fid)), (_, x)] = &ops[..] else {
            return None;
        };
        let (m, mut fid, x) = (*m, *fid, x.clone());
        let shifted = match m {
            Module::Softmax { dim } => Module::Softmax {
                dim: Some(lane_dim(dim?, x.0.elem()?.len())?),
            },
            Module::LogSoftmax { dim } => Module::LogSoftmax {
                dim: Some(lane_dim(dim?, x.0.elem()?.len())?),
            },
            _ => m,
        };
        if shifted != m {
            fid = self.constant(Value::Module(shifted), span);
        }
        let k = unary(x.0)?;
        let e = Expr::CallValue {
            func: fid,
            args: vec![x.1],
            kwargs: Vec::new(),
        };
        Some((k, self.emit(e, span)))
    }
}

/// The kind of an elementwise function of one value.
fn unary(k: Kind) -> Option<Kind> {
    match k {
        Kind::Elem(_) | Kind::Data(_) => Some(k),
        // A known value would have been folded; its kind would not be the result's.
        Kind::Const(_) | Kind::Seq(_) => None,
    }
}

/// `x.shape` / `x.size()` of an element: a tuple of ints.
fn shape_value(shape: &[usize]) -> Option<Value> {
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).ok().map(Value::Int))
        .collect::<Option<Vec<_>>>()?;
    Some(Value::tuple(dims))
}

/// One analysed call: the builtin, its receiver and arguments (source id and node each).
struct CallParts {
    func: Builtin,
    span: Span,
    recv: Option<(ExprId, Node)>,
    args: Vec<(ExprId, Node)>,
    kwargs: Vec<(&'static str, ExprId, Node)>,
}

impl CallParts {
    /// The operand the builtin works on (`x` of `x.f(..)` or `torch.f(x, ..)`) and the
    /// arguments after it.
    fn subject(&self) -> Option<(&Node, &[(ExprId, Node)])> {
        match &self.recv {
            Some((_, n)) => Some((n, &self.args[..])),
            None => self.args.split_first().map(|((_, n), rest)| (n, rest)),
        }
    }

    fn method_form(&self) -> bool {
        self.recv.is_some()
    }

    /// The keyword argument `name`.
    fn kw(&self, name: &str) -> Option<&(&'static str, ExprId, Node)> {
        self.kwargs.iter().find(|(k, ..)| *k == name)
    }

    fn only_kwargs(&self, allowed: &[&str]) -> bool {
        self.kwargs.iter().all(|(k, ..)| allowed.contains(k))
    }
}

/// How a call is emitted: the same builtin with (possibly rewritten) operands.
struct Emit {
    recv: Option<ExprId>,
    args: Vec<ExprId>,
    kwargs: Vec<(&'static str, ExprId)>,
}

impl Emit {
    fn of(c: &CallParts) -> Emit {
        Emit {
            recv: c.recv.as_ref().map(|(_, n)| n.1),
            args: c.args.iter().map(|(_, n)| n.1).collect(),
            kwargs: c.kwargs.iter().map(|(k, _, n)| (*k, n.1)).collect(),
        }
    }

    /// Replaces the argument or keyword argument whose rewritten id is `old`.
    fn replace(&mut self, old: ExprId, new: ExprId) {
        for a in self
            .args
            .iter_mut()
            .chain(self.kwargs.iter_mut().map(|(_, v)| v))
        {
            if *a == old {
                *a = new;
            }
        }
    }
}

impl Cx<'_> {
    fn call(&mut self, id: ExprId) -> Option<Node> {
        let Expr::Call {
            func,
            recv,
            args,
            kwargs,
            inplace,
        } = self.src.expr(id).clone()
        else {
            return None;
        };
        // In-place methods write to a local: evaluating them once here would lose the write.
        if inplace.is_some() {
            return None;
        }
        let ops = self.operands(id)?;
        if let Some(n) = self.fold_if_const(id, &ops)? {
            return Some(n);
        }
        let mut it = ops.into_iter();
        let recv = match recv {
            Some(_) => Some(it.next()?),
            None => None,
        };
        let args: Vec<(ExprId, Node)> = it.by_ref().take(args.len()).collect();
        let kwargs = kwargs
            .iter()
            .map(|(k, _)| it.next().map(|(s, n)| (*k, s, n)))
            .collect::<Option<Vec<_>>>()?;
        let c = CallParts {
            func,
            span: self.src.span(id),
            recv,
            args,
            kwargs,
        };
        if matches!(func, Builtin::Size | Builtin::Dim | Builtin::Numel) {
            return self.shape_query(&c);
        }
        let mut emit = Emit::of(&c);
        let k = self.call_rule(&c, &mut emit)?;
        let e = Expr::Call {
            func,
            recv: emit.recv,
            args: emit.args,
            kwargs: emit.kwargs,
            inplace: None,
        };
        Some((k, self.emit(e, c.span)))
    }

    /// The kind of a call's result, rewriting its operands in `emit` where the lanes need it.
    fn call_rule(&mut self, c: &CallParts, emit: &mut Emit) -> Option<Kind> {
        use Builtin as B;
        let (x, rest) = c.subject()?;
        let x = x.clone();
        match c.func {
            // `x.float()` is elementwise too (a dtype conversion).
            f if (f.class() == Class::Unary || (f == B::ToFloat && c.method_form()))
                && rest.is_empty()
                && c.kwargs.is_empty() =>
            {
                unary(x.0)
            }
            B::Pow if c.method_form() && c.kwargs.is_empty() => match rest {
                [(_, p)] if p.0.is_scalar() => unary(x.0),
                _ => None,
            },
            // `torch.max(a, b)` and friends: elementwise when both operands are tensors
            // (`torch.max(x, 1)` would reduce over dim 1).
            B::Max | B::Maximum | B::Min | B::Minimum
                if !c.method_form() && c.kwargs.is_empty() =>
            {
                let [(_, a), (_, b)] = &c.args[..] else {
                    return None;
                };
                if a.0.is_number() || b.0.is_number() {
                    return None;
                }
                let (k, ia, ib) = self.combine(a, b)?;
                emit.args = vec![ia, ib];
                Some(k)
            }
            B::Where if !c.method_form() && c.kwargs.is_empty() => self.where_call(c, emit),
            B::Cat | B::Stack => self.join(c, emit),
            B::Sum | B::Mean => self.reduce(c, emit, false, false),
            B::Var | B::Std | B::Amax | B::Amin if c.method_form() => {
                self.reduce(c, emit, matches!(c.func, B::Var | B::Std), false)
            }
            B::Softmax => self.reduce(c, emit, false, true),
            B::View | B::Reshape if c.method_form() && c.kwargs.is_empty() => {
                self.view(c, emit, &x)
            }
            B::ZerosLike | B::OnesLike
                if rest.is_empty()
                    && c.kwargs
                        .iter()
                        .all(|(k, _, n)| *k == "dtype" && matches!(n.0, Kind::Const(_))) =>
            {
                x.0.elem()?;
                Some(x.0)
            }
            B::Scatter if c.method_form() && c.kwargs.is_empty() => self.scatter(c, emit, &x),
            B::Topk => self.topk(c, emit, &x),
            B::Chunk => self.chunk(c, emit, &x),
            B::Flatten => self.flatten(c, emit, &x),
            B::Unsqueeze => self.unsqueeze(c, emit, &x),
            _ => None,
        }
    }

    /// Replaces a literal dim (source `src`, rewritten `out`) of an element of rank `rank`:
    /// a negative one is shifted to skip the lane axis. Returns the element axis it names.
    fn shift_dim(
        &mut self,
        src: ExprId,
        out: ExprId,
        rank: usize,
        emit: &mut Emit,
    ) -> Option<usize> {
        let v = int_literal(self.src, src)?;
        let a = axis(v, rank)?;
        if v < 0 {
            let span = self.src.span(src);
            let new = self.emit_int(v - 1, span);
            emit.replace(out, new);
        }
        Some(a)
    }

    /// The dim argument: positional at `pos` of the arguments after the subject, or `dim=`.
    fn dim_arg(c: &CallParts, pos: usize) -> Option<(ExprId, ExprId)> {
        let (_, rest) = c.subject()?;
        match (rest.get(pos), c.kw("dim")) {
            (Some((s, n)), None) => Some((*s, n.1)),
            (None, Some((_, s, n))) => Some((*s, n.1)),
            _ => None,
        }
    }

    /// `torch.where(c, a, b)`: every operand aligned, shapes broadcast.
    fn where_call(&mut self, c: &CallParts, emit: &mut Emit) -> Option<Kind> {
        let [(_, a), (_, b), (_, d)] = &c.args[..] else {
            return None;
        };
        let mut shape: Option<Vec<usize>> = None;
        let mut ids = Vec::with_capacity(3);
        for n in [a, b, d] {
            let (s, id) = self.operand(n, true)?;
            ids.push(id);
            if let Some(s) = s {
                shape = Some(match shape {
                    None => s,
                    Some(t) => broadcast(&s, &t)?,
                });
            }
        }
        emit.args = ids;
        shape.map(Kind::Elem)
    }

    /// A reduction (or, with `keep_shape`, softmax) over one literal dim of an element: the
    /// dim comes positionally or as `dim=`; `keepdim=` (and for var/std `unbiased=`) must be
    /// literals.
    fn reduce(
        &mut self,
        c: &CallParts,
        emit: &mut Emit,
        allow_unbiased: bool,
        keep_shape: bool,
    ) -> Option<Kind> {
        let (x, rest) = c.subject()?;
        let mut shape = x.0.elem()?.to_vec();
        if rest.len() > 1 {
            return None;
        }
        let mut allowed = vec!["dim"];
        if !keep_shape {
            allowed.push("keepdim");
        }
        if allow_unbiased {
            allowed.push("unbiased");
        }
        if !c.only_kwargs(&allowed) {
            return None;
        }
        let keepdim = match c.kw("keepdim") {
            Some((_, s, _)) => bool_literal(self.src, *s)?,
            None => false,
        };
        if let Some((_, s, _)) = c.kw("unbiased") {
            bool_literal(self.src, *s)?;
        }
        let (src, out) = Self::dim_arg(c, 0)?;
        let a = self.shift_dim(src, out, shape.len(), emit)?;
        if !keep_shape {
            if keepdim {
                *shape.get_mut(a)? = 1;
            } else {
                shape.remove(a);
            }
        }
        Some(Kind::Elem(shape))
    }

    /// `x.view(..)` / `x.reshape(..)` with literal sizes: the element's new shape, made
    /// explicit, then the lanes (row-major order keeps the lane axis last and each element's
    /// values in order).
    fn view(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?;
        let sizes = c
            .args
            .iter()
            .map(|(s, _)| int_literal(self.src, *s))
            .collect::<Option<Vec<_>>>()?;
        let new = view_shape(shape, &sizes)?;
        let mut args = Vec::with_capacity(new.len() + 1);
        for &d in &new {
            args.push(self.emit_int(i64::try_from(d).ok()?, c.span));
        }
        args.push(self.emit_int(-1, c.span));
        emit.args = args;
        Some(Kind::Elem(new))
    }

    /// `x.scatter(dim, index, value)`: an index of the element's rank and a number.
    fn scatter(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?;
        let [(ds, d), (_, idx), (_, v)] = &c.args[..] else {
            return None;
        };
        if idx.0.elem()?.len() != shape.len() || !v.0.is_number() {
            return None;
        }
        self.shift_dim(*ds, d.1, shape.len(), emit)?;
        Some(x.0.clone())
    }

    /// `x.topk(k, dim, largest)`: `k` a known int, `dim` literal (made explicit, since its
    /// default -1 would name the lane axis).
    fn topk(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?.to_vec();
        if shape.is_empty() || !c.only_kwargs(&["dim", "largest"]) {
            return None;
        }
        let (_, rest) = c.subject()?;
        let (k, more) = rest.split_first()?;
        let k = usize::try_from(k.1.0.int()?).ok()?;
        if more.len() > 2 || (more.len() == 2 && c.kw("largest").is_some()) {
            return None;
        }
        if let Some((_, s, _)) = c.kw("largest") {
            bool_literal(self.src, *s)?;
        }
        if let Some((s, _)) = more.get(1) {
            bool_literal(self.src, *s)?;
        }
        let a = match Self::dim_arg(c, 1) {
            Some((src, out)) => self.shift_dim(src, out, shape.len(), emit)?,
            None if more.is_empty() && c.kw("dim").is_none() => {
                let d = self.emit_int(-2, c.span);
                emit.kwargs.push(("dim", d));
                shape.len() - 1
            }
            None => return None,
        };
        if k > shape[a] {
            return None;
        }
        let mut out = shape;
        out[a] = k;
        Some(Kind::Seq(vec![Kind::Elem(out.clone()), Kind::Elem(out)]))
    }

    /// `x.chunk(n, dim)`: `n` a known int, `dim` literal.
    fn chunk(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?.to_vec();
        if shape.is_empty() || !c.only_kwargs(&["dim"]) {
            return None;
        }
        let (_, rest) = c.subject()?;
        let (n, more) = rest.split_first()?;
        let n = usize::try_from(n.1.0.int()?).ok().filter(|&n| n > 0)?;
        if more.len() > 1 {
            return None;
        }
        let a = match Self::dim_arg(c, 1) {
            Some((src, out)) => self.shift_dim(src, out, shape.len(), emit)?,
            None if more.is_empty() && c.kwargs.is_empty() => 0,
            None => return None,
        };
        let len = shape[a];
        if len == 0 {
            return None;
        }
        let size = len.div_ceil(n);
        let count = len.div_ceil(size);
        let pieces = (0..count)
            .map(|i| {
                let mut s = shape.clone();
                s[a] = size.min(len - i * size);
                Kind::Elem(s)
            })
            .collect();
        Some(Kind::Seq(pieces))
    }

    /// `x.flatten(start, end)` of an element: both dims made explicit and non-negative, so
    /// they keep naming element axes (the default end -1 would name the lane axis).
    fn flatten(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?.to_vec();
        if shape.is_empty() {
            return None;
        }
        let (_, rest) = c.subject()?;
        let mut start = 0;
        let mut end = -1;
        for (i, (s, _)) in rest.iter().enumerate() {
            match i {
                0 => start = int_literal(self.src, *s)?,
                1 => end = int_literal(self.src, *s)?,
                _ => return None,
            }
        }
        for (k, s, _) in &c.kwargs {
            match *k {
                "start_dim" if rest.is_empty() => start = int_literal(self.src, *s)?,
                "end_dim" if rest.len() <= 1 => end = int_literal(self.src, *s)?,
                _ => return None,
            }
        }
        let (start, end) = (axis(start, shape.len())?, axis(end, shape.len())?);
        if start > end {
            return None;
        }
        let off = usize::from(!c.method_form());
        emit.args.truncate(off);
        emit.kwargs.clear();
        for d in [start, end] {
            let d = self.emit_int(i64::try_from(d).ok()?, c.span);
            emit.args.push(d);
        }
        let mut out = shape[..start].to_vec();
        out.push(shape[start..=end].iter().product());
        out.extend_from_slice(&shape[end + 1..]);
        Some(Kind::Elem(out))
    }

    /// `x.unsqueeze(d)`: the new axis counted in the result's rank.
    fn unsqueeze(&mut self, c: &CallParts, emit: &mut Emit, x: &Node) -> Option<Kind> {
        let shape = x.0.elem()?.to_vec();
        let (_, rest) = c.subject()?;
        if rest.len() + c.kwargs.len() != 1 || !c.only_kwargs(&["dim"]) {
            return None;
        }
        let (src, out) = Self::dim_arg(c, 0)?;
        let a = self.shift_dim(src, out, shape.len() + 1, emit)?;
        let mut s = shape;
        s.insert(a, 1);
        Some(Kind::Elem(s))
    }

    /// `torch.cat([..], dim)` / `torch.stack([..], dim)` of elements of one rank.
    fn join(&mut self, c: &CallParts, emit: &mut Emit) -> Option<Kind> {
        let stack = c.func == Builtin::Stack;
        if c.method_form() || !c.only_kwargs(&["dim"]) {
            return None;
        }
        let ((_, list), rest) = c.args.split_first()?;
        let Kind::Seq(items) = &list.0 else {
            return None;
        };
        let shapes = items
            .iter()
            .map(|k| k.elem().map(<[usize]>::to_vec))
            .collect::<Option<Vec<_>>>()?;
        let first = shapes.first()?.clone();
        if shapes.iter().any(|s| s.len() != first.len()) || rest.len() > 1 {
            return None;
        }
        let rank = first.len() + usize::from(stack);
        let a = match Self::dim_arg(c, 0) {
            Some((src, out)) => self.shift_dim(src, out, rank, emit)?,
            None if rest.is_empty() && c.kwargs.is_empty() && rank > 0 => 0,
            None => return None,
        };
        if stack {
            if shapes.iter().any(|s| *s != first) {
                return None;
            }
            let mut out = first;
            out.insert(a, shapes.len());
            return Some(Kind::Elem(out));
        }
        let mut total = 0;
        for s in &shapes {
            let same = s
                .iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (p, q))| i == a || p == q);
            if !same {
                return None;
            }
            total += s[a];
        }
        let mut out = first;
        out[a] = total;
        Some(Kind::Elem(out))
    }

    /// `x.size(d)`, `x.size()`, `x.dim()`, `x.numel()` of an element: known numbers.
    fn shape_query(&mut self, c: &CallParts) -> Option<Node> {
        let (_, x) = c.recv.as_ref()?;
        let shape = x.0.elem()?;
        if !c.kwargs.is_empty() {
            return None;
        }
        let v = match (c.func, &c.args[..]) {
            (Builtin::Size, [(_, d)]) => {
                let a = axis(d.0.int()?, shape.len())?;
                Value::Int(i64::try_from(shape[a]).ok()?)
            }
            (Builtin::Size, []) => shape_value(shape)?,
            (Builtin::Dim, []) => Value::Int(i64::try_from(shape.len()).ok()?),
            (Builtin::Numel, []) => {
                Value::Int(i64::try_from(shape.iter().product::<usize>()).ok()?)
            }
            _ => return None,
        };
        Some(self.value_node(v, c.span))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn lower(src: &str, env: &Env) -> Body {
        let block = stepforge_syntax::parse_block(src).value.unwrap();
        let scope = stepforge_check::func_lower::Scope {
            globals: env.names.keys().cloned().collect(),
            dims: env.dims.keys().cloned().collect(),
        };
        stepforge_check::func_lower::lower_block(&block, &scope, Mode::Function).unwrap()
    }

    fn env() -> Env {
        let mut env = Env::default();
        env.names
            .insert("gelu".into(), Value::Module(Module::Gelu { tanh: false }));
        env.names.insert(
            "softmax".into(),
            Value::Module(Module::Softmax { dim: Some(-1) }),
        );
        env
    }

    fn batched(
        body: &str,
        inputs: &[Vec<usize>],
        state: Option<&[Vec<usize>]>,
        out: &[Vec<usize>],
    ) -> Option<Batched> {
        let env = env();
        batched_body(&lower(body, &env), &env, inputs, state, out)
    }

    fn check(
        body: &str,
        inputs: &[Vec<usize>],
        state: Option<&[Vec<usize>]>,
        out: &[Vec<usize>],
    ) -> bool {
        batched(body, inputs, state, out).is_some()
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
        let out = batched(body, &[vec![4]], None, &[vec![4]]).unwrap();
        let printed = out.body.dump();
        assert!(printed.contains("<mean>(dim=-2)"), "{printed}");
        assert!(printed.contains("<var>(-2, unbiased=False)"), "{printed}");
        assert!(printed.contains("<sum>(0, keepdim=True)"), "{printed}");
        // the element's size is lane-invariant: it becomes a literal
        assert!(printed.contains("/ 4)"), "{printed}");
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
