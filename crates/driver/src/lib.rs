//! `stepforge-driver` is the API boundary of the toolchain (DESIGN §2, "session"): the CLI, the
//! agent loop and the tool servers reach parsing, checking, verification and simulation only
//! through it, in-process. Like rust-analyzer's `ide` crate it hides the phases behind one
//! object per task, [`Session`], which prepares everything task-level once so that the
//! ten-thousandth candidate program of a task costs only its own parse, check and run.
//!
//! It owns the JSON shapes of `check` and `verify` (DESIGN §10–11). It must not print, exit or
//! spawn processes, and it holds no global state: two sessions never interact.

mod answer;
mod manual;
mod session;
mod sim;
mod verify;

pub use answer::answer_program;
pub use manual::{OpDoc, manual, op_doc};

pub use session::{CheckReport, FixReport, OpenError, Session};
pub use sim::{EvalFns, SimOptions, SimReport};
pub use stepforge_check::TypedStream;
pub use stepforge_exec::{ExecLimits, Verdict, VerifyOptions, VerifyReport};
pub use stepforge_sim::{HwConfig, Progress as SimProgress};
pub use stepforge_syntax::codes::{Code, Phase};
pub use stepforge_syntax::{Diagnostic, Severity, Source, Span};
pub use verify::{verify, verify_loaded};

/// The long explanation of a diagnostic code (`stepforge explain CODE`), or `None` for a code
/// that does not exist. Case-insensitive.
pub fn explain(code: &str) -> Option<String> {
    let code = stepforge_syntax::codes::Code::parse(&code.trim().to_ascii_uppercase())?;
    Some(code.explanation().to_string())
}
