//! Finding the program in a raw LLM answer: bare, a YAML document with an `impl:` key, a fenced
//! code block around either, and prose around the fence.
//!
//! The program is not copied out: everything outside it is blanked to spaces (newlines kept),
//! so the parser runs on a text of the same length and every span it reports is an offset into
//! the original answer. The lexer's base-indentation rule absorbs the YAML block's indentation.

use crate::codes::Code;
use crate::diag::Diagnostic;
use crate::span::Span;

/// How the program was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    Bare,
    Fenced,
    Yaml,
    FencedYaml,
}

#[derive(Debug, Clone)]
pub struct Extraction {
    pub kind: AnswerKind,
    /// The program's region in the answer (for YAML: the block scalar's content lines).
    pub region: Span,
    /// The answer with everything outside `region` blanked to spaces, newlines kept.
    pub blanked: String,
    /// Problems with the answer's shape (a line outside the `impl: |` block, …).
    pub diagnostics: Vec<Diagnostic>,
}

impl Extraction {
    /// The program text exactly as it appears in the answer.
    pub fn program<'a>(&self, answer: &'a str) -> &'a str {
        answer.get(self.region.range()).unwrap_or("")
    }
}

struct LineInfo<'a> {
    lo: usize,
    /// End of the line's content (before `\n`).
    hi: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<LineInfo<'_>> {
    let mut out = Vec::new();
    let mut lo = 0;
    for l in text.split_inclusive('\n') {
        let content = l.trim_end_matches(['\n', '\r']);
        out.push(LineInfo {
            lo,
            hi: lo + content.len(),
            text: content,
        });
        lo += l.len();
    }
    out
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start_matches([' ', '\t']).len()
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn fence_marker(s: &str) -> Option<(&str, &str)> {
    let t = s.trim_start();
    for m in ["```", "~~~"] {
        if t.starts_with(m) {
            let ch = m.as_bytes()[0] as char;
            let n = t.len() - t.trim_start_matches(ch).len();
            return Some((&t[..n], t[n..].trim()));
        }
    }
    None
}

/// (content line range, info string)
fn fenced_blocks(ls: &[LineInfo<'_>]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ls.len() {
        if let Some((marker, info)) = fence_marker(ls[i].text) {
            let start = i + 1;
            let mut j = start;
            let mut end = ls.len();
            while j < ls.len() {
                if let Some((m2, info2)) = fence_marker(ls[j].text)
                    && info2.is_empty()
                    && m2.starts_with(marker)
                {
                    end = j;
                    break;
                }
                j += 1;
            }
            out.push((start, end, info.to_ascii_lowercase()));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn looks_like_program(ls: &[LineInfo<'_>]) -> bool {
    ls.iter().any(|l| {
        let t = l.text.trim_start();
        t.contains("step.")
            || t.starts_with("return")
            || t.starts_with("impl:")
            || t.starts_with("impl :")
    })
}

/// `key:` / `- item` / comments / document markers: what may follow a YAML block scalar.
fn looks_like_yaml(s: &str) -> bool {
    let t = s.trim_start();
    if t.starts_with('#')
        || t.starts_with("- ")
        || t == "-"
        || t.starts_with("---")
        || t.starts_with("...")
    {
        return true;
    }
    let key_len = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(t.len());
    key_len > 0
        && t[key_len..].trim_start().starts_with(':')
        && !t[key_len..].trim_start().starts_with(":=")
}

fn impl_key(s: &str) -> Option<usize> {
    let t = s.trim_start();
    let rest = t.strip_prefix("impl")?;
    let rest_t = rest.trim_start();
    rest_t.strip_prefix(':')?;
    Some(s.len() - rest_t.len() + 1)
}

/// `NAME (, NAME)* =` (not `==`), `return`, or a comment: how program lines start.
fn starts_statement(s: &str) -> bool {
    let t = s.trim_start();
    if t.starts_with('#') || t == "return" || t.starts_with("return ") {
        return true;
    }
    let mut rest = t;
    loop {
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if n == 0 || rest.as_bytes()[0].is_ascii_digit() {
            return false;
        }
        rest = rest[n..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            continue;
        }
        return rest.starts_with('=') && !rest.starts_with("==");
    }
}

/// Words that start a line of Python code, not of prose (case-sensitive, so "For each row"
/// stays prose).
const CODE_STARTS: &[&str] = &[
    "import ",
    "from ",
    "for ",
    "while ",
    "def ",
    "class ",
    "if ",
    "elif ",
    "else:",
    "with ",
    "let ",
    "try:",
    "except",
    "lambda ",
    "assert ",
    "raise ",
    "print(",
    "async ",
    "await ",
    "global ",
    "nonlocal ",
    "del ",
    "pass",
    "yield ",
    "return",
];

/// A line that would be code if it were kept: it uses `step.`, has an `=`, or starts with a
/// Python keyword. Such a line is never dropped silently as prose (E0117 names it).
fn looks_like_code(s: &str) -> bool {
    let t = s.trim_start_matches(|c: char| c.is_whitespace() || c.is_control() || is_invisible(c));
    t.contains("step.") || t.contains('=') || CODE_STARTS.iter().any(|k| t.starts_with(k))
}

/// Invisible or direction-changing characters that can precede code (a BOM, U+202E).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{feff}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// E0117 for a line of code that falls outside the program found around it.
fn dropped_code(l: &LineInfo<'_>, program_starts: usize) -> Diagnostic {
    let t = l.text.trim();
    let shown: String = t.chars().take(60).collect();
    let ell = if t.chars().count() > 60 { "…" } else { "" };
    let lead = l.text.len() - l.text.trim_start().len();
    let why = if t.starts_with("let ") {
        "STeP programs have no `let`: write `NAME = step.Op(...).apply(...)`"
    } else if t.starts_with("import ") || t.starts_with("from ") {
        "a STeP program cannot import anything: remove the line"
    } else if starts_annotated(t) {
        "type annotations are not part of STeP: write `NAME = ...` without `: Type`"
    } else if t
        .chars()
        .next()
        .is_some_and(|c| c.is_control() || is_invisible(c))
    {
        "the line starts with an invisible or control character: delete it"
    } else {
        "STeP programs are straight-line `NAME = step.Op(...).apply(...)` statements ending in `return`"
    };
    Diagnostic::new(
        Code::E0117,
        format!("this line looks like code but is outside the program, so it was not checked: `{shown}{ell}`"),
    )
    .at(Span::new(l.lo + lead, l.hi))
    .note(format!(
        "the program was taken to be lines {}..: the first line of the form `NAME = ...` up to `return`",
        program_starts + 1
    ))
    .help(why)
}

/// `NAME: Type = ...` (an annotated assignment).
fn starts_annotated(t: &str) -> bool {
    let n = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(t.len());
    n > 0 && t[n..].trim_start().starts_with(':') && t.contains('=')
}

/// The line range of a bare program with prose around it: from the first line that starts a
/// statement to the last `return` line (or the last statement line), plus the lines that
/// continue it (indented further, or starting with a closing bracket). Lines left out that look
/// like code are reported (E0117), never dropped silently.
fn trim_prose(ls: &[LineInfo<'_>], diags: &mut Vec<Diagnostic>) -> (usize, usize) {
    let (first, end) = prose_bounds(ls);
    for (k, l) in ls.iter().enumerate() {
        if (k < first || k >= end) && looks_like_code(l.text) {
            diags.push(dropped_code(l, first));
        }
    }
    (first, end)
}

fn prose_bounds(ls: &[LineInfo<'_>]) -> (usize, usize) {
    let Some(first) = ls.iter().position(|l| starts_statement(l.text)) else {
        return (0, ls.len());
    };
    let last_stmt = ls
        .iter()
        .rposition(|l| l.text.trim_start().starts_with("return"))
        .filter(|&r| r >= first)
        .or_else(|| ls.iter().rposition(|l| starts_statement(l.text)))
        .unwrap_or(first);
    let base = indent(ls[first].text);
    let mut end = last_stmt + 1;
    while end < ls.len() {
        let t = ls[end].text;
        if is_blank(t) || !(indent(t) > base || t.trim_start().starts_with([')', ']', '}'])) {
            break;
        }
        end += 1;
    }
    (first, end)
}

/// W0101: `n` candidates of `what`; the one starting on line `last` is used.
fn several(ls: &[LineInfo<'_>], last: usize, prev: usize, n: usize, what: &str) -> Diagnostic {
    let l = &ls[last];
    let p = &ls[prev];
    Diagnostic::new(
        Code::W0101,
        format!("{n} {what}; the last one (line {}) is checked", last + 1),
    )
    .at(Span::new(l.lo, l.hi))
    .label(Span::new(p.lo, p.hi), "an earlier one, ignored")
    .help("give one program per answer")
}

/// The offset of the quote closing a YAML string opened before `from`, on the same line.
fn closing_quote(text: &str, from: usize, line_end: usize, q: char) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = from;
    while i < line_end {
        match (b[i], q) {
            (b'\\', '"') => i += 2,
            (b'\'', '\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
            (c, _) if c == q as u8 => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Decodes the escapes of a quoted YAML string in place, keeping every byte offset: `\n`
/// becomes a space and a newline, `\"`/`\\`/`''` become a space and the character, `\t` two
/// spaces. The lexer then sees the program's lines where the string's escapes put them.
fn unescape_in_place(buf: &mut [u8], from: usize, to: usize, q: char) {
    let mut i = from;
    while i + 1 < to {
        let (a, b) = (buf[i], buf[i + 1]);
        let pair: Option<[u8; 2]> = match (q, a, b) {
            ('"', b'\\', b'n') => Some(*b" \n"),
            ('"', b'\\', b't') => Some(*b"  "),
            ('"', b'\\', c @ (b'"' | b'\\' | b'/')) => Some([b' ', c]),
            ('\'', b'\'', b'\'') => Some(*b" '"),
            _ => None,
        };
        match pair {
            Some(p) => {
                buf[i] = p[0];
                buf[i + 1] = p[1];
                i += 2;
            }
            None => i += 1,
        }
    }
}

fn no_program(why: &str) -> Diagnostic {
    Diagnostic::new(Code::E0118, format!("no program found in the answer: {why}"))
        .help("answer with the program itself, in a ```python fenced block or as YAML `impl: |` followed by the indented program")
}

/// Finds the program in `answer`.
///
/// Rules, in order: a leading byte-order mark is ignored; with fenced blocks, the last block
/// that looks like a program is used; within that (or the bare answer), the last `impl:` key
/// wins; without either, prose before the first statement and after `return` is dropped, and a
/// dropped line that looks like code is an error (E0117). Picking one of several candidates is
/// a warning (W0101) that says which.
pub fn extract(answer: &str) -> Result<Extraction, Diagnostic> {
    // A BOM becomes blank lines of the same byte length, so offsets stay those of `answer`.
    let owned;
    let answer = match answer.strip_prefix('\u{feff}') {
        Some(rest) => {
            owned = format!("\n\n\n{rest}");
            owned.as_str()
        }
        None => answer,
    };
    let ls = lines(answer);
    if is_blank(answer) {
        return Err(no_program("the answer is empty"));
    }
    let blocks = fenced_blocks(&ls);
    let mut diags = Vec::new();
    let programs: Vec<usize> = blocks
        .iter()
        .filter(|(s, e, _)| looks_like_program(&ls[*s..*e]))
        .map(|(s, _, _)| *s)
        .collect();
    if let [.., prev, last] = programs[..] {
        diags.push(several(
            &ls,
            last - 1,
            prev - 1,
            programs.len(),
            "fenced code blocks hold a program",
        ));
    }
    let (mut lo_line, mut hi_line, fenced) = if blocks.is_empty() {
        (0, ls.len(), false)
    } else {
        let pick = blocks
            .iter()
            .rev()
            .find(|(s, e, _)| looks_like_program(&ls[*s..*e]))
            .or_else(|| {
                blocks.iter().rev().find(|(_, _, info)| {
                    matches!(
                        info.as_str(),
                        "" | "python" | "py" | "yaml" | "yml" | "text" | "step"
                    )
                })
            });
        match pick {
            Some((s, e, _)) => (*s, *e, true),
            None => return Err(no_program("no fenced block holds a program")),
        }
    };
    let mut kind = if fenced {
        AnswerKind::Fenced
    } else {
        AnswerKind::Bare
    };
    // Column where the program starts on its first line (non-zero for `impl: <program>`).
    let mut first_col: Option<usize> = None;

    let keys: Vec<usize> = (lo_line..hi_line)
        .filter(|&k| impl_key(ls[k].text).is_some())
        .collect();
    if let [.., prev, last] = keys[..] {
        diags.push(several(&ls, last, prev, keys.len(), "`impl:` keys"));
    }
    let mut quoted = None;
    if let Some(&k) = keys.last() {
        kind = if fenced {
            AnswerKind::FencedYaml
        } else {
            AnswerKind::Yaml
        };
        let key = &ls[k];
        let key_indent = indent(key.text);
        let after = impl_key(key.text).unwrap_or(key.text.len());
        let rest = key.text.get(after..).unwrap_or("").trim();
        let block = rest.starts_with('|') || rest.starts_with('>');
        if let Some(q) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) {
            // `impl: "E1 = ...\nreturn E1"`: a quoted one-line YAML string.
            let open = key.lo + key.text.len() - key.text[after..].trim_start().len();
            let close = closing_quote(answer, open + 1, key.hi, q).ok_or_else(|| {
                no_program("the quoted `impl:` string is not closed on its line")
                    .at(Span::new(open, key.hi))
                    .help("write the program as a block: `impl: |` followed by the indented lines")
            })?;
            first_col = Some(open + 1 - key.lo);
            lo_line = k;
            hi_line = k + 1;
            quoted = Some((q, open + 1, close));
        } else if !block && !rest.is_empty() {
            // `impl: E1 = ...` on one line (plain scalar).
            first_col =
                Some(after + (key.text.len() - after - key.text[after..].trim_start().len()));
            lo_line = k;
            let mut e = k + 1;
            while e < hi_line && (is_blank(ls[e].text) || indent(ls[e].text) > key_indent) {
                e += 1;
            }
            hi_line = e;
        } else {
            let start = k + 1;
            let mut e = start;
            while e < hi_line && (is_blank(ls[e].text) || indent(ls[e].text) > key_indent) {
                e += 1;
            }
            // A code line that fell out of the block (indented too little) is a YAML error;
            // keep it in the program and say so, rather than silently dropping it.
            while e < hi_line && !is_blank(ls[e].text) && !looks_like_yaml(ls[e].text) {
                let l = &ls[e];
                let ind = indent(l.text);
                diags.push(
                    Diagnostic::new(Code::E0104, "this line is outside the `impl: |` block")
                        .at(Span::new(l.lo, l.lo + ind))
                        .label(Span::new(key.lo + key_indent, key.lo + after), "the block starts here")
                        .help("indent every line of the program further than `impl:`, like the lines above"),
                );
                e += 1;
                while e < hi_line && (is_blank(ls[e].text) || indent(ls[e].text) > key_indent) {
                    e += 1;
                }
            }
            if ls[start..e].iter().all(|l| is_blank(l.text)) {
                return Err(
                    no_program("`impl:` is empty").at(Span::new(key.lo + key_indent, key.hi))
                );
            }
            lo_line = start;
            hi_line = e;
        }
    } else if !fenced {
        if !looks_like_program(&ls) {
            return Err(no_program(
                "it contains no `step.` operators and no `return`",
            ));
        }
        // Unfenced prose around a bare program: drop the sentences before the first statement
        // and after the `return` line.
        (lo_line, hi_line) = trim_prose(&ls, &mut diags);
    }

    if lo_line >= hi_line || ls[lo_line..hi_line].iter().all(|l| is_blank(l.text)) {
        return Err(no_program("the code block is empty"));
    }
    let lo = ls[lo_line].lo + first_col.unwrap_or(0);
    let hi = match quoted {
        Some((_, _, close)) => close,
        None => ls[hi_line - 1].hi,
    };
    // The program's bytes are copied whole; only the (usually short) rest is blanked byte by
    // byte, which matters for a 10,000-line editor buffer checked on every change.
    let bytes = answer.as_bytes();
    let (lo_b, hi_b) = (lo.min(bytes.len()), hi.min(bytes.len()));
    let hi_b = hi_b.max(lo_b);
    let blank = |b: &u8| if *b == b'\n' { b'\n' } else { b' ' };
    let mut blanked = Vec::with_capacity(bytes.len());
    blanked.extend(bytes.get(..lo_b).unwrap_or(&[]).iter().map(blank));
    blanked.extend_from_slice(bytes.get(lo_b..hi_b).unwrap_or(&[]));
    blanked.extend(bytes.get(hi_b..).unwrap_or(&[]).iter().map(blank));
    if let Some((q, from, to)) = quoted {
        unescape_in_place(&mut blanked, from, to, q);
        // The opening quote becomes a line break, so the program's first line starts at
        // column 0 like the lines its `\n` escapes start.
        blanked[from - 1] = b'\n';
    }
    // Only whole lines (or a line's tail after `impl:`) are kept, so the kept bytes are
    // complete UTF-8 sequences and the rest is ASCII spaces.
    let blanked = String::from_utf8(blanked)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(Extraction {
        kind,
        region: Span::new(lo, hi),
        blanked,
        diagnostics: diags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_with_prose() {
        let a = "Sure! Here it is:\n```python\nE1 = step.Map(fn=f).apply(E0)\nreturn E1\n```\nHope this helps.";
        let x = extract(a).unwrap();
        assert_eq!(x.kind, AnswerKind::Fenced);
        assert_eq!(x.program(a), "E1 = step.Map(fn=f).apply(E0)\nreturn E1");
        assert_eq!(x.blanked.len(), a.len());
        assert!(!x.blanked.contains("Sure"));
    }

    #[test]
    fn yaml_block() {
        let a = "impl: |\n  E1 = step.Map(fn=f).apply(E0)\n  return E1\nnotes: fine\n";
        let x = extract(a).unwrap();
        assert_eq!(x.kind, AnswerKind::Yaml);
        assert_eq!(x.program(a), "  E1 = step.Map(fn=f).apply(E0)\n  return E1");
    }

    #[test]
    fn prose_without_fences() {
        let a = "Sure, here is the program.\nE1 = step.Map(fn=f).apply(E0)\nE2 = step.Accum(\n    fn=g, b=1).apply(E1)\nreturn E2\nThis sums each row.\n";
        let x = extract(a).unwrap();
        assert_eq!(x.kind, AnswerKind::Bare);
        assert_eq!(
            x.program(a),
            "E1 = step.Map(fn=f).apply(E0)\nE2 = step.Accum(\n    fn=g, b=1).apply(E1)\nreturn E2"
        );
        assert!(starts_statement("a, b = x"));
        assert!(starts_statement("# comment"));
        assert!(!starts_statement("a == b"));
        assert!(!starts_statement("1 = x"));
        assert!(!starts_statement("Here is the program:"));
    }

    #[test]
    fn nothing() {
        assert_eq!(extract("   \n").unwrap_err().code, Code::E0118);
        assert_eq!(extract("I cannot do that.").unwrap_err().code, Code::E0118);
        assert_eq!(
            extract("impl: |\nother: 1\n").unwrap_err().code,
            Code::E0118
        );
    }

    fn codes(a: &str) -> Vec<Code> {
        crate::parse_answer(a)
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect()
    }

    #[test]
    fn dropped_code_lines_are_reported_not_skipped() {
        // Each first line used to vanish silently (then E0201 "undefined `Xb`, did you mean
        // `X`" with a wrong fix, or a pass for `import os`).
        for first in [
            "Xb: Stream = step.Bufferize(a=1).apply(X)",
            "let Xb = step.Bufferize(a=1).apply(X)",
            "import os",
            "\u{202e}Xb = step.Bufferize(a=1).apply(X)",
            "\0Xb = step.Bufferize(a=1).apply(X)",
            "for i in range(3):",
        ] {
            let a = format!("{first}\nY = step.Map(fn=f).apply(Xb)\nreturn Y\n");
            let x = extract(&a).unwrap();
            let d = x
                .diagnostics
                .iter()
                .find(|d| d.code == Code::E0117)
                .unwrap_or_else(|| panic!("no E0117 for {first:?}"));
            assert_eq!(d.span.map(|s| (s.lo as usize) <= first.len()), Some(true));
            assert!(d.message.contains("outside the program"), "{}", d.message);
        }
        // Prose stays prose.
        let a = "Here is the program for the task.\nE1 = step.Map(fn=f).apply(E0)\nreturn E1\nFor each row it maps f.\n";
        assert!(extract(a).unwrap().diagnostics.is_empty());
        // Code after `return` is reported too.
        let a = "E1 = step.Map(fn=f).apply(E0)\nreturn E1\nprint(E1)\n";
        assert_eq!(codes(a), [Code::E0117]);
    }

    #[test]
    fn a_bom_is_ignored() {
        let a = "\u{feff}E1 = step.Map(fn=f).apply(E0)\nreturn E1\n";
        let p = crate::parse_answer(a);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let a = "\u{feff}```python\nE1 = step.Map(fn=f).apply(E0)\nreturn E1\n```\n";
        let x = extract(a).unwrap();
        assert_eq!(x.kind, AnswerKind::Fenced);
        assert_eq!(x.program(a), "E1 = step.Map(fn=f).apply(E0)\nreturn E1");
    }

    #[test]
    fn quoted_impl_strings_are_accepted() {
        let a = "impl: \"E1 = step.Map(fn=f).apply(E0)\\nreturn E1\"\n";
        let p = crate::parse_answer(a);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let prog = p.value.unwrap();
        assert_eq!(
            (prog.stmts.len(), prog.ret.values[0].name.as_str()),
            (1, "E1")
        );
        let a = "impl: 'E1 = step.Map(fn=f).apply(E0)'\n";
        let p = crate::parse_answer(a);
        // One statement, no return: the parser's own E0116, not an extraction failure.
        assert_eq!(codes(a), [Code::E0116], "{:?}", p.diagnostics);
        let a = "impl: \"E1 = step.Map(fn=f).apply(E0)\n";
        assert_eq!(extract(a).unwrap_err().code, Code::E0118);
    }

    #[test]
    fn several_candidates_pick_the_last_and_say_so() {
        let a = "impl: |\n  E1 = step.Map(fn=f).apply(E0)\n  return E1\nimpl: |\n  E2 = step.Map(fn=g).apply(E0)\n  return E2\n";
        let x = extract(a).unwrap();
        assert!(x.program(a).contains("fn=g"), "{}", x.program(a));
        let w = &x.diagnostics[0];
        assert_eq!(w.code, Code::W0101);
        assert_eq!(
            w.message,
            "2 `impl:` keys; the last one (line 4) is checked"
        );
        let a = "```python\nE1 = step.Map(fn=f).apply(E0)\nreturn E1\n```\nBetter:\n```python\nE2 = step.Map(fn=g).apply(E0)\nreturn E2\n```\n";
        let x = extract(a).unwrap();
        assert!(x.program(a).contains("fn=g"));
        assert_eq!(
            x.diagnostics[0].message,
            "2 fenced code blocks hold a program; the last one (line 6) is checked"
        );
    }
}
