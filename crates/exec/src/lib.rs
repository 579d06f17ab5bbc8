//! `stepforge-exec` owns execution and verification (DESIGN §3, §4, §9): the functional
//! executor of a checked typed stream graph ([`Prepared`]), the comparison with the task's
//! reference snippets and the verdicts ([`verify_checked`]), resource limits ([`ExecLimits`]),
//! the interpreter of the element-function IR ([`eval`]) that element functions and references
//! run on, and the lane-batching pass over that IR ([`batch`]).
//!
//! It consumes only the IR (`stepforge-ir`: the typed graph, the lowered functions) and what
//! the driver hands it ([`TaskSpec`], [`CheckedProgram`]); it never sees the AST or the task
//! model, and parsing and checking are not its business.
//!
//! It never prints and never exits; every failure is a [`Diagnostic`] inside a
//! [`VerifyReport`]. Untrusted programs and task files cannot make it panic or exhaust memory:
//! sizes are checked before allocation and the wall clock is watched while it runs.
//!
//! [`Diagnostic`]: stepforge_diag::Diagnostic

pub mod batch;
pub mod cache;
pub mod compare;
pub mod error;
pub mod eval;
mod exec;
pub mod limits;
pub mod native;
pub mod report;
pub mod spec;
pub mod stream;
pub mod verify;

pub use cache::VerifyCache;
pub use error::{ErrorClass, ExecError, Origin};
pub use exec::{PlanCache, Prepared};
pub use limits::ExecLimits;
pub use native::{JitFnReport, JitMode};
pub use report::{OutputReport, PhaseTiming, ReportDiagnostic, Verdict, VerifyReport};
pub use spec::{CheckedProgram, OutputSpec, TaskData, TaskSpec};
pub use stream::{FieldData, StreamData};
pub use verify::{VerifyOptions, verify_checked};
