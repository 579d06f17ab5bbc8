//! Terminal output: the one place that prints diagnostics, JSON and tables.

use std::io::IsTerminal;

use std::collections::BTreeMap;

use stepforge_syntax::codes::Code;
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
/// output never depends on the order phases happened to report in. At most `max_per_code` of
/// each code are shown (the first by position); a note counts the rest. Each diagnostic is
/// written as soon as it is rendered, so memory does not grow with the report.
pub fn diagnostics_human(source: &Source, diags: &[Diagnostic], max_per_code: usize) {
    let c = color();
    let (kept, omitted) = capped(diags, max_per_code);
    let mut err = std::io::stderr().lock();
    for d in kept {
        let _ = write!(err, "{}", d.render_human(source, c));
    }
    for (code, n) in omitted {
        let _ = writeln!(
            err,
            "note: and {n} more {code} diagnostic(s) not shown (raise --max-diagnostics)\n"
        );
    }
}

/// Sorted, capped JSON diagnostics and the per-code count of the ones left out.
pub fn diagnostics_json(
    source: &Source,
    diags: &[Diagnostic],
    max_per_code: usize,
) -> (Vec<serde_json::Value>, serde_json::Value) {
    let (kept, omitted) = capped(diags, max_per_code);
    (
        kept.into_iter().map(|d| d.to_json(source)).collect(),
        omitted_json(&omitted),
    )
}

/// `{"E0202": 39900}` (empty object when nothing was left out).
pub fn omitted_json(omitted: &BTreeMap<Code, usize>) -> serde_json::Value {
    serde_json::Value::Object(
        omitted
            .iter()
            .map(|(c, n)| (c.as_str().to_string(), serde_json::json!(n)))
            .collect(),
    )
}

/// The first `max_per_code` diagnostics of each code in position order, and the counts of the
/// rest.
pub fn capped(
    diags: &[Diagnostic],
    max_per_code: usize,
) -> (Vec<&Diagnostic>, BTreeMap<Code, usize>) {
    let mut seen: BTreeMap<Code, usize> = BTreeMap::new();
    let mut omitted = BTreeMap::new();
    let mut kept = Vec::new();
    for d in sorted(diags) {
        let n = seen.entry(d.code).or_insert(0);
        *n += 1;
        if *n <= max_per_code {
            kept.push(d);
        } else {
            *omitted.entry(d.code).or_insert(0) += 1;
        }
    }
    (kept, omitted)
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

pub fn print_diagnostics(
    format: Format,
    source: &Source,
    diags: &[Diagnostic],
    max_per_code: usize,
) {
    match format {
        Format::Human => diagnostics_human(source, diags, max_per_code),
        Format::Json => {
            for d in diagnostics_json(source, diags, max_per_code).0 {
                json(&d);
            }
        }
    }
}

/// A note for people (stderr, human mode only: JSON mode keeps stderr for real errors).
pub fn note(format: Format, msg: &str) {
    if format == Format::Human {
        let _ = writeln!(std::io::stderr().lock(), "note: {msg}");
    }
}
