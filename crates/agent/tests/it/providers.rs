//! The providers against a misbehaving loopback server: the loop survives every failure, loses
//! nothing, and counts each one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stepforge_agent::Status;
use stepforge_agent::config::{ProviderKind, RunConfig};

use crate::common::*;
use crate::server::{Api, Reply, Server};

/// A tasks directory holding only `operators/norm/rmsnorm.yaml`.
fn one_task(dir: &TempDir) -> String {
    let d = dir.0.join("tasks");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        operators().join("norm/rmsnorm.yaml"),
        d.join("rmsnorm.yaml"),
    )
    .unwrap();
    d.display().to_string()
}

fn rms_program() -> String {
    references()["norm_rmsnorm"].1.clone()
}

fn misbehaving(right: &str, n: usize) -> Reply {
    let right = right.to_string();
    match n {
        0 => Reply::Status(429, "{\"error\":\"slow down\"}".into(), Some("0.3".into())),
        1 => Reply::Answer(format!(
            "Sure! Here is the kernel:\n\n{right}\nIt buffers each row once."
        )),
        2 => Reply::Status(500, "oops".into(), None),
        3 => Reply::Answer(format!(
            "First a sketch:\n```python\nprint('not a program')\n```\nThen the answer:\n{right}"
        )),
        4 => Reply::Slow(Duration::from_millis(1500), right),
        6 => Reply::Malformed,
        8 => Reply::Truncated,
        10 => Reply::Status(503, "busy".into(), Some("0".into())),
        _ => Reply::Answer(right),
    }
}

fn survive(kind: ProviderKind, api: Api) {
    // Computed once: the server must answer fast (the client timeout is 0.5 s).
    let right = yaml_answer(&rms_program());
    let server = Server::start(
        Arc::new(move |got: Api, _req: &Value, n| {
            if got != api {
                return Reply::Status(400, "wrong API".into(), None);
            }
            misbehaving(&right, n)
        }),
        Duration::ZERO,
    );
    let dir = TempDir::new("misbehave");
    let mut cfg: RunConfig = config(&server.base, kind);
    cfg.tasks_dir = one_task(&dir);
    cfg.samples = 7;
    cfg.concurrency = 1;
    cfg.repairs = 0;
    cfg.provider.timeout_s = 0.5;
    let store = dir.file("s.db");
    let t = Instant::now();
    let s = run(cfg, &store);
    assert_eq!(s.status, Status::Done);
    // The 429's retry-after (0.3 s) was honoured.
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Nothing lost: every sample answered and passed after its retries.
    let d = dump(&store);
    assert_eq!(s.solved, 1, "{:?}", s.failures);
    let samples = d["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 7);
    assert!(samples.iter().all(|s| s["passed"] == true), "{samples:#?}");
    // Every failure counted by kind.
    let f = &s.failures;
    let got: Vec<(&str, u64)> = f.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        got,
        vec![
            ("http_429", 1),
            ("http_5xx", 2),
            ("malformed", 1),
            ("timeout", 1),
            ("truncated", 1)
        ]
    );
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        13
    );
}

#[test]
fn openai_client_survives_a_misbehaving_server() {
    survive(ProviderKind::Openai, Api::OpenAi);
}

#[test]
fn anthropic_client_survives_a_misbehaving_server() {
    survive(ProviderKind::Anthropic, Api::Anthropic);
}

#[test]
fn exhausted_retries_are_recorded_not_lost() {
    let server = Server::start(
        Arc::new(|_: Api, _: &Value, _| Reply::Status(500, "down".into(), None)),
        Duration::ZERO,
    );
    let dir = TempDir::new("down");
    let mut cfg = config(&server.base, ProviderKind::Openai);
    cfg.tasks_dir = one_task(&dir);
    cfg.samples = 3;
    cfg.provider.max_retries = 1;
    cfg.iterations = 0;
    let store = dir.file("s.db");
    let s = run(cfg, &store);
    assert_eq!(s.solved, 0);
    assert_eq!(s.failures.get("failed_http_5xx"), Some(&3));
    assert_eq!(s.failures.get("http_5xx"), Some(&6));
    let d = dump(&store);
    let verdicts: Vec<&str> = d["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, vec!["provider_error"; 3]);
}

#[test]
fn budget_stops_the_run_cleanly() {
    let server = scripted_server(0);
    let dir = TempDir::new("budget");
    let mut cfg = config(&server.base, ProviderKind::Openai);
    cfg.tasks_dir = one_task(&dir);
    cfg.samples = 50;
    cfg.concurrency = 2;
    cfg.budget_tokens = Some(1000);
    let s = run(cfg, &dir.file("s.db"));
    assert_eq!(s.status, Status::BudgetExhausted);
    // Calls in flight when the budget ran out still finish: at most `concurrency` more.
    let per_call = s.tokens / s.samples;
    assert!(
        s.tokens >= 1000 && s.tokens < 1000 + 2 * per_call + per_call,
        "{} tokens",
        s.tokens
    );
    assert!(s.samples < 50);
}

#[test]
fn unusable_settings_are_usage_errors() {
    let mut cfg = RunConfig::default();
    cfg.provider.model = "m".into();
    cfg.objective = stepforge_agent::config::Objective::Cycles;
    let e = cfg.validate(false).unwrap_err();
    assert!(
        e.contains("--objective cycles needs the cycle-level simulator"),
        "{e}"
    );
}
