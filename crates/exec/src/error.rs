//! Execution errors: a diagnostic, which text its spans point into, and the verdict class.

use stepforge_diag::{Diagnostic, Span};

use crate::eval::EvalError;

/// Which text a diagnostic's spans are byte offsets into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The program being verified (the task file itself when verifying the reference impl).
    Program,
    /// The task file (element-function bodies, `global`, reference snippets, declarations).
    Task,
}

/// The verdict class an execution error leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The program (or an element function it called) failed while running.
    Runtime,
    /// A resource limit stopped the run.
    Limit,
    /// The task itself is broken (its fns or references cannot be evaluated).
    Task,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecError {
    pub class: ErrorClass,
    /// Boxed: errors travel through every hot-path `Result`; keep them one pointer wide.
    pub diagnostic: Box<Diagnostic>,
    pub origin: Origin,
    /// The program op that was running, when the diagnostic points into the task file.
    pub op_span: Option<Span>,
}

impl ExecError {
    pub fn runtime(diagnostic: Diagnostic, origin: Origin) -> ExecError {
        ExecError {
            class: ErrorClass::Runtime,
            diagnostic: Box::new(diagnostic),
            origin,
            op_span: None,
        }
    }

    pub fn limit(diagnostic: Diagnostic, origin: Origin) -> ExecError {
        ExecError {
            class: ErrorClass::Limit,
            diagnostic: Box::new(diagnostic),
            origin,
            op_span: None,
        }
    }

    pub fn task(diagnostic: Diagnostic) -> ExecError {
        ExecError {
            class: ErrorClass::Task,
            diagnostic: Box::new(diagnostic),
            origin: Origin::Task,
            op_span: None,
        }
    }

    /// An evaluator error raised inside an element function called by the op at `op_span`.
    pub fn from_eval(e: &EvalError, op_span: Span) -> ExecError {
        ExecError {
            class: if e.is_limit() {
                ErrorClass::Limit
            } else {
                ErrorClass::Runtime
            },
            diagnostic: Box::new(e.to_diagnostic()),
            origin: Origin::Task,
            op_span: Some(op_span),
        }
    }

    /// An evaluator error in task code run outside the program (`global`, references).
    pub fn from_eval_task(e: &EvalError) -> ExecError {
        ExecError {
            class: if e.is_limit() {
                ErrorClass::Limit
            } else {
                ErrorClass::Task
            },
            diagnostic: Box::new(e.to_diagnostic()),
            origin: Origin::Task,
            op_span: None,
        }
    }
}
