//! `stepforge bench DIR|TASK`: verification latency per task (DESIGN §16, first version).
//! Each task's reference impl is verified once to warm up, then `--iters` times; the table
//! gives the median and p95 of those runs (3 seeds each by default), with a machine line on
//! top and the total of the medians at the bottom.
//!
//! Two columns compare the two ways a candidate program is verified, in the same run: a
//! per-call `verify` (everything task-level redone: dims, `global`, data, references) and a
//! verification through a warm [`Session`] (task-level work cached), which is what the agent
//! and the servers do for the thousands of candidates of one task.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use stepforge_driver::Session;
use stepforge_exec::{Verdict, VerifyOptions};

use crate::cmd_verify::{load, task_files};
use crate::common::{LimitArgs, MAX_SEEDS};
use crate::{Format, Status, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A task file or a directory of task files (searched recursively).
    pub path: PathBuf,
    /// Timed runs per task (after one warm-up run), at least 1.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Seeds per verification, between 1 and 1000.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SEEDS)))]
    pub seeds: u32,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Native-code mode of the latency benchmark: auto, always or never.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = crate::cmd_verify::parse_jit)]
    pub jit_mode: stepforge_exec::JitMode,
    /// Instead of latency: per element function, interpreted vs native time per stream op
    /// and compile time (one verification each way, same run).
    #[arg(long)]
    pub jit: bool,
    /// Output format: `human` (a markdown table) or `json` (one object).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Benchmark the simulator instead (channel elements/s, simulated cycles/s; both modes).
    #[arg(long)]
    pub sim: bool,
    /// Dimension overrides `K=V,K2=V2`: for verification (and --jit), applied to every task
    /// that has those dims; with --sim, scaled dims to run as well (timing-only unless
    /// --sim-functional-scaled).
    #[arg(long, value_name = "K=V,..")]
    pub dims: Option<String>,
    /// With --sim: timed runs per configuration (after one warm-up), at least 1.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub sim_iters: u32,
    /// With --sim and --dims: also run functional mode at the scaled dims.
    #[arg(long, requires = "dims")]
    pub sim_functional_scaled: bool,
}

/// `cpu model, N cores` from /proc/cpuinfo and the scheduler (best effort).
pub(crate) fn machine_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    format!("{model}, {cores} cores")
}

/// The value at quantile `q` (nearest rank) of sorted `xs`.
pub(crate) fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let rank = (q * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

struct Row {
    task: String,
    verdict: Verdict,
    median_us: f64,
    p95_us: f64,
    /// Median of verifying the reference program as a candidate through a warm session.
    session_us: f64,
}

/// Median and p95 (µs) of `iters` timed calls of `f`.
fn time(iters: u32, mut f: impl FnMut()) -> (f64, f64) {
    let mut times = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (quantile(&times, 0.5), quantile(&times, 0.95))
}

pub fn run(args: &Args) -> Status {
    let files = match task_files(&args.path, args.format) {
        Ok(f) => f,
        Err(s) => return s,
    };
    if args.sim {
        let scaled = match crate::dims_flag(args.dims.as_deref()) {
            Ok(d) => d,
            Err(s) => return s,
        };
        return crate::cmd_bench_sim::run(
            &files,
            &scaled,
            args.sim_iters,
            args.sim_functional_scaled,
            args.format,
        );
    }
    let mut opts = VerifyOptions::with_seed_count(args.seeds);
    opts.limits = args.limits.apply(opts.limits);
    opts.limits.jit = args.jit_mode;
    opts.dims = match crate::dims_flag(args.dims.as_deref()) {
        Ok(d) => d,
        Err(s) => return s,
    };
    if args.jit {
        return run_jit(args, &files, &opts);
    }
    let iters = args.iters;
    let mut rows = Vec::with_capacity(files.len());
    for file in &files {
        let loaded = match load(file) {
            Ok(l) => l,
            Err(s) => return s,
        };
        let warm = stepforge_driver::verify_loaded(&loaded, None, &opts);
        let (median_us, p95_us) = time(iters, || {
            std::hint::black_box(stepforge_driver::verify_loaded(&loaded, None, &opts));
        });
        let session = Session::from_loaded(loaded).ok();
        let candidate = session
            .as_ref()
            .and_then(|s| s.reference_impl().map(str::to_string));
        let session_us = match (&session, &candidate) {
            (Some(s), Some(c)) => {
                std::hint::black_box(s.verify(Some(c), &opts));
                time(iters, || {
                    std::hint::black_box(s.verify(Some(c), &opts));
                })
                .0
            }
            _ => f64::NAN,
        };
        rows.push(Row {
            task: warm.task,
            verdict: warm.verdict,
            median_us,
            p95_us,
            session_us,
        });
    }
    let total: f64 = rows.iter().map(|r| r.median_us).sum();
    let total_session: f64 = rows.iter().map(|r| r.session_us).sum();
    let mut ratios: Vec<f64> = rows.iter().map(|r| r.median_us / r.session_us).collect();
    ratios.sort_by(f64::total_cmp);
    let median_ratio = quantile(&ratios, 0.5);
    let machine = machine_line();
    match args.format {
        Format::Json => output::json(&json!({
            "machine": machine,
            "iters": iters,
            "seeds": args.seeds,
            "tasks": rows.iter().map(|r| json!({
                "task": r.task, "verdict": r.verdict,
                "median_us": r.median_us, "p95_us": r.p95_us,
                "session_median_us": r.session_us,
            })).collect::<Vec<_>>(),
            "total_median_us": total,
            "total_session_median_us": total_session,
            "median_speedup": median_ratio,
        })),
        Format::Human => {
            output::line(&format!(
                "machine: {machine}; {iters} runs per task after 1 warm-up; {} seeds per verification",
                args.seeds
            ));
            output::line("");
            output::line(
                "| task | verdict | per-call median (us) | per-call p95 (us) | session median (us) | speedup |",
            );
            output::line("|---|---|---:|---:|---:|---:|");
            for r in &rows {
                output::line(&format!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1}x |",
                    r.task,
                    r.verdict,
                    r.median_us,
                    r.p95_us,
                    r.session_us,
                    r.median_us / r.session_us
                ));
            }
            output::line(&format!(
                "| **total** | | {total:.1} | | {total_session:.1} | median {median_ratio:.1}x |"
            ));
        }
    }
    if rows.iter().all(|r| r.verdict == Verdict::Pass) {
        Status::Ok
    } else {
        Status::Rejected
    }
}

/// Per element function of one task: interpreted vs native µs per stream op.
struct JitRow {
    task: String,
    func: String,
    interp_us: f64,
    jit_us: f64,
    compile_us: u64,
    compiled: bool,
    fallback: Option<String>,
}

fn per_call(us: u64, calls: u64) -> f64 {
    if calls == 0 {
        f64::NAN
    } else {
        us as f64 / calls as f64
    }
}

/// The dims of `opts` that `task` has (a directory mixes tasks with different dims).
fn dims_for(loaded: &stepforge_task::Loaded, opts: &VerifyOptions) -> VerifyOptions {
    let mut o = opts.clone();
    if let Some(t) = &loaded.task {
        let known = stepforge_task::used_symbols(t);
        o.dims.retain(|(k, _)| known.contains(k));
    }
    o
}

fn run_jit(args: &Args, files: &[PathBuf], opts: &VerifyOptions) -> Status {
    let mut rows = Vec::new();
    let mut all_pass = true;
    for file in files {
        let loaded = match load(file) {
            Ok(l) => l,
            Err(s) => return s,
        };
        let base = dims_for(&loaded, opts);
        let mut interp = base.clone();
        interp.limits.jit = stepforge_exec::JitMode::Never;
        let mut native = base;
        native.limits.jit = stepforge_exec::JitMode::Always;
        // Fresh caches each way, so each report counts only its own run.
        let ri = stepforge_driver::verify_loaded(&loaded, None, &interp);
        let rn = stepforge_driver::verify_loaded(&loaded, None, &native);
        all_pass &= ri.verdict == Verdict::Pass && rn.verdict == Verdict::Pass;
        for j in &rn.jit {
            let i = ri.jit.iter().find(|x| x.name == j.name);
            rows.push(JitRow {
                task: rn.task.clone(),
                func: j.name.clone(),
                interp_us: i.map_or(f64::NAN, |i| per_call(i.interp_us, i.interp_calls)),
                jit_us: per_call(j.native_us, j.native_calls),
                compile_us: j.compile_us,
                compiled: j.compiled,
                fallback: j.fallback.clone(),
            });
        }
    }
    let mut compile: Vec<f64> = rows
        .iter()
        .filter(|r| r.compiled)
        .map(|r| r.compile_us as f64)
        .collect();
    compile.sort_by(f64::total_cmp);
    let compile_median_us = quantile(&compile, 0.5);
    let compile_max_us = compile.last().copied().unwrap_or(0.0);
    match args.format {
        Format::Json => output::json(&json!({
            "machine": machine_line(),
            "seeds": args.seeds,
            "compiled_fns": compile.len(),
            "compile_median_us": compile_median_us,
            "compile_max_us": compile_max_us,
            "jit": rows.iter().map(|r| json!({
                "task": r.task, "fn": r.func,
                "interp_us": r.interp_us, "jit_us": r.jit_us,
                "compile_us": r.compile_us, "compiled": r.compiled,
                "fallback": r.fallback,
            })).collect::<Vec<_>>(),
        })),
        Format::Human => {
            output::line(&format!(
                "machine: {}; {} seed(s); µs per stream op",
                machine_line(),
                args.seeds
            ));
            output::line("");
            output::line(
                "| task | fn | interp (us) | native (us) | speedup | compile (us) | note |",
            );
            output::line("|---|---|---:|---:|---:|---:|---|");
            for r in &rows {
                output::line(&format!(
                    "| {} | {} | {:.1} | {:.1} | {:.1}x | {} | {} |",
                    r.task,
                    r.func,
                    r.interp_us,
                    r.jit_us,
                    r.interp_us / r.jit_us,
                    r.compile_us,
                    r.fallback.as_deref().unwrap_or("")
                ));
            }
            output::line("");
            output::line(&format!(
                "compile time over {} compiled functions: median {:.0} us, max {:.0} us",
                compile.len(),
                compile_median_us,
                compile_max_us
            ));
        }
    }
    if all_pass {
        Status::Ok
    } else {
        Status::Rejected
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_use_nearest_rank() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(quantile(&xs, 0.5), 5.0);
        assert_eq!(quantile(&xs, 0.95), 10.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
    }
}
