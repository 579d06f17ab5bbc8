//! `stepforge-diag` owns how stepforge reports: byte [`Span`]s (tagged with the [`SourceId`] of
//! the text they point into), [`Source`] texts with their line index, the one [`Diagnostic`]
//! type with its labels and fixes, its human / JSON / short renderers, and the registry of
//! stable [`Code`]s with their long explanations (`explain/CODE.md`).
//!
//! It is the base crate of the workspace: every phase (lexing, parsing, task loading,
//! checking, evaluation, limits, simulation) reports through it, so it must not depend on the
//! parser (no logos, no lalrpop) nor on any other stepforge crate. It does no I/O.

pub mod codes;
pub mod diag;
pub mod span;
pub mod suggest;

pub use codes::{Code, Phase};
pub use diag::{
    Applicability, Diagnostic, Edit, Fix, Label, Severity, Sources, apply_fixes, plural,
};
pub use span::{LineCol, Source, SourceId, Span, line_start_at};
