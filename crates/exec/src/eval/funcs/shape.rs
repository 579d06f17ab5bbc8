//! Views, joins, splits, casts and shape queries: data movement without arithmetic.

use super::*;

/// Calls a shape builtin.
pub(super) fn call(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
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
        Unbind => {
            let x = a.tensor(0, "input")?;
            let d = a.int_or(1, "dim", 0)?;
            if x.ndim() == 0 {
                return Err(a.err("unbind() needs a tensor with at least one dimension"));
            }
            let dn = stepforge_tensor::norm_dim(d, x.ndim()).map_err(te)?;
            let n = x.shape()[dn];
            b.check_pieces(n, x.numel() / n.max(1), "unbind()", a.span)?;
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                b.work(super::super::budget::WORK_PER_STEP, a.span)?;
                let mut idx = vec![stepforge_tensor::Index::full(); dn];
                idx.push(stepforge_tensor::Index::Int(i as i64));
                items.push(Value::tensor(x.index(&idx).map_err(te)?));
            }
            Ok(Value::tuple(items))
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
        _ => call_rest(f, a, b),
    }
}

/// The second half of [`call`] (kept apart so no function is long).
fn call_rest(f: Func, a: Args, _b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
