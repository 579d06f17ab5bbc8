//! Terminal output: the one place that prints diagnostics, JSON and tables.

use std::io::IsTerminal;

use stepforge_syntax::{Diagnostic, Source};

use crate::Format;

use std::io::Write;

// Writes ignore errors on purpose: a closed pipe (`stepforge ... | head`) must end the output
// quietly, not panic the way `println!` does.

pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
}

pub fn line(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

pub fn json(v: &serde_json::Value) {
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Human diagnostics go to stderr (so stdout stays the program/result); sorted by position so
/// output never depends on the order phases happened to report in.
pub fn diagnostics_human(source: &Source, diags: &[Diagnostic]) {
    let c = color();
    let mut err = std::io::stderr().lock();
    for d in sorted(diags) {
        let _ = write!(err, "{}", d.render_human(source, c));
    }
}

pub fn diagnostics_json(source: &Source, diags: &[Diagnostic]) -> Vec<serde_json::Value> {
    sorted(diags)
        .into_iter()
        .map(|d| d.to_json(source))
        .collect()
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
