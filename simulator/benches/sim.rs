//! Simulator throughput: channel elements per second and simulated cycles per second, in
//! timing-only and functional mode, at default and scaled dims (issue #10).
//!
//! `cargo bench -p stepforge-sim` prints criterion medians; each case also prints the
//! derived rates (`elements/s`, `cycles/s`) from one run, which is what the issue asks for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use stepforge_ir::DimEnv;
use stepforge_sim::{HwConfig, ShapeFlops, SimInput, SimOptions, simulate};

struct Loaded {
    graph: stepforge_ir::Graph,
    dims: DimEnv,
}

fn load(rel: &str, dims: &[(&str, i64)]) -> Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    let loaded = stepforge_task::load_file(&path).unwrap();
    let task = loaded.ok_task().unwrap();
    let ov: Vec<(String, i64)> = dims.iter().map(|(k, v)| ((*k).to_string(), *v)).collect();
    let out = stepforge_check::check_task_with(task, &ov).unwrap();
    let values = stepforge_task::dim_values(task, &ov).unwrap();
    let (functions, _) = stepforge_check::lower_task_functions(task);
    let global = functions.global.unwrap();
    let env =
        stepforge_exec::eval::eval_global(global.as_ref(), stepforge_exec::eval::Env::new(values))
            .unwrap();
    Loaded {
        graph: out.graph.unwrap(),
        dims: DimEnv::from_statics(env.dims.iter().map(|(k, v)| (k.clone(), *v))),
    }
}

/// This thread's CPU time (Linux schedstat), in nanoseconds.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A bench case: label, task file, dims overrides.
type Case = (&'static str, &'static str, Vec<(&'static str, i64)>);

fn cases() -> Vec<Case> {
    vec![
        ("rmsnorm default", "operators/norm/rmsnorm.yaml", vec![]),
        (
            "rmsnorm D=1024 N=4096 M=1 (4M elements)",
            "operators/norm/rmsnorm.yaml",
            vec![("D", 1024), ("N", 4096), ("M", 1)],
        ),
        (
            "attention D=64 N=2048 M=16",
            "operators/attention/scan_max_rescale.yaml",
            vec![("D", 64), ("N", 2048), ("M", 16)],
        ),
        (
            "moe top2 D=1024 N=2048",
            "operators/moe-e2e/top2_softmax_ffn.yaml",
            vec![("D", 1024), ("N", 2048), ("K", 64)],
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let hw = HwConfig::default();
    let mut g = c.benchmark_group("sim_timing_only");
    g.sample_size(10);
    for (name, path, dims) in cases() {
        let l = load(path, &dims);
        let input = SimInput {
            graph: &l.graph,
            dims: &l.dims,
            hw: &hw,
            fns: &ShapeFlops,
            inputs: None,
            source: None,
            same_source: false,
        };
        let opts = SimOptions::default();
        let (t, c0) = (Instant::now(), cpu_ns());
        let r = simulate(&input, &opts).unwrap().report;
        let wall = t.elapsed().as_secs_f64();
        // CPU time of this thread: the one-core cost on a shared machine.
        let s = match (c0, cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => wall,
        };
        let elems: u64 = r.channels.iter().map(|c| c.elements).sum();
        println!(
            "{name}: {elems} channel elements, {} cycles, {wall:.3} s wall, {s:.3} s cpu: {:.2} M elements/s, {:.2} M cycles/s (cpu)",
            r.cycles,
            elems as f64 / s / 1e6,
            r.cycles as f64 / s / 1e6
        );
        g.bench_function(name, |b| b.iter(|| simulate(&input, &opts).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
