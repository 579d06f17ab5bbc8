//! Overhead bench (DESIGN §16, issue #12): against a loopback provider with 50 ms latency,
//! 26 tasks × 64 samples at concurrency 64 must finish within 1.2× of the ideal wall time
//! (⌈samples / concurrency⌉ × latency). Ignored by default; run in release:
//! `cargo test --release -p stepforge-agent --test it -- --ignored overhead --nocapture`.
//!
//! Each repetition also times, against the same server and interleaved with the loop's runs,
//! a bare reqwest client (the same prompts at the same concurrency; no loop, no verification,
//! no store) and a raw client (blocking TCP, minimal HTTP/1.1: the floor any client reaches on
//! this server). On a loaded machine the ideal is out of anyone's reach; the clients' numbers
//! of the same run say how far.
//!
//! History: the loopback server once wrote each reply in two pieces with Nagle's algorithm on,
//! so the body waited for the client's delayed ACK (40 ms) and every call took ~91 ms instead
//! of 50. Both clients then took ~1.85× the ideal and the loop looked slow; the sequential
//! probe below guards against that class of server fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stepforge_agent::Status;
use stepforge_agent::config::ProviderKind;

use crate::common::*;
use crate::server::{self, Api, Reply, Server};

const REPS: usize = 5;

/// Sorted copy's middle element.
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn s(d: Duration) -> f64 {
    d.as_secs_f64()
}

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

    // The server itself: one call at a time must take the configured latency, not more.
    let few = Arc::new(bodies[..20].to_vec());
    let per_call = s(bare_client(&server.base, &few, 1)) / 20.0;
    eprintln!(
        "sequential calls (reqwest): {:.1} ms each, latency {} ms",
        per_call * 1e3,
        latency.as_millis()
    );

    let (mut loop_r, mut bare_r, mut raw_r) = (Vec::new(), Vec::new(), Vec::new());
    // Every task's k samples, `concurrency` calls at a time, each one latency long.
    let calls = 26 * cfg.samples;
    let ideal = latency * calls.div_ceil(cfg.concurrency as u32);
    for rep in 0..REPS {
        let store = dir.file(&format!("bench{rep}.db"));
        server.span.reset();
        let cpu0 = process_cpu_s();
        let t = Instant::now();
        let sum = run(cfg.clone(), &store);
        let wall = t.elapsed();
        let end = Instant::now();
        let cpu = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
        assert_eq!(sum.status, Status::Done);
        assert_eq!(
            (sum.tasks, sum.solved, sum.samples),
            (26, 26, u64::from(calls))
        );
        let phases = server.span.get().map_or("unknown".into(), |(first, last)| {
            format!(
                "{:.3} s to the first call, {:.3} s of calls, {:.3} s after the last reply",
                s(first - t),
                s(last - first),
                s(end - last)
            )
        });
        eprintln!(
            "rep {rep} loop: {calls} samples, wall {:.3} s = {:.3}× ideal {:.3} s ({phases}); {} verifications, process CPU {}; evaluating {} answers {:.3} s, {} store commits {:.3} s",
            s(wall),
            s(wall) / s(ideal),
            s(ideal),
            sum.verifications,
            cpu_text(cpu),
            sum.timings.evaluations,
            sum.timings.evaluate_s,
            sum.timings.store_commits,
            sum.timings.store_s,
        );
        let split: Vec<String> = sum
            .timings
            .startup
            .iter()
            .map(|(n, v)| format!("{n} {:.1}", v * 1e3))
            .collect();
        let tail = match (server.span.get(), sum.timings.finished_at) {
            (Some((_, last)), Some(f)) => format!(
                "{:.1} ms from the last reply to the summary, {:.1} ms from there to the end",
                s(f.saturating_duration_since(last)) * 1e3,
                s(end.saturating_duration_since(f)) * 1e3
            ),
            _ => "unknown".into(),
        };
        eprintln!(
            "rep {rep} start-up (ms): {}; first call at {} ms; merges and finish {:.1} ms; tail: {tail}",
            split.join(", "),
            sum.timings
                .first_call_s
                .map_or("?".into(), |f| format!("{:.1}", f * 1e3)),
            sum.timings.merge_s * 1e3
        );
        let cpu0 = process_cpu_s();
        let bare = bare_client(&server.base, &bodies, cfg.concurrency);
        let bare_cpu = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
        let raw = raw_client(&server.base, &bodies, cfg.concurrency);
        eprintln!(
            "rep {rep} bare reqwest: {:.3} s = {:.3}× ideal, process CPU {}; raw TCP: {:.3} s = {:.3}× ideal; loop / bare {:.3}",
            s(bare),
            s(bare) / s(ideal),
            cpu_text(bare_cpu),
            s(raw),
            s(raw) / s(ideal),
            s(wall) / s(bare)
        );
        loop_r.push(s(wall) / s(ideal));
        bare_r.push(s(bare) / s(ideal));
        raw_r.push(s(raw) / s(ideal));
    }
    let over_bare: Vec<f64> = loop_r.iter().zip(&bare_r).map(|(l, b)| l / b).collect();
    let (lm, bm, rm, om) = (
        median(&loop_r),
        median(&bare_r),
        median(&raw_r),
        median(&over_bare),
    );
    eprintln!(
        "medians of {REPS}: loop {lm:.3}× ideal, bare reqwest {bm:.3}×, raw TCP {rm:.3}×; loop / bare {om:.3}"
    );
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        eprintln!(
            "load average after the bench: {}",
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    if !cfg!(debug_assertions) {
        // A server slower than its latency makes every number here meaningless.
        assert!(
            per_call < s(latency) * 1.3,
            "the loopback server took {:.1} ms per call for a {} ms latency",
            per_call * 1e3,
            latency.as_millis()
        );
        // The target is 1.2× the ideal. When even the bare client cannot come near the ideal
        // (a loaded machine: its own ratio above 1.05), that target measures the machine, and
        // the loop is held to 1.2× the bare client of the same run instead.
        if bm <= 1.05 {
            assert!(lm <= 1.2, "median wall time {lm:.3}× the ideal");
        } else {
            eprintln!(
                "the bare client itself took {bm:.3}× the ideal: the machine is loaded; checking the loop against the bare client"
            );
            assert!(om <= 1.2, "median wall time {om:.3}× the bare client's");
        }
    }
}

fn cpu_text(cpu: Option<f64>) -> String {
    cpu.map_or("unknown".into(), |c| format!("{c:.2} s"))
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
    // reqwest is built without a crypto provider; the loop installs one, this client may run
    // first.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Wall time of sending every body over `concurrency` persistent blocking TCP connections,
/// each a thread speaking minimal HTTP/1.1: the floor any client can reach on this server.
fn raw_client(base: &str, bodies: &Arc<Vec<serde_json::Value>>, concurrency: usize) -> Duration {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let wire: Arc<Vec<Vec<u8>>> = Arc::new(
        bodies
            .iter()
            .map(|b| {
                let body = b.to_string();
                format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (wire, next, addr) = (Arc::clone(&wire), Arc::clone(&next), addr.clone());
            std::thread::spawn(move || {
                let conn = std::net::TcpStream::connect(&addr).unwrap();
                conn.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(req) = wire.get(i) else { break };
                    out.write_all(req).unwrap();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    assert!(len > 0);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    t.elapsed()
}
