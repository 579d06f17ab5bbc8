//! Terminal output: the one place that prints diagnostics, JSON and tables.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;

use stepforge_syntax::{Diagnostic, Source};

use crate::Format;

pub fn error(msg: &str) {
    eprintln!("error: {msg}");
}

pub fn line(s: &str) {
    println!("{s}");
}

pub fn json(v: &serde_json::Value) {
    println!("{v}");
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Human diagnostics go to stderr (so stdout stays the program/result); sorted by position so
/// output never depends on the order phases happened to report in.
pub fn diagnostics_human(source: &Source, diags: &[Diagnostic]) {
    let c = color();
    for d in sorted(diags) {
        eprint!("{}", d.render_human(source, c));
    }
}

pub fn diagnostics_json(source: &Source, diags: &[Diagnostic]) -> Vec<serde_json::Value> {
    sorted(diags).into_iter().map(|d| d.to_json(source)).collect()
}

pub fn sorted(diags: &[Diagnostic]) -> Vec<&Diagnostic> {
    let mut v: Vec<&Diagnostic> = diags.iter().collect();
    v.sort_by_key(|d| (d.span.map(|s| (s.lo, s.hi)), d.code));
    v
}

pub fn summary_counts(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    (errors, diags.len() - errors)
}

pub fn print_diagnostics(format: Format, source: &Source, diags: &[Diagnostic]) {
    match format {
        Format::Human => diagnostics_human(source, diags),
        Format::Json => {
            for d in diagnostics_json(source, diags) {
                json(&d);
            }
        }
    }
}
