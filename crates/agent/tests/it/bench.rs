//! Overhead bench (DESIGN §16, issue #12): against a loopback provider with 50 ms latency,
//! 26 tasks × 64 samples at concurrency 64 must finish within 1.2× of the ideal wall time
//! (⌈samples / concurrency⌉ × latency). Ignored by default; run in release:
//! `cargo test --release -p stepforge-agent --test it -- --ignored overhead --nocapture`.
//!
//! Each repetition also times a bare client (reqwest at the same concurrency, the same
//! prompts, no loop, no verification, no store) against the same server, interleaved with the
//! loop's runs: on a loaded machine the ideal is out of anyone's reach, and the loop's own
//! overhead is its wall time over the bare client's, measured in the same run.

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
    let bodies = Arc::new(bare_bodies(&cfg.provider.model, cfg.samples as usize));
    let mut ratios = Vec::new();
    let mut over_bare = Vec::new();
    let mut bare_ratios = Vec::new();
    for rep in 0..3 {
        let store = dir.file(&format!("bench{rep}.db"));
        let cpu0 = process_cpu_s();
        let t = Instant::now();
        let s = run(cfg.clone(), &store);
        let wall = t.elapsed();
        let cpu = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
        assert_eq!(s.status, Status::Done);
        assert_eq!((s.tasks, s.solved, s.samples), (26, 26, 26 * 64));
        let calls = s.samples as u32;
        let ideal = latency * calls.div_ceil(64);
        let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
        eprintln!(
            "overhead rep {rep}: {calls} samples, wall {:.3} s, ideal {:.3} s, ratio {ratio:.3}, {} verifications, process CPU {} (loop + loopback server)",
            wall.as_secs_f64(),
            ideal.as_secs_f64(),
            s.verifications,
            cpu.map_or("unknown".into(), |c| format!("{c:.2} s"))
        );
        ratios.push(ratio);
        let bare = bare_client(&server.base, &bodies, cfg.concurrency);
        over_bare.push(wall.as_secs_f64() / bare.as_secs_f64());
        bare_ratios.push(bare.as_secs_f64() / ideal.as_secs_f64());
        eprintln!(
            "bare client rep {rep}: wall {:.3} s, ratio to ideal {:.3}; loop / bare {:.3}",
            bare.as_secs_f64(),
            bare.as_secs_f64() / ideal.as_secs_f64(),
            wall.as_secs_f64() / bare.as_secs_f64()
        );
    }
    ratios.sort_by(f64::total_cmp);
    over_bare.sort_by(f64::total_cmp);
    bare_ratios.sort_by(f64::total_cmp);
    let median = ratios[1];
    eprintln!(
        "overhead median ratio {median:.3} to the ideal, {:.3} to the bare client",
        over_bare[1]
    );
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        eprintln!(
            "load average during the bench: {}",
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    if !cfg!(debug_assertions) {
        // The target is 1.2× the ideal. When even the bare client cannot come near the ideal
        // (a loaded machine: its own ratio above 1.05), that target measures the machine, and
        // the loop is held to 1.2× the bare client of the same run instead.
        let bare_ok = bare_ratios[1] <= 1.05;
        if bare_ok {
            assert!(median <= 1.2, "median wall time {median:.3}× the ideal");
        } else {
            eprintln!(
                "the bare client itself took {:.3}× the ideal: the machine is loaded; checking the loop against the bare client",
                bare_ratios[1]
            );
            assert!(
                over_bare[1] <= 1.2,
                "median wall time {:.3}× the bare client's",
                over_bare[1]
            );
        }
    }
}

/// User + system CPU time of this process in seconds (Linux `/proc`, 100 ticks a second), to
/// tell the loop's own cost from waiting on a loaded machine.
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The OpenAI request bodies of iteration 0: every task's proposer prompt, `k` times.
fn bare_bodies(model: &str, k: usize) -> Vec<serde_json::Value> {
    let system = stepforge_agent::prompt::system_prompt(&stepforge_agent::tool::manual());
    let mut out = Vec::new();
    for (label, text) in stepforge_agent::campaign::read_tasks(&operators()).unwrap() {
        let tool = stepforge_agent::tool::Tool::from_yaml(&label, &text).unwrap();
        let user = stepforge_agent::prompt::proposer_prompt(&tool, &[]);
        let body = serde_json::json!({"model": model, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.7, "max_tokens": 4096});
        out.extend(std::iter::repeat_n(body, k));
    }
    out
}

/// Wall time of sending every body at `concurrency` with a bare reqwest client and reading
/// each answer's text.
fn bare_client(base: &str, bodies: &Arc<Vec<serde_json::Value>>, concurrency: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{base}/chat/completions");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let t = Instant::now();
        let mut handles = Vec::new();
        for i in 0..bodies.len() {
            let (client, sem, url, bodies) = (
                client.clone(),
                Arc::clone(&sem),
                url.clone(),
                Arc::clone(bodies),
            );
            handles.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let v: serde_json::Value = client
                    .post(&url)
                    .json(&bodies[i])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .len()
            }));
        }
        for h in handles {
            assert!(h.await.unwrap() > 0);
        }
        t.elapsed()
    })
}
