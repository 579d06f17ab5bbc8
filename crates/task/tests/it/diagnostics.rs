//! Loader diagnostics for malformed task files, snapshotted in both renderers (human and JSON),
//! plus exact-location checks for errors inside embedded code.

use stepforge_syntax::Diagnostic;
use stepforge_syntax::codes::{Code, Phase};
use stepforge_task::{GenLimits, Loaded, check_dims, dim_values, generate, load_str};

fn render(loaded: &Loaded, diags: &[Diagnostic]) -> (String, serde_json::Value) {
    let human: String = diags
        .iter()
        .map(|d| d.render_human(&loaded.source, false))
        .collect::<Vec<_>>()
        .join("\n");
    let json = serde_json::Value::Array(diags.iter().map(|d| d.to_json(&loaded.source)).collect());
    (human, json)
}

/// Loads `text` and snapshots its diagnostics as `NAME_human` and `NAME_json`.
fn snap(name: &str, text: &str) -> Loaded {
    let loaded = load_str("task.yaml", text);
    assert!(
        !loaded.diagnostics.is_empty(),
        "{name}: expected diagnostics"
    );
    let (human, json) = render(&loaded, &loaded.diagnostics);
    insta::assert_snapshot!(format!("{name}_human"), human);
    insta::assert_json_snapshot!(format!("{name}_json"), json);
    loaded
}

fn codes(loaded: &Loaded) -> Vec<&'static str> {
    loaded.diagnostics.iter().map(|d| d.code.as_str()).collect()
}

const GOOD: &str = "\
test_name: row_sum
inputs:
  - name: E0
    dtype: fp32
    dims: [N, M]
    data_gen: torch.randn
fns:
  - name: sum
    func_name: fn_sum
    apply: |
      return [state[0] + input[0]]
    init: [0]
    input_dtype: fp32
    output_dtype: fp32
outputs:
  - name: out
    dtype: fp32
    dims: [M]
    data_transform:
      - input_data['E0'].sum(-1)
impl: |
  S = step.Accum(fn=fn_sum, b=1).apply(E0)
  return S
";

#[test]
fn the_good_task_is_clean() {
    let loaded = load_str("task.yaml", GOOD);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let task = loaded.task.unwrap();
    assert_eq!(task.name, "row_sum");
    assert_eq!(task.inputs.len(), 1);
    assert!(task.fns[0].is_reducer());
    let p = stepforge_task::parse_impl(&task);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    // The impl's spans are offsets into the task file.
    let prog = p.value.unwrap();
    let first = &prog.stmts[0];
    assert_eq!(task.source.slice(first.targets[0].span), "S");
    assert_eq!(task.source.line_col(first.span.lo).line, 22);
}

#[test]
fn missing_field() {
    let text = GOOD.replace("    dtype: fp32\n    dims: [N, M]\n", "    dims: [N, M]\n");
    let loaded = snap("missing_field", &text);
    assert_eq!(codes(&loaded), ["E0502"]);
    assert!(loaded.task.is_none());
}

#[test]
fn dtype_typo() {
    let text = GOOD.replacen(
        "    dtype: fp32\n    dims: [N, M]",
        "    dtype: fp23\n    dims: [N, M]",
        1,
    );
    let loaded = snap("dtype_typo", &text);
    assert!(loaded.has_errors());
    let d = &loaded.diagnostics[0];
    let at = loaded.source.line_col(d.span.unwrap().lo);
    assert_eq!((at.line, at.column), (4, 12), "points at `fp23`");
}

#[test]
fn unknown_data_gen() {
    let text = GOOD.replace("torch.randn", "torch.randm");
    let loaded = snap("unknown_data_gen", &text);
    assert_eq!(codes(&loaded), ["E0505"]);
    assert_eq!(
        loaded.diagnostics[0].help.as_deref(),
        Some("did you mean `torch.randn`?")
    );
}

#[test]
fn bad_yaml_indentation() {
    let text = GOOD.replace("    dims: [N, M]\n", "   dims: [N, M]\n");
    let loaded = snap("bad_yaml_indentation", &text);
    assert_eq!(codes(&loaded), ["E0501"]);
    assert_eq!(
        loaded
            .source
            .line_col(loaded.diagnostics[0].span.unwrap().lo)
            .line,
        5
    );
}

#[test]
fn syntax_error_in_apply_body() {
    let text = GOOD.replace(
        "      return [state[0] + input[0]]\n",
        "      acc = state[0] +\n      return [acc + input[0]]\n",
    );
    let loaded = snap("apply_syntax_error", &text);
    assert!(loaded.has_errors());
    assert!(
        loaded
            .diagnostics
            .iter()
            .all(|d| d.code.phase() == Phase::Syntax)
    );
    // The first error is on line 11 of the YAML file, inside the `|` block.
    let d = &loaded.diagnostics[0];
    let at = loaded.source.line_col(d.span.unwrap().lo);
    assert_eq!(at.line, 11, "{}", d.render_human(&loaded.source, false));
    assert!(at.column >= 7, "inside the block's indentation: {at:?}");
}

#[test]
fn syntax_error_in_one_line_snippet_is_exact() {
    let text = GOOD.replace("input_data['E0'].sum(-1)", "input_data['E0'].sum(-1))");
    let loaded = load_str("task.yaml", &text);
    let d = loaded.diagnostics.first().expect("a syntax error");
    let at = loaded.source.line_col(d.span.unwrap().lo);
    // `- input_data['E0'].sum(-1))` on line 20: the stray `)` is column 33.
    assert_eq!(
        (at.line, at.column),
        (20, 33),
        "{}",
        d.render_human(&loaded.source, false)
    );
}

#[test]
fn unknown_field_warning() {
    let text = GOOD.replace("    data_gen: torch.randn\n", "    datagen: torch.rand\n");
    let loaded = snap("unknown_field", &text);
    assert_eq!(codes(&loaded), ["W0501"]);
    assert!(!loaded.has_errors());
    assert!(loaded.ok_task().is_some());
    let d = &loaded.diagnostics[0];
    assert!(d.message.contains("inputs[0].datagen"), "{}", d.message);
    assert_eq!(d.fixes[0].edits[0].replacement, "data_gen");
}

#[test]
fn duplicate_names() {
    let text = GOOD.replace(
        "fns:\n",
        "parameters:\n  - name: E0\n    dtype: fp32\n    dims: [M]\nfns:\n",
    );
    let loaded = snap("duplicate_names", &text);
    assert_eq!(codes(&loaded), ["E0506"]);
    assert_eq!(loaded.diagnostics[0].labels.len(), 1);
}

#[test]
fn bad_init_and_snippet_count() {
    let text = GOOD.replace("init: [0]", "init: [0, zero]").replace(
        "    dtype: fp32\n    dims: [M]",
        "    dtype: \"[fp32, fp32]\"\n    dims: [M]",
    );
    let loaded = snap("bad_init_and_snippet_count", &text);
    assert_eq!(codes(&loaded), ["E0507", "E0512"]);
}

#[test]
fn wrong_types_are_all_reported() {
    let text = "\
inputs:
  name: E0
outputs:
  - name: out
    dtype: 3
    dims: M
    data_transform: [true]
tolerance: {rtol: -1, atl: 0}
";
    let loaded = snap("wrong_types", text);
    assert!(loaded.task.is_none());
    let c = codes(&loaded);
    for want in ["E0503", "E0504", "W0501"] {
        assert!(c.contains(&want), "{c:?}");
    }
}

#[test]
fn unbound_dimension_and_oversized_data() {
    let text = GOOD.replace("dims: [N, M]", "dims: [E, M]");
    let loaded = load_str("task.yaml", &text);
    let task = loaded.ok_task().unwrap();
    let dims = dim_values(task, &[]).unwrap();
    let diags = check_dims(task, &dims);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, Code::E0509);
    let (human, json) = render(&loaded, &diags);
    insta::assert_snapshot!("unbound_dimension_human", human);
    insta::assert_json_snapshot!("unbound_dimension_json", json);

    let dims = dim_values(
        task,
        &[("E".into(), 100_000_000), ("M".into(), 100_000_000)],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let d = generate(task, &dims, 0, &GenLimits::default()).unwrap_err();
    assert!(
        started.elapsed().as_millis() < 100,
        "checked before allocating"
    );
    assert_eq!(d.code, Code::E0701);
    let (human, json) = render(&loaded, &[d]);
    insta::assert_snapshot!("tensor_too_large_human", human);
    insta::assert_json_snapshot!("tensor_too_large_json", json);
}

#[test]
fn yaml_and_empty_edge_cases() {
    for (text, code) in [
        ("", "E0502"),
        ("- 1\n- 2\n", "E0503"),
        ("a: 1\n---\nb: 2\n", "E0501"),
        ("inputs: [\n", "E0501"),
        ("inputs:\n\t- name: x\n", "E0501"),
    ] {
        let loaded = load_str("task.yaml", text);
        assert_eq!(
            loaded.diagnostics[0].code.as_str(),
            code,
            "{text:?}: {:?}",
            loaded.diagnostics
        );
        assert!(loaded.task.is_none());
    }
}

#[test]
fn quoted_and_flow_forms_load() {
    let text = GOOD
        .replace("input_dtype: fp32", "input_dtype: \"fp32\"")
        .replace("init: [0]", "init: -inf")
        .replace(
            "    dtype: fp32\n    dims: [M]",
            "    dtype: [fp32, Multihot(fp32, E)]\n    dims: [M]",
        )
        .replace(
            "      - input_data['E0'].sum(-1)\n",
            "      - input_data['E0'].sum(-1)\n      - \"input_data['E0'] > 0\"\n",
        );
    let loaded = load_str("task.yaml", &text);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let task = loaded.task.unwrap();
    assert_eq!(stepforge_task::arity(&task.outputs[0].dtype), 2);
    assert_eq!(
        task.fns[0].init.as_ref().unwrap()[0].value,
        f64::NEG_INFINITY
    );
    assert_eq!(
        loaded.source.slice(task.outputs[0].dtype.span()),
        "[fp32, Multihot(fp32, E)]"
    );
}

#[test]
fn errors_in_escaped_scalars_stay_inside_the_value() {
    let text = GOOD.replace(
        "      - input_data['E0'].sum(-1)\n",
        "      - \"input_data['E0']\\t.sum(-1))\"\n",
    );
    let loaded = load_str("task.yaml", &text);
    let d = loaded.diagnostics.first().expect("a syntax error");
    let span = d.span.unwrap();
    let value = text.find("\"input_data").unwrap();
    let end = value + "\"input_data['E0']\\t.sum(-1))\"".len();
    assert!(
        span.lo as usize >= value && span.hi as usize <= end,
        "{span:?}"
    );
    assert_eq!(loaded.source.line_col(span.lo).line, 20);
    assert!(
        d.notes.iter().any(|n| n.contains("approximate")),
        "{:?}",
        d.notes
    );
}
