//! Integration tests of the executor and verification: per-operator runs on hand-made data,
//! algebraic laws (proptest), verdict classes, and the sample tasks.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batching;
mod laws;
mod model_dims;
mod ops;
mod samples;
mod verdicts;

use std::sync::Arc;

use stepforge_exec::eval::{Env, eval_global};
use stepforge_exec::limits::Clock;
use stepforge_exec::{ExecLimits, JitMode, Prepared, StreamData};
use stepforge_ir::func::{Body, Mode};
use stepforge_task::Task;

/// Common fns for the small test tasks.
pub const FNS: &str = r#"
fns:
  - name: double
    func_name: fn_double
    apply: |
      return [input[0] * 2]
    input_dtype: fp32
    output_dtype: fp32
  - name: sum
    func_name: fn_sum
    apply: |
      return [state[0] + input[0]]
    init: [0]
    input_dtype: fp32
    output_dtype: fp32
  - name: sub
    func_name: fn_sub
    apply: |
      return [input[0] - input[1]]
    input_dtype: "[fp32, fp32]"
    output_dtype: fp32
  - name: add2
    func_name: fn_add2
    apply: |
      return [input[0] + input[1]]
    input_dtype: "[fp32, fp32]"
    output_dtype: fp32
  - name: row_sum
    func_name: fn_row_sum
    apply: |
      return [input[0].sum(dim=-1)]
    input_dtype: Buffer(fp32, [D])
    output_dtype: fp32
  - name: ident
    func_name: fn_id
    apply: |
      return [input[0]]
    input_dtype: Buffer(fp32, [D])
    output_dtype: Buffer(fp32, [D])
  - name: vadd
    func_name: fn_vadd
    apply: |
      return [state[0] + input[0]]
    init: [0]
    input_dtype: Buffer(fp32, [D])
    output_dtype: Buffer(fp32, [D])
  - name: vmax
    func_name: fn_vmax
    apply: |
      return [torch.max(state[0], input[0])]
    init: [-inf]
    input_dtype: Buffer(fp32, [D])
    output_dtype: Buffer(fp32, [D])
"#;

/// A task with the common fns: `inputs` and `outputs` are YAML list bodies.
pub fn task_text(global: &str, inputs: &str, outputs: &str) -> String {
    let mut s = String::from("test_name: t\n");
    if !global.is_empty() {
        s.push_str("global: |\n");
        for l in global.lines() {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
    }
    s.push_str("inputs:\n");
    s.push_str(inputs);
    s.push_str(FNS);
    s.push_str("outputs:\n");
    s.push_str(outputs);
    s
}

pub fn load(text: &str) -> Task {
    let loaded = stepforge_task::load_str("t.yaml", text);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.task.unwrap()
}

pub fn dims(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

/// Checks `program` against `task` and runs it on the given input data (one buffer per input,
/// in task order, laid out outermost first). Returns the outputs in task order.
pub fn run(
    task: &Task,
    program: &str,
    overrides: &[(&str, i64)],
    inputs: Vec<Vec<f32>>,
) -> Vec<StreamData> {
    run_jit(task, program, overrides, inputs, JitMode::Auto)
}

/// [`run`] with the native backend's tiering set to `jit`.
pub fn run_jit(
    task: &Task,
    program: &str,
    overrides: &[(&str, i64)],
    inputs: Vec<Vec<f32>>,
    jit: JitMode,
) -> Vec<StreamData> {
    let overrides = dims(overrides);
    let (_, check) = stepforge_check::check_answer_with(task, program, &overrides);
    let graph = check
        .graph
        .unwrap_or_else(|| panic!("program does not check: {:#?}", check.diagnostics));
    let values = stepforge_task::dim_values(task, &overrides).unwrap();
    let (functions, diags) = stepforge_check::lower_task_functions(task);
    assert!(diags.is_empty(), "{diags:#?}");
    let global = functions.global.clone().unwrap();
    let env = eval_global(global.as_ref(), Env::new(values)).unwrap();
    let prepared = Prepared::new(&graph, &functions, &env).unwrap();
    let limits = ExecLimits {
        jit,
        ..ExecLimits::default()
    };
    let mut clock = Clock::new(&limits);
    let inputs: Vec<Vec<Arc<Vec<f32>>>> = inputs.into_iter().map(|d| vec![Arc::new(d)]).collect();
    prepared
        .run(&env, &inputs, &limits, &mut clock)
        .unwrap_or_else(|e| panic!("run failed: {:#?}", e.diagnostic))
}

/// An element-function body lowered against `env`'s globals and dims (what the checker does
/// for a task's fns).
pub fn lower_fn(src: &str, env: &Env) -> Arc<Body> {
    let block = stepforge_syntax::parse_block(src).value.unwrap();
    let scope = stepforge_check::func_lower::Scope {
        globals: env.names.keys().cloned().collect(),
        dims: env.dims.keys().cloned().collect(),
    };
    Arc::new(stepforge_check::func_lower::lower_block(&block, &scope, Mode::Function).unwrap())
}

/// `0, 1, 2, ..` as f32.
pub fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

pub fn data(s: &StreamData) -> Vec<f32> {
    s.fields[0].data.as_ref().clone()
}
