//! Parsing code embedded in the task file so that every span is a byte offset into the file.
//!
//! The syntax crate's entry points accept code anywhere inside an otherwise blank text (the
//! lexer takes the first non-blank line's indentation as the base). So to parse a field we build
//! a copy of the file in which every byte before the field's content is blanked (newlines kept,
//! everything else a space) and parse that: the resulting spans are file offsets with no
//! translation step.
//!
//! That is exact when the field's text in the file *is* its YAML value line for line: plain
//! one-line scalars, `|` block scalars, quoted scalars without escapes. When YAML transformed the
//! text (escapes, folding with `>`, multi-line plain or quoted scalars), the decoded value is
//! parsed instead, placed at the value's start with its later lines re-indented to the first
//! line's column; positions on the first line are exact, later ones approximate, and every
//! diagnostic span is clamped to the value's text in the file.

use stepforge_syntax::codes::Code;
use stepforge_syntax::span::line_start_at;
use stepforge_syntax::{Diagnostic, Parsed, Source, Span};

use crate::model::EmbeddedText;

/// Total bytes of blanked text the loader may build for one file. Each field costs the offset of
/// its end, so this bounds the quadratic worst case (many fields late in a large file). Real task
/// files use well under 1 MiB of it.
pub const EMBED_BUDGET_BYTES: usize = 8 << 20;

#[derive(Debug)]
pub(crate) struct EmbedBudget {
    pub remaining: usize,
    /// Set once the budget ran out, so the E0508 is reported once.
    pub exhausted: bool,
}

impl EmbedBudget {
    pub fn new() -> EmbedBudget {
        EmbedBudget {
            remaining: EMBED_BUDGET_BYTES,
            exhausted: false,
        }
    }
}

/// How a value's text maps onto the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// The bytes `lo..hi` of the file are the code, line for line.
    Exact { lo: usize, hi: usize },
    /// The decoded value is placed at `lo`; `limit` is the value's text in the file.
    Approx { lo: usize, limit: Span },
}

fn place(text: &str, raw: Span, decoded: &str) -> Placement {
    let (lo, hi) = (raw.lo as usize, raw.hi as usize);
    let Some(raw_text) = text.get(lo..hi) else {
        return Placement::Approx {
            lo: lo.min(text.len()),
            limit: Span::new(lo.min(text.len()), hi.min(text.len())),
        };
    };
    let quoted = raw_text.len() >= 2
        && (raw_text.starts_with('"') && raw_text.ends_with('"')
            || raw_text.starts_with('\'') && raw_text.ends_with('\''));
    let (clo, chi) = if quoted { (lo + 1, hi - 1) } else { (lo, hi) };
    let exact = if quoted {
        text.get(clo..chi) == Some(decoded)
    } else {
        same_layout(text, clo, chi, decoded)
    };
    if exact {
        Placement::Exact { lo: clo, hi: chi }
    } else {
        Placement::Approx {
            lo: clo,
            limit: raw,
        }
    }
}

/// Whether the file bytes `lo..hi`, seen with everything before `lo` blanked, have the same
/// non-blank lines with the same relative indentation as `decoded`.
fn same_layout(text: &str, lo: usize, hi: usize, decoded: &str) -> bool {
    let line_start = line_start_at(text, lo);
    let Some(region) = text.get(lo..hi) else {
        return false;
    };
    layout(region, lo - line_start) == layout(decoded, 0)
}

fn layout(s: &str, first_col: usize) -> Vec<(i64, &str)> {
    let mut out = Vec::new();
    let mut base = None;
    for (i, line) in s.split('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let indent = (lead + if i == 0 { first_col } else { 0 }) as i64;
        let b = *base.get_or_insert(indent);
        out.push((indent - b, trimmed));
    }
    out
}

/// The blanked copy of `text[..lo]`: newlines kept, every other byte a space.
fn blank_prefix(text: &str, lo: usize) -> String {
    let mut bytes = text.as_bytes().get(..lo).unwrap_or(&[]).to_vec();
    for b in &mut bytes {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    // Only ASCII spaces and newlines remain, so this never fails.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Parses a value of the task file whose raw text (quotes included) is at `raw` and whose
/// YAML-decoded value is `decoded`.
pub(crate) fn parse_at<T>(
    source: &Source,
    raw: Span,
    decoded: &str,
    budget: &mut EmbedBudget,
    parse: fn(&str) -> Parsed<T>,
) -> Parsed<T> {
    let text = source.text.as_str();
    let placement = place(text, raw, decoded);
    let cost = match placement {
        Placement::Exact { hi, .. } => hi,
        Placement::Approx { lo, .. } => lo + decoded.len(),
    };
    // Once exhausted, later fields come back without a value and without a diagnostic of their
    // own: the one E0508 already makes the load fail.
    if cost > budget.remaining {
        let mut diagnostics = Vec::new();
        if !budget.exhausted {
            budget.exhausted = true;
            diagnostics.push(
                Diagnostic::new(
                    Code::E0508,
                    "task file has too much embedded code to parse; this and later fields \
                     were skipped",
                )
                .at(Span::new(raw.lo as usize, raw.lo as usize)),
            );
        }
        return Parsed {
            value: None,
            diagnostics,
        };
    }
    budget.remaining -= cost;
    match placement {
        Placement::Exact { lo, hi } => {
            let mut buf = blank_prefix(text, lo);
            buf.push_str(text.get(lo..hi).unwrap_or(""));
            parse(&buf)
        }
        Placement::Approx { lo, limit } => {
            let col = lo - line_start_at(text, lo);
            let mut buf = blank_prefix(text, lo);
            for (i, line) in decoded.split('\n').enumerate() {
                if i > 0 {
                    buf.push('\n');
                    buf.extend(std::iter::repeat_n(' ', col));
                }
                buf.push_str(line);
            }
            let mut parsed = parse(&buf);
            for d in &mut parsed.diagnostics {
                clamp_diagnostic(d, limit);
                d.notes.push(
                    "positions inside this value are approximate because YAML rewrote its text \
                     (escapes or line folding); a `|` block scalar keeps them exact"
                        .to_owned(),
                );
            }
            parsed
        }
    }
}

fn clamp_span(s: Span, limit: Span) -> Span {
    let lo = s.lo.clamp(limit.lo, limit.hi);
    let hi = s.hi.clamp(lo, limit.hi);
    Span { lo, hi, ..s }
}

fn clamp_diagnostic(d: &mut Diagnostic, limit: Span) {
    d.map_spans(|s| clamp_span(s, limit));
}

/// Parses an [`EmbeddedText`] of `source` with one of the syntax crate's entry points, with spans
/// that are byte offsets into `source` (see the module docs for when they are approximate).
pub fn parse_embedded<T>(
    source: &Source,
    embedded: &EmbeddedText,
    parse: fn(&str) -> Parsed<T>,
) -> Parsed<T> {
    parse_at(
        source,
        embedded.span,
        &embedded.text,
        &mut EmbedBudget::new(),
        parse,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_scalars_are_exact() {
        let text = "apply: |\n    x = 1\n      y\n    z\nnext: 1\n";
        let lo = text.find("x = 1").unwrap();
        let hi = text.find("next").unwrap();
        let p = place(text, Span::new(lo, hi), "x = 1\n  y\nz\n");
        assert_eq!(p, Placement::Exact { lo, hi });
    }

    #[test]
    fn plain_one_line_is_exact_and_folded_is_not() {
        let text = "apply: return [x]\n";
        let lo = text.find("return").unwrap();
        let hi = text.len() - 1;
        assert_eq!(
            place(text, Span::new(lo, hi), "return [x]"),
            Placement::Exact { lo, hi }
        );
        let text = "apply: return [x\n  + 1]\n";
        let hi = text.len() - 1;
        assert!(matches!(
            place(text, Span::new(lo, hi), "return [x + 1]"),
            Placement::Approx { .. }
        ));
    }

    #[test]
    fn quotes_are_stripped_and_escapes_detected() {
        let text = "dtype: \"fp32\"\n";
        let lo = text.find('"').unwrap();
        let hi = text.len() - 1;
        assert_eq!(
            place(text, Span::new(lo, hi), "fp32"),
            Placement::Exact {
                lo: lo + 1,
                hi: hi - 1
            }
        );
        let text = "a: \"x\\ty\"\n";
        let lo = text.find('"').unwrap();
        let hi = text.len() - 1;
        assert_eq!(
            place(text, Span::new(lo, hi), "x\ty"),
            Placement::Approx {
                lo: lo + 1,
                limit: Span::new(lo, hi)
            }
        );
    }

    #[test]
    fn the_budget_stops_work_with_one_e0508() {
        let text = "a: fp32\nb: fp32\n";
        let src = Source::new("t.yaml", text);
        let mut budget = EmbedBudget {
            remaining: 10,
            exhausted: false,
        };
        let parse = |s: &str| Parsed {
            value: Some(s.len()),
            diagnostics: Vec::new(),
        };
        let first = parse_at(&src, Span::new(3, 7), "fp32", &mut budget, parse);
        assert_eq!(first.value, Some(7));
        let second = parse_at(&src, Span::new(11, 15), "fp32", &mut budget, parse);
        assert_eq!(second.value, None);
        assert_eq!(second.diagnostics[0].code, Code::E0508);
        let third = parse_at(&src, Span::new(11, 15), "fp32", &mut budget, parse);
        assert!(third.value.is_none() && third.diagnostics.is_empty());
    }

    #[test]
    fn blanking_keeps_newlines_and_byte_offsets() {
        let b = blank_prefix("é: 1\nab", 7);
        assert_eq!(b, "     \n ");
        assert_eq!(b.len(), 7);
    }
}
