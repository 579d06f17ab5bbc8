//! Raw LLM answers: never panic, every span inside the text, the fast path and the grammar
//! agree, and a clean parse round-trips through the printer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepforge_syntax::{
    Diagnostic, parse_answer, parse_program, parse_program_via_grammar, print, same_tree,
};

fn spans_inside(text: &str, diags: &[Diagnostic]) {
    for d in diags {
        for s in d.spans() {
            assert!(
                s.lo <= s.hi && s.hi as usize <= text.len(),
                "span {s:?} outside the text"
            );
            assert!(text.is_char_boundary(s.lo as usize) && text.is_char_boundary(s.hi as usize));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let answer = parse_answer(text);
    spans_inside(text, &answer.diagnostics);

    let fast = parse_program(text);
    spans_inside(text, &fast.diagnostics);
    let slow = parse_program_via_grammar(text);
    assert_eq!(fast.value, slow.value, "fast path and grammar disagree");
    assert_eq!(fast.diagnostics, slow.diagnostics);

    if !fast.has_errors()
        && let Some(p) = fast.value
    {
        let printed = print::program(&p);
        let again = parse_program(&printed);
        assert!(
            !again.has_errors(),
            "printed program does not parse:\n{printed}"
        );
        assert!(
            same_tree(&p, &again.value.unwrap()),
            "round trip changed:\n{printed}"
        );
    }
});
