//! The YAML layer: a generic tree of located nodes read with serde-saphyr under strict budgets.
//!
//! Why a generic tree instead of deriving the task structs: a derived deserializer stops at the
//! first wrong field, and knows neither where an unknown key sits nor where a mapping ends. The
//! tree keeps a byte span for every key and value, so the loader can report every problem of a
//! file at once, each at its exact place, and can point embedded code back into the file.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Source, Span};

/// Largest task file the loader reads (bytes). Real task files are a few KiB.
pub const MAX_TASK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct YNode {
    pub kind: YKind,
    /// Where the node is used (for an alias: the `*ref`). Collections: an empty span at their
    /// first entry or opening bracket.
    pub span: Span,
    /// Where the node's text is (for an alias: the anchored definition). Embedded code is
    /// located through this one.
    pub def: Span,
    /// End of the last byte covered by the node or any of its children.
    pub end: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum YKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
}

impl YNode {
    /// The span from the node's start to the end of its last child.
    pub fn extent(&self) -> Span {
        Span {
            lo: self.span.lo,
            hi: self.end.max(self.span.hi),
            ..self.span
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            YKind::Null => "nothing (null)",
            YKind::Bool(_) => "a boolean",
            YKind::Int(_) => "an integer",
            YKind::Float(_) => "a number",
            YKind::Str(_) => "a string",
            YKind::Seq(_) => "a list",
            YKind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            YKind::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What serde produces before spans are converted: serde-saphyr's `Spanned` around a raw kind.
enum RawKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawKind>>),
    Map(Vec<(Spanned<RawKind>, Spanned<RawKind>)>),
}

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawKind, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawKind, E> {
        Ok(RawKind::Null)
    }
    fn visit_none<E>(self) -> Result<RawKind, E> {
        Ok(RawKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawKind, D::Error> {
        RawKind::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawKind, E> {
        Ok(RawKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawKind, E> {
        Ok(RawKind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawKind, E> {
        Ok(i64::try_from(v).map_or(RawKind::Float(v as f64), RawKind::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawKind, E> {
        Ok(i64::try_from(v).map_or(RawKind::Float(v as f64), RawKind::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<RawKind, E> {
        Ok(i64::try_from(v).map_or(RawKind::Float(v as f64), RawKind::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawKind, E> {
        Ok(RawKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawKind, E> {
        Ok(RawKind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawKind, E> {
        Ok(RawKind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawKind, E> {
        Ok(RawKind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
        let mut items = Vec::new();
        while let Some(x) = a.next_element::<Spanned<RawKind>>()? {
            items.push(x);
        }
        Ok(RawKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key::<Spanned<RawKind>>()? {
            let v = a.next_value::<Spanned<RawKind>>()?;
            entries.push((k, v));
        }
        Ok(RawKind::Map(entries))
    }
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Task files need a nesting depth of about 5; the limits keep a hostile file from costing
    // more than a few milliseconds or megabytes (and bound the recursion of the visitor above).
    budget.max_depth = 24;
    budget.flow_nesting_limit = 24;
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    // Two, so a second document gets the parser's own "multiple documents" error (E0501)
    // rather than a budget breach.
    budget.max_documents = 2;
    budget.max_total_scalar_bytes = 4 * MAX_TASK_BYTES;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = 4 * MAX_TASK_BYTES;
    budget.max_merge_keys = 100;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = 100_000;
    opts.alias_limits.max_replay_stack_depth = 16;
    opts.with_snippet = false;
    // `yes`/`no`/`on`/`off` stay strings: a stream may well be called `on`.
    opts.strict_booleans = true;
    // `-.inf` in an `init` list arrives as a string the loader understands, instead of failing
    // the whole document.
    opts.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    opts
}

/// Reads `source` as one YAML document. Errors are E0501 (syntax) or E0508 (budgets).
pub(crate) fn parse(source: &Source) -> Result<YNode, Diagnostic> {
    let text = source.text.as_str();
    if text.len() > MAX_TASK_BYTES {
        return Err(Diagnostic::new(
            Code::E0508,
            format!(
                "task file is {} bytes; the limit is {} bytes",
                text.len(),
                MAX_TASK_BYTES
            ),
        )
        .at(Span::new(0, 0)));
    }
    match serde_saphyr::from_str_with_options::<Spanned<RawKind>>(text, options()) {
        Ok(root) => Ok(convert(root, source)),
        Err(e) => Err(yaml_error(&e, source)),
    }
}

fn yaml_error(e: &serde_saphyr::Error, source: &Source) -> Diagnostic {
    // Alias and snippet wrappers carry the real error inside; the location of the outermost
    // one (where the alias was used) is the one to report.
    let mut inner = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    let raw = inner.to_string();
    let message = strip_location_suffix(&raw);
    // The parser's own nesting guard reports as a plain message, not a budget breach.
    let budget = matches!(inner, serde_saphyr::Error::Budget { .. })
        || message.contains("recursion limit")
        || message.contains("nesting limit");
    let span = e.location().map(|l| location_span(&l, source));
    let mut d = if budget {
        Diagnostic::new(
            Code::E0508,
            format!("task file exceeds a YAML budget: {message}"),
        )
        .help("task files are a few KiB; remove deep nesting and alias chains")
    } else {
        let d = Diagnostic::new(Code::E0501, format!("invalid YAML: {message}"));
        let lower = message.to_ascii_lowercase();
        if lower.contains("quoted scalar") {
            d.help(
                "a quoted value is not closed, or continues on a line indented less than its key: \
                 close the quote, or use a `|` block for multi-line code",
            )
        } else if lower.contains("duplicate") {
            d.help("each key may appear once per mapping; remove or rename the repeated one")
        } else if lower.contains("indent")
            || lower.contains("block collection")
            || lower.contains("block mapping")
            || lower.contains("mapping values")
            || lower.contains("expected '-'")
            || lower.contains("did not find expected key")
        {
            d.help(
                "check the indentation: the keys of one mapping start in the same column, \
                 list items start with `- `, and only spaces may indent",
            )
        } else if lower.contains("tab") {
            d.help("YAML indentation must use spaces, not tabs")
        } else if lower.contains("multiple") && lower.contains("document") {
            d.help("a task file holds exactly one YAML document; remove the `---` separator")
        } else {
            d
        }
    };
    d.span = Some(span.unwrap_or(Span::new(0, 0)));
    d
}

/// serde-saphyr appends " at line L, column C"; the diagnostic carries that as its span. Some
/// messages also carry advice for programmers using serde-saphyr, which is cut.
fn strip_location_suffix(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("").trim();
    let first = match first.find(" at line ") {
        Some(i) if first[i..].contains("column") => first[..i].trim_end(),
        _ => first,
    };
    let first = first
        .split_once(", set DuplicateKeyPolicy")
        .map_or(first, |(a, _)| a);
    if first.starts_with("multiple YAML documents detected") {
        return "more than one YAML document in the file".to_owned();
    }
    first.to_owned()
}

/// A location's span as file bytes: serde-saphyr's byte offsets when it has them, else the
/// 1-based line and character column converted through `source`.
fn location_span(l: &Location, source: &Source) -> Span {
    let s = l.span();
    let len = source.text.len();
    if let (Some(off), Some(blen)) = (s.byte_offset(), s.byte_len()) {
        let lo = usize::try_from(off).unwrap_or(len).min(len);
        let hi = lo
            .saturating_add(usize::try_from(blen).unwrap_or(0))
            .min(len);
        if source.text.is_char_boundary(lo) && source.text.is_char_boundary(hi) {
            return Span::new(lo, hi);
        }
    }
    let lo = line_col_to_offset(source, l.line(), l.column());
    Span::new(lo, lo)
}

fn line_col_to_offset(source: &Source, line: u64, column: u64) -> usize {
    if line == 0 {
        return 0;
    }
    let start = source.line_start(u32::try_from(line).unwrap_or(u32::MAX));
    let rest = source.text.get(start..).unwrap_or("");
    let col = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
    let mut off = start;
    for (i, (b, ch)) in rest.char_indices().enumerate() {
        if i >= col || ch == '\n' {
            return start + b;
        }
        off = start + b + ch.len_utf8();
    }
    off
}

fn convert(raw: Spanned<RawKind>, source: &Source) -> YNode {
    let span = location_span(&raw.referenced, source);
    let def = location_span(&raw.defined, source);
    let (kind, end) = match raw.value {
        RawKind::Null => (YKind::Null, span.hi),
        RawKind::Bool(b) => (YKind::Bool(b), span.hi),
        RawKind::Int(i) => (YKind::Int(i), span.hi),
        RawKind::Float(f) => (YKind::Float(f), span.hi),
        RawKind::Str(s) => (YKind::Str(s), span.hi),
        RawKind::Seq(items) => {
            let items: Vec<YNode> = items.into_iter().map(|x| convert(x, source)).collect();
            let end = items.iter().map(|x| x.end).fold(span.hi, u32::max);
            (YKind::Seq(items), end)
        }
        RawKind::Map(entries) => {
            let entries: Vec<(YNode, YNode)> = entries
                .into_iter()
                .map(|(k, v)| (convert(k, source), convert(v, source)))
                .collect();
            let end = entries
                .iter()
                .map(|(k, v)| k.end.max(v.end))
                .fold(span.hi, u32::max);
            (YKind::Map(entries), end)
        }
    };
    YNode {
        kind,
        span,
        def,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> YNode {
        parse(&Source::new("t.yaml", text)).unwrap()
    }

    #[test]
    fn spans_are_file_bytes() {
        let text = "a: foo\nb:\n  - 1\n  - \"x y\"\n";
        let t = tree(text);
        let YKind::Map(entries) = &t.kind else {
            panic!("not a map")
        };
        assert_eq!(&text[entries[0].1.span.range()], "foo");
        let YKind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(&text[items[1].span.range()], "\"x y\"");
        assert_eq!(t.extent().hi as usize, text.len() - 1);
    }

    #[test]
    fn non_finite_and_yes_stay_strings() {
        let t = tree("a: [-.inf, yes]\n");
        let YKind::Map(entries) = &t.kind else {
            panic!("not a map")
        };
        let YKind::Seq(items) = &entries[0].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].as_str(), Some("-.inf"));
        assert_eq!(items[1].as_str(), Some("yes"));
    }

    #[test]
    fn syntax_errors_are_located() {
        let src = Source::new("t.yaml", "a:\n  - x\n   b: 1\n");
        let d = parse(&src).unwrap_err();
        assert_eq!(d.code, Code::E0501);
        let at = src.line_col(d.span.unwrap().lo);
        assert_eq!(at.line, 3);
        assert!(!d.message.contains("at line"), "{}", d.message);
    }

    #[test]
    fn alias_bombs_hit_the_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let d = parse(&Source::new("t.yaml", text)).unwrap_err();
        assert_eq!(d.code, Code::E0508, "{}", d.message);
    }

    #[test]
    fn deep_nesting_hits_the_budget() {
        let text = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        let d = parse(&Source::new("t.yaml", text)).unwrap_err();
        assert_eq!(d.code, Code::E0508, "{}", d.message);
        let mut text = String::new();
        for i in 0..60 {
            text.push_str(&" ".repeat(i));
            text.push_str("k:\n");
        }
        let d = parse(&Source::new("t.yaml", text)).unwrap_err();
        assert_eq!(d.code, Code::E0508, "{}", d.message);
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let text = "#".repeat(MAX_TASK_BYTES + 1);
        let d = parse(&Source::new("t.yaml", text)).unwrap_err();
        assert_eq!(d.code, Code::E0508);
    }
}
