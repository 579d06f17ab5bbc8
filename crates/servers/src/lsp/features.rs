//! Requests answered from an [`Analysis`]: hover, go to definition, completion, code actions and
//! inlay hints. Each is a pure function of the analysis and the request position.

use std::collections::HashMap;

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CompletionItem, CompletionItemKind, Hover,
    HoverContents, InlayHint, InlayHintKind, InlayHintLabel, Location, MarkupContent, MarkupKind,
    Position, Range, TextEdit, Uri, WorkspaceEdit,
};
use stepforge_syntax::diag::{Applicability, Edit};
use stepforge_syntax::{Span, ops};

use super::analysis::Analysis;
use crate::ops_doc;
use crate::text::word_at;
use crate::toolchain::TypedStream;

/// The typed stream named `name` that the cursor at `offset` refers to: the binding whose
/// definition or use contains it, else the last one defined before it.
fn stream_at<'a>(a: &'a Analysis, name: &str, offset: usize) -> Option<&'a TypedStream> {
    let streams = &a.check.as_ref()?.streams;
    let inside = |s: &Span| (s.lo as usize..=s.hi as usize).contains(&offset);
    let named = || streams.iter().filter(|s| s.name == name);
    named()
        .find(|s| s.def_span.as_ref().is_some_and(inside) || s.consumers.iter().any(inside))
        .or_else(|| {
            named()
                .rev()
                .find(|s| s.def_span.is_none_or(|d| (d.lo as usize) <= offset))
        })
        .or_else(|| named().next())
}

/// `step.Op` under the cursor: the op name when the word is preceded by `step.`.
fn op_at(text: &str, range: &std::ops::Range<usize>) -> bool {
    text.get(..range.start)
        .is_some_and(|t| t.ends_with("step."))
}

fn markdown(value: String) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range: None,
    }
}

fn line_of(a: &Analysis, s: Span) -> u32 {
    a.pos(s.lo as usize).line + 1
}

pub fn hover(a: &Analysis, pos: Position) -> Option<Hover> {
    let text = &a.doc.text;
    let offset = a.offset(pos);
    let (range, word) = word_at(text, offset)?;
    let mut h = if op_at(text, &range) {
        markdown(ops_doc::hover(word)?)
    } else if let Some(s) = stream_at(a, word, offset) {
        markdown(stream_hover(a, s))
    } else {
        let task = a.task.as_ref()?;
        task.session.fn_names().iter().find(|f| *f == word)?;
        let decl = fn_entry(task.session.task_text(), word)
            .map(|t| format!("\n```yaml\n{t}\n```"))
            .unwrap_or_default();
        markdown(format!(
            "element function `{word}` of task `{}`{decl}",
            task.session.name()
        ))
    };
    h.range = Some(a.range(Span::new(range.start, range.end)));
    Some(h)
}

fn stream_hover(a: &Analysis, s: &TypedStream) -> String {
    let dims = s.dims();
    let rank = dims.len().saturating_sub(1);
    let mut out = format!(
        "**{}**: stream of `{}`\n\n- dims (innermost first): `[{}]`, rank {rank}\n",
        s.name,
        s.dtype(),
        dims.join(", ")
    );
    match s.def_span {
        Some(d) => out.push_str(&format!("- defined on line {}\n", line_of(a, d))),
        None => out.push_str("- a task input\n"),
    }
    let lines: Vec<String> = s
        .consumers
        .iter()
        .map(|c| line_of(a, *c).to_string())
        .collect();
    out.push_str(&match lines.len() {
        0 => "- never consumed (it would fill its FIFO and stall its producer)".to_string(),
        1 => format!("- consumed on line {}", lines[0]),
        n => format!(
            "- consumed {n} times, on lines {} — a stream may be consumed once; use `step.Copy`",
            lines.join(", ")
        ),
    });
    out
}

/// The lines of the `fns:` entry whose `func_name` is `name`.
fn fn_entry<'t>(task: &'t str, name: &str) -> Option<&'t str> {
    let at = decl_value(task, "func_name", name)?.start;
    let line_start = |p: usize| task[..p].rfind('\n').map_or(0, |i| i + 1);
    // The entry starts at the nearest `- ` line at or above `func_name:`.
    let mut start = line_start(at);
    while start > 0 && !task[start..].trim_start().starts_with("- ") {
        start = line_start(start - 1);
    }
    let indent = task[start..].len() - task[start..].trim_start().len();
    let mut end = task[at..].find('\n').map_or(task.len(), |i| at + i + 1);
    while end < task.len() {
        let line = &task[end..task[end..].find('\n').map_or(task.len(), |i| end + i + 1)];
        let ind = line.len() - line.trim_start().len();
        if !line.trim().is_empty()
            && (ind < indent || (ind == indent && line.trim_start().starts_with("- ")))
        {
            break;
        }
        end += line.len();
    }
    task.get(start..end).map(str::trim_end)
}

/// The byte range of `value` in the first line of `text` of the form `[- ]key: value`
/// (optionally quoted).
pub fn decl_value(text: &str, key: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let t2 = t.strip_prefix("- ").map_or(t, str::trim_start);
        if let Some(rest) = t2.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let v = rest.trim().trim_matches(['"', '\'']);
            if v == value
                && let Some(i) = line.find(value)
            {
                return Some(pos + i..pos + i + value.len());
            }
        }
        pos += line.len();
    }
    None
}

pub fn definition(a: &Analysis, pos: Position) -> Option<Location> {
    let text = &a.doc.text;
    let offset = a.offset(pos);
    let (_, word) = word_at(text, offset)?;
    let task = a.task.as_ref()?;
    let task_text = task.session.task_text();
    let in_task = |r: std::ops::Range<usize>| -> Option<Location> {
        let uri: Uri = task.uri.parse().ok()?;
        let idx = crate::text::LineIndex::new(task_text);
        let p = |o| {
            let p = idx.position(task_text, o);
            Position::new(p.line, p.character)
        };
        Some(Location::new(uri, Range::new(p(r.start), p(r.end))))
    };
    if let Some(s) = stream_at(a, word, offset) {
        if let Some(d) = s.def_span {
            let uri: Uri = a.doc.uri.parse().ok()?;
            return Some(Location::new(uri, a.range(d)));
        }
        return in_task(decl_value(task_text, "name", word)?);
    }
    if task.session.fn_names().iter().any(|f| f == word) {
        return in_task(decl_value(task_text, "func_name", word)?);
    }
    None
}

pub fn completion(a: &Analysis, pos: Position) -> Vec<CompletionItem> {
    let text = &a.doc.text;
    let offset = a.offset(pos);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..offset];
    let partial_start = prefix
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let before = &prefix[..partial_start];
    let fns = || {
        a.task
            .as_ref()
            .map(|t| t.session.fn_names())
            .unwrap_or_default()
    };
    let item = |label: String, kind, detail: Option<String>| CompletionItem {
        label,
        kind: Some(kind),
        detail,
        ..Default::default()
    };
    if before.ends_with("step.") {
        return ops::OPS
            .iter()
            .map(|o| CompletionItem {
                documentation: ops_doc::summary(o.name)
                    .map(|s| lsp_types::Documentation::String(s.to_string())),
                ..item(
                    o.name.to_string(),
                    CompletionItemKind::FUNCTION,
                    Some(ops_doc::signature(o)),
                )
            })
            .collect();
    }
    let trimmed = before.trim_end_matches([' ', '[', ',']);
    if trimmed.ends_with("fn=") || trimmed.ends_with("fn =") {
        return fns()
            .into_iter()
            .map(|f| {
                item(
                    f,
                    CompletionItemKind::FUNCTION,
                    Some("task element function".into()),
                )
            })
            .collect();
    }
    if let Some(op) = open_op_call(before) {
        return op
            .params
            .iter()
            .map(|p| CompletionItem {
                insert_text: Some(format!("{p}=")),
                ..item(
                    format!("{p}="),
                    CompletionItemKind::PROPERTY,
                    Some(format!("parameter of step.{}", op.name)),
                )
            })
            .collect();
    }
    let mut items: Vec<CompletionItem> = a
        .check
        .iter()
        .flat_map(|c| c.streams.iter())
        .filter(|s| s.def_span.is_none_or(|d| (d.hi as usize) <= offset))
        .map(|s| {
            item(
                s.name.clone(),
                CompletionItemKind::VARIABLE,
                Some(format!("{} [{}]", s.dtype(), s.dims().join(", "))),
            )
        })
        .collect();
    items.dedup_by(|x, y| x.label == y.label);
    items.push(item(
        "step".into(),
        CompletionItemKind::MODULE,
        Some("the STeP operators".into()),
    ));
    items
}

/// The operator whose parameter list the text before the cursor is inside of.
fn open_op_call(before: &str) -> Option<&'static ops::OpInfo> {
    let at = before.rfind("step.")?;
    let rest = &before[at + 5..];
    let name_end = rest.find('(')?;
    let args = &rest[name_end..];
    (!args.contains(')')).then_some(())?;
    ops::lookup(&rest[..name_end])
}

// `WorkspaceEdit` is keyed by lsp-types' `Uri`, which caches parse data in a `Cell`; the key is
// never mutated after insertion.
#[allow(clippy::mutable_key_type)]
pub fn code_actions(a: &Analysis, range: Range) -> Vec<CodeActionOrCommand> {
    let Ok(uri) = a.doc.uri.parse::<Uri>() else {
        return Vec::new();
    };
    let overlaps = |r: Range| r.start <= range.end && range.start <= r.end;
    let edit_of = |edits: &[&Edit]| {
        let mut changes = HashMap::new();
        let list: Vec<TextEdit> = edits
            .iter()
            .map(|e| TextEdit::new(a.range(e.span), e.replacement.clone()))
            .collect();
        changes.insert(uri.clone(), list);
        WorkspaceEdit::new(changes)
    };
    let mut out = Vec::new();
    let mut safe: Vec<&Edit> = Vec::new();
    for d in &a.diagnostics {
        let lsp = a.to_lsp(d);
        for f in &d.fixes {
            if f.applicability == Applicability::Safe {
                safe.extend(f.edits.iter());
            }
            if !overlaps(lsp.range) {
                continue;
            }
            let edits: Vec<&Edit> = f.edits.iter().collect();
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: f.message.clone(),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![lsp.clone()]),
                edit: Some(edit_of(&edits)),
                is_preferred: Some(f.applicability == Applicability::Safe),
                ..Default::default()
            }));
        }
    }
    // One action applying every safe fix, skipping overlapping edits like `stepforge --fix`.
    safe.sort_by_key(|e| (e.span.lo, e.span.hi));
    let mut end = 0u32;
    safe.retain(|e| {
        let keep = e.span.lo >= end;
        if keep {
            end = e.span.hi;
        }
        keep
    });
    if !safe.is_empty() {
        out.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: "stepforge: apply all safe fixes".into(),
            kind: Some(CodeActionKind::new("source.fixAll.stepforge")),
            edit: Some(edit_of(&safe)),
            ..Default::default()
        }));
    }
    out
}

pub fn inlay_hints(a: &Analysis, range: Range) -> Vec<InlayHint> {
    let Some(c) = &a.check else {
        return Vec::new();
    };
    c.streams
        .iter()
        .filter_map(|s| {
            let d = s.def_span?;
            let p = a.pos(d.hi as usize);
            (range.start <= p && p <= range.end).then(|| InlayHint {
                position: p,
                label: InlayHintLabel::String(format!(": [{}] {}", s.dims().join(", "), s.dtype())),
                kind: Some(InlayHintKind::TYPE),
                text_edits: None,
                tooltip: None,
                padding_left: None,
                padding_right: Some(true),
                data: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_declarations() {
        let t = "fns:\n  - name: rms\n    func_name: fn_rms\n    apply: |\n      x\n  - name: b\n    func_name: \"fn_b\"\ninputs:\n  - name: X\n";
        let r = decl_value(t, "func_name", "fn_rms").unwrap();
        assert_eq!(&t[r], "fn_rms");
        let r = decl_value(t, "func_name", "fn_b").unwrap();
        assert_eq!(&t[r], "fn_b");
        let r = decl_value(t, "name", "X").unwrap();
        assert_eq!(&t[r], "X");
        assert_eq!(
            fn_entry(t, "fn_rms"),
            Some("  - name: rms\n    func_name: fn_rms\n    apply: |\n      x")
        );
        assert!(decl_value(t, "name", "fn_rms").is_none());
    }

    #[test]
    fn open_calls() {
        assert_eq!(
            open_op_call("Y = step.Accum(fn=f, ").map(|o| o.name),
            Some("Accum")
        );
        assert_eq!(open_op_call("Y = step.Accum(fn=f).apply("), None);
        assert_eq!(open_op_call("Y = x"), None);
    }
}
