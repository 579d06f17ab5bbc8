//! One small run per operator on hand-made data, with outputs computed by hand.

use crate::{data, iota, load, run, task_text};

fn input(name: &str, dtype: &str, dims: &str) -> String {
    format!(
        "  - name: {name}\n    dtype: \"{dtype}\"\n    dims: {dims}\n    data_gen: torch.randn\n"
    )
}

fn output(name: &str, dtype: &str, dims: &str) -> String {
    format!(
        "  - name: {name}\n    dtype: \"{dtype}\"\n    dims: {dims}\n    data_transform:\n      - input_data['X']\n"
    )
}

#[test]
fn map_applies_the_fn_to_every_element() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[N]"),
        &output("Y", "fp32", "[N]"),
    ));
    let out = run(
        &t,
        "Y = step.Map(fn=fn_double).apply(X)\nreturn Y",
        &[("N", 4)],
        vec![iota(4)],
    );
    assert_eq!(out[0].dims, vec![4]);
    assert_eq!(data(&out[0]), vec![0.0, 2.0, 4.0, 6.0]);
}

#[test]
fn accum_folds_the_innermost_dims() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[N]"),
    ));
    let out = run(
        &t,
        "Y = step.Accum(fn=fn_sum, b=1).apply(X)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![iota(6)],
    );
    assert_eq!(out[0].dims, vec![2]);
    assert_eq!(data(&out[0]), vec![3.0, 12.0]);

    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N, M]"),
        &output("Y", "fp32", "[M]"),
    ));
    let out = run(
        &t,
        "Y = step.Accum(fn=fn_sum, b=2).apply(X)\nreturn Y",
        &[("D", 2), ("N", 2), ("M", 2)],
        vec![iota(8)],
    );
    assert_eq!(data(&out[0]), vec![6.0, 22.0]);
}

#[test]
fn accum_of_buffers_starts_from_the_broadcast_init() {
    // max over rows from -inf: every column's maximum
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[D, 1]"),
    ));
    let prog = "B = step.Bufferize(a=1).apply(X)\nP = step.Promote(b=1).apply(B)\nA = step.Accum(fn=fn_vmax, b=1).apply(P)\nY = step.Streamify().apply(A)\nreturn Y";
    let x = vec![1.0, -5.0, 3.0, 4.0, -2.0, 0.5];
    let out = run(&t, prog, &[("D", 3), ("N", 2)], vec![x]);
    assert_eq!(out[0].dims, vec![3, 1]);
    assert_eq!(data(&out[0]), vec![4.0, -2.0, 3.0]);
}

#[test]
fn scan_emits_every_state_and_restarts() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[D, N]"),
    ));
    let out = run(
        &t,
        "Y = step.Scan(fn=fn_sum, b=1).apply(X)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![iota(6)],
    );
    assert_eq!(data(&out[0]), vec![0.0, 1.0, 3.0, 3.0, 7.0, 12.0]);
}

#[test]
fn zip_pairs_fields_in_operand_order() {
    let ins = format!("{}{}", input("A", "fp32", "[N]"), input("B", "fp32", "[N]"));
    let t = load(&task_text("", &ins, &output("Y", "fp32", "[N]")));
    let a = vec![10.0, 20.0, 30.0];
    let b = vec![1.0, 2.0, 3.0];
    let out = run(
        &t,
        "Z = step.Zip().apply((A, B))\nY = step.Map(fn=fn_sub).apply(Z)\nreturn Y",
        &[("N", 3)],
        vec![a.clone(), b.clone()],
    );
    assert_eq!(data(&out[0]), vec![9.0, 18.0, 27.0]);
    // Map on a tuple of streams zips implicitly
    let out = run(
        &t,
        "Y = step.Map(fn=fn_sub).apply((B, A))\nreturn Y",
        &[("N", 3)],
        vec![a, b],
    );
    assert_eq!(data(&out[0]), vec![-9.0, -18.0, -27.0]);
}

#[test]
fn copy_feeds_two_consumers_the_same_data() {
    let outs = format!(
        "{}{}",
        output("Y", "fp32", "[N]"),
        output("Z", "fp32", "[N]")
    );
    let t = load(&task_text("", &input("X", "fp32", "[N]"), &outs));
    let out = run(
        &t,
        "X1, X2 = step.Copy().apply(X)\nY = step.Map(fn=fn_double).apply(X1)\nreturn Y, X2",
        &[("N", 3)],
        vec![vec![1.0, 2.0, 3.0]],
    );
    assert_eq!(data(&out[0]), vec![2.0, 4.0, 6.0]);
    assert_eq!(data(&out[1]), vec![1.0, 2.0, 3.0]);
    // the untouched copy shares the input's buffer
    assert_eq!(out[1].fields[0].elem_shape, Vec::<usize>::new());
}

#[test]
fn bufferize_gathers_rows_and_streamify_restores_them() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[N]"),
    ));
    let out = run(
        &t,
        "B = step.Bufferize(a=1).apply(X)\nY = step.Map(fn=fn_row_sum).apply(B)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![iota(6)],
    );
    assert_eq!(data(&out[0]), vec![3.0, 12.0]);

    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[D, N]"),
    ));
    let out = run(
        &t,
        "B = step.Bufferize(a=1).apply(X)\nY = step.Streamify().apply(B)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![iota(6)],
    );
    assert_eq!(out[0].dims, vec![3, 2]);
    assert_eq!(data(&out[0]), iota(6));
}

#[test]
fn promote_and_flatten_only_rename_dims() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[D, N]"),
    ));
    let out = run(
        &t,
        "P = step.Promote(b=1).apply(X)\nY = step.Flatten(L=[1]).apply(P)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![iota(6)],
    );
    assert_eq!(out[0].dims, vec![3, 2]);
    assert_eq!(data(&out[0]), iota(6));
}

#[test]
fn reshape_splits_a_dim_into_chunks() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[D, N]"),
        &output("Y", "fp32", "[D/2, N]"),
    ));
    let out = run(
        &t,
        "R = step.Reshape(L=[0], S=2).apply(X)\nY = step.Accum(fn=fn_sum, b=1).apply(R)\nreturn Y",
        &[("D", 4), ("N", 2)],
        vec![iota(8)],
    );
    assert_eq!(out[0].dims, vec![2, 2]);
    assert_eq!(data(&out[0]), vec![1.0, 5.0, 9.0, 13.0]);
}

#[test]
fn repeat_adds_an_innermost_dim() {
    let t = load(&task_text(
        "",
        &input("X", "fp32", "[N]"),
        &output("Y", "fp32", "[D, N]"),
    ));
    let out = run(
        &t,
        "Y = step.Repeat(n=D).apply(X)\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![vec![1.0, 2.0]],
    );
    assert_eq!(out[0].dims, vec![3, 2]);
    assert_eq!(data(&out[0]), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
}

#[test]
fn repeat_ref_repeats_as_often_as_the_reference() {
    let ins = format!(
        "{}{}",
        input("S", "fp32", "[N]"),
        input("R", "fp32", "[D, N]")
    );
    let t = load(&task_text("", &ins, &output("Y", "fp32", "[D, N]")));
    let out = run(
        &t,
        "Y = step.RepeatRef().apply((S, R))\nreturn Y",
        &[("D", 3), ("N", 2)],
        vec![vec![1.0, 2.0], iota(6)],
    );
    assert_eq!(data(&out[0]), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
}

const MOE_PROG: &str = "\
Xb = step.Bufferize(a=1).apply(X)
G1, G2 = step.Copy().apply(G)
P0, P1 = step.Partition(N=E).apply((Xb, G1))
Y0 = step.Map(fn=fn_id).apply(P0)
Y1 = step.Map(fn=fn_id).apply(P1)
Ys = [Y0, Y1]
Y = step.Merge(fn=REDUCER).apply((Ys, G2))
O = step.Streamify().apply(Y)
return O";

fn moe(reducer: &str, sel: Vec<f32>) -> Vec<f32> {
    let ins = format!(
        "{}{}",
        input("X", "fp32", "[D, N]"),
        input("G", "Multihot(fp32, E)", "[N]")
    );
    let t = load(&task_text(
        "E_value = 2\nctx[E] = E_value",
        &ins,
        &output("Y", "fp32", "[D, N]"),
    ));
    let out = run(
        &t,
        &MOE_PROG.replace("REDUCER", reducer),
        &[("D", 2), ("N", 3)],
        vec![iota(6), sel],
    );
    assert_eq!(out[0].dims, vec![2, 3]);
    data(&out[0])
}

#[test]
fn partition_routes_chunks_and_merge_folds_them_in_branch_order() {
    // row 0 -> branch 0, row 1 -> branch 1, row 2 -> both (summed)
    let y = moe("fn_vadd", vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(y, vec![0.0, 1.0, 2.0, 3.0, 8.0, 10.0]);
}

#[test]
fn an_empty_branch_is_fine() {
    let y = moe("fn_vadd", vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(y, iota(6));
}

#[test]
fn a_selector_with_no_bit_set_yields_zeros() {
    // with a max reducer (init -inf) too: no bits means zeros, not the init
    let y = moe("fn_vmax", vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(y, vec![0.0, 1.0, 0.0, 0.0, 4.0, 5.0]);
}
