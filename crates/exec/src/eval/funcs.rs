//! The torch functions, tensor methods and Python builtins the evaluator supports, resolved
//! by name once at compile time and dispatched by enum at run time.

use std::sync::Arc;

use stepforge_syntax::Span;
use stepforge_syntax::ast::BinOp;
use stepforge_tensor::{BinaryOp, CmpOp, DType, Scalar, Tensor, UnaryOp};

use super::EvalError;
use super::interp::{binop, py_truthy};
use super::value::{Module, Value};

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

/// `torch.tensor(data)`: nested lists/tuples of numbers (or tensors) to a tensor.
pub(crate) fn tensor_from_value(
    v: &Value,
    dtype: Option<DType>,
    span: Span,
) -> Result<Tensor, EvalError> {
    fn walk(
        v: &Value,
        depth: usize,
        shape: &mut Vec<usize>,
        flat: &mut Vec<f64>,
        kind: &mut DType,
        span: Span,
    ) -> Result<(), EvalError> {
        let bad = |m: &str| EvalError::eval(format!("torch.tensor(): {m}"), span);
        match v {
            Value::List(l) | Value::Tuple(l) => {
                if depth == shape.len() {
                    shape.push(l.len());
                } else if shape.get(depth) != Some(&l.len()) {
                    return Err(bad("expected a sequence of equal-length sequences"));
                }
                for x in l.iter() {
                    walk(x, depth + 1, shape, flat, kind, span)?;
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
    let mut flat = Vec::new();
    let mut kind = DType::Bool;
    walk(v, 0, &mut shape, &mut flat, &mut kind, span)?;
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

/// Items of an iterable (list, tuple, range, tensor along dim 0).
pub(crate) fn iter_items(v: &Value, span: Span, max: usize) -> Result<Vec<Value>, EvalError> {
    match v {
        Value::List(l) | Value::Tuple(l) => Ok(l.to_vec()),
        Value::Range(a, b, s) => {
            let n = range_len(*a, *b, *s);
            if n > max as u64 {
                return Err(EvalError::new(
                    stepforge_syntax::codes::Code::E0701,
                    format!("range of {n} items exceeds the limit of {max}"),
                    span,
                ));
            }
            Ok((0..n).map(|i| Value::Int(a + (i as i64) * s)).collect())
        }
        Value::Tensor(t) => {
            if t.ndim() == 0 {
                return Err(EvalError::eval("iteration over a 0-d tensor", span));
            }
            (0..t.shape()[0])
                .map(|i| {
                    t.index(&[stepforge_tensor::Index::Int(i as i64)])
                        .map(Value::tensor)
                        .map_err(|e| EvalError::from_tensor(e, span))
                })
                .collect()
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

/// Calls `f`. `max_items` bounds Python lists built by builtins (`list(range(..))`).
pub(crate) fn call(f: Func, a: Args, max_items: usize) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    let unary = |op: UnaryOp| -> Result<Value, EvalError> { t(a.tensor(0, "input")?.unary(op)) };
    let binary = |op: BinaryOp| -> Result<Value, EvalError> {
        let x = a.tensor(0, "input")?;
        let y = a.tensor(1, "other")?;
        t(x.binary(op, &y))
    };
    let cmp = |op: CmpOp| -> Result<Value, EvalError> {
        let x = a.tensor(0, "input")?;
        let y = a.tensor(1, "other")?;
        t(x.compare(op, &y))
    };
    match f {
        // ----- creation ------------------------------------------------------------------
        Tensor => {
            let v = a
                .get(0, "data")
                .ok_or_else(|| a.err("missing argument `data`"))?;
            Ok(Value::tensor(tensor_from_value(
                v,
                a.dtype(usize::MAX)?,
                span,
            )?))
        }
        Zeros | Ones => {
            // `x.new_zeros(sizes)` passes the receiver first.
            let from = usize::from(matches!(a.pos.first(), Some(Value::Tensor(_))));
            let sizes = a.sizes(from, "size")?;
            let shape = to_shape(&sizes).ok_or_else(|| a.err("sizes must be non-negative"))?;
            let dtype = a.dtype(usize::MAX)?.unwrap_or(DType::F32);
            t(if f == Zeros {
                stepforge_tensor::Tensor::zeros(&shape, dtype)
            } else {
                stepforge_tensor::Tensor::ones(&shape, dtype)
            })
        }
        Full => {
            let sizes = match a.get(0, "size") {
                Some(v) => int_list(v).ok_or_else(|| a.err("`size` must be a list of ints"))?,
                None => return Err(a.err("missing argument `size`")),
            };
            let shape = to_shape(&sizes).ok_or_else(|| a.err("sizes must be non-negative"))?;
            let v = a
                .get(1, "fill_value")
                .ok_or_else(|| a.err("missing argument `fill_value`"))?;
            let s = v
                .as_scalar()
                .ok_or_else(|| a.err("`fill_value` must be a number"))?;
            let dtype = a.dtype(usize::MAX)?.unwrap_or(match s {
                Scalar::Bool(_) => DType::Bool,
                Scalar::I64(_) => DType::I64,
                Scalar::F32(_) => DType::F32,
            });
            t(stepforge_tensor::Tensor::full(&shape, s, dtype))
        }
        ZerosLike | OnesLike => {
            let x = a.tensor(0, "input")?;
            let d = a.dtype(usize::MAX)?;
            t(if f == ZerosLike {
                x.zeros_like(d)
            } else {
                x.ones_like(d)
            })
        }
        FullLike | Fill => {
            let x = a.tensor(0, "input")?;
            let v = a.get(1, if f == Fill { "value" } else { "fill_value" });
            let s = v
                .and_then(Value::as_scalar)
                .or_else(|| v.and_then(to_tensor).and_then(|t| t.item().ok()))
                .ok_or_else(|| a.err("fill value must be a number"))?;
            let d = a.dtype(usize::MAX)?.unwrap_or(x.dtype());
            t(stepforge_tensor::Tensor::full(x.shape(), s, d))
        }
        Zero => {
            let x = a.tensor(0, "input")?;
            t(x.zeros_like(None))
        }
        Copy => {
            let x = a.tensor(0, "input")?;
            let src = a.tensor(1, "src")?;
            t(src.to_dtype(x.dtype()).broadcast_to(x.shape()))
        }
        Arange => {
            let nums: Vec<&Value> = a.pos.iter().collect();
            let get = |v: &Value| as_float(v).ok_or_else(|| a.err("bounds must be numbers"));
            let all_int = |vs: &[&Value]| vs.iter().all(|v| as_int(v).is_some());
            let (start, end, step, ints) = match (nums.as_slice(), a.kw("start"), a.kw("end")) {
                ([e], None, None) => (0.0, get(e)?, 1.0, all_int(&[e])),
                ([], Some(s), Some(e)) => (get(s)?, get(e)?, 1.0, all_int(&[s, e])),
                ([], None, Some(e)) => (0.0, get(e)?, 1.0, all_int(&[e])),
                ([s, e], None, None) => (get(s)?, get(e)?, 1.0, all_int(&[s, e])),
                ([s, e, st], None, None) => (get(s)?, get(e)?, get(st)?, all_int(&[s, e, st])),
                _ => {
                    return Err(a.err(
                        "expected arange(end), arange(start, end) or arange(start, end, step)",
                    ));
                }
            };
            let step = match a.kw("step") {
                Some(v) => get(v)?,
                None => step,
            };
            let dtype = a
                .dtype(usize::MAX)?
                .unwrap_or(if ints { DType::I64 } else { DType::F32 });
            t(stepforge_tensor::Tensor::arange(start, end, step, dtype))
        }
        // ----- elementwise ---------------------------------------------------------------
        Exp => unary(UnaryOp::Exp),
        Log => unary(UnaryOp::Log),
        Sqrt => unary(UnaryOp::Sqrt),
        Rsqrt => unary(UnaryOp::Rsqrt),
        Sin => unary(UnaryOp::Sin),
        Cos => unary(UnaryOp::Cos),
        Tanh => unary(UnaryOp::Tanh),
        Sigmoid => unary(UnaryOp::Sigmoid),
        Relu => unary(UnaryOp::Relu),
        Abs => unary(UnaryOp::Abs),
        Erf => unary(UnaryOp::Erf),
        Square => unary(UnaryOp::Square),
        Reciprocal => unary(UnaryOp::Reciprocal),
        Floor => unary(UnaryOp::Floor),
        Ceil => unary(UnaryOp::Ceil),
        Round => unary(UnaryOp::Round),
        Sign => unary(UnaryOp::Sign),
        Neg => unary(UnaryOp::Neg),
        Silu => unary(UnaryOp::Silu),
        LogicalNot => unary(UnaryOp::LogicalNot),
        Gelu => {
            let tanh = match a.kw("approximate") {
                None => false,
                Some(Value::Str(s)) if &**s == "none" => false,
                Some(Value::Str(s)) if &**s == "tanh" => true,
                Some(_) => return Err(a.err("`approximate` must be 'none' or 'tanh'")),
            };
            unary(if tanh {
                UnaryOp::GeluTanh
            } else {
                UnaryOp::Gelu
            })
        }
        Pow => {
            let x = a.tensor(0, "input")?;
            let y = a
                .get(1, "exponent")
                .and_then(to_tensor)
                .ok_or_else(|| a.err("missing argument `exponent`"))?;
            t(x.pow(&y))
        }
        Add | Sub => {
            let x = a.tensor(0, "input")?;
            let mut y = a.tensor(1, "other")?;
            if let Some(alpha) = a.kw("alpha") {
                let al = to_tensor(alpha).ok_or_else(|| a.err("`alpha` must be a number"))?;
                y = Arc::new(y.mul(&al).map_err(te)?);
            }
            t(x.binary(
                if f == Add {
                    BinaryOp::Add
                } else {
                    BinaryOp::Sub
                },
                &y,
            ))
        }
        Mul => binary(BinaryOp::Mul),
        Div => binary(BinaryOp::Div),
        Maximum => binary(BinaryOp::Max),
        Minimum => binary(BinaryOp::Min),
        Max | Min => {
            let largest = f == Max;
            let x = a.tensor(0, "input")?;
            match a.get(1, "dim") {
                None => t(if largest {
                    x.amax(None, false)
                } else {
                    x.amin(None, false)
                }),
                Some(Value::Tensor(y)) => t(x.binary(
                    if largest {
                        BinaryOp::Max
                    } else {
                        BinaryOp::Min
                    },
                    y,
                )),
                Some(_) => {
                    let d = a.int(1, "dim")?;
                    let keep = a.bool_or(2, "keepdim", false)?;
                    let (v, i) = x.max_dim(d, keep, largest).map_err(te)?;
                    Ok(tuple2(v, i))
                }
            }
        }
        Where => {
            let c = a.tensor(0, "condition")?;
            let x = a.tensor(1, "input")?;
            let y = a.tensor(2, "other")?;
            t(stepforge_tensor::Tensor::where_(&c, &x, &y))
        }
        Clamp => {
            let x = a.tensor(0, "input")?;
            t(x.clamp(a.opt_float(1, "min")?, a.opt_float(2, "max")?))
        }
        MaskedFill => {
            let x = a.tensor(0, "input")?;
            let m = a.tensor(1, "mask")?;
            let v = a.tensor(2, "value")?;
            t(stepforge_tensor::Tensor::where_(
                &m,
                &v.to_dtype(x.dtype()),
                &x,
            ))
        }
        Gt => cmp(CmpOp::Gt),
        Ge => cmp(CmpOp::Ge),
        Lt => cmp(CmpOp::Lt),
        Le => cmp(CmpOp::Le),
        Eq => cmp(CmpOp::Eq),
        Ne => cmp(CmpOp::Ne),
        // ----- reductions ----------------------------------------------------------------
        Sum | Mean | Prod | Amax | Amin => {
            let x = a.tensor(0, "input")?;
            let dims = a.dims(1, "dim")?;
            let keep = a.bool_or(2, "keepdim", false)?;
            let d = dims.as_deref();
            let r = match f {
                Sum => x.sum(d, keep),
                Mean => x.mean(d, keep),
                Prod => x.prod(d, keep),
                Amax => x.amax(d, keep),
                _ => x.amin(d, keep),
            };
            let r = r.map_err(te)?;
            match a.dtype(usize::MAX)? {
                Some(dt) => Ok(Value::tensor(r.into_dtype(dt))),
                None => Ok(Value::tensor(r)),
            }
        }
        Var | Std => {
            let x = a.tensor(0, "input")?;
            // var(unbiased) / var(dim, unbiased, keepdim) / var(dim, correction=, keepdim=)
            let (dims, ub_pos) = match a.pos.get(1) {
                Some(Value::Bool(_)) => (None, 1),
                _ => (a.dims(1, "dim")?, 2),
            };
            let mut unbiased = a.bool_or(ub_pos, "unbiased", true)?;
            if let Some(c) = a.kw("correction") {
                unbiased = as_int(c).ok_or_else(|| a.err("`correction` must be 0 or 1"))? != 0;
            }
            let keep = a.bool_or(ub_pos + 1, "keepdim", false)?;
            let v = x.var(dims.as_deref(), unbiased, keep).map_err(te)?;
            if f == Std {
                t(v.sqrt())
            } else {
                Ok(Value::tensor(v))
            }
        }
        Argmax | Argmin => {
            let x = a.tensor(0, "input")?;
            let dim = a.opt_int(1, "dim")?;
            let keep = a.bool_or(2, "keepdim", false)?;
            if f == Argmax {
                t(x.argmax(dim, keep))
            } else {
                let neg = x.to_dtype(DType::F32).neg().map_err(te)?;
                t(neg.argmax(dim, keep))
            }
        }
        Softmax | LogSoftmax => {
            let x = a.tensor(0, "input")?;
            let dim = a
                .opt_int(1, "dim")?
                .unwrap_or_else(|| softmax_default_dim(x.ndim()));
            let r = if f == Softmax {
                x.softmax(dim)
            } else {
                x.log_softmax(dim)
            };
            t(r)
        }
        Cumprod => {
            let x = a.tensor(0, "input")?;
            t(x.cumprod(a.int(1, "dim")?))
        }
        Cumsum => {
            let x = a.tensor(0, "input")?;
            t(x.cumsum(a.int(1, "dim")?))
        }
        Topk => {
            let x = a.tensor(0, "input")?;
            let k = a.int(1, "k")?;
            let dim = a.int_or(2, "dim", -1)?;
            let largest = a.bool_or(3, "largest", true)?;
            let (v, i) = x.topk(k, dim, largest).map_err(te)?;
            Ok(tuple2(v, i))
        }
        Sort => {
            let x = a.tensor(0, "input")?;
            let dim = a.int_or(1, "dim", -1)?;
            let desc = a.bool_or(2, "descending", false)?;
            let (v, i) = x.sort(dim, desc).map_err(te)?;
            Ok(tuple2(v, i))
        }
        // ----- linear algebra -------------------------------------------------------------
        Matmul | Mm | Dot => {
            let x = a.tensor(0, "input")?;
            let y = a.tensor(1, "other")?;
            if f == Mm && (x.ndim() != 2 || y.ndim() != 2) {
                return Err(a.err("expects two 2-d tensors"));
            }
            t(x.matmul(&y))
        }
        Bmm => {
            let x = a.tensor(0, "input")?;
            let y = a.tensor(1, "mat2")?;
            t(x.bmm(&y))
        }
        RepeatInterleave => {
            let x = a.tensor(0, "input")?;
            let n = a.int(1, "repeats")?;
            let n = usize::try_from(n).map_err(|_| a.err("`repeats` must be non-negative"))?;
            let (src, dim) = match a.opt_int(2, "dim")? {
                Some(d) => (x.clone(), d),
                None => (Arc::new(x.reshape(&[-1]).map_err(te)?), 0),
            };
            let d = stepforge_tensor::norm_dim(dim, src.ndim()).map_err(te)?;
            let size = src.shape().get(d).copied().unwrap_or(1);
            if size.saturating_mul(n) > stepforge_tensor::limits::max_numel() {
                return Err(EvalError::from_tensor(
                    stepforge_tensor::TensorError::too_large(format!(
                        "repeat_interleave would make a dim of {} elements",
                        size.saturating_mul(n)
                    )),
                    span,
                ));
            }
            let idx: Vec<i64> = (0..size as i64)
                .flat_map(|i| std::iter::repeat_n(i, n))
                .collect();
            let idx = stepforge_tensor::Tensor::from_i64(vec![idx.len()], idx).map_err(te)?;
            t(src.index_select(d as i64, &idx))
        }
        Argsort => {
            let x = a.tensor(0, "input")?;
            let dim = a.int_or(1, "dim", -1)?;
            let desc = a.bool_or(2, "descending", false)?;
            Ok(Value::tensor(x.sort(dim, desc).map_err(te)?.1))
        }
        Norm => {
            let x = a.tensor(0, "input")?;
            match a.get(1, "p") {
                None | Some(Value::None) | Some(Value::Int(2)) => {}
                Some(Value::Float(p)) if *p == 2.0 => {}
                Some(Value::Str(s)) if &**s == "fro" => {}
                Some(_) => return Err(a.err("only the 2-norm is supported")),
            }
            let dims = a.dims(2, "dim")?;
            let keep = a.bool_or(3, "keepdim", false)?;
            let sq = x.to_dtype(DType::F32).unary(UnaryOp::Square).map_err(te)?;
            t(sq.sum(dims.as_deref(), keep).and_then(|s| s.sqrt()))
        }
        Unbind => {
            let x = a.tensor(0, "input")?;
            let d = a.int_or(1, "dim", 0)?;
            if x.ndim() == 0 {
                return Err(a.err("unbind() needs a tensor with at least one dimension"));
            }
            let dn = stepforge_tensor::norm_dim(d, x.ndim()).map_err(te)?;
            let mut items = Vec::with_capacity(x.shape()[dn]);
            for i in 0..x.shape()[dn] {
                let mut idx = vec![stepforge_tensor::Index::full(); dn];
                idx.push(stepforge_tensor::Index::Int(i as i64));
                items.push(Value::tensor(x.index(&idx).map_err(te)?));
            }
            Ok(Value::tuple(items))
        }
        OneHot => {
            let x = a.tensor(0, "input")?;
            let Some(iv) = x.as_i64() else {
                return Err(a.err("one_hot is only applicable to index tensors (int64)"));
            };
            if iv.iter().any(|&v| v < 0) {
                return Err(a.err("Class values must be non-negative"));
            }
            let max = iv.iter().copied().max().map_or(0, |m| m + 1);
            let c = match a.opt_int(1, "num_classes")? {
                None | Some(-1) => max,
                Some(c) if c >= max => c,
                Some(_) => return Err(a.err("Class values must be smaller than num_classes")),
            };
            let classes =
                stepforge_tensor::Tensor::arange(0.0, c as f64, 1.0, DType::I64).map_err(te)?;
            let col = x.unsqueeze(-1).map_err(te)?;
            let hot = col.compare(CmpOp::Eq, &classes).map_err(te)?;
            t(Ok(hot.to_dtype(DType::I64)))
        }
        Flip => {
            let x = a.tensor(0, "input")?;
            let dims = a
                .dims(1, "dims")?
                .ok_or_else(|| a.err("missing argument `dims`"))?;
            let mut idx = vec![stepforge_tensor::Index::full(); x.ndim()];
            for d in dims {
                let d = stepforge_tensor::norm_dim(d, x.ndim()).map_err(te)?;
                if let Some(slot) = idx.get_mut(d) {
                    *slot = stepforge_tensor::Index::Slice {
                        start: None,
                        stop: None,
                        step: Some(-1),
                    };
                }
            }
            t(x.index(&idx))
        }
        Outer => {
            let x = a.tensor(0, "input")?;
            let y = a.tensor(1, "vec2")?;
            t(stepforge_tensor::Tensor::einsum("i,j->ij", &[&x, &y]))
        }
        Einsum => {
            let eq = match a.get(0, "equation") {
                Some(Value::Str(s)) => s.clone(),
                _ => return Err(a.err("the first argument must be the equation string")),
            };
            let ops: Vec<Arc<stepforge_tensor::Tensor>> = match a.pos.get(1..) {
                Some([l @ (Value::List(_) | Value::Tuple(_))]) => {
                    let args = Args {
                        pos: vec![l.clone()],
                        kw: Vec::new(),
                        span,
                        func: f,
                    };
                    args.tensor_list(0, "operands")?
                }
                Some(rest) => rest
                    .iter()
                    .map(|v| {
                        to_tensor(v).ok_or_else(|| {
                            a.err(format!("operands must be tensors, not {}", v.type_name()))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            let refs: Vec<&stepforge_tensor::Tensor> = ops.iter().map(|t| &**t).collect();
            t(stepforge_tensor::Tensor::einsum(&eq, &refs))
        }
        // ----- shape ---------------------------------------------------------------------
        Reshape | View => {
            let x = a.tensor(0, "input")?;
            let s = a.sizes(1, "shape")?;
            t(x.reshape(&s))
        }
        Unsqueeze => {
            let x = a.tensor(0, "input")?;
            t(x.unsqueeze(a.int(1, "dim")?))
        }
        Squeeze => {
            let x = a.tensor(0, "input")?;
            let d = a.dims(1, "dim")?;
            t(x.squeeze(d.as_deref()))
        }
        Flatten => {
            let x = a.tensor(0, "input")?;
            t(x.flatten(a.int_or(1, "start_dim", 0)?, a.int_or(2, "end_dim", -1)?))
        }
        Permute => {
            let x = a.tensor(0, "input")?;
            let d = a.sizes(1, "dims")?;
            t(x.permute(&d))
        }
        Transpose => {
            let x = a.tensor(0, "input")?;
            t(x.transpose(a.int(1, "dim0")?, a.int(2, "dim1")?))
        }
        TMethod => t(a.tensor(0, "input")?.t()),
        Movedim => {
            let x = a.tensor(0, "input")?;
            let s = a
                .dims(1, "source")?
                .ok_or_else(|| a.err("missing argument `source`"))?;
            let d = a
                .dims(2, "destination")?
                .ok_or_else(|| a.err("missing argument `destination`"))?;
            t(x.movedim(&s, &d))
        }
        Expand => {
            let x = a.tensor(0, "input")?;
            let s = a.sizes(1, "size")?;
            t(x.expand(&s))
        }
        ExpandAs => {
            let x = a.tensor(0, "input")?;
            let o = a.tensor(1, "other")?;
            t(x.broadcast_to(o.shape()))
        }
        Repeat => {
            let x = a.tensor(0, "input")?;
            let s = a.sizes(1, "repeats")?;
            t(x.repeat(&s))
        }
        Chunk | Split => {
            let x = a.tensor(0, "input")?;
            let n = a.int(
                1,
                if f == Chunk {
                    "chunks"
                } else {
                    "split_size_or_sections"
                },
            )?;
            let dim = a.int_or(2, "dim", 0)?;
            let parts = if f == Chunk {
                x.chunk(n, dim)
            } else {
                x.split(n, dim)
            }
            .map_err(te)?;
            Ok(Value::tuple(parts.into_iter().map(Value::tensor).collect()))
        }
        Stack | Cat => {
            let ts = a.tensor_list(0, "tensors")?;
            let dim = a.int_or(1, "dim", 0)?;
            let refs: Vec<&stepforge_tensor::Tensor> = ts.iter().map(|t| &**t).collect();
            t(if f == Stack {
                stepforge_tensor::Tensor::stack(&refs, dim)
            } else {
                stepforge_tensor::Tensor::cat(&refs, dim)
            })
        }
        Size => {
            let x = a.tensor(0, "input")?;
            match a.opt_int(1, "dim")? {
                None => Ok(shape_value(x.shape())),
                Some(d) => {
                    let d = stepforge_tensor::norm_dim(d, x.ndim()).map_err(te)?;
                    Ok(Value::Int(x.shape().get(d).copied().unwrap_or(1) as i64))
                }
            }
        }
        Dim => Ok(Value::Int(a.tensor(0, "input")?.ndim() as i64)),
        Numel => Ok(Value::Int(a.tensor(0, "input")?.numel() as i64)),
        Identity => Ok(Value::Tensor(a.tensor(0, "input")?)),
        ToFloat => t(Ok(a.tensor(0, "input")?.to_dtype(DType::F32))),
        ToLong => t(Ok(a.tensor(0, "input")?.to_dtype(DType::I64))),
        ToBool => t(Ok(a.tensor(0, "input")?.to_dtype(DType::Bool))),
        To => {
            let x = a.tensor(0, "input")?;
            let d = match a.get(1, "dtype") {
                Some(Value::DType(d)) => Some(*d),
                Some(Value::Tensor(o)) => Some(o.dtype()),
                // `x.to('cpu')` and similar device moves are no-ops here.
                Some(Value::Str(_)) | None => None,
                Some(v) => return Err(a.err(format!("cannot convert to {}", v.type_name()))),
            };
            match d {
                Some(d) => t(Ok(x.to_dtype(d))),
                None => Ok(Value::Tensor(x)),
            }
        }
        TypeAs => {
            let x = a.tensor(0, "input")?;
            let o = a.tensor(1, "other")?;
            t(Ok(x.to_dtype(o.dtype())))
        }
        Item => {
            let x = a.tensor(0, "input")?;
            Ok(match x.item().map_err(te)? {
                Scalar::Bool(b) => Value::Bool(b),
                Scalar::I64(i) => Value::Int(i),
                Scalar::F32(v) => Value::Float(f64::from(v)),
            })
        }
        Scatter | ScatterAdd => {
            let x = a.tensor(0, "input")?;
            let dim = a.int(1, "dim")?;
            let idx = a.tensor(2, "index")?;
            if a.kw("reduce").is_some() {
                return Err(a.err("the `reduce` argument is not supported"));
            }
            let src = match (a.kw("src"), a.kw("value"), a.pos.get(3)) {
                (Some(v), _, _) | (None, Some(v), _) | (None, None, Some(v)) => v,
                _ => return Err(a.err("missing argument `src` or `value`")),
            };
            if f == ScatterAdd {
                let s = to_tensor(src).ok_or_else(|| a.err("`src` must be a tensor"))?;
                return t(x.scatter_add(dim, &idx, &s));
            }
            match src {
                Value::Tensor(s) if s.ndim() > 0 || idx.ndim() == 0 => t(x.scatter(dim, &idx, s)),
                other => {
                    let v = as_float(other)
                        .ok_or_else(|| a.err("`src` must be a tensor or a number"))?;
                    t(x.scatter_value(dim, &idx, v))
                }
            }
        }
        Gather => {
            let x = a.tensor(0, "input")?;
            t(x.gather(a.int(1, "dim")?, &*a.tensor(2, "index")?))
        }
        IndexSelect => {
            let x = a.tensor(0, "input")?;
            t(x.index_select(a.int(1, "dim")?, &*a.tensor(2, "index")?))
        }
        // ----- nn ------------------------------------------------------------------------
        NativeLayerNorm | LayerNorm => {
            let x = a.tensor(0, "input")?;
            let ns = a
                .get(1, "normalized_shape")
                .and_then(int_list)
                .ok_or_else(|| a.err("`normalized_shape` must be a list of ints"))?;
            let ns =
                to_shape(&ns).ok_or_else(|| a.err("`normalized_shape` must be non-negative"))?;
            let w = a.opt_tensor(2, "weight")?;
            let b = a.opt_tensor(3, "bias")?;
            let eps = a.opt_float(4, "eps")?.unwrap_or(1e-5);
            let (o, m, r) = x
                .native_layer_norm(&ns, w.as_deref(), b.as_deref(), eps)
                .map_err(te)?;
            if f == LayerNorm {
                Ok(Value::tensor(o))
            } else {
                Ok(Value::tuple(vec![
                    Value::tensor(o),
                    Value::tensor(m),
                    Value::tensor(r),
                ]))
            }
        }
        NnGelu => {
            let tanh = matches!(a.get(0, "approximate"), Some(Value::Str(s)) if &**s == "tanh");
            Ok(Value::Module(Module::Gelu { tanh }))
        }
        NnSigmoid => Ok(Value::Module(Module::Sigmoid)),
        NnSoftmax => Ok(Value::Module(Module::Softmax {
            dim: a.opt_int(0, "dim")?,
        })),
        NnLogSoftmax => Ok(Value::Module(Module::LogSoftmax {
            dim: a.opt_int(0, "dim")?,
        })),
        NnSilu => Ok(Value::Module(Module::Silu)),
        NnRelu => Ok(Value::Module(Module::Relu)),
        NnTanh => Ok(Value::Module(Module::Tanh)),
        NnIdentity => Ok(Value::Module(Module::Identity)),
        // ----- Python builtins -----------------------------------------------------------
        PyRange => {
            let ints: Vec<i64> = a
                .pos
                .iter()
                .map(|v| {
                    as_int(v)
                        .ok_or_else(|| a.err(format!("expected ints, found {}", v.type_name())))
                })
                .collect::<Result<_, _>>()?;
            match ints.as_slice() {
                [e] => Ok(Value::Range(0, *e, 1)),
                [s, e] => Ok(Value::Range(*s, *e, 1)),
                [_, _, 0] => Err(a.err("range() arg 3 must not be zero")),
                [s, e, st] => Ok(Value::Range(*s, *e, *st)),
                _ => Err(a.err("expected 1 to 3 arguments")),
            }
        }
        PyLen => match a.pos.first() {
            Some(Value::List(l) | Value::Tuple(l)) => Ok(Value::Int(l.len() as i64)),
            Some(Value::Range(s, e, st)) => Ok(Value::Int(range_len(*s, *e, *st) as i64)),
            Some(Value::Str(s)) => Ok(Value::Int(s.chars().count() as i64)),
            Some(Value::Tensor(x)) => match x.shape().first() {
                Some(&n) => Ok(Value::Int(n as i64)),
                None => Err(a.err("len() of a 0-d tensor")),
            },
            Some(v) => Err(a.err(format!("{} has no len()", v.type_name()))),
            None => Err(a.err("missing argument")),
        },
        PyFloat => match a.pos.first() {
            Some(Value::Str(s)) => {
                let s = s.trim().to_ascii_lowercase();
                let x = match s.as_str() {
                    "inf" | "+inf" | "infinity" => f64::INFINITY,
                    "-inf" | "-infinity" => f64::NEG_INFINITY,
                    "nan" => f64::NAN,
                    other => other.parse().map_err(|_| {
                        a.err(format!("could not convert string to float: '{other}'"))
                    })?,
                };
                Ok(Value::Float(x))
            }
            Some(v) => as_float(v)
                .map(Value::Float)
                .ok_or_else(|| a.err(format!("cannot convert {}", v.type_name()))),
            None => Ok(Value::Float(0.0)),
        },
        PyInt => match a.pos.first() {
            Some(v) => as_float(v)
                .filter(|x| x.is_finite())
                .map(|x| Value::Int(x.trunc() as i64))
                .ok_or_else(|| a.err(format!("cannot convert {}", v.type_name()))),
            None => Ok(Value::Int(0)),
        },
        PyBool => match a.pos.first() {
            Some(v) => py_truthy(v, span).map(Value::Bool),
            None => Ok(Value::Bool(false)),
        },
        PyMin | PyMax => {
            let items = match a.pos.as_slice() {
                [one] => iter_items(one, span, max_items)?,
                many => many.to_vec(),
            };
            let mut best: Option<Value> = None;
            for it in items {
                best = Some(match best {
                    None => it,
                    Some(b) => {
                        let op = if f == PyMax { CmpOp::Gt } else { CmpOp::Lt };
                        let better = super::interp::compare(op, &it, &b, span)?;
                        if py_truthy(&better, span)? { it } else { b }
                    }
                });
            }
            best.ok_or_else(|| a.err("arg is an empty sequence"))
        }
        PyAbs => match a.pos.first() {
            Some(Value::Int(i)) => Ok(Value::Int(i.wrapping_abs())),
            Some(Value::Float(x)) => Ok(Value::Float(x.abs())),
            Some(Value::Bool(b)) => Ok(Value::Int(i64::from(*b))),
            _ => unary(UnaryOp::Abs),
        },
        PySum => {
            let items = match a.pos.first() {
                Some(v) => iter_items(v, span, max_items)?,
                None => return Err(a.err("missing argument")),
            };
            let mut acc = a.get(1, "start").cloned().unwrap_or(Value::Int(0));
            for it in items {
                acc = binop(BinOp::Add, acc, it, span)?;
            }
            Ok(acc)
        }
        PyZip => {
            let lists: Vec<Vec<Value>> = a
                .pos
                .iter()
                .map(|v| iter_items(v, span, max_items))
                .collect::<Result<_, _>>()?;
            let n = lists.iter().map(Vec::len).min().unwrap_or(0);
            Ok(Value::list(
                (0..n)
                    .map(|i| Value::tuple(lists.iter().map(|l| l[i].clone()).collect()))
                    .collect(),
            ))
        }
        PyEnumerate => {
            let items = match a.pos.first() {
                Some(v) => iter_items(v, span, max_items)?,
                None => return Err(a.err("missing argument")),
            };
            Ok(Value::list(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Value::tuple(vec![Value::Int(i as i64), v]))
                    .collect(),
            ))
        }
        PyList | PyTuple => {
            let items = match a.pos.first() {
                Some(v) => iter_items(v, span, max_items)?,
                None => Vec::new(),
            };
            Ok(if f == PyList {
                Value::list(items)
            } else {
                Value::tuple(items)
            })
        }
        PyRound => match (a.pos.first(), a.pos.get(1)) {
            (Some(Value::Int(i)), _) => Ok(Value::Int(*i)),
            (Some(v), None) => as_float(v)
                .filter(|x| x.is_finite())
                .map(|x| Value::Int(x.round_ties_even() as i64))
                .ok_or_else(|| a.err("expected a number")),
            (Some(v), Some(n)) => {
                let x = as_float(v).ok_or_else(|| a.err("expected a number"))?;
                let n = as_int(n).ok_or_else(|| a.err("ndigits must be an int"))?;
                let p = 10f64.powi(i32::try_from(n).unwrap_or(0));
                Ok(Value::Float((x * p).round_ties_even() / p))
            }
            (None, _) => Err(a.err("missing argument")),
        },
        // ----- math ----------------------------------------------------------------------
        MathSqrt | MathExp | MathLog | MathCos | MathSin | MathCeil | MathFloor => {
            let x = a.float(0, "x")?;
            Ok(match f {
                MathSqrt if x < 0.0 => return Err(a.err("math domain error")),
                MathLog if x <= 0.0 => return Err(a.err("math domain error")),
                MathSqrt => Value::Float(x.sqrt()),
                MathExp => Value::Float(x.exp()),
                MathLog => Value::Float(x.ln()),
                MathCos => Value::Float(x.cos()),
                MathSin => Value::Float(x.sin()),
                MathCeil => py_number(x.ceil(), true),
                _ => py_number(x.floor(), true),
            })
        }
    }
}

pub(crate) fn shape_value(shape: &[usize]) -> Value {
    Value::tuple(shape.iter().map(|&s| Value::Int(s as i64)).collect())
}

fn to_shape(sizes: &[i64]) -> Option<Vec<usize>> {
    sizes.iter().map(|&s| usize::try_from(s).ok()).collect()
}
