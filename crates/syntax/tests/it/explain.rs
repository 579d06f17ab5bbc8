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
