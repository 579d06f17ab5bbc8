//! Which element functions may be run on a whole batch of elements in one call.
//!
//! Calling the evaluator once per element costs about a microsecond of interpretation, which
//! dominates verification of small kernels. An element function whose body is *elementwise*
//! computes, for a batch tensor `(..elem, B)` (the lanes on the *last* axis), exactly the `B`
//! results it computes element by element: every operation acts on each scalar independently,
//! operands of different element shapes broadcast right-aligned with the lanes aligned with
//! each other, and the only other operands are 0-d constants (which broadcast the same way
//! with or without the lane axis). For such a body the executor stacks the elements of one Map
//! (or the lanes of one Accum/Scan/Merge step) and calls the function once.
//!
//! The analysis is deliberately conservative: anything it does not know to be elementwise —
//! indexing into an element, reductions, matmul, `input_data`, conditionals, non-0-d globals
//! (they would align with the lane axis) — makes the function per-element only. The executor also checks every batched
//! result's shape and falls back to per-element calls on any mismatch or error, so the
//! per-element path keeps producing the exact diagnostics.

use std::collections::BTreeMap;

use stepforge_syntax::ast::{BinOp, Block, Expr, ExprKind, PyStmtKind, SliceItem, Target, UnOp};

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
    locals: BTreeMap<&'a str, Kind>,
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

/// True when `body`, called with element fields of shapes `inputs` (and reducer state of
/// shapes `state`), is elementwise and returns fields of exactly `outputs`' shapes.
pub fn is_batchable(
    body: &Block,
    env: &Env,
    inputs: &[Vec<usize>],
    state: Option<&[Vec<usize>]>,
    outputs: &[Vec<usize>],
) -> bool {
    let mut cx = Cx {
        env,
        inputs,
        state,
        locals: BTreeMap::new(),
    };
    let n = body.stmts.len();
    for (i, stmt) in body.stmts.iter().enumerate() {
        match &stmt.kind {
            PyStmtKind::Assign {
                target: Target::Name(id),
                value,
            } if i + 1 < n => {
                if matches!(
                    id.name.as_str(),
                    "input" | "state" | "torch" | "input_data" | "ctx"
                ) {
                    return false;
                }
                let Some(k) = cx.expr(value) else {
                    return false;
                };
                cx.locals.insert(id.name.as_str(), k);
            }
            PyStmtKind::Return(e) if i + 1 == n => {
                let ExprKind::List(items) = &e.kind else {
                    return false;
                };
                if items.len() != outputs.len() {
                    return false;
                }
                return items
                    .iter()
                    .zip(outputs)
                    .all(|(it, shape)| cx.expr(it) == Some(Kind::Elem(shape.clone())));
            }
            _ => return false,
        }
    }
    false
}

impl Cx<'_> {
    fn expr(&self, e: &Expr) -> Option<Kind> {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(..) | ExprKind::Bool(_) => Some(Kind::Scalar),
            ExprKind::Name(n) => self.name(n),
            ExprKind::Subscript { value, index } => self.field(value, index),
            ExprKind::Binary {
                op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow,
                lhs,
                rhs,
            } => combine(self.expr(lhs)?, self.expr(rhs)?),
            ExprKind::Unary { op, operand } => match op {
                UnOp::Neg | UnOp::Pos => match self.expr(operand)? {
                    Kind::Module => None,
                    k => Some(k),
                },
                UnOp::Not => None,
            },
            ExprKind::Call { func, args, kwargs } => {
                if !kwargs.is_empty() {
                    return None;
                }
                self.call(func, args)
            }
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

    fn call(&self, func: &Expr, args: &[Expr]) -> Option<Kind> {
        match &func.kind {
            // A module object bound in `global`, or a local alias of one.
            ExprKind::Name(_) => match (self.expr(func)?, args) {
                (Kind::Module, [x]) => unary(self.expr(x)?),
                _ => None,
            },
            ExprKind::Attr { value, attr } => {
                let name = attr.name.as_str();
                if is_torch(value) && !self.locals.contains_key("torch") {
                    return match args {
                        [x] if TORCH_UNARY.contains(&name) => unary(self.expr(x)?),
                        // `torch.tensor(1.0)`: a 0-d constant.
                        [x] if name == "tensor" => {
                            matches!(x.kind, ExprKind::Int(_) | ExprKind::Float(..))
                                .then_some(Kind::Scalar)
                        }
                        [a, b] if TORCH_BINARY.contains(&name) => {
                            // `torch.max(x, 1)` would reduce over dim 1: both must be tensors.
                            let (ka, kb) = (self.expr(a)?, self.expr(b)?);
                            if is_literal(a) || is_literal(b) {
                                return None;
                            }
                            combine(ka, kb)
                        }
                        _ => None,
                    };
                }
                // Methods on a value: `x.exp()`, `x.pow(2)`.
                let recv = self.expr(value)?;
                match (name, args) {
                    (m, []) if METHOD_UNARY.contains(&m) => unary(recv),
                    ("pow", [p]) => match self.expr(p)? {
                        Kind::Scalar => unary(recv),
                        _ => None,
                    },
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
        is_batchable(&b, &env, inputs, state, out)
    }

    #[test]
    fn elementwise_bodies_batch() {
        // different element shapes broadcast as they would per element (lanes go last)
        assert!(check("return [state[0] * input[0]]", &[vec![]], Some(&[vec![4]]), &[vec![4]]));
        assert!(check("return [input[0] + input[1]]", &[vec![2, 1], vec![3]], None, &[vec![2, 3]]));
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
    fn anything_else_does_not() {
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
        // element shapes that broadcast against each other
        assert!(!check(
            "return [state[0] * input[0]]",
            &[vec![]],
            Some(&[vec![4]]),
            &[vec![4]]
        ));
        // a declared output shape the body does not produce
        assert!(!check("return [input[0] * 2]", &[vec![]], None, &[vec![4]]));
        assert!(!check("return [input[0], input[0]]", &[vec![]], None, &s));
    }
}
