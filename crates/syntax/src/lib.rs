//! `stepforge-syntax` owns the text end of stepforge: the logos lexer (with Python-style
//! indentation), the lalrpop grammar (source in the workspace's top-level `grammar/`), the AST
//! with byte spans, answer extraction (programs inside fenced blocks, YAML `impl:` documents or
//! prose), the pretty-printer, and the [`diag::Diagnostic`] type every phase reports through.
//!
//! Invariant: parsing never panics and never fails wholesale. Every entry point returns
//! [`Parsed`]: the tree when one could be built, plus the diagnostics (codes E01xx).
//! This crate does no I/O.

pub mod ast;
pub mod codes;
pub mod diag;
pub mod span;

pub use diag::{Diagnostic, Severity};
pub use span::{Source, Span};

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
