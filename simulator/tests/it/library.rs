//! Every operator-library task: timing-only and functional simulation at default dims.

use stepforge_sim::{HwConfig, ShapeFlops, SimOptions};

use crate::harness::{EvalFns, case, execute, operators, sim};

#[test]
fn library_timing_only_summary() {
    let hw = HwConfig::default();
    for depth in [2usize, 64] {
        for p in operators() {
            let c = case(&p, &[]);
            let opts = SimOptions {
                fifo_depth: Some(depth),
                suggest_depth: false,
                ..SimOptions::default()
            };
            let r = sim(&c, &ShapeFlops, false, &hw, &opts).report;
            println!(
                "depth {depth} {:<28} cycles {:>7} sol {:>7} deadlock {}",
                c.task.name,
                r.cycles,
                r.sol_cycles,
                r.deadlock
                    .as_ref()
                    .map_or("-".to_string(), |d| d.diagnostic.message.clone())
            );
            assert!(
                r.cycles >= r.sol_cycles,
                "{}: cycles {} < sol {}",
                c.task.name,
                r.cycles,
                r.sol_cycles
            );
        }
    }
}

#[test]
fn functional_outputs_equal_the_executors() {
    let hw = HwConfig {
        fifo_depth: 1 << 16,
        ..HwConfig::default()
    };
    for p in operators() {
        let c = case(&p, &[]);
        let fns = EvalFns::new(&c);
        let run = sim(&c, &fns, true, &hw, &SimOptions::default());
        assert!(run.report.deadlock.is_none(), "{}", c.task.name);
        let got = run.outputs.unwrap();
        let want = execute(&c);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.dims, w.dims, "{}", c.task.name);
            assert_eq!(g.fields.len(), w.fields.len(), "{}", c.task.name);
            for (gf, wf) in g.fields.iter().zip(&w.fields) {
                assert_eq!(gf.len(), wf.data.len(), "{}", c.task.name);
                for (a, b) in gf.iter().zip(wf.data.iter()) {
                    assert!(
                        (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                        "{}: {a} vs {b}",
                        c.task.name
                    );
                }
            }
        }
    }
}
