//! Helpers the grammar's actions call: node construction, literal decoding, f-strings, and the
//! expression-to-target conversion. Kept out of the `.lalrpop` file so they are ordinary,
//! type-checked, testable Rust.

use crate::ast::*;
use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::span::Span;

pub enum CallArg {
    Pos(Expr),
    Kw(Ident, Expr),
}

pub fn unary(op: UnOp, operand: Expr, lo: usize, hi: usize) -> Expr {
    Expr {
        kind: ExprKind::Unary {
            op,
            operand: Box::new(operand),
        },
        span: Span::new(lo, hi),
    }
}

pub fn binary(op: BinOp, lhs: Expr, rhs: Expr, lo: usize, hi: usize) -> Expr {
    Expr {
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        span: Span::new(lo, hi),
    }
}

pub fn call(func: Expr, args: Vec<CallArg>, lo: usize, hi: usize) -> Result<Expr, Diagnostic> {
    let mut pos = Vec::new();
    let mut kws: Vec<(Ident, Expr)> = Vec::new();
    for a in args {
        match a {
            CallArg::Pos(e) => {
                if let Some((k, _)) = kws.last() {
                    return Err(Diagnostic::new(
                        Code::E0110,
                        "positional argument after a keyword argument",
                    )
                    .at(e.span)
                    .label(k.span, "keyword argument given here")
                    .help("put positional arguments first"));
                }
                pos.push(e);
            }
            CallArg::Kw(k, e) => {
                if let Some((prev, _)) = kws.iter().find(|(p, _)| p.name == k.name) {
                    return Err(Diagnostic::new(
                        Code::E0110,
                        format!("keyword argument `{}` given twice", k.name),
                    )
                    .at(k.span)
                    .label(prev.span, "first given here"));
                }
                kws.push((k, e));
            }
        }
    }
    Ok(Expr {
        kind: ExprKind::Call {
            func: Box::new(func),
            args: pos,
            kwargs: kws,
        },
        span: Span::new(lo, hi),
    })
}

fn digits(s: &str) -> String {
    s.chars().filter(|c| *c != '_').collect()
}

pub fn int(s: &str, lo: usize, hi: usize) -> Result<Expr, Diagnostic> {
    match digits(s).parse::<i64>() {
        Ok(v) => Ok(Expr {
            kind: ExprKind::Int(v),
            span: Span::new(lo, hi),
        }),
        Err(_) => Err(
            Diagnostic::new(Code::E0110, format!("integer literal `{s}` is too large"))
                .at(Span::new(lo, hi))
                .note("integers are 64-bit signed"),
        ),
    }
}

pub fn float(s: &str, lo: usize, hi: usize) -> Result<Expr, Diagnostic> {
    match digits(s).parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Expr {
            kind: ExprKind::Float(v, s.to_string()),
            span: Span::new(lo, hi),
        }),
        _ => Err(
            Diagnostic::new(Code::E0110, format!("float literal `{s}` is out of range"))
                .at(Span::new(lo, hi)),
        ),
    }
}

/// Decodes backslash escapes of a quoted literal's body. `base` is the body's file offset.
fn unescape(body: &str, base: usize) -> Result<String, Diagnostic> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, '0')) => out.push('\0'),
            Some((_, c @ ('\\' | '\'' | '"'))) => out.push(c),
            Some((j, other)) => {
                return Err(Diagnostic::new(
                    Code::E0110,
                    format!("unsupported escape `\\{other}` in a string"),
                )
                .at(Span::new(base + i, base + j + other.len_utf8()))
                .help("supported escapes: \\n \\t \\r \\0 \\\\ \\' \\\""));
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// The body of a quoted token without prefix and quotes, with its file offset.
fn body(s: &str, lo: usize) -> (&str, usize) {
    let prefix = s.len() - s.trim_start_matches(['f', 'F']).len();
    let inner = s.get(prefix + 1..s.len().saturating_sub(1)).unwrap_or("");
    (inner, lo + prefix + 1)
}

pub fn string(s: &str, lo: usize, hi: usize) -> Result<Expr, Diagnostic> {
    let (b, base) = body(s, lo);
    Ok(Expr {
        kind: ExprKind::Str(unescape(b, base)?),
        span: Span::new(lo, hi),
    })
}

/// `f"{E}_value"`: literal pieces and `{expr}` holes; each hole is parsed with the expression
/// entry point of the grammar, so its spans are file offsets like everything else.
pub fn fstring(src: &str, s: &str, lo: usize, hi: usize) -> Result<Expr, Diagnostic> {
    let (b, base) = body(s, lo);
    let bytes = b.as_bytes();
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut lit = String::new();
    let mut i = 0;
    let flush = |lit: &mut String, parts: &mut Vec<FStringPart>| {
        if !lit.is_empty() {
            parts.push(FStringPart::Lit(std::mem::take(lit)));
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                lit.push_str(&unescape(
                    b.get(lit_start..i).unwrap_or(""),
                    base + lit_start,
                )?);
                lit.push('{');
                i += 2;
                lit_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                lit.push_str(&unescape(
                    b.get(lit_start..i).unwrap_or(""),
                    base + lit_start,
                )?);
                lit.push('}');
                i += 2;
                lit_start = i;
            }
            b'}' => {
                return Err(Diagnostic::new(Code::E0110, "single `}` in an f-string")
                    .at(Span::new(base + i, base + i + 1))
                    .help("write `}}` for a literal brace"));
            }
            b'{' => {
                lit.push_str(&unescape(
                    b.get(lit_start..i).unwrap_or(""),
                    base + lit_start,
                )?);
                flush(&mut lit, &mut parts);
                let open = i;
                let mut depth = 0usize;
                let mut j = i + 1;
                let mut in_str: Option<u8> = None;
                let mut close = None;
                while j < bytes.len() {
                    let c = bytes[j];
                    match in_str {
                        Some(q) if c == q => in_str = None,
                        Some(_) => {}
                        None => match c {
                            b'\'' | b'"' => in_str = Some(c),
                            b'(' | b'[' | b'{' => depth += 1,
                            b')' | b']' => depth = depth.saturating_sub(1),
                            b'}' if depth == 0 => {
                                close = Some(j);
                                break;
                            }
                            b'}' => depth -= 1,
                            b':' | b'!' if depth == 0 => {
                                return Err(Diagnostic::new(
                                    Code::E0110,
                                    "format specs and conversions are not supported in f-strings",
                                )
                                .at(Span::new(base + j, base + j + 1))
                                .help("write just the expression: `{E}`"));
                            }
                            _ => {}
                        },
                    }
                    j += 1;
                }
                let Some(close) = close else {
                    return Err(Diagnostic::new(Code::E0110, "unclosed `{` in an f-string")
                        .at(Span::new(base + open, base + open + 1))
                        .help("close the expression with `}`"));
                };
                let (hlo, hhi) = (base + open + 1, base + close);
                let (toks, diags) = crate::lexer::lex_fragment(src, hlo, hhi);
                if let Some(d) = diags.into_iter().next() {
                    return Err(d);
                }
                if toks.is_empty() {
                    return Err(Diagnostic::new(Code::E0110, "empty `{}` in an f-string")
                        .at(Span::new(base + open, base + close + 1))
                        .help("put an expression between the braces, or write `{{}}`"));
                }
                let e = crate::parse::parse_expr_tokens(src, &toks, hhi)?;
                parts.push(FStringPart::Expr(e));
                i = close + 1;
                lit_start = i;
            }
            _ => i += 1,
        }
    }
    lit.push_str(&unescape(
        b.get(lit_start..).unwrap_or(""),
        base + lit_start,
    )?);
    flush(&mut lit, &mut parts);
    Ok(Expr {
        kind: ExprKind::FString(parts),
        span: Span::new(lo, hi),
    })
}

fn describe_expr(e: &Expr) -> &'static str {
    match &e.kind {
        ExprKind::Call { .. } => "a call",
        ExprKind::Attr { .. } => "an attribute",
        ExprKind::Binary { .. } | ExprKind::Unary { .. } => "an arithmetic expression",
        ExprKind::Compare { .. } => "a comparison",
        ExprKind::IfElse { .. } => "a conditional expression",
        ExprKind::Int(_)
        | ExprKind::Float(..)
        | ExprKind::Bool(_)
        | ExprKind::None
        | ExprKind::Str(_)
        | ExprKind::FString(_) => "a literal",
        ExprKind::ListComp { .. } => "a comprehension",
        _ => "this expression",
    }
}

/// `a`, `x[i]`, `a, b`, `(a, b)`, `[a, b]` become assignment targets; anything else is an error.
pub fn target(e: Expr) -> Result<Target, Diagnostic> {
    match e.kind {
        ExprKind::Name(n) => Ok(Target::Name(Ident::new(n, e.span))),
        ExprKind::Subscript { value, index } => Ok(Target::Subscript {
            value,
            index,
            span: e.span,
        }),
        ExprKind::Tuple(items) | ExprKind::List(items) if !items.is_empty() => {
            let ts = items.into_iter().map(target).collect::<Result<_, _>>()?;
            Ok(Target::Tuple(ts, e.span))
        }
        _ => Err(Diagnostic::new(
            Code::E0110,
            format!("cannot assign to {}", describe_expr(&e)),
        )
        .at(e.span)
        .help(
            "the left of `=` is a name, a subscript like `ctx[E]`, or names separated by commas",
        )),
    }
}

/// The loop variables of a comprehension: `x` or `g, x`.
pub fn comp_target(items: Vec<Expr>, span: Span) -> Result<Target, Diagnostic> {
    match items.len() {
        0 => Err(
            Diagnostic::new(Code::E0110, "expected a loop variable after `for`")
                .at(span)
                .help("write `[... for x in xs]`"),
        ),
        1 => items.into_iter().next().map_or_else(
            || Err(Diagnostic::new(Code::E0110, "expected a loop variable").at(span)),
            target,
        ),
        _ => {
            let ts = items.into_iter().map(target).collect::<Result<_, _>>()?;
            Ok(Target::Tuple(ts, span))
        }
    }
}
