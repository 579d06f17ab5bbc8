//! Overhead bench (DESIGN §16, issue #12): against a loopback provider with 50 ms latency,
//! 26 tasks × 64 samples at concurrency 64 must finish within 1.2× of the ideal wall time
//! (⌈samples / concurrency⌉ × latency). Ignored by default; run in release:
//! `cargo test --release -p stepforge-agent --test it -- --ignored overhead --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stepforge_agent::Status;
use stepforge_agent::config::ProviderKind;

use crate::common::*;
use crate::server::{self, Api, Reply, Server};

#[test]
#[ignore = "a timing bench: run in release with --ignored"]
fn overhead() {
    let latency = Duration::from_millis(50);
    let refs = Arc::new(references());
    let answers: Arc<std::collections::BTreeMap<String, String>> = Arc::new(
        refs.iter()
            .map(|(k, (_, p))| (k.clone(), yaml_answer(p)))
            .collect(),
    );
    let server = Server::start(
        Arc::new(move |_: Api, req: &serde_json::Value, _| {
            let task = server::prompt_task(&server::first_user_text(req));
            Reply::Answer(answers.get(&task).cloned().unwrap_or_default())
        }),
        latency,
    );
    let dir = TempDir::new("bench");
    let mut cfg = config(&server.base, ProviderKind::Openai);
    cfg.samples = 64;
    cfg.concurrency = 64;
    cfg.iterations = 0;
    cfg.repairs = 0;
    let mut ratios = Vec::new();
    for rep in 0..3 {
        let store = dir.file(&format!("bench{rep}.db"));
        let t = Instant::now();
        let s = run(cfg.clone(), &store);
        let wall = t.elapsed();
        assert_eq!(s.status, Status::Done);
        assert_eq!((s.tasks, s.solved, s.samples), (26, 26, 26 * 64));
        let calls = s.samples as u32;
        let ideal = latency * calls.div_ceil(64);
        let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
        eprintln!(
            "overhead rep {rep}: {calls} samples, wall {:.3} s, ideal {:.3} s, ratio {ratio:.3}, {} verifications",
            wall.as_secs_f64(),
            ideal.as_secs_f64(),
            s.verifications
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[1];
    eprintln!("overhead median ratio {median:.3}");
    if !cfg!(debug_assertions) {
        assert!(median <= 1.2, "median wall time {median:.3}× the ideal");
    }
}
