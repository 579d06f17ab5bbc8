//! `stepforge-syntax` owns the text end of stepforge: the logos lexer (with Python-style
//! indentation), the lalrpop grammar (source in the workspace's top-level `grammar/`), the AST
//! with byte spans, answer extraction (programs inside fenced blocks, YAML `impl:` documents or
//! prose) and the pretty-printer. The diagnostic type, spans and the code registry live in
//! `stepforge-diag`; they are re-exported here under their old paths ([`diag`], [`span`],
//! [`codes`]) so callers need not care.
//!
//! Map: [`lexer`] (tokens and logical lines) → the generated parser (`grammar/step.lalrpop`,
//! one Python-subset grammar with a statement and an expression entry point) → narrowing
//! passes for programs (E0112–E0117), dtypes and dims; [`answer`] finds the program in an LLM
//! answer; [`print`] is the canonical printer; [`ops`] is the operator table the checker
//! shares. Canonical program lines take a verified fast path that skips the LR parser.
//!
//! Invariant: parsing never panics and never fails wholesale. Every entry point returns
//! [`Parsed`]: the tree when one could be built, plus the diagnostics (codes E01xx).
//! This crate does no I/O.

// Diagnostics are the error type of every parsing helper; they are rare (cold path) and boxing
// them would only add noise at every `?`.
#![allow(clippy::result_large_err)]

mod actions;
pub mod answer;
pub mod ast;
mod dtype;
mod fast;
pub mod lexer;
pub mod ops;
mod parse;
pub mod print;
mod program;

lalrpop_util::lalrpop_mod!(
    #[allow(
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used,
        clippy::expect_used,
        unused,
        missing_debug_implementations
    )]
    grammar,
    "/step.rs"
);

pub use print::{same_tree, strip_spans};
pub use stepforge_diag::{Diagnostic, Severity, Source, Span};

/// The code registry, re-exported from `stepforge-diag` under its old path.
pub mod codes {
    pub use stepforge_diag::codes::*;
}

/// The diagnostic type and its renderers, re-exported from `stepforge-diag` under its old path.
pub mod diag {
    pub use stepforge_diag::diag::*;
}

/// Spans and sources, re-exported from `stepforge-diag` under its old path.
pub mod span {
    pub use stepforge_diag::span::*;
}

use codes::Code;
use parse::Mode;

/// The result of a parse: a tree if one could be built, and every diagnostic found.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub value: Option<T>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<T> Parsed<T> {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The tree only if there were no errors.
    pub fn ok(self) -> Option<T> {
        if self.has_errors() { None } else { self.value }
    }
}

impl<T> Parsed<T> {
    fn new(value: Option<T>, mut diagnostics: Vec<Diagnostic>) -> Parsed<T> {
        // Report in text order; the lexer and the parser each find their own problems, and
        // two views of one mistake at one place are one diagnostic.
        diagnostics.sort_by_key(|d| (d.span.map_or(u32::MAX, |s| s.lo), d.code));
        diagnostics.dedup_by(|a, b| a.code == b.code && a.span == b.span);
        Parsed { value, diagnostics }
    }
}

/// A bare STeP program (DESIGN §6). The text may carry leading blank lines and a non-zero base
/// indentation (code embedded in a task file, everything else blanked).
pub fn parse_program(text: &str) -> Parsed<ast::Program> {
    let parsed = parse::parse_lines_with(
        text,
        Mode::Program,
        |toks| fast::line(toks).map(program::Item::Fast),
        program::Item::Py,
    );
    let mut diags = parsed.diagnostics;
    let prog = program::lower(text, parsed.stmts, parsed.return_seen, &mut diags);
    Parsed::new(Some(prog), diags)
}

/// [`parse_program`] without the fast path for canonical lines: every line goes through the
/// grammar. Only for differential tests (both must build identical trees).
#[doc(hidden)]
pub fn parse_program_via_grammar(text: &str) -> Parsed<ast::Program> {
    let parsed = parse::parse_lines_with(text, Mode::Program, |_| None, program::Item::Py);
    let mut diags = parsed.diagnostics;
    let prog = program::lower(text, parsed.stmts, parsed.return_seen, &mut diags);
    Parsed::new(Some(prog), diags)
}

/// A raw LLM answer: a bare program, a YAML document with an `impl:` key, a fenced code block
/// around either, with or without prose around the fence. Spans point into `text`.
pub fn parse_answer(text: &str) -> Parsed<ast::Program> {
    match answer::extract(text) {
        Ok(x) => {
            let mut p = parse_program(&x.blanked);
            let mut diags = x.diagnostics;
            diags.append(&mut p.diagnostics);
            Parsed::new(p.value, diags)
        }
        Err(d) => Parsed::new(None, vec![d]),
    }
}

/// An element-function body or a `global` block (the Python/torch subset of DESIGN §7).
pub fn parse_block(text: &str) -> Parsed<ast::Block> {
    let parsed = parse::parse_lines(text, Mode::Block);
    let span = match (parsed.stmts.first(), parsed.stmts.last()) {
        (Some(a), Some(b)) => a.span.to(b.span),
        _ => {
            let at = text.len() - text.trim_start().len();
            Span::new(at, at)
        }
    };
    Parsed::new(
        Some(ast::Block {
            stmts: parsed.stmts,
            span,
        }),
        parsed.diagnostics,
    )
}

/// A reference snippet: the same statements as a block; its value is its last line.
pub fn parse_snippet(text: &str) -> Parsed<ast::Block> {
    parse_block(text)
}

/// Parses `text` as one expression (dtype strings, dims).
fn parse_one_expr(text: &str, what: &str, code: Code) -> Result<ast::Expr, Vec<Diagnostic>> {
    let lexed = lexer::lex(text);
    if !lexed.diagnostics.is_empty() {
        return Err(lexed.diagnostics);
    }
    if lexed.lines.len() > 1 {
        let second = &lexed.lines[1];
        return Err(vec![
            Diagnostic::new(code, format!("a {what} fits on one line"))
                .at(second.span)
                .help("remove the extra line"),
        ]);
    }
    if lexed.toks.is_empty() {
        let at = text.len() - text.trim_start().len();
        return Err(vec![
            Diagnostic::new(code, format!("expected a {what}, found nothing"))
                .at(Span::new(at, at)),
        ]);
    }
    let end = lexed.toks.last().map_or(0, |t| t.2);
    parse::parse_expr_tokens(text, &lexed.toks, end).map_err(|d| vec![d])
}

/// A dtype: `fp32`, `Multihot(fp32, E)`, `Buffer(fp32, [D, N])`, `[fp32, Buffer(fp32, [D])]`.
pub fn parse_dtype(text: &str) -> Parsed<ast::DtypeAst> {
    match parse_one_expr(text, "dtype", Code::E0119) {
        Ok(e) => match dtype::dtype(&e, true) {
            Ok(d) => Parsed::new(Some(d), Vec::new()),
            Err(d) => Parsed::new(None, vec![d]),
        },
        Err(ds) => Parsed::new(None, ds),
    }
}

/// A dimension: `M`, `1`, `M*N`, `N/2`.
pub fn parse_dim(text: &str) -> Parsed<ast::DimExpr> {
    match parse_one_expr(text, "dimension", Code::E0120) {
        Ok(e) => match dtype::dim(&e) {
            Ok(d) => Parsed::new(Some(d), Vec::new()),
            Err(d) => Parsed::new(None, vec![d]),
        },
        Err(ds) => Parsed::new(None, ds),
    }
}
