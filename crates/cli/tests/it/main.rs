//! End-to-end tests of the `stepforge` binary: verdict classes (DESIGN §9), exit codes and the
//! JSON shapes of DESIGN §10–11, and snapshots of representative human and JSON output.
//!
//! Every command runs from the workspace root with relative paths, so outputs name files the
//! way a user sees them; timings are redacted before snapshotting.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
#[path = "../../../agent/tests/it/common.rs"]
#[allow(dead_code)]
mod agent_common;
mod commands;
mod hardening;
mod hostile;
#[path = "../../../agent/tests/it/server.rs"]
#[allow(dead_code)]
mod server;
mod shapes;
mod sim;
mod verdicts;

// The MCP and LSP servers' stdio tests: they live with the servers crate, but only this test
// binary gets `CARGO_BIN_EXE_stepforge`.
#[path = "../../../servers/tests/it/stdio/mod.rs"]
mod servers_stdio;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Fixture files, relative to the workspace root.
pub const FIX: &str = "crates/cli/tests/it/fixtures";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

impl Run {
    /// stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON value ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// stdout parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", self.stderr))
            })
            .collect()
    }

    /// stdout then stderr, redacted, for snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            redact(&self.stdout),
            redact(&self.stderr)
        )
    }
}

/// Runs `stepforge ARGS` from the workspace root, without colour.
pub fn stepforge(args: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_stepforge"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the stepforge binary runs");
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        wall: start.elapsed(),
    }
}

pub fn fixture(name: &str) -> String {
    format!("{FIX}/{name}")
}

/// Replaces timings and the absolute workspace path: `…, 123 us)` in verdict lines, the
/// time column of summary tables, and `elapsed_us` in JSON lines.
pub fn redact(text: &str) -> String {
    let abs = root().canonicalize().map(|p| p.display().to_string()).ok();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let mut l = if body.starts_with('{') {
            match serde_json::from_str::<serde_json::Value>(body) {
                Ok(mut v) => {
                    redact_json(&mut v);
                    v.to_string()
                }
                Err(_) => body.to_string(),
            }
        } else {
            redact_us(&redact_table_time(body))
        };
        if let Some(abs) = &abs {
            l = l.replace(abs.as_str(), "[ROOT]");
        }
        out.push_str(&l);
        out.push_str(nl);
    }
    out
}

/// `elapsed_us` and every `*_us` under `timing` anywhere in a JSON value become `"[us]"`.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "elapsed_us" || k == "timing" {
                    *x = serde_json::Value::String("[us]".into());
                } else {
                    redact_json(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// `, 1234 us)` → `, [us] us)`.
fn redact_us(line: &str) -> String {
    let Some(at) = line.find(" us)") else {
        return line.to_string();
    };
    let head = &line[..at];
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return line.to_string();
    }
    format!("{}[us]{}", &head[..head.len() - digits], &line[at..])
}

/// The last cell of a summary-table row (`time (us)`) when it is a number.
fn redact_table_time(line: &str) -> String {
    if !(line.starts_with("| ") && line.ends_with(" |")) {
        return line.to_string();
    }
    let inner = &line[..line.len() - 2];
    match inner.rfind("| ") {
        Some(i) if inner[i + 2..].chars().all(|c| c.is_ascii_digit()) && i + 2 < inner.len() => {
            format!("{}| [us] |", &inner[..i])
        }
        _ => line.to_string(),
    }
}

#[test]
fn redaction_hides_timings_only() {
    assert_eq!(
        redact("t: pass (linear: true, seeds: 3, 1234 us), max abs err 0.000e0\n"),
        "t: pass (linear: true, seeds: 3, [us] us), max abs err 0.000e0\n"
    );
    assert_eq!(
        redact("| a | pass | true | 0 | 1.0e-7 | 981 |\n| task | time (us) |"),
        "| a | pass | true | 0 | 1.0e-7 | [us] |\n| task | time (us) |"
    );
    assert_eq!(
        redact("{\"elapsed_us\":12,\"seeds\":[0,1,2]}\n"),
        "{\"elapsed_us\":\"[us]\",\"seeds\":[0,1,2]}\n"
    );
}
