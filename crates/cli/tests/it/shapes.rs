//! The JSON shapes of DESIGN §10–11 and the directory mode of `verify`.

use std::collections::BTreeSet;

use crate::{fixture, redact, stepforge};

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(ks: &[&str]) -> BTreeSet<String> {
    ks.iter().map(ToString::to_string).collect()
}

/// DESIGN §11: the verify report.
const VERIFY_KEYS: &[&str] = &[
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

/// DESIGN §10: one diagnostic.
const DIAG_KEYS: &[&str] = &[
    "code", "severity", "message", "span", "labels", "notes", "help", "fixes",
];
/// Every span says which text its lines count in (`source`: task|program).
const SPAN_KEYS: &[&str] = &["source", "line", "column", "end_line", "end_column"];

/// Every diagnostic of a JSON document has exactly the DESIGN §10 shape.
fn assert_diagnostic_shape(d: &serde_json::Value) {
    // `verify` also says which text the lines count in (`source`: task|program, and `path`).
    let mut own = keys(d);
    if own.remove("source") {
        assert!(own.remove("path"), "{d}");
        assert!(
            matches!(d["source"].as_str(), Some("task" | "program")),
            "{d}"
        );
    }
    assert_eq!(own, set(DIAG_KEYS), "{d}");
    assert!(
        matches!(d["severity"].as_str(), Some("error" | "warning")),
        "{d}"
    );
    let code = d["code"].as_str().unwrap();
    assert!(
        code.len() == 5 && (code.starts_with('E') || code.starts_with('W')),
        "{code}"
    );
    if !d["span"].is_null() {
        assert_eq!(keys(&d["span"]), set(SPAN_KEYS), "{d}");
    }
    for l in d["labels"].as_array().unwrap() {
        assert_eq!(keys(l), set(&["span", "message"]), "{d}");
        assert_eq!(keys(&l["span"]), set(SPAN_KEYS), "{d}");
    }
    assert!(
        d["notes"]
            .as_array()
            .unwrap()
            .iter()
            .all(serde_json::Value::is_string)
    );
    assert!(d["help"].is_null() || d["help"].is_string());
    for f in d["fixes"].as_array().unwrap() {
        assert!(keys(f).is_superset(&set(&["message", "edits"])), "{f}");
        for e in f["edits"].as_array().unwrap() {
            assert_eq!(keys(e), set(&["span", "replacement"]), "{e}");
        }
    }
}

/// The whole verify report has exactly the DESIGN §11 keys, recursively.
fn assert_verify_shape(j: &serde_json::Value) {
    assert_eq!(keys(j), set(VERIFY_KEYS), "{j}");
    assert!(j["task"].is_string() && j["verdict"].is_string());
    // `null` when the program never reached the linearity check (DESIGN §10).
    assert!(j["linear"].is_boolean() || j["linear"].is_null());
    assert!(j["linear_compat"].is_boolean() || j["linear_compat"].is_null());
    assert!(j["copies_needed"].is_u64() && j["elapsed_us"].is_u64());
    assert_eq!(
        keys(&j["timing"]),
        set(&["generate_us", "reference_us", "program_us", "compare_us"]),
        "{j}"
    );
    assert!(
        j["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .all(serde_json::Value::is_u64)
    );
    for d in j["diagnostics"].as_array().unwrap() {
        assert_diagnostic_shape(d);
    }
    for o in j["outputs"].as_array().unwrap() {
        assert_eq!(
            keys(o),
            set(&["name", "max_abs_err", "max_rel_err", "first_mismatch"]),
            "{o}"
        );
        if !o["first_mismatch"].is_null() {
            assert_eq!(
                keys(&o["first_mismatch"]),
                set(&["index", "expected", "found"]),
                "{o}"
            );
        }
    }
}

#[test]
fn verify_json_has_exactly_the_designed_keys_for_every_verdict() {
    let sub = fixture("sub.yaml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![sub.clone()], "pass"),
        (
            vec![
                sub.clone(),
                "--impl".into(),
                fixture("sub_swapped_zip.step"),
            ],
            "value_mismatch",
        ),
        (vec![fixture("row_sums.yaml")], "shape_mismatch"),
        (
            vec![
                fixture("tile_sub.yaml"),
                "--impl".into(),
                fixture("tile_sub.step"),
            ],
            "runtime_error",
        ),
        (vec![fixture("malformed.yaml")], "task_error"),
        (
            vec![sub.clone(), "--impl".into(), fixture("sub_reused.step")],
            "value_mismatch",
        ),
        (
            vec![
                "tests/tasks/matvec_repeat.yaml".into(),
                "--dims".into(),
                "M=100000000".into(),
            ],
            "limit_exceeded",
        ),
        (
            vec![
                "operators/norm/rmsnorm.yaml".into(),
                "--impl".into(),
                "operators/wrong/norm__rmsnorm__wrong_function.step".into(),
            ],
            "type_error",
        ),
    ];
    for (args, verdict) in cases {
        let mut a = vec!["verify"];
        a.extend(args.iter().map(String::as_str));
        a.extend(["--format", "json"]);
        let run = stepforge(&a);
        assert_eq!(
            run.code,
            i32::from(verdict != "pass"),
            "{a:?}\n{}",
            run.stderr
        );
        assert_eq!(run.stdout.lines().count(), 1, "{a:?}: one line of JSON");
        let j = run.json();
        assert_eq!(j["verdict"], verdict, "{a:?}");
        assert_verify_shape(&j);
        assert_eq!(j["seeds"], serde_json::json!([0, 1, 2]));
    }
}

#[test]
fn verify_dir_json_prints_one_line_per_task() {
    let run = stepforge(&["verify", "tests/tasks", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 7);
    let mut tasks: Vec<&str> = lines.iter().map(|j| j["task"].as_str().unwrap()).collect();
    for j in &lines {
        assert_verify_shape(j);
        assert_eq!(j["verdict"], "pass", "{j}");
    }
    let n = tasks.len();
    tasks.dedup();
    assert_eq!(tasks.len(), n);
}

#[test]
fn verify_operators_json_is_26_lines_all_pass_and_linear() {
    let run = stepforge(&["verify", "operators/", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 26);
    for j in &lines {
        assert_verify_shape(j);
        assert_eq!(j["verdict"], "pass", "{j}");
        assert_eq!(j["linear"], true, "{j}");
    }
}

#[test]
fn verify_dir_human_prints_verdict_lines_and_a_summary_table() {
    let run = stepforge(&["verify", "tests/tasks"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("7/7 pass (7 pass and linear)"),
        "{}",
        run.stdout
    );
    insta::assert_snapshot!("verify_dir_human", redact(&run.stdout));
}

#[test]
fn verify_dir_with_a_failing_task_exits_1() {
    // fixtures/ holds passing, failing and malformed tasks: the run goes on past the bad ones
    let run = stepforge(&["verify", crate::FIX, "--format", "json"]);
    assert_eq!(run.code, 1);
    let verdicts: Vec<String> = run
        .json_lines()
        .iter()
        .map(|j| {
            format!(
                "{} {}",
                j["task"].as_str().unwrap(),
                j["verdict"].as_str().unwrap()
            )
        })
        .collect();
    insta::assert_snapshot!("verify_fixtures_dir_verdicts", verdicts.join("\n"));
}

#[test]
fn check_json_has_ok_linear_copies_needed_and_typed_streams() {
    for task in [
        "tests/tasks/rope_interleaved.yaml",
        "tests/tasks/moe_top1_lists.yaml",
    ] {
        let run = stepforge(&["check", task, "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let j = run.json();
        let k = keys(&j);
        assert!(
            k.is_superset(&set(&[
                "ok",
                "linear",
                "copies_needed",
                "streams",
                "diagnostics"
            ])),
            "{k:?}"
        );
        assert_eq!(j["ok"], true);
        assert_eq!(j["linear"], true);
        assert_eq!(j["copies_needed"], 0);
        let streams = j["streams"].as_array().unwrap();
        assert!(!streams.is_empty());
        for s in streams {
            assert_eq!(keys(s), set(&["name", "dtype", "dims"]), "{s}");
            assert!(
                s["dims"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(serde_json::Value::is_string)
            );
        }
    }
    let run = stepforge(&[
        "check",
        "tests/tasks/rope_interleaved.yaml",
        "--format",
        "json",
    ]);
    insta::assert_json_snapshot!("check_json_rope_interleaved", run.json());
}

#[test]
fn check_json_reports_copies_needed_and_the_fix() {
    let t = fixture("sub.yaml");
    let p = fixture("sub_reused.step");
    let run = stepforge(&[
        "check",
        t.as_str(),
        "--impl",
        p.as_str(),
        "--format",
        "json",
        "--fix",
    ]);
    assert_eq!(run.code, 1);
    let j = run.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["linear"], false);
    assert_eq!(j["copies_needed"], 1);
    for d in j["diagnostics"].as_array().unwrap() {
        assert_diagnostic_shape(d);
    }
    insta::assert_json_snapshot!("check_json_not_linear_with_fix", j);
    // the fixed program checks clean and passes
    let fixed = j["fixed"].as_str().unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("sub_reused_fixed.step");
    std::fs::write(&path, fixed).unwrap();
    let path = path.display().to_string();
    let run = stepforge(&[
        "check",
        t.as_str(),
        "--impl",
        path.as_str(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(
        (j["ok"].clone(), j["linear"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(j["copies_needed"], 0);
}

#[test]
fn snapshot_check_human_linearity_error() {
    let t = fixture("sub.yaml");
    let p = fixture("sub_reused.step");
    let run = stepforge(&["check", t.as_str(), "--impl", p.as_str(), "--fix"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("check_human_not_linear_with_fix", run.transcript());
}
