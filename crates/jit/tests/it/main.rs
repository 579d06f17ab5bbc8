//! The backend on its own: bodies lowered from source, compiled, run on hand-checked data;
//! unsupported constructs say why; buffers that do not fit are refused before any call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use stepforge_check::func_lower::{Scope, lower_block};
use stepforge_ir::func::{Body, Mode};
use stepforge_jit::{Global, In, Out, Spec, compile};

fn body(src: &str, globals: &[&str]) -> Body {
    let p = stepforge_syntax::parse_block(src);
    assert!(!p.has_errors(), "{src}");
    let scope = Scope {
        globals: globals.iter().map(|s| s.to_string()).collect(),
        dims: ["D".to_string()].into_iter().collect(),
    };
    lower_block(&p.value.unwrap(), &scope, Mode::Function).unwrap()
}

fn spec(ins: &[&[usize]], outs: &[&[usize]]) -> Spec {
    Spec {
        inputs: ins.iter().map(|s| s.to_vec()).collect(),
        outputs: outs.iter().map(|s| s.to_vec()).collect(),
        ..Spec::default()
    }
}

fn run(src: &str, s: &Spec, lanes: usize, ins: &[&[f32]], data: &[&[f32]]) -> Vec<Vec<f32>> {
    let c = compile(&body(src, &["scale"]), s, true).unwrap_or_else(|e| panic!("{src}: {e}"));
    let lens: Vec<usize> = s.inputs.iter().map(|x| x.iter().product()).collect();
    let args: Vec<In<'_>> = ins
        .iter()
        .zip(&lens)
        .map(|(d, &l)| In {
            data: d,
            offset: 0,
            lane_stride: l,
        })
        .collect();
    let olens: Vec<usize> = s.outputs.iter().map(|x| x.iter().product()).collect();
    let mut out: Vec<Vec<f32>> = olens.iter().map(|&l| vec![f32::NAN; lanes * l]).collect();
    let mut outs: Vec<Out<'_>> = out
        .iter_mut()
        .zip(&olens)
        .map(|(d, &l)| Out {
            data: d,
            offset: 0,
            lane_stride: l,
        })
        .collect();
    c.kernel
        .run(lanes, &args, &[], &mut outs, data, &mut Vec::new())
        .unwrap();
    out
}

#[test]
fn elementwise_broadcast_and_python_constants() {
    let mut s = spec(&[&[3], &[]], &[&[3]]);
    s.globals.insert("scale".into(), Global::Float(2.0));
    let out = run(
        "return [(input[0] + input[1]) * scale - 1]",
        &s,
        2,
        &[&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[10.0, 20.0]],
        &[],
    );
    assert_eq!(out[0], vec![21.0, 23.0, 25.0, 47.0, 49.0, 51.0]);
}

#[test]
fn reductions_views_and_softmax() {
    let s = spec(&[&[2, 3]], &[&[3], &[2], &[2, 3], &[2]]);
    let x: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let out = run(
        "return [input[0].sum(dim=0), input[0].T[1], torch.softmax(input[0], dim=-1), input[0][:, 1:].amax(dim=-1)]",
        &s,
        1,
        &[&x],
        &[],
    );
    assert_eq!(out[0], vec![3.0, 5.0, 7.0]);
    assert_eq!(out[1], vec![1.0, 4.0]);
    let e = [1.0f32, 1f32.exp(), 2f32.exp()];
    let z: f32 = e.iter().sum();
    for (got, want) in out[2].iter().zip(e.iter().chain(&e).map(|v| v / z)) {
        assert!((got - want).abs() < 1e-6, "{got} {want}");
    }
    assert_eq!(out[3], vec![2.0, 5.0]);
}

#[test]
fn products_go_through_the_gemm_for_all_lanes_at_once() {
    let mut s = spec(&[&[2]], &[&[3]]);
    s.data.insert("W".into(), vec![2, 3]);
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let out = run(
        "return [input[0] @ input_data['W']]",
        &s,
        2,
        &[&[1.0, 1.0, 0.0, 2.0]],
        &[&w],
    );
    assert_eq!(out[0], vec![5.0, 7.0, 9.0, 8.0, 10.0, 12.0]);
}

#[test]
fn unsupported_bodies_say_why() {
    let s = spec(&[&[4]], &[&[1]]);
    let e = compile(&body("return [torch.sort(input[0])[0][:1]]", &[]), &s, true).unwrap_err();
    assert!(e.0.contains("sort"), "{e}");
    // int64 tensors are not compiled: an arange without a float dtype, topk's indices as
    // values
    let s4 = spec(&[&[4]], &[&[4]]);
    let e = compile(&body("return [input[0] + torch.arange(4)]", &[]), &s4, true).unwrap_err();
    assert!(e.0.contains("arange"), "{e}");
    let e = compile(
        &body("return [torch.topk(input[0], 1)[1] + input[0]]", &[]),
        &s4,
        true,
    )
    .unwrap_err();
    assert!(e.0.contains("index"), "{e}");
    // a k the interpreter would reject
    let e = compile(&body("return [torch.topk(input[0], 5)[0]]", &[]), &s, true).unwrap_err();
    assert!(e.0.contains("k out of range"), "{e}");
    let e = compile(
        &body("return [input[0][7]]", &[]),
        &spec(&[&[4]], &[&[]]),
        true,
    )
    .unwrap_err();
    assert!(e.0.contains("out of range"), "{e}");
    let e = compile(
        &body("return [input[0]]", &[]),
        &spec(&[&[4]], &[&[5]]),
        true,
    )
    .unwrap_err();
    assert!(e.0.contains("shape"), "{e}");
}

#[test]
fn buffers_that_do_not_fit_are_refused_before_the_call() {
    let s = spec(&[&[4]], &[&[4]]);
    let c = compile(&body("return [input[0] * 2]", &[]), &s, true).unwrap();
    let x = [1.0f32; 7];
    let mut o = vec![0.0f32; 8];
    let err = c
        .kernel
        .run(
            2,
            &[In {
                data: &x,
                offset: 0,
                lane_stride: 4,
            }],
            &[],
            &mut [Out {
                data: &mut o,
                offset: 0,
                lane_stride: 4,
            }],
            &[],
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(err.0.contains("do not fit"), "{err}");
    let x = [1.0f32; 8];
    let err = c
        .kernel
        .run(
            2,
            &[In {
                data: &x,
                offset: 0,
                lane_stride: 4,
            }],
            &[],
            &mut [Out {
                data: &mut o,
                offset: 0,
                lane_stride: 2,
            }],
            &[],
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(err.0.contains("overlap"), "{err}");
}

#[test]
fn strided_lanes_read_every_inner_element() {
    // Lane l reads elements l*stride..: the layout of one fold step over many folds.
    let s = spec(&[&[2]], &[&[2]]);
    let c = compile(&body("return [input[0] + 1]", &[]), &s, true).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let mut o = vec![0.0f32; 6];
    c.kernel
        .run(
            3,
            &[In {
                data: &x,
                offset: 2,
                lane_stride: 4,
            }],
            &[],
            &mut [Out {
                data: &mut o,
                offset: 0,
                lane_stride: 2,
            }],
            &[],
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(o, vec![3.0, 4.0, 7.0, 8.0, 11.0, 12.0]);
}

#[test]
fn hostile_nested_lists_stay_small() {
    // Each `a = [a, a]` doubles the logical list; the analysis shares, never copies.
    let mut src = String::from("a = []\n");
    for _ in 0..60 {
        src.push_str("a = [a, a]\n");
    }
    src.push_str("return [input[0]]");
    assert!(compile(&body(&src, &[]), &spec(&[&[2]], &[&[2]]), true).is_ok());
}

#[test]
fn topk_and_the_scatter_of_its_indices() {
    // Ties keep index order and NaN ranks largest, as the tensor crate's topk.
    let s = spec(&[&[4]], &[&[2], &[4], &[]]);
    let out = run(
        "v, i = torch.topk(input[0], 2, dim=-1)\nreturn [v, torch.zeros_like(input[0]).scatter(-1, i, 1.0), torch.max(input[0], dim=0)[0]]",
        &s,
        2,
        &[&[1.0, 3.0, 3.0, 2.0, 0.5, f32::NAN, 7.0, -1.0]],
        &[],
    );
    assert_eq!(out[0][..2], [3.0, 3.0]);
    assert!(out[0][2].is_nan() && out[0][3] == 7.0, "{:?}", out[0]);
    assert_eq!(out[1], vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    assert_eq!(out[2][0], 3.0);
    assert!(out[2][1].is_nan());
}

#[test]
fn shape_queries_dtype_arguments_arange_and_joins() {
    let s = spec(&[&[4]], &[&[4], &[4]]);
    let out = run(
        "d = input[0].size(-1)\nx1, x2 = input[0].chunk(2, dim=-1)\nr = torch.arange(d, dtype=torch.float32)\nreturn [torch.cat([-x2, x1], dim=-1) + r, torch.stack([x1, x2 * 10], dim=-1).flatten()]",
        &s,
        1,
        &[&[1.0, 2.0, 3.0, 4.0]],
        &[],
    );
    assert_eq!(out[0], vec![-3.0, -3.0, 3.0, 5.0]);
    assert_eq!(out[1], vec![1.0, 30.0, 2.0, 40.0]);
}
