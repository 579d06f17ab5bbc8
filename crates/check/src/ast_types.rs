//! Written types → IR types: the dtypes and dims of task declarations as the parser gives them
//! ([`DtypeAst`], [`DimExpr`]) converted to [`ElemType`] and [`Dim`].
//!
//! This lives in the checker, not in `stepforge-ir`, so the IR does not depend on the parser.

use stepforge_ir::{Dim, ElemType, strip_value_suffix};
use stepforge_syntax::Span;
use stepforge_syntax::ast::{DimExpr, DtypeAst};

/// Why a written dtype is not a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeAstError {
    pub message: String,
    pub span: Span,
}

/// Converts a dimension written in a task (`N`, `4`, `N*M`, `N/4`). `None` on overflow or
/// division by zero.
pub fn dim_from_ast(e: &DimExpr) -> Option<Dim> {
    match e {
        DimExpr::Int(v, _) => Some(Dim::lit(*v)),
        DimExpr::Sym(id) => Some(Dim::sym(strip_value_suffix(&id.name))),
        DimExpr::Mul(a, b, _) => dim_from_ast(a)?.mul(&dim_from_ast(b)?),
        DimExpr::Div(a, b, _) => dim_from_ast(a)?.div(&dim_from_ast(b)?),
    }
}

/// Converts a written dtype. `Multihot` must hold `fp32`; a buffer holds `fp32` or `Multihot`;
/// tuples may not nest (the invariants of [`ElemType`]).
pub fn elem_type_from_ast(t: &DtypeAst) -> Result<ElemType, TypeAstError> {
    let err = |message: &str, span: Span| TypeAstError {
        message: message.to_string(),
        span,
    };
    let dim = |e: &DimExpr| {
        dim_from_ast(e).ok_or_else(|| err("dimension overflows or divides by zero", e.span()))
    };
    match t {
        DtypeAst::Fp32(_) => Ok(ElemType::Fp32),
        DtypeAst::Multihot { elem, len, span } => match elem.as_ref() {
            DtypeAst::Fp32(_) => Ok(ElemType::Multihot(dim(len)?)),
            _ => Err(err(
                "Multihot holds fp32 only: write Multihot(fp32, X)",
                *span,
            )),
        },
        DtypeAst::Buffer { elem, dims, span } => {
            let inner = elem_type_from_ast(elem)?;
            let dims = dims.iter().map(dim).collect::<Result<Vec<_>, _>>()?;
            if dims.is_empty() {
                return Err(err("a Buffer needs at least one dimension", *span));
            }
            match inner {
                ElemType::Tuple(_) => {
                    Err(err("a Buffer holds fp32 or Multihot, not a tuple", *span))
                }
                other => ElemType::buffer(&other, &dims)
                    .ok_or_else(|| err("a Buffer holds fp32 or Multihot", *span)),
            }
        }
        DtypeAst::Tuple(fields, span) => {
            if fields.is_empty() {
                return Err(err("an empty tuple is not a type", *span));
            }
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                if matches!(f, DtypeAst::Tuple(..)) {
                    return Err(err("tuples do not nest", f.span()));
                }
                out.push(elem_type_from_ast(f)?);
            }
            Ok(ElemType::tuple(out))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stepforge_syntax::ast::Ident;

    #[test]
    fn value_suffix_names_the_same_dim() {
        let e = DimExpr::Sym(Ident::new("D_value", Span::DUMMY));
        assert_eq!(dim_from_ast(&e).unwrap(), Dim::sym("D"));
    }

    #[test]
    fn nested_tuples_are_rejected() {
        let f = || DtypeAst::Fp32(Span::DUMMY);
        let inner = DtypeAst::Tuple(vec![f(), f()], Span::new(1, 2));
        let t = DtypeAst::Tuple(vec![f(), inner], Span::new(0, 3));
        assert_eq!(
            elem_type_from_ast(&t).unwrap_err().message,
            "tuples do not nest"
        );
        let ok = DtypeAst::Tuple(vec![f(), f()], Span::DUMMY);
        assert_eq!(
            elem_type_from_ast(&ok).unwrap(),
            ElemType::tuple(vec![ElemType::Fp32, ElemType::Fp32])
        );
    }
}
