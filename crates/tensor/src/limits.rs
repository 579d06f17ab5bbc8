//! Size and work limits, checked before allocating.
//!
//! The limits are per thread so that concurrent verifications (and parallel tests) can use
//! different budgets without locking. The executor sets them for the duration of a run with
//! [`LimitGuard`]; the defaults keep an unconfigured caller safe (256 MiB of f32 per tensor).

use std::cell::Cell;

use crate::{Result, TensorError, fmt_shape};

/// Default maximum number of elements of one tensor.
pub const DEFAULT_MAX_NUMEL: usize = 1 << 26;
/// Default maximum number of multiply-adds (or comparisons) of one contraction or sort.
pub const DEFAULT_MAX_WORK: u64 = 1 << 32;

thread_local! {
    static MAX_NUMEL: Cell<usize> = const { Cell::new(DEFAULT_MAX_NUMEL) };
    static MAX_WORK: Cell<u64> = const { Cell::new(DEFAULT_MAX_WORK) };
}

pub fn max_numel() -> usize {
    MAX_NUMEL.with(Cell::get)
}

pub fn max_work() -> u64 {
    MAX_WORK.with(Cell::get)
}

/// Sets this thread's limits until the guard is dropped (then the previous ones return).
#[derive(Debug)]
pub struct LimitGuard {
    prev_numel: usize,
    prev_work: u64,
}

impl LimitGuard {
    pub fn new(max_numel: usize, max_work: u64) -> LimitGuard {
        let prev_numel = MAX_NUMEL.with(|c| c.replace(max_numel));
        let prev_work = MAX_WORK.with(|c| c.replace(max_work));
        LimitGuard {
            prev_numel,
            prev_work,
        }
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        MAX_NUMEL.with(|c| c.set(self.prev_numel));
        MAX_WORK.with(|c| c.set(self.prev_work));
    }
}

/// The number of elements of `shape`, or a `TooLarge` error if it overflows or exceeds the
/// limit.
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    let limit = max_numel();
    // Zero dims count as 1 here: an empty tensor whose other dims are huge is refused too,
    // because loops over its outer dims (and products of its dims) would still be huge.
    let mut n: usize = 1;
    let mut overflow = false;
    for &d in shape {
        match n.checked_mul(d.max(1)) {
            Some(m) => n = m,
            None => overflow = true,
        }
    }
    if overflow || n > limit {
        return Err(TensorError::too_large(format!(
            "a tensor of shape {} would exceed the limit of {limit} elements",
            fmt_shape(shape)
        )));
    }
    Ok(if shape.contains(&0) { 0 } else { n })
}

/// Checks an operation count (product of loop sizes) against the work limit.
pub fn check_work(what: &str, sizes: &[usize]) -> Result<()> {
    let limit = max_work();
    let mut w: u64 = 1;
    for &s in sizes {
        w = w.saturating_mul(s as u64);
    }
    if sizes.contains(&0) {
        return Ok(());
    }
    if w > limit {
        return Err(TensorError::too_large(format!(
            "{what} would take {w} steps (limit {limit})"
        )));
    }
    Ok(())
}
