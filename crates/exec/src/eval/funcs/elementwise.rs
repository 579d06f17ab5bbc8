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
    match f {
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
