//! Checking a 20-op program (DESIGN §1: verdicts well under a millisecond; target here
//! well under 50 µs for the checker).

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
    let program = stepforge_syntax::parse_program(PROGRAM).value.expect("parses");
    let out = stepforge_check::check_program(&task, &program);
    assert!(out.ok && out.linear && out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    assert_eq!(out.graph.as_ref().map(|g| g.op_count()), Some(20 + 3 + 1));

    let te = stepforge_check::TaskEnv::new(&task, &[], false);
    let opts = stepforge_check::CheckOptions::default();
    c.bench_function("check_20_ops (prepared task env)", |b| {
        b.iter(|| stepforge_check::check_with_env(black_box(&te), black_box(&program), &opts))
    });
    c.bench_function("check_20_ops (check_program)", |b| {
        b.iter(|| stepforge_check::check_program(black_box(&task), black_box(&program)))
    });
    c.bench_function("check_20_ops (parse + check_answer)", |b| {
        b.iter(|| stepforge_check::check_answer(black_box(&task), black_box(PROGRAM)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
