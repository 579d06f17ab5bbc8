//! Elementwise builtins: one operand, or several that broadcast.

use super::*;

/// Calls a elementwise builtin.
pub(super) fn call(f: Func, a: Args, _b: &mut Budget) -> Result<Value, EvalError> {
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
    if matches!(f, Gelu) {
        let tanh = match a.kw("approximate") {
            None => false,
            Some(Value::Str(s)) if &**s == "none" => false,
            Some(Value::Str(s)) if &**s == "tanh" => true,
            Some(_) => return Err(a.err("`approximate` must be 'none' or 'tanh'")),
        };
        return unary(if tanh {
            UnaryOp::GeluTanh
        } else {
            UnaryOp::Gelu
        });
    }
    // The one builtin → elementwise-function map (the builtin table's, shared with the jit).
    if let Some(op) = f.unary_op() {
        return unary(op);
    }
    match f {
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
        _ => Err(a.err("is not implemented in this family")),
    }
}
