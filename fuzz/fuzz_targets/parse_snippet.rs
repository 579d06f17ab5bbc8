//! Snippets, blocks, dtypes and dims: never panic, spans inside the text, clean parses
//! round-trip through the printer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepforge_syntax::{Diagnostic, parse_dim, parse_dtype, parse_snippet, print, same_tree};

fn spans_inside(text: &str, diags: &[Diagnostic]) {
    for d in diags {
        for s in d.spans() {
            assert!(
                s.lo <= s.hi && s.hi as usize <= text.len(),
                "span {s:?} outside the text"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = parse_snippet(text);
    spans_inside(text, &p.diagnostics);
    if !p.has_errors()
        && let Some(b) = p.value
    {
        let printed = print::block(&b);
        let again = parse_snippet(&printed);
        assert!(
            !again.has_errors(),
            "printed block does not parse:\n{printed}"
        );
        assert!(
            same_tree(&b, &again.value.unwrap()),
            "round trip changed:\n{printed}"
        );
    }
    let d = parse_dtype(text);
    spans_inside(text, &d.diagnostics);
    if let Some(t) = d.value {
        let printed = print::dtype(&t);
        assert!(
            same_tree(&t, &parse_dtype(&printed).value.unwrap()),
            "{printed}"
        );
    }
    let d = parse_dim(text);
    spans_inside(text, &d.diagnostics);
    if let Some(t) = d.value {
        let printed = print::dim(&t);
        assert!(
            same_tree(&t, &parse_dim(&printed).value.unwrap()),
            "{printed}"
        );
    }
});
