//! Every operator-library task: timing-only and functional simulation at default dims.

use stepforge_sim::{HwConfig, ShapeFlops, SimOptions};

use crate::harness::{case, eval_fns, execute, operators, sim};

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
            assert!(r.deadlock.is_none(), "{} at depth {depth}", c.task.name);
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
    // At the default FIFO depth (2): the library is hardware-feasible.
    let hw = HwConfig::default();
    for p in operators() {
        let c = case(&p, &[]);
        let fns = eval_fns(&c);
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

/// One FLOP query: function, input shapes, count.
type Query = (String, Vec<Vec<usize>>, stepforge_sim::flops::FlopCount);

/// Records every FLOP query of a run.
struct Recording<'a> {
    inner: stepforge_driver::EvalFns<'a>,
    log: std::cell::RefCell<Vec<Query>>,
    graph: &'a stepforge_ir::Graph,
}

impl stepforge_sim::ElemFns for Recording<'_> {
    fn flops(&self, f: stepforge_ir::FnId, inputs: &[Vec<usize>], outputs: &[Vec<usize>]) -> u64 {
        let c = self.inner.flop_count(f, inputs, outputs).unwrap();
        let name = self.graph.fn_sig(f).name.clone();
        self.log.borrow_mut().push((name, inputs.to_vec(), c));
        c.flops
    }
    fn apply(
        &self,
        f: stepforge_ir::FnId,
        state: Option<&[stepforge_tensor::Tensor]>,
        input: &[stepforge_tensor::Tensor],
    ) -> Result<Vec<stepforge_tensor::Tensor>, String> {
        self.inner.apply(f, state, input)
    }
    fn init(
        &self,
        f: stepforge_ir::FnId,
        outputs: &[Vec<usize>],
    ) -> Result<Vec<stepforge_tensor::Tensor>, String> {
        self.inner.init(f, outputs)
    }
}

/// The FLOP walker derives every shape in every library function (no node is charged by the
/// fallback estimate), and a function with a matmul costs at least 2·k·n per call.
#[test]
fn library_flops_come_from_the_ir_without_estimates() {
    let hw = HwConfig::default();
    for p in operators() {
        let c = case(&p, &[]);
        let rec = Recording {
            inner: eval_fns(&c),
            log: Default::default(),
            graph: &c.graph,
        };
        sim(&c, &rec, false, &hw, &SimOptions::default());
        for (name, shapes, count) in rec.log.borrow().iter() {
            println!("{:<28} {name:<12} {shapes:?} -> {count:?}", c.task.name);
            assert_eq!(count.estimated, 0, "{}: fn {name} {shapes:?}", c.task.name);
        }
    }
}

/// Through the session API, timing-only and functional runs charge the same FLOPs per firing
/// (parameter shapes come from the task's declarations when there is no data). Units whose
/// element counts differ (timing-only routing is synthetic) are not compared.
#[test]
fn session_flops_do_not_depend_on_the_mode() {
    for p in operators() {
        let s = stepforge_driver::Session::open(&p).unwrap();
        let run = |timing_only| {
            let o = stepforge_driver::SimOptions {
                timing_only,
                ..stepforge_driver::SimOptions::default()
            };
            let r = s.simulate(None, &o);
            r.run
                .unwrap_or_else(|| panic!("{}: {:?}", p.display(), r.diagnostics))
        };
        let (t, f) = (run(true), run(false));
        let mut compared = 0;
        for (a, b) in t.units.iter().zip(&f.units) {
            if a.elements_in == b.elements_in {
                assert_eq!(a.flops, b.flops, "{}: unit {} {}", p.display(), a.id, a.op);
                compared += 1;
            }
        }
        assert!(compared * 2 >= t.units.len(), "{}", p.display());
    }
}

/// Every number of every library task's timing-only run at depth 2, in one snapshot: the
/// engine's results must not change when its code does (batching, refactors).
#[test]
fn library_timing_is_stable() {
    let hw = HwConfig::default();
    let mut out = String::new();
    for p in operators() {
        let c = case(&p, &[]);
        let r = sim(&c, &eval_fns(&c), false, &hw, &SimOptions::default()).report;
        assert!(r.deadlock.is_none(), "{}", c.task.name);
        let f = sim(&c, &eval_fns(&c), true, &hw, &SimOptions::default()).report;
        assert!(f.deadlock.is_none(), "{}", c.task.name);
        out += &format!(
            "{} functional cycles={} peak={}\n",
            c.task.name, f.cycles, f.onchip_peak_bytes
        );
        out += &format!(
            "{} cycles={} sol={} peak={} read={} write={}\n",
            c.task.name,
            r.cycles,
            r.sol_cycles,
            r.onchip_peak_bytes,
            r.offchip_read,
            r.offchip_write
        );
        for u in &r.units {
            out += &format!(
                "  {} {} busy={} in={} out={} ein={} eout={} flops={}\n",
                u.id,
                u.op,
                u.busy,
                u.stall_input,
                u.stall_output,
                u.elements_in,
                u.elements_out,
                u.flops
            );
        }
        for ch in &r.channels {
            out += &format!(
                "  {}->{:?} depth={} max={} n={}\n",
                ch.from, ch.to, ch.depth, ch.max_occupancy, ch.elements
            );
        }
    }
    insta::assert_snapshot!("library_timing", out);
}

/// The report JSON of a timing-only run without its wall time.
fn timing_json(c: &crate::harness::Case, opts: &SimOptions) -> serde_json::Value {
    let hw = HwConfig::default();
    let mut v = sim(c, &ShapeFlops, false, &hw, opts)
        .report
        .to_json(&c.source);
    v["wall_ms"] = serde_json::Value::Null;
    v
}

/// Lockstep runs (load→Bufferize, Streamify→store, pass-through into Bufferize) are only
/// taken by untraced runs; a traced run fires every element through the FIFO queue. Both
/// must give the same report at every FIFO depth, including a deadlock's final state.
#[test]
fn lockstep_runs_equal_the_queued_path() {
    let mut paths = operators();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    paths.push(root.join("tests/tasks/rmsnorm_deadlock.yaml"));
    for p in paths {
        let c = case(&p, &[]);
        for depth in [1usize, 2, 3, 8] {
            let plain = SimOptions {
                fifo_depth: Some(depth),
                suggest_depth: false,
                ..SimOptions::default()
            };
            let traced = SimOptions {
                trace: true,
                ..plain.clone()
            };
            assert_eq!(
                timing_json(&c, &plain),
                timing_json(&c, &traced),
                "{} at depth {depth}",
                c.task.name
            );
        }
    }
}
