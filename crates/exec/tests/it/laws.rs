//! Algebraic laws of the operators, over random dims and data.

use proptest::prelude::*;

use stepforge_exec::JitMode;

use crate::{data, load, run, run_jit, task_text};

fn input(name: &str, dtype: &str, dims: &str) -> String {
    format!(
        "  - name: {name}\n    dtype: \"{dtype}\"\n    dims: {dims}\n    data_gen: torch.randn\n"
    )
}

fn output(name: &str, dims: &str) -> String {
    format!(
        "  - name: {name}\n    dtype: fp32\n    dims: {dims}\n    data_transform:\n      - input_data['X']\n"
    )
}

/// Rows of X through a Partition into 3 identity branches and back through a Merge that adds
/// the chosen branches (bufferized rows, one element per chunk).
const ROWS_THROUGH_MERGE: &str = "\
Xb = step.Bufferize(a=1).apply(X)
G1, G2 = step.Copy().apply(G)
P0, P1, P2 = step.Partition(N=E).apply((Xb, G1))
Y0 = step.Map(fn=fn_id).apply(P0)
Y1 = step.Map(fn=fn_id).apply(P1)
Y2 = step.Map(fn=fn_id).apply(P2)
Ys = [Y0, Y1, Y2]
Y = step.Merge(fn=fn_vadd).apply((Ys, G2))
O = step.Streamify().apply(Y)
return O";

/// X `[D, N]` routed by a multihot G over E = 3 experts into Y `[D, N]`.
fn routing_task() -> stepforge_task::Task {
    let ins = format!(
        "{}{}",
        input("X", "fp32", "[D, N]"),
        input("G", "Multihot(fp32, E)", "[N]")
    );
    load(&task_text(
        "E_value = 3\nctx[E] = E_value",
        &ins,
        &output("Y", "[D, N]"),
    ))
}

fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-100.0f32..100.0, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn bufferize_then_streamify_is_the_identity(
        (d, n, m, a, x) in (1usize..5, 1usize..5, 1usize..4, 1usize..3)
            .prop_flat_map(|(d, n, m, a)| (Just(d), Just(n), Just(m), Just(a), values(d * n * m)))
    ) {
        let t = load(&task_text("", &input("X", "fp32", "[D, N, M]"), &output("Y", "[D, N, M]")));
        let prog = format!("B = step.Bufferize(a={a}).apply(X)\nY = step.Streamify().apply(B)\nreturn Y");
        let dims = [("D", d as i64), ("N", n as i64), ("M", m as i64)];
        let out = run(&t, &prog, &dims, vec![x.clone()]);
        prop_assert_eq!(&out[0].dims, &vec![d, n, m]);
        prop_assert_eq!(data(&out[0]), x);
    }

    #[test]
    fn accum_sum_is_a_sum_over_the_innermost_axes(
        (d, n, m, b, x) in (1usize..5, 1usize..5, 1usize..4, 1usize..3)
            .prop_flat_map(|(d, n, m, b)| (Just(d), Just(n), Just(m), Just(b), values(d * n * m)))
    ) {
        let outer = if b == 1 { "[N, M]" } else { "[M]" };
        let t = load(&task_text("", &input("X", "fp32", "[D, N, M]"), &output("Y", outer)));
        let prog = format!("Y = step.Accum(fn=fn_sum, b={b}).apply(X)\nreturn Y");
        let dims = [("D", d as i64), ("N", n as i64), ("M", m as i64)];
        let out = run(&t, &prog, &dims, vec![x.clone()]);
        // the tensor (M, N, D) summed over its last b axes, in stream order
        let inner = if b == 1 { d } else { d * n };
        let expected: Vec<f32> = x
            .chunks(inner)
            .map(|c| c.iter().fold(0.0f32, |acc, v| acc + v))
            .collect();
        prop_assert_eq!(data(&out[0]), expected);
    }

    #[test]
    fn partition_then_merge_with_identity_and_sum_reconstructs_the_selected_rows(
        (d, n, x, sel) in (1usize..5, 1usize..6)
            .prop_flat_map(|(d, n)| (
                Just(d), Just(n), values(d * n),
                prop::collection::vec(prop::bool::ANY, n * 3),
            ))
    ) {
        let t = routing_task();
        let prog = ROWS_THROUGH_MERGE;
        let bits: Vec<f32> = sel.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        let out = run(&t, prog, &[("D", d as i64), ("N", n as i64)], vec![x.clone(), bits]);
        let mut expected = Vec::new();
        for (row, s) in x.chunks(d).zip(sel.chunks(3)) {
            let k = s.iter().filter(|&&b| b).count();
            // each selected branch returns the row unchanged; the reducer adds them from 0
            for &v in row {
                expected.push((0..k).fold(0.0f32, |acc, _| acc + v));
            }
        }
        prop_assert_eq!(data(&out[0]), expected);
    }

    #[test]
    fn native_merge_equals_the_interpreted_merge(
        (d, n, x, sel) in (1usize..5, 1usize..7)
            .prop_flat_map(|(d, n)| (
                Just(d), Just(n), values(d * n),
                prop::collection::vec(prop::bool::ANY, n * 3),
            )),
        rows in any::<bool>(),
    ) {
        // Bufferized rows (one element per chunk) or scalar elements (D per chunk).
        let t = routing_task();
        let prog = if rows {
            ROWS_THROUGH_MERGE
        } else {
            "\
G1, G2 = step.Copy().apply(G)
P0, P1, P2 = step.Partition(N=E).apply((X, G1))
Y0 = step.Map(fn=fn_double).apply(P0)
Y1 = step.Map(fn=fn_double).apply(P1)
Y2 = step.Map(fn=fn_double).apply(P2)
Ys = [Y0, Y1, Y2]
O = step.Merge(fn=fn_sum).apply((Ys, G2))
return O"
        };
        let bits: Vec<f32> = sel.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        let dn = [("D", d as i64), ("N", n as i64)];
        let go = |jit| run_jit(&t, prog, &dn, vec![x.clone(), bits.clone()], jit);
        let (native, interp) = (go(JitMode::Always), go(JitMode::Never));
        prop_assert_eq!(&native[0].dims, &interp[0].dims);
        prop_assert_eq!(data(&native[0]), data(&interp[0]));
    }
}
