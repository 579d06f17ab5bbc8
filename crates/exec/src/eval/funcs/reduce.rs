//! Reductions, scans, sorts and `max`/`min` (which also compare elementwise).

use super::*;

/// Calls a reduce builtin.
pub(super) fn call(f: Func, a: Args, _b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
