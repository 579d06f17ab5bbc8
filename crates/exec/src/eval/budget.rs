//! The one budget of an evaluation: steps ("fuel", E0702), memory (E0701) and the wall-clock
//! deadline (E0705).
//!
//! Memory is counted in one unit for everything an evaluation builds: tensor elements (4
//! bytes each), Python list and tuple items ([`ITEM_UNITS`] each, the size of a [`Value`]),
//! and a per-object overhead ([`OBJECT_UNITS`]) for every tensor and list object. The count is
//! cumulative (what was built, not what is alive), which is an upper bound of the live memory,
//! so a call can never hold more than [`super::EvalLimits::max_produced`] units. Builders that
//! could allocate a lot (list repetition, `unbind`, iterating a tensor, `torch.tensor` of a
//! nested list) ask [`Budget::reserve`] *before* allocating; everything else is charged after
//! the fact, which is safe because each single result is bounded by the per-tensor and
//! per-list limits.
//!
//! Work that does not go through an expression node (copying list items, comparing nested
//! lists, walking a list's nesting) costs fuel too, at one step per [`WORK_PER_STEP`] units,
//! and the deadline of the tensor crate ([`limits::DeadlineGuard`]) is read every
//! [`CLOCK_EVERY`] steps, so even a call with a large fuel budget ends close to the time limit.

use stepforge_diag::Span;
use stepforge_diag::codes::Code;
use stepforge_tensor::{Tensor, limits};

use super::value::Value;
use super::{EvalError, EvalLimits};

/// Items of one Python list, tuple or string built by the evaluator.
pub(crate) const MAX_LIST: usize = 1 << 20;

/// Memory units (4 bytes) of one list item: a [`Value`] is 32 bytes.
pub(crate) const ITEM_UNITS: u64 = (std::mem::size_of::<Value>() as u64).div_ceil(4);

/// Memory units of one tensor or list object beyond its data (headers, shape, allocator).
pub(crate) const OBJECT_UNITS: u64 = limits::PIECE_OVERHEAD as u64;

/// Units of list work (an item copied, compared or visited) per step of fuel.
pub(crate) const WORK_PER_STEP: u64 = 16;

/// Steps between two looks at the clock (a step is tens of nanoseconds).
const CLOCK_EVERY: u64 = 1 << 14;

#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    fuel: u64,
    max_produced: u64,
    produced: u64,
    /// Work units not yet converted to fuel.
    pending: u64,
    /// The clock is read when `fuel` drops below this.
    clock_at: u64,
}

impl Budget {
    pub(crate) fn new(limits: &EvalLimits) -> Budget {
        Budget {
            limit: limits.fuel,
            fuel: limits.fuel,
            max_produced: limits.max_produced,
            produced: 0,
            pending: 0,
            clock_at: limits.fuel.saturating_sub(CLOCK_EVERY),
        }
    }

    /// Fuel left (a comprehension over a range fails up front when it cannot be paid).
    pub(crate) fn fuel(&self) -> u64 {
        self.fuel
    }

    /// Spends `n` steps of fuel; reads the clock every [`CLOCK_EVERY`] steps.
    #[inline]
    pub(crate) fn tick(&mut self, n: u64, span: Span) -> Result<(), EvalError> {
        if self.fuel < n {
            self.fuel = 0;
            return Err(EvalError::new(
                Code::E0702,
                format!("evaluation exceeded its budget of {} steps", self.limit),
                span,
            ));
        }
        self.fuel -= n;
        if self.fuel < self.clock_at {
            self.clock_at = self.fuel.saturating_sub(CLOCK_EVERY);
            self.clock(span)?;
        }
        Ok(())
    }

    /// Reads the clock now.
    pub(crate) fn clock(&self, span: Span) -> Result<(), EvalError> {
        limits::check_deadline("evaluation").map_err(|e| {
            EvalError::new(Code::E0705, e.message, span)
                .with_help("use smaller dimensions (--dims) or a larger time limit")
        })
    }

    /// Charges `units` of list work (items copied, compared or visited).
    #[inline]
    pub(crate) fn work(&mut self, units: u64, span: Span) -> Result<(), EvalError> {
        self.pending = self.pending.saturating_add(units);
        if self.pending >= WORK_PER_STEP {
            let steps = self.pending / WORK_PER_STEP;
            self.pending %= WORK_PER_STEP;
            self.tick(steps, span)?;
        }
        Ok(())
    }

    /// Whether `units` more memory fit, without charging them.
    pub(crate) fn check(&self, units: u64, what: &str, span: Span) -> Result<(), EvalError> {
        if self.produced.saturating_add(units) > self.max_produced {
            return Err(EvalError::new(
                Code::E0701,
                format!(
                    "{what} would take the evaluation past its memory budget of {} units \
                     ({} already used; a tensor element is 1 unit, a list item {ITEM_UNITS}, \
                     an object {OBJECT_UNITS})",
                    self.max_produced, self.produced
                ),
                span,
            )
            .with_help("build smaller lists and tensors; each call gets the same budget"));
        }
        Ok(())
    }

    /// Charges `units` of memory; an error once the budget is exceeded.
    pub(crate) fn reserve(&mut self, units: u64, what: &str, span: Span) -> Result<(), EvalError> {
        self.check(units, what, span)?;
        self.produced += units;
        Ok(())
    }

    /// Reserves a list of `n` items (before building it): the per-list cap, its memory and
    /// the work of filling it.
    pub(crate) fn list(&mut self, n: usize, span: Span) -> Result<(), EvalError> {
        if n > MAX_LIST {
            return Err(EvalError::new(
                Code::E0701,
                format!("a sequence of {n} items exceeds the limit of {MAX_LIST}"),
                span,
            ));
        }
        let n = n as u64;
        self.reserve(
            n.saturating_mul(ITEM_UNITS).saturating_add(OBJECT_UNITS),
            &format!("a list of {n} items"),
            span,
        )?;
        self.work(n, span)
    }

    /// Checks (without charging) that `n` new tensors of `each` elements fit, with a list of
    /// them: for builders of many pieces, before they allocate. The pieces are charged when
    /// the result is ([`Budget::result`]).
    pub(crate) fn check_pieces(
        &self,
        n: usize,
        each: usize,
        what: &str,
        span: Span,
    ) -> Result<(), EvalError> {
        if n > MAX_LIST {
            return Err(EvalError::new(
                Code::E0701,
                format!("{what} into {n} pieces exceeds the limit of {MAX_LIST} items"),
                span,
            ));
        }
        let per = (each as u64)
            .saturating_add(OBJECT_UNITS)
            .saturating_add(ITEM_UNITS);
        self.check(
            per.saturating_mul(n as u64),
            &format!("{what} into {n} tensors"),
            span,
        )
    }

    fn tensor(&mut self, t: &Tensor, span: Span) -> Result<(), EvalError> {
        let n = t.numel() as u64;
        self.tick(n >> 10, span)?;
        self.reserve(n + OBJECT_UNITS, "a tensor", span)
    }

    /// Charges a value that was just built. `fresh_items`: the tensors directly inside a
    /// returned list or tuple are new (a builtin's results: `split`, `topk`), so they count
    /// too; a list built by `+`, `*` or slicing shares its items and counts only them.
    pub(crate) fn result(
        &mut self,
        v: &Value,
        fresh_items: bool,
        span: Span,
    ) -> Result<(), EvalError> {
        match v {
            Value::Tensor(t) => self.tensor(t, span),
            Value::List(l) | Value::Tuple(l) => {
                let n = l.len() as u64;
                self.reserve(
                    n.saturating_mul(ITEM_UNITS).saturating_add(OBJECT_UNITS),
                    "a list",
                    span,
                )?;
                self.work(n, span)?;
                if fresh_items {
                    for x in l.iter() {
                        match x {
                            Value::Tensor(t) => self.tensor(t, span)?,
                            // `enumerate`, `zip`: a new tuple per item.
                            Value::List(p) | Value::Tuple(p) => self.reserve(
                                (p.len() as u64)
                                    .saturating_mul(ITEM_UNITS)
                                    .saturating_add(OBJECT_UNITS),
                                "a list",
                                span,
                            )?,
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
            Value::Str(s) => self.reserve(s.len() as u64 / 4 + OBJECT_UNITS, "a string", span),
            _ => Ok(()),
        }
    }
}
