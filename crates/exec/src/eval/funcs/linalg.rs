//! Contractions and other linear algebra.

use super::*;

/// Calls a linalg builtin.
pub(super) fn call(f: Func, a: Args, _b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    let t = |r: Result<stepforge_tensor::Tensor, stepforge_tensor::TensorError>| {
        r.map(Value::tensor).map_err(te)
    };
    match f {
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
