//! The classic deadlock (RMSNorm: Copy → square → Accum → Repeat, joined with the direct
//! copy): reported at depth 2 with the cycle's ops and lines, gone at depth ≥ the row length
//! and with the direct path Bufferized. Reports snapshotted in both renderers; the trace and
//! DOT of a run checked against their formats.

use std::path::Path;

use stepforge_sim::{HwConfig, ShapeFlops, SimOptions, to_dot};
use stepforge_syntax::codes::Code;

use crate::harness::{case_str, eval_fns, sim};

fn text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tasks/rmsnorm_deadlock.yaml"),
    )
    .unwrap()
}

pub const FIXED: &str = "x1, x2 = step.Copy().apply(X)
s = step.Map(fn=sq).apply(x1)
ss = step.Accum(fn=add, b=1).apply(s)
ssr = step.Repeat(n=D).apply(ss)
x2b = step.Bufferize(a=1).apply(x2)
x2s = step.Streamify().apply(x2b)
Y = step.Map(fn=scale).apply((x2s, ssr))
return Y
";

fn sid(c: &crate::harness::Case, name: &str) -> stepforge_ir::StreamId {
    c.graph
        .streams()
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .unwrap()
        .id
}

fn redact(mut v: serde_json::Value) -> serde_json::Value {
    v["wall_ms"] = serde_json::json!("[wall_ms]");
    v
}

#[test]
fn deadlock_at_depth_two_is_reported_with_the_cycle() {
    let c = case_str("rmsnorm_deadlock.yaml", &text(), None, &[]);
    let hw = HwConfig::default();
    let run = sim(&c, &ShapeFlops, false, &hw, &SimOptions::default());
    let r = &run.report;
    let d = r.deadlock.as_ref().expect("deadlock at depth 2");
    assert_eq!(d.diagnostic.code, Code::E0801);
    let ops: Vec<&str> = d.units.iter().map(|u| u.op.as_str()).collect();
    assert!(
        ops.contains(&"Copy") && ops.contains(&"Map(scale)") && ops.contains(&"Accum(add, b=1)"),
        "{ops:?}"
    );
    assert!(d.units.iter().all(|u| u.line.is_some()));
    assert_eq!(d.diagnostic.labels.len(), d.units.len());
    // D = 16: the direct FIFO must hold the row minus what the other branch buffers.
    let (name, depth) = d.suggested_depth.clone().unwrap();
    assert_eq!(name, "x2");
    assert!(depth <= 16 && depth > 2, "{depth}");
    let deeper = SimOptions {
        depths: [(sid(&c, "x2"), depth)].into(),
        ..SimOptions::default()
    };
    assert!(
        sim(&c, &ShapeFlops, false, &hw, &deeper)
            .report
            .deadlock
            .is_none()
    );
    let shallower = SimOptions {
        depths: [(sid(&c, "x2"), depth - 1)].into(),
        suggest_depth: false,
        ..SimOptions::default()
    };
    assert!(
        sim(&c, &ShapeFlops, false, &hw, &shallower)
            .report
            .deadlock
            .is_some()
    );
    insta::assert_snapshot!("deadlock_human", r.render_human(&c.source, false));
    insta::assert_json_snapshot!("deadlock_json", redact(r.to_json(&c.source)));
}

#[test]
fn deadlock_goes_away_with_deep_fifos_or_bufferize() {
    let hw = HwConfig::default();
    let c = case_str("rmsnorm_deadlock.yaml", &text(), None, &[]);
    for depth in [16usize, 17, 64] {
        let o = SimOptions {
            fifo_depth: Some(depth),
            ..SimOptions::default()
        };
        assert!(
            sim(&c, &ShapeFlops, false, &hw, &o)
                .report
                .deadlock
                .is_none(),
            "depth {depth}"
        );
    }
    let fixed = case_str("rmsnorm_deadlock.yaml", &text(), Some(FIXED), &[]);
    let run = sim(&fixed, &eval_fns(&fixed), true, &hw, &SimOptions::default());
    assert!(run.report.deadlock.is_none());
    let want = crate::harness::execute(&fixed);
    assert_eq!(
        run.outputs.unwrap()[0].fields[0],
        want[0].fields[0].data.to_vec()
    );
    // At model dims too (D = 1024).
    let big = case_str(
        "rmsnorm_deadlock.yaml",
        &text(),
        Some(FIXED),
        &[("D".into(), 1024), ("N".into(), 64)],
    );
    assert!(
        sim(&big, &ShapeFlops, false, &hw, &SimOptions::default())
            .report
            .deadlock
            .is_none()
    );
}

/// Required fields of the trace event format: every event has `ph`, `pid`, `name`; complete
/// events `ts`/`dur` and `tid`; counters `ts` and numeric `args`; metadata `args.name`.
#[test]
fn trace_follows_the_trace_event_format_and_dot_renders() {
    let c = case_str("rmsnorm_deadlock.yaml", &text(), Some(FIXED), &[]);
    let o = SimOptions {
        trace: true,
        ..SimOptions::default()
    };
    let run = sim(&c, &ShapeFlops, false, &HwConfig::default(), &o);
    let t = run.trace.unwrap();
    let evs = t["traceEvents"].as_array().unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for e in evs {
        let ph = e["ph"].as_str().unwrap();
        kinds.insert(ph.to_string());
        assert!(e["name"].is_string() && e["pid"].is_u64(), "{e}");
        match ph {
            "X" => assert!(
                e["ts"].is_u64() && e["dur"].is_u64() && e["tid"].is_u64(),
                "{e}"
            ),
            "C" => assert!(
                e["ts"].is_u64()
                    && e["args"]
                        .as_object()
                        .unwrap()
                        .values()
                        .all(|v| v.is_number()),
                "{e}"
            ),
            "M" => assert!(e["args"]["name"].is_string(), "{e}"),
            other => panic!("unexpected phase {other}"),
        }
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["C", "M", "X"]);
    let units = run.report.units.len();
    let tracks = evs.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(tracks, units);

    let dot = to_dot(&c.graph, &run.report);
    assert!(dot.starts_with("digraph") && dot.contains("->"));
    let dir = std::env::temp_dir().join(format!("stepforge-sim-dot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.dot");
    std::fs::write(&path, &dot).unwrap();
    match std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "dot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("`dot` not installed; DOT rendering skipped"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn program_of(task_text: &str) -> String {
    let i = task_text.find("impl: |\n").unwrap() + "impl: |\n".len();
    task_text[i..]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// W0801 fires on the deadlocking program; its fix checks clean, verifies and simulates
/// without deadlock at depth 2; it fires on no library task.
#[test]
fn lint_fires_and_its_fix_verifies_and_simulates() {
    let text = text();
    let loaded = stepforge_task::load_str("rmsnorm_deadlock.yaml", &text);
    let task = loaded.ok_task().unwrap();
    let prog = program_of(&text);
    let (_, out) = stepforge_check::check_answer(task, &prog);
    let w: Vec<_> = out
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::W0801)
        .collect();
    assert_eq!(w.len(), 1, "{:?}", out.diagnostics);
    assert!(w[0].labels.len() >= 4);
    let fixed = stepforge_syntax::diag::apply_fixes(&prog, &out.diagnostics, true);
    let (_, after) = stepforge_check::check_answer(task, &fixed);
    assert!(
        after.ok && after.linear == Some(true) && after.diagnostics.is_empty(),
        "{fixed}\n{:?}",
        after.diagnostics
    );
    let v = stepforge_driver::verify(
        task,
        Some(&fixed),
        &stepforge_exec::VerifyOptions::default(),
    );
    assert_eq!(v.verdict.as_str(), "pass");
    let c = case_str("rmsnorm_deadlock.yaml", &text, Some(&fixed), &[]);
    assert!(
        sim(
            &c,
            &ShapeFlops,
            false,
            &HwConfig::default(),
            &SimOptions::default()
        )
        .report
        .deadlock
        .is_none()
    );

    for p in crate::harness::operators() {
        let loaded = stepforge_task::load_file(&p).unwrap();
        let out = stepforge_check::check_task(loaded.ok_task().unwrap()).unwrap();
        assert!(
            out.diagnostics.iter().all(|d| d.code != Code::W0801),
            "{}",
            p.display()
        );
    }
}
