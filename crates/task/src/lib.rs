//! `stepforge-task` owns task files (DESIGN §8): the task model, the loader (YAML via
//! serde-saphyr under size budgets, every embedded code field parsed with the syntax crate's
//! grammar, every problem located by file line and column — inside embedded code too), dimension
//! values, and seeded data generation.
//!
//! Task files are untrusted: loading never panics, bounds its work (file size, YAML budgets,
//! embedded-code budget), and turns every problem into a [`Diagnostic`] (codes E05xx, W0501;
//! E0701 for generated data over the size limits). The crate does no printing; the only file
//! access is [`load_file`]. It does not depend on the tensor crate: generated data is plain
//! `Vec<f32>` plus a shape.
//!
//! Public surface:
//! - [`load_str`], [`load_file`] → [`Loaded`]; [`parse_impl`] and [`parse_embedded`] parse a
//!   task's embedded text later with file-accurate spans.
//! - [`dim_values`], [`parse_dims_flag`], [`check_dims`], [`eval_dim`], [`used_symbols`].
//! - [`generate`] with [`GenLimits`] → [`GeneratedData`]; [`Rng`] is the generator itself.

// The one `Diagnostic` type is the error of every fallible step here (the contract of the
// workspace); these are cold paths, so boxing it would only cost clarity.
#![allow(clippy::result_large_err)]

pub mod dims;
pub mod embed;
pub mod generate;
pub mod load;
pub mod model;
pub mod rng;
mod suggest;
mod yaml;

pub use dims::{MAX_DIM_VALUE, check_dims, dim_values, eval_dim, parse_dims_flag, used_symbols};
pub use embed::{EMBED_BUDGET_BYTES, parse_embedded};
pub use generate::{GenLimits, GeneratedData, GeneratedTensor, TensorData, generate};
pub use load::{Loaded, arity, load_file, load_str, parse_impl};
pub use model::*;
pub use rng::Rng;
pub use stepforge_syntax::Diagnostic;
pub use yaml::MAX_TASK_BYTES;
