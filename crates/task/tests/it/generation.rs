//! Dimension values and seeded data generation.

use stepforge_syntax::codes::Code;
use stepforge_task::{GenLimits, Task, dim_values, generate, load_str};

fn task(text: &str) -> Task {
    let loaded = load_str("gen.yaml", text);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.task.unwrap()
}

const OUT: &str =
    "outputs:\n  - name: o\n    dtype: fp32\n    dims: [M]\n    data_transform: ['0']\n";

fn one_input(dtype: &str, dims: &str, data_gen: &str, extra: &str) -> Task {
    task(&format!(
        "global: |\n  E_value = 6\n  ctx[E] = E_value\ninputs:\n  - name: X\n    dtype: {dtype}\n    dims: {dims}\n    data_gen: {data_gen}\n{extra}{OUT}"
    ))
}

fn mean_var(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = xs
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var)
}

fn data(t: &Task, overrides: &[(String, i64)], seed: u64) -> stepforge_task::GeneratedData {
    let dims = dim_values(t, overrides).unwrap();
    generate(t, &dims, seed, &GenLimits::default()).unwrap()
}

#[test]
fn same_seed_same_data_and_different_seeds_differ() {
    let t = one_input("fp32", "[D, N, M]", "torch.randn", "");
    let a = data(&t, &[], 42);
    let b = data(&t, &[], 42);
    let c = data(&t, &[], 43);
    assert_eq!(a, b);
    assert_ne!(a.inputs[0].fields[0].data, c.inputs[0].fields[0].data);
}

#[test]
fn shapes_are_outermost_first_with_element_axes() {
    let t = one_input("fp32", "[D, N, M]", "torch.randn", "");
    let x = data(&t, &[], 0);
    assert_eq!(x.inputs[0].fields[0].shape, vec![5, 7, 16]);
    assert_eq!(x.inputs[0].fields[0].data.len(), 5 * 7 * 16);

    let t = one_input("\"Buffer(fp32, [D, N])\"", "[M]", "torch.rand", "");
    assert_eq!(data(&t, &[], 0).inputs[0].fields[0].shape, vec![5, 7, 16]);

    let t = one_input("\"Multihot(fp32, E)\"", "[N, M]", "binary", "");
    assert_eq!(data(&t, &[], 0).inputs[0].fields[0].shape, vec![5, 7, 6]);

    let t = one_input("\"[fp32, Buffer(fp32, [D])]\"", "[M]", "torch.ones", "");
    let x = data(&t, &[], 0);
    let shapes: Vec<_> = x.inputs[0].fields.iter().map(|f| f.shape.clone()).collect();
    assert_eq!(shapes, vec![vec![5], vec![5, 16]]);
    assert!(
        x.inputs[0]
            .fields
            .iter()
            .all(|f| f.data.iter().all(|&v| v == 1.0))
    );
}

#[test]
fn parameters_follow_inputs_in_file_order() {
    let t = task(&format!(
        "inputs:\n  - {{name: A, dtype: fp32, dims: [M]}}\nparameters:\n  - {{name: W, dtype: fp32, dims: [D, K]}}\n{OUT}"
    ));
    let x = data(&t, &[], 9);
    assert_eq!(x.get("W").unwrap().single().unwrap().shape, vec![9, 16]);
    // The parameter's values continue the same stream: generating the input alone gives the
    // same first values.
    let alone = task(&format!(
        "inputs:\n  - {{name: A, dtype: fp32, dims: [M]}}\n{OUT}"
    ));
    assert_eq!(data(&alone, &[], 9).inputs[0], x.inputs[0]);
}

#[test]
fn distributions_are_sane() {
    let dims = "[D, N, M]";
    let over = [("M".to_owned(), 1000)];
    let n = 16 * 7 * 1000;

    let x = data(&one_input("fp32", dims, "torch.randn", ""), &over, 1);
    let v = &x.inputs[0].fields[0].data;
    assert_eq!(v.len(), n);
    let (m, var) = mean_var(v);
    assert!(m.abs() < 0.02, "randn mean {m}");
    assert!((var - 1.0).abs() < 0.03, "randn var {var}");
    let beyond3 = v.iter().filter(|x| x.abs() > 3.0).count() as f64 / n as f64;
    assert!((0.0015..0.0040).contains(&beyond3), "randn tails {beyond3}");

    let x = data(&one_input("fp32", dims, "torch.rand", ""), &over, 2);
    let v = &x.inputs[0].fields[0].data;
    assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
    let (m, var) = mean_var(v);
    assert!((m - 0.5).abs() < 0.01, "rand mean {m}");
    assert!((var - 1.0 / 12.0).abs() < 0.003, "rand var {var}");

    let x = data(&one_input("fp32", dims, "binary", ""), &over, 3);
    let v = &x.inputs[0].fields[0].data;
    assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
    let (m, _) = mean_var(v);
    assert!((m - 0.5).abs() < 0.01, "binary mean {m}");
}

#[test]
fn multihot_counts_stay_in_range_and_cover_it() {
    let t = one_input(
        "\"Multihot(fp32, E)\"",
        "[N, M]",
        "binary",
        "    min: 1\n    max: 3\n",
    );
    let x = data(&t, &[("M".to_owned(), 200)], 5);
    let f = &x.inputs[0].fields[0];
    let mut seen = [0usize; 7];
    for vec in f.data.chunks(6) {
        assert!(vec.iter().all(|&b| b == 0.0 || b == 1.0));
        let c = vec.iter().filter(|&&b| b == 1.0).count();
        seen[c] += 1;
    }
    assert_eq!(seen[0] + seen[4] + seen[5] + seen[6], 0, "{seen:?}");
    assert!(seen[1] > 300 && seen[2] > 300 && seen[3] > 300, "{seen:?}");
    // Every position gets hot sometimes.
    for p in 0..6 {
        assert!(f.data.chunks(6).any(|v| v[p] == 1.0), "position {p}");
    }

    let t = one_input("\"Multihot(fp32, E)\"", "[M]", "binary", "    min: 7\n");
    let dims = dim_values(&t, &[]).unwrap();
    let d = generate(&t, &dims, 0, &GenLimits::default()).unwrap_err();
    assert_eq!(d.code, Code::E0510);

    // An explicit `max` beyond the vector length is an error too (issue 9), not clamped.
    let t = one_input("\"Multihot(fp32, E)\"", "[M]", "binary", "    max: 9\n");
    let dims = dim_values(&t, &[]).unwrap();
    let d = generate(&t, &dims, 0, &GenLimits::default()).unwrap_err();
    assert_eq!(d.code, Code::E0510);
    assert!(d.message.contains("`max` asks for 9"), "{}", d.message);
}

#[test]
fn global_bindings_and_overrides() {
    let t = task(&format!(
        "global: |\n  E_value = 3\n  ctx[E] = E_value\n  H_value = D_value // 4\n  ctx['H'] = H_value\n  G_value = E_value * 2 + 1\n  gelu = torch.nn.GELU()\ninputs:\n  - {{name: A, dtype: fp32, dims: [E, H, G]}}\n{OUT}"
    ));
    let d = dim_values(&t, &[]).unwrap();
    assert_eq!((d["E"], d["H"], d["G"], d["M"]), (3, 4, 7, 5));
    let d = dim_values(&t, &[("D".into(), 32), ("E".into(), 10)]).unwrap();
    // Overrides win; bindings computed from an overridden value follow it.
    assert_eq!((d["E"], d["H"], d["G"], d["D"]), (10, 8, 21, 32));
}

#[test]
fn a_nonpositive_binding_of_a_used_dimension_is_an_error() {
    let t = task(&format!(
        "global: |\n  E_value = 0\ninputs:\n  - {{name: A, dtype: fp32, dims: [E]}}\n{OUT}"
    ));
    let d = dim_values(&t, &[]).unwrap_err();
    assert_eq!(d.code, Code::E0511);
    assert!(d.span.is_some());
}

#[test]
fn dimension_expressions_evaluate() {
    let t = one_input("fp32", "[D/4, M*N]", "torch.ones", "");
    assert_eq!(data(&t, &[], 0).inputs[0].fields[0].shape, vec![35, 4]);
    let t = one_input("fp32", "[K/2]", "torch.ones", "");
    let dims = dim_values(&t, &[]).unwrap();
    let diags = stepforge_task::check_dims(&t, &dims);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, Code::E0511);
}

#[test]
fn limits_are_checked_before_allocating() {
    let t = task(&format!(
        "inputs:\n  - {{name: A, dtype: fp32, dims: [D, M]}}\n  - {{name: B, dtype: fp32, dims: [D, M]}}\n{OUT}"
    ));
    let dims = dim_values(&t, &[]).unwrap();
    let limits = GenLimits {
        max_tensor_elements: 100,
        max_total_elements: 150,
        max_total_bytes: 1 << 20,
    };
    let d = generate(&t, &dims, 0, &limits).unwrap_err();
    assert_eq!(d.code, Code::E0701);
    assert!(d.message.contains("input `B`"), "{}", d.message);
    assert!(d.message.contains("together"), "{}", d.message);

    // Products that overflow u64 are a limit error, not a wrap-around.
    let over = [("M".to_owned(), 1 << 40), ("D".to_owned(), 1 << 40)];
    let dims = dim_values(&t, &over).unwrap();
    let d = generate(&t, &dims, 0, &GenLimits::default()).unwrap_err();
    assert_eq!(d.code, Code::E0701);
}
