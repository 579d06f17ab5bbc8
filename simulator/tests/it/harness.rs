//! Loading a task into everything the simulator and the executor need; element functions
//! reach the simulator through the session's adapter ([`EvalFns`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stepforge_driver::EvalFns;
use stepforge_exec::eval::{self, Env};
use stepforge_exec::limits::Clock;
use stepforge_exec::{ExecLimits, Prepared, StreamData};
use stepforge_ir::func::TaskFunctions;
use stepforge_ir::{DimEnv, Graph};
use stepforge_sim::{ElemFns, HwConfig, SimInput, SimOptions, SimRun, simulate};
use stepforge_syntax::Source;
use stepforge_task::{GenLimits, Task};
use stepforge_tensor::Tensor;

pub struct Case {
    pub task: Task,
    /// The task's element functions, lowered once.
    pub functions: TaskFunctions,
    pub graph: Graph,
    pub env: Env,
    pub dims: DimEnv,
    pub inputs: Vec<Vec<Arc<Vec<f32>>>>,
    pub source: Source,
}

pub fn operators() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../operators");
    let mut out = Vec::new();
    for group in std::fs::read_dir(&root).unwrap() {
        let group = group.unwrap().path();
        if !group.is_dir() || group.ends_with("wrong") {
            continue;
        }
        for f in std::fs::read_dir(&group).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "yaml") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// Loads a task from text, checks its `impl` (or `program`), generates seed-0 data.
pub fn case_str(
    name: &str,
    text: &str,
    program: Option<&str>,
    overrides: &[(String, i64)],
) -> Case {
    let loaded = stepforge_task::load_str(name, text);
    let task = loaded
        .ok_task()
        .unwrap_or_else(|| panic!("{name}: {:?}", loaded.diagnostics))
        .clone();
    let (source, check) = match program {
        Some(p) => stepforge_check::check_answer_with(&task, p, overrides),
        None => (
            task.source.clone(),
            stepforge_check::check_task_with(&task, overrides).unwrap(),
        ),
    };
    let graph = check
        .graph
        .clone()
        .unwrap_or_else(|| panic!("{name}: {:?}", check.diagnostics));
    let dimv = stepforge_task::dim_values(&task, overrides).unwrap();
    let (functions, _) = stepforge_check::lower_task_functions(&task);
    let global = functions.global.clone().unwrap();
    let env = eval::eval_global(global.as_ref(), Env::new(dimv.clone())).unwrap();
    let dims = DimEnv::from_statics(env.dims.iter().map(|(k, v)| (k.clone(), *v)));
    let lim = GenLimits {
        max_tensor_elements: 1 << 26,
        max_total_elements: 1 << 27,
        max_total_bytes: 1 << 30,
    };
    let mut env = env;
    let data = stepforge_task::generate(&task, &env.dims, 0, &lim).unwrap();
    let mut inputs = Vec::new();
    let n_in = task.inputs.len();
    for (i, t) in data.inputs.into_iter().chain(data.parameters).enumerate() {
        let mut fields = Vec::new();
        for (k, f) in t.fields.into_iter().enumerate() {
            if k == 0 {
                env.set_data(
                    t.name.clone(),
                    Tensor::from_f32(f.shape.clone(), f.data.clone()).unwrap(),
                );
            }
            fields.push(Arc::new(f.data));
        }
        if i < n_in {
            inputs.push(fields);
        }
    }
    Case {
        task,
        functions,
        graph,
        env,
        dims,
        inputs,
        source,
    }
}

pub fn case(path: &Path, overrides: &[(String, i64)]) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    case_str(&path.display().to_string(), &text, None, overrides)
}

/// Element functions over the evaluator: the session's adapter.
pub fn eval_fns(c: &Case) -> EvalFns<'_> {
    EvalFns::new(&c.graph, &c.env, &c.task, &c.functions)
}

pub fn sim(
    c: &Case,
    fns: &dyn ElemFns,
    functional: bool,
    hw: &HwConfig,
    opts: &SimOptions,
) -> SimRun {
    let input = SimInput {
        graph: &c.graph,
        dims: &c.dims,
        hw,
        fns,
        inputs: functional.then_some(&c.inputs[..]),
        source: Some(&c.source),
        same_source: true,
    };
    simulate(&input, opts).unwrap_or_else(|e| panic!("{}: {e}", c.task.name))
}

/// The executor's outputs; `None` when it rejects the program.
pub fn try_execute(c: &Case) -> Option<Vec<StreamData>> {
    let p = Prepared::new(&c.graph, &c.functions, &c.env).ok()?;
    let limits = ExecLimits::default();
    let mut clock = Clock::new(&limits);
    p.run(&c.env, &c.inputs, &limits, &mut clock).ok()
}

pub fn execute(c: &Case) -> Vec<StreamData> {
    let p = Prepared::new(&c.graph, &c.functions, &c.env).unwrap();
    let limits = ExecLimits::default();
    let mut clock = Clock::new(&limits);
    p.run(&c.env, &c.inputs, &limits, &mut clock).unwrap()
}
