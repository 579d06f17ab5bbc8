//! The simulator in the loop: feasibility (a deadlocking answer is not a solution under
//! `require`, is one under `report`, and gets a repair turn carrying the deadlock diagnostic)
//! and the `cycles` objective (a slower then a faster correct kernel: the faster one is kept,
//! both are judged by `Session::simulate`, the Pareto set is stored and reported).

use std::sync::{Arc, Mutex};

use stepforge_agent::Status;
use stepforge_agent::config::{Feasibility, Objective, ProviderKind, RunConfig};
use stepforge_agent::engine::NoProgress;
use stepforge_agent::store::Store;
use stepforge_agent::tool::SessionSimulator;
use stepforge_agent::{Hooks, Summary};

use crate::common::*;
use crate::server::{self, Api, Reply, Server};

/// The RMSNorm reference with a redundant Streamify/Bufferize round trip: the same values,
/// more cycles.
const SLOW_RMSNORM: &str = "Xb = step.Bufferize(a=1).apply(X)
Xs = step.Streamify().apply(Xb)
Xb2 = step.Bufferize(a=1).apply(Xs)
Yb = step.Map(fn=fn_rms).apply(Xb2)
Y = step.Streamify().apply(Yb)
return Y
";

const DEADLOCK_TASK: &str = "../../simulator/tests/tasks/rmsnorm_deadlock.yaml";

fn tasks(dir: &TempDir) -> String {
    let d = dir.0.join("tasks");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        operators().join("norm/rmsnorm.yaml"),
        d.join("rmsnorm.yaml"),
    )
    .unwrap();
    let deadlock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DEADLOCK_TASK);
    std::fs::copy(deadlock, d.join("rmsnorm_deadlock.yaml")).unwrap();
    d.display().to_string()
}

fn reference(dir: &str, file: &str) -> String {
    let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
    let t = stepforge_agent::tool::Tool::from_yaml(file, &text).unwrap();
    t.reference_impl().unwrap().to_string()
}

fn last_user_text(req: &serde_json::Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// rmsnorm: the slow kernel, then the fast one when asked for a faster program.
/// rmsnorm_deadlock: always its (deadlocking at depth 2) reference. Every last user message
/// is recorded.
fn start(dir: &str, seen: Arc<Mutex<Vec<String>>>) -> Server {
    let fast = reference(dir, "rmsnorm.yaml");
    let deadlocking = reference(dir, "rmsnorm_deadlock.yaml");
    Server::start(
        Arc::new(move |_: Api, req: &serde_json::Value, _| {
            let last = last_user_text(req);
            seen.lock().unwrap().push(last.clone());
            let first = server::first_user_text(req);
            Reply::Answer(match server::prompt_task(&first).as_str() {
                "norm_rmsnorm" if first.contains("fewer cycles") => yaml_answer(&fast),
                "norm_rmsnorm" => yaml_answer(SLOW_RMSNORM),
                "rmsnorm_deadlock" => yaml_answer(&deadlocking),
                _ => "no".into(),
            })
        }),
        std::time::Duration::ZERO,
    )
}

fn sim_run(cfg: RunConfig, store: &str) -> Summary {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hooks = Hooks {
        progress: Arc::new(NoProgress),
        simulator: Some(Arc::new(SessionSimulator::default())),
    };
    rt.block_on(stepforge_agent::start(cfg, store, hooks))
        .unwrap()
}

fn cfg(base: &str, tasks: &str) -> RunConfig {
    let mut c = config(base, ProviderKind::Openai);
    c.tasks_dir = tasks.to_string();
    c.samples = 1;
    c.iterations = 2;
    c
}

#[test]
fn the_faster_kernel_is_kept_and_a_deadlock_is_not_a_solution() {
    let dir = TempDir::new("optimize");
    let tasks = tasks(&dir);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let srv = start(&tasks, Arc::clone(&seen));
    let mut c = cfg(&srv.base, &tasks);
    c.objective = Objective::Cycles;
    let store = dir.file("opt.db");
    let s = sim_run(c, &store);
    assert_eq!(s.status, Status::Done);
    // Feasibility `require` (the default with a simulator): the deadlocking kernel is
    // functionally right but not a solution.
    assert_eq!(s.solved_tasks, vec!["norm_rmsnorm".to_string()]);
    let st = Store::open(&store).unwrap();
    let run = st.run(None).unwrap().unwrap().id;
    let samples = st.samples(run).unwrap();
    let dl: Vec<_> = samples
        .values()
        .filter(|r| r.task == "rmsnorm_deadlock")
        .collect();
    assert!(!dl.is_empty());
    for r in &dl {
        assert_eq!(
            (r.verdict.as_str(), r.feasible, r.passed),
            ("deadlock", Some(false), false)
        );
    }
    // The repair turn carried the deadlock diagnostic and its explanation.
    let prompts = seen.lock().unwrap().clone();
    let repair = prompts
        .iter()
        .find(|p| p.contains("verdict `deadlock`"))
        .expect("a repair turn for the deadlock");
    assert!(repair.contains("E0801"), "{repair}");

    // The slow kernel solved iteration 0; the optimize round's fast one replaced it.
    let rms: Vec<_> = samples
        .values()
        .filter(|r| r.task == "norm_rmsnorm" && r.passed)
        .collect();
    let slow = rms.iter().find(|r| r.iteration == 0).unwrap();
    let fast = rms.iter().find(|r| r.iteration > 0).unwrap();
    let (sc, fc) = (slow.cycles.unwrap(), fast.cycles.unwrap());
    assert!(fc < sc, "fast {fc} cycles, slow {sc} cycles");
    let sol = st.solutions(run).unwrap();
    assert_eq!(sol.len(), 1);
    assert_eq!(sol[0].cycles, Some(fc));
    assert_eq!(sol[0].sample_key, fast.key);
    assert_eq!(
        sol[0].iteration, 0,
        "solved in iteration 0, optimized later"
    );
    // One optimize round improved it, the next found nothing faster and ended the rounds.
    let opt: Vec<_> = s.iterations.iter().filter_map(|i| i.improved).collect();
    assert_eq!(opt, vec![1, 0]);
    // The Pareto set: the fast kernel dominates the slow one unless it needs more memory.
    let front = st.pareto(run).unwrap();
    assert!(
        front
            .iter()
            .any(|p| p.sample_key == fast.key && p.cycles == fc)
    );
    let slow_kept = front.iter().any(|p| p.sample_key == slow.key);
    assert_eq!(slow_kept, slow.onchip_bytes < fast.onchip_bytes);
    // The report shows it.
    let r = stepforge_agent::report::build(&st).unwrap();
    let table = stepforge_agent::report::render_table(&r);
    assert!(table.contains("Pareto sets"), "{table}");
    assert!(
        table.contains(&format!("| norm_rmsnorm | {fc} |")),
        "{table}"
    );
    let html = stepforge_agent::report::render_html(&r);
    assert!(html.contains("<circle class=\"point\""));
}

#[test]
fn feasibility_report_and_a_deeper_fifo() {
    let dir = TempDir::new("feasible");
    let tasks = tasks(&dir);
    let srv = start(&tasks, Arc::new(Mutex::new(Vec::new())));
    // `report`: the paper's functional criterion; feasibility recorded beside it.
    let mut c = cfg(&srv.base, &tasks);
    c.feasibility = Some(Feasibility::Report);
    let s = sim_run(c, &dir.file("report.db"));
    assert_eq!(s.solved, 2);
    let st = Store::open(&dir.file("report.db")).unwrap();
    let run = st.run(None).unwrap().unwrap().id;
    let dl = st
        .samples(run)
        .unwrap()
        .into_values()
        .find(|r| r.task == "rmsnorm_deadlock")
        .unwrap();
    assert_eq!((dl.passed, dl.feasible), (true, Some(false)));
    // A deadlock-free solution only enters the Pareto set.
    assert!(
        st.pareto(run)
            .unwrap()
            .iter()
            .all(|p| p.task != "rmsnorm_deadlock")
    );
    // `require` at a FIFO depth that holds a whole row: feasible, solved.
    let mut c = cfg(&srv.base, &tasks);
    c.fifo_depth = Some(1024);
    let s = sim_run(c, &dir.file("deep.db"));
    assert_eq!(s.solved, 2, "{:?}", s.solved_tasks);
}
