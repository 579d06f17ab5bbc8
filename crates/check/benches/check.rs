//! Checking a 20-op program (DESIGN §1: verdicts well under a millisecond; target here
//! well under 50 µs for the checker).
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const TASK: &str = include_str!("../tests/it/fixtures/rows.yaml");

/// 20 ops covering Copy, Map (one stream and zipped), Bufferize, Partition/Merge, Streamify,
/// Flatten, Accum, Repeat, Zip and Promote.
const PROGRAM: &str = "\
X1, X2 = step.Copy().apply(X)
A = step.Map(fn=square).apply(X1)
B = step.Map(fn=mul_fn).apply((A, X2))
Bb = step.Bufferize(a=1).apply(B)
Nb = step.Map(fn=norm_fn).apply(Bb)
S1, S2 = step.Copy().apply(S)
P0, P1 = step.Partition(N=E).apply((Nb, S1))
Q0 = step.Map(fn=norm_fn).apply(P0)
Q1 = step.Map(fn=norm_fn).apply(P1)
M = step.Merge(fn=tile_add).apply(((Q0, Q1), S2))
F = step.Streamify().apply(M)
Tb = step.Bufferize(a=2).apply(T)
Ts = step.Streamify().apply(Tb)
Tf = step.Flatten(L=[1]).apply(Ts)
Ta = step.Accum(fn=add_fn, b=1).apply(Tf)
R = step.Repeat(n=D).apply(Ta)
Z = step.Zip().apply((F, R))
W = step.Map(fn=mul_fn).apply(Z)
Pr = step.Promote(b=0).apply(W)
Y = step.Accum(fn=add_fn, b=2).apply(Pr)
return Y
";

fn bench(c: &mut Criterion) {
    let loaded = stepforge_task::load_str("rows.yaml", TASK);
    let task = loaded.task.expect("task loads");
    let program = stepforge_syntax::parse_program(PROGRAM)
        .value
        .expect("parses");
    let out = stepforge_check::check_program(&task, &program);
    assert!(
        out.ok && out.is_linear() && out.diagnostics.is_empty(),
        "{:?}",
        out.diagnostics
    );
    assert_eq!(out.graph.as_ref().map(|g| g.op_count()), Some(20 + 3 + 1));

    let te = stepforge_check::TaskEnv::new(&task, &[], false);
    let opts = stepforge_check::CheckOptions::default();
    c.bench_function("check_20_ops (prepared task env)", |b| {
        b.iter(|| stepforge_check::check_with_env(black_box(&te), black_box(&program), &opts))
    });
    // The machine is shared: wall time includes waiting for a core. On Linux, also measure the
    // thread's own CPU time (/proc/thread-self/schedstat, nanoseconds on a CPU). The kernel
    // updates it at scheduler ticks, so samples are long (flat sampling, ~0.25 s each).
    if thread_cpu_ns().is_some() {
        let mut g = c.benchmark_group("cpu");
        g.sampling_mode(criterion::SamplingMode::Flat)
            .sample_size(20)
            .measurement_time(std::time::Duration::from_secs(5));
        g.bench_function("check_20_ops (prepared task env, thread CPU time)", |b| {
            b.iter_custom(|iters| {
                let t0 = thread_cpu_ns().unwrap_or(0);
                for _ in 0..iters {
                    black_box(stepforge_check::check_with_env(
                        black_box(&te),
                        black_box(&program),
                        &opts,
                    ));
                }
                let ns = thread_cpu_ns().unwrap_or(0).saturating_sub(t0).max(1);
                std::time::Duration::from_nanos(ns)
            })
        });
        g.finish();
    }
    c.bench_function("check_20_ops (check_program)", |b| {
        b.iter(|| stepforge_check::check_program(black_box(&task), black_box(&program)))
    });
    c.bench_function("check_20_ops (parse + check_answer)", |b| {
        b.iter(|| stepforge_check::check_answer(black_box(&task), black_box(PROGRAM)))
    });
}

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

criterion_group!(benches, bench);
criterion_main!(benches);
