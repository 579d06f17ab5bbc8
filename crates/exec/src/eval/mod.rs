//! The evaluator of the Python/torch subset (DESIGN §7): element-function bodies, `global`
//! blocks and reference snippets, over `stepforge-tensor` tensors.
//!
//! Design for speed: bodies arrive lowered to the element-function IR
//! ([`stepforge_ir::func`], by `stepforge_check::func_lower`, once per task): local names are
//! frame slots, `torch.*` paths and method names are [`stepforge_ir::builtin::Builtin`]s,
//! keyword names are `&'static str`. Preparing a body for an [`Env`] ([`Function::from_ir`])
//! resolves its constants, `global` names and `X_value`s once, per node. Calling it then walks
//! the IR arena with no string allocation and no tensor copies (tensors are shared through
//! `Arc`). This module never sees the AST: callers hand it lowered bodies.
//!
//! Safety: every evaluation has a step budget ("fuel", E0702) and runs under the tensor
//! crate's per-thread size and work limits (E0701), so a hostile snippet such as
//! `torch.ones(10**12)` or `[0 for i in range(10**12)]` fails in microseconds. Errors are values
//! ([`EvalError`]) with a code and a span, convertible to a [`Diagnostic`]. Expressions nest
//! at most 100 levels and runtime lists 64, Python lists and strings hold at most 2^20 items,
//! and one budget (`budget.rs`) counts everything an evaluation builds — tensor elements, list
//! items and a per-object overhead — and charges fuel and reads the deadline inside list
//! building, comparison and nesting checks, so neither the stack, memory nor time can be
//! exhausted by task code.

mod budget;
mod compile;
mod funcs;
mod interp;
mod ties;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use stepforge_diag::codes::Code;
use stepforge_diag::{Diagnostic, Span};
use stepforge_ir::func::Body;
use stepforge_tensor::{Tensor, TensorError, fmt_shape, limits};

pub(crate) use compile::const_value;
pub use ties::{RoundingNoiseGuard, TieOrder, TieSplitGuard};
pub use value::{Module, Value};

/// Resource limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalLimits {
    /// Evaluation steps per call (expression nodes, loop iterations, and one step per 1024
    /// elements a tensor operation produces).
    pub fuel: u64,
    /// Elements of any one tensor.
    pub max_numel: usize,
    /// Multiply-adds of one contraction, comparisons of one sort.
    pub max_work: u64,
    /// Elements all tensor operations of one evaluation may produce together: a bound on the
    /// memory a single call can hold (a list of many large tensors).
    pub max_produced: u64,
}

impl Default for EvalLimits {
    fn default() -> EvalLimits {
        EvalLimits {
            fuel: 10_000_000,
            max_numel: limits::DEFAULT_MAX_NUMEL,
            max_work: limits::DEFAULT_MAX_WORK,
            max_produced: 4 * limits::DEFAULT_MAX_NUMEL as u64,
        }
    }
}

/// An evaluation failed: what went wrong, where, and its stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: Code,
    pub message: String,
    pub span: Span,
    pub notes: Vec<String>,
    /// A suggested fix ("did you mean `.squeeze()`?").
    pub help: Option<String>,
}

impl EvalError {
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> EvalError {
        EvalError {
            code,
            message: message.into(),
            span,
            notes: Vec::new(),
            help: None,
        }
    }

    /// A generic evaluation error (E0601).
    pub fn eval(message: impl Into<String>, span: Span) -> EvalError {
        EvalError::new(Code::E0601, message, span)
    }

    pub(crate) fn from_tensor(e: TensorError, span: Span) -> EvalError {
        let code = match e.kind {
            stepforge_tensor::ErrorKind::TooLarge => Code::E0701,
            stepforge_tensor::ErrorKind::Invalid => Code::E0601,
        };
        EvalError::new(code, e.message, span)
    }

    pub fn with_help(mut self, help: impl Into<String>) -> EvalError {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> EvalError {
        self.notes.push(note.into());
        self
    }

    /// Whether a resource limit stopped the evaluation (verdict `limit_exceeded`).
    pub fn is_limit(&self) -> bool {
        self.code.as_str().starts_with("E07")
    }

    pub fn to_diagnostic(&self) -> Diagnostic {
        let mut d = Diagnostic::new(self.code, self.message.clone()).at(self.span);
        for n in &self.notes {
            d = d.note(n.clone());
        }
        if let Some(h) = &self.help {
            d = d.help(h.clone());
        }
        d
    }
}

impl From<EvalError> for Diagnostic {
    fn from(e: EvalError) -> Diagnostic {
        e.to_diagnostic()
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for EvalError {}

/// What evaluation sees of a task run: dimension values, the names bound by `global`, the
/// whole tensors of inputs and parameters (`input_data['X']`), and limits.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub dims: BTreeMap<String, i64>,
    pub names: BTreeMap<String, Value>,
    pub data: BTreeMap<String, Arc<Tensor>>,
    pub limits: EvalLimits,
}

impl Env {
    pub fn new(dims: BTreeMap<String, i64>) -> Env {
        Env {
            dims,
            ..Env::default()
        }
    }

    /// Makes `input_data[name]` available (replacing a previous tensor of that name).
    pub fn set_data(&mut self, name: impl Into<String>, t: Tensor) {
        self.data.insert(name.into(), Arc::new(t));
    }

    /// Runs `f` under this env's tensor limits.
    fn guarded<T>(&self, f: impl FnOnce() -> T) -> T {
        let _g = limits::LimitGuard::new(self.limits.max_numel, self.limits.max_work);
        f()
    }
}

/// Evaluates a task's lowered `global` block (`TaskFunctions::global`) over the dimension
/// values and limits of `env` and returns the environment later code runs in.
///
/// `X_value = ..` and `ctx[X] = ..` bind dimension X unless `env.dims` already has it (task
/// loader literals and `--dims` overrides win); the name `X_value` is then bound to the
/// effective value. Every other name the block binds (module objects such as
/// `torch.nn.GELU()`, constants, tensors) becomes a global.
pub fn eval_global(body: Option<&Body>, mut env: Env) -> Result<Env, EvalError> {
    if let Some(body) = body {
        let code = compile::prepare(Arc::new(body.clone()), &env)?;
        let (names, dims) = env.guarded(|| interp::run_global(&code, &env))?;
        env.names = names;
        env.dims = dims;
    }
    Ok(env)
}

/// A compiled element-function body (or snippet), ready to be called many times.
#[derive(Debug, Clone)]
pub struct Function {
    name: String,
    code: compile::Compiled,
}

impl Function {
    /// Prepares a lowered body for `env` (its globals and dims are resolved now; `input_data`
    /// is looked up at call time).
    pub fn from_ir(
        name: impl Into<String>,
        body: Arc<Body>,
        env: &Env,
    ) -> Result<Function, EvalError> {
        Ok(Function {
            name: name.into(),
            code: compile::prepare(body, env)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lowered body (what the native backend compiles).
    pub fn ir(&self) -> &Body {
        &self.code.body
    }

    /// Calls the function on one element: `inputs` are the element's tuple fields (the
    /// `input` list), `state` the reducer state fields. Returns one tensor per output field
    /// (floating-point results stay f32; integer and bool results are converted to f32 since
    /// every stream element type is fp32-based).
    pub fn call(
        &self,
        env: &Env,
        inputs: Vec<Tensor>,
        state: Option<Vec<Tensor>>,
    ) -> Result<Vec<Tensor>, EvalError> {
        let v = env.guarded(|| interp::run(&self.code, env, Some(inputs), state))?;
        fields_of(v, &self.name, self.code.body.span)
    }

    /// Like [`Function::call`] with shared inputs (no copies when the caller keeps them).
    pub fn call_shared(
        &self,
        env: &Env,
        inputs: Vec<Arc<Tensor>>,
        state: Option<Vec<Arc<Tensor>>>,
    ) -> Result<Vec<Tensor>, EvalError> {
        let v = env.guarded(|| interp::run_shared(&self.code, env, inputs, state))?;
        fields_of(v, &self.name, self.code.body.span)
    }
}

fn fields_of(v: Value, name: &str, span: Span) -> Result<Vec<Tensor>, EvalError> {
    let items: Vec<Value> = match v {
        Value::List(l) | Value::Tuple(l) => Arc::unwrap_or_clone(l),
        other => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Tensor(t) => {
                Ok(Arc::unwrap_or_clone(t).into_dtype(stepforge_tensor::DType::F32))
            }
            Value::Int(x) => Ok(Tensor::scalar_f32(x as f32)),
            Value::Float(x) => Ok(Tensor::scalar_f32(x as f32)),
            Value::Bool(b) => Ok(Tensor::scalar_f32(f32::from(u8::from(b)))),
            other => Err(EvalError::new(
                Code::E0603,
                format!(
                    "fn `{name}` returned {} as output field {i}; expected a tensor",
                    other.type_name()
                ),
                span,
            )),
        })
        .collect()
}

/// Evaluates a lowered snippet body once and returns its value: the value of a `return`, else
/// of its last line (an assignment's assigned value).
pub fn eval_body(body: Arc<Body>, env: &Env) -> Result<Value, EvalError> {
    let code = compile::prepare(body, env)?;
    env.guarded(|| interp::run(&code, env, None, None))
}

/// A reference snippet compiled once against an [`Env`] and evaluated for many data sets
/// (`input_data` is looked up at evaluation time; globals and dims are constants).
#[derive(Debug, Clone)]
pub struct Snippet {
    code: compile::Compiled,
}

impl Snippet {
    /// Prepares a lowered snippet body for `env`.
    pub fn from_ir(body: Arc<Body>, env: &Env) -> Result<Snippet, EvalError> {
        Ok(Snippet {
            code: compile::prepare(body, env)?,
        })
    }

    /// Evaluates the snippet to a tensor (Python numbers become 0-d tensors).
    pub fn eval(&self, env: &Env) -> Result<Tensor, EvalError> {
        let v = env.guarded(|| interp::run(&self.code, env, None, None))?;
        snippet_tensor(v, self.code.body.span)
    }
}

/// A task's reference snippets, prepared once for an [`Env`] and evaluated for many data
/// sets. They share one scope in file order (DESIGN §7): a later snippet may use a name an
/// earlier one bound. Each snippet's value is its last line.
#[derive(Debug, Clone)]
pub struct References {
    code: compile::Compiled,
    parts: Vec<std::ops::Range<usize>>,
}

impl References {
    /// Prepares lowered snippets (see `stepforge_check::lower_task_functions`).
    pub fn from_ir(
        refs: &stepforge_ir::func::References,
        env: &Env,
    ) -> Result<References, EvalError> {
        Ok(References {
            code: compile::prepare(Arc::new(refs.body.clone()), env)?,
            parts: refs
                .parts
                .iter()
                .map(|p| p.clone().unwrap_or(0..0))
                .collect(),
        })
    }

    /// Evaluates every snippet in order, one tensor each (Python numbers become 0-d tensors).
    pub fn eval(&self, env: &Env) -> Result<Vec<Tensor>, EvalError> {
        let values = env.guarded(|| interp::run_parts(&self.code, env, &self.parts))?;
        values
            .into_iter()
            .map(|v| snippet_tensor(v, self.code.body.span))
            .collect()
    }
}

fn snippet_tensor(v: Value, span: Span) -> Result<Tensor, EvalError> {
    match v {
        Value::Tensor(t) => Ok(Arc::unwrap_or_clone(t)),
        Value::Int(x) => Ok(Tensor::scalar_i64(x)),
        Value::Float(x) => Ok(Tensor::scalar_f32(x as f32)),
        Value::Bool(b) => Ok(Tensor::scalar_bool(b)),
        other => Err(EvalError::eval(
            format!(
                "the snippet evaluates to {}, not a tensor",
                other.type_name()
            ),
            span,
        )),
    }
}

/// Checks an element function's result against its declared output fields (E0603): the
/// number of fields and each field's shape. `expected` holds, per field, a printable type
/// (e.g. `Buffer(fp32, [D, N])`) and the concrete shape it implies.
pub fn check_result(
    fn_name: &str,
    span: Span,
    result: &[Tensor],
    expected: &[(String, Vec<usize>)],
) -> Result<(), EvalError> {
    if result.len() != expected.len() {
        return Err(EvalError::new(
            Code::E0603,
            format!(
                "fn `{fn_name}` returned {} field{}, but its output type has {}",
                result.len(),
                if result.len() == 1 { "" } else { "s" },
                expected.len()
            ),
            span,
        ));
    }
    for (i, (t, (ty, shape))) in result.iter().zip(expected).enumerate() {
        if t.shape() != &shape[..] {
            return Err(EvalError::new(
                Code::E0603,
                format!(
                    "fn `{fn_name}` returned shape {} for output field {i}, but its type {ty} needs shape {}",
                    fmt_shape(t.shape()),
                    fmt_shape(shape)
                ),
                span,
            )
            .with_note(format!("expected {ty} = shape {}", fmt_shape(shape)))
            .with_note(format!("found shape {}", fmt_shape(t.shape()))));
        }
    }
    Ok(())
}
