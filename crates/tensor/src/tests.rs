//! Unit tests against hand-computed values and naive loop implementations, plus property tests
//! for the algebraic laws the evaluator relies on.

use proptest::prelude::*;

use super::*;

fn f(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(shape.to_vec(), data.to_vec()).unwrap()
}

fn i(shape: &[usize], data: &[i64]) -> Tensor {
    Tensor::from_i64(shape.to_vec(), data.to_vec()).unwrap()
}

fn ar(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    f(shape, &(0..n).map(|x| x as f32).collect::<Vec<_>>())
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

// ----- construction and errors ----------------------------------------------------------------

#[test]
fn constructor_checks_length() {
    let e = Tensor::from_f32(vec![2, 3], vec![1.0; 5]).unwrap_err();
    assert_eq!(e.message, "shape (2, 3) needs 6 elements but 5 were given");
    assert_eq!(Tensor::scalar_f32(2.5).shape(), &[] as &[usize]);
    assert_eq!(Tensor::scalar_f32(2.5).as_f32(), Some(&[2.5f32][..]));
}

#[test]
fn huge_sizes_fail_before_allocating() {
    let e = Tensor::ones(&[1_000_000, 1_000_000], DType::F32).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = Tensor::ones(&[usize::MAX, 3], DType::F32).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = ar(&[2]).repeat(&[1_000_000_000_000]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = ar(&[2]).expand(&[1 << 40, 2]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    // Empty tensors with absurd other dims are refused too (loops over them would hang).
    let e = Tensor::zeros(&[0, 1 << 50], DType::F32).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = Tensor::zeros(&[0], DType::F32)
        .unwrap()
        .reshape(&[1 << 50, 0])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = Tensor::arange(0.0, 1e15, 1.0, DType::I64).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let _g = limits::LimitGuard::new(100, 1000);
    let e = Tensor::einsum("i,j->ij", &[&ar(&[20]), &ar(&[20])]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = Tensor::einsum("i,i->", &[&ar(&[90]), &ar(&[90])]);
    assert!(e.is_ok());
}

#[test]
fn limit_guard_restores() {
    {
        let _g = limits::LimitGuard::new(10, 10);
        assert_eq!(limits::max_numel(), 10);
    }
    assert_eq!(limits::max_numel(), limits::DEFAULT_MAX_NUMEL);
}

// ----- time limits inside long builtins ------------------------------------------------------

fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
    let t = std::time::Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn assert_ran_out(r: Result<impl std::fmt::Debug>) {
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.message.contains("time limit"), "{e}");
}

#[test]
fn long_matmul_stops_at_the_deadline() {
    // 1024^3 = 2^30 multiply-adds: seconds in a debug build, so the deadline must interrupt it.
    let a = Tensor::ones(&[1024, 1024], DType::F32).unwrap();
    let _d = limits::DeadlineGuard::after(std::time::Duration::from_millis(50));
    let (r, took) = timed(|| a.matmul(&a));
    assert_ran_out(r);
    assert!(took.as_millis() < 1000, "{took:?}");
}

#[test]
fn long_einsum_and_topk_stop_at_the_deadline() {
    let a = Tensor::ones(&[300, 300], DType::F32).unwrap();
    let x = Tensor::arange(0.0, 4_000_000.0, 1.0, DType::F32)
        .unwrap()
        .reshape(&[2000, 2000])
        .unwrap();
    let _d = limits::DeadlineGuard::after(std::time::Duration::from_millis(30));
    // A repeated label forces the general loop (not the matmul route): 300^3 steps.
    let (r, took) = timed(|| Tensor::einsum("ij,jk,kk->ik", &[&a, &a, &a]));
    assert_ran_out(r);
    assert!(took.as_millis() < 1000, "{took:?}");
    std::thread::sleep(std::time::Duration::from_millis(40));
    let (r, took) = timed(|| x.topk(2000, -1, true));
    assert_ran_out(r);
    assert!(took.as_millis() < 200, "{took:?}");
}

#[test]
fn an_expired_deadline_refuses_large_allocations_but_not_small_ones() {
    let _d = limits::DeadlineGuard::after(std::time::Duration::ZERO);
    std::thread::sleep(std::time::Duration::from_millis(1));
    assert_ran_out(Tensor::ones(&[1 << 20], DType::F32));
    assert!(Tensor::ones(&[16], DType::F32).is_ok());
    let big = {
        let _none = limits::DeadlineGuard::after(std::time::Duration::from_secs(3600));
        Tensor::ones(&[1 << 17], DType::F32).unwrap()
    };
    assert_ran_out(big.exp());
    assert_ran_out(big.sum(None, false));
}

#[test]
fn deadline_guard_restores() {
    assert_eq!(limits::deadline(), None);
    {
        let _d = limits::DeadlineGuard::after(std::time::Duration::from_secs(1));
        assert!(limits::deadline().is_some());
    }
    assert_eq!(limits::deadline(), None);
    assert!(limits::check_deadline("x").is_ok());
}

#[test]
fn topk_and_sort_match_a_stable_sort_with_ties_across_merge_runs() {
    // 10,000 values with many ties: larger than one merge run, so the merge path is exercised.
    let n = 10_000usize;
    let vals: Vec<f32> = (0..n).map(|j| ((j * 7919) % 13) as f32).collect();
    let x = f(&[n], &vals);
    for largest in [true, false] {
        let mut naive: Vec<usize> = (0..n).collect();
        naive.sort_by(|&p, &q| {
            let c = vals[p].total_cmp(&vals[q]);
            if largest { c.reverse() } else { c }
        });
        for k in [1usize, 100, 5000, n] {
            let (v, ix) = x.topk(k as i64, 0, largest).unwrap();
            let want: Vec<i64> = naive[..k].iter().map(|&j| j as i64).collect();
            assert_eq!(ix.as_i64().unwrap(), &want[..], "k={k} largest={largest}");
            let wv: Vec<f32> = naive[..k].iter().map(|&j| vals[j]).collect();
            assert_eq!(vals_of(&v), wv);
        }
    }
}

fn vals_of(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec()
}

#[test]
fn sixteen_operand_einsum_is_refused_before_running() {
    // 4^16 = 2^32 loop steps times 16 operands: refused by the work limit in microseconds.
    let v = ar(&[4]);
    let ops: Vec<&Tensor> = (0..16).map(|_| &v).collect();
    let (r, took) = timed(|| Tensor::einsum("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p->", &ops));
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.message.contains("einsum would take"), "{e}");
    assert!(took.as_millis() < 100, "{took:?}");
}

#[test]
fn stack_of_a_million_copies_is_refused_before_copying() {
    let x = ar(&[128]);
    let many: Vec<&Tensor> = vec![&x; 1_000_000];
    let (r, took) = timed(|| Tensor::stack(&many, 0));
    assert_eq!(r.unwrap_err().kind, ErrorKind::TooLarge);
    assert!(took.as_millis() < 500, "{took:?}");
    // Small stacks along every dim are unchanged by the in-place route.
    let a = ar(&[2, 3]);
    let b = a.mul(&Tensor::scalar_f32(10.0)).unwrap();
    for d in [0i64, 1, 2, -1] {
        let s = Tensor::stack(&[&a, &b], d).unwrap();
        let naive = Tensor::cat(&[&a.unsqueeze(d).unwrap(), &b.unsqueeze(d).unwrap()], d).unwrap();
        assert_eq!(s, naive, "dim {d}");
    }
}

#[test]
fn splitting_into_millions_of_pieces_is_refused() {
    let _g = limits::LimitGuard::new(1 << 20, 1 << 30);
    let x = Tensor::ones(&[1 << 19], DType::F32).unwrap();
    let e = x.split(1, 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.message.contains("splitting into 524288 tensors"), "{e}");
    assert_eq!(x.chunk(1 << 19, 0).unwrap_err().kind, ErrorKind::TooLarge);
    assert_eq!(x.split(1 << 10, 0).unwrap().len(), 1 << 9);
}

#[test]
fn shape_formatting() {
    assert_eq!(fmt_shape(&[]), "()");
    assert_eq!(fmt_shape(&[5]), "(5,)");
    assert_eq!(fmt_shape(&[3, 4]), "(3, 4)");
}

// ----- elementwise -----------------------------------------------------------------------------

#[test]
fn broadcasting_add_and_error() {
    let a = ar(&[2, 3]);
    let b = f(&[3], &[10., 20., 30.]);
    assert_eq!(
        vals(&a.add(&b).unwrap()),
        vec![10., 21., 32., 13., 24., 35.]
    );
    let c = f(&[2, 1], &[100., 200.]);
    let r = b.add(&c).unwrap();
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(vals(&r), vec![110., 120., 130., 210., 220., 230.]);
    let e = ar(&[3, 4]).add(&ar(&[5])).unwrap_err();
    assert_eq!(e.message, "shapes (3, 4) and (5,) cannot broadcast");
}

#[test]
fn type_promotion() {
    let a = i(&[2], &[7, -7]);
    let b = i(&[1], &[2]);
    assert_eq!(a.add(&b).unwrap().dtype(), DType::I64);
    assert_eq!(a.div(&b).unwrap().dtype(), DType::F32);
    assert_eq!(vals(&a.div(&b).unwrap()), vec![3.5, -3.5]);
    assert_eq!(
        a.binary(BinaryOp::FloorDiv, &b).unwrap().as_i64(),
        Some(&[3, -4][..])
    );
    assert_eq!(
        a.binary(BinaryOp::Rem, &b).unwrap().as_i64(),
        Some(&[1, 1][..])
    );
    let neg = i(&[1], &[-3]);
    assert_eq!(
        a.binary(BinaryOp::Rem, &neg).unwrap().as_i64(),
        Some(&[-2, -1][..])
    );
    assert_eq!(a.mul(&Tensor::scalar_f32(0.5)).unwrap().dtype(), DType::F32);
    let bl = Tensor::from_bool(vec![2], vec![true, false]).unwrap();
    let s = bl.add(&a).unwrap();
    assert_eq!(s.as_i64(), Some(&[8, -7][..]));
    assert_eq!(a.pow(&b).unwrap().as_i64(), Some(&[49, 49][..]));
    assert!(a.pow(&neg).is_err());
    assert!(a.binary(BinaryOp::FloorDiv, &i(&[1], &[0])).is_err());
    let x = f(&[2], &[-7.5, 7.5]);
    assert_eq!(
        vals(&x.binary(BinaryOp::Rem, &Tensor::scalar_f32(2.0)).unwrap()),
        vec![0.5, 1.5]
    );
    assert_eq!(
        vals(
            &x.binary(BinaryOp::FloorDiv, &Tensor::scalar_f32(2.0))
                .unwrap()
        ),
        vec![-4.0, 3.0]
    );
    assert_eq!(
        vals(&x.pow(&Tensor::scalar_f32(2.0)).unwrap()),
        vec![56.25, 56.25]
    );
}

#[test]
fn comparisons_give_bool() {
    let a = f(&[3], &[1., 2., 3.]);
    let r = a.compare(CmpOp::Gt, &Tensor::scalar_i64(2)).unwrap();
    assert_eq!(r.as_bool(), Some(&[false, false, true][..]));
    let r = a.compare(CmpOp::Eq, &f(&[3], &[1., 0., 3.])).unwrap();
    assert_eq!(r.as_bool(), Some(&[true, false, true][..]));
    assert_eq!(
        a.compare(CmpOp::Le, &Tensor::scalar_f32(2.0))
            .unwrap()
            .as_bool(),
        Some(&[true, true, false][..])
    );
    assert_eq!(
        a.compare(CmpOp::Ne, &Tensor::scalar_f32(2.0))
            .unwrap()
            .as_bool(),
        Some(&[true, false, true][..])
    );
    assert!(Tensor::scalar_bool(true).truthy().unwrap());
    assert!(a.truthy().is_err());
}

#[test]
fn unary_functions() {
    let x = f(&[4], &[-2., -0.5, 0., 1.5]);
    let neg = x.neg().unwrap();
    assert_eq!(vals(&neg), vec![2., 0.5, -0., -1.5]);
    let ex = x.exp().unwrap();
    assert!(close(
        &vals(&ex),
        &[(-2f32).exp(), (-0.5f32).exp(), 1.0, 1.5f32.exp()],
        1e-7
    ));
    let sg = x.unary(UnaryOp::Sigmoid).unwrap();
    let want: Vec<f32> = [-2f64, -0.5, 0., 1.5]
        .iter()
        .map(|v| (1.0 / (1.0 + (-v).exp())) as f32)
        .collect();
    assert!(close(&vals(&sg), &want, 1e-7));
    let si = x.unary(UnaryOp::Silu).unwrap();
    let want: Vec<f32> = [-2f64, -0.5, 0., 1.5]
        .iter()
        .map(|v| (v / (1.0 + (-v).exp())) as f32)
        .collect();
    assert!(close(&vals(&si), &want, 1e-7));
    // torch.nn.GELU()(torch.tensor([-2., -0.5, 0., 1.5])) (exact erf form).
    let g = x.unary(UnaryOp::Gelu).unwrap();
    assert!(
        close(&vals(&g), &[-0.04550026, -0.15426877, 0.0, 1.3997892], 1e-6),
        "{:?}",
        vals(&g)
    );
    assert_eq!(vals(&f(&[2], &[4., 9.]).sqrt().unwrap()), vec![2., 3.]);
    assert!(close(
        &vals(&f(&[1], &[1.0]).unary(UnaryOp::Cos).unwrap()),
        &[1f32.cos()],
        1e-7
    ));
    assert!(close(
        &vals(&f(&[1], &[1.0]).unary(UnaryOp::Sin).unwrap()),
        &[1f32.sin()],
        1e-7
    ));
    assert_eq!(
        i(&[2], &[-3, 4]).neg().unwrap().as_i64(),
        Some(&[3, -4][..])
    );
    assert_eq!(i(&[2], &[1, 4]).sqrt().unwrap().dtype(), DType::F32);
    assert!(Tensor::scalar_bool(true).neg().is_err());
    assert_eq!(
        f(&[3], &[-1., 0.5, 3.])
            .clamp(Some(0.0), Some(1.0))
            .map(|t| vals(&t))
            .unwrap(),
        vec![0., 0.5, 1.]
    );
    let m = ar(&[3]).maximum(&f(&[3], &[2., 0., 5.])).unwrap();
    assert_eq!(vals(&m), vec![2., 1., 5.]);
    let w = Tensor::where_(
        &Tensor::from_bool(vec![2], vec![true, false]).unwrap(),
        &ar(&[2]),
        &Tensor::scalar_f32(9.0),
    )
    .unwrap();
    assert_eq!(vals(&w), vec![0., 9.]);
}

#[test]
fn erf_reference_values() {
    // The erf we use (libm, musl's approximations) against mpmath/Abramowitz–Stegun values.
    let cases = [
        (0.0, 0.0),
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (2.9, 0.9999589021219005),
        (3.0, 0.9999779095030014),
        (3.5, 0.9999992569016276),
        (-1.0, -0.8427007929497149),
        (7.0, 1.0),
    ];
    for (x, want) in cases {
        assert!(
            (libm::erf(x) - want).abs() < 1e-14,
            "erf({x}) = {}",
            libm::erf(x)
        );
    }
    assert!((libm::erfc(4.0) - 1.541725790028002e-8).abs() < 1e-20);
    assert!((libm::erfc(3.0) - 2.209049699858544e-5).abs() < 1e-17);
}

#[test]
fn unary_table_against_f64_formulas() {
    let xs = [-2.5f32, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5];
    let x = f(&[7], &xs);
    type Formula = fn(f64) -> f64;
    let cases: [(UnaryOp, Formula); 13] = [
        (UnaryOp::Abs, f64::abs),
        (UnaryOp::Tanh, f64::tanh),
        (UnaryOp::Relu, |v| v.max(0.0)),
        (UnaryOp::Square, |v| v * v),
        (UnaryOp::Floor, f64::floor),
        (UnaryOp::Ceil, f64::ceil),
        (UnaryOp::Round, f64::round_ties_even),
        (UnaryOp::Sign, f64::signum),
        (UnaryOp::Erf, libm::erf),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Sin, f64::sin),
        (UnaryOp::Cos, f64::cos),
        (UnaryOp::GeluTanh, |v| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        }),
    ];
    for (op, g) in cases {
        let got = vals(&x.unary(op).unwrap());
        for (k, &xv) in xs.iter().enumerate() {
            let want = g(f64::from(xv));
            // signum(0.0) is 1 in Rust but 0 in torch.
            let want = if op == UnaryOp::Sign && xv == 0.0 {
                0.0
            } else {
                want
            } as f32;
            assert!(
                (got[k] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{op:?}({xv}) = {} want {want}",
                got[k]
            );
        }
    }
    let p = f(&[3], &[0.25, 1.0, 4.0]);
    assert_eq!(vals(&p.unary(UnaryOp::Rsqrt).unwrap()), vec![2.0, 1.0, 0.5]);
    assert_eq!(
        vals(&p.unary(UnaryOp::Reciprocal).unwrap()),
        vec![4.0, 1.0, 0.25]
    );
    assert!(close(
        &vals(&p.unary(UnaryOp::Log).unwrap()),
        &[0.25f32.ln(), 0.0, 4f32.ln()],
        1e-7
    ));
    assert_eq!(
        Tensor::from_bool(vec![2], vec![true, false])
            .unwrap()
            .unary(UnaryOp::LogicalNot)
            .unwrap()
            .as_bool(),
        Some(&[false, true][..])
    );
    // round half to even, like torch
    assert_eq!(
        vals(
            &f(&[4], &[0.5, 1.5, 2.5, -0.5])
                .unary(UnaryOp::Round)
                .unwrap()
        ),
        vec![0., 2., 2., -0.]
    );
}

#[test]
fn dtype_conversions_and_items() {
    let x = f(&[3], &[1.7, -1.7, 0.0]);
    assert_eq!(x.to_dtype(DType::I64).as_i64(), Some(&[1, -1, 0][..]));
    assert_eq!(
        x.to_dtype(DType::Bool).as_bool(),
        Some(&[true, true, false][..])
    );
    assert_eq!(
        i(&[2], &[0, 3]).to_dtype(DType::F32).as_f32(),
        Some(&[0.0, 3.0][..])
    );
    assert_eq!(Tensor::scalar_i64(4).item().unwrap(), Scalar::I64(4));
    assert_eq!(f(&[1, 1], &[2.5]).item().unwrap(), Scalar::F32(2.5));
    assert!(x.item().is_err());
    assert_eq!(x.to_f64_vec()[1], f64::from(-1.7f32));
}

#[test]
fn sort_select_split_narrow() {
    let x = f(&[2, 3], &[3., 1., 2., 0., 5., 5.]);
    let (v, ix) = x.sort(-1, false).unwrap();
    assert_eq!(vals(&v), vec![1., 2., 3., 0., 5., 5.]);
    assert_eq!(ix.as_i64(), Some(&[1, 2, 0, 0, 1, 2][..]));
    let (v, ix) = x.sort(-1, true).unwrap();
    assert_eq!(vals(&v), vec![3., 2., 1., 5., 5., 0.]);
    assert_eq!(ix.as_i64(), Some(&[0, 2, 1, 1, 2, 0][..]));
    let s = x.index_select(1, &i(&[2], &[2, 0])).unwrap();
    assert_eq!(vals(&s), vec![2., 3., 5., 0.]);
    assert!(x.index_select(1, &i(&[1], &[3])).is_err());
    let parts = ar(&[5]).split(2, 0).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.numel()).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(
        vals(&ar(&[2, 4]).narrow(1, 1, 2).unwrap()),
        vec![1., 2., 5., 6.]
    );
    assert!(ar(&[2, 4]).narrow(1, 3, 2).is_err());
    assert!(ar(&[2, 4]).narrow(2, 0, 0).is_err());
    let p = ar(&[2, 3, 4]).permute(&[1, 2, 0]).unwrap();
    assert_eq!(p.shape(), &[3, 4, 2]);
    assert_eq!(vals(&p)[1], 12.);
    assert_eq!(
        ar(&[2, 1, 3]).squeeze(Some(&[-2])).unwrap().shape(),
        &[2, 3]
    );
    let mask = Tensor::from_bool(vec![2], vec![true, false]).unwrap();
    assert!(ar(&[3]).index(&[Index::Tensor(mask)]).is_err());
}

// ----- reductions ------------------------------------------------------------------------------

#[test]
fn sum_mean_var() {
    let x = ar(&[2, 3]);
    assert_eq!(vals(&x.sum(None, false).unwrap()), vec![15.]);
    assert_eq!(x.sum(None, false).unwrap().shape(), &[] as &[usize]);
    let s = x.sum(Some(&[-1]), true).unwrap();
    assert_eq!(s.shape(), &[2, 1]);
    assert_eq!(vals(&s), vec![3., 12.]);
    assert_eq!(vals(&x.sum(Some(&[0]), false).unwrap()), vec![3., 5., 7.]);
    assert_eq!(vals(&x.sum(Some(&[0, 1]), false).unwrap()), vec![15.]);
    assert_eq!(vals(&x.mean(Some(&[1]), false).unwrap()), vec![1., 4.]);
    // var([0,1,2]) = 1 (unbiased), 2/3 (biased)
    assert_eq!(vals(&x.var(Some(&[1]), true, false).unwrap()), vec![1., 1.]);
    assert!(close(
        &vals(&x.var(Some(&[1]), false, true).unwrap()),
        &[2. / 3., 2. / 3.],
        1e-7
    ));
    assert_eq!(x.var(Some(&[1]), false, true).unwrap().shape(), &[2, 1]);
    assert_eq!(
        i(&[3], &[1, 2, 3]).sum(None, false).unwrap().as_i64(),
        Some(&[6][..])
    );
    assert!(x.sum(Some(&[2]), false).is_err());
    assert!(x.sum(Some(&[1, -1]), false).is_err());
    assert_eq!(vals(&x.amax(Some(&[1]), false).unwrap()), vec![2., 5.]);
    assert_eq!(vals(&x.amax(Some(&[0]), false).unwrap()), vec![3., 4., 5.]);
    assert_eq!(vals(&x.amin(Some(&[0]), true).unwrap()), vec![0., 1., 2.]);
    assert_eq!(vals(&x.amin(None, false).unwrap()), vec![0.]);
    assert_eq!(
        i(&[3], &[4, -2, 9]).amax(None, false).unwrap().as_i64(),
        Some(&[9][..])
    );
    assert_eq!(vals(&x.prod(Some(&[0]), false).unwrap()), vec![0., 4., 10.]);
}

#[test]
fn softmax_cumprod_cumsum() {
    let x = f(&[2, 2], &[0., 0., 1., 3.]);
    let s = x.softmax(-1).unwrap();
    let e = (2f64).exp();
    assert!(close(
        &vals(&s),
        &[0.5, 0.5, (1.0 / (1.0 + e)) as f32, (e / (1.0 + e)) as f32],
        1e-7
    ));
    let s0 = x.softmax(0).unwrap();
    assert!(close(
        &vals(&s0),
        &[
            (1.0 / (1.0 + 1f64.exp())) as f32,
            (1.0 / (1.0 + 3f64.exp())) as f32,
            (1f64.exp() / (1.0 + 1f64.exp())) as f32,
            (3f64.exp() / (1.0 + 3f64.exp())) as f32
        ],
        1e-7
    ));
    let c = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(
        vals(&c.cumprod(1).unwrap()),
        vec![1., 2., 6., 4., 20., 120.]
    );
    assert_eq!(vals(&c.cumprod(0).unwrap()), vec![1., 2., 3., 4., 10., 18.]);
    assert_eq!(vals(&c.cumsum(-1).unwrap()), vec![1., 3., 6., 4., 9., 15.]);
    let l = x.log_softmax(-1).unwrap();
    assert!(close(
        &vals(&l),
        &[
            -(2f32.ln()),
            -(2f32.ln()),
            -((1.0 + e).ln()) as f32,
            (2.0 - (1.0 + e).ln()) as f32
        ],
        1e-6
    ));
}

#[test]
fn topk_and_ties() {
    let x = f(&[2, 4], &[1., 3., 3., 2., 5., 4., 6., 4.]);
    let (v, ix) = x.topk(2, -1, true).unwrap();
    assert_eq!(vals(&v), vec![3., 3., 6., 5.]);
    assert_eq!(ix.as_i64(), Some(&[1, 2, 2, 0][..]));
    let (v, ix) = x.topk(2, 1, false).unwrap();
    assert_eq!(vals(&v), vec![1., 2., 4., 4.]);
    assert_eq!(ix.as_i64(), Some(&[0, 3, 1, 3][..]));
    let (v, ix) = x.topk(1, 0, true).unwrap();
    assert_eq!(v.shape(), &[1, 4]);
    assert_eq!(vals(&v), vec![5., 4., 6., 4.]);
    assert_eq!(ix.as_i64(), Some(&[1, 1, 1, 1][..]));
    assert!(x.topk(5, -1, true).is_err());
    assert!(x.topk(-1, -1, true).is_err());
    assert!(Tensor::scalar_f32(1.5).topk(0, -1, true).is_err());
    let (v0, i0) = Tensor::scalar_f32(1.5).topk(1, 0, true).unwrap();
    assert_eq!((v0.shape(), i0.as_i64()), (&[][..], Some(&[0i64][..])));
    let (mv, mi) = x.max_dim(-1, false, true).unwrap();
    assert_eq!(vals(&mv), vec![3., 6.]);
    assert_eq!(mi.as_i64(), Some(&[1, 2][..]));
    assert_eq!(x.argmax(None, false).unwrap().as_i64(), Some(&[6][..]));
}

// ----- linear algebra --------------------------------------------------------------------------

fn naive_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += f64::from(a[r * k + p]) * f64::from(b[p * n + c]);
            }
            out[r * n + c] = s as f32;
        }
    }
    out
}

#[test]
fn matmul_rank_combinations() {
    let v = f(&[3], &[1., 2., 3.]);
    let m = ar(&[3, 2]);
    let dot = v.matmul(&v).unwrap();
    assert_eq!(dot.shape(), &[] as &[usize]);
    assert_eq!(vals(&dot), vec![14.]);
    let vm = v.matmul(&m).unwrap();
    assert_eq!(vm.shape(), &[2]);
    assert_eq!(vals(&vm), vec![16., 22.]);
    let mt = ar(&[2, 3]);
    let mv = mt.matmul(&v).unwrap();
    assert_eq!(vals(&mv), vec![8., 26.]);
    let mm = mt.matmul(&m).unwrap();
    assert_eq!(mm.shape(), &[2, 2]);
    assert_eq!(vals(&mm), naive_matmul(&vals(&mt), &vals(&m), 2, 3, 2));
    // batched with broadcasting: (2,1,2,3) @ (4,3,2) -> (2,4,2,2)
    let a = ar(&[2, 1, 2, 3]);
    let b = ar(&[4, 3, 2]);
    let r = a.matmul(&b).unwrap();
    assert_eq!(r.shape(), &[2, 4, 2, 2]);
    let av = vals(&a);
    let bv = vals(&b);
    for x in 0..2 {
        for y in 0..4 {
            let want = naive_matmul(&av[x * 6..x * 6 + 6], &bv[y * 6..y * 6 + 6], 2, 3, 2);
            let at = (x * 4 + y) * 4;
            assert_eq!(&vals(&r)[at..at + 4], &want[..]);
        }
    }
    // batched matrix @ vector
    let bv2 = ar(&[2, 2, 3]).matmul(&v).unwrap();
    assert_eq!(bv2.shape(), &[2, 2]);
    assert_eq!(vals(&bv2), vec![8., 26., 44., 62.]);
    let e = mt.matmul(&mt).unwrap_err();
    assert!(e.message.contains("cannot be multiplied"), "{}", e.message);
    assert!(Tensor::scalar_f32(1.0).matmul(&v).is_err());
    assert_eq!(
        ar(&[2, 2, 3]).bmm(&ar(&[2, 3, 4])).unwrap().shape(),
        &[2, 2, 4]
    );
    assert!(ar(&[2, 3]).bmm(&ar(&[3, 4])).is_err());
    assert_eq!(
        i(&[2], &[1, 2]).matmul(&i(&[2], &[3, 4])).unwrap().as_i64(),
        Some(&[11][..])
    );
}

#[test]
fn einsum_forms() {
    let a = ar(&[2, 3]);
    let b = ar(&[3, 4]);
    let mm = Tensor::einsum("ij,jk->ik", &[&a, &b]).unwrap();
    assert_eq!(mm, a.matmul(&b).unwrap());
    // implicit output: labels appearing once, alphabetical
    let imp = Tensor::einsum("ij,jk", &[&a, &b]).unwrap();
    assert_eq!(imp, mm);
    let tr = Tensor::einsum("ii", &[&ar(&[3, 3])]).unwrap();
    assert_eq!(vals(&tr), vec![12.]);
    let diag = Tensor::einsum("ii->i", &[&ar(&[3, 3])]).unwrap();
    assert_eq!(vals(&diag), vec![0., 4., 8.]);
    let t = Tensor::einsum("ij->ji", &[&a]).unwrap();
    assert_eq!(t, a.t().unwrap());
    let outer = Tensor::einsum("i,j->ij", &[&f(&[2], &[1., 2.]), &f(&[2], &[3., 4.])]).unwrap();
    assert_eq!(vals(&outer), vec![3., 4., 6., 8.]);
    let total = Tensor::einsum("ij->", &[&a]).unwrap();
    assert_eq!(vals(&total), vec![15.]);
    let batched = Tensor::einsum("bij,bjk->bik", &[&ar(&[2, 2, 3]), &ar(&[2, 3, 2])]).unwrap();
    assert_eq!(batched, ar(&[2, 2, 3]).matmul(&ar(&[2, 3, 2])).unwrap());
    let ell = Tensor::einsum("...ij,jk->...ik", &[&ar(&[2, 2, 3]), &b]).unwrap();
    assert_eq!(ell, ar(&[2, 2, 3]).matmul(&b).unwrap());
    let three = Tensor::einsum(
        "i,i,i->",
        &[
            &f(&[2], &[1., 2.]),
            &f(&[2], &[3., 4.]),
            &f(&[2], &[5., 6.]),
        ],
    )
    .unwrap();
    assert_eq!(vals(&three), vec![15. + 48.]);
    let spaced = Tensor::einsum(" ij , jk -> ik ", &[&a, &b]).unwrap();
    assert_eq!(spaced, mm);
    assert!(
        Tensor::einsum("ij,jk->ik", &[&a, &a])
            .unwrap_err()
            .message
            .contains("subscript 'j'")
    );
    assert!(Tensor::einsum("ij->k", &[&a]).is_err());
    assert!(Tensor::einsum("ijk->i", &[&a]).is_err());
    assert!(Tensor::einsum("ij,jk->ik", &[&a]).is_err());
    assert!(Tensor::einsum("i1->i", &[&ar(&[2, 2])]).is_err());
}

// ----- shape ops -------------------------------------------------------------------------------

#[test]
fn reshape_view_flatten() {
    let x = ar(&[2, 3, 4]);
    assert_eq!(x.reshape(&[6, -1]).unwrap().shape(), &[6, 4]);
    assert!(x.reshape(&[5, -1]).is_err());
    assert_eq!(
        x.reshape(&[7, 3]).unwrap_err().message,
        "shape '[7, 3]' is invalid for input of size 24"
    );
    assert!(x.reshape(&[-1, -1]).is_err());
    assert_eq!(x.flatten(1, -1).unwrap().shape(), &[2, 12]);
    assert_eq!(x.flatten(0, -1).unwrap().shape(), &[24]);
    assert_eq!(x.flatten(-2, -1).unwrap().shape(), &[2, 12]);
    assert!(x.flatten(2, 1).is_err());
    assert_eq!(x.unsqueeze(-1).unwrap().shape(), &[2, 3, 4, 1]);
    assert_eq!(x.unsqueeze(0).unwrap().shape(), &[1, 2, 3, 4]);
    assert!(x.unsqueeze(5).is_err());
    let y = ar(&[1, 3, 1]);
    assert_eq!(y.squeeze(None).unwrap().shape(), &[3]);
    assert_eq!(y.squeeze(Some(&[0])).unwrap().shape(), &[3, 1]);
    assert_eq!(y.squeeze(Some(&[1])).unwrap().shape(), &[1, 3, 1]);
}

#[test]
fn permutations() {
    let x = ar(&[2, 3]);
    let t = x.t_all().unwrap();
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(vals(&t), vec![0., 3., 1., 4., 2., 5.]);
    let y = ar(&[2, 3, 4]);
    let m = y.movedim(&[0], &[-1]).unwrap();
    assert_eq!(m.shape(), &[3, 4, 2]);
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                assert_eq!(vals(&m)[b * 8 + c * 2 + a], (a * 12 + b * 4 + c) as f32);
            }
        }
    }
    let m2 = y.movedim(&[-1], &[0]).unwrap();
    assert_eq!(m2.shape(), &[4, 2, 3]);
    assert_eq!(y.permute(&[2, 0, 1]).unwrap(), m2);
    assert_eq!(y.transpose(0, 2).unwrap().shape(), &[4, 3, 2]);
    assert!(y.t().is_err());
    assert!(y.permute(&[0, 0, 1]).is_err());
}

#[test]
fn expand_repeat_chunk() {
    let x = f(&[2, 1], &[1., 2.]);
    let e = x.expand(&[2, 3]).unwrap();
    assert_eq!(vals(&e), vec![1., 1., 1., 2., 2., 2.]);
    assert_eq!(x.expand(&[4, -1, 3]).unwrap().shape(), &[4, 2, 3]);
    assert!(x.expand(&[3, 3]).is_err());
    assert!(x.expand(&[2]).is_err());
    let r = f(&[2], &[1., 2.]).repeat(&[2, 2]).unwrap();
    assert_eq!(r.shape(), &[2, 4]);
    assert_eq!(vals(&r), vec![1., 2., 1., 2., 1., 2., 1., 2.]);
    let r = x.repeat(&[1, 3]).unwrap();
    assert_eq!(vals(&r), vec![1., 1., 1., 2., 2., 2.]);
    assert!(x.repeat(&[2]).is_err());
    assert!(x.repeat(&[-1, 2]).is_err());
    let c = ar(&[5]).chunk(2, 0).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(vals(&c[0]), vec![0., 1., 2.]);
    assert_eq!(vals(&c[1]), vec![3., 4.]);
    let c = ar(&[2, 4]).chunk(2, -1).unwrap();
    assert_eq!(vals(&c[1]), vec![2., 3., 6., 7.]);
    // torch.arange(6).chunk(4) gives 3 chunks of 2
    assert_eq!(ar(&[6]).chunk(4, 0).unwrap().len(), 3);
    assert!(ar(&[6]).chunk(0, 0).is_err());
}

#[test]
fn cat_and_stack() {
    let a = ar(&[2, 2]);
    let b = f(&[2, 1], &[9., 8.]);
    let c = Tensor::cat(&[&a, &b], -1).unwrap();
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(vals(&c), vec![0., 1., 9., 2., 3., 8.]);
    let c0 = Tensor::cat(&[&a, &a], 0).unwrap();
    assert_eq!(c0.shape(), &[4, 2]);
    assert!(Tensor::cat(&[&a, &b], 0).is_err());
    assert!(Tensor::cat(&[], 0).is_err());
    let s = Tensor::stack(&[&a, &a], 0).unwrap();
    assert_eq!(s.shape(), &[2, 2, 2]);
    let s = Tensor::stack(&[&f(&[2], &[1., 2.]), &f(&[2], &[3., 4.])], -1).unwrap();
    assert_eq!(s.shape(), &[2, 2]);
    assert_eq!(vals(&s), vec![1., 3., 2., 4.]);
    assert!(Tensor::stack(&[&a, &b], 0).is_err());
    let mixed = Tensor::cat(&[&i(&[1], &[1]), &f(&[1], &[0.5])], 0).unwrap();
    assert_eq!(mixed.dtype(), DType::F32);
}

// ----- indexing --------------------------------------------------------------------------------

fn sl(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Index {
    Index::Slice { start, stop, step }
}

#[test]
fn basic_indexing() {
    let x = ar(&[3, 4]);
    assert_eq!(
        vals(&x.index(&[Index::Int(1)]).unwrap()),
        vec![4., 5., 6., 7.]
    );
    assert_eq!(
        vals(&x.index(&[Index::Int(-1), Index::Int(-2)]).unwrap()),
        vec![10.]
    );
    assert_eq!(
        x.index(&[Index::Int(-1), Index::Int(-2)]).unwrap().shape(),
        &[] as &[usize]
    );
    assert_eq!(
        vals(&x.index(&[Index::full(), Index::Int(0)]).unwrap()),
        vec![0., 4., 8.]
    );
    assert_eq!(
        vals(
            &x.index(&[Index::Ellipsis, sl(None, None, Some(2))])
                .unwrap()
        ),
        vec![0., 2., 4., 6., 8., 10.]
    );
    assert_eq!(
        vals(
            &x.index(&[Index::Ellipsis, sl(Some(1), None, Some(2))])
                .unwrap()
        ),
        vec![1., 3., 5., 7., 9., 11.]
    );
    assert_eq!(
        vals(&x.index(&[Index::Int(0), sl(None, Some(-2), None)]).unwrap()),
        vec![0., 1.]
    );
    assert_eq!(
        vals(&x.index(&[Index::Int(0), sl(None, None, Some(-1))]).unwrap()),
        vec![3., 2., 1., 0.]
    );
    assert_eq!(
        vals(&x.index(&[Index::Int(0), sl(Some(-2), None, None)]).unwrap()),
        vec![2., 3.]
    );
    assert_eq!(
        x.index(&[Index::NewAxis, Index::Ellipsis, Index::NewAxis])
            .unwrap()
            .shape(),
        &[1, 3, 4, 1]
    );
    assert_eq!(
        x.index(&[sl(Some(5), Some(9), None)]).unwrap().shape(),
        &[0, 4]
    );
    assert!(x.index(&[Index::Int(3)]).is_err());
    assert!(
        x.index(&[Index::Int(0), Index::Int(0), Index::Int(0)])
            .is_err()
    );
    assert!(x.index(&[sl(None, None, Some(0))]).is_err());
    let y = ar(&[2, 3, 4]);
    assert_eq!(
        vals(
            &y.index(&[Index::full(), Index::full(), Index::Int(0)])
                .unwrap()
        ),
        vec![0., 4., 8., 12., 16., 20.]
    );
    assert_eq!(
        y.index(&[Index::Ellipsis, Index::Int(0)]).unwrap().shape(),
        &[2, 3]
    );
}

#[test]
fn tensor_indexing_and_put() {
    let x = ar(&[3, 4]);
    let idx = i(&[2], &[2, 0]);
    let r = x.index(&[Index::Tensor(idx.clone())]).unwrap();
    assert_eq!(vals(&r), vec![8., 9., 10., 11., 0., 1., 2., 3.]);
    let r = x.index(&[Index::full(), Index::Tensor(idx)]).unwrap();
    assert_eq!(vals(&r), vec![2., 0., 6., 4., 10., 8.]);
    let mask = x.compare(CmpOp::Gt, &Tensor::scalar_f32(8.5)).unwrap();
    let r = x.index(&[Index::Tensor(mask.clone())]).unwrap();
    assert_eq!(vals(&r), vec![9., 10., 11.]);
    let mut y = x.clone();
    y.index_put(&[Index::Tensor(mask)], &Tensor::scalar_f32(-1.0))
        .unwrap();
    assert_eq!(&vals(&y)[8..], &[8., -1., -1., -1.]);
    let mut z = x.clone();
    z.index_put(&[Index::Int(0)], &f(&[4], &[9., 9., 9., 9.]))
        .unwrap();
    assert_eq!(&vals(&z)[..5], &[9., 9., 9., 9., 4.]);
    z.index_put(&[Index::full(), Index::Int(-1)], &Tensor::scalar_i64(7))
        .unwrap();
    assert_eq!(vals(&z)[3], 7.);
    assert_eq!(vals(&z)[11], 7.);
    assert!(z.index_put(&[Index::Int(0)], &ar(&[3])).is_err());
}

#[test]
fn scatter_gather() {
    let z = Tensor::zeros(&[2, 4], DType::F32).unwrap();
    let idx = i(&[2, 2], &[1, 3, 0, 2]);
    let s = z.scatter_value(-1, &idx, 1.0).unwrap();
    assert_eq!(vals(&s), vec![0., 1., 0., 1., 1., 0., 1., 0.]);
    let src = f(&[2, 2], &[5., 6., 7., 8.]);
    let s = z.scatter(1, &idx, &src).unwrap();
    assert_eq!(vals(&s), vec![0., 5., 0., 6., 7., 0., 8., 0.]);
    let s0 = Tensor::zeros(&[3, 2], DType::F32)
        .unwrap()
        .scatter(0, &i(&[1, 2], &[2, 0]), &src)
        .unwrap();
    assert_eq!(vals(&s0), vec![0., 6., 0., 0., 5., 0.]);
    let mut m = z.clone();
    m.scatter_(1, &idx, &src).unwrap();
    assert_eq!(m, z.scatter(1, &idx, &src).unwrap());
    assert!(z.scatter_value(1, &i(&[2, 1], &[4, 0]), 1.0).is_err());
    assert!(z.scatter_value(1, &i(&[2], &[0, 1]), 1.0).is_err());
    let g = ar(&[2, 4]).gather(1, &idx).unwrap();
    assert_eq!(vals(&g), vec![1., 3., 4., 6.]);
    let sa = z.scatter_add(1, &i(&[1, 2], &[1, 1]), &src).unwrap();
    assert_eq!(vals(&sa), vec![0., 11., 0., 0., 0., 0., 0., 0.]);
}

#[test]
fn layer_norm_matches_formula() {
    let x = f(&[2, 3], &[1., 2., 3., 2., 4., 8.]);
    let w = f(&[3], &[1., 2., 0.5]);
    let b = f(&[3], &[0., 1., -1.]);
    let (out, mean, rstd) = x.native_layer_norm(&[3], Some(&w), Some(&b), 1e-5).unwrap();
    assert_eq!(mean.shape(), &[2, 1]);
    assert_eq!(rstd.shape(), &[2, 1]);
    let m1 = 14.0 / 3.0;
    let v1: f64 = [2.0f64, 4.0, 8.0]
        .iter()
        .map(|v| (v - m1) * (v - m1))
        .sum::<f64>()
        / 3.0;
    let r1 = 1.0 / (v1 + 1e-5).sqrt();
    assert!(close(&vals(&mean), &[2.0, m1 as f32], 1e-7));
    assert!(close(
        &vals(&rstd),
        &[(1.0 / (2.0f64 / 3.0 + 1e-5).sqrt()) as f32, r1 as f32],
        1e-6
    ));
    let want2 = ((8.0 - m1) * r1 * 0.5 - 1.0) as f32;
    assert!(close(&vals(&out)[5..], &[want2], 1e-6));
    let (o2, _, _) = x.native_layer_norm(&[2, 3], None, None, 1e-5).unwrap();
    assert_eq!(o2.shape(), &[2, 3]);
    assert!(x.native_layer_norm(&[2], None, None, 1e-5).is_err());
    assert!(
        x.native_layer_norm(&[3], Some(&ar(&[2])), None, 1e-5)
            .is_err()
    );
}

#[test]
fn arange_and_full() {
    assert_eq!(
        Tensor::arange(0.0, 5.0, 1.0, DType::I64).unwrap().as_i64(),
        Some(&[0, 1, 2, 3, 4][..])
    );
    assert_eq!(
        vals(&Tensor::arange(0.0, 1.0, 0.25, DType::F32).unwrap()),
        vec![0., 0.25, 0.5, 0.75]
    );
    assert_eq!(
        Tensor::arange(5.0, 0.0, -2.0, DType::I64).unwrap().as_i64(),
        Some(&[5, 3, 1][..])
    );
    assert!(Tensor::arange(0.0, 5.0, 0.0, DType::I64).is_err());
    assert!(Tensor::arange(0.0, 5.0, -1.0, DType::I64).is_err());
    let z = ar(&[2, 2]).zeros_like(None).unwrap();
    assert_eq!(vals(&z), vec![0.; 4]);
    assert_eq!(
        i(&[1], &[3]).zeros_like(Some(DType::F32)).unwrap().dtype(),
        DType::F32
    );
    assert_eq!(Tensor::ones(&[0, 3], DType::F32).unwrap().numel(), 0);
}

// ----- property tests --------------------------------------------------------------------------

fn tensor_of(shape: Vec<usize>) -> impl Strategy<Value = Tensor> {
    let n: usize = shape.iter().product();
    prop::collection::vec(-4i32..5, n).prop_map(move |v| {
        Tensor::from_f32(
            shape.clone(),
            v.into_iter().map(|x| x as f32 * 0.5).collect(),
        )
        .unwrap()
    })
}

/// A random einsum: 1–3 operands over labels a..e with sizes 1..4, random output subset.
fn einsum_case() -> impl Strategy<Value = (String, Vec<Tensor>)> {
    (
        prop::collection::vec(1usize..4, 5),
        prop::collection::vec(prop::collection::vec(0usize..5, 0..4), 1..4),
        prop::collection::vec(any::<bool>(), 5),
    )
        .prop_flat_map(|(sizes, ops, keep)| {
            let used: Vec<usize> = (0..5)
                .filter(|l| ops.iter().any(|o| o.contains(l)))
                .collect();
            let out: Vec<usize> = used.iter().copied().filter(|&l| keep[l]).collect();
            let label = |l: usize| (b'a' + l as u8) as char;
            let eq = format!(
                "{}->{}",
                ops.iter()
                    .map(|o| o.iter().map(|&l| label(l)).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(","),
                out.iter().map(|&l| label(l)).collect::<String>()
            );
            let tensors: Vec<_> = ops
                .iter()
                .map(|o| tensor_of(o.iter().map(|&l| sizes[l]).collect()))
                .collect();
            (Just(eq), tensors)
        })
}

/// The definition of einsum as explicit nested loops over every label.
fn naive_einsum(eq: &str, ops: &[Tensor]) -> Vec<f32> {
    let (lhs, rhs) = eq.split_once("->").unwrap();
    let specs: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
    let out: Vec<char> = rhs.chars().collect();
    let mut labels: Vec<char> = specs.iter().flatten().copied().collect();
    labels.sort();
    labels.dedup();
    let size = |c: char| {
        for (s, t) in specs.iter().zip(ops) {
            if let Some(p) = s.iter().position(|&x| x == c) {
                return t.shape()[p];
            }
        }
        1
    };
    let sizes: Vec<usize> = labels.iter().map(|&c| size(c)).collect();
    let out_n: usize = out.iter().map(|&c| size(c)).product();
    let mut acc = vec![0f64; out_n];
    let total: usize = sizes.iter().product();
    for flat in 0..total {
        let mut rem = flat;
        let mut val = std::collections::BTreeMap::new();
        for (k, &c) in labels.iter().enumerate().rev() {
            val.insert(c, rem % sizes[k]);
            rem /= sizes[k];
        }
        let mut p = 1f64;
        for (s, t) in specs.iter().zip(ops) {
            let mut off = 0;
            for (d, c) in s.iter().enumerate() {
                off = off * t.shape()[d] + val[c];
            }
            p *= f64::from(t.as_f32().unwrap()[off]);
        }
        let mut o = 0;
        for &c in &out {
            o = o * size(c) + val[&c];
        }
        acc[o] += p;
    }
    acc.into_iter().map(|x| x as f32).collect()
}

fn shapes_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 0..4).prop_flat_map(|dims| {
        let a: Vec<usize> = dims
            .iter()
            .map(|&(s, x, _)| if x { 1 } else { s })
            .collect();
        let b: Vec<usize> = dims
            .iter()
            .map(|&(s, _, y)| if y { 1 } else { s })
            .collect();
        (0..=b.len()).prop_map(move |drop| (a.clone(), b[drop..].to_vec()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn einsum_equals_explicit_loops((eq, ops) in einsum_case()) {
        let refs: Vec<&Tensor> = ops.iter().collect();
        let got = Tensor::einsum(&eq, &refs).unwrap();
        prop_assert_eq!(got.to_f32_vec(), naive_einsum(&eq, &ops), "{}", eq);
    }

    #[test]
    fn matmul_equals_einsum(m in 1usize..4, k in 1usize..4, n in 1usize..4, b in 1usize..3, seed in any::<u64>()) {
        let mk = |shape: &[usize], s: u64| {
            let len: usize = shape.iter().product();
            Tensor::from_f32(shape.to_vec(), (0..len).map(|i| ((i as u64 * 7 + s) % 11) as f32 - 5.0).collect()).unwrap()
        };
        let a = mk(&[b, m, k], seed);
        let c = mk(&[b, k, n], seed / 3);
        prop_assert_eq!(a.matmul(&c).unwrap(), Tensor::einsum("bmk,bkn->bmn", &[&a, &c]).unwrap());
        let v = mk(&[k], seed / 5);
        prop_assert_eq!(a.matmul(&v).unwrap(), Tensor::einsum("bmk,k->bm", &[&a, &v]).unwrap());
        prop_assert_eq!(v.matmul(&c).unwrap(), Tensor::einsum("k,bkn->bn", &[&v, &c]).unwrap());
    }

    #[test]
    fn broadcasting_is_commutative(((sa, sb), seed) in (shapes_pair(), any::<u32>())) {
        let mk = |shape: &[usize], s: u32| {
            let len: usize = shape.iter().product();
            Tensor::from_f32(shape.to_vec(), (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 17) as f32).collect()).unwrap()
        };
        let a = mk(&sa, seed);
        let b = mk(&sb, seed / 7);
        prop_assert_eq!(a.add(&b).unwrap(), b.add(&a).unwrap());
        prop_assert_eq!(a.mul(&b).unwrap(), b.mul(&a).unwrap());
        prop_assert_eq!(a.maximum(&b).unwrap(), b.maximum(&a).unwrap());
        // And equals explicit broadcasting followed by a same-shape op.
        let shape = a.add(&b).unwrap().shape().to_vec();
        let ea = a.broadcast_to(&shape).unwrap();
        let eb = b.broadcast_to(&shape).unwrap();
        prop_assert_eq!(ea.sub(&eb).unwrap(), a.sub(&b).unwrap());
    }

    #[test]
    fn sum_over_dim_equals_loop(t in prop::collection::vec(1usize..4, 1..4).prop_flat_map(tensor_of), d in 0usize..3) {
        let d = d % t.ndim();
        let s = t.sum(Some(&[d as i64]), false).unwrap();
        let sh = t.shape().to_vec();
        let outer: usize = sh[..d].iter().product();
        let inner: usize = sh[d + 1..].iter().product();
        let x = t.as_f32().unwrap();
        let mut want = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = 0f64;
                for j in 0..sh[d] {
                    acc += f64::from(x[o * sh[d] * inner + j * inner + i]);
                }
                want.push(acc as f32);
            }
        }
        prop_assert_eq!(s.to_f32_vec(), want);
        let mean = t.mean(Some(&[d as i64]), true).unwrap();
        prop_assert_eq!(mean.ndim(), t.ndim());
    }

    #[test]
    fn softmax_rows_sum_to_one(t in prop::collection::vec(1usize..5, 1..4).prop_flat_map(tensor_of)) {
        let s = t.softmax(-1).unwrap();
        let sums = s.sum(Some(&[-1]), false).unwrap();
        for v in sums.to_f32_vec() {
            prop_assert!((v - 1.0).abs() < 1e-6);
        }
        prop_assert!(s.to_f32_vec().iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn topk_matches_stable_sort(v in prop::collection::vec(-3i32..4, 1..12), k in 0usize..12, largest in any::<bool>()) {
        let k = k % (v.len() + 1);
        let t = Tensor::from_f32(vec![v.len()], v.iter().map(|&x| x as f32).collect()).unwrap();
        let (vals, idx) = t.topk(k as i64, 0, largest).unwrap();
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| if largest { v[b].cmp(&v[a]) } else { v[a].cmp(&v[b]) });
        let want_idx: Vec<i64> = order[..k].iter().map(|&i| i as i64).collect();
        prop_assert_eq!(idx.as_i64().unwrap(), &want_idx[..]);
        let want_vals: Vec<f32> = order[..k].iter().map(|&i| v[i] as f32).collect();
        prop_assert_eq!(vals.to_f32_vec(), want_vals);
    }

    #[test]
    fn slicing_matches_python_lists(
        shape in prop::collection::vec(1usize..5, 1..4),
        sl in prop::collection::vec((prop::option::of(-6i64..6), prop::option::of(-6i64..6), prop::option::of(prop_oneof![-3i64..0, 1i64..4])), 1..4),
    ) {
        let n: usize = shape.iter().product();
        let t = ar(&shape);
        let k = sl.len().min(shape.len());
        let items: Vec<Index> = sl[..k].iter().map(|&(a, b, c)| Index::Slice { start: a, stop: b, step: c }).collect();
        let got = t.index(&items).unwrap();
        // Python's slice rule, applied dim by dim to index lists.
        let py = |size: usize, (a, b, c): (Option<i64>, Option<i64>, Option<i64>)| -> Vec<usize> {
            let n = size as i64;
            let step = c.unwrap_or(1);
            let norm = |v: i64| if v < 0 { v + n } else { v };
            let mut out = Vec::new();
            if step > 0 {
                let mut i = a.map_or(0, |v| norm(v).clamp(0, n));
                let stop = b.map_or(n, |v| norm(v).clamp(0, n));
                while i < stop { out.push(i as usize); i += step; }
            } else {
                let mut i = a.map_or(n - 1, |v| norm(v).clamp(-1, n - 1));
                let stop = b.map_or(-1, |v| norm(v).clamp(-1, n - 1));
                while i > stop { out.push(i as usize); i += step; }
            }
            out
        };
        let per_dim: Vec<Vec<usize>> = (0..shape.len())
            .map(|d| if d < k { py(shape[d], sl[d]) } else { (0..shape[d]).collect() })
            .collect();
        let want_shape: Vec<usize> = per_dim.iter().map(Vec::len).collect();
        prop_assert_eq!(got.shape(), &want_shape[..]);
        let strides = t.strides();
        let mut want = Vec::new();
        let total: usize = want_shape.iter().product();
        for flat in 0..total {
            let mut rem = flat;
            let mut off = 0;
            for d in (0..shape.len()).rev() {
                off += per_dim[d][rem % want_shape[d]] * strides[d];
                rem /= want_shape[d];
            }
            prop_assert!(off < n);
            want.push(off as f32);
        }
        prop_assert_eq!(got.to_f32_vec(), want);
    }

    #[test]
    fn movedim_roundtrip(t in prop::collection::vec(1usize..4, 1..4).prop_flat_map(tensor_of), a in 0i64..3, b in 0i64..3) {
        let n = t.ndim() as i64;
        let (a, b) = (a % n, b % n);
        let m = t.movedim(&[a], &[b]).unwrap();
        prop_assert_eq!(m.movedim(&[b], &[a]).unwrap(), t);
    }

    #[test]
    fn absurd_inputs_never_panic(
        shape in prop::collection::vec(0usize..6, 0..5),
        dim in -6i64..6,
        k in prop_oneof![-3i64..5, Just(1_000_000_000_000i64), Just(i64::MIN), Just(i64::MAX)],
    ) {
        let t = Tensor::ones(&shape, DType::F32);
        if let Ok(t) = t {
            let _ = t.sum(Some(&[dim]), false);
            let _ = t.topk(k, dim, true);
            let _ = t.repeat(&[k, 1, 1, 1, 1]);
            let _ = t.expand(&[k; 5]);
            let _ = t.chunk(k, dim);
            let _ = t.unsqueeze(dim);
            let _ = t.reshape(&[k, -1]);
            let _ = t.index(&[Index::Int(k), Index::Slice { start: Some(k.saturating_neg()), stop: Some(k), step: Some(-1) }]);
            let _ = t.softmax(dim);
            let _ = t.cumprod(dim);
            let _ = t.var(Some(&[dim]), true, false);
            let _ = t.movedim(&[dim], &[0]);
            let _ = t.flatten(dim, -1);
            let _ = Tensor::arange(0.0, k as f64, 1.0, DType::I64);
            let idx = Tensor::full(&shape, Scalar::I64(k), DType::I64).unwrap();
            let _ = t.scatter_value(dim, &idx, 1.0);
            let _ = t.gather(dim, &idx);
            let _ = t.scatter_add(dim, &idx, &t);
            let _ = t.index(&[Index::Tensor(idx.clone())]);
            let _ = t.index(&[Index::Ellipsis, Index::Tensor(t.compare(CmpOp::Gt, &Tensor::scalar_f32(0.5)).unwrap())]);
            let mut u = t.clone();
            let _ = u.index_put(&[Index::Int(k)], &Tensor::scalar_f32(2.0));
            let _ = t.matmul(&t);
            let _ = t.matmul(&t.t_all().unwrap());
            let _ = Tensor::einsum("...i,...j->...ij", &[&t, &t]);
            let _ = Tensor::einsum("ii", &[&t]);
            let _ = Tensor::cat(&[&t, &t], dim);
            let _ = Tensor::stack(&[&t, &t], dim);
            let _ = t.split(k, dim);
            let _ = t.narrow(0, k.max(0) as usize, 1);
            let _ = t.native_layer_norm(&shape[shape.len().saturating_sub(1)..], None, None, 1e-5);
            let _ = t.max_dim(dim, false, true);
            let _ = t.argmax(None, false);
            let _ = t.amax(None, false);
            let _ = t.squeeze(Some(&[dim]));
            let _ = t.transpose(dim, 0);
            let _ = t.expand(&[k, -1]);
            let _ = t.index_select(dim, &Tensor::from_i64(vec![1], vec![k]).unwrap());
        }
    }
}
