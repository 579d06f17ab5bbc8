//! `stepforge bench --sim PATH`: simulator throughput (issue #10, DESIGN §12 and §16).
//!
//! For every task, its reference program is simulated through the session API in both modes
//! (timing-only and functional), at the default dims and, with `--dims`, at scaled dims. Each
//! configuration runs once to warm the session's caches (dims, seed data) and then `--sim-iters`
//! times; a row gives the medians of those runs: wall time and the thread's CPU time (on a
//! shared machine, CPU time is the one-core cost), and the rates derived from them — channel
//! elements per second (data elements pushed through all FIFOs) and simulated cycles per
//! second.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use stepforge_driver::{Session, SimOptions};

use crate::cmd_bench::{machine_line, quantile};
use crate::{Format, Status, output};

/// This thread's CPU time in nanoseconds (Linux `schedstat`); `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// One configuration's measurements.
struct Row {
    task: String,
    dims: String,
    mode: &'static str,
    elements: u64,
    cycles: u64,
    wall_ms: f64,
    cpu_ms: Option<f64>,
    deadlock: bool,
    error: Option<String>,
}

impl Row {
    /// The time the rates are per: the thread's CPU time for runs long enough for the
    /// scheduler's accounting to resolve (≥ 50 ms), else wall time.
    fn basis_ms(&self) -> (f64, &'static str) {
        match self.cpu_ms {
            Some(c) if self.wall_ms >= 50.0 && c > 0.0 => (c, "cpu"),
            _ => (self.wall_ms, "wall"),
        }
    }

    /// Elements and cycles per second of [`Row::basis_ms`].
    fn rates(&self) -> (f64, f64) {
        let s = self.basis_ms().0 / 1e3;
        if s <= 0.0 {
            return (0.0, 0.0);
        }
        (self.elements as f64 / s, self.cycles as f64 / s)
    }

    fn to_json(&self) -> Value {
        let (eps, cps) = self.rates();
        json!({
            "task": self.task, "dims": self.dims, "mode": self.mode,
            "channel_elements": self.elements, "cycles": self.cycles,
            "median_wall_ms": self.wall_ms, "median_cpu_ms": self.cpu_ms,
            "elements_per_s": eps, "cycles_per_s": cps, "rate_basis": self.basis_ms().1,
            "deadlock": self.deadlock, "error": self.error,
        })
    }
}

fn measure(s: &Session, dims: &[(String, i64)], timing_only: bool, iters: u32) -> Row {
    let opts = SimOptions {
        dims: dims.to_vec(),
        timing_only,
        ..SimOptions::default()
    };
    let dims_label = if dims.is_empty() {
        "default".to_string()
    } else {
        dims.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut row = Row {
        task: s.name().to_string(),
        dims: dims_label,
        mode: if timing_only {
            "timing-only"
        } else {
            "functional"
        },
        elements: 0,
        cycles: 0,
        wall_ms: 0.0,
        cpu_ms: None,
        deadlock: false,
        error: None,
    };
    let warm = s.simulate(None, &opts);
    let Some(run) = &warm.run else {
        row.error = Some(
            warm.diagnostics
                .first()
                .map_or("not simulated".to_string(), |d| {
                    format!("{}: {}", d.code, d.message)
                }),
        );
        return row;
    };
    row.elements = run.channels.iter().map(|c| c.elements).sum();
    row.cycles = run.cycles;
    row.deadlock = run.deadlock.is_some();
    let mut walls = Vec::with_capacity(iters as usize);
    let mut cpus = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        std::hint::black_box(s.simulate(None, &opts));
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (c, thread_cpu_ns()) {
            cpus.push(b.saturating_sub(a) as f64 / 1e6);
        }
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    row.wall_ms = quantile(&walls, 0.5);
    row.cpu_ms = (cpus.len() == walls.len()).then(|| quantile(&cpus, 0.5));
    row
}

/// Runs the simulator benchmark over `files`.
pub fn run(
    files: &[std::path::PathBuf],
    scaled: &[(String, i64)],
    iters: u32,
    functional_scaled: bool,
    format: Format,
) -> Status {
    let mut rows = Vec::new();
    for file in files {
        let session = match Session::open(Path::new(file)) {
            Ok(s) => s,
            Err(e) => {
                output::error(&e.to_string());
                return Status::Usage;
            }
        };
        let mut configs: Vec<(&[(String, i64)], bool)> = vec![(&[], true), (&[], false)];
        if !scaled.is_empty() {
            configs.push((scaled, true));
            if functional_scaled {
                configs.push((scaled, false));
            }
        }
        for (dims, timing_only) in configs {
            rows.push(measure(&session, dims, timing_only, iters));
        }
    }
    let machine = machine_line();
    match format {
        Format::Json => output::json(&json!({
            "machine": machine,
            "iters": iters,
            "sim": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        })),
        Format::Human => {
            output::line(&format!(
                "machine: {machine}; {iters} runs per row after 1 warm-up; medians; rates per second of the thread's CPU time (`cpu`), or of wall time for runs under 50 ms (`wall`)"
            ));
            output::line("");
            output::line(
                "| task | dims | mode | channel elements | cycles | wall ms | cpu ms | M elements/s | M cycles/s | per |",
            );
            output::line("|---|---|---|---:|---:|---:|---:|---:|---:|---|");
            for r in &rows {
                if let Some(e) = &r.error {
                    output::line(&format!(
                        "| {} | {} | {} | {e} | | | | | | |",
                        r.task, r.dims, r.mode
                    ));
                    continue;
                }
                let (eps, cps) = r.rates();
                let dl = if r.deadlock { " (deadlock)" } else { "" };
                output::line(&format!(
                    "| {} | {} | {}{dl} | {} | {} | {:.2} | {} | {:.2} | {:.2} | {} |",
                    r.task,
                    r.dims,
                    r.mode,
                    r.elements,
                    r.cycles,
                    r.wall_ms,
                    r.cpu_ms.map_or("-".to_string(), |c| format!("{c:.2}")),
                    eps / 1e6,
                    cps / 1e6,
                    r.basis_ms().1
                ));
            }
        }
    }
    if rows.iter().any(|r| r.error.is_some() || r.deadlock) {
        Status::Rejected
    } else {
        Status::Ok
    }
}
