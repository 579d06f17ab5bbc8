//! `stepforge sim TASK.yaml|DIR`: the cycle-level simulator (DESIGN §11–12) through the session
//! API. JSON: one report object per line per task. Human: the summary (and the deadlock
//! diagnostic) per task. Exit 1 when a program does not check, cannot be simulated, or
//! deadlocks.

use std::path::PathBuf;

use stepforge_driver::{HwConfig, Session, SimOptions, SimProgress};

use crate::cmd_verify::task_files;
use crate::common::CommonArgs;
use crate::{Format, Status, dims_flag, output, read_input, read_optional_input};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A task file, or a directory searched recursively for task files.
    pub task: PathBuf,
    /// The program to simulate; default: the task's `impl`.
    #[arg(long = "impl")]
    pub impl_file: Option<PathBuf>,
    /// Hardware config (TOML, see simulator/hw/default.toml); default: the built-in defaults.
    #[arg(long)]
    pub hw: Option<PathBuf>,
    /// Dimension overrides: `K=V,K2=V2`.
    #[arg(long)]
    pub dims: Option<String>,
    /// Depth of every FIFO (overrides the config).
    #[arg(long = "fifo-depth")]
    pub fifo_depth: Option<usize>,
    /// Shapes only: no data, no element functions (fast at model sizes).
    #[arg(long = "timing-only")]
    pub timing_only: bool,
    /// Timing-only routing: hot bits per Partition/Merge selector element.
    #[arg(long = "routing-hot", default_value_t = 1)]
    pub routing_hot: usize,
    /// Write a Chrome trace (Perfetto) to this file (single task only).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the annotated graph as DOT to this file (single task only).
    #[arg(long)]
    pub dot: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also verify each program (seeds 0..2) and show the verdict in the summary table.
    #[arg(long)]
    pub verify: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

fn write_file(path: &PathBuf, text: &str) -> Result<(), Status> {
    std::fs::write(path, text).map_err(|e| {
        output::error(&format!("cannot write {}: {e}", path.display()));
        Status::Usage
    })
}

fn options(args: &Args) -> Result<SimOptions, Status> {
    let mut opts = SimOptions {
        dims: dims_flag(args.dims.as_deref())?,
        ..SimOptions::default()
    };
    if let Some(p) = &args.hw {
        opts.hw = HwConfig::from_toml(&read_input(p, &args.common)?).map_err(|e| {
            output::error(&format!("{}: {e}", p.display()));
            Status::Usage
        })?;
    }
    if args.fifo_depth == Some(0) || args.routing_hot == 0 {
        output::error("--fifo-depth and --routing-hot must be at least 1");
        return Err(Status::Usage);
    }
    opts.timing_only = args.timing_only;
    opts.dot = args.dot.is_some();
    opts.engine.fifo_depth = args.fifo_depth;
    opts.engine.routing_hot = args.routing_hot;
    opts.engine.trace = args.trace.is_some();
    Ok(opts)
}

pub fn run(args: &Args) -> Status {
    let opts = match options(args) {
        Ok(o) => o,
        Err(s) => return s,
    };
    let program = match read_optional_input(args.impl_file.as_ref(), &args.common) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let files = match task_files(&args.task, args.format) {
        Ok(f) => f,
        Err(s) => return s,
    };
    if files.len() > 1 && (args.trace.is_some() || args.dot.is_some()) {
        output::error("--trace and --dot need a single task file");
        return Status::Usage;
    }
    let mut status = Status::Ok;
    let many = files.len() > 1;
    let mut rows: Vec<String> = Vec::new();
    for file in &files {
        let session = match Session::open(file) {
            Ok(s) => s,
            Err(e) => {
                if args.format == Format::Json {
                    output::json(&e.to_json());
                } else {
                    output::error(&e.to_string());
                }
                status = Status::Rejected;
                continue;
            }
        };
        let bar = progress_bar(args.format, &session);
        let mut opts = opts.clone();
        if let Some((_, cb)) = &bar {
            opts.engine.progress = Some(cb.clone());
        }
        let r = session.simulate(program.as_deref(), &opts);
        if let Some((pb, _)) = bar
            && let Ok(mut g) = pb.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
        if !r.ok() {
            status = Status::Rejected;
        }
        let verdict = args.verify.then(|| {
            session.verify(
                program.as_deref(),
                &stepforge_driver::VerifyOptions::with_seed_count(3),
            )
        });
        if verdict.as_ref().is_some_and(|v| !v.passed()) {
            status = Status::Rejected;
        }
        rows.push(summary_row(&r, verdict.as_ref()));
        if let (Some(p), Some(t)) = (&args.trace, &r.trace)
            && let Err(s) = write_file(p, &t.to_string())
        {
            return s;
        }
        if let (Some(p), Some(d)) = (&args.dot, &r.dot)
            && let Err(s) = write_file(p, d)
        {
            return s;
        }
        match args.format {
            Format::Json => output::json(&r.to_json()),
            Format::Human if many => {}
            Format::Human => {
                let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none();
                let text = r.render_human(color);
                output::line(text.trim_end());
                if r.run.is_none() && r.diagnostics.is_empty() {
                    output::line(&format!("{}: not simulated", r.task));
                }
            }
        }
    }
    if many && args.format == Format::Human {
        output::line(
            "| task | verify | cycles | speed of light | SoL fraction | on-chip peak (KiB) | off-chip (KiB) | bottleneck |",
        );
        output::line("|---|---|---:|---:|---:|---:|---:|---|");
        for row in &rows {
            output::line(row);
        }
    }
    status
}

/// A shared, lazily created bar.
type Bar = std::sync::Arc<std::sync::Mutex<Option<indicatif::ProgressBar>>>;

/// A progress bar for runs that last over a second: only in human mode with stderr on a
/// terminal. The bar appears at the first progress report after one second.
fn progress_bar(format: Format, s: &Session) -> Option<(Bar, SimProgress)> {
    if format != Format::Human || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar: Bar = std::sync::Arc::default();
    let started = std::time::Instant::now();
    let name = s.name().to_string();
    let shared = bar.clone();
    let cb = SimProgress(std::sync::Arc::new(move |done: u64, total: u64| {
        if started.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        let Ok(mut g) = shared.lock() else { return };
        let pb = g.get_or_insert_with(|| {
            let pb = indicatif::ProgressBar::new(total.max(1));
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {bar:30} {pos}/{len} elements loaded ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb.set_prefix(format!("sim {name}"));
            pb
        });
        pb.set_position(done.min(total));
    }));
    Some((bar, cb))
}

/// One line of the directory summary table.
fn summary_row(
    r: &stepforge_driver::SimReport,
    v: Option<&stepforge_driver::VerifyReport>,
) -> String {
    let verdict = v.map_or("-".to_string(), |v| {
        let linear = if v.linear == Some(true) {
            ""
        } else {
            " (not linear)"
        };
        format!("{}{linear}", v.verdict)
    });
    match &r.run {
        Some(run) if run.deadlock.is_none() => format!(
            "| {} | {verdict} | {} | {} | {:.2} | {:.1} | {:.1} | {} |",
            r.task,
            run.cycles,
            run.sol_cycles,
            run.sol_fraction,
            run.onchip_peak_bytes as f64 / 1024.0,
            (run.offchip_read + run.offchip_write) as f64 / 1024.0,
            run.bottleneck
        ),
        Some(run) => format!(
            "| {} | {verdict} | deadlock at cycle {} | | | | | |",
            r.task, run.cycles
        ),
        None => format!("| {} | {verdict} | not simulated | | | | | |", r.task),
    }
}
