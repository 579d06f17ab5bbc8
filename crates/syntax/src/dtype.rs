//! Narrowing expressions to dtypes (`fp32`, `Multihot(fp32, E)`, `Buffer(T, [D, N])`,
//! `[T1, T2]`) and dimensions (`M`, `1`, `M*N`, `N/2`), with did-you-mean for the usual typos.

use crate::ast::*;
use crate::codes::Code;
use crate::diag::{Applicability, Diagnostic, Fix, plural};
use crate::ops::did_you_mean;
use crate::span::Span;

const DTYPE_HELP: &str = "a dtype is `fp32`, `Multihot(fp32, E)`, `Buffer(fp32, [D, N])`, `Buffer(Multihot(fp32, E), [N])`, or a list of these";

fn bad(msg: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::new(Code::E0119, msg).at(span).help(DTYPE_HELP)
}

fn rename(d: Diagnostic, span: Span, to: &str) -> Diagnostic {
    d.fix(Fix::replace(
        format!("replace with `{to}`"),
        Applicability::Unsafe,
        span,
        to,
    ))
}

/// Which constructor a name spells, with a diagnostic for near misses.
fn constructor(name: &str, span: Span, call: bool) -> Result<&'static str, Diagnostic> {
    let exact = ["fp32", "Multihot", "Buffer"];
    if let Some(e) = exact.iter().find(|e| **e == name) {
        return Ok(e);
    }
    let guess = match name.to_ascii_lowercase().as_str() {
        "float" | "float32" | "f32" | "fp" | "torch.float32" => Some("fp32"),
        "multihot" | "multi_hot" | "onehot" | "one_hot" => Some("Multihot"),
        "buffer" | "buf" | "tile" => Some("Buffer"),
        _ => did_you_mean(name, &exact),
    };
    let kind = if call { "dtype constructor" } else { "dtype" };
    let mut d = bad(format!("unknown {kind} `{name}`"), span);
    if let Some(g) = guess {
        d.help = Some(format!("did you mean `{g}`?"));
        d = rename(d, span, g).note(DTYPE_HELP);
    } else if matches!(
        name,
        "fp16" | "bf16" | "fp64" | "int32" | "int64" | "i32" | "i64"
    ) {
        d = d.note("only fp32 elements are supported");
    }
    Err(d)
}

pub(crate) fn dtype(e: &Expr, top: bool) -> Result<DtypeAst, Diagnostic> {
    match &e.kind {
        ExprKind::Name(n) => match constructor(n, e.span, false)? {
            "fp32" => Ok(DtypeAst::Fp32(e.span)),
            other => Err(bad(
                format!("`{other}` needs its parameters: `{}`", example(other)),
                e.span,
            )),
        },
        ExprKind::Call { func, args, kwargs } => {
            let ExprKind::Name(n) = &func.kind else {
                return Err(bad("expected a dtype", e.span));
            };
            let c = constructor(n, func.span, true)?;
            if let Some((k, _)) = kwargs.first() {
                return Err(bad(
                    format!("`{c}` takes positional parameters: `{}`", example(c)),
                    k.span,
                ));
            }
            match c {
                "Multihot" => {
                    let [elem, len] = args.as_slice() else {
                        return Err(bad(
                            format!(
                                "`Multihot` takes an element type and a length, got {} parameter{}",
                                args.len(),
                                plural(args.len())
                            ),
                            e.span,
                        )
                        .note("write `Multihot(fp32, E)`: E is the number of bits"));
                    };
                    let elem = dtype(elem, false)?;
                    if !matches!(elem, DtypeAst::Fp32(_)) {
                        return Err(bad("`Multihot` elements are `fp32`", elem.span()));
                    }
                    Ok(DtypeAst::Multihot {
                        elem: Box::new(elem),
                        len: dim(len)?,
                        span: e.span,
                    })
                }
                "Buffer" => {
                    let [elem, dims] = args.as_slice() else {
                        return Err(bad(
                            format!(
                                "`Buffer` takes an element type and a list of dims, got {} parameter{}",
                                args.len(),
                                plural(args.len())
                            ),
                            e.span,
                        )
                        .note("write `Buffer(fp32, [D, N])` (dims innermost first)"));
                    };
                    let elem = dtype(elem, false)?;
                    match elem {
                        DtypeAst::Buffer { span, .. } => {
                            return Err(bad("a buffer of a buffer is not a type", span)
                                .note("Bufferize of a buffer stream extends the buffer's dims: write one `Buffer` with all dims"));
                        }
                        DtypeAst::Tuple(_, span) => {
                            return Err(bad("a buffer's elements cannot be a tuple", span));
                        }
                        _ => {}
                    }
                    let dims = match &dims.kind {
                        ExprKind::List(items) | ExprKind::Tuple(items) => {
                            items.iter().map(dim).collect::<Result<Vec<_>, _>>()?
                        }
                        _ => {
                            return Err(bad(
                                "`Buffer` dims are a list: `Buffer(fp32, [D, N])`",
                                dims.span,
                            ));
                        }
                    };
                    if dims.is_empty() {
                        return Err(bad("a buffer needs at least one dim", e.span));
                    }
                    Ok(DtypeAst::Buffer {
                        elem: Box::new(elem),
                        dims,
                        span: e.span,
                    })
                }
                _ => Err(bad("`fp32` takes no parameters", e.span)),
            }
        }
        ExprKind::List(items) | ExprKind::Tuple(items) => {
            if !top {
                return Err(bad("tuple dtypes never nest", e.span)
                    .note("Zip flattens tuples: list all fields at one level"));
            }
            if items.is_empty() {
                return Err(bad("an empty tuple is not a dtype", e.span));
            }
            let ts = items
                .iter()
                .map(|it| dtype(it, false))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(DtypeAst::Tuple(ts, e.span))
        }
        ExprKind::Str(_) => Err(bad("a dtype is written without quotes", e.span)),
        _ => Err(bad("expected a dtype", e.span)),
    }
}

fn example(c: &str) -> &'static str {
    match c {
        "Multihot" => "Multihot(fp32, E)",
        "Buffer" => "Buffer(fp32, [D, N])",
        _ => "fp32",
    }
}

pub(crate) fn dim(e: &Expr) -> Result<DimExpr, Diagnostic> {
    let bad_dim = |msg: String, span: Span| {
        Diagnostic::new(Code::E0120, msg)
            .at(span)
            .help("a dimension is a name (`M`), a positive integer, or a product/quotient of them (`M*N`, `N/2`)")
    };
    match &e.kind {
        ExprKind::Int(v) if *v >= 1 => Ok(DimExpr::Int(*v, e.span)),
        ExprKind::Int(v) => Err(bad_dim(
            format!("a dimension must be at least 1, got {v}"),
            e.span,
        )),
        ExprKind::Name(n) => Ok(DimExpr::Sym(Ident::new(n.clone(), e.span))),
        ExprKind::Binary { op, lhs, rhs } => match op {
            BinOp::Mul => Ok(DimExpr::Mul(
                Box::new(dim(lhs)?),
                Box::new(dim(rhs)?),
                e.span,
            )),
            BinOp::Div | BinOp::FloorDiv => Ok(DimExpr::Div(
                Box::new(dim(lhs)?),
                Box::new(dim(rhs)?),
                e.span,
            )),
            _ => Err(bad_dim(
                "only `*` and `/` combine dimensions".to_string(),
                e.span,
            )),
        },
        _ => Err(bad_dim("expected a dimension".to_string(), e.span)),
    }
}
