//! The f64 GEMM of reference contractions, through the `gemm` crate (blocked, AVX2/FMA
//! kernels chosen at run time), single-threaded. The one module of this crate with `unsafe`:
//! `gemm`'s entry takes raw pointers and strides (it has no safe API). References evaluate
//! their contractions in f64 (DESIGN §9), and at model dims they are most of a verification:
//! the top-1 MoE reference at N=D=K=1024 is four 1024³ products. Measured end to end
//! (`verify --seeds 1`, release, CPU time, load 17, alternating): 1.00 / 1.07 s with this
//! dgemm against 1.06 / 1.27 s with `matrixmultiply`'s. `crates/tensor/benches/gemm.rs`
//! compares the two kernels alone.
//!
//! Invariants the call relies on, checked before it: `a` holds m·k, `b` k·n and `c` m·n
//! elements, all row-major and contiguous, so every index the kernel forms (row·stride + col)
//! is inside its slice; `c` is `&mut` and so aliases neither operand.

#![allow(unsafe_code)]

/// `c = a · b` (row-major `m×k` times `k×n`); `None` if a slice disagrees with its shape.
pub(crate) fn dgemm(
    a: &[f64],
    b: &[f64],
    c: &mut [f64],
    m: usize,
    k: usize,
    n: usize,
) -> Option<()> {
    if a.len() != m.checked_mul(k)?
        || b.len() != k.checked_mul(n)?
        || c.len() != m.checked_mul(n)?
    {
        return None;
    }
    if m == 0 || n == 0 {
        return Some(());
    }
    if k == 0 {
        c.fill(0.0);
        return Some(());
    }
    let rs = |x: usize| isize::try_from(x).ok();
    let (ka, nb) = (rs(k)?, rs(n)?);
    // SAFETY: the lengths are checked above, so with unit column strides and row strides k
    // (a) and n (b, c) every element the kernel reads or writes is inside its slice; `c` is a
    // unique borrow; `read_dst = false` means `c` is only written (its old values ignored).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            nb,
            false,
            a.as_ptr(),
            1,
            ka,
            b.as_ptr(),
            1,
            nb,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Some(())
}
