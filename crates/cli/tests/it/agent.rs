//! `stepforge agent`: a run killed with SIGKILL mid-way and resumed ends with the same store as
//! an uninterrupted run (same solved set, no duplicate samples, same token totals), and usage
//! errors exit with code 2.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_common::{TempDir, dump, scripted_server, subset};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stepforge")
}

fn run_args(tasks: &str, base: &str, store: &str) -> Vec<String> {
    [
        "agent",
        "run",
        "--tasks",
        tasks,
        "--provider",
        "openai",
        "--base-url",
        base,
        "--model",
        "scripted",
        "--samples",
        "2",
        "--concurrency",
        "2",
        "--iterations",
        "10",
        "--store",
        store,
        "--format",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

fn lines(path: &str) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_result() {
    let server = scripted_server(30);
    let dir = TempDir::new("kill");
    let tasks = subset(&dir);

    let full = dir.file("full.db");
    let out = Command::new(bin())
        .args(run_args(&tasks, &server.base, &full))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let full_calls = lines(&format!("{full}.transcript.jsonl"));

    let killed = dir.file("killed.db");
    let transcript = format!("{killed}.transcript.jsonl");
    let mut child = Command::new(bin())
        .args(run_args(&tasks, &server.base, &killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once about a third of the calls are answered (past iteration 0).
    let start = Instant::now();
    while lines(&transcript) < full_calls / 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run makes no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    assert!(
        lines(&transcript) < full_calls,
        "killed too late to test anything"
    );

    let out = Command::new(bin())
        .args(["agent", "resume", "--store", &killed, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(resumed["status"], "done");
    assert_eq!(resumed["solved_tasks"], full_json["solved_tasks"]);
    assert_eq!(resumed["tokens"], full_json["tokens"]);
    assert_eq!(resumed["iterations"], full_json["iterations"]);
    // The whole store: every sample once (keys are unique), same verdicts, tokens, solutions.
    let (a, b) = (dump(&killed), dump(&full));
    assert_eq!(
        a["samples"].as_array().unwrap().len(),
        b["samples"].as_array().unwrap().len()
    );
    assert_eq!(a, b);
}

#[test]
fn a_bad_fifo_depth_is_a_usage_error() {
    let dir = TempDir::new("usage");
    let out = Command::new(bin())
        .args([
            "agent",
            "run",
            "--tasks",
            "operators",
            "--model",
            "m",
            "--fifo-depth",
            "0",
            "--store",
        ])
        .arg(dir.file("s.db"))
        .current_dir(crate::root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--fifo-depth must be at least 1"), "{err}");
    assert!(
        !std::path::Path::new(&dir.file("s.db")).exists(),
        "nothing starts on a usage error"
    );
}

#[test]
fn the_cycles_objective_simulates_and_optimizes() {
    let server = scripted_server(0);
    let dir = TempDir::new("cycles");
    let tasks = subset(&dir);
    let store = dir.file("c.db");
    let mut args = run_args(&tasks, &server.base, &store);
    let k = args.iter().position(|a| a == "--samples").unwrap();
    args[k + 1] = "1".into();
    args.extend(["--objective", "cycles"].map(String::from));
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["solved"], 6, "{v}");
    // The scripted server only repeats its answers: one optimize round, nothing faster.
    let last = v["iterations"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["improved"], 0, "{v}");
    // Every solution was simulated (cycles and on-chip bytes) and is on its task's front.
    let d = dump(&store);
    for s in d["solutions"].as_array().unwrap() {
        assert!(s["cycles"].as_u64().unwrap() > 0, "{s}");
        assert!(
            d["pareto"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["sample_key"] == s["sample_key"]),
            "{s}"
        );
    }
    let report = Command::new(bin())
        .args(["agent", "report", "--store", &store])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("Pareto sets"), "{text}");
}
