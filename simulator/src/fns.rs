//! The simulator's view of element functions: their FLOP cost and, in functional mode, their
//! values. The session's adapter (`stepforge_driver::EvalFns`) implements [`ElemFns`] over the
//! evaluator, with FLOPs from the function's IR ([`crate::flops`]); [`ShapeFlops`] is the
//! shape-only estimate for callers without function bodies (benches of the engine alone).

use stepforge_ir::FnId;
use stepforge_tensor::Tensor;

/// Element functions as the simulator needs them.
pub trait ElemFns {
    /// FLOPs of one application of `f` to one element whose tuple fields have the shapes
    /// `inputs` (outermost first), producing fields of the shapes `outputs`. Reducers count
    /// one `(state, input) → state` step.
    fn flops(&self, f: FnId, inputs: &[Vec<usize>], outputs: &[Vec<usize>]) -> u64;

    /// Functional mode: applies `f` to one element (tuple fields as tensors); reducers get
    /// `Some(state)`. Returns one tensor per output field.
    fn apply(
        &self,
        f: FnId,
        state: Option<&[Tensor]>,
        input: &[Tensor],
    ) -> Result<Vec<Tensor>, String>;

    /// Functional mode: a reducer's initial state for outputs of these field shapes.
    fn init(&self, f: FnId, outputs: &[Vec<usize>]) -> Result<Vec<Tensor>, String>;
}

/// The shape-only estimate: one FLOP per output scalar (at least 1 per call). It has no
/// values, so it serves timing-only runs only.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShapeFlops;

impl ElemFns for ShapeFlops {
    fn flops(&self, _f: FnId, _inputs: &[Vec<usize>], outputs: &[Vec<usize>]) -> u64 {
        let n: u64 = outputs
            .iter()
            .map(|s| s.iter().map(|&d| d as u64).product::<u64>())
            .fold(0u64, u64::saturating_add);
        n.max(1)
    }

    fn apply(&self, f: FnId, _: Option<&[Tensor]>, _: &[Tensor]) -> Result<Vec<Tensor>, String> {
        Err(format!(
            "{f}: no element-function interpreter was given (timing-only estimate)"
        ))
    }

    fn init(&self, f: FnId, _: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
        Err(format!(
            "{f}: no element-function interpreter was given (timing-only estimate)"
        ))
    }
}
