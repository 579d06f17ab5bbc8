//! Tensors made from sizes, values or another tensor's shape.

use super::*;

/// Calls a creation builtin.
pub(super) fn call(f: Func, a: Args, b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
        Tensor => {
            let v = a
                .get(0, "data")
                .ok_or_else(|| a.err("missing argument `data`"))?;
            Ok(Value::tensor(tensor_from_value(
                v,
                a.dtype(usize::MAX)?,
                span,
                b,
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
