//! Prompt builders. The proposer prompt is: the op manual (system message), then the
//! demonstrations (solved task files with their `impl`), and last the task itself (its file
//! without `impl`, text unchanged), asking for a YAML `impl:` block. Repair prompts send back
//! the verifier's JSON with the `explain` text of every code; optimize prompts carry the best
//! solution and its simulator report.

use std::fmt::Write;

use serde_json::Value;

use crate::tool::Tool;

/// The largest verify JSON fed back in a repair prompt.
const MAX_REPORT: usize = 16 << 10;
/// At most this many distinct codes are explained per repair prompt, each bounded.
const MAX_EXPLAINED: usize = 6;
const MAX_EXPLAIN: usize = 4 << 10;

/// A solved task shown to the proposer.
#[derive(Debug, Clone, PartialEq)]
pub struct Demo {
    pub task: String,
    /// The task file without `impl`.
    pub task_text: String,
    pub program: String,
}

/// The system message: role, answer format and the op manual.
pub fn system_prompt(manual: &str) -> String {
    format!(
        "You write STeP (Streaming Tensor Programs) kernels. Answer with one YAML block \
         `impl: |` followed by the program indented by two spaces, and nothing else.\n\n{manual}"
    )
}

/// A task file with `impl:` appended as a YAML block scalar.
pub fn task_with_impl(task_text: &str, program: &str) -> String {
    let mut s = task_text.trim_end().to_string();
    s.push_str("\nimpl: |\n");
    for l in program.lines() {
        if l.trim().is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "  {l}");
        }
    }
    s
}

/// The proposer's user message.
pub fn proposer_prompt(tool: &Tool, demos: &[Demo]) -> String {
    let mut s = String::new();
    if !demos.is_empty() {
        s.push_str("Solved tasks, each with a verified `impl`:\n\n");
        for (i, d) in demos.iter().enumerate() {
            let _ = write!(
                s,
                "## Demonstration {}\n```yaml\n{}\n```\n\n",
                i + 1,
                task_with_impl(&d.task_text, &d.program).trim_end()
            );
        }
    }
    let _ = write!(
        s,
        "## Task\n```yaml\n{}\n```\n\nWrite the program for this task. Answer with a YAML block \
         `impl: |` followed by the indented program.\n",
        tool.prompt_text().trim_end()
    );
    s
}

/// The repair turn: the verdict, the verifier's JSON and the explanations of its codes.
pub fn repair_prompt(
    verdict: &str,
    report_json: Option<&str>,
    explain: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut s = format!("Your program was rejected: verdict `{verdict}`.\n");
    if let Some(r) = report_json {
        let _ = write!(
            s,
            "\nThe verifier's report (JSON):\n```json\n{}\n```\n",
            crate::util::truncate(r, MAX_REPORT)
        );
        let codes = report_codes(r);
        if !codes.is_empty() {
            s.push_str("\nWhat the diagnostic codes mean:\n");
            for c in codes.iter().take(MAX_EXPLAINED) {
                if let Some(text) = explain(c) {
                    let _ = write!(
                        s,
                        "\n### {c}\n{}\n",
                        crate::util::truncate(text.trim(), MAX_EXPLAIN)
                    );
                }
            }
        }
    }
    s.push_str("\nFix the program and answer again with the whole `impl: |` block.\n");
    s
}

/// The distinct diagnostic codes of a verify/check JSON, in order of first appearance.
fn report_codes(report: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(report).unwrap_or(Value::Null);
    let mut out: Vec<String> = Vec::new();
    if let Some(ds) = v.get("diagnostics").and_then(Value::as_array) {
        for d in ds {
            if let Some(c) = d.get("code").and_then(Value::as_str)
                && !out.iter().any(|o| o == c)
            {
                out.push(c.to_string());
            }
        }
    }
    out
}

/// The optimize prompt (`--objective cycles`): the task, its current best solution and that
/// solution's simulator report, asking for a faster program.
pub fn optimize_prompt(tool: &Tool, best_program: &str, sim_report: &Value) -> String {
    let pick = |k: &str| sim_report.get(k).cloned().unwrap_or(Value::Null);
    let summary = serde_json::json!({
        "cycles": pick("cycles"),
        "sol_cycles": pick("sol_cycles"),
        "sol_fraction": pick("sol_fraction"),
        "bottleneck": pick("bottleneck"),
        "onchip_peak_bytes": pick("onchip_peak_bytes"),
        "units": pick("units"),
    });
    format!(
        "## Task\n```yaml\n{}\n```\n\nThis verified program solves it:\n```yaml\n{}\n```\n\n\
         The simulator reports (cycles, speed-of-light bound, bottleneck, per-unit stalls):\n```json\n{}\n```\n\n\
         Write a program for the same task that takes fewer cycles (and no more on-chip memory) \
         while computing the same values. Answer with a YAML block `impl: |` followed by the \
         indented program.\n",
        tool.prompt_text().trim_end(),
        task_with_impl("", best_program).trim(),
        crate::util::truncate(&summary.to_string(), MAX_REPORT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_prompt_explains_codes_once() {
        let r = r#"{"verdict":"type_error","diagnostics":[{"code":"E0302"},{"code":"E0302"},{"code":"E0401"}]}"#;
        let p = repair_prompt("type_error", Some(r), &|c| Some(format!("about {c}")));
        assert_eq!(p.matches("### E0302").count(), 1);
        assert!(p.contains("about E0401"));
        assert!(
            task_with_impl("a: 1\n", "X = 1\nreturn X").ends_with("impl: |\n  X = 1\n  return X\n")
        );
    }
}
