//! Parse throughput of a realistic 15-statement STeP program (DESIGN §16: the agent verifies
//! thousands of programs, so parsing must stay far below the checker's budget).
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const PROGRAM: &str = "\
# gated expert FFN with top-1 routing
E1, E2 = step.Copy().apply(E0)
G = step.Map(fn=fn_gate).apply(E1)
S0, S1 = step.Copy().apply(G)
Bs = step.Partition(N=E_value).apply((E2, S0))
Ws = [fn_expert_0, fn_expert_1, fn_expert_2, fn_expert_3]
Ts = [step.Bufferize(a=1).apply(b) for b in Bs]
Hs = [step.Map(fn=w).apply(t) for w, t in zip(Ws, Ts)]
Us = [step.Streamify().apply(h) for h in Hs]
E3 = step.Merge(fn=fn_add).apply((Us, S1))
E4 = step.Promote(b=0).apply(E3)
E5 = step.Flatten(L=[0, 1]).apply(E4)
E6 = step.Reshape(L=[0], S=2).apply(E5)
E7 = step.Accum(fn=fn_sum, b=1).apply(E6)
E8 = step.Repeat(n=D).apply(E7)
return E8
";

fn bench(c: &mut Criterion) {
    assert!(
        stepforge_syntax::parse_program(PROGRAM)
            .diagnostics
            .is_empty()
    );
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(PROGRAM.len() as u64));
    g.bench_function("program_15_statements", |b| {
        b.iter(|| stepforge_syntax::parse_program(black_box(PROGRAM)))
    });
    let answer = format!(
        "Here is the kernel.\n\n```yaml\nimpl: |\n{}```\nIt routes each token to one expert.\n",
        PROGRAM
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    g.bench_function("answer_15_statements_fenced_yaml", |b| {
        b.iter(|| stepforge_syntax::parse_answer(black_box(&answer)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
