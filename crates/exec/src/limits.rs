//! Resource limits of one verification, and the clock that enforces the time limit.
//!
//! Every limit is checked *before* the memory it guards is allocated: sizes are computed with
//! checked arithmetic from the stream dims first. That is what lets `--dims M=100000000` come
//! back as `limit_exceeded` in microseconds instead of exhausting memory.

use std::time::{Duration, Instant};

use stepforge_diag::codes::Code;
use stepforge_diag::{Diagnostic, Span};

use crate::error::{ExecError, Origin};

/// The budget of one verification (all seeds together for the time limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Elements of any one tensor (a stream field, generated data, an evaluator temporary).
    pub max_tensor_elements: u64,
    /// Bytes of all stream data alive at once.
    pub max_live_bytes: u64,
    /// Ops in the graph.
    pub max_ops: usize,
    /// Wall time of one verification.
    pub time_limit: Duration,
    /// Element-function calls between two looks at the clock.
    pub check_every: u32,
    /// Evaluation steps of one element-function call or reference snippet.
    pub fuel: u64,
    /// When element functions run as native code (`--jit`; not a limit, but it travels with
    /// the limits to every run).
    pub jit: crate::native::JitMode,
}

impl Default for ExecLimits {
    fn default() -> ExecLimits {
        ExecLimits {
            max_tensor_elements: 1 << 26,
            max_live_bytes: 1 << 30,
            max_ops: 10_000,
            time_limit: Duration::from_secs(10),
            check_every: 16,
            fuel: 1_000_000,
            jit: crate::native::JitMode::Auto,
        }
    }
}

/// Watches the deadline without reading the clock on every element.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    deadline: Instant,
    limit: Duration,
    every: u32,
    count: u32,
}

impl Clock {
    pub fn new(limits: &ExecLimits) -> Clock {
        let start = Instant::now();
        Clock {
            start,
            deadline: start.checked_add(limits.time_limit).unwrap_or(start),
            limit: limits.time_limit,
            every: limits.check_every.max(1),
            count: 0,
        }
    }

    /// Counts one unit of work; reads the clock every `check_every` units.
    #[inline]
    pub fn tick(&mut self, span: Span) -> Result<(), ExecError> {
        self.count += 1;
        if self.count >= self.every {
            self.count = 0;
            self.check(span)?;
        }
        Ok(())
    }

    /// Reads the clock now.
    pub fn check(&self, span: Span) -> Result<(), ExecError> {
        if Instant::now() > self.deadline {
            return Err(ExecError::limit(
                Diagnostic::new(
                    Code::E0705,
                    format!(
                        "verification exceeded its time limit of {} ms",
                        self.limit.as_millis()
                    ),
                )
                .at(span)
                .help("use smaller dimensions (--dims) or a larger time limit"),
                Origin::Program,
            ));
        }
        Ok(())
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Product of `dims` with overflow reported as `None`.
pub fn checked_product(dims: &[usize]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}
