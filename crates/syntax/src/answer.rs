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

/// The line range of a bare program with prose around it: from the first line that starts a
/// statement to the last `return` line (or the last statement line), plus the lines that
/// continue it (indented further, or starting with a closing bracket).
fn trim_prose(ls: &[LineInfo<'_>]) -> (usize, usize) {
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

fn no_program(why: &str) -> Diagnostic {
    Diagnostic::new(Code::E0118, format!("no program found in the answer: {why}"))
        .help("answer with the program itself, in a ```python fenced block or as YAML `impl: |` followed by the indented program")
}

/// Finds the program in `answer`.
pub fn extract(answer: &str) -> Result<Extraction, Diagnostic> {
    let ls = lines(answer);
    if is_blank(answer) {
        return Err(no_program("the answer is empty"));
    }
    let blocks = fenced_blocks(&ls);
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
    let mut diags = Vec::new();
    let mut kind = if fenced {
        AnswerKind::Fenced
    } else {
        AnswerKind::Bare
    };
    // Column where the program starts on its first line (non-zero for `impl: <program>`).
    let mut first_col: Option<usize> = None;

    if let Some(k) = (lo_line..hi_line).find(|&k| impl_key(ls[k].text).is_some()) {
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
        if !block && !rest.is_empty() {
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
        (lo_line, hi_line) = trim_prose(&ls);
    }

    if lo_line >= hi_line || ls[lo_line..hi_line].iter().all(|l| is_blank(l.text)) {
        return Err(no_program("the code block is empty"));
    }
    let lo = ls[lo_line].lo + first_col.unwrap_or(0);
    let hi = ls[hi_line - 1].hi;
    let mut blanked = Vec::with_capacity(answer.len());
    for (i, b) in answer.bytes().enumerate() {
        blanked.push(if (lo..hi).contains(&i) || b == b'\n' {
            b
        } else {
            b' '
        });
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
}
