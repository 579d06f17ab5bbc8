//! `explain` and `parse` over everything they are meant to accept.

use crate::{root, stepforge};

fn yaml_files(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()) == Some("yaml") {
                let rel = p.strip_prefix(root()).unwrap();
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn all_codes() -> Vec<String> {
    let run = stepforge(&["explain", "all", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
        .as_array()
        .expect("a JSON array of codes")
        .iter()
        .map(|c| {
            let mut k: Vec<&String> = c.as_object().unwrap().keys().collect();
            k.sort();
            assert_eq!(k, ["code", "severity", "title"], "{c}");
            c["code"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn explain_all_lists_unique_codes_in_every_range() {
    let codes = all_codes();
    let mut sorted = codes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), codes.len(), "duplicate codes");
    for prefix in ["E01", "E02", "E03", "E04", "E05", "E06", "E07", "W0"] {
        assert!(
            codes.iter().any(|c| c.starts_with(prefix)),
            "no {prefix}xx code"
        );
    }
    let human = stepforge(&["explain", "all"]);
    assert_eq!(human.code, 0);
    assert_eq!(human.stdout.lines().count(), codes.len());
}

#[test]
fn explain_every_code_exits_0_in_both_formats() {
    let mut failures = Vec::new();
    for code in all_codes() {
        let human = stepforge(&["explain", &code]);
        if human.code != 0 || human.stdout.trim().is_empty() {
            failures.push(format!(
                "{code} (human): exit {}: {}",
                human.code, human.stderr
            ));
        }
        let json = stepforge(&["explain", &code.to_lowercase(), "--format", "json"]);
        if json.code != 0 {
            failures.push(format!(
                "{code} (json): exit {}: {}",
                json.code, json.stderr
            ));
            continue;
        }
        let j = json.json();
        if j["code"] != code.as_str() || j["explanation"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{code} (json): {j}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_every_sample_task_and_operator_exits_0() {
    let mut files = yaml_files("tests/tasks");
    assert_eq!(files.len(), 7);
    files.extend(yaml_files("operators"));
    assert_eq!(files.len(), 7 + 26);
    let mut failures = Vec::new();
    for f in &files {
        let run = stepforge(&["parse", f]);
        if run.code != 0 || !run.stderr.is_empty() {
            failures.push(format!("{f}: exit {}\n{}", run.code, run.stderr));
        }
        let run = stepforge(&["parse", f, "--format", "json"]);
        if run.code != 0 {
            failures.push(format!("{f} (json): exit {}\n{}", run.code, run.stderr));
        } else {
            run.json();
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_of_a_broken_program_exits_1_with_a_located_error() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("broken.step");
    std::fs::write(&path, "Y = step.Map(fn=fn_a).apply((A, B)\nreturn Y\n").unwrap();
    let p = path.display().to_string();
    let run = stepforge(&["parse", &p, "--as", "program"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("E01"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn snapshot_parse_program_human() {
    let run = stepforge(&[
        "parse",
        "operators/wrong/norm__rmsnorm__wrong_function.step",
        "--as",
        "program",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("parse_program_human", run.transcript());
}

#[test]
fn check_reports_unknown_torch_function_in_an_element_function() {
    let run = stepforge(&[
        "check",
        "crates/cli/tests/it/fixtures/unknown_torch_fn.yaml",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    insta::assert_snapshot!("check_unknown_torch_fn", run.transcript());
}

#[test]
fn reference_snippets_share_one_scope_in_file_order() {
    let path = "crates/cli/tests/it/fixtures/shared_reference_scope.yaml";
    let run = stepforge(&["check", path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = stepforge(&["verify", path, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json_lines()[0]["verdict"], "pass", "{}", run.stdout);
}
