//! `stepforge sim`: exit codes, the report JSON shape (DESIGN §12), the deadlock object, and
//! the trace/DOT files.

use crate::stepforge;

const DEADLOCK: &str = "simulator/tests/tasks/rmsnorm_deadlock.yaml";

#[test]
fn deadlock_exits_1_with_a_deadlock_object() {
    let r = stepforge(&["sim", DEADLOCK, "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = r.json();
    for k in [
        "cycles",
        "seconds",
        "sol_cycles",
        "offchip_bytes",
        "onchip_peak_bytes",
        "compute_utilization",
        "offchip_bw_utilization",
        "units",
        "channels",
        "wall_ms",
        "bottleneck",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert!(v["sol_fraction"].is_null());
    let d = &v["deadlock"];
    assert_eq!(d["diagnostic"]["code"], "E0801");
    assert_eq!(d["suggested_depth"]["channel"], "x2");
    assert!(
        d["units"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["line"].is_u64())
    );
    let r = stepforge(&["sim", DEADLOCK, "--fifo-depth", "16"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn library_simulates_at_depth_two_with_trace_and_dot() {
    let r = stepforge(&["sim", "operators/", "--fifo-depth", "2", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let lines = r.json_lines();
    assert!(lines.len() >= 26);
    for l in &lines {
        assert!(l["deadlock"].is_null(), "{}", l["task"]);
        assert!(l["cycles"].as_u64().unwrap() >= l["sol_cycles"].as_u64().unwrap());
        let u = &l["units"][0];
        for k in [
            "id",
            "op",
            "line",
            "busy",
            "stall_input",
            "stall_output",
            "elements_in",
            "elements_out",
            "flops",
        ] {
            assert!(u.get(k).is_some(), "unit field {k}");
        }
        let c = &l["channels"][0];
        for k in ["from", "to", "depth", "max_occupancy", "elements"] {
            assert!(c.get(k).is_some(), "channel field {k}");
        }
    }
    let dir = std::env::temp_dir().join(format!("stepforge-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (t, d) = (dir.join("t.json"), dir.join("g.dot"));
    let r = stepforge(&[
        "sim",
        "operators/norm/rmsnorm.yaml",
        "--timing-only",
        "--trace",
        t.to_str().unwrap(),
        "--dot",
        d.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&t).unwrap()).unwrap();
    assert!(
        trace["traceEvents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(std::fs::read_to_string(&d).unwrap().starts_with("digraph"));
    let _ = std::fs::remove_dir_all(&dir);
}
