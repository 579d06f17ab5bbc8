//! Shared helpers: the operator library, scripted answers, temporary stores.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use stepforge_agent::config::{ProviderKind, RunConfig};
use stepforge_agent::engine::NoProgress;
use stepforge_agent::{Hooks, Summary};

use crate::server::{self, Api, Reply};

pub fn operators() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../operators")
}

/// test_name → (group, reference impl) of every operator task.
pub fn references() -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (label, text) in stepforge_agent::campaign::read_tasks(&operators()).unwrap() {
        let tool = stepforge_agent::tool::Tool::from_yaml(&label, &text).unwrap();
        let group = label.split('/').next().unwrap().to_string();
        out.insert(
            tool.name().to_string(),
            (group, tool.reference_impl().unwrap().to_string()),
        );
    }
    out
}

pub fn yaml_answer(program: &str) -> String {
    let mut s = String::from("```yaml\nimpl: |\n");
    for l in program.lines() {
        s.push_str("  ");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("```\n");
    s
}

pub const WRONG: &str = "Y = step.Map(fn=fn_missing).apply(X)\nreturn Y\n";

/// Right at once: these groups. Right only with a demonstration: `LATER`. Never: the rest.
pub const AT_ONCE: &[&str] = &["attention", "bmm", "gemm", "norm"];
pub const LATER: &[&str] = &["rope", "moe-index"];

/// The layernorm_scalar reference without its Copy: the guardian must repair it.
pub fn without_copy(program: &str) -> String {
    program
        .lines()
        .filter(|l| !l.contains("step.Copy()"))
        .map(|l| l.replace("(X1)", "(X)").replace("(X2)", "(X)"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The scripted proposer of the end-to-end tests (a pure function of the request).
pub fn scripted(refs: &BTreeMap<String, (String, String)>, req: &serde_json::Value) -> String {
    let prompt = server::first_user_text(req);
    let task = server::prompt_task(&prompt);
    let Some((group, reference)) = refs.get(&task) else {
        return "I do not know this task.".into();
    };
    let right = AT_ONCE.contains(&group.as_str())
        || (LATER.contains(&group.as_str()) && server::has_demonstration(&prompt));
    if !right {
        return yaml_answer(WRONG);
    }
    if task == "norm_layernorm_scalar" {
        return yaml_answer(&without_copy(reference));
    }
    yaml_answer(reference)
}

pub fn scripted_server(latency_ms: u64) -> server::Server {
    let refs = Arc::new(references());
    server::Server::start(
        Arc::new(move |_api: Api, req: &serde_json::Value, _n| Reply::Answer(scripted(&refs, req))),
        std::time::Duration::from_millis(latency_ms),
    )
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("sf-agent-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(base_url: &str, kind: ProviderKind) -> RunConfig {
    let mut c = RunConfig {
        tasks_dir: operators().display().to_string(),
        samples: 2,
        concurrency: 8,
        iterations: 10,
        ..RunConfig::default()
    };
    c.provider.kind = kind;
    c.provider.base_url = base_url.to_string();
    c.provider.model = "scripted".into();
    c.provider.timeout_s = 10.0;
    c.provider.backoff_base_s = 0.01;
    c.prices.insert(
        "scripted".into(),
        stepforge_agent::config::Price {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
        },
    );
    c
}

pub fn hooks() -> Hooks {
    Hooks {
        progress: Arc::new(NoProgress),
        simulator: None,
    }
}

pub fn run(cfg: RunConfig, store: &str) -> Summary {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(stepforge_agent::start(cfg, store, hooks()))
        .unwrap()
}

pub fn resume(store: &str, responses: Option<&str>) -> Summary {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(stepforge_agent::resume(store, responses, hooks()))
        .unwrap()
}

pub fn dump(store: &str) -> serde_json::Value {
    let s = stepforge_agent::store::Store::open(store).unwrap();
    let run = s.run(None).unwrap().unwrap();
    s.dump(run.id).unwrap()
}

/// A tasks directory with three groups of the operator library: one answered right at once
/// (norm), one only with a demonstration (rope), one never (moe-expert).
pub fn subset(dir: &TempDir) -> String {
    let d = dir.0.join("tasks");
    for g in ["norm", "rope", "moe-expert"] {
        std::fs::create_dir_all(d.join(g)).unwrap();
        for e in std::fs::read_dir(operators().join(g)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join(g).join(p.file_name().unwrap())).unwrap();
        }
    }
    d.display().to_string()
}
