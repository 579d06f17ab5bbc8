//! Issue 4's verdict classes, end to end: a wrong program gets the right verdict, exit code
//! and the facts an agent needs (DESIGN §9, §11).

use std::time::Duration;

use crate::{fixture, stepforge};

/// `stepforge verify` on fixture files: the task, with a program instead of its reference impl.
fn verify(task: &str, program: Option<&str>, extra: &[&str]) -> crate::Run {
    let t = fixture(task);
    let p = program.map(fixture);
    let mut args = vec!["verify", t.as_str()];
    if let Some(p) = &p {
        args.extend(["--impl", p.as_str()]);
    }
    args.extend(extra);
    stepforge(&args)
}

fn verify_json(task: &str, program: Option<&str>) -> (crate::Run, serde_json::Value) {
    let run = verify(task, program, &["--format", "json"]);
    let j = run.json();
    (run, j)
}

fn error_codes(j: &serde_json::Value) -> Vec<String> {
    j["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_reference_impl_passes_with_exit_0() {
    let (run, j) = verify_json("sub.yaml", None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["linear"], true);
    assert_eq!(j["outputs"][0]["max_abs_err"], 0.0);
    assert_eq!(j["outputs"][0]["first_mismatch"], serde_json::Value::Null);
}

#[test]
fn a_raw_llm_answer_is_accepted_by_impl() {
    let (run, j) = verify_json("sub.yaml", Some("sub_answer.md"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(j["verdict"], "pass");
}

#[test]
fn a_well_typed_program_with_the_wrong_shape_is_a_shape_mismatch() {
    // row_sums.yaml declares S as [N] fp32 (the program matches it, so the checker is happy),
    // but its reference keeps the reduced axis: (N, 1).
    let (run, j) = verify_json("row_sums.yaml", None);
    assert_eq!(run.code, 1);
    assert_eq!(j["verdict"], "shape_mismatch");
    assert_eq!(j["linear"], true);
    assert_eq!(error_codes(&j), vec!["E0610"]);
    let msg = j["diagnostics"][0]["message"].as_str().unwrap();
    assert!(msg.contains("(7,)") && msg.contains("(7, 1)"), "{msg}");
    // not compared, so no error figures
    assert_eq!(j["outputs"][0]["max_abs_err"], serde_json::Value::Null);
}

/// The value-mismatch facts: index, expected and found, consistent with the error figures.
fn assert_first_mismatch(j: &serde_json::Value) -> (f64, f64) {
    assert_eq!(j["verdict"], "value_mismatch");
    assert_eq!(error_codes(j), vec!["E0611"]);
    let o = &j["outputs"][0];
    assert_eq!(o["name"], "Y");
    let m = &o["first_mismatch"];
    let index: Vec<u64> = m["index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    // Y is [D, N]: data (N, D), outermost first
    assert_eq!(index.len(), 2);
    assert!(index[0] < 7 && index[1] < 16, "{index:?}");
    let (expected, found) = (
        m["expected"].as_f64().unwrap(),
        m["found"].as_f64().unwrap(),
    );
    assert!((expected - found).abs() > 1e-5, "{m}");
    assert!(o["max_abs_err"].as_f64().unwrap() >= (expected - found).abs() - 1e-6);
    // the diagnostic says the same, in words
    let msg = j["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E0611")
        .unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains(&format!("{index:?}")), "{msg}");
    (expected, found)
}

#[test]
fn a_swapped_zip_operand_is_a_value_mismatch_with_the_first_index() {
    let (run, j) = verify_json("sub.yaml", Some("sub_swapped_zip.step"));
    assert_eq!(run.code, 1);
    let (expected, found) = assert_first_mismatch(&j);
    // B - A where A - B was expected
    assert!((expected + found).abs() < 1e-5, "{expected} {found}");
}

#[test]
fn a_wrong_fn_is_a_value_mismatch_with_the_first_index() {
    let (run, j) = verify_json("sub.yaml", Some("sub_wrong_fn.step"));
    assert_eq!(run.code, 1);
    assert_first_mismatch(&j);
    assert_eq!(j["linear"], true);
}

#[test]
fn an_fn_returning_the_wrong_shape_is_a_runtime_error_naming_it() {
    let (run, j) = verify_json("tile_sub.yaml", Some("tile_sub.step"));
    assert_eq!(run.code, 1);
    assert_eq!(j["verdict"], "runtime_error");
    let d = j["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap();
    let msg = d["message"].as_str().unwrap();
    assert!(msg.contains("fn_tile_sub"), "{msg}");
    assert!(msg.contains("(1,)") && msg.contains("(16,)"), "{msg}");
    // blamed on the Map that called it (line 3 of the program)
    assert_eq!(d["span"]["line"], 3);
}

#[test]
fn huge_dims_are_limit_exceeded_in_milliseconds_with_exit_1() {
    let run = stepforge(&[
        "verify",
        "tests/tasks/matvec_repeat.yaml",
        "--dims",
        "M=100000000",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["verdict"], "limit_exceeded");
    let codes = error_codes(&j);
    assert!(
        !codes.is_empty() && codes.iter().all(|c| c.starts_with("E07")),
        "{codes:?}"
    );
    // verification itself: milliseconds (debug build, shared machine: generous bound)
    let us = j["elapsed_us"].as_u64().unwrap();
    assert!(us < 500_000, "{us} us");
    // the whole process, including start-up: nowhere near an allocation of 25 GB
    assert!(run.wall < Duration::from_secs(10), "{:?}", run.wall);
}

#[test]
fn a_linearity_error_is_reported_but_the_program_still_runs() {
    let (run, j) = verify_json("sub.yaml", Some("sub_reused.step"));
    assert_eq!(run.code, 1);
    assert_eq!(j["linear"], false);
    assert_eq!(j["copies_needed"], 1);
    assert!(error_codes(&j).iter().any(|c| c.starts_with("E04")));
}

#[test]
fn a_malformed_task_is_a_task_error_with_exit_1_and_located_diagnostics() {
    let (run, j) = verify_json("malformed.yaml", None);
    assert_eq!(run.code, 1);
    assert_eq!(j["verdict"], "task_error");
    let diags = j["diagnostics"].as_array().unwrap();
    let codes = error_codes(&j);
    assert!(codes.len() >= 3, "{codes:?}");
    assert!(codes.iter().all(|c| c.starts_with("E0")), "{codes:?}");
    // every error has a line and column in the task file
    for d in diags.iter().filter(|d| d["severity"] == "error") {
        assert!(d["span"]["line"].as_u64().unwrap() > 0, "{d}");
    }
    // the same through check and in human form
    let f = fixture("malformed.yaml");
    let run = stepforge(&["check", f.as_str()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("malformed.yaml:12:18"),
        "{}",
        run.stderr
    );
    let run = stepforge(&["check", f.as_str(), "--format", "json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["ok"], false);
}

#[test]
fn missing_files_and_bad_flags_are_usage_errors_with_exit_2() {
    let missing = fixture("no_such_task.yaml");
    let task = fixture("sub.yaml");
    let no_impl = fixture("no_such_program.step");
    for args in [
        vec!["verify", missing.as_str()],
        vec!["verify", missing.as_str(), "--format", "json"],
        vec!["verify", task.as_str(), "--impl", no_impl.as_str()],
        vec!["check", missing.as_str()],
        vec!["check", task.as_str(), "--impl", no_impl.as_str()],
        vec!["parse", missing.as_str()],
        vec!["bench", missing.as_str()],
        vec!["verify", task.as_str(), "--dims", "M=abc"],
        vec!["verify", task.as_str(), "--seeds", "many"],
        vec!["explain", "E9999"],
        vec!["frobnicate"],
    ] {
        let run = stepforge(&args);
        assert_eq!(run.code, 2, "{args:?}\n{}", run.stderr);
        assert!(!run.stderr.trim().is_empty(), "{args:?}: no message");
        assert!(!run.stderr.contains("panicked"), "{args:?}\n{}", run.stderr);
    }
}

#[test]
fn snapshot_human_value_mismatch() {
    let run = verify("sub.yaml", Some("sub_swapped_zip.step"), &[]);
    insta::assert_snapshot!("verify_human_value_mismatch", run.transcript());
}

#[test]
fn snapshot_human_runtime_error() {
    let run = verify("tile_sub.yaml", Some("tile_sub.step"), &[]);
    insta::assert_snapshot!("verify_human_runtime_error", run.transcript());
}

#[test]
fn snapshot_human_shape_mismatch() {
    let run = verify("row_sums.yaml", None, &[]);
    insta::assert_snapshot!("verify_human_shape_mismatch", run.transcript());
}

#[test]
fn snapshot_human_limit_exceeded() {
    let run = stepforge(&[
        "verify",
        "tests/tasks/matvec_repeat.yaml",
        "--dims",
        "M=100000000",
    ]);
    insta::assert_snapshot!("verify_human_limit_exceeded", run.transcript());
}

#[test]
fn snapshot_human_malformed_task() {
    let run = verify("malformed.yaml", None, &[]);
    insta::assert_snapshot!("verify_human_malformed_task", run.transcript());
}

#[test]
fn snapshot_json_value_mismatch() {
    let (_, mut j) = verify_json("sub.yaml", Some("sub_wrong_fn.step"));
    crate::redact_json(&mut j);
    insta::assert_json_snapshot!("verify_json_value_mismatch", j);
}

#[test]
fn snapshot_json_runtime_error() {
    let (_, mut j) = verify_json("tile_sub.yaml", Some("tile_sub.step"));
    crate::redact_json(&mut j);
    insta::assert_json_snapshot!("verify_json_runtime_error", j);
}
