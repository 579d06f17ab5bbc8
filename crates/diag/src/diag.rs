//! The one diagnostic type of stepforge, its stable codes, and its two renderers.
//!
//! Every phase (lexing, parsing, task loading, checking, evaluation, limits, simulation) reports
//! through [`Diagnostic`]. It lives in the lowest crate so that every other crate can produce it
//! without depending on the checker. A diagnostic is source-agnostic: its spans are byte offsets
//! into whichever [`Source`] the caller renders it against.

use std::fmt;

use serde::Serialize;

use crate::span::{Source, SourceId, Span};

pub use crate::codes::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The texts a diagnostic may point into: the task file and, when the program was supplied
/// separately (an answer), the program. Each span is rendered against the text its
/// [`SourceId`] names; a program span with no program text falls back to the task (the
/// program then *is* the task's reference impl).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub task: &'a Source,
    pub program: Option<&'a Source>,
}

impl<'a> Sources<'a> {
    /// The text `span` points into.
    pub fn of(&self, span: Span) -> &'a Source {
        match (span.source, self.program) {
            (SourceId::Program, Some(p)) => p,
            _ => self.task,
        }
    }
}

/// A secondary location with a short message ("E2 defined here with dims [K, M]").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// Whether a fix may be applied without a human looking at it. `--fix` applies only `Safe` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applicability {
    /// Applying it yields a program that means what the author meant (e.g. inserting `Copy`).
    Safe,
    /// Probably right, but it may change meaning (e.g. guessing a misspelled name).
    Unsafe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub span: Span,
    pub replacement: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub message: String,
    pub applicability: Applicability,
    pub edits: Vec<Edit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// One line, in the user's terms.
    pub message: String,
    /// `None` only for diagnostics about a whole input (e.g. an empty answer).
    pub span: Option<Span>,
    pub labels: Vec<Label>,
    /// Expected-vs-found lines and other facts.
    pub notes: Vec<String>,
    pub help: Option<String>,
    pub fixes: Vec<Fix>,
}

impl Fix {
    /// A fix with one edit: `replacement` in place of `span` (an empty span inserts).
    pub fn replace(
        message: impl Into<String>,
        applicability: Applicability,
        span: Span,
        replacement: impl Into<String>,
    ) -> Fix {
        Fix {
            message: message.into(),
            applicability,
            edits: vec![Edit {
                span,
                replacement: replacement.into(),
            }],
        }
    }
}

impl Diagnostic {
    /// An error with the code's default severity.
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span: None,
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
            fixes: Vec::new(),
        }
    }

    pub fn at(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    pub fn label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn fix(mut self, fix: Fix) -> Diagnostic {
        self.fixes.push(fix);
        self
    }

    /// "did you mean `name`?" with the unsafe fix that writes `name` over `span`.
    pub fn suggest(self, span: Span, name: &str) -> Diagnostic {
        self.help(format!("did you mean `{name}`?"))
            .fix(Fix::replace(
                format!("use `{name}`"),
                Applicability::Unsafe,
                span,
                name,
            ))
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Every span the diagnostic carries: the primary one, the labels' and the fix edits'.
    pub fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.span
            .into_iter()
            .chain(self.labels.iter().map(|l| l.span))
            .chain(
                self.fixes
                    .iter()
                    .flat_map(|f| f.edits.iter().map(|e| e.span)),
            )
    }

    /// Rewrites every span (the primary one, the labels' and the fix edits') with `f`.
    pub fn map_spans(&mut self, f: impl Fn(Span) -> Span) {
        self.span = self.span.map(&f);
        for l in &mut self.labels {
            l.span = f(l.span);
        }
        for fix in &mut self.fixes {
            for e in &mut fix.edits {
                e.span = f(e.span);
            }
        }
    }

    /// Marks every span as pointing into the task file ([`Span::in_task`]).
    pub fn in_task(mut self) -> Diagnostic {
        self.map_spans(Span::in_task);
        self
    }

    /// Shift every span (used when a program was parsed out of a larger text).
    pub fn shifted(mut self, offset: u32) -> Diagnostic {
        self.map_spans(|s| s.shifted(offset));
        self
    }

    /// Renders against `source` in the JSON shape of DESIGN §10 (every span is taken to point
    /// into `source`; see [`Diagnostic::to_json_in`] for diagnostics spanning two texts). Each
    /// span says which text its lines count in: `"source": "task"|"program"`.
    pub fn to_json(&self, source: &Source) -> serde_json::Value {
        let span = |s: Span| {
            let a = source.line_col(s.lo);
            let b = source.line_col(s.hi);
            serde_json::json!({
                "source": s.source.as_str(),
                "line": a.line, "column": a.column, "end_line": b.line, "end_column": b.column,
            })
        };
        self.json_with(span)
    }

    fn json_with(&self, span: impl Fn(Span) -> serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "code": self.code.as_str(),
            "severity": self.severity,
            "message": self.message,
            "span": self.span.map(&span),
            "labels": self.labels.iter().map(|l| serde_json::json!({
                "span": span(l.span), "message": l.message,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "help": self.help,
            "fixes": self.fixes.iter().map(|f| serde_json::json!({
                "message": f.message,
                "applicability": f.applicability,
                "edits": f.edits.iter().map(|e| serde_json::json!({
                    "span": span(e.span), "replacement": e.replacement,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Renders in the JSON shape of DESIGN §10, each span against the text its source id names;
    /// every span also says `"source": "task"|"program"` and `"file"` (the source's name).
    pub fn to_json_in(&self, sources: Sources<'_>) -> serde_json::Value {
        let span = |s: Span| {
            let source = sources.of(s);
            let a = source.line_col(s.lo);
            let b = source.line_col(s.hi);
            serde_json::json!({
                "source": s.source.as_str(), "file": source.name,
                "line": a.line, "column": a.column, "end_line": b.line, "end_column": b.column,
            })
        };
        self.json_with(span)
    }

    /// Renders against `source` as a human report with a source snippet and carets.
    pub fn render_human(&self, source: &Source, color: bool) -> String {
        use codespan_reporting::diagnostic::{Diagnostic as CsDiag, Label as CsLabel};
        use codespan_reporting::term::{self, Config};

        // The source's own line table, not a `SimpleFile` (which rebuilds it per call): that
        // made rendering N diagnostics of one file O(N * file size).
        let file = CsSource(source);
        let mut d = match self.severity {
            Severity::Error => CsDiag::error(),
            Severity::Warning => CsDiag::warning(),
        }
        .with_code(self.code.as_str())
        .with_message(&self.message);
        let mut labels = Vec::new();
        if let Some(s) = self.span {
            labels.push(CsLabel::primary((), clamp(s, source)));
        }
        for l in &self.labels {
            labels.push(CsLabel::secondary((), clamp(l.span, source)).with_message(&l.message));
        }
        d = d.with_labels(labels);
        let mut notes = self.notes.clone();
        if let Some(h) = &self.help {
            notes.push(format!("help: {h}"));
        }
        for f in &self.fixes {
            let edits: Vec<String> = f
                .edits
                .iter()
                .map(|e| {
                    let at = source.line_col(e.span.lo);
                    // Fix texts often end in a newline (a whole inserted line); show it escaped so
                    // the note stays on one line.
                    let replacement = e.replacement.escape_debug();
                    if e.span.is_empty() {
                        format!("insert `{replacement}` at {}:{}", at.line, at.column)
                    } else {
                        format!(
                            "replace `{}` at {}:{} with `{}`",
                            source.text.get(clamp(e.span, source)).unwrap_or(""),
                            at.line,
                            at.column,
                            replacement
                        )
                    }
                })
                .collect();
            notes.push(format!("fix: {} ({})", f.message, edits.join("; ")));
        }
        d = d.with_notes(notes);

        let config = Config::default();
        let mut out = Vec::new();
        let res = if color {
            let mut w = codespan_reporting::term::termcolor::Ansi::new(&mut out);
            term::emit_to_write_style(&mut w, &config, &file, &d)
        } else {
            let mut w = codespan_reporting::term::termcolor::NoColor::new(&mut out);
            term::emit_to_write_style(&mut w, &config, &file, &d)
        };
        if res.is_err() {
            // codespan only fails on spans outside the file, which `clamp` rules out; keep a
            // readable fallback rather than losing the diagnostic.
            return format!("{}[{}]: {}\n", self.severity, self.code, self.message);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One line per diagnostic: `file:line:col: error[E0301]: message` (for agents and grep).
    pub fn render_short(&self, source: &Source) -> String {
        let at = self
            .span
            .map(|s| source.line_col(s.lo))
            .map(|lc| format!("{}:{}:{}", source.name, lc.line, lc.column))
            .unwrap_or_else(|| source.name.clone());
        format!("{at}: {}[{}]: {}", self.severity, self.code, self.message)
    }
}

/// A [`Source`] seen as codespan's one-file database, reusing its line table.
struct CsSource<'s>(&'s Source);

impl<'a> codespan_reporting::files::Files<'a> for CsSource<'_> {
    type FileId = ();
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, (): ()) -> Result<&'a str, codespan_reporting::files::Error> {
        Ok(&self.0.name)
    }

    fn source(&'a self, (): ()) -> Result<&'a str, codespan_reporting::files::Error> {
        Ok(&self.0.text)
    }

    fn line_index(
        &'a self,
        (): (),
        byte_index: usize,
    ) -> Result<usize, codespan_reporting::files::Error> {
        Ok(self
            .0
            .line_starts()
            .binary_search(&byte_index)
            .unwrap_or_else(|next| next.saturating_sub(1)))
    }

    fn line_range(
        &'a self,
        (): (),
        line_index: usize,
    ) -> Result<std::ops::Range<usize>, codespan_reporting::files::Error> {
        let starts = self.0.line_starts();
        let len = self.0.text.len();
        let at = |i: usize| match i.cmp(&starts.len()) {
            std::cmp::Ordering::Less => Ok(starts[i]),
            std::cmp::Ordering::Equal => Ok(len),
            std::cmp::Ordering::Greater => Err(codespan_reporting::files::Error::LineTooLarge {
                given: i,
                max: starts.len() - 1,
            }),
        };
        Ok(at(line_index)?..at(line_index + 1)?)
    }
}

/// Default of [`cap_per_code`]: the first 100 diagnostics of each code are reported.
pub const DEFAULT_MAX_PER_CODE: usize = 100;

/// Keeps the first `max_per_code` diagnostics of each code (in the given order) and counts the
/// rest per code, so a pathological input (40,000 lines of an unknown operator) yields a
/// bounded report: "and 39,900 more E0202" instead of 200 MB of output.
pub fn cap_per_code(
    diags: Vec<Diagnostic>,
    max_per_code: usize,
) -> (Vec<Diagnostic>, std::collections::BTreeMap<Code, usize>) {
    let mut seen: std::collections::BTreeMap<Code, usize> = std::collections::BTreeMap::new();
    let mut omitted = std::collections::BTreeMap::new();
    let mut kept = Vec::with_capacity(diags.len().min(max_per_code.saturating_mul(8)));
    for d in diags {
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

fn clamp(span: Span, source: &Source) -> std::ops::Range<usize> {
    let len = source.text.len();
    let mut lo = (span.lo as usize).min(len);
    let mut hi = (span.hi as usize).min(len).max(lo);
    while !source.text.is_char_boundary(lo) {
        lo -= 1;
    }
    while !source.text.is_char_boundary(hi) {
        hi += 1;
    }
    lo..hi
}

/// `"s"` unless `n` is 1: for counts in messages ("2 parameters", "1 field").
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Applies every fix of the given applicability to `text`. Overlapping edits are skipped (the
/// first one, in span order, wins) so the result is always well defined.
pub fn apply_fixes(text: &str, diagnostics: &[Diagnostic], safe_only: bool) -> String {
    let mut edits: Vec<&Edit> = diagnostics
        .iter()
        .flat_map(|d| d.fixes.iter())
        .filter(|f| !safe_only || f.applicability == Applicability::Safe)
        .flat_map(|f| f.edits.iter())
        .collect();
    edits.sort_by_key(|e| (e.span.lo, e.span.hi));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0usize;
    for e in edits {
        let (lo, hi) = (e.span.lo as usize, e.span.hi as usize);
        if lo < pos || hi > text.len() || !text.is_char_boundary(lo) || !text.is_char_boundary(hi) {
            continue;
        }
        out.push_str(&text[pos..lo]);
        out.push_str(&e.replacement);
        pos = hi;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_apply_in_order_and_skip_overlaps() {
        let text = "a = f(x)\nb = g(x)\n";
        let d = Diagnostic::new(Code::E0110, "m").fix(Fix {
            message: "m".into(),
            applicability: Applicability::Safe,
            edits: vec![
                Edit {
                    span: Span::new(15, 16),
                    replacement: "x1".into(),
                },
                Edit {
                    span: Span::new(0, 0),
                    replacement: "# hi\n".into(),
                },
                Edit {
                    span: Span::new(15, 16),
                    replacement: "zz".into(),
                },
            ],
        });
        assert_eq!(apply_fixes(text, &[d], true), "# hi\na = f(x)\nb = g(x1)\n");
    }

    #[test]
    fn capping_keeps_the_first_of_each_code_and_counts_the_rest() {
        let mut v = Vec::new();
        for i in 0..5u32 {
            v.push(Diagnostic::new(Code::E0110, format!("a{i}")));
            v.push(Diagnostic::new(Code::E0103, format!("b{i}")));
        }
        v.push(Diagnostic::new(Code::E0104, "c"));
        let (kept, omitted) = cap_per_code(v, 2);
        let msgs: Vec<&str> = kept.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["a0", "b0", "a1", "b1", "c"]);
        assert_eq!(omitted.get(&Code::E0110), Some(&3));
        assert_eq!(omitted.get(&Code::E0103), Some(&3));
        assert_eq!(omitted.get(&Code::E0104), None);
    }

    #[test]
    fn human_rendering_of_many_diagnostics_is_linear() {
        // 20,000 lines and one diagnostic per line: rebuilding the line table per diagnostic
        // (the old SimpleFile route) took seconds here; with the shared table it is milliseconds.
        let text: String = (0..20_000)
            .map(|i| format!("E{i} = step.Frob(fn=f).apply(X)\n"))
            .collect();
        let src = Source::new("p.step", text);
        let start = std::time::Instant::now();
        let mut total = 0;
        for (i, lo) in src.line_starts().iter().take(20_000).enumerate() {
            let d = Diagnostic::new(Code::E0110, format!("d{i}")).at(Span::new(*lo, *lo + 2));
            total += d.render_human(&src, false).len();
        }
        assert!(total > 0);
        let took = start.elapsed();
        assert!(took.as_secs_f64() < 5.0, "{took:?}");
        let last =
            Diagnostic::new(Code::E0110, "end").at(Span::new(src.text.len(), src.text.len()));
        assert!(last.render_human(&src, false).contains("p.step:20001:1"));
    }

    #[test]
    fn json_shape_has_design_fields() {
        let src = Source::new("p.step", "E1 = step.Mapp(fn=f).apply(E0)\n");
        let d = Diagnostic::new(Code::E0110, "unexpected")
            .at(Span::new(5, 14))
            .note("expected x")
            .help("do y");
        let j = d.to_json(&src);
        assert_eq!(j["code"], "E0110");
        assert_eq!(j["severity"], "error");
        assert_eq!(j["span"]["line"], 1);
        assert_eq!(j["span"]["column"], 6);
        assert_eq!(j["span"]["end_column"], 15);
        assert_eq!(j["help"], "do y");
        assert!(
            d.render_human(&src, false)
                .contains("error[E0110]: unexpected")
        );
    }

    #[test]
    fn json_in_renders_each_span_against_its_own_text() {
        let task = Source::new("t.yaml", "fns:\n  f: x\n");
        let prog = Source::new("p.step", "E1 = f(E0)\n");
        let d = Diagnostic::new(Code::E0302, "mismatch")
            .at(Span::new(5, 10))
            .label(Span::new(7, 8).in_task(), "declared here");
        let sources = Sources {
            task: &task,
            program: Some(&prog),
        };
        let j = d.to_json_in(sources);
        assert_eq!(j["span"]["source"], "program");
        assert_eq!(j["span"]["file"], "p.step");
        assert_eq!(j["span"]["column"], 6);
        let l = &j["labels"][0]["span"];
        assert_eq!(l["source"], "task");
        assert_eq!(l["file"], "t.yaml");
        assert_eq!(
            (l["line"].as_u64(), l["column"].as_u64()),
            (Some(2), Some(3))
        );
        // Without a separate program, program spans are read in the task file.
        let only_task = Sources {
            task: &task,
            program: None,
        };
        assert_eq!(d.to_json_in(only_task)["span"]["file"], "t.yaml");
    }
}
