//! The canonical pretty-printer. Its output parses back to an equal tree modulo spans (checked
//! by property tests with [`strip_spans`]); parentheses appear exactly where precedence needs
//! them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ast::*;

/// A span-free view of any syntax tree, for comparing trees across a print/parse round trip:
/// every `{lo, hi}` object (a [`crate::Span`]) becomes `null`.
pub fn strip_spans<T: Serialize>(tree: &T) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.len() == 2 && m.contains_key("lo") && m.contains_key("hi") {
                    *v = serde_json::Value::Null;
                    return;
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(tree).unwrap_or(serde_json::Value::Null);
    strip(&mut v);
    v
}

/// Equality modulo spans.
pub fn same_tree<T: Serialize>(a: &T, b: &T) -> bool {
    strip_spans(a) == strip_spans(b)
}

// ---- STeP programs ---------------------------------------------------------------------------

pub fn program(p: &Program) -> String {
    let mut out = String::new();
    for s in &p.stmts {
        let targets: Vec<&str> = s.targets.iter().map(|t| t.name.as_str()).collect();
        let _ = writeln!(out, "{} = {}", targets.join(", "), rhs(&s.rhs));
    }
    let names: Vec<&str> = p.ret.values.iter().map(|t| t.name.as_str()).collect();
    let _ = writeln!(out, "return {}", names.join(", "));
    out
}

pub fn rhs(r: &Rhs) -> String {
    match r {
        Rhs::Op(op) => opcall(op),
        Rhs::List(items, _) => {
            let names: Vec<&str> = items.iter().map(|t| t.name.as_str()).collect();
            format!("[{}]", names.join(", "))
        }
        Rhs::Comp(c) => {
            let vars: Vec<&str> = c.vars.iter().map(|t| t.name.as_str()).collect();
            let iter = match &c.iter {
                CompIter::Name(n) => n.name.clone(),
                CompIter::Zip(ns, _) => {
                    let names: Vec<&str> = ns.iter().map(|t| t.name.as_str()).collect();
                    format!("zip({})", names.join(", "))
                }
            };
            format!("[{} for {} in {}]", opcall(&c.body), vars.join(", "), iter)
        }
    }
}

/// `step.Op(k=v, ..)` without `.apply`.
pub fn op_head(op: &OpCall) -> String {
    let kws: Vec<String> = op
        .kwargs
        .iter()
        .map(|k| format!("{}={}", k.key.name, kwvalue(&k.value)))
        .collect();
    format!("step.{}({})", op.op.name, kws.join(", "))
}

pub fn opcall(op: &OpCall) -> String {
    let arg_s = match &op.arg {
        // `.apply((a,))` needs its own parentheses around the tuple.
        Arg::Tuple(..) => arg(&op.arg),
        Arg::Name(n) => n.name.clone(),
    };
    format!("{}.apply({})", op_head(op), arg_s)
}

pub fn arg(a: &Arg) -> String {
    match a {
        Arg::Name(n) => n.name.clone(),
        Arg::Tuple(items, _) => tuple_str(items.iter().map(arg).collect()),
    }
}

pub fn kwvalue(v: &KwValue) -> String {
    match v {
        KwValue::Int(i, _) => i.to_string(),
        KwValue::Name(n) => n.name.clone(),
        KwValue::List(items, _) => {
            let s: Vec<String> = items.iter().map(kwvalue).collect();
            format!("[{}]", s.join(", "))
        }
        KwValue::Tuple(items, _) => tuple_str(items.iter().map(kwvalue).collect()),
    }
}

fn tuple_str(items: Vec<String>) -> String {
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

// ---- Python subset ---------------------------------------------------------------------------

pub fn block(b: &Block) -> String {
    let mut out = String::new();
    for s in &b.stmts {
        out.push_str(&stmt(s));
        out.push('\n');
    }
    out
}

pub fn stmt(s: &PyStmt) -> String {
    match &s.kind {
        PyStmtKind::Assign { target: t, value } => format!("{} = {}", target(t), top(value)),
        PyStmtKind::Return(e) => format!("return {}", top(e)),
        PyStmtKind::Expr(e) => top(e),
    }
}

/// A statement-level expression: a non-empty tuple goes without parentheses.
fn top(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Tuple(items) if !items.is_empty() => bare_tuple(items),
        _ => expr(e),
    }
}

fn bare_tuple(items: &[Expr]) -> String {
    let s: Vec<String> = items.iter().map(|i| prec(i, TEST)).collect();
    if s.len() == 1 {
        format!("{},", s[0])
    } else {
        s.join(", ")
    }
}

pub fn target(t: &Target) -> String {
    match t {
        Target::Name(n) => n.name.clone(),
        Target::Subscript { value, index, .. } => {
            format!("{}[{}]", prec(value, PRIMARY), slice_list(index))
        }
        Target::Tuple(items, _) => {
            let s: Vec<String> = items
                .iter()
                .map(|t| match t {
                    Target::Tuple(..) => format!("({})", target(t)),
                    _ => target(t),
                })
                .collect();
            if s.len() == 1 {
                format!("{},", s[0])
            } else {
                s.join(", ")
            }
        }
    }
}

// Precedence levels, loosest first (the grammar's nonterminals).
const TEST: u8 = 1;
const OR_TEST: u8 = 2;
const COMPARISON: u8 = 3;
const ARITH: u8 = 4;
const TERM: u8 = 5;
const FACTOR: u8 = 6;
const POWER: u8 = 7;
const PRIMARY: u8 = 8;

fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::IfElse { .. } => TEST,
        ExprKind::Unary { op: UnOp::Not, .. } => OR_TEST,
        ExprKind::Compare { .. } => COMPARISON,
        ExprKind::Binary { op, .. } => match op {
            BinOp::Add | BinOp::Sub => ARITH,
            BinOp::Pow => POWER,
            _ => TERM,
        },
        ExprKind::Unary { .. } => FACTOR,
        // A bare tuple is looser than anything; `expr` always parenthesises it.
        ExprKind::Tuple(_) => PRIMARY,
        _ => PRIMARY,
    }
}

/// `e` printed so that it parses back at grammar level `min`.
fn prec(e: &Expr, min: u8) -> String {
    let s = expr(e);
    if level(e) < min { format!("({s})") } else { s }
}

pub fn expr(e: &Expr) -> String {
    expr_in(e, false)
}

/// `in_fstring`: strings print single-quoted so they cannot end the enclosing f-string.
fn expr_in(e: &Expr, in_fstring: bool) -> String {
    let p = |x: &Expr, min: u8| {
        let s = expr_in(x, in_fstring);
        if level(x) < min { format!("({s})") } else { s }
    };
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(v, text) => {
            if text.is_empty() {
                let s = format!("{v:?}");
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            } else {
                text.clone()
            }
        }
        ExprKind::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        ExprKind::None => "None".to_string(),
        ExprKind::Str(s) => quote(s, if in_fstring { '\'' } else { '"' }),
        ExprKind::FString(parts) => {
            let mut out = String::from("f\"");
            for part in parts {
                match part {
                    FStringPart::Lit(l) => {
                        let q = quote(l, '"');
                        let inner = &q[1..q.len() - 1];
                        out.push_str(&inner.replace('{', "{{").replace('}', "}}"));
                    }
                    FStringPart::Expr(x) => {
                        out.push('{');
                        let s = expr_in(x, true);
                        // `{ {` would read as an escaped brace.
                        if s.starts_with('{') {
                            out.push(' ');
                        }
                        out.push_str(&s);
                        out.push('}');
                    }
                }
            }
            out.push('"');
            out
        }
        ExprKind::Name(n) => n.clone(),
        ExprKind::Attr { value, attr } => {
            let v = match value.kind {
                // `1.real` would lex as the float `1.`.
                ExprKind::Int(_) | ExprKind::Float(..) => {
                    format!("({})", expr_in(value, in_fstring))
                }
                _ => p(value, PRIMARY),
            };
            format!("{v}.{}", attr.name)
        }
        ExprKind::Call { func, args, kwargs } => {
            let mut parts: Vec<String> = args.iter().map(|a| p(a, TEST)).collect();
            parts.extend(
                kwargs
                    .iter()
                    .map(|(k, v)| format!("{}={}", k.name, p(v, TEST))),
            );
            format!("{}({})", p(func, PRIMARY), parts.join(", "))
        }
        ExprKind::Subscript { value, index } => {
            format!(
                "{}[{}]",
                p(value, PRIMARY),
                slice_list_in(index, in_fstring)
            )
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (sym, l, r) = match op {
                BinOp::Add => ("+", ARITH, TERM),
                BinOp::Sub => ("-", ARITH, TERM),
                BinOp::Mul => ("*", TERM, FACTOR),
                BinOp::Div => ("/", TERM, FACTOR),
                BinOp::FloorDiv => ("//", TERM, FACTOR),
                BinOp::Mod => ("%", TERM, FACTOR),
                BinOp::MatMul => ("@", TERM, FACTOR),
                BinOp::Pow => ("**", PRIMARY, FACTOR),
            };
            format!("{} {sym} {}", p(lhs, l), p(rhs, r))
        }
        ExprKind::Unary { op, operand } => match op {
            UnOp::Not => format!("not {}", p(operand, OR_TEST)),
            UnOp::Neg => format!("-{}", p(operand, FACTOR)),
            UnOp::Pos => format!("+{}", p(operand, FACTOR)),
        },
        ExprKind::Compare { first, rest } => {
            let mut s = p(first, ARITH);
            for (op, x) in rest {
                let sym = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                };
                let _ = write!(s, " {sym} {}", p(x, ARITH));
            }
            s
        }
        ExprKind::IfElse { cond, body, orelse } => format!(
            "{} if {} else {}",
            p(body, OR_TEST),
            p(cond, OR_TEST),
            p(orelse, TEST)
        ),
        ExprKind::List(items) => {
            let s: Vec<String> = items.iter().map(|i| p(i, TEST)).collect();
            format!("[{}]", s.join(", "))
        }
        ExprKind::Tuple(items) => {
            let s: Vec<String> = items.iter().map(|i| p(i, TEST)).collect();
            tuple_str(s)
        }
        ExprKind::ListComp {
            elt,
            target: t,
            iter,
        } => {
            let ts = match &**t {
                Target::Name(_) | Target::Tuple(..) => target(t),
                Target::Subscript { .. } => target(t),
            };
            format!("[{} for {} in {}]", p(elt, TEST), ts, p(iter, OR_TEST))
        }
    }
}

fn slice_list(items: &[SliceItem]) -> String {
    slice_list_in(items, false)
}

fn slice_list_in(items: &[SliceItem], in_fstring: bool) -> String {
    let p = |x: &Expr| {
        let s = expr_in(x, in_fstring);
        if level(x) < TEST { format!("({s})") } else { s }
    };
    let s: Vec<String> = items
        .iter()
        .map(|it| match it {
            SliceItem::Index(e) => p(e),
            SliceItem::Ellipsis(_) => "...".to_string(),
            SliceItem::Slice { lo, hi, step, .. } => {
                let mut s = String::new();
                if let Some(x) = lo {
                    s.push_str(&p(x));
                }
                s.push(':');
                if let Some(x) = hi {
                    s.push_str(&p(x));
                }
                if let Some(x) = step {
                    s.push(':');
                    s.push_str(&p(x));
                }
                s
            }
        })
        .collect();
    // `x[a,]` and `x[a]` are one index either way in our tree; print the plain form.
    s.join(", ")
}

fn quote(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

// ---- dtypes ----------------------------------------------------------------------------------

pub fn dtype(d: &DtypeAst) -> String {
    match d {
        DtypeAst::Fp32(_) => "fp32".into(),
        DtypeAst::Multihot { elem, len, .. } => format!("Multihot({}, {})", dtype(elem), dim(len)),
        DtypeAst::Buffer { elem, dims, .. } => {
            let ds: Vec<String> = dims.iter().map(dim).collect();
            format!("Buffer({}, [{}])", dtype(elem), ds.join(", "))
        }
        DtypeAst::Tuple(items, _) => {
            let s: Vec<String> = items.iter().map(dtype).collect();
            format!("[{}]", s.join(", "))
        }
    }
}

pub fn dim(d: &DimExpr) -> String {
    // Products and quotients are left-associative at one level: parenthesise a right operand
    // that is itself a product or quotient.
    fn go(d: &DimExpr, right: bool) -> String {
        match d {
            DimExpr::Int(i, _) => i.to_string(),
            DimExpr::Sym(s) => s.name.clone(),
            DimExpr::Mul(a, b, _) | DimExpr::Div(a, b, _) => {
                let op = if matches!(d, DimExpr::Mul(..)) {
                    "*"
                } else {
                    "/"
                };
                let s = format!("{}{op}{}", go(a, false), go(b, true));
                if right { format!("({s})") } else { s }
            }
        }
    }
    go(d, false)
}
