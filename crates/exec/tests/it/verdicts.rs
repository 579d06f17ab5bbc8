//! A wrong program gets the right verdict class, with the facts an agent needs to fix it.

use std::time::Duration;

use stepforge_driver::verify;
use stepforge_exec::{ExecLimits, Verdict, VerifyOptions, VerifyReport};
use stepforge_syntax::codes::{Code, Phase};

use crate::{dims, load, task_text};

const AB: &str = "  - name: A\n    dtype: fp32\n    dims: [N]\n    data_gen: torch.randn\n  - name: B\n    dtype: fp32\n    dims: [N]\n    data_gen: torch.randn\n";
const A_MINUS_B: &str = "  - name: Y\n    dtype: fp32\n    dims: [N]\n    data_transform:\n      - input_data['A'] - input_data['B']\n";

fn sub_task() -> stepforge_task::Task {
    load(&task_text("", AB, A_MINUS_B))
}

fn codes(r: &VerifyReport) -> Vec<Code> {
    r.errors().map(|d| d.diagnostic.code).collect()
}

fn sample(name: &str) -> stepforge_task::Task {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/tasks")
        .join(name);
    stepforge_task::load_file(&path).unwrap().task.unwrap()
}

#[test]
fn a_right_program_passes() {
    let r = verify(
        &sub_task(),
        Some("Y = step.Map(fn=fn_sub).apply((A, B))\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.diagnostics);
    assert!(r.passed());
    assert_eq!(r.outputs[0].max_abs_err, Some(0.0));
}

#[test]
fn syntax_and_type_errors_stop_before_running() {
    let t = sub_task();
    let r = verify(
        &t,
        Some("Y = step.Map(fn=fn_sub).apply((A, B)\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::SyntaxError);
    assert!(r.outputs.is_empty());
    let r = verify(
        &t,
        Some("Y = step.Accum(fn=fn_sub, b=1).apply((A, B))\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::TypeError);
    assert!(codes(&r).iter().all(|c| c.as_str().starts_with("E0")));
}

#[test]
fn swapped_zip_operands_are_a_value_mismatch_with_the_first_index() {
    let r = verify(
        &sub_task(),
        Some("Z = step.Zip().apply((B, A))\nY = step.Map(fn=fn_sub).apply(Z)\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::ValueMismatch);
    assert_eq!(codes(&r), vec![Code::E0611]);
    let m = r.outputs[0].first_mismatch.as_ref().unwrap();
    assert_eq!(m.index.len(), 1);
    // b - a where a - b was expected
    assert!((m.found + m.expected).abs() < 1e-5, "{m:?}");
    assert!(m.expected != 0.0);
    assert!(r.outputs[0].max_abs_err.unwrap() > 0.0);
}

#[test]
fn a_wrong_fn_is_a_value_mismatch() {
    let r = verify(
        &sub_task(),
        Some("Y = step.Map(fn=fn_add2).apply((A, B))\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::ValueMismatch);
    assert!(r.outputs[0].first_mismatch.is_some());
    // the run stops at the first failing seed
    assert_eq!(r.seeds, vec![0, 1, 2]);
}

#[test]
fn a_well_typed_program_with_the_wrong_shape_is_a_shape_mismatch() {
    // The declared output type is [N] fp32, which the program matches, but the reference keeps
    // the reduced dim: shape (N, 1). The checker cannot see it; the comparison must.
    let x = "  - name: X\n    dtype: fp32\n    dims: [D, N]\n    data_gen: torch.randn\n";
    let y = "  - name: Y\n    dtype: fp32\n    dims: [N]\n    data_transform:\n      - input_data['X'].sum(dim=-1, keepdim=True)\n";
    let t = load(&task_text("", x, y));
    let r = verify(
        &t,
        Some("Y = step.Accum(fn=fn_sum, b=1).apply(X)\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::ShapeMismatch);
    assert_eq!(codes(&r), vec![Code::E0610]);
    let d = &r.errors().next().unwrap().diagnostic;
    assert!(
        d.message.contains("(7,)") && d.message.contains("(7, 1)"),
        "{}",
        d.message
    );
    assert_eq!(r.outputs[0].max_abs_err, None);
}

#[test]
fn an_fn_returning_the_wrong_shape_is_a_runtime_error_naming_it() {
    let text = task_text(
        "",
        "  - name: X\n    dtype: fp32\n    dims: [D, N]\n    data_gen: torch.randn\n",
        "  - name: Y\n    dtype: fp32\n    dims: [N]\n    data_transform:\n      - input_data['X'].sum(dim=-1)\n",
    )
    .replace(
        "fns:\n",
        "fns:\n  - name: bad\n    func_name: fn_bad\n    apply: |\n      return [input[0].sum(dim=-1, keepdim=True)]\n    input_dtype: Buffer(fp32, [D])\n    output_dtype: fp32\n",
    );
    let t = load(&text);
    let r = verify(
        &t,
        Some("B = step.Bufferize(a=1).apply(X)\nY = step.Map(fn=fn_bad).apply(B)\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::RuntimeError);
    let d = &r.errors().next().unwrap().diagnostic;
    assert_eq!(d.code, Code::E0603);
    assert!(
        d.message.contains("fn_bad") && d.message.contains("(1,)") && d.message.contains("()"),
        "{}",
        d.message
    );
    let j = r.to_json();
    assert_eq!(j["verdict"], "runtime_error");
}

#[test]
fn an_elementwise_fn_with_the_wrong_output_type_is_still_caught() {
    // fp32 -> declared Buffer(fp32, [D]) but returns a scalar: the batched path must not hide it
    let text = task_text(
        "",
        "  - name: X\n    dtype: fp32\n    dims: [N]\n    data_gen: torch.randn\n",
        "  - name: Y\n    dtype: Buffer(fp32, [D])\n    dims: [N]\n    data_transform:\n      - input_data['X']\n",
    )
    .replace(
        "fns:\n",
        "fns:\n  - name: widen\n    func_name: fn_widen\n    apply: |\n      return [input[0] * 2]\n    input_dtype: fp32\n    output_dtype: Buffer(fp32, [D])\n",
    );
    let t = load(&text);
    let r = verify(
        &t,
        Some("Y = step.Map(fn=fn_widen).apply(X)\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::RuntimeError);
    assert!(
        r.errors()
            .next()
            .unwrap()
            .diagnostic
            .message
            .contains("fn_widen")
    );
}

#[test]
fn huge_dims_are_a_limit_in_milliseconds_not_an_oom() {
    let t = sample("matvec_repeat.yaml");
    let opts = VerifyOptions {
        dims: dims(&[("M", 100_000_000)]),
        ..VerifyOptions::default()
    };
    let start = std::time::Instant::now();
    let r = verify(&t, None, &opts);
    assert_eq!(r.verdict, Verdict::LimitExceeded, "{:#?}", r.diagnostics);
    assert!(codes(&r).iter().all(|c| c.phase() == Phase::Limit));
    // debug build, shared machine: generous, but far from the seconds an allocation would take
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn every_limit_is_enforced() {
    let t = sample("scan_reshape.yaml");
    let with = |limits: ExecLimits| {
        verify(
            &t,
            None,
            &VerifyOptions {
                limits,
                ..VerifyOptions::default()
            },
        )
    };
    let base = ExecLimits::default();

    let r = with(ExecLimits {
        time_limit: Duration::ZERO,
        check_every: 1,
        ..base
    });
    assert_eq!(r.verdict, Verdict::LimitExceeded);
    assert_eq!(codes(&r), vec![Code::E0705]);

    let r = with(ExecLimits { max_ops: 3, ..base });
    assert_eq!(r.verdict, Verdict::LimitExceeded);
    assert_eq!(codes(&r), vec![Code::E0704]);

    let r = with(ExecLimits {
        max_tensor_elements: 100,
        ..base
    });
    assert_eq!(r.verdict, Verdict::LimitExceeded);
    assert_eq!(codes(&r), vec![Code::E0701]);

    // inputs fit (560 floats), but the program's live streams do not
    let r = with(ExecLimits {
        max_live_bytes: 4 * 1200,
        ..base
    });
    assert_eq!(r.verdict, Verdict::LimitExceeded);
    assert!(
        matches!(codes(&r)[..], [Code::E0703] | [Code::E0701]),
        "{:?}",
        codes(&r)
    );
}

#[test]
fn a_merge_selector_that_disagrees_with_the_partition_is_a_runtime_error() {
    let ins = "  - name: X\n    dtype: fp32\n    dims: [D, N]\n    data_gen: torch.randn\n  - name: G\n    dtype: Multihot(fp32, E)\n    dims: [N]\n    data_gen: torch.randn\n    min: 1\n    max: 1\n  - name: H\n    dtype: Multihot(fp32, E)\n    dims: [N]\n    data_gen: torch.randn\n    min: 2\n    max: 2\n";
    let out = "  - name: Y\n    dtype: fp32\n    dims: [D, N]\n    data_transform:\n      - input_data['X']\n";
    let t = load(&task_text("E_value = 2\nctx[E] = E_value", ins, out));
    let prog = "\
Xb = step.Bufferize(a=1).apply(X)
P0, P1 = step.Partition(N=E).apply((Xb, G))
Y0 = step.Map(fn=fn_id).apply(P0)
Y1 = step.Map(fn=fn_id).apply(P1)
Ys = [Y0, Y1]
Y = step.Merge(fn=fn_vadd).apply((Ys, H))
O = step.Streamify().apply(Y)
return O";
    let r = verify(&t, Some(prog), &VerifyOptions::default());
    assert_eq!(r.verdict, Verdict::RuntimeError, "{:#?}", r.diagnostics);
    assert_eq!(codes(&r), vec![Code::E0612]);
}

#[test]
fn a_raw_llm_answer_is_accepted() {
    let answer =
        "Here is my solution:\n\n```python\nY = step.Map(fn=fn_sub).apply((A, B))\nreturn Y\n```\n";
    let r = verify(&sub_task(), Some(answer), &VerifyOptions::default());
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.diagnostics);
}

#[test]
fn broken_tasks_are_task_errors() {
    // no reference impl to verify
    let r = verify(&sub_task(), None, &VerifyOptions::default());
    assert_eq!(r.verdict, Verdict::TaskError);
    // a reference that uses something the evaluator does not know
    let bad = A_MINUS_B.replace(
        "input_data['A'] - input_data['B']",
        "torch.frobnicate(input_data['A'])",
    );
    let t = load(&task_text("", AB, &bad));
    let r = verify(
        &t,
        Some("Y = step.Map(fn=fn_sub).apply((A, B))\nreturn Y"),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::TaskError, "{:#?}", r.diagnostics);
}

#[test]
fn tolerances_come_from_flags() {
    let opts = VerifyOptions {
        atol: Some(1e9),
        ..VerifyOptions::default()
    };
    let r = verify(
        &sub_task(),
        Some("Y = step.Map(fn=fn_add2).apply((A, B))\nreturn Y"),
        &opts,
    );
    assert_eq!(r.verdict, Verdict::Pass);
}

#[test]
fn the_json_report_has_exactly_the_designed_fields() {
    let r = verify(
        &sub_task(),
        Some("Z = step.Zip().apply((B, A))\nY = step.Map(fn=fn_sub).apply(Z)\nreturn Y"),
        &VerifyOptions::default(),
    );
    let j = r.to_json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "task",
        "verdict",
        "linear",
        "linear_compat",
        "copies_needed",
        "diagnostics",
        "outputs",
        "seeds",
        "elapsed_us",
        "timing",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(j["verdict"], "value_mismatch");
    assert_eq!(j["seeds"], serde_json::json!([0, 1, 2]));
    let o = &j["outputs"][0];
    let mut ok: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
    ok.sort_unstable();
    assert_eq!(
        ok,
        vec!["first_mismatch", "max_abs_err", "max_rel_err", "name"]
    );
    let mut mk: Vec<&str> = o["first_mismatch"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    mk.sort_unstable();
    assert_eq!(mk, vec!["expected", "found", "index"]);
    let diags = j["diagnostics"].as_array().unwrap();
    assert!(
        diags
            .iter()
            .any(|d| d["code"] == "E0611" && d["severity"] == "error")
    );
}

#[test]
fn a_non_linear_program_still_runs_but_is_not_linear() {
    // A is read twice without a Copy: the executor shares the data, the report says non-linear
    let r = verify(
        &sub_task(),
        Some(
            "Y = step.Map(fn=fn_sub).apply((A, B))\nZ = step.Map(fn=fn_double).apply(A)\nreturn Y",
        ),
        &VerifyOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.diagnostics);
    assert_eq!(r.linear, Some(false));
    assert!(!r.passed());
    assert_eq!(r.copies_needed, 1);
}

#[test]
fn a_huge_dim_used_only_by_an_fn_is_a_limit_before_allocating() {
    let x = "  - name: X\n    dtype: fp32\n    dims: [N]\n    data_gen: torch.randn\n";
    let y = "  - name: Y\n    dtype: Buffer(fp32, [D, D])\n    dims: [N]\n    data_transform:\n      - input_data['X']\n";
    let text = task_text("", x, y).replace(
        "fns:\n",
        "fns:\n  - name: wide\n    func_name: fn_wide\n    apply: |\n      return [input[0] * 2]\n    input_dtype: Buffer(fp32, [D, D])\n    output_dtype: Buffer(fp32, [D, D])\n",
    );
    let t = load(&text);
    let opts = VerifyOptions {
        dims: dims(&[("D", 1 << 40)]),
        ..VerifyOptions::default()
    };
    let start = std::time::Instant::now();
    let r = verify(
        &t,
        Some(
            "R1 = step.Repeat(n=D).apply(X)\nR2 = step.Repeat(n=D).apply(R1)\nB = step.Bufferize(a=2).apply(R2)\nY = step.Map(fn=fn_wide).apply(B)\nreturn Y",
        ),
        &opts,
    );
    assert_eq!(r.verdict, Verdict::LimitExceeded, "{:#?}", r.diagnostics);
    assert_eq!(codes(&r), vec![Code::E0701]);
    assert!(start.elapsed() < Duration::from_millis(500));
}
