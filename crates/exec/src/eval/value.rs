//! Runtime values of the Python/torch subset.

use std::sync::Arc;

use stepforge_tensor::{DType, Scalar, Tensor};

use super::funcs::Func;

/// A `torch.nn` module object (callable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Module {
    /// `torch.nn.GELU()`; `tanh` for `approximate='tanh'`.
    Gelu {
        tanh: bool,
    },
    Sigmoid,
    Softmax {
        dim: Option<i64>,
    },
    LogSoftmax {
        dim: Option<i64>,
    },
    Silu,
    Relu,
    Tanh,
    Identity,
}

impl Module {
    pub fn name(self) -> &'static str {
        match self {
            Module::Gelu { .. } => "GELU",
            Module::Sigmoid => "Sigmoid",
            Module::Softmax { .. } => "Softmax",
            Module::LogSoftmax { .. } => "LogSoftmax",
            Module::Silu => "SiLU",
            Module::Relu => "ReLU",
            Module::Tanh => "Tanh",
            Module::Identity => "Identity",
        }
    }
}

/// A value. Tensors and sequences are shared (`Arc`), so copying a value is cheap; mutation
/// (`x[0] = ..`, `scatter_`) copies only when the buffer is shared.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Tensor(Arc<Tensor>),
    List(Arc<Vec<Value>>),
    Tuple(Arc<Vec<Value>>),
    /// `range(start, stop, step)`, iterated lazily.
    Range(i64, i64, i64),
    Module(Module),
    /// A torch function used as a value (`act = torch.sigmoid`).
    Func(Func),
    DType(DType),
    /// The `ctx` dimension map.
    Ctx,
    /// The `input_data` map.
    InputData,
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a str",
            Value::Tensor(_) => "a tensor",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Range(..) => "a range",
            Value::Module(_) => "a torch.nn module",
            Value::Func(_) => "a function",
            Value::DType(_) => "a dtype",
            Value::Ctx => "the ctx map",
            Value::InputData => "the input_data map",
        }
    }

    pub fn tensor(t: Tensor) -> Value {
        Value::Tensor(Arc::new(t))
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }

    pub fn tuple(v: Vec<Value>) -> Value {
        Value::Tuple(Arc::new(v))
    }

    /// A Python number (or 0-d tensor) as a scalar, for mixing with tensors.
    pub fn as_scalar(&self) -> Option<Scalar> {
        match self {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Int(i) => Some(Scalar::I64(*i)),
            Value::Float(x) => Some(Scalar::F32(*x as f32)),
            _ => None,
        }
    }

    /// Appends Python's `str()` to `out`, stopping once `out` holds `cap` bytes: a list
    /// shared many times over (`a = [a, a]` thirty times) has 2^30 leaves, so rendering must
    /// be bounded by its output, not by the value.
    pub fn write_py_str(&self, out: &mut String, cap: usize) {
        if out.len() >= cap {
            return;
        }
        match self {
            Value::List(l) | Value::Tuple(l) => {
                let tuple = matches!(self, Value::Tuple(_));
                out.push(if tuple { '(' } else { '[' });
                for (i, x) in l.iter().enumerate() {
                    if out.len() >= cap {
                        return;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write_py_str(out, cap);
                }
                out.push(if tuple { ')' } else { ']' });
            }
            other => out.push_str(&other.py_str()),
        }
    }

    /// Python's `str()` for f-strings.
    pub fn py_str(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => py_float(*x),
            Value::Str(s) => s.to_string(),
            Value::Tensor(t) => match t.item() {
                Ok(s) => format!("tensor({})", scalar_str(s)),
                Err(_) => format!("tensor of shape {}", stepforge_tensor::fmt_shape(t.shape())),
            },
            Value::List(l) => format!(
                "[{}]",
                l.iter().map(Value::py_str).collect::<Vec<_>>().join(", ")
            ),
            Value::Tuple(l) => format!(
                "({})",
                l.iter().map(Value::py_str).collect::<Vec<_>>().join(", ")
            ),
            Value::Range(a, b, c) => format!("range({a}, {b}, {c})"),
            Value::Module(m) => format!("{}()", m.name()),
            Value::Func(f) => f.name().to_string(),
            Value::DType(d) => d.name().to_string(),
            Value::Ctx => "ctx".into(),
            Value::InputData => "input_data".into(),
        }
    }
}

fn scalar_str(s: Scalar) -> String {
    match s {
        Scalar::Bool(b) => if b { "True" } else { "False" }.into(),
        Scalar::I64(i) => i.to_string(),
        Scalar::F32(x) => py_float(f64::from(x)),
    }
}

/// Python's repr of a float: `1.0`, `0.5`, `1e-05`, `inf`.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x == x.trunc() && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}
