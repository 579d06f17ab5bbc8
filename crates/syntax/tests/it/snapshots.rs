//! Diagnostics for the mistakes LLMs make, snapshotted in both renderers (human and JSON).

use stepforge_syntax::*;

/// Renders every diagnostic of `diags` against `text` in both forms.
fn both(name: &str, text: &str, diags: &[Diagnostic]) -> (String, String) {
    assert!(
        !diags.is_empty() || name.ends_with("_ok"),
        "{name}: expected diagnostics"
    );
    let src = Source::new(name, text);
    let human: String = diags.iter().map(|d| d.render_human(&src, false)).collect();
    let json = serde_json::Value::Array(diags.iter().map(|d| d.to_json(&src)).collect());
    let json = serde_json::to_string_pretty(&json).unwrap();
    // Every span lies inside the text.
    for d in diags {
        for s in d.spans() {
            assert!(
                s.hi as usize <= text.len(),
                "{name}: span {s:?} outside the text"
            );
        }
    }
    (human, json)
}

macro_rules! snap {
    ($name:ident, $parse:expr, $text:expr) => {
        #[test]
        fn $name() {
            let text: &str = $text;
            let parsed = $parse(text);
            let (human, json) = both(stringify!($name), text, &parsed.diagnostics);
            insta::assert_snapshot!(concat!(stringify!($name), "_human"), human, text);
            insta::assert_snapshot!(concat!(stringify!($name), "_json"), json, text);
        }
    };
}

snap!(
    positional_fn,
    parse_program,
    "E1 = step.Map(fn_sum).apply(E0)\nE2 = step.Accum(fn_acc, 1).apply(E1)\nreturn E2\n"
);
snap!(
    missing_apply,
    parse_program,
    "E1 = step.Map(fn=fn_sum)\nreturn E1\n"
);
snap!(
    unknown_op,
    parse_program,
    "E1 = step.Mapp(fn=f).apply(E0)\nE2 = step.Conv2d(k=3).apply(E1)\nreturn E2\n"
);
snap!(
    misspelled_keyword,
    parse_program,
    "E1 = step.Accum(fn=f, bb=1).apply(E0)\nreturn E1\n"
);
snap!(
    unclosed_bracket,
    parse_program,
    "E1 = step.Map(fn=f).apply(E0\nE2 = step.Accum(fn=g, b=1).apply(E1)\nreturn E2\n"
);
snap!(
    unclosed_bracket_at_eof,
    parse_program,
    "E1 = step.Map(fn=f).apply(E0)\nreturn (E1,\n"
);
snap!(
    tab_space_mix,
    parse_block,
    "    x = input[0]\n\t y = x * 2\n    return [y]\n"
);
snap!(
    unexpected_indent,
    parse_block,
    "x = input[0]\n    y = x * 2\nreturn [y]\n"
);
snap!(
    prose_around_fence_error,
    parse_answer,
    "Here is my solution. It maps and then reduces.\n\n```python\nE1 = step.Map(fn=f).apply(E0)\nE2 = step.Acum(fn=g, b=1).apply(E1)\nreturn E2\n```\n\nLet me know if you need anything else!\n"
);
snap!(
    yaml_bad_indent,
    parse_answer,
    "```yaml\nimpl: |\n    E1 = step.Map(fn=f).apply(E0)\n  E2 = step.Accum(fn=g, b=1).apply(E1)\nreturn E2\n```\n"
);
snap!(
    arbitrary_python,
    parse_program,
    "import torch\ndef f(x):\n    return x\nfor x in Xs:\n    Y = step.Map(fn=f).apply(x)\nE2 = torch.exp(E1)\nE3 = E2 * 2\nreturn E3\n"
);
snap!(
    missing_return,
    parse_program,
    "E1 = step.Map(fn=f).apply(E0)\nE2, E3 = step.Copy().apply(E1)\n"
);
snap!(
    unterminated_string,
    parse_snippet,
    "w = input_data['W]\nreturn w\n"
);
snap!(
    bad_character,
    parse_program,
    "E1 = step.Map(fn=f).apply(E0)`\nreturn E1\n"
);
snap!(
    bad_snippet_syntax,
    parse_snippet,
    "y = x[0] +\nz = torch.sum(y dim=0)\nw = a and b\nx += 1\n"
);
snap!(
    no_program,
    parse_answer,
    "I am not sure how to write this kernel; could you give more details?\n"
);
snap!(
    prose_unfenced_error,
    parse_answer,
    "Here is the program you asked for:\nE1 = step.Map(fn_sum).apply(E0)\nE2 = step.Accum(fn=\"fn_acc\", b=1).apply(E1)\nreturn E2\nIt maps, then sums the rows.\n"
);
snap!(
    apply_several_args,
    parse_program,
    "E2 = step.Zip().apply(E0, E1)\nreturn E2\n"
);
snap!(bad_dtype, parse_dtype, "Buffer(fp23, [D, N])");
snap!(bad_dtype_multihot, parse_dtype, "Multihot(fp32)");
snap!(bad_dtype_case, parse_dtype, "buffer(fp32, [D])");

#[test]
fn prose_around_fence_ok() {
    let text = "Sure! The kernel streams rows and sums them.\n\n```python\n# sum over the inner dim\nE1 = step.Accum(fn=fn_sum, b=1).apply(E0)\nreturn E1\n```\nThis uses one reducer.";
    let p = parse_answer(text);
    let (human, _) = both("prose_around_fence_ok", text, &p.diagnostics);
    assert!(human.is_empty());
    let prog = p.value.unwrap();
    let src = Source::new("answer", text);
    let at = src.line_col(prog.stmts[0].span.lo);
    let out = format!(
        "first statement at {}:{}\n{}",
        at.line,
        at.column,
        print::program(&prog)
    );
    insta::assert_snapshot!("prose_around_fence_ok", out, text);
}
