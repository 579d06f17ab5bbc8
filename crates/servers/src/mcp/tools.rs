//! The MCP tool table: one entry per tool (name, LLM-facing description, JSON schema, handler).
//! Adding a tool is adding one entry to [`TOOLS`]. Arguments are validated
//! against the schema's property names before the handler runs, every input is bounded, and a
//! failure is a tool result with `isError: true` and a stable code, never a protocol error or
//! a crash (a panic inside a handler is caught and reported as `internal`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Ctx;
use super::resources;
use crate::toolchain::{self, OpenFailure, Session, SimOptions, VerifyOptions};

/// The largest program text a tool accepts.
pub const MAX_PROGRAM_BYTES: usize = 1 << 20;
/// The most seeds one `verify` may run.
pub const MAX_SEEDS: usize = 16;
/// The most dimension overrides, and the largest value of one.
pub const MAX_DIMS: usize = 32;
pub const MAX_DIM_VALUE: i64 = 1 << 20;
/// Wall-clock bound of one `verify` (the default is the toolchain's own limit).
pub const MAX_TIME_LIMIT_MS: u64 = 120_000;
/// Wall-clock bound of one `simulate` unless the call asks for less or more (up to the max).
pub const DEFAULT_SIM_LIMIT_MS: u64 = 10_000;
/// The deepest FIFO `simulate` accepts.
pub const MAX_FIFO_DEPTH: u64 = 1 << 16;

/// One tool.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    /// One paragraph, written for an LLM: what it does, when to call it, what comes back.
    pub description: &'static str,
    pub schema: fn() -> Value,
    pub run: fn(&Ctx, &Args) -> Result<Output, ToolError>,
}

impl Tool {
    /// The `tools/list` entry.
    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": (self.schema)(),
        })
    }
}

/// A tool's answer: the text an LLM reads and, for JSON answers, the same data structured.
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub structured: Option<Value>,
}

impl Output {
    fn json(v: Value) -> Output {
        Output {
            text: v.to_string(),
            structured: Some(v),
        }
    }
    fn text(t: String) -> Output {
        Output {
            text: t,
            structured: None,
        }
    }
}

/// A failed call: a stable code an agent can branch on and a message it can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    pub code: &'static str,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ToolError {
        ToolError {
            code,
            message: message.into(),
        }
    }

    fn args(message: impl Into<String>) -> ToolError {
        ToolError::new("invalid_arguments", message)
    }

    /// The `tools/call` result of this error.
    pub fn to_result(&self) -> Value {
        json!({
            "content": [{"type": "text", "text": format!("error[{}]: {}", self.code, self.message)}],
            "structuredContent": {"error": {"code": self.code, "message": self.message}},
            "isError": true,
        })
    }
}

/// Validated arguments of one call.
#[derive(Debug)]
pub struct Args(Map<String, Value>);

impl Args {
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Result<Option<&str>, ToolError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ToolError::args(format!("`{k}` must be a string"))),
        }
    }

    fn req_str(&self, k: &str) -> Result<&str, ToolError> {
        self.str(k)?
            .ok_or_else(|| ToolError::args(format!("`{k}` is required")))
    }

    fn bool(&self, k: &str) -> Result<bool, ToolError> {
        match self.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ToolError::args(format!("`{k}` must be true or false"))),
        }
    }
}

/// Runs `tool` on raw `arguments`; always returns a `tools/call` result.
pub fn call(ctx: &Ctx, tool: &Tool, arguments: &Value) -> Value {
    let args = match validate(tool, arguments) {
        Ok(a) => a,
        Err(e) => return e.to_result(),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| (tool.run)(ctx, &args)));
    match outcome {
        Ok(Ok(out)) => {
            let mut r = json!({"content": [{"type": "text", "text": out.text}], "isError": false});
            if let Some(s) = out.structured {
                r["structuredContent"] = s;
            }
            r
        }
        Ok(Err(e)) => e.to_result(),
        Err(_) => ToolError::new(
            "internal",
            format!(
                "stepforge failed internally while running `{}`; please report it with the input",
                tool.name
            ),
        )
        .to_result(),
    }
}

fn validate(tool: &Tool, arguments: &Value) -> Result<Args, ToolError> {
    let map = match arguments {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(ToolError::args("`arguments` must be a JSON object")),
    };
    let schema = (tool.schema)();
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for k in map.keys() {
        if !props.contains_key(k) {
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err(ToolError::args(format!(
                "unknown argument `{k}`; `{}` takes: {}",
                tool.name,
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    if let Some(req) = schema["required"].as_array() {
        for r in req.iter().filter_map(Value::as_str) {
            if map.get(r).is_none_or(Value::is_null) {
                return Err(ToolError::args(format!("`{r}` is required")));
            }
        }
    }
    Ok(Args(map))
}

const TASK_DESC: &str =
    "Path of the task file (*.yaml), relative to the server's root directory or absolute.";
const PROGRAM_DESC: &str = "The STeP program text: a bare program, a YAML `impl:` block, or an answer with a fenced code block. At most 1 MiB.";

/// The arguments of `check` and `fix`: a task file and a program, both required.
fn task_and_program_schema() -> Value {
    object(
        json!({
            "task": {"type": "string", "description": TASK_DESC},
            "program": {"type": "string", "description": PROGRAM_DESC},
        }),
        &["task", "program"],
    )
}

/// The `dims` argument of `verify` and `simulate`.
fn dims_schema() -> Value {
    json!({"type": "object", "description": "Dimension overrides, e.g. {\"D\": 64}; values 1..=1048576.", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": MAX_DIM_VALUE}})
}

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

pub static TOOLS: &[Tool] = &[
    Tool {
        name: "manual",
        title: "STeP language manual",
        description: "Returns the STeP language manual: the stream types, the 14 operators with their signatures and shape rules, the consume-once rule, and idioms for writing kernels. Read it once before writing your first program; it is the same text stepforge's own agent is prompted with.",
        schema: || object(json!({}), &[]),
        run: |_, _| Ok(Output::text(toolchain::manual())),
    },
    Tool {
        name: "list_tasks",
        title: "List task files",
        description: "Lists the STeP task files (*.yaml) under a directory, recursively, with each task's name. A task file declares a kernel's input and output streams, the element functions a program may use and the reference the program is verified against. Use it to find the task you are asked to implement.",
        schema: || {
            object(
                json!({"dir": {"type": "string", "description": "Directory to search, relative to the server's root (default: the root)."}}),
                &[],
            )
        },
        run: list_tasks,
    },
    Tool {
        name: "show_task",
        title: "Show a task",
        description: "Returns a task file's text (its inputs, outputs with dims innermost first, element functions with their func_name and types) plus its name and function names. The task's own reference program (`impl:`) is left out unless include_impl is true, so you write the program yourself.",
        schema: || {
            object(
                json!({
                    "task": {"type": "string", "description": TASK_DESC},
                    "include_impl": {"type": "boolean", "description": "Also return the task's reference program (default false)."},
                }),
                &["task"],
            )
        },
        run: show_task,
    },
    Tool {
        name: "check",
        title: "Check a program",
        description: "Type-, shape- and linearity-checks a STeP program against a task without running it (milliseconds). Returns JSON: ok, linear (every stream consumed at most once), copies_needed, graph_hash, the typed streams, and diagnostics, each with a code (call `explain` on it), a line/column span, notes, help and machine-applicable fixes. Call it after every edit; fix every error before calling verify.",
        schema: task_and_program_schema,
        run: check,
    },
    Tool {
        name: "fix",
        title: "Apply safe fixes",
        description: "Applies every safe machine-applicable fix to a program (for example inserting the step.Copy ops a stream needs when it is consumed twice) and returns the fixed program text, the number of fixes applied, and the check result of the fixed program. Use the returned program as your new version.",
        schema: task_and_program_schema,
        run: fix,
    },
    Tool {
        name: "verify",
        title: "Verify a program",
        description: "Checks a program, runs it on seeded random inputs and compares every output with the task's reference. Returns JSON with the verdict (pass, syntax_error, type_error, shape_mismatch, value_mismatch, runtime_error, limit_exceeded, task_error), diagnostics, and per output the max errors and the first mismatching element (index, expected, found). A program is correct only when the verdict is pass. Omit program to verify the task's own reference.",
        schema: || {
            object(
                json!({
                    "task": {"type": "string", "description": TASK_DESC},
                    "program": {"type": "string", "description": PROGRAM_DESC},
                    "dims": dims_schema(),
                    "seeds": {"description": "Number of seeds 1..=16 (seeds 0..n; default 3) or a list of at most 16 seeds.", "oneOf": [
                        {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
                        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": MAX_SEEDS},
                    ]},
                    "rtol": {"type": "number", "minimum": 0, "description": "Relative tolerance (default: the task's)."},
                    "atol": {"type": "number", "minimum": 0, "description": "Absolute tolerance (default: the task's)."},
                    "time_limit_ms": {"type": "integer", "minimum": 1, "maximum": MAX_TIME_LIMIT_MS, "description": "Wall-clock limit of the run (default 10000)."},
                }),
                &["task"],
            )
        },
        run: verify,
    },
    Tool {
        name: "simulate",
        title: "Simulate a program's performance",
        description: "Runs a program on stepforge's cycle-level model of a dataflow accelerator (each op a unit, each stream a bounded FIFO). Returns JSON: cycles, sol_cycles (the speed-of-light bound) and sol_fraction = sol_cycles / cycles, the bottleneck in words, on-chip peak bytes, off-chip traffic, per unit busy/stall counts, and `deadlock` — null, or the cycle of units and FIFOs that blocked each other with the program lines and a FIFO depth that avoids it. A deadlocking program is not a valid kernel even when verify passes. Call it after verify passes, to compare versions: fewer cycles is better. Omit program to simulate the task's reference.",
        schema: || {
            object(
                json!({
                    "task": {"type": "string", "description": TASK_DESC},
                    "program": {"type": "string", "description": PROGRAM_DESC},
                    "dims": dims_schema(),
                    "fifo_depth": {"type": "integer", "minimum": 1, "maximum": MAX_FIFO_DEPTH, "description": "Depth of every FIFO (default: the hardware model's, 2)."},
                    "timing_only": {"type": "boolean", "description": "Carry shapes only, no values (fast at large dims; data-dependent routing is estimated). Default false."},
                    "time_limit_ms": {"type": "integer", "minimum": 1, "maximum": MAX_TIME_LIMIT_MS, "description": "Wall-clock limit of the simulation (default 10000)."},
                }),
                &["task"],
            )
        },
        run: simulate,
    },
    Tool {
        name: "explain",
        title: "Explain a diagnostic code",
        description: "Explains a stepforge diagnostic code (such as E0401) with a wrong and a right example program. Call it when a check or verify diagnostic is unclear.",
        schema: || {
            object(
                json!({"code": {"type": "string", "description": "The code, e.g. E0401."}}),
                &["code"],
            )
        },
        run: |_, a| {
            let code = a.req_str("code")?;
            let code = code.get(..code.len().min(32)).unwrap_or(code);
            toolchain::explain(code).map(Output::text).ok_or_else(|| {
                ToolError::new("unknown_code", format!("`{code}` is not a stepforge diagnostic code (codes look like E0401 or W0201)"))
            })
        },
    },
];

/// Resolves a path argument against the root.
pub(super) fn resolve(ctx: &Ctx, p: &str) -> Result<PathBuf, ToolError> {
    if p.is_empty() || p.len() > 4096 || p.contains('\0') {
        return Err(ToolError::args("the path must be 1..=4096 characters"));
    }
    let path = Path::new(p);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.root.join(path)
    })
}

fn session(ctx: &Ctx, args: &Args) -> Result<Arc<Session>, ToolError> {
    let task = args.req_str("task")?;
    let path = resolve(ctx, task)?;
    if !resources::is_task_file(&path) {
        return Err(ToolError::args(format!(
            "`{task}` is not a task file (*.yaml or *.yml)"
        )));
    }
    ctx.sessions.open(&path).map_err(|e| match e {
        OpenFailure::Io(m) => ToolError::new("task_not_found", m),
        OpenFailure::Task(e) => ToolError::new("task_error", toolchain::describe_open_error(&e)),
    })
}

fn program(args: &Args) -> Result<Option<&str>, ToolError> {
    let p = args.str("program")?;
    if let Some(p) = p
        && p.len() > MAX_PROGRAM_BYTES
    {
        return Err(ToolError::new(
            "input_too_large",
            format!(
                "the program is {} bytes; the limit is {MAX_PROGRAM_BYTES} bytes (1 MiB)",
                p.len()
            ),
        ));
    }
    Ok(p)
}

fn req_program(args: &Args) -> Result<&str, ToolError> {
    program(args)?.ok_or_else(|| ToolError::args("`program` is required"))
}

fn list_tasks(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let dir = match args.str("dir")? {
        Some(d) => resolve(ctx, d)?,
        None => ctx.root.clone(),
    };
    if !dir.is_dir() {
        return Err(ToolError::new(
            "not_found",
            format!("{} is not a directory", dir.display()),
        ));
    }
    let (files, truncated) = resources::task_files(&dir);
    let tasks: Vec<Value> = files
        .iter()
        .map(|f| {
            let shown = f.strip_prefix(&ctx.root).unwrap_or(f).display().to_string();
            match ctx.sessions.open(f) {
                Ok(s) => json!({"path": shown, "name": s.name(), "has_reference_impl": s.reference_impl().is_some()}),
                Err(e) => json!({"path": shown, "error": e.to_string()}),
            }
        })
        .collect();
    Ok(Output::json(
        json!({"tasks": tasks, "truncated": truncated}),
    ))
}

fn show_task(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let s = session(ctx, args)?;
    let include = args.bool("include_impl")?;
    let text = match (include, s.impl_range()) {
        (false, Some(r)) => {
            let t = s.task_text();
            // From the start of the line that holds the `impl:` key, so no header is left.
            let head = t.get(..r.start).unwrap_or("");
            let start = head
                .rfind("impl:")
                .map_or(r.start, |i| head[..i].rfind('\n').map_or(0, |n| n + 1));
            format!(
                "{}{}",
                t.get(..start).unwrap_or(t),
                t.get(r.end..).unwrap_or("")
            )
        }
        _ => s.task_text().to_string(),
    };
    Ok(Output {
        structured: Some(json!({
            "task": s.name(),
            "path": s.path(),
            "fn_names": s.fn_names(),
            "has_reference_impl": s.reference_impl().is_some(),
            "text": text,
        })),
        text,
    })
}

fn check(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let s = session(ctx, args)?;
    let c = s.check(req_program(args)?);
    Ok(Output::json(toolchain::check_json(&s, &c)))
}

fn fix(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let s = session(ctx, args)?;
    let f = s.fix(req_program(args)?);
    Ok(Output::json(json!({
        "applied": f.applied,
        "program": f.program,
        "after": toolchain::check_json(&s, &f.after),
    })))
}

fn verify(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let opts = verify_options(args)?;
    let s = session(ctx, args)?;
    let program = program(args)?;
    if program.is_none() && s.reference_impl().is_none() {
        return Err(ToolError::args(
            "the task has no reference `impl:`; pass `program`",
        ));
    }
    Ok(Output::json(s.verify(program, &opts).to_json()))
}

fn simulate(ctx: &Ctx, args: &Args) -> Result<Output, ToolError> {
    let mut opts = SimOptions {
        dims: dims(args)?,
        timing_only: args.bool("timing_only")?,
        ..SimOptions::default()
    };
    if let Some(v) = args.get("fifo_depth") {
        match v.as_u64() {
            Some(d @ 1..=MAX_FIFO_DEPTH) => opts.engine.fifo_depth = usize::try_from(d).ok(),
            _ => {
                return Err(ToolError::args(format!(
                    "`fifo_depth` must be 1..={MAX_FIFO_DEPTH}"
                )));
            }
        }
    }
    let limit = match args.get("time_limit_ms") {
        None => DEFAULT_SIM_LIMIT_MS,
        Some(v) => match v.as_u64() {
            Some(ms @ 1..=MAX_TIME_LIMIT_MS) => ms,
            _ => {
                return Err(ToolError::args(format!(
                    "`time_limit_ms` must be 1..={MAX_TIME_LIMIT_MS}"
                )));
            }
        },
    };
    opts.engine.wall_limit = Some(Duration::from_millis(limit));
    let s = session(ctx, args)?;
    let program = program(args)?;
    if program.is_none() && s.reference_impl().is_none() {
        return Err(ToolError::args(
            "the task has no reference `impl:`; pass `program`",
        ));
    }
    let r = s.simulate(program, &opts);
    let mut v = r.to_json();
    // The verdict an agent branches on first: ran, deadlocked, or could not run.
    v["status"] = json!(match &r.run {
        Some(run) if run.deadlock.is_some() => "deadlock",
        Some(_) => "ok",
        None => "not_simulated",
    });
    Ok(Output::json(v))
}

fn dims(args: &Args) -> Result<Vec<(String, i64)>, ToolError> {
    let mut out = Vec::new();
    match args.get("dims") {
        None => {}
        Some(Value::Object(m)) if m.len() <= MAX_DIMS => {
            for (k, v) in m {
                match v.as_i64() {
                    Some(x @ 1..=MAX_DIM_VALUE) if k.len() <= 64 => out.push((k.clone(), x)),
                    _ => {
                        return Err(ToolError::args(format!(
                            "dim `{}` must be an integer 1..={MAX_DIM_VALUE}",
                            k.get(..k.len().min(64)).unwrap_or("")
                        )));
                    }
                }
            }
        }
        Some(_) => {
            return Err(ToolError::args(format!(
                "`dims` must be an object of at most {MAX_DIMS} name: integer pairs"
            )));
        }
    }
    Ok(out)
}

fn verify_options(args: &Args) -> Result<VerifyOptions, ToolError> {
    let mut opts = VerifyOptions::with_seed_count(3);
    match args.get("seeds") {
        None => {}
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k @ 1..) if k as usize <= MAX_SEEDS => opts.seeds = (0..k).collect(),
            _ => {
                return Err(ToolError::args(format!(
                    "`seeds` must be 1..={MAX_SEEDS} or a list of seeds"
                )));
            }
        },
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_SEEDS => {
            opts.seeds = a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| ToolError::args("every seed must be a non-negative integer"))
                })
                .collect::<Result<_, _>>()?;
        }
        Some(_) => {
            return Err(ToolError::args(format!(
                "`seeds` must be 1..={MAX_SEEDS} or a list of 1..={MAX_SEEDS} seeds"
            )));
        }
    }
    opts.dims = dims(args)?;
    for (k, slot) in [("rtol", &mut opts.rtol), ("atol", &mut opts.atol)] {
        match args.get(k) {
            None => {}
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => *slot = Some(x),
                _ => {
                    return Err(ToolError::args(format!(
                        "`{k}` must be a non-negative number"
                    )));
                }
            },
        }
    }
    match args.get("time_limit_ms") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(ms @ 1..=MAX_TIME_LIMIT_MS) => opts.limits.time_limit = Duration::from_millis(ms),
            _ => {
                return Err(ToolError::args(format!(
                    "`time_limit_ms` must be 1..={MAX_TIME_LIMIT_MS}"
                )));
            }
        },
    }
    Ok(opts)
}

/// Verify options from a JSON object with the `verify` tool's `dims`, `seeds`, `rtol`, `atol`
/// and `time_limit_ms` (shared with the language server's verify command).
pub fn verify_options_json(v: &Value) -> Result<VerifyOptions, ToolError> {
    match v {
        Value::Object(m) => verify_options(&Args(m.clone())),
        _ => Err(ToolError::args("the options must be a JSON object")),
    }
}
