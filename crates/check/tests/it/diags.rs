//! One snapshot per diagnostic code of the checker (human and JSON), each from a realistic
//! wrong program against `fixtures/rows.yaml`. Each case also proves the checker blames that
//! code only: no other error is reported.

use stepforge_syntax::codes::{Code, Phase};
use stepforge_syntax::diag::apply_fixes;

use crate::common::*;

const ROWS: &str = include_str!("fixtures/rows.yaml");

struct Case {
    name: &'static str,
    code: Code,
    task: Option<String>,
    /// Edits the loaded task (for declarations the loader itself would reject).
    mutate: Option<fn(&mut stepforge_task::Task)>,
    program: &'static str,
}

fn case(name: &'static str, code: Code, program: &'static str) -> Case {
    Case {
        name,
        code,
        task: None,
        mutate: None,
        program,
    }
}

fn cases() -> Vec<Case> {
    let two_outputs = format!(
        "{ROWS}  - name: Z\n    dtype: fp32\n    dims: [D, N]\n    data_transform:\n      - |\n        input_data['X'] ** 2\n"
    );
    let scale_row = ROWS.replace(
        "outputs:\n",
        "  - name: scale_row\n    func_name: scale_row\n    apply: |\n      return [input[0] * input[1]]\n    input_dtype: \"[Buffer(fp32, [D]), fp32]\"\n    output_dtype: Buffer(fp32, [D])\noutputs:\n",
    );
    vec![
        Case {
            name: "E0305_map_wants_buffers",
            code: Code::E0305,
            task: Some(scale_row),
            mutate: None,
            program: "X1, X2 = step.Copy().apply(X)\nA = step.Map(fn=square).apply(X1)\nR = step.Accum(fn=add_fn, b=1).apply(A)\nR1, R2 = step.Copy().apply(R)\nB = step.Map(fn=scale_row).apply((X2, R1))\nreturn R2\n",
        },
        case(
            "E0305_accum_where_scan_was_meant",
            Code::E0305,
            "X1, X2 = step.Copy().apply(X)\nA = step.Map(fn=square).apply(X1)\nR = step.Accum(fn=add_fn, b=1).apply(A)\nR1, R2 = step.Copy().apply(R)\nZ = step.Zip().apply((X2, R1))\nreturn R2\n",
        ),
        case(
            "E0311_placeholder_dim",
            Code::E0311,
            "A = step.Map(fn=square).apply(X)\nB = step.Accum(fn=add_fn, b=1).apply(A)\nY = step.Promote(b=1).apply(B)\nreturn Y\n",
        ),
        Case {
            name: "E0311_outputs_swapped",
            code: Code::E0311,
            task: Some(two_outputs.clone()),
            mutate: None,
            program: "X1, X2 = step.Copy().apply(X)\nA = step.Map(fn=square).apply(X1)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nZ = step.Map(fn=square).apply(X2)\nreturn Z, Y\n",
        },
        case(
            "E0201_undefined_name",
            Code::E0201,
            "A = step.Map(fn=square).apply(Xs)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0202_unknown_fn",
            Code::E0202,
            "A = step.Map(fn=sqare).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0203_list_as_stream",
            Code::E0203,
            "Xb = step.Bufferize(a=1).apply(X)\nP = step.Partition(N=E).apply((Xb, S))\nZ = step.Map(fn=norm_fn).apply(P)\nY = step.Accum(fn=add_fn, b=2).apply(T)\nreturn Y\n",
        ),
        case(
            "E0204_too_many_names",
            Code::E0204,
            "A, B, C = step.Copy().apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0205_comprehension_without_zip",
            Code::E0205,
            "Xb = step.Bufferize(a=1).apply(X)\nP = step.Partition(N=E).apply((Xb, S))\nFs = [norm_fn, norm_fn]\nYs = [step.Map(fn=f).apply(p) for p, f in P]\nY = step.Accum(fn=add_fn, b=2).apply(T)\nreturn Y\n",
        ),
        case(
            "E0206_unknown_dim",
            Code::E0206,
            "A = step.Repeat(n=Q).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0301_reducer_in_map",
            Code::E0301,
            "A = step.Map(fn=add_fn).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0302_fn_wants_a_tile",
            Code::E0302,
            "A = step.Map(fn=norm_fn).apply(X)\nB = step.Streamify().apply(A)\nY = step.Accum(fn=add_fn, b=1).apply(B)\nreturn Y\n",
        ),
        case(
            "E0302_bufferize_off_by_one",
            Code::E0302,
            "B = step.Bufferize(a=2).apply(T)\nC = step.Map(fn=norm_fn).apply(B)\nY = step.Accum(fn=add_fn, b=1).apply(X)\nreturn Y\n",
        ),
        case(
            "E0303_rank_too_small",
            Code::E0303,
            "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn, b=2).apply(A)\nreturn Y\n",
        ),
        case(
            "E0304_flatten_not_ascending",
            Code::E0304,
            "F = step.Flatten(L=[2, 1]).apply(T)\nY = step.Accum(fn=add_fn, b=1).apply(X)\nreturn Y\n",
        ),
        case(
            "E0305_zip_missing_middle_dim",
            Code::E0305,
            "Z = step.Zip().apply((X, T))\nY = step.Accum(fn=add_fn, b=1).apply(Z)\nreturn Y\n",
        ),
        case(
            "E0306_streamify_scalars",
            Code::E0306,
            "A = step.Streamify().apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "E0307_bufferize_tuple",
            Code::E0307,
            "X1, X2 = step.Copy().apply(X)\nZ = step.Zip().apply((X1, X2))\nB = step.Bufferize(a=1).apply(Z)\nY = step.Accum(fn=add_fn, b=2).apply(T)\nreturn Y\n",
        ),
        case(
            "E0308_reshape_not_divisible",
            Code::E0308,
            "R = step.Reshape(L=[1], S=2).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(R)\nreturn Y\n",
        ),
        case(
            "E0309_accum_on_two_streams",
            Code::E0309,
            "Y = step.Accum(fn=add_fn, b=1).apply((X, T))\nreturn Y\n",
        ),
        case(
            "E0310_too_many_returns",
            Code::E0310,
            "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y, T\n",
        ),
        case(
            "E0311_output_dims",
            Code::E0311,
            "A = step.Map(fn=square).apply(X)\nreturn A\n",
        ),
        case(
            "E0312_missing_param",
            Code::E0312,
            "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn).apply(A)\nreturn Y\n",
        ),
        case(
            "E0313_partition_branch_count",
            Code::E0313,
            "Xb = step.Bufferize(a=1).apply(X)\nP = step.Partition(N=3).apply((Xb, S))\nY = step.Accum(fn=add_fn, b=2).apply(T)\nreturn Y\n",
        ),
        case(
            "E0314_dim_overflow",
            Code::E0314,
            "A = step.Repeat(n=9223372036854775807).apply(X)\nB = step.Repeat(n=2).apply(A)\nC = step.Flatten(L=[1]).apply(B)\nY = step.Accum(fn=add_fn, b=2).apply(C)\nreturn Y\n",
        ),
        Case {
            name: "E0315_bad_task_type",
            code: Code::E0315,
            task: None,
            mutate: Some(buffer_of_tuple),
            program: "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        },
        case(
            "E0401_used_twice",
            Code::E0401,
            "A = step.Map(fn=square).apply(X)\nB = step.Map(fn=mul_fn).apply((X, A))\nY = step.Accum(fn=add_fn, b=1).apply(B)\nreturn Y\n",
        ),
        Case {
            name: "E0402_returned_and_consumed",
            code: Code::E0402,
            task: Some(two_outputs),
            mutate: None,
            program: "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y, A\n",
        },
        case(
            "E0403_list_twice",
            Code::E0403,
            "Xb = step.Bufferize(a=1).apply(X)\nS1, S2 = step.Copy().apply(S)\nP = step.Partition(N=E).apply((Xb, S1))\nYs = [step.Map(fn=norm_fn).apply(p) for p in P]\nZs = [step.Map(fn=norm_fn).apply(p) for p in P]\nM = step.Merge(fn=tile_add).apply((Ys, S2))\nO = step.Streamify().apply(M)\nY = step.Accum(fn=add_fn, b=1).apply(O)\nreturn Y\n",
        ),
        case(
            "W0201_rebound",
            Code::W0201,
            "A = step.Map(fn=square).apply(X)\nA = step.Accum(fn=add_fn, b=1).apply(A)\nreturn A\n",
        ),
        case(
            "W0202_fn_unused",
            Code::W0202,
            "A = step.Map(fn=square).apply(X)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
        case(
            "W0401_never_consumed",
            Code::W0401,
            "X1, X2 = step.Copy().apply(X)\nA = step.Map(fn=square).apply(X1)\nY = step.Accum(fn=add_fn, b=1).apply(A)\nreturn Y\n",
        ),
    ]
}

/// `mul_fn` takes `Buffer([fp32, fp32], [D])`: the task loader rejects this, but a task built
/// by other means (an API user) must still get a diagnostic, not a panic.
fn buffer_of_tuple(t: &mut stepforge_task::Task) {
    use stepforge_syntax::Span;
    use stepforge_syntax::ast::{DimExpr, DtypeAst, Ident};
    let f = t
        .fns
        .iter_mut()
        .find(|f| f.func_name.name == "mul_fn")
        .unwrap();
    let s = f.input_dtype.span();
    f.input_dtype = DtypeAst::Buffer {
        elem: Box::new(DtypeAst::Tuple(
            vec![DtypeAst::Fp32(s), DtypeAst::Fp32(s)],
            s,
        )),
        dims: vec![DimExpr::Sym(Ident::new("D", Span::DUMMY))],
        span: s,
    };
}

#[test]
fn every_checker_code_has_a_snapshot_case() {
    let covered: std::collections::BTreeSet<Code> = cases().iter().map(|c| c.code).collect();
    for c in Code::ALL {
        let s = c.as_str();
        let mine = matches!(c.phase(), Phase::Names | Phase::Types | Phase::Linearity)
            || ["W0201", "W0202", "W0401"].contains(&s);
        assert!(!mine || covered.contains(c), "{s} has no snapshot case");
    }
}

#[test]
fn diagnostics_snapshots() {
    let mut failures = Vec::new();
    for c in cases() {
        let mut task = load_task_text("rows.yaml", c.task.as_deref().unwrap_or(ROWS));
        if let Some(m) = c.mutate {
            m(&mut task);
        }
        let (src, out) = stepforge_check::check_answer(&task, c.program);
        let all = render_all(&src, &out.diagnostics);
        let mine: Vec<_> = out
            .diagnostics
            .iter()
            .filter(|d| d.code == c.code)
            .collect();
        if mine.is_empty() {
            failures.push(format!("{}: expected {}, got:\n{all}", c.name, c.code));
            continue;
        }
        let other_errors: Vec<_> = out
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.code != c.code)
            .collect();
        if !other_errors.is_empty() {
            failures.push(format!("{}: cascading errors:\n{all}", c.name));
            continue;
        }
        let mut human = format!("{}\n---\n", c.program);
        for d in &mine {
            human.push_str(&d.render_human(&src, false));
        }
        if mine.iter().any(|d| !d.fixes.is_empty()) {
            let owned: Vec<_> = mine.iter().map(|d| (*d).clone()).collect();
            human.push_str("--- with safe fixes applied ---\n");
            human.push_str(&apply_fixes(c.program, &owned, true));
        }
        let json: Vec<_> = mine.iter().map(|d| d.to_json(&src)).collect();
        insta::assert_snapshot!(format!("{}_human", c.name), human);
        insta::assert_json_snapshot!(format!("{}_json", c.name), json);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
