//! Python builtins and `math` functions on numbers and sequences.

use super::*;

/// Calls a py builtin.
pub(super) fn call(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    let unary = |op: UnaryOp| -> Result<Value, EvalError> { t(a.tensor(0, "input")?.unary(op)) };
    match f {
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
                [one] => iter_items(one, span, b)?,
                many => many.to_vec(),
            };
            let mut best: Option<Value> = None;
            for it in items {
                best = Some(match best {
                    None => it,
                    Some(cur) => {
                        let op = if f == PyMax {
                            stepforge_ir::func::CmpOp::Gt
                        } else {
                            stepforge_ir::func::CmpOp::Lt
                        };
                        let better = super::super::interp::compare(op, &it, &cur, span, b)?;
                        if py_truthy(&better, span)? { it } else { cur }
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
        _ => call_rest(f, a, b),
    }
}

/// The second half of [`call`] (kept apart so no function is long).
fn call_rest(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    match f {
        PySum => {
            let items = match a.pos.first() {
                Some(v) => iter_items(v, span, b)?,
                None => return Err(a.err("missing argument")),
            };
            let mut acc = a.get(1, "start").cloned().unwrap_or(Value::Int(0));
            for it in items {
                acc = binop(BinOp::Add, acc, it, span, b)?;
            }
            Ok(acc)
        }
        PyZip => {
            let lists: Vec<Vec<Value>> = a
                .pos
                .iter()
                .map(|v| iter_items(v, span, b))
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
                Some(v) => iter_items(v, span, b)?,
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
                Some(v) => iter_items(v, span, b)?,
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
