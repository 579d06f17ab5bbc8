//! Preparation of a lowered body ([`stepforge_ir::func::Body`]) for evaluation in an [`Env`]:
//! constants, names bound by `global` and dimension values are resolved once, per node, so
//! the interpreter reads them by index. Lowering itself (names, builtins, E0602) is
//! `stepforge_check::func_lower`'s, run once per task.

use std::sync::Arc;

use stepforge_diag::codes::Code;
use stepforge_ir::func::{Body, Const, DType as IrDType, Expr, Mode};
use stepforge_tensor::DType;

use super::value::Value;
use super::{Env, EvalError};

pub(crate) use stepforge_ir::func::{INPUT_SLOT, STATE_SLOT};

/// A body ready to run in one env: `values[id]` holds the value of every constant, global
/// and dimension-value node.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub body: Arc<Body>,
    pub values: Vec<Option<Value>>,
}

impl Compiled {
    pub fn mode(&self) -> Mode {
        self.body.mode
    }
}

pub(crate) fn const_value(c: &Const) -> Value {
    match c {
        Const::None => Value::None,
        Const::Bool(b) => Value::Bool(*b),
        Const::Int(i) => Value::Int(*i),
        Const::Float(x) => Value::Float(*x),
        Const::Str(s) => Value::Str(s.clone()),
        Const::DType(d) => Value::DType(match d {
            IrDType::F32 => DType::F32,
            IrDType::I64 => DType::I64,
            IrDType::Bool => DType::Bool,
        }),
        Const::Builtin(b) => Value::Func(*b),
        Const::InputData => Value::InputData,
        Const::Ctx => Value::Ctx,
    }
}

/// Resolves every constant, global and dimension value of `body` in `env`.
pub(crate) fn prepare(body: Arc<Body>, env: &Env) -> Result<Compiled, EvalError> {
    let mut values = Vec::with_capacity(body.len());
    for (id, e) in body.exprs() {
        values.push(match e {
            Expr::Const(c) => Some(const_value(c)),
            Expr::Global(n) => match env.names.get(&**n) {
                Some(v) => Some(v.clone()),
                None => {
                    return Err(EvalError::new(
                        Code::E0602,
                        format!("unknown name `{n}`"),
                        body.span(id),
                    ));
                }
            },
            Expr::DimValue(d) => match env.dims.get(&**d) {
                Some(&v) => Some(Value::Int(v)),
                None => {
                    return Err(EvalError::new(
                        Code::E0602,
                        format!("unknown name `{d}_value`: dimension {d} has no value"),
                        body.span(id),
                    ));
                }
            },
            _ => None,
        });
    }
    Ok(Compiled { body, values })
}
