//! The executor runs elementwise element functions on whole batches; the results must be
//! bit-identical to calling the function element by element.

use std::sync::Arc;

use proptest::prelude::*;
use stepforge_exec::eval::{Env, Function, Module, Value};
use stepforge_tensor::Tensor;

const BODIES: &[&str] = &[
    "return [input[0] * input[1]]",
    "return [torch.tensor(1.0) + 0.1 * input[0]]",
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn batched_calls_equal_per_element_calls(
        body in 0usize..BODIES.len(),
        xs in prop::collection::vec((-8.0f32..8.0, -8.0f32..8.0), 1..12),
        elem in 0usize..3,
    ) {
        let env = env();
        let block = stepforge_syntax::parse_block(BODIES[body]).ok().unwrap();
        let f = Function::compile("f", &block, &env).unwrap();
        // elements of shape (elem,) (or scalars when elem == 0), as in a Buffer stream
        let shape: Vec<usize> = if elem == 0 { vec![] } else { vec![elem] };
        let len = elem.max(1);
        let a: Vec<f32> = xs.iter().flat_map(|p| std::iter::repeat_n(p.0, len)).collect();
        let b: Vec<f32> = xs.iter().flat_map(|p| std::iter::repeat_n(p.1, len)).collect();
        let n = xs.len();
        let mut bshape = vec![n];
        bshape.extend(&shape);
        let batched = f
            .call_shared(
                &env,
                vec![
                    Arc::new(Tensor::from_f32(bshape.clone(), a.clone()).unwrap()),
                    Arc::new(Tensor::from_f32(bshape.clone(), b.clone()).unwrap()),
                ],
                None,
            )
            .unwrap();
        prop_assert_eq!(batched[0].shape(), &bshape[..]);
        let got = batched[0].as_f32().unwrap();
        for e in 0..n {
            let one = f
                .call(
                    &env,
                    vec![
                        Tensor::from_f32(shape.clone(), a[e * len..(e + 1) * len].to_vec()).unwrap(),
                        Tensor::from_f32(shape.clone(), b[e * len..(e + 1) * len].to_vec()).unwrap(),
                    ],
                    None,
                )
                .unwrap();
            let want = one[0].as_f32().unwrap();
            for (k, w) in want.iter().enumerate() {
                let g = got[e * len + k];
                prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "element {e}: {g} vs {w}");
            }
        }
    }
}
