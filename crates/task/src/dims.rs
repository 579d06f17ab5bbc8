//! Dimension values for a run (DESIGN §8): defaults, literal bindings in `global`, `--dims`.
//!
//! `global` is not executed here (the evaluator does that); this module only reads the literal
//! bindings it can see — `E_value = 3`, `ctx[E] = E_value`, `ctx[E] = 3`, `ctx['E'] = 3` — and
//! simple integer arithmetic over known values (`H_value = D_value // 4`). Overrides win over
//! `global`, and bindings computed from an overridden value follow the override
//! (`--dims D=32` makes `H_value = D_value // 4` give 8).

use std::collections::{BTreeMap, BTreeSet};

use stepforge_syntax::ast::{
    BinOp, DimExpr, DtypeAst, Expr, ExprKind, PyStmtKind, SliceItem, Target, UnOp,
};
use stepforge_syntax::codes::Code;
use stepforge_syntax::lexer::is_ident;
use stepforge_syntax::{Diagnostic, Span};

use crate::model::{DEFAULT_DIMS, DimValues, Task};

/// Largest dimension value accepted from `--dims` or `global` (bigger ones cannot fit any limit).
pub const MAX_DIM_VALUE: i64 = 1 << 40;

/// Parses a `--dims` flag: `K=V,K2=V2` (spaces allowed around items). Values are positive
/// integers (`_` separators allowed: `M=1_000`).
pub fn parse_dims_flag(s: &str) -> Result<Vec<(String, i64)>, String> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("`{item}`: expected NAME=VALUE, e.g. `M=64`"));
        };
        let (k, v) = (k.trim(), v.trim());
        if !is_ident(k) {
            return Err(format!("`{k}` is not a dimension name"));
        }
        let digits = v.replace('_', "");
        let value: i64 = match digits.parse() {
            Ok(n) => n,
            Err(_) => return Err(format!("`{k}={v}`: the value must be a positive integer")),
        };
        if !(1..=MAX_DIM_VALUE).contains(&value) {
            return Err(format!(
                "`{k}={v}`: the value must be between 1 and {MAX_DIM_VALUE}"
            ));
        }
        match out.iter_mut().find(|(k2, _)| k2 == k) {
            Some(slot) => slot.1 = value,
            None => out.push((k.to_owned(), value)),
        }
    }
    Ok(out)
}

/// The dimension values of a run: [`DEFAULT_DIMS`], then the literal bindings of `global`, then
/// `overrides`. Fails (E0511) when `global` binds a dimension the task uses to a value that is
/// not positive, or an override is out of range.
pub fn dim_values(task: &Task, overrides: &[(String, i64)]) -> Result<DimValues, Diagnostic> {
    let mut dims: DimValues = DEFAULT_DIMS
        .iter()
        .map(|&(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in overrides {
        if !(1..=MAX_DIM_VALUE).contains(v) {
            return Err(Diagnostic::new(
                Code::E0511,
                format!("--dims {k}={v}: dimension values must be between 1 and {MAX_DIM_VALUE}"),
            ));
        }
        dims.insert(k.clone(), *v);
    }
    let overridden: BTreeSet<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
    let used = used_symbols(task);
    if let Some(global) = &task.global {
        let mut vars: BTreeMap<String, i64> = BTreeMap::new();
        for stmt in &global.stmts {
            let PyStmtKind::Assign { target, value } = &stmt.kind else {
                continue;
            };
            let mut v = eval_int(value, &vars, &dims);
            let sym = match target {
                Target::Name(id) => {
                    // `E_value = 3` with `--dims E=10`: later uses of `E_value` see 10.
                    if let Some(o) = id
                        .name
                        .strip_suffix("_value")
                        .filter(|s| overridden.contains(s))
                        .and_then(|s| dims.get(s))
                    {
                        v = Some(*o);
                    }
                    match v {
                        Some(v) => vars.insert(id.name.clone(), v),
                        None => vars.remove(&id.name),
                    };
                    id.name.strip_suffix("_value").map(str::to_owned)
                }
                Target::Subscript {
                    value: base, index, ..
                } => ctx_key(base, index),
                Target::Tuple(..) => None,
            };
            let (Some(sym), Some(v)) = (sym, v) else {
                continue;
            };
            if sym.is_empty() || overridden.contains(sym.as_str()) {
                continue;
            }
            if !(1..=MAX_DIM_VALUE).contains(&v) {
                if used.contains(&sym) {
                    return Err(Diagnostic::new(
                        Code::E0511,
                        format!("dimension `{sym}` is set to {v} in `global`; sizes are between 1 and {MAX_DIM_VALUE}"),
                    )
                    .at(stmt.span));
                }
                continue;
            }
            dims.insert(sym, v);
        }
    }
    Ok(dims)
}

/// `ctx[E]` / `ctx['E']` → `E`.
fn ctx_key(base: &Expr, index: &[SliceItem]) -> Option<String> {
    if !matches!(&base.kind, ExprKind::Name(n) if n == "ctx") {
        return None;
    }
    match index {
        [SliceItem::Index(e)] => match &e.kind {
            ExprKind::Name(n) | ExprKind::Str(n) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Integer value of a literal expression over known names; `None` when it is anything else.
fn eval_int(e: &Expr, vars: &BTreeMap<String, i64>, dims: &DimValues) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(n) => Some(*n),
        ExprKind::Name(n) => vars
            .get(n)
            .copied()
            .or_else(|| n.strip_suffix("_value").and_then(|s| dims.get(s).copied())),
        ExprKind::Subscript { value, index } => {
            ctx_key(value, index).and_then(|k| dims.get(&k).copied())
        }
        ExprKind::Unary {
            op: UnOp::Neg,
            operand,
        } => eval_int(operand, vars, dims)?.checked_neg(),
        ExprKind::Unary {
            op: UnOp::Pos,
            operand,
        } => eval_int(operand, vars, dims),
        ExprKind::Binary { op, lhs, rhs } => {
            let (a, b) = (eval_int(lhs, vars, dims)?, eval_int(rhs, vars, dims)?);
            match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::FloorDiv => (b != 0).then(|| a.div_euclid(b)),
                BinOp::Mod => (b != 0).then(|| a.rem_euclid(b)),
                // `/` gives a float in Python; only an exact quotient is a usable size.
                BinOp::Div => (b != 0 && a % b == 0).then(|| a / b),
                BinOp::Pow => u32::try_from(b).ok().and_then(|b| a.checked_pow(b)),
                BinOp::MatMul => None,
            }
        }
        ExprKind::Call { func, args, kwargs } if kwargs.is_empty() && args.len() == 1 => {
            // `int(x)` around an integer expression.
            match &func.kind {
                ExprKind::Name(f) if f == "int" => {
                    args.first().and_then(|a| eval_int(a, vars, dims))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Every dimension symbol the task's declarations use (dims lists and dtypes of inputs,
/// parameters, functions and outputs).
pub fn used_symbols(task: &Task) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for_each_symbol(task, |id, _| {
        out.insert(id.to_owned());
    });
    out
}

fn for_each_symbol(task: &Task, mut f: impl FnMut(&str, Span)) {
    let mut on_dim = |d: &DimExpr| walk_dim(d, &mut f);
    let mut decls: Vec<(&[DimExpr], &DtypeAst)> = Vec::new();
    decls.extend(task.inputs.iter().map(|i| (i.dims.as_slice(), &i.dtype)));
    decls.extend(
        task.parameters
            .iter()
            .map(|p| (p.dims.as_slice(), &p.dtype)),
    );
    for fd in &task.fns {
        decls.push((&[], &fd.input_dtype));
        decls.push((&[], &fd.output_dtype));
    }
    decls.extend(task.outputs.iter().map(|o| (o.dims.as_slice(), &o.dtype)));
    for (ds, dt) in decls {
        for d in ds {
            on_dim(d);
        }
        walk_dtype(dt, &mut on_dim);
    }
}

fn walk_dim(d: &DimExpr, f: &mut impl FnMut(&str, Span)) {
    match d {
        DimExpr::Int(..) => {}
        DimExpr::Sym(id) => f(&id.name, id.span),
        DimExpr::Mul(a, b, _) | DimExpr::Div(a, b, _) => {
            walk_dim(a, f);
            walk_dim(b, f);
        }
    }
}

fn walk_dtype(d: &DtypeAst, f: &mut dyn FnMut(&DimExpr)) {
    match d {
        DtypeAst::Fp32(_) => {}
        DtypeAst::Multihot { elem, len, .. } => {
            walk_dtype(elem, f);
            f(len);
        }
        DtypeAst::Buffer { elem, dims, .. } => {
            walk_dtype(elem, f);
            for x in dims {
                f(x);
            }
        }
        DtypeAst::Tuple(v, _) => {
            for x in v {
                walk_dtype(x, f);
            }
        }
    }
}

/// Checks that every dimension the task uses has a value (E0509 at each unbound symbol, once
/// per symbol occurrence) and that every dimension expression evaluates (E0511).
pub fn check_dims(task: &Task, dims: &DimValues) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for_each_symbol(task, |name, span| {
        if !dims.contains_key(name) {
            out.push(
                Diagnostic::new(Code::E0509, format!("dimension `{name}` has no value"))
                    .at(span)
                    .help(format!(
                        "bind it in `global` (`{name}_value = 4` and `ctx[{name}] = {name}_value`) or pass `--dims {name}=4`"
                    )),
            );
        }
    });
    if !out.is_empty() {
        return out;
    }
    let mut exprs: Vec<&DimExpr> = Vec::new();
    for i in &task.inputs {
        exprs.extend(&i.dims);
    }
    for p in &task.parameters {
        exprs.extend(&p.dims);
    }
    for o in &task.outputs {
        exprs.extend(&o.dims);
    }
    for e in exprs {
        if let Err(d) = eval_dim(e, dims) {
            out.push(d);
        }
    }
    out
}

/// The value of a dimension expression: E0509 for an unbound symbol, E0511 for a quotient that
/// does not divide, an overflow, or a non-positive result.
pub fn eval_dim(e: &DimExpr, dims: &DimValues) -> Result<i64, Diagnostic> {
    let v = match e {
        DimExpr::Int(n, _) => *n,
        DimExpr::Sym(id) => match dims.get(&id.name) {
            Some(v) => *v,
            None => {
                return Err(Diagnostic::new(
                    Code::E0509,
                    format!("dimension `{}` has no value", id.name),
                )
                .at(id.span));
            }
        },
        DimExpr::Mul(a, b, s) => {
            let (x, y) = (eval_dim(a, dims)?, eval_dim(b, dims)?);
            x.checked_mul(y).ok_or_else(|| {
                Diagnostic::new(Code::E0511, format!("dimension product {x}*{y} overflows")).at(*s)
            })?
        }
        DimExpr::Div(a, b, s) => {
            let (x, y) = (eval_dim(a, dims)?, eval_dim(b, dims)?);
            if y == 0 || x % y != 0 {
                return Err(Diagnostic::new(
                    Code::E0511,
                    format!("dimension quotient {x}/{y} is not a whole number"),
                )
                .at(*s));
            }
            x / y
        }
    };
    if v < 1 {
        return Err(Diagnostic::new(
            Code::E0511,
            format!("dimension evaluates to {v}; sizes are positive"),
        )
        .at(e.span()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_flag() {
        assert_eq!(
            parse_dims_flag("M=64, N=1_000,M=3").unwrap(),
            vec![("M".to_owned(), 3), ("N".to_owned(), 1000)]
        );
        assert_eq!(parse_dims_flag("").unwrap(), vec![]);
        assert!(parse_dims_flag("M").is_err());
        assert!(parse_dims_flag("M=0").is_err());
        assert!(parse_dims_flag("M=-3").is_err());
        assert!(parse_dims_flag("1M=3").is_err());
        assert!(parse_dims_flag("M=99999999999999999999").is_err());
    }
}
