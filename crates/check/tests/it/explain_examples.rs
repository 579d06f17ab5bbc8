//! Every checker-phase `explain` example (names, types, linearity: E02xx–E04xx) runs through
//! the checker (issue 9): the "Wrong" program raises its code and the "Right" one does not.
//! The examples are fragments whose comments describe the task around them ("E0: fp32, dims
//! [N, M]"); the context here is one task with the streams and functions the examples use,
//! changed per code where a comment says so. The parser-phase codes are tested the same way
//! in `crates/syntax/tests/it/explain.rs`.

use stepforge_syntax::codes::{Code, Phase};

use crate::common::load_task_text;

/// The first ```python block after `## {heading}`.
fn example(text: &str, heading: &str) -> Option<String> {
    let at = text.find(&format!("## {heading}"))?;
    let rest = &text[at..];
    let rest = rest.split("\n## ").next()?;
    let open = rest.find("```python\n")? + "```python\n".len();
    let len = rest[open..].find("\n```")?;
    Some(rest[open..open + len].to_string())
}

struct Ctx {
    global: &'static str,
    inputs: Vec<(&'static str, &'static str, &'static str)>,
    outputs: usize,
}

fn default_ctx() -> Ctx {
    Ctx {
        global: "E_value = 2\n  ctx[E] = E_value",
        inputs: vec![
            ("E0", "fp32", "[D, N]"),
            ("E1", "fp32", "[D, N]"),
            ("E3", "fp32", "[N]"),
            ("E4", "fp32", "[N]"),
            ("sel", "Multihot(fp32, E)", "[N]"),
            ("sel2", "Multihot(fp32, E)", "[N]"),
        ],
        outputs: 1,
    }
}

/// The context a code's example describes in its comments.
fn ctx_for(code: &str) -> Ctx {
    let mut c = default_ctx();
    let set = |c: &mut Ctx, name: &str, dims: &'static str| {
        for i in &mut c.inputs {
            if i.0 == name {
                i.2 = dims;
            }
        }
    };
    match code {
        "E0303" | "E0308" => set(&mut c, "E0", "[N, M]"),
        "E0305" => set(&mut c, "E1", "[D, K, N]"),
        "E0310" => c.outputs = 2,
        "E0313" => c.global = "E_value = 3\n  ctx[E] = E_value",
        _ => {}
    }
    c
}

const FNS: &[(&str, &str, &str, bool)] = &[
    ("square", "fp32", "fp32", false),
    ("exp_fn", "fp32", "fp32", false),
    ("f", "fp32", "fp32", false),
    ("g", "fp32", "fp32", false),
    ("f0", "fp32", "fp32", false),
    ("f1", "fp32", "fp32", false),
    ("add_fn", "fp32", "fp32", true),
    ("pick", "fp32", "fp32", true),
    ("add_pair_fn", "\"[fp32, fp32]\"", "fp32", true),
    ("norm_fn", "Buffer(fp32, [D])", "Buffer(fp32, [D])", false),
];

fn task_text(c: &Ctx) -> String {
    let mut t = format!(
        "test_name: explain_ctx\nglobal: |\n  {}\ninputs:\n",
        c.global
    );
    for (n, dt, dims) in &c.inputs {
        t.push_str(&format!(
            "  - name: {n}\n    dtype: {dt}\n    dims: {dims}\n    data_gen: torch.randn\n"
        ));
    }
    t.push_str("fns:\n");
    for (n, i, o, reducer) in FNS {
        let body = if *reducer {
            "return [state[0] + input[0]]"
        } else {
            "return [input[0]]"
        };
        t.push_str(&format!(
            "  - name: {n}\n    func_name: {n}\n    apply: |\n      {body}\n    input_dtype: {i}\n    output_dtype: {o}\n"
        ));
        if *reducer {
            t.push_str("    init: [0]\n");
        }
    }
    t.push_str("outputs:\n");
    for k in 0..c.outputs {
        t.push_str(&format!(
            "  - name: Y{k}\n    dtype: fp32\n    dims: [N]\n    data_transform:\n      - |\n        input_data['E3']\n"
        ));
    }
    t
}

/// A fragment without `return` returns the first name its last assignment binds (a missing
/// return stops the checker before the types).
fn with_return(src: &str) -> String {
    if src.lines().any(|l| l.trim_start().starts_with("return")) {
        return src.to_string();
    }
    let last = src
        .lines()
        .rev()
        .filter_map(|l| l.split_once('=').map(|(lhs, _)| lhs))
        .find(|lhs| !lhs.trim_start().starts_with('#'))
        .and_then(|lhs| lhs.split(',').next())
        .map(str::trim)
        .unwrap_or("E0");
    format!("{src}\nreturn {last}\n")
}

#[test]
fn checker_explain_examples_raise_their_code_and_the_right_ones_do_not() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for &code in Code::ALL {
        if !matches!(code.phase(), Phase::Names | Phase::Types | Phase::Linearity) {
            continue;
        }
        let text = code.explanation();
        let (Some(wrong), Some(right)) = (example(text, "Wrong"), example(text, "Right")) else {
            // A task-file (yaml) example: the loader's tests cover those.
            continue;
        };
        let task = load_task_text(code.as_str(), &task_text(&ctx_for(code.as_str())));
        let codes = |src: &str| -> Vec<Code> {
            let src = with_return(src);
            let (_, out) = stepforge_check::check_answer(&task, &src);
            out.diagnostics.iter().map(|d| d.code).collect()
        };
        let w = codes(&wrong);
        if !w.contains(&code) {
            failures.push(format!("{code}: the wrong example gives {w:?}\n{wrong}"));
        }
        let r = codes(&right);
        if r.contains(&code) {
            failures.push(format!("{code}: the right example gives {r:?}\n{right}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 20, "only {checked} examples checked");
}
