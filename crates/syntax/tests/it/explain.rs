//! The examples in every E01xx explanation do what they say: the "Wrong" one produces its
//! code, the "Right" one parses cleanly.

use stepforge_syntax::codes::{Code, Phase};
use stepforge_syntax::*;

/// The first fenced block after `## {heading}`.
fn example(text: &str, heading: &str) -> String {
    let at = text.find(&format!("## {heading}")).unwrap();
    let rest = &text[at..];
    let open = rest.find("```").unwrap();
    let fence_len = rest[open..].chars().take_while(|c| *c == '`').count();
    let fence = "`".repeat(fence_len);
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let body_end = body_start + rest[body_start..].find(&format!("\n{fence}")).unwrap();
    rest[body_start..body_end].to_string()
}

fn codes_of(code: Code, text: &str) -> Vec<Code> {
    let codes = |ds: Vec<Diagnostic>| ds.into_iter().map(|d| d.code).collect::<Vec<_>>();
    // Values after `key:` on each line (the dtype/dim examples are task-file lines).
    let values = || {
        text.lines()
            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
    };
    match code.as_str() {
        "E0102" | "E0103" | "E0110" => codes(parse_block(text).diagnostics),
        "E0104" | "E0118" => codes(parse_answer(text).diagnostics),
        "E0119" => values()
            .flat_map(|v| codes(parse_dtype(&v).diagnostics))
            .collect(),
        "E0120" => values()
            .flat_map(|v| {
                let inner = v.trim_start_matches('[').trim_end_matches(']').to_string();
                inner
                    .split(',')
                    .flat_map(|d| codes(parse_dim(d).diagnostics))
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => codes(parse_program(text).diagnostics),
    }
}

#[test]
fn explanation_examples_are_true() {
    for code in Code::ALL.iter().filter(|c| c.phase() == Phase::Syntax) {
        let text = code.explanation();
        assert!(
            text.starts_with(&format!("# {}: ", code.as_str())),
            "{code}: heading"
        );
        let wrong = example(text, "Wrong");
        let right = example(text, "Right");
        let w = codes_of(*code, &wrong);
        assert!(
            w.contains(code),
            "{code}: wrong example gives {w:?}\n{wrong}"
        );
        let r = codes_of(*code, &right);
        assert!(r.is_empty(), "{code}: right example gives {r:?}\n{right}");
    }
}

/// The code blocks under `heading` ("## Wrong" / "## Right") of an explanation.
fn blocks_under<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let Some(at) = md.find(heading) else {
        return Vec::new();
    };
    let section = &md[at + heading.len()..];
    let section = section.split("\n## ").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```text\n").or_else(|| rest.find("```python\n")) {
        let body_start = rest[open..].find('\n').map(|n| open + n + 1).unwrap();
        let Some(len) = rest[body_start..].find("\n```") else {
            break;
        };
        out.push(&rest[body_start..body_start + len]);
        rest = &rest[body_start + len + 4..];
    }
    out
}

/// Every "Right" example that is a program fragment (it uses `step.`) parses without a syntax
/// error: a fragment may lack its `return` (E0116) and nothing else. This is what keeps a help
/// text such as E0612's Merge-with-a-list-of-branches honest about what the parser accepts.
#[test]
fn every_right_program_example_parses() {
    let mut checked = 0;
    for &code in Code::ALL {
        for block in blocks_under(code.explanation(), "## Right") {
            if !block.contains("step.") || block.contains("```") || block.contains("impl:") {
                continue;
            }
            let p = stepforge_syntax::parse_program(block);
            let bad: Vec<String> = p
                .diagnostics
                .iter()
                .filter(|d| d.is_error() && d.code != Code::E0116)
                .map(|d| format!("{}: {}", d.code, d.message))
                .collect();
            assert!(bad.is_empty(), "{code:?} right example:\n{block}\n{bad:?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} right examples found");
}

#[test]
fn merge_branches_may_be_a_list_or_a_tuple() {
    for src in [
        "Y = step.Merge(fn=f).apply(([P0, P1], G2))\nreturn Y\n",
        "Y = step.Merge(fn=f).apply(((P0, P1), G2))\nreturn Y\n",
    ] {
        let p = stepforge_syntax::parse_program(src);
        assert!(p.diagnostics.is_empty(), "{src}: {:?}", p.diagnostics);
    }
    // A bare list as the whole input is still the tuple mistake (with its fix).
    let p = stepforge_syntax::parse_program("Y = step.Map(fn=f).apply([A, B])\nreturn Y\n");
    assert_eq!(p.diagnostics[0].code, Code::E0117);
}
