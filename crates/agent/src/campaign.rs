//! Starting, resuming and exporting runs: the glue between a [`RunConfig`], the store, the
//! provider and the [`Engine`]. The CLI calls these and only renders what they return.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ProviderKind, RunConfig};
use crate::engine::{Engine, Parts, Progress, Startup, Summary};
use crate::provider::{Provider, batch, replay};
use crate::store::Store;
use crate::tool::{Simulator, Tool};

/// Largest task file read from the tasks directory.
const MAX_TASK_FILE: u64 = 1 << 20;

/// The `*.yaml` task files under `dir` (recursively), sorted by path.
pub fn task_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(format!("no task files (*.yaml) under {}", dir.display()));
    }
    Ok(out)
}

/// The tasks of `dir` as (label, text); labels are paths relative to `dir`.
pub fn read_tasks(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for p in task_files(dir)? {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if len > MAX_TASK_FILE {
            return Err(format!(
                "{}: larger than {MAX_TASK_FILE} bytes",
                p.display()
            ));
        }
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let label = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        out.push((label, text));
    }
    Ok(out)
}

/// Opens every task (loading parses and checks the task file), on all cores: a run's start-up
/// waits for it before the first call. The result and the first error are those of opening the
/// tasks one by one in order.
fn open_tools(tasks: &[(String, String)]) -> Result<Vec<Arc<Tool>>, String> {
    let opened = crate::util::par_map(tasks, |(label, text)| Tool::from_yaml(label, text));
    let mut seen = BTreeSet::new();
    let mut tools = Vec::with_capacity(opened.len());
    for ((label, _), t) in tasks.iter().zip(opened) {
        let t = t?;
        if !seen.insert(t.name().to_string()) {
            return Err(format!("{label}: a second task named `{}`", t.name()));
        }
        tools.push(t);
    }
    tools.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(tools)
}

/// Where a run's transcript goes (live) or comes from (replay).
fn transcript_path(cfg: &RunConfig, store_path: &str) -> String {
    cfg.transcript
        .clone()
        .unwrap_or_else(|| format!("{store_path}.transcript.jsonl"))
}

fn provider(
    cfg: &RunConfig,
    store: &Store,
    run: i64,
    store_path: &str,
) -> Result<Provider, String> {
    let p = &cfg.provider;
    match p.kind {
        ProviderKind::Openai | ProviderKind::Anthropic => {
            let w = replay::TranscriptWriter::open(
                &transcript_path(cfg, store_path),
                p.kind.as_str(),
                &p.model,
            )?;
            Provider::http(p, cfg.concurrency, Some(w))
        }
        ProviderKind::Replay => {
            let path = cfg.transcript.clone().ok_or(
                "--provider replay needs --transcript FILE (the transcript of a live run)",
            )?;
            Ok(Provider::replay(
                p,
                cfg.concurrency,
                replay::ReplayBook::load(&path)?,
            ))
        }
        ProviderKind::Batch => Ok(Provider::batch(
            p,
            cfg.concurrency,
            batch::BatchBook::new(store.batch_answers(run)?),
        )),
    }
}

/// Optional parts of a run that the caller provides.
pub struct Hooks {
    pub progress: Arc<dyn Progress>,
    pub simulator: Option<Arc<dyn Simulator>>,
}

/// Runs the engine over `tools` (`None`: the tasks stored with the run, for a resume).
async fn drive(
    cfg: RunConfig,
    store: Arc<Store>,
    run: i64,
    store_path: &str,
    hooks: Hooks,
    tools: Option<Vec<Arc<Tool>>>,
    mut startup: Startup,
) -> Result<Summary, String> {
    let tools = match tools {
        Some(t) => t,
        None => {
            let tasks: Vec<(String, String)> = store
                .tasks(run)?
                .into_iter()
                .map(|(_, path, text)| (path, text))
                .collect();
            let tools = open_tools(&tasks)?;
            startup.mark("open_tools");
            tools
        }
    };
    let provider = Arc::new(provider(&cfg, &store, run, store_path)?);
    startup.mark("provider");
    let engine = Engine::new(Parts {
        cfg,
        run,
        store,
        provider,
        tools,
        simulator: hooks.simulator,
        progress: hooks.progress,
        batch_prefix: store_path.to_string(),
        startup,
    })?;
    Ok(engine.run().await)
}

/// Starts a new run in the store at `store_path`.
pub async fn start(cfg: RunConfig, store_path: &str, hooks: Hooks) -> Result<Summary, String> {
    let mut startup = Startup::begin();
    cfg.validate(hooks.simulator.is_some())?;
    let tasks = read_tasks(Path::new(&cfg.tasks_dir))?;
    startup.mark("read_tasks");
    // Opened once: every task file is loaded (and checked) before anything is stored.
    let tools = open_tools(&tasks)?;
    startup.mark("open_tools");
    let store = Arc::new(Store::open(store_path)?);
    startup.mark("store_open");
    let config = serde_json::to_string(&cfg).map_err(|e| e.to_string())?;
    let prices = serde_json::to_string(&cfg.prices).map_err(|e| e.to_string())?;
    let run = {
        let rows: Vec<(&str, &str, &str)> = tools
            .iter()
            .map(|t| (t.name(), t.path(), t.task_text()))
            .collect();
        let version = crate::tool::toolchain_version();
        store.create_run_with_tasks(&config, &prices, &version, &rows)?
    };
    startup.mark("create_run");
    drive(cfg, store, run, store_path, hooks, Some(tools), startup).await
}

/// Continues the latest run of the store (after a kill, or with batch answers).
pub async fn resume(
    store_path: &str,
    responses: Option<&str>,
    hooks: Hooks,
) -> Result<Summary, String> {
    let startup = Startup::begin();
    if !Path::new(store_path).exists() {
        return Err(format!("no store at {store_path}"));
    }
    let store = Arc::new(Store::open(store_path)?);
    let run = store
        .run(None)?
        .ok_or_else(|| format!("{store_path} holds no run"))?;
    let cfg: RunConfig = serde_json::from_str(&run.config)
        .map_err(|e| format!("the stored run config does not parse: {e}"))?;
    if cfg.provider.kind == ProviderKind::Batch {
        let file = match responses {
            Some(f) => f.to_string(),
            None => run
                .status
                .strip_prefix("waiting:")
                .map(|r| r.replace(".requests.jsonl", ".output.jsonl"))
                .ok_or("the run is not waiting for batch answers; pass --responses FILE")?,
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read batch output {file}: {e}"))?;
        let lines = batch::read_output(&text).map_err(|e| format!("{file}: {e}"))?;
        store.put_batch_answers(run.id, &lines)?;
    } else if responses.is_some() {
        return Err("--responses is only for batch runs".into());
    }
    drive(cfg, store, run.id, store_path, hooks, None, startup).await
}

/// Writes the run's solutions as task files with `impl` into `out_dir` (same relative paths
/// as the tasks); returns how many were written.
pub fn export(store_path: &str, out_dir: &Path) -> Result<usize, String> {
    let store = Store::open(store_path)?;
    let run = store
        .run(None)?
        .ok_or_else(|| format!("{store_path} holds no run"))?;
    let tasks = store.tasks(run.id)?;
    let mut n = 0;
    for sol in store.solutions(run.id)? {
        let Some((_, path, text)) = tasks.iter().find(|(name, _, _)| *name == sol.task) else {
            continue;
        };
        let tool = Tool::from_yaml(path, text)?;
        let out = out_dir.join(path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let body = crate::prompt::task_with_impl(&tool.prompt_text(), &sol.program);
        std::fs::write(&out, body).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        n += 1;
    }
    Ok(n)
}
