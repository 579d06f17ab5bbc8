//! GEMM crate choice (issue #11): `matrixmultiply` vs `gemm`, single thread, f32 and f64, at
//! the shapes verification meets (square 256 and 1024, a skinny matvec-like shape), plus
//! `Tensor::matmul` end to end (what the interpreter calls).
#![allow(unsafe_code, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stepforge_tensor::{Accumulation, AccumulationGuard, Tensor};

const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("sq256", 256, 256, 256),
    ("sq1024", 1024, 1024, 1024),
    ("skinny16x1024x1024", 16, 1024, 1024),
    ("row1x1024x1024", 1, 1024, 1024),
];

fn data<T: From<f32>>(n: usize, seed: u32) -> Vec<T> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            T::from((s % 2001) as f32 / 1000.0 - 1.0)
        })
        .collect()
}

fn mm_f32(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: lengths asserted above; row-major strides.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

fn mm_f64(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: as above.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

fn gemm_crate<T: 'static + Copy + From<f32>>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: lengths asserted above; row-major strides (cs = 1, rs = row length).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            T::from(0.0),
            T::from(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    for &(name, m, k, n) in SHAPES {
        let (a32, b32) = (data::<f32>(m * k, 1), data::<f32>(k * n, 2));
        let (a64, b64) = (data::<f64>(m * k, 1), data::<f64>(k * n, 2));
        let mut c32 = vec![0f32; m * n];
        let mut c64 = vec![0f64; m * n];
        g.bench_function(BenchmarkId::new("matrixmultiply_f32", name), |bch| {
            bch.iter(|| mm_f32(m, k, n, &a32, &b32, &mut c32))
        });
        g.bench_function(BenchmarkId::new("gemm_f32", name), |bch| {
            bch.iter(|| gemm_crate(m, k, n, &a32, &b32, &mut c32))
        });
        g.bench_function(BenchmarkId::new("matrixmultiply_f64", name), |bch| {
            bch.iter(|| mm_f64(m, k, n, &a64, &b64, &mut c64))
        });
        g.bench_function(BenchmarkId::new("gemm_f64", name), |bch| {
            bch.iter(|| gemm_crate(m, k, n, &a64, &b64, &mut c64))
        });
        let ta = Tensor::from_f32(vec![m, k], a32.clone()).unwrap();
        let tb = Tensor::from_f32(vec![k, n], b32.clone()).unwrap();
        g.bench_function(BenchmarkId::new("tensor_matmul", name), |bch| {
            bch.iter(|| ta.matmul(&tb).unwrap())
        });
        g.bench_function(BenchmarkId::new("tensor_matmul_f64acc", name), |bch| {
            let _acc = AccumulationGuard::new(Accumulation::F64);
            bch.iter(|| ta.matmul(&tb).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
