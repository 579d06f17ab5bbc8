//! The implementations of the builtins of `stepforge_ir::builtin` (the one table: names,
//! classes, costs), dispatched by the table's class to one module per family, mirroring
//! `crates/tensor`. Names are resolved by the lowering, never here.

use std::sync::Arc;

use stepforge_diag::Span;
use stepforge_ir::func::BinOp;
use stepforge_tensor::{BinaryOp, CmpOp, DType, Scalar, Tensor, UnaryOp};

use super::EvalError;
use super::budget::Budget;
use super::interp::{binop, py_truthy};
use super::value::{Module, Value};

mod creation;
mod elementwise;
mod index;
mod linalg;
mod nn;
mod py;
mod reduce;
mod shape;

pub(crate) use stepforge_ir::builtin::Builtin as Func;

/// Arguments of one call: positional (a method's receiver first) and keyword.
pub(crate) struct Args {
    pub pos: Vec<Value>,
    pub kw: Vec<(&'static str, Value)>,
    pub span: Span,
    pub func: Func,
}

impl Args {
    fn err(&self, msg: impl std::fmt::Display) -> EvalError {
        EvalError::eval(format!("{}(): {msg}", self.func.name()), self.span)
    }

    fn get(&self, i: usize, name: &str) -> Option<&Value> {
        self.kw
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .or_else(|| self.pos.get(i))
    }

    fn kw(&self, name: &str) -> Option<&Value> {
        self.kw.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn tensor(&self, i: usize, name: &str) -> Result<Arc<Tensor>, EvalError> {
        match self.get(i, name) {
            Some(v) => to_tensor(v).ok_or_else(|| {
                self.err(format!(
                    "argument `{name}` must be a tensor, not {}",
                    v.type_name()
                ))
            }),
            None => Err(self.err(format!("missing argument `{name}`"))),
        }
    }

    fn opt_tensor(&self, i: usize, name: &str) -> Result<Option<Arc<Tensor>>, EvalError> {
        match self.get(i, name) {
            None | Some(Value::None) => Ok(None),
            Some(_) => self.tensor(i, name).map(Some),
        }
    }

    /// A required argument converted by `conv`; `what` names the expected type.
    fn required<T>(
        &self,
        i: usize,
        name: &str,
        conv: fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<T, EvalError> {
        match self.get(i, name) {
            Some(v) => conv(v).ok_or_else(|| {
                self.err(format!(
                    "argument `{name}` must be {what}, not {}",
                    v.type_name()
                ))
            }),
            None => Err(self.err(format!("missing argument `{name}`"))),
        }
    }

    /// An optional argument (absent or `None`) converted by `conv`.
    fn optional<T>(
        &self,
        i: usize,
        name: &str,
        conv: fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, EvalError> {
        match self.get(i, name) {
            None | Some(Value::None) => Ok(None),
            Some(_) => self.required(i, name, conv, what).map(Some),
        }
    }

    fn int(&self, i: usize, name: &str) -> Result<i64, EvalError> {
        self.required(i, name, as_int, "an int")
    }

    fn opt_int(&self, i: usize, name: &str) -> Result<Option<i64>, EvalError> {
        self.optional(i, name, as_int, "an int")
    }

    fn int_or(&self, i: usize, name: &str, default: i64) -> Result<i64, EvalError> {
        Ok(self.opt_int(i, name)?.unwrap_or(default))
    }

    fn float(&self, i: usize, name: &str) -> Result<f64, EvalError> {
        self.required(i, name, as_float, "a number")
    }

    fn opt_float(&self, i: usize, name: &str) -> Result<Option<f64>, EvalError> {
        self.optional(i, name, as_float, "a number")
    }

    fn bool_or(&self, i: usize, name: &str, default: bool) -> Result<bool, EvalError> {
        match self.get(i, name) {
            None | Some(Value::None) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(x)) => Ok(*x != 0),
            Some(v) => Err(self.err(format!(
                "argument `{name}` must be a bool, not {}",
                v.type_name()
            ))),
        }
    }

    fn dtype(&self, i: usize) -> Result<Option<DType>, EvalError> {
        match self.get(i, "dtype") {
            None | Some(Value::None) => Ok(None),
            Some(Value::DType(d)) => Ok(Some(*d)),
            Some(v) => Err(self.err(format!(
                "`dtype` must be a torch dtype, not {}",
                v.type_name()
            ))),
        }
    }

    /// `dim` as None, an int, or a list/tuple of ints.
    fn dims(&self, i: usize, name: &str) -> Result<Option<Vec<i64>>, EvalError> {
        match self.get(i, name) {
            None | Some(Value::None) => Ok(None),
            Some(v) => int_list(v).map(Some).ok_or_else(|| {
                self.err(format!(
                    "`{name}` must be an int or a list of ints, not {}",
                    v.type_name()
                ))
            }),
        }
    }

    /// Sizes given as varargs ints (`x.view(2, 3)`) or one sequence (`x.view((2, 3))`), or a
    /// keyword.
    fn sizes(&self, from: usize, kw: &str) -> Result<Vec<i64>, EvalError> {
        if let Some(v) = self.kw(kw) {
            return int_list(v).ok_or_else(|| self.err(format!("`{kw}` must be a list of ints")));
        }
        match self.pos.get(from..) {
            Some([v @ (Value::List(_) | Value::Tuple(_))]) => {
                int_list(v).ok_or_else(|| self.err("sizes must be ints"))
            }
            Some(rest) => rest
                .iter()
                .map(|v| {
                    as_int(v).ok_or_else(|| {
                        self.err(format!("sizes must be ints, not {}", v.type_name()))
                    })
                })
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    fn tensor_list(&self, i: usize, name: &str) -> Result<Vec<Arc<Tensor>>, EvalError> {
        match self.get(i, name) {
            Some(Value::List(l) | Value::Tuple(l)) => l
                .iter()
                .map(|v| {
                    to_tensor(v).ok_or_else(|| {
                        self.err(format!(
                            "expected a list of tensors, found {} in it",
                            v.type_name()
                        ))
                    })
                })
                .collect(),
            Some(v) => Err(self.err(format!(
                "`{name}` must be a list of tensors, not {}",
                v.type_name()
            ))),
            None => Err(self.err(format!("missing argument `{name}`"))),
        }
    }
}

pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Tensor(t) if t.numel() == 1 && t.dtype() != DType::F32 => match t.item().ok()? {
            Scalar::I64(i) => Some(i),
            Scalar::Bool(b) => Some(i64::from(b)),
            Scalar::F32(_) => None,
        },
        _ => None,
    }
}

pub(crate) fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(x) => Some(*x),
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Tensor(t) if t.numel() == 1 => t.item().ok().map(Scalar::as_f64),
        _ => None,
    }
}

pub(crate) fn int_list(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::List(l) | Value::Tuple(l) => l.iter().map(as_int).collect(),
        Value::Tensor(t) if t.ndim() == 1 && t.dtype() != DType::F32 => {
            Some(t.to_f64_vec().into_iter().map(|x| x as i64).collect())
        }
        other => as_int(other).map(|i| vec![i]),
    }
}

/// A tensor or a Python number as a tensor (numbers become 0-d tensors of their kind).
pub(crate) fn to_tensor(v: &Value) -> Option<Arc<Tensor>> {
    match v {
        Value::Tensor(t) => Some(t.clone()),
        Value::Bool(b) => Some(Arc::new(Tensor::scalar_bool(*b))),
        Value::Int(i) => Some(Arc::new(Tensor::scalar_i64(*i))),
        Value::Float(x) => Some(Arc::new(Tensor::scalar_f32(*x as f32))),
        _ => None,
    }
}

/// The shape a nested list would have, read along its first items (a ragged list is found
/// by the full walk later). Tensors inside contribute their shape.
fn nested_shape(v: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut cur = v;
    loop {
        match cur {
            Value::List(l) | Value::Tuple(l) => {
                shape.push(l.len());
                match l.first() {
                    Some(x) => cur = x,
                    None => return shape,
                }
            }
            Value::Tensor(t) => {
                shape.extend_from_slice(t.shape());
                return shape;
            }
            _ => return shape,
        }
    }
}

/// `torch.tensor(data)`: nested lists/tuples of numbers (or tensors) to a tensor.
///
/// The size is checked before converting (`torch.tensor([[0.0]*10**6]*1000)` is a list of
/// 2·10^6 items that stands for 10^9 numbers), and the walk is list work.
pub(crate) fn tensor_from_value(
    v: &Value,
    dtype: Option<DType>,
    span: Span,
    b: &mut Budget,
) -> Result<Tensor, EvalError> {
    let numel = stepforge_tensor::limits::checked_numel(&nested_shape(v))
        .map_err(|e| EvalError::from_tensor(e, span))?;
    b.check(numel as u64 * 3, "torch.tensor() of a nested list", span)?;
    #[allow(clippy::too_many_arguments)] // one recursive walker; its state is plain locals
    fn walk(
        v: &Value,
        depth: usize,
        shape: &mut Vec<usize>,
        flat: &mut Vec<f64>,
        kind: &mut DType,
        span: Span,
        b: &mut Budget,
        cap: usize,
    ) -> Result<(), EvalError> {
        let bad = |m: &str| EvalError::eval(format!("torch.tensor(): {m}"), span);
        match v {
            Value::List(l) | Value::Tuple(l) => {
                if depth == shape.len() {
                    shape.push(l.len());
                } else if shape.get(depth) != Some(&l.len()) {
                    return Err(bad("expected a sequence of equal-length sequences"));
                }
                b.work(l.len() as u64, span)?;
                // More numbers than the size read from the first items: ragged (and the
                // walk stops before a deeper list multiplies them).
                if flat.len() > cap {
                    return Err(bad("ragged nested sequence"));
                }
                for x in l.iter() {
                    walk(x, depth + 1, shape, flat, kind, span, b, cap)?;
                }
                Ok(())
            }
            Value::Tensor(t) => {
                for (k, &s) in t.shape().iter().enumerate() {
                    if depth + k == shape.len() {
                        shape.push(s);
                    } else if shape.get(depth + k) != Some(&s) {
                        return Err(bad("tensors inside the list have different shapes"));
                    }
                }
                *kind = (*kind).max(t.dtype());
                b.work(t.numel() as u64, span)?;
                flat.extend(t.to_f64_vec());
                Ok(())
            }
            Value::Bool(b) => {
                flat.push(f64::from(u8::from(*b)));
                Ok(())
            }
            Value::Int(i) => {
                *kind = (*kind).max(DType::I64);
                flat.push(*i as f64);
                Ok(())
            }
            Value::Float(x) => {
                *kind = DType::F32;
                flat.push(*x);
                Ok(())
            }
            other => Err(bad(&format!(
                "cannot make a tensor from {}",
                other.type_name()
            ))),
        }
    }
    let mut shape = Vec::new();
    let mut flat = Vec::with_capacity(numel);
    let mut kind = DType::Bool;
    walk(v, 0, &mut shape, &mut flat, &mut kind, span, b, numel)?;
    let n: usize = shape.iter().product();
    if n != flat.len() {
        return Err(EvalError::eval(
            "torch.tensor(): ragged nested sequence",
            span,
        ));
    }
    // An empty literal is float32 in torch; otherwise the widest element kind wins.
    let kind = if flat.is_empty() { DType::F32 } else { kind };
    let dtype = dtype.unwrap_or(kind);
    let t = match dtype {
        DType::F32 => Tensor::from_f32(shape, flat.into_iter().map(|x| x as f32).collect()),
        DType::I64 => Tensor::from_i64(shape, flat.into_iter().map(|x| x as i64).collect()),
        DType::Bool => Tensor::from_bool(shape, flat.into_iter().map(|x| x != 0.0).collect()),
    };
    t.map_err(|e| EvalError::from_tensor(e, span))
}

/// Items of an iterable (list, tuple, range, tensor along dim 0), checked against the
/// budget before they are built (`list(torch.ones(6*10**7))` would be 6·10^7 tensors).
pub(crate) fn iter_items(v: &Value, span: Span, b: &mut Budget) -> Result<Vec<Value>, EvalError> {
    match v {
        Value::List(l) | Value::Tuple(l) => {
            b.work(l.len() as u64, span)?;
            Ok(l.to_vec())
        }
        Value::Range(start, stop, step) => {
            let n = range_len(*start, *stop, *step);
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            b.check_pieces(n, 0, "a range", span)?;
            b.work(n as u64, span)?;
            Ok((0..n)
                .map(|i| Value::Int(start + (i as i64) * step))
                .collect())
        }
        Value::Tensor(t) => {
            if t.ndim() == 0 {
                return Err(EvalError::eval("iteration over a 0-d tensor", span));
            }
            let n = t.shape()[0];
            b.check_pieces(n, t.numel() / n.max(1), "iterating a tensor", span)?;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                // Each piece is a new tensor: one step of fuel (and a look at the clock).
                b.work(super::budget::WORK_PER_STEP, span)?;
                out.push(
                    t.index(&[stepforge_tensor::Index::Int(i as i64)])
                        .map(Value::tensor)
                        .map_err(|e| EvalError::from_tensor(e, span))?,
                );
            }
            Ok(out)
        }
        other => Err(EvalError::eval(
            format!("{} is not iterable", other.type_name()),
            span,
        )),
    }
}

pub(crate) fn range_len(a: i64, b: i64, s: i64) -> u64 {
    let (a, b, s) = (i128::from(a), i128::from(b), i128::from(s));
    let n = if s > 0 {
        if b > a { (b - a + s - 1) / s } else { 0 }
    } else if a > b {
        (a - b + (-s) - 1) / (-s)
    } else {
        0
    };
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn softmax_default_dim(ndim: usize) -> i64 {
    // torch's legacy implicit-dim rule.
    if matches!(ndim, 0 | 1 | 3) { 0 } else { 1 }
}

pub(crate) fn apply_module(m: Module, x: &Tensor, span: Span) -> Result<Value, EvalError> {
    let r = match m {
        Module::Gelu { tanh } => x.unary(if tanh {
            UnaryOp::GeluTanh
        } else {
            UnaryOp::Gelu
        }),
        Module::Sigmoid => x.unary(UnaryOp::Sigmoid),
        Module::Silu => x.unary(UnaryOp::Silu),
        Module::Relu => x.unary(UnaryOp::Relu),
        Module::Tanh => x.unary(UnaryOp::Tanh),
        Module::Identity => Ok(x.clone()),
        Module::Softmax { dim } => x.softmax(dim.unwrap_or_else(|| softmax_default_dim(x.ndim()))),
        Module::LogSoftmax { dim } => {
            x.log_softmax(dim.unwrap_or_else(|| softmax_default_dim(x.ndim())))
        }
    };
    r.map(Value::tensor)
        .map_err(|e| EvalError::from_tensor(e, span))
}

fn tuple2(a: Tensor, b: Tensor) -> Value {
    Value::tuple(vec![Value::tensor(a), Value::tensor(b)])
}

fn py_number(x: f64, as_int: bool) -> Value {
    if as_int {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

/// Calls `f`. Builders of many items or pieces (`list(range(..))`, `unbind`, iterating a
/// tensor) check `b` before they allocate; the caller charges the result.
pub(crate) fn call(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use stepforge_ir::builtin::Class;
    match f.class() {
        Class::Creation => creation::call(f, a, b),
        Class::Unary | Class::Binary => elementwise::call(f, a, b),
        Class::Reduce => reduce::call(f, a, b),
        Class::Linalg => linalg::call(f, a, b),
        Class::Shape => shape::call(f, a, b),
        Class::Index => index::call(f, a, b),
        Class::Nn => nn::call(f, a, b),
        Class::Py => py::call(f, a, b),
    }
}

pub(crate) fn shape_value(shape: &[usize]) -> Value {
    Value::tuple(shape.iter().map(|&s| Value::Int(s as i64)).collect())
}

fn to_shape(sizes: &[i64]) -> Option<Vec<usize>> {
    sizes.iter().map(|&s| usize::try_from(s).ok()).collect()
}
