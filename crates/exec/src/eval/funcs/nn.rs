//! `torch.nn` module constructors and layer norms.

use super::*;

/// Calls a nn builtin.
pub(super) fn call(f: Func, a: Args, _b: &mut Budget) -> Result<Value, EvalError> {
    use Func::*;
    let span = a.span;
    let te = |e: stepforge_tensor::TensorError| EvalError::from_tensor(e, span);
    match f {
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
