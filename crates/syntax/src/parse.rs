//! The line-by-line driver around the generated parser, and the translation of lalrpop's
//! errors into diagnostics in the user's terms.

use lalrpop_util::ParseError;

use crate::ast::{Expr, PyStmt};
use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::grammar;
use crate::lexer::{self, Spanned, Tok};
use crate::span::Span;

type LError<'a> = ParseError<usize, Tok<'a>, Diagnostic>;

/// Which language the lines belong to; decides how unsupported statements are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Program,
    Block,
}

/// Python statement keywords none of our languages has. A line starting with one is reported
/// as a whole (with the statement's name) instead of as an unexpected token.
const FOREIGN_STMTS: &[&str] = &[
    "import", "from", "def", "class", "while", "with", "try", "except", "finally", "elif", "del",
    "pass", "raise", "assert", "global", "nonlocal", "yield", "async", "await", "break",
    "continue", "match", "case",
];

pub(crate) struct Stmts<T> {
    pub stmts: Vec<T>,
    pub diagnostics: Vec<Diagnostic>,
    /// Some line starts with `return`, even if it did not parse (so "no return" would be a
    /// second report of the same mistake).
    pub return_seen: bool,
}

/// Lexes and parses every logical line of `text`. Never fails: broken lines are reported and
/// skipped, the rest parse.
pub(crate) fn parse_lines(text: &str, mode: Mode) -> Stmts<PyStmt> {
    parse_lines_with(text, mode, |_| None, |s| s)
}

/// The driver. `fast` may claim a line's tokens before the grammar sees them; `wrap` turns a
/// statement the grammar parsed into the output item.
pub(crate) fn parse_lines_with<T>(
    text: &str,
    mode: Mode,
    mut fast: impl FnMut(&[Spanned<'_>]) -> Option<T>,
    wrap: impl Fn(PyStmt) -> T,
) -> Stmts<T> {
    let lexed = lexer::lex(text);
    let mut diags = lexed.diagnostics.clone();
    let mut stmts = Vec::with_capacity(lexed.lines.len());
    let parser = grammar::LineParser::new();
    let mut buf: Vec<Spanned<'_>> = Vec::new();
    let mut return_seen = false;
    for line in &lexed.lines {
        if line.nested {
            continue;
        }
        let toks = lexed.line_toks(line);
        return_seen |= matches!(toks.first(), Some((_, Tok::Return, _)));
        if let Some(d) = foreign_statement(toks, line.span, mode) {
            diags.push(d);
            continue;
        }
        if !line.broken
            && let Some(item) = fast(toks)
        {
            stmts.push(item);
            continue;
        }
        buf.clear();
        buf.extend(toks.iter().copied().filter(|t| t.1 != Tok::Error));
        if buf.is_empty() {
            continue;
        }
        if let Some(d) = too_long(&buf) {
            diags.push(d);
            continue;
        }
        match parser.parse(text, buf.iter().copied().map(Ok::<_, Diagnostic>)) {
            Ok(s) => match too_deep_stmt(&s, buf.len()) {
                Some(d) => diags.push(d),
                None => stmts.push(wrap(*s)),
            },
            Err(e) => {
                if !line.broken {
                    diags.push(convert_error(e, line.span, mode));
                }
            }
        }
    }
    Stmts {
        stmts,
        diagnostics: diags,
        return_seen,
    }
}

/// Tokens one statement may have. Trees are at most this deep, which keeps the recursive
/// passes over them (printing, lowering, dropping) far from the stack limit; real statements
/// have a few dozen tokens.
pub(crate) const MAX_STMT_TOKENS: usize = 1000;

pub(crate) fn too_long(toks: &[Spanned<'_>]) -> Option<Diagnostic> {
    if toks.len() <= MAX_STMT_TOKENS {
        return None;
    }
    let (lo, hi) = (toks.first()?.0, toks.last()?.2);
    Some(
        Diagnostic::new(
            Code::E0110,
            format!(
                "statement is too long ({} tokens; the limit is {MAX_STMT_TOKENS})",
                toks.len()
            ),
        )
        .at(Span::new(lo, hi))
        .help("split it into several statements"),
    )
}

/// Parses an expression from pre-lexed tokens (f-string holes, dtypes, dims).
pub(crate) fn parse_expr_tokens(
    src: &str,
    toks: &[Spanned<'_>],
    end: usize,
) -> Result<Expr, Diagnostic> {
    if let Some(d) = too_long(toks) {
        return Err(d);
    }
    let parser = grammar::ExprParser::new();
    let lo = toks.first().map_or(end, |t| t.0);
    let e = parser
        .parse(src, toks.iter().copied().map(Ok::<_, Diagnostic>))
        .map_err(|e| convert_error(e, Span::new(lo, end), Mode::Block))?;
    if toks.len() <= MAX_DEPTH {
        return Ok(e);
    }
    match too_deep(&e) {
        Some(d) => Err(d),
        None => Ok(e),
    }
}

/// How deeply expressions may nest. Every later pass (printing, lowering, the evaluator)
/// recurses over trees; this bound keeps them all far from the stack limit, while flat long
/// statements (big list literals) stay fine up to [`MAX_STMT_TOKENS`].
pub(crate) const MAX_DEPTH: usize = 200;

/// `ntoks`: the statement's token count. A tree is never deeper than its tokens (each level
/// consumes at least one, and f-string holes are checked when parsed), so short statements
/// skip the walk.
fn too_deep_stmt(s: &PyStmt, ntoks: usize) -> Option<Diagnostic> {
    use crate::ast::{PyStmtKind, Target};
    if ntoks <= MAX_DEPTH {
        return None;
    }
    match &s.kind {
        PyStmtKind::Assign { target, value } => {
            let mut ts = vec![target];
            while let Some(t) = ts.pop() {
                match t {
                    Target::Name(_) => {}
                    Target::Tuple(items, _) => ts.extend(items.iter()),
                    Target::Subscript { value, .. } => {
                        if let Some(d) = too_deep(value) {
                            return Some(d);
                        }
                    }
                }
            }
            too_deep(value)
        }
        PyStmtKind::Return(e) | PyStmtKind::Expr(e) => too_deep(e),
    }
}

/// Measures nesting without recursion (the tree may be arbitrarily deep here).
fn too_deep(root: &Expr) -> Option<Diagnostic> {
    use crate::ast::{ExprKind as K, FStringPart, SliceItem};
    let mut stack: Vec<(&Expr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Some(
                Diagnostic::new(
                    Code::E0110,
                    format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
                )
                .at(root.span)
                .label(e.span, "too deep here")
                .help("split it into several statements"),
            );
        }
        let d = d + 1;
        match &e.kind {
            K::Attr { value, .. } => stack.push((value, d)),
            K::Call { func, args, kwargs } => {
                stack.push((func, d));
                stack.extend(args.iter().map(|x| (x, d)));
                stack.extend(kwargs.iter().map(|(_, v)| (v, d)));
            }
            K::Subscript { value, index } => {
                stack.push((value, d));
                for it in index {
                    match it {
                        SliceItem::Index(x) => stack.push((x, d)),
                        SliceItem::Slice { lo, hi, step, .. } => {
                            stack.extend([lo, hi, step].into_iter().flatten().map(|x| (x, d)));
                        }
                        SliceItem::Ellipsis(_) => {}
                    }
                }
            }
            K::Binary { lhs, rhs, .. } => stack.extend([(&**lhs, d), (&**rhs, d)]),
            K::Unary { operand, .. } => stack.push((operand, d)),
            K::Compare { first, rest } => {
                stack.push((first, d));
                stack.extend(rest.iter().map(|(_, v)| (v, d)));
            }
            K::IfElse { cond, body, orelse } => {
                stack.extend([(&**cond, d), (&**body, d), (&**orelse, d)])
            }
            K::List(items) | K::Tuple(items) => stack.extend(items.iter().map(|x| (x, d))),
            K::ListComp { elt, iter, .. } => stack.extend([(&**elt, d), (&**iter, d)]),
            K::FString(parts) => stack.extend(parts.iter().filter_map(|p| match p {
                FStringPart::Expr(x) => Some((x, d)),
                FStringPart::Lit(_) => None,
            })),
            K::Int(_) | K::Float(..) | K::Bool(_) | K::None | K::Str(_) | K::Name(_) => {}
        }
    }
    None
}

fn foreign_statement(toks: &[Spanned<'_>], span: Span, mode: Mode) -> Option<Diagnostic> {
    let (lo, first, hi) = *toks.first()?;
    let word = match first {
        Tok::Name(n) if FOREIGN_STMTS.contains(&n) => {
            // `match = ...`/`case(...)` are ordinary names in Python; only flag statement use.
            if matches!(n, "match" | "case") && !matches!(toks.last(), Some((_, Tok::Colon, _))) {
                return None;
            }
            n
        }
        Tok::For | Tok::If | Tok::Else => first.text(),
        _ => return None,
    };
    let at = Span::new(lo, hi);
    Some(match mode {
        Mode::Program => Diagnostic::new(
            Code::E0117,
            format!("`{word}` is not allowed in a STeP program"),
        )
        .at(at)
        .label(span, "this statement")
        .help(PROGRAM_HELP)
        .note(match word {
            "for" => "loops are written as comprehensions: `Ys = [step.Map(fn=f).apply(x) for x in Xs]`",
            "def" => "element functions are declared by the task (`fns:`); the program refers to them by `func_name`",
            "import" | "from" => "nothing needs importing: `step.` names the operators",
            _ => "control flow is expressed with operators (`Partition`, `Merge`), not statements",
        }),
        Mode::Block => Diagnostic::new(
            Code::E0110,
            format!("`{word}` statements are not supported here"),
        )
        .at(at)
        .label(span, "this statement")
        .help(match word {
            "for" => "use a list comprehension: `[f(i) for i in range(n)]`",
            "if" | "else" => "use a conditional expression: `a if cond else b`",
            "import" | "from" => "`torch` is always available; remove the import",
            _ => "element functions and snippets are assignments, expressions and `return`",
        }),
    })
}

/// What a program may contain, for E0117 help lines.
pub(crate) const PROGRAM_HELP: &str = "a program contains only `NAME = step.Op(k=v, ..).apply(arg)` statements, lists `[a, b]`, comprehensions `[step.Op(..).apply(x) for x in xs]`, comments, and a final `return NAME, ..`";

fn describe_expected(expected: &[String]) -> String {
    let has = |t: &str| expected.iter().any(|e| e.trim_matches('"') == t);
    let expr_start = has("NAME") && has("INT") && has("(");
    let operators = ["+", "*", "/", "**", "==", "<", "."]
        .iter()
        .filter(|o| has(o))
        .count()
        >= 4;
    let mut out: Vec<String> = Vec::new();
    if expr_start {
        out.push("an expression".into());
    }
    if operators {
        out.push("an operator".into());
    }
    for e in expected {
        let t = e.trim_matches('"');
        let skip_expr = matches!(
            t,
            "NAME"
                | "INT"
                | "FLOAT"
                | "STR"
                | "FSTR"
                | "True"
                | "False"
                | "None"
                | "("
                | "["
                | "-"
                | "+"
                | "not"
        );
        let skip_op = matches!(
            t,
            "+" | "-"
                | "*"
                | "/"
                | "//"
                | "%"
                | "**"
                | "@"
                | "=="
                | "!="
                | "<"
                | "<="
                | ">"
                | ">="
                | "."
                | "("
                | "["
                | "if"
        );
        if (expr_start && skip_expr) || (operators && skip_op) {
            continue;
        }
        let s = match t {
            "NAME" => "a name".to_string(),
            "INT" | "FLOAT" => "a number".to_string(),
            "STR" | "FSTR" => "a string".to_string(),
            other => format!("`{other}`"),
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    match out.len() {
        0 => "something else".into(),
        1 => out.remove(0),
        _ => {
            let last = out.pop().unwrap_or_default();
            format!("{} or {last}", out.join(", "))
        }
    }
}

fn unexpected_help(tok: Tok<'_>, mode: Mode) -> Option<String> {
    Some(match tok {
        Tok::And | Tok::Or => format!(
            "`{}` is not supported; combine 0/1 tensors with `*` (and) or a comparison",
            tok.text()
        ),
        Tok::Lambda => "lambdas are not supported; declare an element function in the task".into(),
        Tok::AugAssign(op) => format!(
            "augmented assignment is not supported: write `x = x {} y`",
            op.trim_end_matches('=')
        ),
        Tok::LBrace | Tok::RBrace => "dict and set literals are not supported".into(),
        Tok::Walrus => "`:=` is not supported; assign on its own line".into(),
        Tok::Is => "`is` is not supported; compare with `==`".into(),
        Tok::Colon if mode == Mode::Program => PROGRAM_HELP.into(),
        Tok::Semi => "end the statement with a newline".into(),
        _ => return None,
    })
}

pub(crate) fn convert_error(e: LError<'_>, line: Span, mode: Mode) -> Diagnostic {
    match e {
        ParseError::User { error } => error,
        ParseError::InvalidToken { location } => {
            Diagnostic::new(Code::E0101, "unexpected character")
                .at(Span::new(location, location + 1))
        }
        ParseError::UnrecognizedEof { location, expected } => {
            let loc = location.max(line.hi as usize);
            Diagnostic::new(Code::E0111, "unexpected end of statement")
                .at(Span::new(loc, loc))
                .label(line, "this statement is unfinished")
                .note(format!("expected {}", describe_expected(&expected)))
        }
        ParseError::UnrecognizedToken {
            token: (lo, tok, hi),
            expected,
        } => {
            let mut d = Diagnostic::new(Code::E0110, format!("unexpected {}", tok.describe()))
                .at(Span::new(lo, hi))
                .note(format!("expected {}", describe_expected(&expected)));
            if let Some(h) = unexpected_help(tok, mode) {
                d = d.help(h);
            }
            d
        }
        ParseError::ExtraToken {
            token: (lo, tok, hi),
        } => {
            let mut d = Diagnostic::new(Code::E0110, format!("unexpected {}", tok.describe()))
                .at(Span::new(lo, hi))
                .note("expected the end of the statement");
            if let Some(h) = unexpected_help(tok, mode) {
                d = d.help(h);
            }
            d
        }
    }
}
