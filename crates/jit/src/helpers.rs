//! Scalar math the generated code calls (Cranelift has no exp/log/erf/sin/cos instructions).
//! Each computes the tensor crate's [`UnaryOp::f64_fn`] in f64 and rounds once to f32, exactly
//! as the interpreter's `Tensor::unary` does, so compiled and interpreted results agree bit for
//! bit on these functions.

use stepforge_tensor::UnaryOp;

macro_rules! helpers {
    ($($name:ident = $op:ident),* $(,)?) => {
        $(
            extern "C" fn $name(x: f32) -> f32 {
                (UnaryOp::$op.f64_fn())(f64::from(x)) as f32
            }
        )*

        /// The helper that computes `op`, if it needs one (see `tir::needs_helper`).
        pub fn unary(op: UnaryOp) -> Option<extern "C" fn(f32) -> f32> {
            match op {
                $(UnaryOp::$op => Some($name),)*
                _ => None,
            }
        }
    };
}

helpers! {
    exp = Exp,
    log = Log,
    sin = Sin,
    cos = Cos,
    tanh = Tanh,
    sigmoid = Sigmoid,
    silu = Silu,
    gelu = Gelu,
    gelu_tanh = GeluTanh,
    erf = Erf,
    rsqrt = Rsqrt,
    sign = Sign,
}

pub extern "C" fn pow(x: f32, y: f32) -> f32 {
    f64::from(x).powf(f64::from(y)) as f32
}

/// `topk` of one lane: `x` is `[outer, n, inner]` row-major, `out` is `[2, outer, k, inner]`
/// (the values, then the indices as f32). Ranks exactly as `Tensor::topk` does: the tensor
/// crate's value order (NaN largest, `-0.0 == 0.0`), reversed when `largest`, ties broken by
/// the lower index. That order is total, so the first `k` of it are one set in one order
/// whichever selection algorithm finds them; the values are copied bit for bit. `order` is
/// reusable scratch. Buffers of other sizes are left alone (the runtime never passes them).
pub fn topk(
    x: &[f32],
    [outer, n, inner]: [usize; 3],
    k: usize,
    largest: bool,
    out: &mut [f32],
    order: &mut Vec<usize>,
) {
    let m = outer * k * inner;
    if x.len() != outer * n * inner || out.len() != 2 * m || k == 0 || k > n {
        return;
    }
    let (vals, idx) = out.split_at_mut(m);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * n * inner + j * inner + i;
            let cmp = |p: &usize, q: &usize| {
                let c = stepforge_tensor::topk_value_cmp(x[at(*p)], x[at(*q)]);
                let c = if largest { c.reverse() } else { c };
                c.then(p.cmp(q))
            };
            order.clear();
            if k == 1 {
                order.extend((0..n).min_by(cmp));
            } else {
                order.extend(0..n);
                if k < n {
                    order.select_nth_unstable_by(k - 1, cmp);
                    order.truncate(k);
                }
                order.sort_unstable_by(cmp);
            }
            for (r, &j) in order.iter().enumerate() {
                let q = o * k * inner + r * inner + i;
                vals[q] = x[at(j)];
                idx[q] = j as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn helpers_match_f64_math() {
        assert_eq!(exp(1.0), std::f64::consts::E as f32);
        assert_eq!(sign(-3.0), -1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(pow(2.0, 10.0), 1024.0);
    }

    #[test]
    fn topk_matches_the_tensor_crate_with_ties_and_nans() {
        let x = [1.0, f32::NAN, 3.0, -0.0, 3.0, 0.0, f32::NAN, -1.0];
        let mut order = Vec::new();
        for (shape, dim) in [([1, 8, 1], 0), ([2, 4, 1], 1), ([1, 2, 4], 0)] {
            let t = stepforge_tensor::Tensor::from_f32(
                shape.iter().copied().filter(|&d| d > 1).collect(),
                x.to_vec(),
            )
            .unwrap();
            let n = shape[1];
            for k in 1..=n {
                for largest in [true, false] {
                    let (v, i) = t.topk(k as i64, dim, largest).unwrap();
                    let mut out = vec![0.0; 2 * shape[0] * k * shape[2]];
                    topk(&x, shape, k, largest, &mut out, &mut order);
                    let (gv, gi) = out.split_at(out.len() / 2);
                    let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(gv), bits(v.as_f32().unwrap()), "{shape:?} k={k}");
                    let want: Vec<f32> = i.to_f64_vec().iter().map(|&j| j as f32).collect();
                    assert_eq!(gi, &want[..], "{shape:?} k={k} largest={largest}");
                }
            }
        }
    }
}
