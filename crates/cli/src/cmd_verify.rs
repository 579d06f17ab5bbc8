//! `stepforge verify TASK.yaml|DIR`: check, run on seeded data and compare with the references
//! (DESIGN §9, §11). JSON: one report object per line per task. Human: diagnostics on stderr,
//! a verdict line per task, and for a directory a summary table.

use std::path::{Path, PathBuf};

use stepforge_exec::{ExecLimits, Origin, Verdict, VerifyOptions, VerifyReport};
use stepforge_syntax::Diagnostic;

use crate::{Format, Status, dims_flag, output, read_input};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A task file, or a directory searched recursively for `*.yaml` / `*.yml` task files.
    pub task: PathBuf,
    /// The program to verify (a bare program or a raw LLM answer); default: the task's `impl`.
    #[arg(long = "impl")]
    pub impl_file: Option<PathBuf>,
    /// Number of seeds (seeds 0..N).
    #[arg(long, default_value_t = 3)]
    pub seeds: u32,
    /// Dimension overrides: `K=V,K2=V2`.
    #[arg(long)]
    pub dims: Option<String>,
    /// Relative tolerance (overrides the task's `tolerance:`).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Absolute tolerance (overrides the task's `tolerance:`).
    #[arg(long)]
    pub atol: Option<f64>,
    /// Wall-time limit per verification, in milliseconds.
    #[arg(long = "time-limit-ms")]
    pub time_limit_ms: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Task files under `path` (the file itself when it is one), sorted.
pub fn task_files(path: &Path) -> Result<Vec<PathBuf>, Status> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        output::error(&format!("{}: no such file or directory", path.display()));
        return Err(Status::Usage);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                output::error(&format!("cannot read {}: {e}", dir.display()));
                return Err(Status::Usage);
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        output::error(&format!("{}: no task files (*.yaml) found", path.display()));
        return Err(Status::Usage);
    }
    Ok(out)
}

/// Loads a task file; an unreadable file is a usage error (exit 2).
pub fn load(path: &Path) -> Result<stepforge_task::Loaded, Status> {
    stepforge_task::load_file(path).map_err(|e| {
        output::error(&format!("cannot read {}: {e}", path.display()));
        Status::Usage
    })
}

pub fn run(args: &Args) -> Status {
    let mut opts = VerifyOptions::with_seed_count(args.seeds);
    opts.dims = match dims_flag(args.dims.as_deref()) {
        Ok(d) => d,
        Err(s) => return s,
    };
    for (flag, v) in [("--rtol", args.rtol), ("--atol", args.atol)] {
        if v.is_some_and(|x| !(x.is_finite() && x >= 0.0)) {
            output::error(&format!("{flag} must be a non-negative number"));
            return Status::Usage;
        }
    }
    opts.rtol = args.rtol;
    opts.atol = args.atol;
    if let Some(ms) = args.time_limit_ms {
        opts.limits = ExecLimits {
            time_limit: std::time::Duration::from_millis(ms),
            ..opts.limits
        };
    }
    let program = match &args.impl_file {
        Some(p) => match read_input(p) {
            Ok(t) => Some(t),
            Err(s) => return s,
        },
        None => None,
    };
    let files = match task_files(&args.task) {
        Ok(f) => f,
        Err(s) => return s,
    };
    let many = args.task.is_dir();
    let mut reports: Vec<VerifyReport> = Vec::with_capacity(files.len());
    for file in &files {
        let loaded = match load(file) {
            Ok(l) => l,
            Err(s) => return s,
        };
        let mut r = stepforge_exec::verify_loaded(&loaded, program.as_deref(), &opts);
        if let Some(p) = &args.impl_file
            && let Some(src) = &mut r.program_source
        {
            src.name = p.display().to_string();
        }
        match args.format {
            Format::Json => output::json(&r.to_json()),
            Format::Human => {
                print_diagnostics_human(&r);
                output::line(&verdict_line(&r));
            }
        }
        reports.push(r);
    }
    if many && args.format == Format::Human {
        output::line("");
        output::line(&summary_table(&reports));
    }
    if reports.iter().all(|r| r.verdict == Verdict::Pass) {
        Status::Ok
    } else {
        Status::Rejected
    }
}

/// Diagnostics to stderr, each against the text its spans point into.
fn print_diagnostics_human(r: &VerifyReport) {
    for origin in [Origin::Task, Origin::Program] {
        let diags: Vec<Diagnostic> = r
            .diagnostics
            .iter()
            .filter(|d| d.origin == origin)
            .map(|d| r.resolved(d))
            .collect();
        if !diags.is_empty() {
            output::diagnostics_human(r.source(origin), &diags);
        }
    }
}

fn verdict_line(r: &VerifyReport) -> String {
    let mut s = format!(
        "{}: {} (linear: {}, copies needed: {}, seeds: {}, {} us)",
        r.task,
        r.verdict,
        r.linear,
        r.copies_needed,
        r.seeds.len(),
        r.elapsed_us
    );
    if let Some(e) = r.max_abs_err() {
        s.push_str(&format!(", max abs err {e:.3e}"));
    }
    s
}

/// The markdown summary of a directory run.
pub fn summary_table(reports: &[VerifyReport]) -> String {
    let mut s = String::from("| task | verdict | linear | copies | max abs err | time (us) |\n");
    s.push_str("|---|---|---|---|---|---:|\n");
    for r in reports {
        let err = r
            .max_abs_err()
            .map_or_else(|| "-".to_string(), |e| format!("{e:.2e}"));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.task, r.verdict, r.linear, r.copies_needed, err, r.elapsed_us
        ));
    }
    let passed = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .count();
    let linear = reports.iter().filter(|r| r.passed()).count();
    s.push_str(&format!(
        "\n{passed}/{} pass ({linear} pass and linear)",
        reports.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use stepforge_exec::{Verdict, VerifyReport};
    use stepforge_syntax::Source;

    use super::{summary_table, task_files};

    fn report(task: &str, verdict: Verdict, linear: bool) -> VerifyReport {
        let mut r = VerifyReport::new(task, Source::new("t.yaml", ""), None, vec![0, 1, 2]);
        r.verdict = verdict;
        r.linear = linear;
        r.elapsed_us = 42;
        r
    }

    #[test]
    fn summary_counts_pass_and_linear_separately() {
        let t = summary_table(&[
            report("a", Verdict::Pass, true),
            report("b", Verdict::Pass, false),
            report("c", Verdict::ValueMismatch, true),
        ]);
        assert!(t.starts_with("| task | verdict | linear | copies | max abs err | time (us) |"));
        assert!(
            t.contains("| c | value_mismatch | true | 0 | - | 42 |"),
            "{t}"
        );
        assert!(t.ends_with("2/3 pass (1 pass and linear)"), "{t}");
    }

    #[test]
    fn directories_are_walked_recursively_in_sorted_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../operators");
        let files = task_files(&dir).unwrap();
        assert!(files.len() >= 26, "{}", files.len());
        let mut sorted = files.clone();
        sorted.sort();
        assert_eq!(files, sorted);
        assert!(
            files
                .iter()
                .all(|f| f.extension().is_some_and(|e| e == "yaml"))
        );
    }
}
