//! `stepforge agent run|resume|export|report` (DESIGN §14, issue #12): the adaptive
//! self-improvement loop. All logic lives in `stepforge-agent`; this module parses flags,
//! draws progress (indicatif bars on a terminal, plain lines otherwise) and prints results.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use stepforge_agent::config::{Feasibility, Objective, ProviderKind, RunConfig};
use stepforge_agent::store::IterationRow;
use stepforge_agent::tool::SessionSimulator;
use stepforge_agent::{Hooks, Progress, Status as RunStatus, Summary};

use crate::{Format, Status, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Run the loop over a directory of task files.
    Run(Box<RunArgs>),
    /// Continue the store's latest run (after a kill, or with batch answers).
    Resume(ResumeArgs),
    /// Write the run's solutions as task files with `impl` (a new operator library).
    Export(ExportArgs),
    /// Tables (and an HTML page with SVG plots) of the store's latest run.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderArg {
    Openai,
    Anthropic,
    Replay,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    Solve,
    Cycles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeasibilityArg {
    Require,
    Report,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Directory of task files (searched recursively for *.yaml).
    #[arg(long)]
    pub tasks: PathBuf,
    #[arg(long, value_enum)]
    pub provider: Option<ProviderArg>,
    /// API base URL, e.g. https://api.openai.com/v1 or http://localhost:11434/v1.
    #[arg(long)]
    pub base_url: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// k: samples per task per round.
    #[arg(long)]
    pub samples: Option<u32>,
    /// Concurrent LLM calls.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Iterations after iteration 0.
    #[arg(long)]
    pub iterations: Option<u32>,
    /// m: difficulty strata.
    #[arg(long)]
    pub granularity: Option<usize>,
    /// The experience store (SQLite file).
    #[arg(long)]
    pub store: PathBuf,
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Feasibility: `require` (default) counts a sample as solved only if it also simulates
    /// without deadlock; `report` keeps the functional criterion and records feasibility.
    #[arg(long, value_enum)]
    pub feasibility: Option<FeasibilityArg>,
    /// FIFO depth of the feasibility simulation (default: the hardware model's, 2).
    #[arg(long)]
    pub fifo_depth: Option<usize>,
    /// `--objective cycles`: optimize rounds after the solve loop (default 3; a round
    /// without a faster program ends them).
    #[arg(long)]
    pub optimize_rounds: Option<u32>,
    /// Transcript to write (live) or read (replay). Default: STORE.transcript.jsonl.
    #[arg(long)]
    pub transcript: Option<String>,
    #[arg(long)]
    pub budget_usd: Option<f64>,
    #[arg(long)]
    pub budget_tokens: Option<u64>,
    /// Repair turns after a rejected answer (default 1).
    #[arg(long)]
    pub repairs: Option<u32>,
    /// TOML config (provider settings, prices, temperatures); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[arg(long)]
    pub store: PathBuf,
    /// Batch output JSONL (default: the waiting requests file's `.output.jsonl` sibling).
    #[arg(long)]
    pub responses: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub store: PathBuf,
    /// Output directory for the task files.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub store: PathBuf,
    /// Also write a self-contained HTML page with SVG plots.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

pub fn run(args: &Args) -> Status {
    match &args.command {
        AgentCommand::Run(a) => cmd_run(a),
        AgentCommand::Resume(a) => cmd_resume(a),
        AgentCommand::Export(a) => cmd_export(a),
        AgentCommand::Report(a) => cmd_report(a),
    }
}

fn config(a: &RunArgs) -> Result<RunConfig, String> {
    let mut c = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            RunConfig::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => RunConfig::default(),
    };
    c.tasks_dir = a.tasks.display().to_string();
    if let Some(p) = a.provider {
        c.provider.kind = match p {
            ProviderArg::Openai => ProviderKind::Openai,
            ProviderArg::Anthropic => ProviderKind::Anthropic,
            ProviderArg::Replay => ProviderKind::Replay,
            ProviderArg::Batch => ProviderKind::Batch,
        };
    }
    let set = |dst: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            dst.clone_from(v);
        }
    };
    set(&mut c.provider.base_url, &a.base_url);
    set(&mut c.provider.model, &a.model);
    c.samples = a.samples.unwrap_or(c.samples);
    c.concurrency = a.concurrency.unwrap_or(c.concurrency);
    c.iterations = a.iterations.unwrap_or(c.iterations);
    c.granularity = a.granularity.unwrap_or(c.granularity);
    c.repairs = a.repairs.unwrap_or(c.repairs);
    c.fifo_depth = a.fifo_depth.or(c.fifo_depth);
    c.optimize_rounds = a.optimize_rounds.unwrap_or(c.optimize_rounds);
    if let Some(o) = a.objective {
        c.objective = match o {
            ObjectiveArg::Solve => Objective::Solve,
            ObjectiveArg::Cycles => Objective::Cycles,
        };
    }
    if let Some(f) = a.feasibility {
        c.feasibility = Some(match f {
            FeasibilityArg::Require => Feasibility::Require,
            FeasibilityArg::Report => Feasibility::Report,
        });
    }
    if a.transcript.is_some() {
        c.transcript.clone_from(&a.transcript);
    }
    c.budget_usd = a.budget_usd.or(c.budget_usd);
    c.budget_tokens = a.budget_tokens.or(c.budget_tokens);
    // Without a model name a replay reports the recorded ones.
    if c.provider.kind == ProviderKind::Replay && c.provider.model.is_empty() {
        c.provider.model = "replay".into();
    }
    Ok(c)
}

fn runtime() -> Result<tokio::runtime::Runtime, Status> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            output::error(&format!("cannot start the async runtime: {e}"));
            Status::Usage
        })
}

fn cmd_run(a: &RunArgs) -> Status {
    let cfg = match config(a) {
        Ok(c) => c,
        Err(e) => {
            output::error(&e);
            return Status::Usage;
        }
    };
    // Usage errors (bad numbers, a missing model) before anything starts.
    if let Err(e) = cfg.validate(true) {
        output::error(&e);
        return Status::Usage;
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(s) => return s,
    };
    let progress = Bars::new(a.format);
    let store = a.store.display().to_string();
    let r = rt.block_on(stepforge_agent::start(cfg, &store, hooks(&progress)));
    finish(r, a.format, &progress)
}

fn cmd_resume(a: &ResumeArgs) -> Status {
    let rt = match runtime() {
        Ok(r) => r,
        Err(s) => return s,
    };
    let progress = Bars::new(a.format);
    let store = a.store.display().to_string();
    let r = rt.block_on(stepforge_agent::resume(
        &store,
        a.responses.as_deref(),
        hooks(&progress),
    ));
    finish(r, a.format, &progress)
}

fn hooks(p: &Arc<Bars>) -> Hooks {
    Hooks {
        progress: Arc::clone(p) as Arc<dyn Progress>,
        simulator: Some(Arc::new(SessionSimulator::default())),
    }
}

fn finish(r: Result<Summary, String>, format: Format, bars: &Bars) -> Status {
    bars.clear();
    let s = match r {
        Ok(s) => s,
        Err(e) => {
            output::error(&e);
            return Status::Usage;
        }
    };
    match format {
        Format::Json => output::json(&serde_json::to_value(&s).unwrap_or_default()),
        Format::Human => {
            for i in &s.iterations {
                output::line(&iteration_line(i));
            }
            output::line(&format!(
                "solved {}/{} tasks · {} samples · {} tokens · ${:.4} · guardian fired {}× · {} verifications",
                s.solved, s.tasks, s.samples, s.tokens, s.cost, s.guardian_fired, s.verifications
            ));
            if !s.failures.is_empty() {
                output::line(&format!("provider failures: {:?}", s.failures));
            }
        }
    }
    match &s.status {
        RunStatus::Done => Status::Ok,
        RunStatus::BudgetExhausted => {
            output::error(
                "the budget ran out; the run stopped cleanly (resume after raising it is not supported: start a new run)",
            );
            Status::Ok
        }
        RunStatus::Waiting { requests } => {
            let _ = writeln!(
                std::io::stderr(),
                "waiting for responses: submit {requests} to the Batch API, then `stepforge agent resume --store ... --responses OUTPUT.jsonl`"
            );
            Status::Ok
        }
        RunStatus::Failed { error } => {
            output::error(error);
            Status::Rejected
        }
    }
}

fn iteration_line(i: &IterationRow) -> String {
    if let Some(n) = i.improved {
        return format!(
            "iteration {} (optimize): {n} tasks faster, {} samples, {} tokens, ${:.4}",
            i.iteration, i.samples, i.tokens, i.cost
        );
    }
    format!(
        "iteration {} (demonstrations: {}): solved {} (+{}), {} samples, {} tokens, ${:.4}",
        i.iteration,
        i.stratum
            .map_or("none".into(), |s| format!("strata 1..{s}")),
        i.solved,
        i.new,
        i.samples,
        i.tokens,
        i.cost
    )
}

fn cmd_export(a: &ExportArgs) -> Status {
    match stepforge_agent::export(&a.store.display().to_string(), &a.out) {
        Ok(n) => {
            output::line(&format!("wrote {n} task files to {}", a.out.display()));
            Status::Ok
        }
        Err(e) => {
            output::error(&e);
            Status::Usage
        }
    }
}

fn cmd_report(a: &ReportArgs) -> Status {
    let path = a.store.display().to_string();
    if !a.store.exists() {
        output::error(&format!("no store at {path}"));
        return Status::Usage;
    }
    let r =
        stepforge_agent::store::Store::open(&path).and_then(|s| stepforge_agent::report::build(&s));
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            output::error(&e);
            return Status::Usage;
        }
    };
    if let Some(html) = &a.html
        && let Err(e) = std::fs::write(html, stepforge_agent::report::render_html(&r))
    {
        output::error(&format!("cannot write {}: {e}", html.display()));
        return Status::Usage;
    }
    match a.format {
        Format::Json => output::json(&serde_json::to_value(&r).unwrap_or_default()),
        Format::Human => {
            let _ = write!(
                std::io::stdout().lock(),
                "{}",
                stepforge_agent::report::render_table(&r)
            );
        }
    }
    Status::Ok
}

/// Progress: indicatif bars (overall + per task) on a terminal, plain lines otherwise.
struct Bars {
    tty: bool,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    multi: Option<indicatif::MultiProgress>,
    overall: Option<indicatif::ProgressBar>,
    tasks: std::collections::BTreeMap<String, indicatif::ProgressBar>,
    solved: u32,
    tokens: u64,
    cost: f64,
}

impl Bars {
    fn new(format: Format) -> Arc<Bars> {
        Arc::new(Bars {
            tty: std::io::stderr().is_terminal() && format == Format::Human,
            state: Mutex::new(BarState::default()),
        })
    }

    fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(m) = &s.multi {
                let _ = m.clear();
            }
            s.tasks.clear();
            s.overall = None;
        }
    }
}

impl Progress for Bars {
    fn round_started(&self, iteration: u32, tasks: usize, samples: u64) {
        if !self.tty {
            let _ = writeln!(
                std::io::stderr(),
                "iteration {iteration}: {tasks} tasks, {samples} samples"
            );
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(m) = &s.multi {
            let _ = m.clear();
        }
        s.tasks.clear();
        let m = indicatif::MultiProgress::new();
        let style =
            indicatif::ProgressStyle::with_template("{prefix:>28} {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let pb = m.add(indicatif::ProgressBar::new(samples));
        pb.set_style(style);
        pb.set_prefix(format!("iteration {iteration}"));
        s.overall = Some(pb);
        s.multi = Some(m);
    }

    fn sample_done(&self, task: &str, passed: bool, tokens: u64, cost: f64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.tokens += tokens;
        s.cost += cost;
        if !self.tty {
            return;
        }
        let msg = format!("solved {} · {} tokens · ${:.4}", s.solved, s.tokens, s.cost);
        if let Some(o) = &s.overall {
            o.inc(1);
            o.set_message(msg);
        }
        if !s.tasks.contains_key(task)
            && let Some(m) = &s.multi
        {
            let pb = m.add(indicatif::ProgressBar::new_spinner());
            pb.set_prefix(task.to_string());
            if let Ok(st) =
                indicatif::ProgressStyle::with_template("{prefix:>28} {pos} samples {msg}")
            {
                pb.set_style(st);
            }
            s.tasks.insert(task.to_string(), pb);
        }
        if let Some(pb) = s.tasks.get(task) {
            pb.inc(1);
            if passed {
                pb.set_message("✓ passed");
            }
        }
    }

    fn iteration_done(&self, row: &IterationRow) {
        if let Ok(mut s) = self.state.lock() {
            s.solved = row.solved;
        }
        if !self.tty {
            let _ = writeln!(std::io::stderr(), "{}", iteration_line(row));
        }
    }
}
