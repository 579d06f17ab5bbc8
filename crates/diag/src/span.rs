//! Byte spans and line/column lookup.
//!
//! Spans are byte offsets into one source text (the same unit logos and codespan use), so the
//! lexer, the parser and both renderers agree without conversion. Line/column pairs are only
//! computed at the edge, when a diagnostic is rendered or serialised.

use serde::Serialize;

/// Which text a span points into: the task file, or a separately supplied program (an
/// answer). Code embedded in the task file (reference impl, fn bodies, `global`, snippets) is
/// parsed in place and so points into the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceId {
    /// The program being checked or verified (the default: what the parser is usually given).
    #[default]
    Program,
    /// The task file.
    Task,
}

impl SourceId {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::Program => "program",
            SourceId::Task => "task",
        }
    }

    pub fn is_program(&self) -> bool {
        *self == SourceId::Program
    }
}

/// A half-open byte range `[lo, hi)` into the text named by `source`.
///
/// Twelve bytes and `Copy`. [`Span::new`] points into the program; [`Span::in_task`] /
/// [`Span::with_source`] retag a span (the task loader does this for everything it parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Span {
    pub lo: u32,
    pub hi: u32,
    /// Not serialised when it is the default, so serialised trees keep their old shape.
    #[serde(skip_serializing_if = "SourceId::is_program")]
    pub source: SourceId,
}

impl Span {
    pub const DUMMY: Span = Span {
        lo: 0,
        hi: 0,
        source: SourceId::Program,
    };

    /// A span into the program. Use [`Span::in_task`] for the task file.
    pub fn new(lo: usize, hi: usize) -> Span {
        // Sources are bounded far below 4 GiB by the loaders; saturate rather than wrap so a
        // pathological input can only blur a location, never point it somewhere wrong.
        let clamp = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Span {
            lo: clamp(lo),
            hi: clamp(hi.max(lo)),
            source: SourceId::Program,
        }
    }

    /// The same bytes of the text `source`.
    pub fn with_source(self, source: SourceId) -> Span {
        Span { source, ..self }
    }

    /// The same bytes of the task file.
    pub fn in_task(self) -> Span {
        self.with_source(SourceId::Task)
    }

    /// The smallest span covering both (in `self`'s source).
    pub fn to(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
            source: self.source,
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.lo as usize..self.hi as usize
    }

    pub fn len(self) -> usize {
        (self.hi - self.lo) as usize
    }

    pub fn is_empty(self) -> bool {
        self.hi == self.lo
    }

    /// Shift by `offset` bytes (used when a program was extracted from a larger answer text).
    pub fn shifted(self, offset: u32) -> Span {
        Span {
            lo: self.lo.saturating_add(offset),
            hi: self.hi.saturating_add(offset),
            source: self.source,
        }
    }
}

/// Byte offset of the start of the line holding byte `pos` of `text`: for the places that need
/// one line's indentation without building a [`Source`]. 0 when `pos` is not a char boundary
/// inside `text`.
pub fn line_start_at(text: &str, pos: usize) -> usize {
    text.get(..pos)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// A 1-based line/column position. Columns count characters, not bytes, because that is what
/// editors and LLMs count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineCol {
    pub line: u32,
    pub column: u32,
}

/// A source text with its line index; the unit renderers work on.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and character column of a byte offset (clamped to the text).
    pub fn line_col(&self, offset: u32) -> LineCol {
        let mut offset = (offset as usize).min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count();
        LineCol {
            line: line as u32 + 1,
            column: column as u32 + 1,
        }
    }

    /// Byte offsets of the starts of the lines (the first is 0).
    pub(crate) fn line_starts(&self) -> &[usize] {
        &self.line_starts
    }

    /// Byte offset of the start of a 1-based line (clamped).
    pub fn line_start(&self, line: u32) -> usize {
        let idx = (line.max(1) as usize - 1).min(self.line_starts.len() - 1);
        self.line_starts[idx]
    }

    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let src = Source::new("t", "ab\nxé=1\n");
        assert_eq!(src.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(src.line_col(3), LineCol { line: 2, column: 1 });
        // 'é' is two bytes; the '=' after it is the third character of line 2.
        assert_eq!(src.line_col(6), LineCol { line: 2, column: 3 });
        assert_eq!(src.line_col(999), LineCol { line: 3, column: 1 });
    }

    #[test]
    fn span_union_and_shift() {
        let a = Span::new(3, 5);
        let b = Span::new(1, 4);
        assert_eq!(a.to(b), Span::new(1, 5));
        assert_eq!(a.shifted(10), Span::new(13, 15));
        assert_eq!(Span::new(5, 2), Span::new(5, 5));
    }

    #[test]
    fn source_id_is_kept_and_small() {
        let t = Span::new(3, 5).in_task();
        assert_eq!(t.source, SourceId::Task);
        assert_eq!(t.shifted(1).source, SourceId::Task);
        assert_eq!(t.to(Span::new(0, 9)), Span::new(0, 9).in_task());
        assert_eq!(Span::DUMMY.source, SourceId::Program);
        assert!(std::mem::size_of::<Span>() <= 12);
    }
}
