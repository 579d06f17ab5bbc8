//! Tie splitting for the tie-aware comparison's perturbed references (DESIGN §9).
//!
//! Input noise finds near-ties, but not ties that f32 makes *exact*: at model dims a softmax
//! over logits tens apart saturates, so several tokens get probability exactly `1.0`, and a
//! reference such as `torch.max(p, second) == p` then selects all of them while a program's
//! `topk` (correctly) picks `k` by index. No input noise of tolerance size moves a saturated
//! value, so the reference looks well-conditioned there and a correct program fails.
//!
//! While a [`TieSplitGuard`] is alive on a thread, every float tensor that an *arithmetic*
//! builtin or operator computes (not one that selects, copies or compares values) has its
//! exact ties split: the members of each group of equal values are moved apart by a few ulps
//! in index order, lower indices up ([`TieOrder::LowFirst`], the order `topk` keeps) or down
//! ([`TieOrder::HighFirst`]). Values that are not tied are untouched, and no value moves more
//! than [`MAX_ULPS`] ulps, far inside any tolerance, so a draw differs from the reference only
//! where an exact tie decided something.

use std::cell::Cell;

use stepforge_ir::builtin::Builtin;
use stepforge_tensor::{DType, Tensor};

/// Which member of a tie group ends up largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieOrder {
    /// The lowest index is largest (what a stable `topk` picks first).
    LowFirst,
    /// The highest index is largest.
    HighFirst,
}

/// The most ulps one value is moved (members beyond this rank of a group stay tied with it).
pub const MAX_ULPS: usize = 16;

thread_local! {
    static ORDER: Cell<Option<TieOrder>> = const { Cell::new(None) };
    static ROUNDING: Cell<Option<(u64, f64)>> = const { Cell::new(None) };
}

/// Rounding noise on this thread until dropped: every float tensor an arithmetic builtin
/// computes is multiplied elementwise by `1 + rel·u`, `u` uniform in [-1, 1) from a generator
/// seeded by `seed` and the op's position in the evaluation (deterministic). With `rel` a few
/// f32 epsilons this models the same math evaluated in another order; the comparison widens
/// each element's tolerance by how far these draws move the reference
/// (`compare::compare_rounding_aware`).
#[derive(Debug)]
pub struct RoundingNoiseGuard {
    prev: Option<(u64, f64)>,
}

impl RoundingNoiseGuard {
    pub fn new(seed: u64, rel: f64) -> RoundingNoiseGuard {
        RoundingNoiseGuard {
            prev: ROUNDING.with(|c| c.replace(Some((seed, rel)))),
        }
    }
}

impl Drop for RoundingNoiseGuard {
    fn drop(&mut self) {
        ROUNDING.with(|c| c.set(self.prev));
    }
}

pub(crate) fn rounding() -> Option<(u64, f64)> {
    ROUNDING.with(Cell::get)
}

/// `t` with rounding noise (see [`RoundingNoiseGuard`]); `op` numbers the op.
pub(crate) fn round_noise(t: &Tensor, seed: u64, rel: f64, op: u64) -> Option<Tensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let mut v = t.as_f32()?.to_vec();
    crate::compare::perturb_f32(
        &mut v,
        rel,
        seed ^ op.wrapping_mul(0x9E37_79B9_7F4A_7C15) << 1,
    );
    Tensor::from_f32(t.shape().to_vec(), v).ok()
}

/// Splits ties on this thread until dropped (then the previous setting returns).
#[derive(Debug)]
pub struct TieSplitGuard {
    prev: Option<TieOrder>,
}

impl TieSplitGuard {
    pub fn new(order: TieOrder) -> TieSplitGuard {
        TieSplitGuard {
            prev: ORDER.with(|c| c.replace(Some(order))),
        }
    }
}

impl Drop for TieSplitGuard {
    fn drop(&mut self) {
        ORDER.with(|c| c.set(self.prev));
    }
}

pub(crate) fn current() -> Option<TieOrder> {
    ORDER.with(Cell::get)
}

/// Whether `b` computes new values (its ties are rounding artefacts worth splitting) rather
/// than selecting, copying, comparing or rounding existing ones.
pub(crate) fn computes(b: Builtin) -> bool {
    use Builtin::*;
    matches!(
        b,
        Exp | Log
            | Sqrt
            | Rsqrt
            | Sin
            | Cos
            | Tanh
            | Sigmoid
            | Erf
            | Silu
            | Gelu
            | Reciprocal
            | Pow
            | Add
            | Sub
            | Mul
            | Div
            | Sum
            | Mean
            | Var
            | Std
            | Prod
            | Softmax
            | LogSoftmax
            | Cumsum
            | Cumprod
            | Norm
            | Matmul
            | Mm
            | Bmm
            | Einsum
            | Outer
            | Dot
            | NativeLayerNorm
            | LayerNorm
    )
}

/// `t` with its exact ties split in `order` (a copy only when some value is tied).
pub(crate) fn split(t: &Tensor, order: TieOrder) -> Option<Tensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let v = t.as_f32()?;
    if v.len() < 2 {
        return None;
    }
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    // Equal values end up adjacent, in index order within a group.
    idx.sort_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize]).then(a.cmp(&b)));
    let mut out: Option<Vec<f32>> = None;
    let mut start = 0;
    while start < idx.len() {
        let x = v[idx[start] as usize];
        let mut end = start + 1;
        while end < idx.len() && v[idx[end] as usize] == x {
            end += 1;
        }
        if end - start > 1 && x.is_finite() {
            let o = out.get_or_insert_with(|| v.to_vec());
            for (rank, &i) in idx[start..end].iter().enumerate() {
                let k = rank.min(MAX_ULPS);
                let mut y = x;
                for _ in 0..k {
                    y = match order {
                        TieOrder::LowFirst => y.next_down(),
                        TieOrder::HighFirst => y.next_up(),
                    };
                }
                o[i as usize] = y;
            }
        }
        start = end;
    }
    let out = out?;
    Tensor::from_f32(t.shape().to_vec(), out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_split_in_index_order_and_nothing_else_moves() {
        let t = Tensor::from_f32(vec![5], vec![1.0, 0.5, 1.0, 1.0, 0.25]).unwrap();
        let low = split(&t, TieOrder::LowFirst).unwrap();
        let v = low.as_f32().unwrap();
        assert!(v[0] > v[2] && v[2] > v[3], "{v:?}");
        assert_eq!((v[0], v[1], v[4]), (1.0, 0.5, 0.25));
        let high = split(&t, TieOrder::HighFirst).unwrap();
        let v = high.as_f32().unwrap();
        assert!(v[0] < v[2] && v[2] < v[3], "{v:?}");
        assert!((v[3] - 1.0).abs() < 1e-6);
        // No ties, no copy.
        let u = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        assert!(split(&u, TieOrder::LowFirst).is_none());
    }
}
