//! Which element functions may be run on a whole batch of elements in one call, and the
//! body that does it.
//!
//! Calling the evaluator once per element costs about a microsecond of interpretation, which
//! dominates verification of small kernels. Many element functions are *lane-parallel*: given
//! a batch tensor `(..elem, B)` per field (the lanes on the *last* axis) they compute exactly
//! the `B` results they compute element by element. That holds for
//! - elementwise operations: operands of different element shapes broadcast right-aligned, so
//!   the lane axes align with each other and the element axes align as they do per element;
//!   other operands must be 0-d constants (a non-0-d constant would align with the lane axis);
//! - reductions and softmax over one literal dim of an element (`x.mean(dim=-1)`,
//!   `x.var(-1, unbiased=False)`, `torch.softmax(x, dim=0)`), once a negative dim is shifted
//!   by one so it skips the lane axis (positive dims already index the same axes);
//! - `x.size(d)` with the same shift.
//!
//! [`batched_body`] proves that for a body and returns the rewritten body (negative dims
//! shifted). It is deliberately conservative: indexing into an element, matmul, `input_data`,
//! conditionals, full reductions, non-0-d globals and anything it does not know make the
//! function per-element only. The executor also checks every batched result's shape and falls
//! back to per-element calls on any mismatch or error, so the per-element path keeps producing
//! the exact diagnostics; a property test checks batched and per-element results bit for bit.

use std::collections::BTreeMap;

use stepforge_syntax::ast::{
    BinOp, Block, Expr, ExprKind, Ident, PyStmtKind, SliceItem, Target, UnOp,
};

use crate::eval::{Env, Module, Value};

/// What the analysis knows about a value.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A number or 0-d tensor that is the same for every element.
    Scalar,
    /// A per-element value with this element shape.
    Elem(Vec<usize>),
    /// An elementwise callable (module object).
    Module,
}

struct Cx<'a> {
    env: &'a Env,
    inputs: &'a [Vec<usize>],
    state: Option<&'a [Vec<usize>]>,
    locals: BTreeMap<String, Kind>,
}

const TORCH_UNARY: &[&str] = &[
    "exp",
    "sqrt",
    "rsqrt",
    "sigmoid",
    "tanh",
    "abs",
    "log",
    "relu",
    "sin",
    "cos",
    "neg",
    "reciprocal",
    "erf",
    "square",
];
const METHOD_UNARY: &[&str] = &[
    "exp",
    "sqrt",
    "rsqrt",
    "sigmoid",
    "tanh",
    "abs",
    "log",
    "relu",
    "sin",
    "cos",
    "neg",
    "reciprocal",
    "float",
    "erf",
    "square",
];
const TORCH_BINARY: &[&str] = &["max", "maximum", "min", "minimum"];
const REDUCTIONS: &[&str] = &["sum", "mean", "var", "std", "amax", "amin"];

/// The lane-parallel form of `body` (see the module doc) when `body`, called with element
/// fields of shapes `inputs` (and reducer state of shapes `state`), is lane-parallel and
/// returns fields of exactly `outputs`' shapes; `None` otherwise.
pub fn batched_body(
    body: &Block,
    env: &Env,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    outputs: &[Vec<usize>],
) -> Option<Block> {
    let mut cx = Cx {
        env,
        inputs,
        state,
        locals: BTreeMap::new(),
    };
    let mut body = body.clone();
    let n = body.stmts.len();
    for (i, stmt) in body.stmts.iter_mut().enumerate() {
        match &mut stmt.kind {
            PyStmtKind::Assign {
                target: Target::Name(id),
                value,
            } if i + 1 < n => {
                if matches!(
                    id.name.as_str(),
                    "input" | "state" | "torch" | "input_data" | "ctx"
                ) {
                    return None;
                }
                let k = cx.expr(value)?;
                cx.locals.insert(id.name.clone(), k);
            }
            PyStmtKind::Return(e) if i + 1 == n => {
                let ExprKind::List(items) = &mut e.kind else {
                    return None;
                };
                if items.len() != outputs.len() {
                    return None;
                }
                for (it, shape) in items.iter_mut().zip(outputs) {
                    if cx.expr(it)? != Kind::Elem(shape.clone()) {
                        return None;
                    }
                }
                return Some(body);
            }
            _ => return None,
        }
    }
    None
}

impl Cx<'_> {
    fn expr(&self, e: &mut Expr) -> Option<Kind> {
        match &mut e.kind {
            ExprKind::Int(_) | ExprKind::Float(..) | ExprKind::Bool(_) => Some(Kind::Scalar),
            ExprKind::Name(n) => self.name(n),
            ExprKind::Subscript { value, index } => self.field(value, index),
            ExprKind::Binary {
                op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow,
                lhs,
                rhs,
            } => combine(self.expr(lhs)?, self.expr(rhs)?),
            ExprKind::Unary { op, operand } => match op {
                UnOp::Neg | UnOp::Pos => unary(self.expr(operand)?),
                UnOp::Not => None,
            },
            ExprKind::Call { func, args, kwargs } => self.call(func, args, kwargs),
            _ => None,
        }
    }

    fn name(&self, n: &str) -> Option<Kind> {
        if let Some(k) = self.locals.get(n) {
            return Some(k.clone());
        }
        match self.env.names.get(n)? {
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => Some(Kind::Scalar),
            Value::Tensor(t) if t.ndim() == 0 => Some(Kind::Scalar),
            Value::Module(m) => match m {
                Module::Softmax { .. } | Module::LogSoftmax { .. } => None,
                _ => Some(Kind::Module),
            },
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

    fn call(
        &self,
        func: &mut Expr,
        args: &mut [Expr],
        kwargs: &mut [(Ident, Expr)],
    ) -> Option<Kind> {
        // A module object bound in `global`, or a local alias of one.
        if matches!(func.kind, ExprKind::Name(_)) {
            return match (self.expr(func)?, args) {
                (Kind::Module, [x]) if kwargs.is_empty() => unary(self.expr(x)?),
                _ => None,
            };
        }
        match &mut func.kind {
            ExprKind::Attr { value, attr } => {
                let name = attr.name.as_str();
                if is_torch(value) && !self.locals.contains_key("torch") {
                    return match (name, args) {
                        (n, [x]) if TORCH_UNARY.contains(&n) && kwargs.is_empty() => {
                            unary(self.expr(x)?)
                        }
                        // `torch.tensor(1.0)`: a 0-d constant.
                        ("tensor", [x]) if kwargs.is_empty() => {
                            matches!(x.kind, ExprKind::Int(_) | ExprKind::Float(..))
                                .then_some(Kind::Scalar)
                        }
                        (n, [a, b]) if TORCH_BINARY.contains(&n) && kwargs.is_empty() => {
                            // `torch.max(x, 1)` would reduce over dim 1: both must be tensors.
                            if is_literal(a) || is_literal(b) {
                                return None;
                            }
                            combine(self.expr(a)?, self.expr(b)?)
                        }
                        ("sum" | "mean", [x, rest @ ..]) => {
                            let k = self.expr(x)?;
                            reduce(k, rest, kwargs, false, false)
                        }
                        ("softmax", [x, rest @ ..]) => {
                            let k = self.expr(x)?;
                            reduce(k, rest, kwargs, false, true)
                        }
                        _ => None,
                    };
                }
                // Methods on a value: `x.exp()`, `x.pow(2)`, `x.mean(dim=-1)`.
                let recv = self.expr(value)?;
                match (name, args) {
                    (m, []) if METHOD_UNARY.contains(&m) && kwargs.is_empty() => unary(recv),
                    ("pow", [p]) if kwargs.is_empty() => match self.expr(p)? {
                        Kind::Scalar => unary(recv),
                        _ => None,
                    },
                    (m, rest) if REDUCTIONS.contains(&m) => {
                        reduce(recv, rest, kwargs, matches!(m, "var" | "std"), false)
                    }
                    ("softmax", rest) => reduce(recv, rest, kwargs, false, true),
                    ("size", [d]) if kwargs.is_empty() => {
                        let Kind::Elem(shape) = recv else {
                            return None;
                        };
                        shift_dim(d, shape.len())?;
                        Some(Kind::Scalar)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn is_torch(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if n == "torch")
}

fn is_literal(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Int(_) | ExprKind::Float(..) | ExprKind::Bool(_)
    )
}

fn unary(k: Kind) -> Option<Kind> {
    match k {
        Kind::Module => None,
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

/// Two operands of an elementwise op: their element shapes broadcast (right-aligned, as in
/// torch). The executor puts the batch lanes on the *last* axis, so the batched operands are
/// `(..s, B)` and `(..t, B)`: the lanes align with each other and `s`, `t` align exactly as
/// they do per element.
fn combine(a: Kind, b: Kind) -> Option<Kind> {
    match (a, b) {
        (Kind::Scalar, Kind::Scalar) => Some(Kind::Scalar),
        (Kind::Elem(s), Kind::Scalar) | (Kind::Scalar, Kind::Elem(s)) => Some(Kind::Elem(s)),
        (Kind::Elem(s), Kind::Elem(t)) => broadcast(&s, &t).map(Kind::Elem),
        _ => None,
    }
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
        batched_body(&b, &env, inputs, state, out).is_some()
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
        let out = batched_body(&b, &Env::default(), &[vec![4]], None, &[vec![4]]).unwrap();
        let printed = stepforge_syntax::print::block(&out);
        assert!(printed.contains("mean(dim=-2)"), "{printed}");
        assert!(printed.contains("var(-2, unbiased=False)"), "{printed}");
        assert!(printed.contains("sum(0, keepdim=True)"), "{printed}");
        assert!(printed.contains("size(-2)"), "{printed}");
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
        assert!(!check("return [input[0][0]]", &[vec![4]], None, &s));
        assert!(!check(
            "return [softmax(input[0])]",
            &[vec![4]],
            None,
            &[vec![4]]
        ));
        assert!(!check(
            "return [input[0] if input[0] > 0 else -input[0]]",
            &[vec![]],
            None,
            &s
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
