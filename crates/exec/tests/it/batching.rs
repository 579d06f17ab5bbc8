//! The executor runs elementwise element functions on whole batches, with the batch lanes on
//! the last axis; the results must be bit-identical to calling the function element by element,
//! also when the fields have different element shapes (a scalar times a row).

use std::sync::Arc;

use proptest::prelude::*;
use stepforge_exec::batch::batched_body;
use stepforge_exec::eval::{Env, Function, Module, Value};
use stepforge_tensor::Tensor;

const BODIES: &[&str] = &[
    "x = input[0]\nmu = x.mean(dim=-1)\nvar = x.var(dim=-1, unbiased=False)\nreturn [(x - mu) / torch.sqrt(var + 1e-5) * input[1]]",
    "return [torch.softmax(input[0], dim=-1) + input[1]]",
    "return [input[0] / input[0].sum(-1, keepdim=True) - input[1]]",
    "return [input[0].var(dim=0, unbiased=True) * input[1]]",
    "d = input[0].size(-1)\nreturn [input[0] * d + input[1].pow(2).mean(-1)]",
    "return [input[0] * input[1]]",
    "return [torch.tensor(1.0) + 0.1 * input[0] - input[1]]",
    "y = gelu(input[0])\nreturn [y / (input[1] - 3.5)]",
    "m = torch.max(input[0], input[1])\nreturn [torch.exp(input[0] - m) + input[1].pow(2)]",
    "return [silu(-input[0]) - torch.sqrt(input[1] * input[1] + 1e-5)]",
];

fn env() -> Env {
    let mut env = Env::default();
    env.names
        .insert("gelu".into(), Value::Module(Module::Gelu { tanh: false }));
    env.names.insert("silu".into(), Value::Module(Module::Silu));
    env
}

/// Per-lane values of one field as a lanes-last tensor `(..shape, n)`.
fn lanes_last(vals: &[Vec<f32>], shape: &[usize]) -> Tensor {
    let n = vals.len();
    let len = vals.first().map_or(0, Vec::len);
    let mut d = vec![0.0; n * len];
    for (b, v) in vals.iter().enumerate() {
        for (l, &x) in v.iter().enumerate() {
            d[l * n + b] = x;
        }
    }
    let mut s = shape.to_vec();
    s.push(n);
    Tensor::from_f32(s, d).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batched_calls_equal_per_element_calls(
        body in 0usize..BODIES.len(),
        xs in prop::collection::vec(prop::collection::vec(-8.0f32..8.0, 8), 1..10),
        elem in 1usize..4,
        scalar_a in prop::bool::ANY,
        scalar_b in prop::bool::ANY,
    ) {
        let env = env();
        let block = crate::lower_fn(BODIES[body], &env);
        let f = Function::from_ir("f", block.clone(), &env).unwrap();
        let sa: Vec<usize> = if scalar_a { vec![] } else { vec![elem] };
        let sb: Vec<usize> = if scalar_b { vec![] } else { vec![elem] };
        let la = if scalar_a { 1 } else { elem };
        let lb = if scalar_b { 1 } else { elem };
        let a: Vec<Vec<f32>> = xs.iter().map(|v| v[..la].to_vec()).collect();
        let b: Vec<Vec<f32>> = xs.iter().map(|v| v[4..4 + lb].to_vec()).collect();
        let n = xs.len();
        let per_element: Vec<Vec<Tensor>> = (0..n)
            .map(|e| {
                f.call(
                    &env,
                    vec![
                        Tensor::from_f32(sa.clone(), a[e].clone()).unwrap(),
                        Tensor::from_f32(sb.clone(), b[e].clone()).unwrap(),
                    ],
                    None,
                )
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        // a body that fails per element on these shapes has nothing to compare
        prop_assume!(!per_element.is_empty());
        let out_shape = per_element[0][0].shape().to_vec();
        // reductions need a non-scalar operand: on scalars those bodies run per element
        let Some(rewritten) =
            batched_body(&block, &env, &[sa.clone(), sb.clone()], None, std::slice::from_ref(&out_shape))
        else {
            prop_assert!(scalar_a || scalar_b, "body {body} should batch");
            return Ok(());
        };
        let lanes = rewritten.prepare("g", &env).unwrap();
        let batched = lanes
            .call_shared(&env, vec![Arc::new(lanes_last(&a, &sa)), Arc::new(lanes_last(&b, &sb))], None)
            .unwrap();
        let mut want_shape = out_shape.clone();
        want_shape.push(n);
        prop_assert_eq!(batched[0].shape(), &want_shape[..]);
        let got = batched[0].as_f32().unwrap();
        let out_len: usize = out_shape.iter().product();
        for (e, one) in per_element.iter().enumerate() {
            let want = one[0].as_f32().unwrap();
            prop_assert_eq!(want.len(), out_len);
            for (k, w) in want.iter().enumerate() {
                let g = got[k * n + e];
                prop_assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "lane {e}, element {k}: {g} vs {w}"
                );
            }
        }
    }
}

/// Bodies over an element row `input[0]` of shape `[n]` and a per-element number `input[1]`
/// that batch through conditionals (`torch.where`), indexing, shape ops and lane-invariant
/// tensors (folded once and given a unit lane axis).
const SHAPE_BODIES: &[&str] = &[
    "x = input[0]\nx1, x2 = x.chunk(2, dim=-1)\nrot = torch.cat([-x2, x1], dim=-1)\nreturn [sig(x)] if (input[1] > 0.5) else [rot]",
    "return [input[0] * 2 if input[1] <= 0.0 else input[0] - input[1]]",
    "idx = torch.topk(input[0], 1, dim=0)[1]\nreturn [(torch.arange(input[0].size(0)) == idx).float()]",
    "return [input[0][0] + input[1]]",
    "return [input[0][-1] * input[0][1:].sum(dim=0)]",
    "x = input[0]\nd = x.size(-1)\ninv = 1.0 / 10000.0 ** (torch.arange(d, dtype=torch.float)[::2] / d)\nang = (input[1] - 1.0) * inv\nc = ang.cos()\ns = ang.sin()\nx1 = x[..., ::2]\nx2 = x[..., 1::2]\nreturn [torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten()]",
    "d = input[0].size(-1)\nx = input[0].view(-1, 2)\nang = input[1] / 100.0 ** (torch.arange(d, dtype=torch.float32)[::2] / d)\nout = torch.stack([x[:, 0] * ang.cos(), x[:, 1] * ang.sin()], dim=-1)\nreturn [out.flatten()]",
    "v, i = input[0].topk(2)\nreturn [torch.zeros_like(input[0]).scatter(-1, i, 1.0) * v.sum(dim=-1)]",
    "return [input[0] * w + torch.tensor(0.5) - input[1] / D_value]",
    "return [input[0].unsqueeze(0).reshape(-1) * torch.max(input[0], w)]",
    "x = input[0]\nreturn [torch.where(x > input[1], x, w).exp() if input[1] > 0 else x.unsqueeze(-1).flatten()]",
    "return [sig(input[0] @ input_data['W']) @ m * input[1]]",
    "return [m @ (input[0] * input_data['G'] - input[1]) + input[1]]",
    "x = input[0].view(-1, 2)\nreturn [(x @ input_data['V'] + input[1]).flatten()]",
    "xc = input[0] - input[0].mean(dim=-1)\nreturn [xc * input_data['G'] + input_data['G'].exp() / input[1]]",
    "k = input[0].view(-1, 2)\nreturn [k @ input[0][:2] * input[1]]",
    "return [input[0] @ input[0] + input[1]]",
    "k = input[0].view(2, -1)\nreturn [input[0][:2] @ k + input[1]]",
    "p = softmax(input[0] * input[1])\nq = logsm(input[0].view(2, -1))\nreturn [p + q.flatten()]",
    "p = softmax(input[0] @ input_data['W'])\nv, i = torch.topk(p, 1, dim=-1)\nreturn [torch.zeros_like(p, dtype=torch.float32).scatter(-1, i, 1.0)]",
];

fn shape_env(n: usize) -> Env {
    let mut env = Env::default();
    env.names
        .insert("sig".into(), Value::Module(Module::Sigmoid));
    env.names.insert(
        "softmax".into(),
        Value::Module(Module::Softmax { dim: Some(-1) }),
    );
    env.names.insert(
        "logsm".into(),
        Value::Module(Module::LogSoftmax { dim: Some(0) }),
    );
    let w: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 0.5).collect();
    env.names.insert(
        "w".into(),
        Value::tensor(Tensor::from_f32(vec![n], w).unwrap()),
    );
    env.dims.insert("D".into(), 4);
    let mat = |r: usize, c: usize, k: f32| {
        let v: Vec<f32> = (0..r * c)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * k)
            .collect();
        Tensor::from_f32(vec![r, c], v).unwrap()
    };
    env.names.insert("m".into(), Value::tensor(mat(3, n, 0.3)));
    env.set_data("W", mat(n, 3, 0.7));
    env.set_data("V", mat(2, 3, 1.1));
    env.set_data(
        "G",
        Tensor::from_f32(vec![n], (0..n).map(|i| i as f32 - 1.5).collect()).unwrap(),
    );
    env
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batched_shape_ops_equal_per_element_calls(
        body in 0usize..SHAPE_BODIES.len(),
        rows in prop::collection::vec((prop::collection::vec(-8.0f32..8.0, 8), -1.0f32..2.0), 1..10),
        n in 1usize..5,
    ) {
        let n = n * 2;
        let env = shape_env(n);
        let block = crate::lower_fn(SHAPE_BODIES[body], &env);
        let f = Function::from_ir("f", block.clone(), &env).unwrap();
        let xs: Vec<Vec<f32>> = rows.iter().map(|(v, _)| v[..n.min(8)].to_vec()).collect();
        let gs: Vec<Vec<f32>> = rows.iter().map(|(_, g)| vec![*g]).collect();
        let per_element: Vec<Vec<Tensor>> = (0..rows.len())
            .map(|e| {
                f.call(
                    &env,
                    vec![
                        Tensor::from_f32(vec![n.min(8)], xs[e].clone()).unwrap(),
                        Tensor::scalar_f32(gs[e][0]),
                    ],
                    None,
                )
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        prop_assume!(!per_element.is_empty());
        let out_shape = per_element[0][0].shape().to_vec();
        let rewritten = batched_body(
            &block,
            &env,
            &[vec![n.min(8)], vec![]],
            None,
            std::slice::from_ref(&out_shape),
        );
        let Some(rewritten) = rewritten else {
            return Err(TestCaseError::fail(format!("body {body} should batch")));
        };
        let lanes = rewritten.prepare("g", &env).unwrap();
        let batched = lanes
            .call_shared(
                &env,
                vec![Arc::new(lanes_last(&xs, &[n.min(8)])), Arc::new(lanes_last(&gs, &[]))],
                None,
            )
            .unwrap();
        let m = rows.len();
        let mut want_shape = out_shape.clone();
        want_shape.push(m);
        prop_assert_eq!(batched[0].shape(), &want_shape[..]);
        let got = batched[0].as_f32().unwrap();
        for (e, one) in per_element.iter().enumerate() {
            let want = one[0].as_f32().unwrap();
            for (k, w) in want.iter().enumerate() {
                let g = got[k * m + e];
                // Bitwise equal except for contractions: f32 GEMM (batched lanes) and the
                // row·matrix axpy (one element) sum in different orders. Terms here are at most
                // 8 products of |x| <= 8 and small weights, so 1e-4 absolute is ~100 ulps of
                // slack for rounding and far below any wrong rewrite.
                prop_assert!(
                    g.to_bits() == w.to_bits()
                        || (g.is_nan() && w.is_nan())
                        || (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "body {body}, lane {e}, element {k}: {g} vs {w}"
                );
            }
        }
    }
}
