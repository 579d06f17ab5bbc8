//! Analytical checks of the timing model (issue #10 "Must show").

use std::path::Path;

use stepforge_sim::{HwConfig, ShapeFlops, SimOptions};

use crate::harness::{Case, case_str, eval_fns, sim};

fn task(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tasks")
            .join(name),
    )
    .unwrap()
}

fn timing(c: &Case, hw: &HwConfig) -> stepforge_sim::SimReport {
    sim(c, &ShapeFlops, false, hw, &SimOptions::default()).report
}

/// A chain of k Maps with II=1 over n scalars takes n + depth cycles: the depth does not
/// change with n, and every stage adds its latency plus one hop.
#[test]
fn map_chain_takes_n_plus_depth() {
    let hw = HwConfig::default();
    let text = task("stream.yaml");
    for k in [1usize, 4, 16] {
        let mut prog = String::from("E0 = step.Map(fn=neg).apply(X)\n");
        for i in 1..k {
            prog += &format!("E{i} = step.Map(fn=neg).apply(E{})\n", i - 1);
        }
        prog += &format!("return E{}\n", k - 1);
        let mut depth = None;
        for n in [10i64, 1000, 20000] {
            let c = case_str("stream", &text, Some(&prog), &[("N".into(), n)]);
            let r = timing(&c, &hw);
            assert!(r.deadlock.is_none());
            let d = r.cycles - n as u64;
            assert_eq!(*depth.get_or_insert(d), d, "k={k} n={n}");
        }
        // load start-up + latency, 1 cycle + 1 hop per Map, the store's hop and latency, and
        // the stop token's extra cycle.
        let expect = hw.offchip.startup
            + hw.offchip.latency
            + 2 * k as u64
            + 2 * hw.hop_latency
            + hw.offchip.latency;
        let d = depth.unwrap();
        assert!(
            d.abs_diff(expect) <= 3,
            "k={k}: depth {d}, expected about {expect}"
        );
    }
}

/// Copying a large stream of tiles is bound by off-chip bandwidth: (read + write) / 1024.
#[test]
fn large_load_is_offchip_bound() {
    let hw = HwConfig::default();
    let c = case_str(
        "tile_copy",
        &task("tile_copy.yaml"),
        None,
        &[("N".into(), 4096), ("D".into(), 512)],
    );
    let r = timing(&c, &hw);
    let bytes = 2 * 4096 * 512 * hw.element_bytes;
    assert_eq!(r.offchip_read + r.offchip_write, bytes);
    let bound = bytes as f64 / 1024.0;
    let err = (r.cycles as f64 - bound).abs() / bound;
    assert!(err < 0.05, "cycles {} vs bytes/1024 = {bound}", r.cycles);
    assert!(r.bottleneck.starts_with("memory-bound"), "{}", r.bottleneck);
    assert!(r.cycles >= r.sol_cycles);
}

/// A Map of matmuls is compute-bound: FLOPs / 1024 within 5%.
#[test]
fn matmul_map_is_compute_bound() {
    let hw = HwConfig::default();
    let prog = "C = step.Map(fn=mm).apply((A, B))\nreturn C\n";
    let c = case_str(
        "tiles",
        &task("tiles.yaml"),
        Some(prog),
        &[("N".into(), 64), ("D".into(), 64)],
    );
    // FLOPs from the function's IR (`input[0] @ input[1]`) and the shapes: 2·D³ per tile.
    let r = sim(&c, &eval_fns(&c), false, &hw, &SimOptions::default()).report;
    let flops = 64 * 2 * 64u64.pow(3);
    assert_eq!(r.units.iter().map(|u| u.flops).sum::<u64>(), flops);
    let bound = flops as f64 / 1024.0;
    let err = (r.cycles as f64 - bound).abs() / bound;
    assert!(err < 0.05, "cycles {} vs FLOPs/1024 = {bound}", r.cycles);
    assert!(
        r.bottleneck.starts_with("compute-bound"),
        "{}",
        r.bottleneck
    );
    assert!(r.cycles >= r.sol_cycles);
}

/// The same through the session API (the path the CLI and the agent take).
#[test]
fn matmul_map_is_compute_bound_through_the_session() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tasks/tiles.yaml");
    let s = stepforge_driver::Session::open(&path).unwrap();
    let opts = stepforge_driver::SimOptions {
        dims: vec![("N".into(), 64), ("D".into(), 64)],
        timing_only: true,
        ..stepforge_driver::SimOptions::default()
    };
    let prog = "C = step.Map(fn=mm).apply((A, B))\nreturn C\n";
    let r = s.simulate(Some(prog), &opts);
    let run = r
        .run
        .as_ref()
        .unwrap_or_else(|| panic!("{:?}", r.diagnostics));
    let flops = 64 * 2 * 64u64.pow(3);
    assert_eq!(run.units.iter().map(|u| u.flops).sum::<u64>(), flops);
    let bound = flops as f64 / 1024.0;
    let err = (run.cycles as f64 - bound).abs() / bound;
    assert!(err < 0.05, "cycles {} vs FLOPs/1024 = {bound}", run.cycles);
    assert!(
        run.bottleneck.starts_with("compute-bound"),
        "{}",
        run.bottleneck
    );
}
