//! `stepforge-jit`: the native backend (DESIGN §13). Lowers an element function of the
//! element-function IR, for concrete shapes, to one Cranelift function that runs over many
//! stream elements (lanes) per call: a Map's whole stream, or one step of all independent
//! Accum/Scan folds. Fused elementwise loops on 4-lane f32 vectors, reductions (sums in f64),
//! broadcasting, constant indexing and slicing as views, `cat`/`stack`/`chunk`, `arange` as
//! constant tables, `topk` and the `scatter` of its indices, products through
//! `matrixmultiply`, transcendental functions and topk ranking through Rust helpers that
//! compute exactly as the interpreter does.
//!
//! Owns: the analysis (`tir`), code generation (`codegen`), the helpers, and the one module
//! with `unsafe` (`runtime`). Must not: depend on the checker, the executor or the AST; print;
//! decide *when* to compile (the executor's tiering does). A body outside the supported subset
//! is [`Unsupported`] with a reason, never a panic; the caller falls back to the interpreter.

mod codegen;
mod helpers;
mod runtime;
pub mod tir;

use stepforge_ir::func::Body;

pub use runtime::{In, Kernel, Out, RunError};
pub use tir::{Act, Global, Spec, Un, Unsupported};

/// A compiled function and what it reads.
#[derive(Debug)]
pub struct Compiled {
    pub kernel: Kernel,
    /// The `input_data` tensors to pass to [`Kernel::run`], in order.
    pub data: Vec<String>,
    /// Estimated FLOPs per lane (builtin table costs).
    pub flops_per_lane: u64,
    /// Nodes (fused or not) of the analysed function, for reports.
    pub nodes: usize,
}

/// Analyses and compiles `body` for the shapes in `spec`. `verify` runs Cranelift's IR
/// verifier (tests turn it on).
pub fn compile(body: &Body, spec: &Spec, verify: bool) -> Result<Compiled, Unsupported> {
    let g = tir::analyse(body, spec)?;
    let n_state = spec.state.as_ref().map_or(0, Vec::len);
    let c = codegen::compile(&g, spec.inputs.len(), n_state, verify)?;
    let lens = |v: &[Vec<usize>]| v.iter().map(|s| tir::numel(s)).collect::<Vec<_>>();
    let kernel = Kernel::new(
        c.module,
        c.func,
        c.layout,
        [
            lens(&spec.inputs),
            spec.state.as_deref().map(lens).unwrap_or_default(),
            lens(&spec.outputs),
            g.data.iter().map(|(_, s)| tir::numel(s)).collect(),
        ],
        g.tables,
    );
    Ok(Compiled {
        kernel,
        data: g.data.iter().map(|(n, _)| n.clone()).collect(),
        flops_per_lane: g.flops_per_lane,
        nodes: g.nodes.len(),
    })
}
