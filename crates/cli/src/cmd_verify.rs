//! `stepforge verify TASK.yaml|DIR`: check, run on seeded data and compare with the references
//! (DESIGN §9, §11). JSON: one report object per line per task. Human: diagnostics on stderr,
//! a verdict line per task, and for a directory a summary table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use stepforge_exec::{Origin, Verdict, VerifyOptions, VerifyReport};
use stepforge_syntax::Diagnostic;

use crate::common::{CommonArgs, LimitArgs, MAX_SEEDS, check_dim_names, not_a_file};
use crate::{Format, Status, dims_flag, output, read_optional_input};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A task file, or a directory searched recursively for `*.yaml` / `*.yml` task files
    /// (symlinked directories are not followed).
    pub task: PathBuf,
    /// The program to verify (a bare program or a raw LLM answer); default: the task's `impl`.
    #[arg(long = "impl", value_name = "FILE")]
    pub impl_file: Option<PathBuf>,
    /// Number of seeds (seeds 0..N), between 1 and 1000.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SEEDS)))]
    pub seeds: u32,
    /// Dimension overrides: `K=V,K2=V2` (names must be the task's dimensions).
    #[arg(long, value_name = "K=V,..")]
    pub dims: Option<String>,
    /// Relative tolerance (overrides the task's `tolerance:`).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Absolute tolerance (overrides the task's `tolerance:`).
    #[arg(long)]
    pub atol: Option<f64>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Native code for element functions: `auto` (compile when an op's estimated work is
    /// large), `always`, or `never` (interpret).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_jit)]
    pub jit: stepforge_exec::JitMode,
    /// Report which element functions ran natively and which fell back, and why (human: on
    /// stderr; json: a `jit` array in each report).
    #[arg(long)]
    pub jit_report: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format: `human` (verdict lines, diagnostics on stderr) or `json` (one report
    /// object per task per line on stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Task files under `path` (the file itself when it is one), sorted, each once. Symlinked
/// directories are not followed (a link to `..` would loop forever); symlinked files are
/// visited once by their resolved path; anything that is not a regular file is skipped with a
/// note.
pub fn task_files(path: &Path, format: Format) -> Result<Vec<PathBuf>, Status> {
    if !path.is_dir() {
        if let Some(msg) = not_a_file(path) {
            output::error(&msg);
            return Err(Status::Usage);
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
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
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let yaml = matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            if ft.is_symlink() {
                if p.is_dir() {
                    output::note(
                        format,
                        &format!("skipping symlinked directory {}", p.display()),
                    );
                    continue;
                }
                if !yaml {
                    continue;
                }
            } else if !yaml {
                continue;
            }
            if let Some(why) = not_a_file(&p) {
                output::note(format, &format!("skipping {why}"));
                continue;
            }
            let key = p.canonicalize().unwrap_or_else(|_| p.clone());
            if seen.insert(key) {
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
    if let Some(msg) = not_a_file(path) {
        output::error(&msg);
        return Err(Status::Usage);
    }
    stepforge_task::load_file(path).map_err(|e| {
        output::error(&format!("cannot read {}: {e}", path.display()));
        Status::Usage
    })
}

/// A file that did not load as a task and shows no sign of being one (no task keys): one clear
/// line instead of a `task_error` report full of YAML complaints.
pub fn not_a_task(loaded: &stepforge_task::Loaded) -> Option<String> {
    if loaded.task.is_some() {
        return None;
    }
    let text = &loaded.source.text;
    let keys = ["inputs:", "outputs:", "fns:", "impl:", "test_name:"];
    let looks_like_task = text.lines().any(|l| {
        keys.iter()
            .any(|k| l.trim_start_matches("- ").starts_with(k))
    });
    (!looks_like_task).then(|| {
        format!(
            "{} is not a task file (no `inputs:`, `outputs:` or `fns:` keys)",
            loaded.source.name
        )
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
    opts.limits = args.limits.apply(opts.limits);
    opts.limits.jit = args.jit;
    let program = match read_optional_input(args.impl_file.as_ref(), &args.common) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let files = match task_files(&args.task, args.format) {
        Ok(f) => f,
        Err(s) => return s,
    };
    let many = args.task.is_dir();
    let mut loaded_all = Vec::with_capacity(files.len());
    for file in &files {
        let loaded = match load(file) {
            Ok(l) => l,
            Err(s) => return s,
        };
        if let Some(msg) = not_a_task(&loaded) {
            if many {
                output::note(args.format, &format!("skipping {msg}"));
                continue;
            }
            output::error(&msg);
            return Status::Usage;
        }
        loaded_all.push(loaded);
    }
    if let Err(msg) = check_dims_over(&loaded_all, &opts.dims, args.dims.as_deref()) {
        output::error(&msg);
        return Status::Usage;
    }
    let mut reports: Vec<VerifyReport> = Vec::with_capacity(loaded_all.len());
    for loaded in &loaded_all {
        let mut r = stepforge_driver::verify_loaded(loaded, program.as_deref(), &opts);
        if let Some(p) = &args.impl_file
            && let Some(src) = &mut r.program_source
        {
            src.name = p.display().to_string();
        }
        match args.format {
            Format::Json => {
                let mut v = report_json(&r, args.common.max_diagnostics);
                if args.jit_report {
                    v["jit"] = serde_json::json!(r.jit);
                }
                output::json(&v);
            }
            Format::Human => {
                print_diagnostics_human(&r, args.common.max_diagnostics);
                if args.jit_report {
                    for j in &r.jit {
                        output::note(args.format, &jit_line(j));
                    }
                }
                output::line(&verdict_line(&r));
            }
        }
        reports.push(r);
    }
    if many && args.format == Format::Human {
        output::line("");
        output::line(&summary_table(&reports));
    }
    if !reports.is_empty() && reports.iter().all(|r| r.verdict == Verdict::Pass) {
        Status::Ok
    } else {
        Status::Rejected
    }
}

/// `--jit` values.
pub fn parse_jit(s: &str) -> Result<stepforge_exec::JitMode, String> {
    stepforge_exec::JitMode::parse(s)
        .ok_or_else(|| format!("`{s}` is not a jit mode; expected auto, always or never"))
}

/// One `--jit-report` line.
fn jit_line(j: &stepforge_exec::JitFnReport) -> String {
    match (&j.fallback, j.compiled) {
        (_, true) => format!(
            "jit: fn `{}` compiled in {} us; {} native stream op(s), {} us",
            j.name, j.compile_us, j.native_calls, j.native_us
        ),
        (Some(why), false) => format!("jit: fn `{}` interpreted: {why}", j.name),
        (None, false) => format!("jit: fn `{}` interpreted", j.name),
    }
}

/// `--dims` names must be dimensions of the task (of some task, for a directory).
fn check_dims_over(
    tasks: &[stepforge_task::Loaded],
    dims: &[(String, i64)],
    raw: Option<&str>,
) -> Result<(), String> {
    let mut known = BTreeSet::new();
    for t in tasks.iter().filter_map(|l| l.task.as_ref()) {
        known.extend(stepforge_task::used_symbols(t));
    }
    if tasks.iter().all(|l| l.task.is_none()) {
        return Ok(());
    }
    check_dim_names(dims, raw, &known)
}

/// The report's JSON with its diagnostics capped per code (`diagnostics_omitted` counts the
/// rest).
fn report_json(r: &VerifyReport, max_per_code: usize) -> serde_json::Value {
    let mut v = r.to_json();
    let mut seen = std::collections::BTreeMap::new();
    let mut omitted = std::collections::BTreeMap::new();
    if let Some(list) = v["diagnostics"].as_array_mut() {
        for (d, rd) in std::mem::take(list).into_iter().zip(&r.diagnostics) {
            let n = seen.entry(rd.diagnostic.code).or_insert(0usize);
            *n += 1;
            if *n <= max_per_code {
                list.push(d);
            } else {
                *omitted.entry(rd.diagnostic.code).or_insert(0usize) += 1;
            }
        }
    }
    if !omitted.is_empty() {
        v["diagnostics_omitted"] = output::omitted_json(&omitted);
    }
    v
}

/// Diagnostics to stderr, each against the text its spans point into.
fn print_diagnostics_human(r: &VerifyReport, max_per_code: usize) {
    for origin in [Origin::Task, Origin::Program] {
        let diags: Vec<Diagnostic> = r
            .diagnostics
            .iter()
            .filter(|d| d.origin == origin)
            .map(|d| r.resolved(d))
            .collect();
        if !diags.is_empty() {
            output::diagnostics_human(r.source(origin), &diags, max_per_code);
        }
    }
}

fn verdict_line(r: &VerifyReport) -> String {
    let mut s = format!(
        "{}: {} (linear: {}, copies needed: {}, seeds: {}, {} us)",
        r.task,
        r.verdict,
        linear_text(r.linear),
        r.copies_needed,
        r.seeds.len(),
        r.elapsed_us
    );
    if let Some(e) = r.max_abs_err() {
        s.push_str(&format!(", max abs err {e:.3e}"));
    }
    match r.excused() {
        0 => {}
        1 => s.push_str(" (1 element excused as a near-tie)"),
        n => s.push_str(&format!(" ({n} elements excused as near-ties)")),
    }
    s
}

/// `true`, `false`, or `not checked` when the program never reached the linearity check.
pub fn linear_text(l: Option<bool>) -> String {
    l.map_or_else(|| "not checked".to_string(), |b| b.to_string())
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
            r.task,
            r.verdict,
            linear_text(r.linear),
            r.copies_needed,
            err,
            r.elapsed_us
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
        r.linear = Some(linear);
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
        let files = task_files(&dir, crate::Format::Json).unwrap();
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
