//! Size, work and time limits, checked before allocating and inside long loops.
//!
//! The limits are per thread so that concurrent verifications (and parallel tests) can use
//! different budgets without locking. The executor sets them for the duration of a run with
//! [`LimitGuard`]; the defaults keep an unconfigured caller safe (256 MiB of f32 per tensor).
//!
//! Time: a caller that has a wall-time budget sets a per-thread deadline with
//! [`DeadlineGuard`]. Long builtins (contractions, sorts, concatenation, large allocations)
//! charge their work to a [`Meter`], which reads the clock once every [`CHECK_EVERY_UNITS`]
//! units, so one call can overshoot the deadline by well under a millisecond instead of by the
//! whole call (a 1600² matmul or a 16-operand einsum took 16–130 s). Running out of time is a
//! [`crate::ErrorKind::TooLarge`] error whose message says so (the kind callers already map to
//! "limit exceeded").

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::{Result, TensorError, fmt_shape};

/// Default maximum number of elements of one tensor.
pub const DEFAULT_MAX_NUMEL: usize = 1 << 26;
/// Default maximum number of multiply-adds (or comparisons) of one contraction or sort.
pub const DEFAULT_MAX_WORK: u64 = 1 << 32;

thread_local! {
    static MAX_NUMEL: Cell<usize> = const { Cell::new(DEFAULT_MAX_NUMEL) };
    static MAX_WORK: Cell<u64> = const { Cell::new(DEFAULT_MAX_WORK) };
    static DEADLINE: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Work units (multiply-adds, comparisons, copied elements) between two looks at the clock:
/// about a quarter of a millisecond of work, so the clock costs nothing measurable.
pub const CHECK_EVERY_UNITS: u64 = 1 << 18;

/// Allocations of at least this many elements look at the clock first (smaller ones are too
/// cheap for a deadline to matter).
const CHECK_NUMEL_FROM: usize = 1 << 16;

/// Sets this thread's deadline until the guard is dropped (then the previous one returns).
#[derive(Debug)]
pub struct DeadlineGuard {
    prev: Option<(Instant, Duration)>,
}

impl DeadlineGuard {
    /// A deadline `limit` from now; `limit` is what error messages quote.
    pub fn after(limit: Duration) -> DeadlineGuard {
        let now = Instant::now();
        DeadlineGuard::at(now.checked_add(limit).unwrap_or(now), limit)
    }

    /// A deadline at `deadline` (for a caller that started its clock earlier).
    pub fn at(deadline: Instant, limit: Duration) -> DeadlineGuard {
        let prev = DEADLINE.with(|c| c.replace(Some((deadline, limit))));
        DeadlineGuard { prev }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|c| c.set(self.prev));
    }
}

/// This thread's deadline, if one is set.
pub fn deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get).map(|(d, _)| d)
}

/// Reads the clock: a `TooLarge` error naming `what` if this thread's deadline has passed.
pub fn check_deadline(what: &str) -> Result<()> {
    match DEADLINE.with(Cell::get) {
        Some((d, limit)) if Instant::now() > d => Err(TensorError::too_large(format!(
            "{what} stopped: the time limit of {} ms ran out",
            limit.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// `(0..n).map(f).collect()`, built in chunks with a look at the deadline between chunks, so
/// a single 6e7-element loop (slow in a debug build) stops when the time is up.
pub fn collect_metered<T>(what: &str, n: usize, mut f: impl FnMut(usize) -> T) -> Result<Vec<T>> {
    let chunk = CHECK_EVERY_UNITS as usize;
    if n <= chunk {
        return Ok((0..n).map(f).collect());
    }
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        check_deadline(what)?;
        let end = (i + chunk).min(n);
        out.extend((i..end).map(&mut f));
        i = end;
    }
    Ok(out)
}

/// Charges the work of one long operation and looks at the deadline every
/// [`CHECK_EVERY_UNITS`] units.
#[derive(Debug)]
pub struct Meter {
    what: &'static str,
    pending: u64,
}

impl Meter {
    /// A meter for `what`; reads the clock once up front so a call that starts after the
    /// deadline does no work at all.
    pub fn new(what: &'static str) -> Result<Meter> {
        check_deadline(what)?;
        Ok(Meter { what, pending: 0 })
    }

    /// Counts `units` of work; an error once the deadline has passed.
    #[inline]
    pub fn charge(&mut self, units: u64) -> Result<()> {
        self.pending = self.pending.saturating_add(units);
        if self.pending >= CHECK_EVERY_UNITS {
            self.pending = 0;
            check_deadline(self.what)?;
        }
        Ok(())
    }
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
    if n >= CHECK_NUMEL_FROM {
        // Filling a large tensor is work too: a loop of large allocations stops at the deadline.
        check_deadline("allocating a tensor")?;
    }
    Ok(if shape.contains(&0) { 0 } else { n })
}

/// Checks that splitting a tensor of `numel` elements into `pieces` tensors stays within the
/// element limit, counting each piece's bookkeeping as [`PIECE_OVERHEAD`] elements:
/// `torch.ones(60000000).split(1)` would otherwise build 6e7 tensors (gigabytes of headers).
pub fn check_pieces(what: &str, pieces: usize, numel: usize) -> Result<()> {
    let limit = max_numel();
    let cost = pieces.saturating_mul(PIECE_OVERHEAD).saturating_add(numel);
    if cost > limit {
        return Err(TensorError::too_large(format!(
            "{what} into {pieces} tensors would exceed the limit of {limit} elements \
             (each tensor counts as {PIECE_OVERHEAD} elements of overhead)"
        )));
    }
    Ok(())
}

/// What one tensor object costs beyond its data, in elements (shape, storage header and
/// allocator overhead are about 100 bytes).
pub const PIECE_OVERHEAD: usize = 32;

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
