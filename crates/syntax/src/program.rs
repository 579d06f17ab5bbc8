//! Narrowing parsed Python statements to a STeP program (DESIGN §6), with the diagnostics for
//! the mistakes LLMs make: positional parameters (E0113), a missing `.apply` (E0114), unknown
//! operators (E0112) and parameters (E0115), a missing `return` (E0116) and arbitrary Python
//! (E0117). The tree is still built around each mistake where the intent is clear, so later
//! phases can check the rest of the program.

use crate::ast::*;
use crate::codes::Code;
use crate::diag::{Applicability, Diagnostic, Edit, Fix, plural};
use crate::fast::FastLine;
use crate::ops;
use crate::parse::PROGRAM_HELP;
use crate::print;
use crate::span::{Span, line_start_at};

/// One program line as the driver delivers it: matched by the fast path, or parsed by the
/// grammar as a Python statement still to be narrowed.
pub(crate) enum Item {
    Fast(FastLine),
    Py(PyStmt),
}

pub(crate) fn lower(
    text: &str,
    items: Vec<Item>,
    return_seen: bool,
    diags: &mut Vec<Diagnostic>,
) -> Program {
    let mut out: Vec<Stmt> = Vec::with_capacity(items.len());
    let mut ret: Option<Return> = None;
    // Targets of the last assignment if its right side was broken (so not in `out`).
    let mut last_targets: Option<(Vec<Ident>, Span)> = None;
    for item in items {
        let span = match &item {
            Item::Py(s) => s.span,
            Item::Fast(FastLine::Stmt(s)) => s.span,
            Item::Fast(FastLine::Return(r)) => r.span,
        };
        if let Some(r) = &ret {
            diags.push(
                Diagnostic::new(Code::E0117, "statement after `return`")
                    .at(span)
                    .label(r.span, "the program ends here")
                    .help("`return` is the last statement of a program; move it to the end"),
            );
            continue;
        }
        let s = match item {
            Item::Fast(FastLine::Stmt(s)) => {
                last_targets = None;
                out.push(s);
                continue;
            }
            Item::Fast(FastLine::Return(r)) => {
                ret = Some(r);
                continue;
            }
            Item::Py(s) => s,
        };
        match s.kind {
            PyStmtKind::Return(e) => ret = Some(lower_return(e, s.span, diags)),
            PyStmtKind::Assign { target, value } => {
                let Some(targets) = lower_targets(&target, diags) else {
                    continue;
                };
                let Some(rhs) = lower_rhs(value, diags) else {
                    // Remembered even though the right side is broken: the E0116 fix names it.
                    last_targets = Some((targets, s.span));
                    continue;
                };
                last_targets = None;
                out.push(Stmt {
                    targets,
                    rhs,
                    span: s.span,
                });
            }
            PyStmtKind::Expr(e) => diags.push(expr_statement(e, s.span)),
        }
    }
    let end = text.trim_end().len();
    let ret = ret.unwrap_or_else(|| {
        if return_seen {
            return Return {
                values: Vec::new(),
                span: Span::new(end, end),
            };
        }
        let mut d = Diagnostic::new(Code::E0116, "the program has no `return`")
            .at(Span::new(end, end))
            .help(
                "end the program with `return` and the output streams, in the task's output order",
            );
        // The last assignment: a broken one remembered above, else the last good statement.
        let last = last_targets
            .as_ref()
            .map(|(t, s)| (t, *s))
            .or_else(|| out.last().map(|s| (&s.targets, s.span)));
        if let Some((targets, span)) = last {
            let line_start = line_start_at(text, span.lo as usize);
            let indent = text.get(line_start..span.lo as usize).unwrap_or("");
            let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            d = d.fix(Fix::replace(
                format!(
                    "return the last assigned stream{}",
                    if names.len() > 1 { "s" } else { "" }
                ),
                Applicability::Unsafe,
                Span::new(end, end),
                format!("\n{indent}return {}", names.join(", ")),
            ));
        }
        diags.push(d);
        Return {
            values: Vec::new(),
            span: Span::new(end, end),
        }
    });
    let lo = out.first().map_or(ret.span.lo, |s| s.span.lo);
    Program {
        span: Span {
            lo,
            hi: ret.span.hi.max(lo),
            ..ret.span
        },
        stmts: out,
        ret,
    }
}

fn not_allowed(what: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::E0117,
        format!("{what} is not allowed in a STeP program"),
    )
    .at(span)
    .help(PROGRAM_HELP)
}

fn expr_statement(e: Expr, span: Span) -> Diagnostic {
    if is_op_chain(&e) {
        Diagnostic::new(Code::E0117, "the result of this operator is not assigned")
            .at(span)
            .help("assign it: `E1 = step.Op(..).apply(..)`; a stream nobody consumes stalls its producer")
    } else {
        not_allowed(
            &format!("an expression statement ({})", kind_name(&e)),
            span,
        )
    }
}

fn is_op_chain(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Name(n) => n == "step",
        ExprKind::Attr { value, .. } => is_op_chain(value),
        ExprKind::Call { func, .. } => is_op_chain(func),
        _ => false,
    }
}

fn kind_name(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Call { func, .. } => format!("a call to `{}`", print::expr(func)),
        ExprKind::Attr { .. } => format!("`{}`", print::expr(e)),
        ExprKind::Binary { .. } | ExprKind::Unary { .. } => "arithmetic".into(),
        ExprKind::Compare { .. } => "a comparison".into(),
        ExprKind::IfElse { .. } => "a conditional expression".into(),
        ExprKind::Subscript { .. } => "indexing".into(),
        ExprKind::Tuple(_) => "a tuple".into(),
        ExprKind::ListComp { .. } => "this comprehension".into(),
        ExprKind::List(_) => "this list".into(),
        _ => "a literal".into(),
    }
}

/// The root name of a dotted chain: `torch` for `torch.ops.aten.x(..)`.
fn chain_root(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Name(n) => Some(n),
        ExprKind::Attr { value, .. } => chain_root(value),
        ExprKind::Call { func, .. } => chain_root(func),
        ExprKind::Subscript { value, .. } => chain_root(value),
        _ => None,
    }
}

fn lower_return(e: Expr, span: Span, diags: &mut Vec<Diagnostic>) -> Return {
    let items = match e.kind {
        ExprKind::Tuple(items) | ExprKind::List(items) => items,
        ExprKind::None => {
            diags.push(
                Diagnostic::new(Code::E0116, "`return` needs the output streams")
                    .at(span)
                    .help("write `return E5` (several outputs: `return E5, E6`)"),
            );
            Vec::new()
        }
        _ => vec![e],
    };
    let mut values = Vec::new();
    for it in items {
        match it.kind {
            ExprKind::Name(n) => values.push(Ident::new(n, it.span)),
            _ => diags.push(
                not_allowed(&format!("returning {}", kind_name(&it)), it.span)
                    .note("`return` lists stream names; compute the value in a statement above"),
            ),
        }
    }
    Return { values, span }
}

fn lower_targets(t: &Target, diags: &mut Vec<Diagnostic>) -> Option<Vec<Ident>> {
    match t {
        Target::Name(id) => Some(vec![id.clone()]),
        Target::Tuple(items, _) => {
            let mut out = Vec::new();
            for it in items {
                match it {
                    Target::Name(id) => out.push(id.clone()),
                    other => {
                        diags.push(
                            not_allowed("a nested or indexed assignment target", other.span())
                                .note(
                                    "destructure into plain names: `a, b = step.Copy().apply(E0)`",
                                ),
                        );
                        return None;
                    }
                }
            }
            Some(out)
        }
        Target::Subscript { span, .. } => {
            diags.push(
                not_allowed("assigning to an index", *span)
                    .note("assign to a new name: `E2 = ...`"),
            );
            None
        }
    }
}

fn lower_rhs(e: Expr, diags: &mut Vec<Diagnostic>) -> Option<Rhs> {
    let span = e.span;
    match e.kind {
        ExprKind::List(items) => {
            let mut names = Vec::new();
            let mut ok = true;
            for it in items {
                match it.kind {
                    ExprKind::Name(n) => names.push(Ident::new(n, it.span)),
                    _ => {
                        diags.push(
                            not_allowed(&format!("{} inside a list", kind_name(&it)), it.span)
                                .note("a list holds stream or fn names; apply operators in a comprehension"),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(Rhs::List(names, span))
        }
        ExprKind::ListComp { elt, target, iter } => {
            lower_comp(*elt, *target, *iter, span, diags).map(Rhs::Comp)
        }
        _ => lower_opcall(e, diags).map(Rhs::Op),
    }
}

fn lower_comp(
    elt: Expr,
    target: Target,
    iter: Expr,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Comprehension> {
    let vars = lower_targets(&target, diags)?;
    let iter_span = iter.span;
    let iter = match iter.kind {
        ExprKind::Name(n) => CompIter::Name(Ident::new(n, iter_span)),
        ExprKind::Call { func, args, kwargs }
            if matches!(&func.kind, ExprKind::Name(z) if z == "zip") && kwargs.is_empty() =>
        {
            let mut names = Vec::new();
            for a in args {
                match a.kind {
                    ExprKind::Name(n) => names.push(Ident::new(n, a.span)),
                    _ => {
                        diags.push(
                            not_allowed(&format!("{} inside `zip(...)`", kind_name(&a)), a.span)
                                .note("`zip` takes list names: `zip(Fs, Xs)`"),
                        );
                        return None;
                    }
                }
            }
            CompIter::Zip(names, iter_span)
        }
        _ => {
            diags.push(
                not_allowed(&format!("iterating over {}", kind_name(&iter)), iter_span)
                    .note("a comprehension iterates over a list name or `zip(list1, list2, ..)`"),
            );
            return None;
        }
    };
    let body = lower_opcall(elt, diags)?;
    Some(Comprehension {
        body,
        vars,
        iter,
        span,
    })
}

/// Recognises `step.Op(..).apply(arg)` and every near miss.
fn lower_opcall(e: Expr, diags: &mut Vec<Diagnostic>) -> Option<OpCall> {
    let span = e.span;
    // Peel `.apply(arg)`.
    let (head, apply_args) = match e.kind {
        ExprKind::Call { func, args, kwargs } if matches!(&func.kind, ExprKind::Attr { attr, .. } if attr.name == "apply") =>
        {
            let ExprKind::Attr { value, .. } = func.kind else {
                return None;
            };
            Some((*value, (args, kwargs)))
        }
        kind => {
            let e = Expr { kind, span };
            match head_of(&e) {
                Some(_) => {
                    // `step.Op(..)` (possibly followed by something other than .apply).
                    let head_txt = head_text(&e);
                    let mut d = Diagnostic::new(
                        Code::E0114,
                        format!("expected `.apply(...)` after `{head_txt}`"),
                    )
                    .at(e.span)
                    .help(format!(
                        "an operator is applied to its input stream(s): `{head_txt}.apply(E0)`"
                    ));
                    if let ExprKind::Attr { attr, .. } = &e.kind {
                        d = d.label(attr.span, "expected `apply` here");
                    }
                    diags.push(d);
                    // Still check the head, so every mistake on the line is reported at once.
                    if let Some(ExprKind::Call { func, args, kwargs }) =
                        head_of(&e).map(|h| h.kind.clone())
                        && let ExprKind::Attr { attr, .. } = func.kind
                    {
                        let info = check_op_name(&attr, diags);
                        let _ = lower_params(info, args, kwargs, e.span, diags);
                    }
                    return None;
                }
                None => {
                    diags.push(foreign_rhs(&e));
                    return None;
                }
            }
        }
    }?;
    let (args, kwargs) = apply_args;
    let head_span = head.span;
    let (op, params_pos, params_kw) = match head.kind {
        ExprKind::Call { func, args, kwargs } if is_step_attr(&func) => {
            let ExprKind::Attr { attr, .. } = func.kind else {
                return None;
            };
            (attr, args, kwargs)
        }
        kind => {
            let head = Expr {
                kind,
                span: head_span,
            };
            if let ExprKind::Attr { value, attr } = &head.kind
                && is_step_name(value)
            {
                let txt = format!("step.{}", attr.name);
                diags.push(
                    Diagnostic::new(
                        Code::E0110,
                        format!("`{txt}` is missing its parameter list"),
                    )
                    .at(head.span)
                    .help(format!(
                        "write `{txt}(...)` before `.apply`, even with no parameters"
                    ))
                    .fix(Fix::replace(
                        "insert `()`",
                        Applicability::Safe,
                        Span::new(head.span.hi as usize, head.span.hi as usize),
                        "()",
                    )),
                );
                return None;
            }
            diags.push(foreign_rhs(&head));
            return None;
        }
    };
    let info = check_op_name(&op, diags);
    let kwargs_out = lower_params(info, params_pos, params_kw, head_span, diags);
    let arg = lower_apply_arg(args, kwargs, span, diags)?;
    Some(OpCall {
        op,
        kwargs: kwargs_out?,
        arg,
        head_span,
        span,
    })
}

fn is_step_name(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if n == "step")
}

fn is_step_attr(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Attr { value, .. } if is_step_name(value))
}

/// `step.Op(..)` at the head of `e` (through trailing attribute accesses and calls).
fn head_of(e: &Expr) -> Option<&Expr> {
    match &e.kind {
        ExprKind::Call { func, .. } if is_step_attr(func) => Some(e),
        ExprKind::Attr { value, .. } | ExprKind::Call { func: value, .. } => head_of(value),
        _ => None,
    }
}

fn head_text(e: &Expr) -> String {
    head_of(e).map_or_else(|| print::expr(e), print::expr)
}

fn foreign_rhs(e: &Expr) -> Diagnostic {
    let root = chain_root(e);
    let mut d = not_allowed(&kind_name(e), e.span);
    match root {
        Some("torch") | Some("np") | Some("numpy") | Some("F") | Some("nn") => {
            d = d.note("tensor computation belongs in element functions (the task's `fns`), which operators like `step.Map(fn=..)` apply");
        }
        Some("step") => {}
        _ => {
            if let ExprKind::Name(n) = &e.kind {
                d = Diagnostic::new(
                    Code::E0117,
                    format!("plain alias `{n}` is not allowed in a STeP program"),
                )
                .at(e.span)
                .help("use the stream's name directly where it is consumed")
                .note(PROGRAM_HELP);
            }
        }
    }
    d
}

fn check_op_name(op: &Ident, diags: &mut Vec<Diagnostic>) -> Option<&'static ops::OpInfo> {
    if let Some(info) = ops::lookup(&op.name) {
        return Some(info);
    }
    let mut d = Diagnostic::new(
        Code::E0112,
        format!("unknown STeP operator `step.{}`", op.name),
    )
    .at(op.span);
    match ops::suggest_op(&op.name) {
        Some(s) => {
            d = d
                .help(format!("did you mean `step.{s}`?"))
                .fix(Fix::replace(
                    format!("replace with `{s}`"),
                    Applicability::Unsafe,
                    op.span,
                    s,
                ));
        }
        None => {
            let all: Vec<&str> = ops::names().collect();
            d = d.note(format!("the operators are: {}", all.join(", ")));
        }
    }
    diags.push(d);
    None
}

fn lower_kwvalue(e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<KwValue> {
    match &e.kind {
        ExprKind::Int(v) => Some(KwValue::Int(*v, e.span)),
        ExprKind::Unary {
            op: UnOp::Neg,
            operand,
        } if matches!(operand.kind, ExprKind::Int(_)) => match operand.kind {
            ExprKind::Int(v) => Some(KwValue::Int(v.checked_neg()?, e.span)),
            _ => None,
        },
        ExprKind::Name(n) => Some(KwValue::Name(Ident::new(n.clone(), e.span))),
        ExprKind::List(items) | ExprKind::Tuple(items) => {
            let mut vs = Vec::new();
            for it in items {
                vs.push(lower_kwvalue(it, diags)?);
            }
            Some(if matches!(e.kind, ExprKind::List(_)) {
                KwValue::List(vs, e.span)
            } else {
                KwValue::Tuple(vs, e.span)
            })
        }
        ExprKind::Str(name) if crate::lexer::is_ident(name) => {
            diags.push(
                Diagnostic::new(
                    Code::E0117,
                    format!("operator parameters are names, not strings: write `{name}`"),
                )
                .at(e.span)
                .fix(Fix::replace(
                    "remove the quotes",
                    Applicability::Safe,
                    e.span,
                    name.clone(),
                )),
            );
            Some(KwValue::Name(Ident::new(name.clone(), e.span)))
        }
        _ => {
            diags.push(
                not_allowed(&format!("{} as an operator parameter", kind_name(e)), e.span)
                    .note("parameter values are integers, names (dims, fns, `X_value`), or lists/tuples of them"),
            );
            None
        }
    }
}

fn lower_params(
    info: Option<&'static ops::OpInfo>,
    pos: Vec<Expr>,
    kws: Vec<(Ident, Expr)>,
    head_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Kwarg>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, e) in pos.iter().enumerate() {
        let param = info.and_then(|inf| inf.params.get(i)).copied();
        let value = lower_kwvalue(e, diags);
        match (info, param) {
            (Some(inf), Some(p)) => {
                let shown = print::expr(e);
                diags.push(
                    Diagnostic::new(
                        Code::E0113,
                        format!("`{}` parameter `{p}` passed positionally", inf.name),
                    )
                    .at(e.span)
                    .help(format!(
                        "operator parameters are keywords: write `{p}={shown}`"
                    ))
                    .fix(Fix::replace(
                        format!("insert `{p}=`"),
                        Applicability::Safe,
                        Span::new(e.span.lo as usize, e.span.lo as usize),
                        format!("{p}="),
                    )),
                );
                if let Some(v) = value {
                    out.push(Kwarg {
                        key: Ident::new(p, Span::new(e.span.lo as usize, e.span.lo as usize)),
                        value: v,
                        span: e.span,
                    });
                }
            }
            (Some(inf), None) => {
                let msg = if inf.params.is_empty() {
                    format!("`{}` takes no parameters", inf.name)
                } else {
                    format!(
                        "`{}` takes {} parameter{} ({}), got an extra positional value",
                        inf.name,
                        inf.params.len(),
                        plural(inf.params.len()),
                        inf.params.join(", ")
                    )
                };
                diags.push(
                    Diagnostic::new(Code::E0113, msg)
                        .at(e.span)
                        .label(head_span, "in this operator")
                        .help("the streams an operator works on go in `.apply(...)`, not in its parameter list"),
                );
                ok = false;
            }
            (None, _) => ok = false,
        }
    }
    for (k, e) in kws {
        let value = lower_kwvalue(&e, diags);
        let Some(inf) = info else {
            ok = false;
            continue;
        };
        if !inf.params.contains(&k.name.as_str()) {
            let mut d = Diagnostic::new(
                Code::E0115,
                format!("`{}` has no parameter `{}`", inf.name, k.name),
            )
            .at(k.span)
            .note(if inf.params.is_empty() {
                format!("`{}` takes no parameters", inf.name)
            } else {
                format!("`{}` takes: {}", inf.name, inf.params.join(", "))
            });
            if let Some(s) = ops::did_you_mean(&k.name, inf.params) {
                d = d.help(format!("did you mean `{s}`?")).fix(Fix::replace(
                    format!("replace with `{s}`"),
                    Applicability::Unsafe,
                    k.span,
                    s,
                ));
            }
            diags.push(d);
            ok = false;
            continue;
        }
        if let Some(prev) = out.iter().find(|kw: &&Kwarg| kw.key.name == k.name) {
            diags.push(
                Diagnostic::new(Code::E0115, format!("parameter `{}` given twice", k.name))
                    .at(k.span)
                    .label(prev.span, "first given here"),
            );
            ok = false;
            continue;
        }
        match value {
            Some(v) => out.push(Kwarg {
                span: k.span.to(e.span),
                key: k,
                value: v,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn lower_arg(e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Arg> {
    lower_arg_in(e, false, diags)
}

/// `nested`: inside a tuple, where a list literal groups streams (Merge's branches,
/// `.apply(([Y0, Y1], Sel))`, as DESIGN §4 writes them) and means what a tuple means there.
fn lower_arg_in(e: &Expr, nested: bool, diags: &mut Vec<Diagnostic>) -> Option<Arg> {
    match &e.kind {
        ExprKind::Name(n) => Some(Arg::Name(Ident::new(n.clone(), e.span))),
        ExprKind::Tuple(items) => {
            let mut out = Vec::new();
            for it in items {
                out.push(lower_arg_in(it, true, diags)?);
            }
            Some(Arg::Tuple(out, e.span))
        }
        ExprKind::List(items) if nested && !items.is_empty() => {
            let mut out = Vec::new();
            for it in items {
                out.push(lower_arg_in(it, true, diags)?);
            }
            Some(Arg::Tuple(out, e.span))
        }
        ExprKind::List(items) => {
            let mut d = not_allowed("a list literal as an operator input", e.span)
                .note("several input streams are passed as a tuple: `.apply((a, b))`");
            if !items.is_empty() {
                d = d.fix(Fix {
                    message: "use a tuple".into(),
                    applicability: Applicability::Safe,
                    edits: vec![
                        Edit {
                            span: Span::new(e.span.lo as usize, e.span.lo as usize + 1),
                            replacement: "(".into(),
                        },
                        Edit {
                            span: Span::new(e.span.hi as usize - 1, e.span.hi as usize),
                            replacement: if items.len() == 1 { ",)" } else { ")" }.into(),
                        },
                    ],
                });
            }
            diags.push(d);
            None
        }
        _ => {
            diags.push(
                not_allowed(&format!("{} as an operator input", kind_name(e)), e.span)
                    .note("`.apply` takes a stream name or a tuple of them; assign the intermediate result to a name first"),
            );
            None
        }
    }
}

fn lower_apply_arg(
    args: Vec<Expr>,
    kwargs: Vec<(Ident, Expr)>,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arg> {
    if let Some((k, _)) = kwargs.first() {
        diags.push(
            Diagnostic::new(Code::E0110, "`.apply` takes no keyword arguments")
                .at(k.span)
                .help("pass the input stream(s) positionally: `.apply(E0)` or `.apply((E0, S0))`"),
        );
        return None;
    }
    match args.len() {
        0 => {
            diags.push(
                Diagnostic::new(Code::E0110, "`.apply()` needs the input stream(s)")
                    .at(span)
                    .help("write `.apply(E0)`, or `.apply((E0, S0))` for several inputs"),
            );
            None
        }
        1 => lower_arg(&args[0], diags),
        _ => {
            let (first, last) = (args[0].span, args[args.len() - 1].span);
            diags.push(
                Diagnostic::new(
                    Code::E0110,
                    "`.apply` takes one argument; several input streams go in a tuple",
                )
                .at(first.to(last))
                .help("wrap them in parentheses: `.apply((a, b))`")
                .fix(Fix {
                    message: "wrap the inputs in a tuple".into(),
                    applicability: Applicability::Safe,
                    edits: vec![
                        Edit {
                            span: Span::new(first.lo as usize, first.lo as usize),
                            replacement: "(".into(),
                        },
                        Edit {
                            span: Span::new(last.hi as usize, last.hi as usize),
                            replacement: ")".into(),
                        },
                    ],
                }),
            );
            let items: Option<Vec<Arg>> = args.iter().map(|a| lower_arg(a, diags)).collect();
            Some(Arg::Tuple(items?, first.to(last)))
        }
    }
}
