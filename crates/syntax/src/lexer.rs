//! The lexer: logos for the tokens, plus a layout pass that turns the token stream into logical
//! lines the way Python does (implicit joining inside brackets, `\` continuations, `;`
//! separators, comment and blank lines dropped).
//!
//! Why logical lines instead of a flat NEWLINE/INDENT/DEDENT stream: none of the three
//! languages has compound statements, so indentation carries no structure, only mistakes. The
//! layout pass reports those mistakes (E0103, E0104) itself and hands the parser one logical
//! line at a time. Parsing line by line is also the error recovery: a broken line costs one
//! diagnostic and the next line parses normally.
//!
//! Base indentation: the first line that holds a token sets column 0 of the block. The task
//! loader and answer extraction hand us whole files with everything but the code blanked to
//! spaces, so the code typically sits at a non-zero column and every span is a file offset.

use logos::Logos;

use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::span::{Span, line_start_at};

/// What logos sees. Keywords are classified afterwards (cheaper than one DFA arm each).
#[derive(Logos, Debug, Clone, Copy, PartialEq, Eq)]
// `\r` alone (old Mac line ends) and a byte-order mark are plain whitespace.
#[logos(skip r"[ \t\f\r\u{feff}]+")]
#[logos(skip(r"#[^\r\n]*", allow_greedy = true))]
#[logos(skip r"\\[ \t\f]*\r?\n")]
enum Raw {
    #[regex(r"\r?\n")]
    Newline,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Name,
    #[regex(r"[0-9][0-9_]*")]
    Int,
    #[regex(r"[0-9][0-9_]*\.[0-9_]*([eE][+-]?[0-9]+)?")]
    #[regex(r"\.[0-9][0-9_]*([eE][+-]?[0-9]+)?")]
    #[regex(r"[0-9][0-9_]*[eE][+-]?[0-9]+")]
    Float,
    #[regex(r#""([^"\\\r\n]|\\[^\r\n])*""#)]
    #[regex(r#"'([^'\\\r\n]|\\[^\r\n])*'"#)]
    Str,
    #[regex(r#"[fF]"([^"\\\r\n]|\\[^\r\n])*""#)]
    #[regex(r#"[fF]'([^'\\\r\n]|\\[^\r\n])*'"#)]
    FStr,
    // Longest match prefers the terminated forms above; these only win without a closing quote.
    #[regex(r#"[fF]?"([^"\\\r\n]|\\[^\r\n])*"#)]
    #[regex(r#"[fF]?'([^'\\\r\n]|\\[^\r\n])*"#)]
    Unterminated,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("//")]
    DSlash,
    #[token("%")]
    Percent,
    #[token("**")]
    DStar,
    #[token("@")]
    At,
    #[token("==")]
    EqEq,
    #[token("!=")]
    Ne,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("=")]
    Assign,
    #[token(".")]
    Dot,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(";")]
    Semi,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBrack,
    #[token("]")]
    RBrack,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("...")]
    Ellipsis,
    #[token("->")]
    Arrow,
    #[token("&")]
    Amp,
    #[token("|")]
    Pipe,
    #[token("^")]
    Caret,
    #[token("~")]
    Tilde,
    #[token("<<")]
    Shl,
    #[token(">>")]
    Shr,
    #[token(":=")]
    Walrus,
    #[regex(r"(\+|-|\*|/|//|%|\*\*|@|&|\||\^|<<|>>)=")]
    AugAssign,
}

/// A token as the grammar sees it. Literal payloads are the source text (strings keep their
/// quotes and prefix) so the parser decides how to decode them and the lexer never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok<'a> {
    Name(&'a str),
    Int(&'a str),
    Float(&'a str),
    Str(&'a str),
    FStr(&'a str),
    Return,
    If,
    Else,
    For,
    In,
    Not,
    And,
    Or,
    Is,
    Lambda,
    True,
    False,
    NoneKw,
    Plus,
    Minus,
    Star,
    Slash,
    DSlash,
    Percent,
    DStar,
    At,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Assign,
    Dot,
    Comma,
    Colon,
    Semi,
    LParen,
    RParen,
    LBrack,
    RBrack,
    LBrace,
    RBrace,
    Ellipsis,
    Arrow,
    Amp,
    Pipe,
    Caret,
    Tilde,
    Shl,
    Shr,
    Walrus,
    AugAssign(&'a str),
    /// Stands for text the lexer could not read (already reported).
    Error,
}

impl Tok<'_> {
    /// How the token reads in a message: "`foo`", "`(`", "a number".
    pub fn describe(&self) -> String {
        match self {
            Tok::Name(s) => format!("`{s}`"),
            Tok::Int(s) | Tok::Float(s) => format!("number `{s}`"),
            Tok::Str(s) | Tok::FStr(s) if s.chars().count() <= 24 => format!("string {s}"),
            Tok::Str(_) | Tok::FStr(_) => "string".to_string(),
            Tok::Error => "unreadable character".to_string(),
            other => format!("`{}`", other.text()),
        }
    }

    /// Source spelling for punctuation and keywords.
    pub fn text(&self) -> &str {
        match self {
            Tok::Name(s)
            | Tok::Int(s)
            | Tok::Float(s)
            | Tok::Str(s)
            | Tok::FStr(s)
            | Tok::AugAssign(s) => s,
            Tok::Return => "return",
            Tok::If => "if",
            Tok::Else => "else",
            Tok::For => "for",
            Tok::In => "in",
            Tok::Not => "not",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Is => "is",
            Tok::Lambda => "lambda",
            Tok::True => "True",
            Tok::False => "False",
            Tok::NoneKw => "None",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::DSlash => "//",
            Tok::Percent => "%",
            Tok::DStar => "**",
            Tok::At => "@",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Assign => "=",
            Tok::Dot => ".",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Semi => ";",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Ellipsis => "...",
            Tok::Arrow => "->",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Tilde => "~",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::Walrus => ":=",
            Tok::Error => "?",
        }
    }
}

/// `(start, token, end)` as lalrpop wants it; offsets are bytes into the whole text.
pub type Spanned<'a> = (usize, Tok<'a>, usize);

/// One logical line: a statement's tokens, `toks[range]` of [`Lexed::toks`].
#[derive(Debug, Clone)]
pub struct Line {
    pub range: std::ops::Range<usize>,
    /// Indentation width in bytes (spaces and tabs count one each).
    pub indent: usize,
    /// Indented under a line ending in `:` (the body of a compound statement, which none of our
    /// languages has; the header is reported, the body skipped).
    pub nested: bool,
    /// The line had a lexer error or an unclosed bracket (already reported).
    pub broken: bool,
    /// Ends with `:` at bracket depth 0.
    pub header: bool,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct Lexed<'a> {
    pub toks: Vec<Spanned<'a>>,
    pub lines: Vec<Line>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Lexed<'a> {
    pub fn line_toks(&self, line: &Line) -> &[Spanned<'a>] {
        self.toks.get(line.range.clone()).unwrap_or(&[])
    }
}

fn keyword(s: &str) -> Option<Tok<'static>> {
    Some(match s {
        "return" => Tok::Return,
        "if" => Tok::If,
        "else" => Tok::Else,
        "for" => Tok::For,
        "in" => Tok::In,
        "not" => Tok::Not,
        "and" => Tok::And,
        "or" => Tok::Or,
        "is" => Tok::Is,
        "lambda" => Tok::Lambda,
        "True" => Tok::True,
        "False" => Tok::False,
        "None" => Tok::NoneKw,
        _ => return None,
    })
}

fn convert<'a>(raw: Raw, s: &'a str) -> Tok<'a> {
    match raw {
        Raw::Name => keyword(s).unwrap_or(Tok::Name(s)),
        Raw::Int => Tok::Int(s),
        Raw::Float => Tok::Float(s),
        Raw::Str => Tok::Str(s),
        Raw::FStr => Tok::FStr(s),
        Raw::Unterminated | Raw::Newline => Tok::Error,
        Raw::Plus => Tok::Plus,
        Raw::Minus => Tok::Minus,
        Raw::Star => Tok::Star,
        Raw::Slash => Tok::Slash,
        Raw::DSlash => Tok::DSlash,
        Raw::Percent => Tok::Percent,
        Raw::DStar => Tok::DStar,
        Raw::At => Tok::At,
        Raw::EqEq => Tok::EqEq,
        Raw::Ne => Tok::Ne,
        Raw::Lt => Tok::Lt,
        Raw::Le => Tok::Le,
        Raw::Gt => Tok::Gt,
        Raw::Ge => Tok::Ge,
        Raw::Assign => Tok::Assign,
        Raw::Dot => Tok::Dot,
        Raw::Comma => Tok::Comma,
        Raw::Colon => Tok::Colon,
        Raw::Semi => Tok::Semi,
        Raw::LParen => Tok::LParen,
        Raw::RParen => Tok::RParen,
        Raw::LBrack => Tok::LBrack,
        Raw::RBrack => Tok::RBrack,
        Raw::LBrace => Tok::LBrace,
        Raw::RBrace => Tok::RBrace,
        Raw::Ellipsis => Tok::Ellipsis,
        Raw::Arrow => Tok::Arrow,
        Raw::Amp => Tok::Amp,
        Raw::Pipe => Tok::Pipe,
        Raw::Caret => Tok::Caret,
        Raw::Tilde => Tok::Tilde,
        Raw::Shl => Tok::Shl,
        Raw::Shr => Tok::Shr,
        Raw::Walrus => Tok::Walrus,
        Raw::AugAssign => Tok::AugAssign(s),
    }
}

/// A raw token before layout: `None` kind means a newline.
struct RawTok<'a> {
    tok: Option<Tok<'a>>,
    lo: usize,
    hi: usize,
}

fn raw_tokens<'a>(text: &'a str, base: usize, diags: &mut Vec<Diagnostic>) -> Vec<RawTok<'a>> {
    let mut out = Vec::with_capacity(text.len() / 3 + 1);
    let mut lex = Raw::lexer(text);
    while let Some(res) = lex.next() {
        let r = lex.span();
        let (lo, hi) = (r.start + base, r.end + base);
        let s = lex.slice();
        match res {
            Ok(Raw::Newline) => out.push(RawTok { tok: None, lo, hi }),
            Ok(Raw::Unterminated) => {
                diags.push(
                    Diagnostic::new(Code::E0102, "unterminated string literal")
                        .at(Span::new(lo, hi))
                        .help(format!(
                            "close the string with `{}` before the end of the line",
                            if s.trim_start_matches(['f', 'F']).starts_with('\'') {
                                '\''
                            } else {
                                '"'
                            }
                        )),
                );
                out.push(RawTok {
                    tok: Some(Tok::Error),
                    lo,
                    hi,
                });
            }
            Ok(raw) => out.push(RawTok {
                tok: Some(convert(raw, s)),
                lo,
                hi,
            }),
            Err(()) => {
                let ch = s.chars().next().unwrap_or('?');
                let shown = match ch {
                    '`' => "backtick `` ` ``".to_string(),
                    c if c.is_control() || c.is_whitespace() => {
                        format!("character U+{:04X}", c as u32)
                    }
                    c => format!("character `{c}`"),
                };
                let mut d = Diagnostic::new(Code::E0101, format!("unexpected {shown}"))
                    .at(Span::new(lo, hi));
                d = match ch {
                    '`' => d.help("backticks are not part of the language; remove them"),
                    '$' | '?' | '!' => d.help("this character has no meaning here; remove it"),
                    '\u{a0}' | '\u{200b}' | '\u{3000}' => {
                        d.help("replace this invisible Unicode space with a plain space")
                    }
                    '“' | '”' | '‘' | '’' => d.help("use plain ASCII quotes `\"` or `'`"),
                    '−' | '–' | '—' => d.help("use the ASCII minus sign `-`"),
                    '×' => d.help("use `*` for multiplication"),
                    _ => d,
                };
                diags.push(d);
                // Merge runs of bad characters into one token so a pasted binary blob does not
                // produce one diagnostic per byte.
                if let Some(prev) = out.last_mut()
                    && prev.tok == Some(Tok::Error)
                    && prev.hi == lo
                {
                    prev.hi = hi;
                    diags.pop();
                } else {
                    out.push(RawTok {
                        tok: Some(Tok::Error),
                        lo,
                        hi,
                    });
                }
            }
        }
    }
    out
}

/// Whether an unterminated string was reported at or after `from` (the current statement).
fn unterminated_in_line(diags: &[Diagnostic], from: usize) -> bool {
    // Diagnostics are pushed in text order: only the tail can belong to this statement.
    diags
        .iter()
        .rev()
        .take_while(|d| d.span.is_none_or(|s| s.lo as usize >= from))
        .any(|d| d.code == Code::E0102)
}

/// Whether `s` is one name token (`[A-Za-z_][A-Za-z0-9_]*`): what programs can refer to.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Lexes `text` into logical lines. Never fails: problems become diagnostics.
pub fn lex(text: &str) -> Lexed<'_> {
    let mut diags = Vec::new();
    let raw = raw_tokens(text, 0, &mut diags);
    layout(text, raw, diags)
}

/// Lexes a fragment `text[lo..hi]` (an f-string hole) into a flat token list with absolute
/// spans; newlines are dropped.
pub fn lex_fragment(text: &str, lo: usize, hi: usize) -> (Vec<Spanned<'_>>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let frag = text.get(lo..hi).unwrap_or("");
    let toks = raw_tokens(frag, lo, &mut diags)
        .into_iter()
        .filter_map(|t| t.tok.map(|k| (t.lo, k, t.hi)))
        .collect();
    (toks, diags)
}

struct Layout<'t> {
    text: &'t str,
    /// (width, uses tabs) of the first line.
    base: Option<usize>,
    indent_char: Option<(char, usize)>,
    header_indent: Option<usize>,
    /// Width of the previous line and whether it was reported as misindented.
    prev_width: Option<usize>,
    prev_reported: bool,
}

impl Layout<'_> {
    /// Checks the indentation of a line whose first token starts at `first`; returns (width,
    /// nested).
    fn indentation(&mut self, first: usize, diags: &mut Vec<Diagnostic>) -> (usize, bool) {
        let ls = line_start_at(self.text, first);
        let ws = self
            .text
            .get(ls..first)
            .unwrap_or("")
            .trim_start_matches(['\u{feff}', '\r']);
        let width = ws.len();
        let ws_span = Span::new(ls, first);
        let has_tab = ws.contains('\t');
        let has_space = ws.contains(' ');
        let mut mixed_reported = false;
        if has_tab && has_space {
            diags.push(
                Diagnostic::new(Code::E0103, "tabs and spaces mixed in indentation")
                    .at(ws_span)
                    .help("indent with spaces only"),
            );
            mixed_reported = true;
        } else if let Some(c) = ws.chars().next() {
            match self.indent_char {
                None => self.indent_char = Some((c, first)),
                Some((c0, at)) if c0 != c && !mixed_reported => {
                    let (this, other) = if c == '\t' {
                        ("a tab", "spaces")
                    } else {
                        ("spaces", "a tab")
                    };
                    diags.push(
                        Diagnostic::new(
                            Code::E0103,
                            format!(
                                "this line is indented with {this}, an earlier one with {other}"
                            ),
                        )
                        .at(ws_span)
                        .label(
                            Span::new(line_start_at(self.text, at), at),
                            "indented differently here",
                        )
                        .help("indent with spaces only"),
                    );
                    mixed_reported = true;
                }
                Some(_) => {}
            }
        }
        let base = *self.base.get_or_insert(width);
        let nested = self.header_indent.is_some_and(|h| width > h);
        if !nested {
            self.header_indent = None;
        }
        let mut reported = false;
        if !nested && width != base && !mixed_reported {
            // One report per run of equally misindented lines.
            if !(self.prev_reported && self.prev_width == Some(width)) {
                let d = if width > base {
                    Diagnostic::new(Code::E0104, "unexpected indentation")
                        .at(ws_span)
                        .note("statements are not nested: every line starts at the same column as the first one")
                        .help("remove the extra indentation")
                } else {
                    Diagnostic::new(
                        Code::E0104,
                        "this line is indented less than the first line of the block",
                    )
                    .at(ws_span)
                    .help("indent every line of the block to the same column")
                };
                diags.push(d);
            }
            reported = true;
        }
        self.prev_width = Some(width);
        self.prev_reported = reported;
        (width, nested)
    }

    /// At a newline inside brackets: does the next physical line look like the start of a new
    /// statement (so the bracket was left open by mistake)? Only lines at or left of the base
    /// column count, and only statement shapes that cannot continue an expression.
    fn looks_like_new_stmt(&self, raw: &[RawTok<'_>], j: usize) -> bool {
        let Some(first) = raw.get(j) else {
            return false;
        };
        let Some(base) = self.base else { return false };
        let col = first.lo - line_start_at(self.text, first.lo);
        if col > base {
            return false;
        }
        let tok = |k: usize| raw.get(j + k).and_then(|t| t.tok);
        match tok(0) {
            Some(Tok::Return) => true,
            Some(Tok::Name(_)) => {
                let mut k = 1;
                let mut multi = false;
                while tok(k) == Some(Tok::Comma) && matches!(tok(k + 1), Some(Tok::Name(_))) {
                    k += 2;
                    multi = true;
                }
                if tok(k) != Some(Tok::Assign) {
                    return false;
                }
                multi
                    || matches!(tok(k + 1), Some(Tok::LBrack))
                    || (matches!(tok(k + 1), Some(Tok::Name(_)))
                        && matches!(tok(k + 2), Some(Tok::Dot)))
            }
            _ => false,
        }
    }
}

// The final `finish_line!` leaves its bookkeeping writes unread.
#[allow(unused_assignments)]
fn layout<'a>(text: &'a str, raw: Vec<RawTok<'a>>, mut diags: Vec<Diagnostic>) -> Lexed<'a> {
    let mut st = Layout {
        text,
        base: None,
        indent_char: None,
        header_indent: None,
        prev_width: None,
        prev_reported: false,
    };
    let mut toks: Vec<Spanned<'a>> = Vec::with_capacity(raw.len());
    let mut lines = Vec::new();
    // Open brackets: (token, start).
    let mut stack: Vec<(Tok<'a>, usize)> = Vec::new();
    let mut line_begin = 0usize; // index into toks
    let mut cur_indent = 0usize;
    let mut cur_nested = false;
    let mut cur_broken = false;
    let mut at_line_start = true;

    macro_rules! finish_line {
        () => {
            if toks.len() > line_begin {
                let lo = toks[line_begin].0;
                let hi = toks[toks.len() - 1].2;
                let header = stack.is_empty() && matches!(toks.last(), Some((_, Tok::Colon, _)));
                let broken = cur_broken || toks[line_begin..].iter().any(|t| t.1 == Tok::Error);
                if header && !cur_nested {
                    st.header_indent = Some(cur_indent);
                }
                lines.push(Line {
                    range: line_begin..toks.len(),
                    indent: cur_indent,
                    nested: cur_nested,
                    broken,
                    header,
                    span: Span::new(lo, hi),
                });
            }
            line_begin = toks.len();
            cur_broken = false;
        };
    }

    let unclosed = |stack: &[(Tok<'a>, usize)], end: usize, eof: bool| -> Diagnostic {
        let (open, at) = stack.first().copied().unwrap_or((Tok::LParen, end));
        let close = match open {
            Tok::LBrack => "]",
            Tok::LBrace => "}",
            _ => ")",
        };
        let msg = if eof {
            format!("unexpected end of input: `{}` is never closed", open.text())
        } else {
            format!(
                "`{}` is never closed before the next statement",
                open.text()
            )
        };
        Diagnostic::new(Code::E0111, msg)
            .at(Span::new(end, end))
            .label(
                Span::new(at, at + open.text().len()),
                format!("this `{}` needs a matching `{close}`", open.text()),
            )
            .help(format!("add `{close}` where the bracket's contents end"))
    };

    let mut i = 0;
    while i < raw.len() {
        let t = &raw[i];
        let Some(tok) = t.tok else {
            // newline
            if stack.is_empty() {
                finish_line!();
                at_line_start = true;
            } else {
                let mut j = i + 1;
                while raw.get(j).is_some_and(|r| r.tok.is_none()) {
                    j += 1;
                }
                if st.looks_like_new_stmt(&raw, j) {
                    let end = toks.last().map_or(t.lo, |x| x.2);
                    // An unterminated string swallowed the closing bracket: one mistake, one
                    // report.
                    if !unterminated_in_line(&diags, toks.get(line_begin).map_or(end, |t| t.0)) {
                        diags.push(unclosed(&stack, end, false));
                    }
                    stack.clear();
                    cur_broken = true;
                    finish_line!();
                    at_line_start = true;
                }
            }
            i += 1;
            continue;
        };
        if at_line_start {
            let (w, nested) = st.indentation(t.lo, &mut diags);
            cur_indent = w;
            cur_nested = nested;
            at_line_start = false;
        }
        match tok {
            Tok::LParen | Tok::LBrack | Tok::LBrace => stack.push((tok, t.lo)),
            Tok::RParen | Tok::RBrack | Tok::RBrace => {
                let want = match tok {
                    Tok::RParen => Tok::LParen,
                    Tok::RBrack => Tok::LBrack,
                    _ => Tok::LBrace,
                };
                // A mismatched closer is left for the parser to report; pop to the matching
                // opener if there is one so depth tracking stays sane.
                if let Some(pos) = stack.iter().rposition(|(o, _)| *o == want) {
                    stack.truncate(pos);
                }
            }
            Tok::Semi if stack.is_empty() => {
                finish_line!();
                i += 1;
                continue;
            }
            _ => {}
        }
        toks.push((t.lo, tok, t.hi));
        i += 1;
    }
    if !stack.is_empty() {
        let end = toks.last().map_or(text.len(), |x| x.2);
        if !unterminated_in_line(&diags, toks.get(line_begin).map_or(end, |t| t.0)) {
            diags.push(unclosed(&stack, end, true));
        }
        cur_broken = true;
    }
    finish_line!();
    Lexed {
        toks,
        lines,
        diagnostics: diags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_ident("E0"));
        assert!(is_ident("_x1"));
        assert!(!is_ident("1x"));
        assert!(!is_ident("a b"));
        assert!(!is_ident(""));
    }

    fn kinds(text: &str) -> Vec<Vec<String>> {
        let lx = lex(text);
        lx.lines
            .iter()
            .map(|l| {
                lx.line_toks(l)
                    .iter()
                    .map(|t| t.1.text().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn numbers_and_operators() {
        let lx = lex("x = 1e-5 + .5 * 2. // 3 ** -y @ z != w ...");
        let toks: Vec<_> = lx.toks.iter().map(|t| t.1).collect();
        assert_eq!(
            toks,
            vec![
                Tok::Name("x"),
                Tok::Assign,
                Tok::Float("1e-5"),
                Tok::Plus,
                Tok::Float(".5"),
                Tok::Star,
                Tok::Float("2."),
                Tok::DSlash,
                Tok::Int("3"),
                Tok::DStar,
                Tok::Minus,
                Tok::Name("y"),
                Tok::At,
                Tok::Name("z"),
                Tok::Ne,
                Tok::Name("w"),
                Tok::Ellipsis,
            ]
        );
        assert!(lx.diagnostics.is_empty());
    }

    #[test]
    fn implicit_joining_and_comments() {
        let k = kinds("\n\n   a = f(1,\n  2)  # c\n   # only a comment\n   b = 2; c = 3\n");
        assert_eq!(
            k,
            vec![
                vec!["a", "=", "f", "(", "1", ",", "2", ")"],
                vec!["b", "=", "2"],
                vec!["c", "=", "3"],
            ]
        );
    }

    #[test]
    fn base_indentation_is_first_line() {
        let lx = lex("    a = 1\n    b = 2\n");
        assert!(lx.diagnostics.is_empty(), "{:?}", lx.diagnostics);
        let lx = lex("    a = 1\n      b = 2\n      c = 3\n");
        assert_eq!(lx.diagnostics.len(), 1);
        assert_eq!(lx.diagnostics[0].code, Code::E0104);
    }

    #[test]
    fn tabs_and_spaces() {
        let lx = lex("a = 1\n\t b = 2\n");
        assert!(lx.diagnostics.iter().any(|d| d.code == Code::E0103));
    }

    #[test]
    fn strings_and_errors() {
        let lx = lex("a = 'x' + \"y\" + f\"{E}_value\"\nb = \"oops\nc = $\n");
        let codes: Vec<_> = lx.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec![Code::E0102, Code::E0101]);
        assert!(lx.lines[1].broken && lx.lines[2].broken && !lx.lines[0].broken);
        assert!(lx.toks.iter().any(|t| t.1 == Tok::FStr("f\"{E}_value\"")));
    }

    #[test]
    fn unclosed_bracket_stops_at_next_statement() {
        let lx = lex("a = f(x\nb = step.Map(fn=g).apply(a)\nreturn b\n");
        assert_eq!(lx.lines.len(), 3);
        assert_eq!(lx.diagnostics.len(), 1);
        assert_eq!(lx.diagnostics[0].code, Code::E0111);
        assert_eq!(lx.diagnostics[0].labels[0].span, Span::new(5, 6));
    }

    #[test]
    fn crlf_and_bom() {
        let lx = lex("\u{feff}a = 1\r\nb = 2\r\n");
        assert!(lx.diagnostics.is_empty(), "{:?}", lx.diagnostics);
        assert_eq!(lx.lines.len(), 2);
    }

    #[test]
    fn multibyte_error_span() {
        let lx = lex("a = b × c");
        assert_eq!(lx.diagnostics[0].span, Some(Span::new(6, 8)));
    }
}
