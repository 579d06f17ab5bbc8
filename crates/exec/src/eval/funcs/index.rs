//! Gathers, scatters and in-place fills.

use super::*;

/// Calls a index builtin.
pub(super) fn call(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
        // `x.fill_(v)` shares `full_like`'s implementation.
        Fill => super::creation::call(f, a, b),
        Zero => {
            let x = a.tensor(0, "input")?;
            t(x.zeros_like(None))
        }
        Copy => {
            let x = a.tensor(0, "input")?;
            let src = a.tensor(1, "src")?;
            t(src.to_dtype(x.dtype()).broadcast_to(x.shape()))
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
