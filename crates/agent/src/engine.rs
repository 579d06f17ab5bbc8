//! The agent loop: parallel sampling with repair turns and the guardian, verification with
//! graph-hash dedup, and the paper's Algorithm 1 (DESIGN §14):
//!
//! 1. iteration 0 samples k programs for every task;
//! 2. solved tasks are stratified by success count (fewer successes = harder) into m strata;
//! 3. for demonstration level i = 1..=strata (hardest first, cumulative: strata 1..i, one
//!    shortest — or, with the simulator, fastest — verified solution per task), every unsolved
//!    task is re-sampled k times at each temperature (0.4/0.7/1.0) and the best outcome over
//!    the temperatures is kept (best-of merge); each level is one iteration;
//! 4. a level that solves new tasks restratifies and starts again from the hardest stratum;
//! 5. the run stops when every level was tried without a gain, every task is solved, the
//!    iteration cap or the budget is reached.
//!
//! Determinism: every sample turn has a key (`task/i<iter>/T<temp>/s<idx>/t<turn>`), rounds are
//! barriers and every decision is taken on the round's complete results in key order, so a
//! replayed or resumed run makes the same decisions. The store is the memo: a key already in
//! it is never asked again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::{Feasibility, Objective, RunConfig};
use crate::prompt::{self, Demo};
use crate::provider::{CallError, ChatRequest, Completion, Conversation, Message, Provider};
use crate::store::{IterationRow, ParetoRow, SampleRow, SolutionRow, Store};
use crate::tool::{Simulator, Tool, VerifySummary};

/// Observer of a run (the CLI draws progress bars or log lines from it).
pub trait Progress: Send + Sync {
    fn round_started(&self, _iteration: u32, _tasks: usize, _samples: u64) {}
    fn sample_done(&self, _task: &str, _passed: bool, _tokens: u64, _cost: f64) {}
    fn iteration_done(&self, _row: &IterationRow) {}
}

/// A progress observer that observes nothing.
#[derive(Debug)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    Done,
    /// Batch mode: requests written to `requests`; resume with the output file.
    Waiting {
        requests: String,
    },
    BudgetExhausted,
    Failed {
        error: String,
    },
}

/// The final JSON of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: i64,
    #[serde(flatten)]
    pub status: Status,
    pub tasks: usize,
    pub solved: usize,
    pub solved_tasks: Vec<String>,
    pub iterations: Vec<IterationRow>,
    pub samples: u64,
    pub tokens: u64,
    pub cost: f64,
    pub guardian_fired: u64,
    pub verifications: u64,
    pub failures: BTreeMap<String, u64>,
    /// Where the loop's own time went (not in the JSON: timings differ between runs).
    #[serde(skip)]
    pub timings: Timings,
}

/// Time the loop spent on its own work, summed over threads (wall time of each piece, so on a
/// loaded machine it includes waiting for a core). The overhead bench prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// Distinct answers checked, guarded, verified and simulated, and the seconds it took.
    pub evaluations: u64,
    pub evaluate_s: f64,
    /// Store transactions of sample rows (group commits), and the seconds they took.
    pub store_commits: u64,
    pub store_s: f64,
    /// The start-up before the first call, phase by phase (name, seconds), in order.
    pub startup: Vec<(&'static str, f64)>,
    /// Seconds from the start of the run to the first provider call.
    pub first_call_s: Option<f64>,
    /// Seconds spent merging rounds and finishing (store writes after the calls).
    pub merge_s: f64,
    /// When the summary was made (what follows it is the caller's teardown).
    pub finished_at: Option<std::time::Instant>,
}

/// Named wall-clock phases of a run's start-up, from [`crate::start`] (or `resume`) to the
/// first call: the overhead bench prints them to show where the time before sampling goes.
#[derive(Debug, Clone)]
pub struct Startup {
    t0: std::time::Instant,
    last: std::time::Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Startup {
    pub fn begin() -> Startup {
        let now = std::time::Instant::now();
        Startup {
            t0: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the phase `name` (it began where the previous one ended).
    pub fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases
            .push((name, now.duration_since(self.last).as_secs_f64()));
        self.last = now;
    }

    /// Seconds since [`Startup::begin`].
    pub fn elapsed_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

/// Hard token and cost budget, counted over every finished sample turn (reused ones too, so a
/// resumed run stops where the uninterrupted one would). Calls already in flight when it runs
/// out still finish, so the overshoot is at most `concurrency` answers.
#[derive(Debug, Default)]
struct Budget {
    tokens: AtomicU64,
    micro_usd: AtomicU64,
    max_tokens: Option<u64>,
    max_usd: Option<f64>,
}

impl Budget {
    fn add(&self, tokens: u64, cost: f64) {
        self.tokens.fetch_add(tokens, Ordering::SeqCst);
        self.micro_usd
            .fetch_add((cost * 1e6).round().max(0.0) as u64, Ordering::SeqCst);
    }
    fn exhausted(&self) -> bool {
        let t = self.tokens.load(Ordering::SeqCst);
        let c = self.micro_usd.load(Ordering::SeqCst) as f64 / 1e6;
        self.max_tokens.is_some_and(|m| t >= m) || self.max_usd.is_some_and(|m| c >= m)
    }
}

/// What one sample (all its turns) came to.
#[derive(Debug, Clone)]
enum Outcome {
    Finished {
        passed: Option<Box<SampleRow>>,
        tokens: u64,
        cost: f64,
    },
    Pending,
    Budget,
    Fatal(String),
}

/// A task's solved state.
#[derive(Debug, Clone)]
struct Solved {
    successes: u32,
    /// The iteration that solved it (optimize rounds replace `best`, not this).
    solved_in: u32,
    best: SampleRow,
}

/// What a round came to, before any decision: passing rows per task and temperature, totals,
/// and the first reason to stop.
#[derive(Default)]
struct Tally {
    /// task -> temperature -> (successes, passing rows in key order)
    per: BTreeMap<usize, BTreeMap<String, (u32, Vec<SampleRow>)>>,
    samples: u64,
    tokens: u64,
    cost: f64,
    stop: Option<Status>,
}

type VerifyCache = Mutex<BTreeMap<String, Arc<OnceLock<VerifySummary>>>>;

/// What an [`Engine`] is built from.
pub struct Parts {
    pub cfg: RunConfig,
    pub run: i64,
    pub store: Arc<Store>,
    pub provider: Arc<Provider>,
    /// Sorted by path.
    pub tools: Vec<Arc<Tool>>,
    pub simulator: Option<Arc<dyn Simulator>>,
    pub progress: Arc<dyn Progress>,
    /// Batch request files are named `<batch_prefix>.batch-N.requests.jsonl`.
    pub batch_prefix: String,
    /// The start-up phases so far (the engine adds its own).
    pub startup: Startup,
}

pub struct Engine {
    cfg: RunConfig,
    run: i64,
    store: Arc<Store>,
    provider: Arc<Provider>,
    tools: Vec<Arc<Tool>>,
    simulator: Option<Arc<dyn Simulator>>,
    progress: Arc<dyn Progress>,
    memo: BTreeMap<String, SampleRow>,
    /// The system message (the op manual), shared by every request.
    system: Arc<str>,
    /// Per task: verify results by graph hash (passes) or program hash (failures).
    vcache: Vec<VerifyCache>,
    /// Per task: evaluations by answer hash.
    acache: Vec<Mutex<BTreeMap<String, Arc<tokio::sync::OnceCell<Evaluated>>>>>,
    verify_slots: tokio::sync::Semaphore,
    call_slots: tokio::sync::Semaphore,
    writer: crate::writer::SampleWriter,
    budget: Budget,
    guardian: AtomicU64,
    verifications: AtomicU64,
    evaluations: AtomicU64,
    evaluate_ns: AtomicU64,
    price: crate::config::Price,
    batch_prefix: String,
    startup: Mutex<Startup>,
    first_call: OnceLock<f64>,
    merge_ns: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("run", &self.run).finish()
    }
}

impl Engine {
    /// Prepares a run over `tools` (sorted by path). Finished sample turns already in the store
    /// for `run` are reused, never asked again.
    pub fn new(parts: Parts) -> Result<Arc<Engine>, String> {
        let Parts {
            cfg,
            run,
            store,
            provider,
            tools,
            simulator,
            progress,
            batch_prefix,
            mut startup,
        } = parts;
        let memo = store.samples(run)?;
        let vcache = tools.iter().map(|_| Mutex::new(BTreeMap::new())).collect();
        let acache = tools.iter().map(|_| Mutex::new(BTreeMap::new())).collect();
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let calls = cfg.concurrency.max(1);
        let writer = crate::writer::SampleWriter::start(Arc::clone(&store), run)?;
        let system: Arc<str> = prompt::system_prompt(&crate::tool::manual()).into();
        startup.mark("engine");
        Ok(Arc::new(Engine {
            price: cfg.price(),
            budget: Budget {
                max_tokens: cfg.budget_tokens,
                max_usd: cfg.budget_usd,
                ..Budget::default()
            },
            system,
            cfg,
            run,
            store,
            provider,
            tools,
            simulator,
            progress,
            memo,
            vcache,
            acache,
            verify_slots: tokio::sync::Semaphore::new(cpus),
            call_slots: tokio::sync::Semaphore::new(calls),
            writer,
            guardian: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
            evaluations: AtomicU64::new(0),
            evaluate_ns: AtomicU64::new(0),
            batch_prefix,
            startup: Mutex::new(startup),
            first_call: OnceLock::new(),
            merge_ns: AtomicU64::new(0),
        }))
    }

    fn feasibility(&self) -> Feasibility {
        match (self.cfg.feasibility, &self.simulator) {
            (Some(f), _) => f,
            (None, Some(_)) => Feasibility::Require,
            (None, None) => Feasibility::Report,
        }
    }

    /// Runs Algorithm 1 to its end (or to a stop: waiting for batch answers, budget, error).
    pub async fn run(self: &Arc<Self>) -> Summary {
        let n = self.tools.len();
        let mut solved: BTreeMap<usize, Solved> = BTreeMap::new();
        let mut fronts: BTreeMap<usize, Pareto> = BTreeMap::new();
        let mut rows: Vec<IterationRow> = Vec::new();
        let all: Vec<usize> = (0..n).collect();
        let status = 'run: {
            let r = self
                .round(
                    0,
                    &all,
                    &Arc::new(Vec::new()),
                    &[self.cfg.initial_temperature],
                    None,
                )
                .await;
            if let Err(s) = self.merge(0, None, r, &mut solved, &mut fronts, &mut rows) {
                break 'run s;
            }
            let mut iteration = 0u32;
            loop {
                if solved.len() == n {
                    break 'run Status::Done;
                }
                let strata = stratify(&solved, self.cfg.granularity, &self.tools);
                let mut gained = false;
                for level in 1..=strata.len() {
                    if iteration >= self.cfg.iterations {
                        break 'run Status::Done;
                    }
                    iteration += 1;
                    let demo_tasks: Vec<usize> = strata[..level].concat();
                    let demos: Vec<Demo> = demo_tasks
                        .iter()
                        .filter_map(|t| {
                            let s = solved.get(t)?;
                            Some(Demo {
                                task: self.tools[*t].name().to_string(),
                                task_text: self.tools[*t].prompt_text(),
                                program: s.best.program.clone().unwrap_or_default(),
                            })
                        })
                        .collect();
                    let names: Vec<String> = demos.iter().map(|d| d.task.clone()).collect();
                    if let Err(e) = self.store.put_demonstrations(self.run, iteration, &names) {
                        break 'run Status::Failed { error: e };
                    }
                    let unsolved: Vec<usize> = all
                        .iter()
                        .copied()
                        .filter(|t| !solved.contains_key(t))
                        .collect();
                    let temps = self.cfg.temperatures.clone();
                    let r = self
                        .round(iteration, &unsolved, &Arc::new(demos), &temps, None)
                        .await;
                    let before = solved.len();
                    if let Err(s) = self.merge(
                        iteration,
                        Some(level as u32),
                        r,
                        &mut solved,
                        &mut fronts,
                        &mut rows,
                    ) {
                        break 'run s;
                    }
                    if solved.len() > before {
                        gained = true;
                        break;
                    }
                }
                if !gained {
                    break 'run Status::Done;
                }
            }
        };
        let status = if status == Status::Done && self.cfg.objective == Objective::Cycles {
            self.optimize(&mut solved, &mut fronts, &mut rows).await
        } else {
            status
        };
        self.finish(status, &solved, rows)
    }

    /// `--objective cycles` (only reachable with a simulator; `RunConfig::validate` refuses it
    /// otherwise): rounds in which every solved task's proposer gets its current best solution
    /// and that solution's simulator report and is asked for a faster one. A faster verified,
    /// feasible answer becomes the solution; every such answer enters the task's Pareto set.
    /// Stops after `optimize_rounds` or at the first round without an improvement.
    async fn optimize(
        self: &Arc<Self>,
        solved: &mut BTreeMap<usize, Solved>,
        fronts: &mut BTreeMap<usize, Pareto>,
        rows: &mut Vec<IterationRow>,
    ) -> Status {
        if self.simulator.is_none() {
            return Status::Done;
        }
        for _ in 0..self.cfg.optimize_rounds {
            let iteration = rows.last().map_or(0, |r| r.iteration) + 1;
            let prompts: BTreeMap<usize, String> = solved
                .iter()
                .filter(|(_, s)| s.best.cycles.is_some())
                .map(|(t, s)| {
                    let sim = s
                        .best
                        .diagnostics
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok())
                        .unwrap_or(serde_json::Value::Null);
                    let p = s.best.program.clone().unwrap_or_default();
                    (*t, prompt::optimize_prompt(&self.tools[*t], &p, &sim))
                })
                .collect();
            if prompts.is_empty() {
                break;
            }
            let tasks: Vec<usize> = prompts.keys().copied().collect();
            let r = self
                .round(
                    iteration,
                    &tasks,
                    &Arc::new(Vec::new()),
                    &[self.cfg.initial_temperature],
                    Some(&prompts),
                )
                .await;
            match self.merge_optimize(iteration, r, solved, fronts, rows) {
                Err(s) => return s,
                Ok(0) => break,
                Ok(_) => {}
            }
        }
        Status::Done
    }

    /// Keeps, per task, the fastest feasible answer of an optimize round if it beats the
    /// current best; returns how many tasks improved.
    fn merge_optimize(
        &self,
        iteration: u32,
        results: Vec<(usize, f64, Outcome)>,
        solved: &mut BTreeMap<usize, Solved>,
        fronts: &mut BTreeMap<usize, Pareto>,
        rows: &mut Vec<IterationRow>,
    ) -> Result<u32, Status> {
        let tally = self.tally(results);
        if let Some(Status::Waiting { .. } | Status::Failed { .. }) = &tally.stop {
            return Err(tally.stop.unwrap_or(Status::Done));
        }
        let mut improved = 0u32;
        let mut sols = Vec::new();
        for (t, temps) in &tally.per {
            self.update_front(*t, temps, fronts)?;
            let Some(s) = solved.get_mut(t) else { continue };
            let fastest = temps
                .values()
                .flat_map(|(_, r)| r)
                .filter(|r| r.cycles.is_some())
                .min_by(|a, b| rank(a).cmp(&rank(b)));
            if let Some(row) = fastest.filter(|r| faster(r, &s.best)) {
                s.best = row.clone();
                improved += 1;
                sols.push(self.solution_row(*t, s));
            }
        }
        let row = IterationRow {
            iteration,
            stratum: None,
            solved: solved.len() as u32,
            new: 0,
            samples: tally.samples,
            tokens: tally.tokens,
            cost: tally.cost,
            improved: Some(improved),
        };
        self.record_iteration(row, &sols, rows)?;
        match tally.stop {
            Some(s) => Err(s),
            None => Ok(improved),
        }
    }

    /// Adds a round's passing, feasible, simulated rows of task `t` to its Pareto set and
    /// stores the set when it changed.
    fn update_front(
        &self,
        t: usize,
        temps: &BTreeMap<String, (u32, Vec<SampleRow>)>,
        fronts: &mut BTreeMap<usize, Pareto>,
    ) -> Result<(), Status> {
        let front = fronts.entry(t).or_default();
        let mut changed = false;
        for r in temps.values().flat_map(|(_, r)| r) {
            if let (Some(c), Some(b), Some(true)) = (r.cycles, r.onchip_bytes, r.feasible) {
                changed |= front.insert(c, b, &r.key);
            }
        }
        if !changed {
            return Ok(());
        }
        let task = self.tools[t].name();
        let points: Vec<ParetoRow> = front
            .points
            .iter()
            .map(|(c, b, k)| ParetoRow {
                task: task.to_string(),
                cycles: *c,
                onchip_bytes: *b,
                sample_key: k.clone(),
            })
            .collect();
        self.store
            .put_pareto(self.run, task, &points)
            .map_err(|e| Status::Failed { error: e })
    }

    fn solution_row(&self, t: usize, s: &Solved) -> SolutionRow {
        SolutionRow {
            task: self.tools[t].name().to_string(),
            program: s.best.program.clone().unwrap_or_default(),
            sample_key: s.best.key.clone(),
            iteration: s.solved_in,
            successes: s.successes,
            cycles: s.best.cycles,
            onchip_bytes: s.best.onchip_bytes,
        }
    }

    /// Stores a round's chosen solutions with its totals (one commit) and reports it.
    fn record_iteration(
        &self,
        row: IterationRow,
        solutions: &[SolutionRow],
        rows: &mut Vec<IterationRow>,
    ) -> Result<(), Status> {
        self.store
            .put_round(self.run, solutions, &row)
            .map_err(|e| Status::Failed { error: e })?;
        self.progress.iteration_done(&row);
        rows.push(row);
        Ok(())
    }

    /// Samples k programs for each of `tasks` at each temperature; results in key order.
    async fn round(
        self: &Arc<Self>,
        iteration: u32,
        tasks: &[usize],
        demos: &Arc<Vec<Demo>>,
        temps: &[f64],
        prompts: Option<&BTreeMap<usize, String>>,
    ) -> Vec<(usize, f64, Outcome)> {
        let k = self.cfg.samples;
        self.progress.round_started(
            iteration,
            tasks.len(),
            tasks.len() as u64 * u64::from(k) * temps.len() as u64,
        );
        // One conversation per task and temperature: its k samples share the prompt, its hash
        // (taken here, before any call is waiting) and its serialized body. Its first sample
        // goes out as soon as it is built.
        let mut convs: Vec<(usize, f64, Arc<Conversation>)> = Vec::new();
        let mut handles: Vec<Vec<JoinHandle<Outcome>>> = Vec::new();
        for &t in tasks {
            let p = match prompts.and_then(|p| p.get(&t)) {
                Some(p) => p.clone(),
                None => prompt::proposer_prompt(&self.tools[t], demos),
            };
            for &temp in temps {
                let conv =
                    Conversation::new(Arc::clone(&self.system), vec![Message::user(&*p)], temp);
                conv.hash();
                let mut hs = Vec::with_capacity(k as usize);
                if k > 0 {
                    hs.push(self.spawn_sample(t, iteration, temp, 0, &conv));
                }
                handles.push(hs);
                convs.push((t, temp, conv));
            }
        }
        // The other samples sample-major: sample i of every conversation before sample i+1 of
        // any. Each wave of calls then spans the tasks, so every distinct answer is verified
        // while later calls are still in flight, and the round's last wave rarely waits for a
        // verification; a budget that runs out is spread over the tasks, not spent on the first.
        for idx in 1..k {
            for ((t, temp, conv), hs) in convs.iter().zip(handles.iter_mut()) {
                hs.push(self.spawn_sample(*t, iteration, *temp, idx, conv));
            }
        }
        if iteration == 0
            && let Ok(mut s) = self.startup.lock()
        {
            s.mark("round0_spawn");
        }
        // Results in key order (task, temperature, sample), whatever order the calls ran in.
        let mut out = Vec::with_capacity(convs.len() * k as usize);
        for ((t, temp, _), hs) in convs.iter().zip(handles) {
            for h in hs {
                let o = h
                    .await
                    .unwrap_or_else(|e| Outcome::Fatal(format!("a sample task failed: {e}")));
                out.push((*t, *temp, o));
            }
        }
        out
    }

    fn spawn_sample(
        self: &Arc<Self>,
        t: usize,
        iteration: u32,
        temp: f64,
        idx: u32,
        conv: &Arc<Conversation>,
    ) -> JoinHandle<Outcome> {
        let me = Arc::clone(self);
        let conv = Arc::clone(conv);
        tokio::spawn(async move { me.sample(t, iteration, temp, idx, conv).await })
    }

    /// One sample: the proposer's answer, then up to `repairs` repair turns.
    async fn sample(
        self: Arc<Self>,
        t: usize,
        iteration: u32,
        temp: f64,
        idx: u32,
        first: Arc<Conversation>,
    ) -> Outcome {
        let tool = Arc::clone(&self.tools[t]);
        let base = format!("{}/i{iteration}/T{temp:.2}/s{idx:03}", tool.name());
        let mut conv = first;
        let (mut tokens, mut cost) = (0u64, 0f64);
        for turn in 0..=self.cfg.repairs {
            let req = ChatRequest::new(format!("{base}/t{turn}"), Arc::clone(&conv));
            let (row, counted) = match self.memo.get(&req.key) {
                Some(r) => (r.clone(), false),
                None => {
                    // The budget is checked once a call slot is free, so queued samples see
                    // what the calls before them spent.
                    let Ok(_slot) = self.call_slots.acquire().await else {
                        return Outcome::Fatal("call slots closed".into());
                    };
                    if self.budget.exhausted() {
                        return Outcome::Budget;
                    }
                    self.first_call
                        .get_or_init(|| self.startup.lock().map_or(0.0, |s| s.elapsed_s()));
                    let call = self.provider.complete(&req).await;
                    // Spend is counted as the answer arrives, before the slot is released:
                    // a queued sample must see it even while this one is still verified and
                    // committed, or a fast provider overshoots the budget by far more than
                    // `concurrency` answers.
                    if let Ok(c) = &call {
                        let u = c.usage;
                        self.budget
                            .add(u.prompt_tokens + u.completion_tokens, self.cost(&u));
                    }
                    drop(_slot);
                    let meta = (iteration, temp, idx, turn);
                    let row = match call {
                        Ok(c) => self.evaluate(t, &req, meta, c).await,
                        Err(CallError::Failed(f)) => self.failed_row(t, &req, meta, &f),
                        Err(CallError::Pending) => return Outcome::Pending,
                        Err(CallError::Fatal(m)) => return Outcome::Fatal(m),
                    };
                    // Group commit, off the async workers; the sample goes on once its row
                    // is committed.
                    match self.writer.insert(row).await {
                        Ok(row) => (row, true),
                        Err(e) => return Outcome::Fatal(e),
                    }
                }
            };
            let tk = row.prompt_tokens + row.completion_tokens;
            if !counted {
                self.budget.add(tk, row.cost);
            }
            tokens += tk;
            cost += row.cost;
            self.progress
                .sample_done(tool.name(), row.passed, tk, row.cost);
            if row.passed {
                return Outcome::Finished {
                    passed: Some(Box::new(row)),
                    tokens,
                    cost,
                };
            }
            if row.verdict == "provider_error" || turn == self.cfg.repairs {
                break;
            }
            let mut messages = conv.messages.clone();
            messages.push(Message::assistant(row.response.clone().unwrap_or_default()));
            messages.push(Message::user(prompt::repair_prompt(
                &row.verdict,
                row.diagnostics.as_deref(),
                &crate::tool::explain,
            )));
            conv = Conversation::new(Arc::clone(&self.system), messages, temp);
        }
        Outcome::Finished {
            passed: None,
            tokens,
            cost,
        }
    }

    /// What `u` costs at the run's price.
    fn cost(&self, u: &crate::provider::Usage) -> f64 {
        (u.prompt_tokens as f64 * self.price.input_per_mtok
            + u.completion_tokens as f64 * self.price.output_per_mtok)
            / 1e6
    }

    fn failed_row(
        &self,
        t: usize,
        req: &ChatRequest,
        meta: (u32, f64, u32, u32),
        f: &crate::provider::Failure,
    ) -> SampleRow {
        SampleRow {
            verdict: "provider_error".into(),
            provider: self.provider.kind().as_str().into(),
            model: self.cfg.provider.model.clone(),
            error: Some(format!("{}: {}", f.kind, f.message)),
            ..self.row(t, req, meta)
        }
    }

    /// The fields every sample row of task `t` and request `req` shares; the rest empty.
    fn row(&self, t: usize, req: &ChatRequest, meta: (u32, f64, u32, u32)) -> SampleRow {
        SampleRow {
            key: req.key.clone(),
            task: self.tools[t].name().to_string(),
            iteration: meta.0,
            temperature: meta.1,
            sample: meta.2,
            turn: meta.3,
            prompt_hash: req.request_hash(),
            response: None,
            program: None,
            graph_hash: None,
            verdict: String::new(),
            linear: None,
            passed: false,
            guardian: false,
            diagnostics: None,
            cycles: None,
            onchip_bytes: None,
            feasible: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            provider: String::new(),
            model: String::new(),
            toolchain_version: crate::tool::toolchain_version(),
            error: None,
        }
    }

    /// Checks, guards (Copy fix), verifies (deduplicated) and simulates one answer.
    async fn evaluate(
        self: &Arc<Self>,
        t: usize,
        req: &ChatRequest,
        meta: (u32, f64, u32, u32),
        c: Completion,
    ) -> SampleRow {
        // Identical answers (common at low temperature) are evaluated once per task; the
        // others wait for that evaluation without holding a verification slot or a thread.
        let key = format!("answer:{}", crate::util::sha256_hex(&c.text));
        let cell = self.acache[t]
            .lock()
            .map(|mut m| Arc::clone(m.entry(key).or_default()))
            .unwrap_or_default();
        let ev = cell
            .get_or_init(|| async {
                let _slot = self.verify_slots.acquire().await.ok();
                let me = Arc::clone(self);
                let text = c.text.clone();
                tokio::task::spawn_blocking(move || {
                    let start = std::time::Instant::now();
                    let ev = me.evaluate_answer(t, &text);
                    me.evaluations.fetch_add(1, Ordering::Relaxed);
                    me.evaluate_ns
                        .fetch_add(crate::util::nanos(start.elapsed()), Ordering::Relaxed);
                    ev
                })
                .await
                .unwrap_or_else(|e| Evaluated::broken(format!("verification crashed: {e}")))
            })
            .await
            .clone();
        if ev.guardian {
            self.guardian.fetch_add(1, Ordering::Relaxed);
        }
        let cost = self.cost(&c.usage);
        SampleRow {
            response: Some(c.text),
            program: Some(ev.program),
            graph_hash: ev.graph_hash,
            verdict: ev.verdict,
            linear: ev.linear,
            passed: ev.passed,
            guardian: ev.guardian,
            diagnostics: ev.diagnostics,
            cycles: ev.cycles,
            onchip_bytes: ev.onchip_bytes,
            feasible: ev.feasible,
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            cost,
            provider: c.provider,
            model: c.model,
            ..self.row(t, req, meta)
        }
    }

    fn evaluate_answer(&self, t: usize, answer: &str) -> Evaluated {
        let tool = &self.tools[t];
        let mut program = crate::tool::extract_program(answer);
        let mut check = tool.check(&program);
        let mut guardian = false;
        if !check.ok && check.only_linearity_errors {
            let (fixed, applied) = tool.fix(&program);
            if applied > 0 {
                program = fixed;
                check = tool.check(&program);
                guardian = true;
            }
        }
        // Passing results are shared by graph hash (same graph, same values); failures only by
        // exact text, because their diagnostics point into the text and feed repair prompts.
        let text_key = format!("text:{}", crate::util::sha256_hex(&program));
        let graph_key = check.graph_hash.as_ref().map(|h| format!("graph:{h}"));
        let cached = |key: &str| {
            self.vcache[t]
                .lock()
                .ok()
                .and_then(|m| m.get(key).and_then(|c| c.get().cloned()))
        };
        let v = match graph_key
            .as_deref()
            .and_then(cached)
            .filter(VerifySummary::passed)
        {
            Some(v) => v,
            None => {
                let cell = self.vcache[t]
                    .lock()
                    .map(|mut m| Arc::clone(m.entry(text_key).or_default()))
                    .unwrap_or_default();
                let v = cell
                    .get_or_init(|| {
                        self.verifications.fetch_add(1, Ordering::Relaxed);
                        tool.verify(&program, self.cfg.seeds)
                    })
                    .clone();
                if v.passed()
                    && let (Some(g), Ok(mut m)) = (graph_key, self.vcache[t].lock())
                {
                    m.entry(g).or_default().get_or_init(|| v.clone());
                }
                v
            }
        };
        let mut passed = v.passed();
        // Passes keep this program's own check JSON (its warnings), failures the verify JSON.
        let mut diagnostics = Some(if passed {
            check.json.to_string()
        } else {
            v.json.to_string()
        });
        let (mut cycles, mut onchip, mut feasible) = (None, None, None);
        let mut verdict = v.verdict;
        if passed && let Some(sim) = &self.simulator {
            let require = self.feasibility() == Feasibility::Require;
            match sim.simulate(tool, &program, self.cfg.fifo_depth) {
                Ok(r) => {
                    cycles = Some(r.cycles);
                    onchip = Some(r.onchip_peak_bytes);
                    feasible = Some(!r.deadlock);
                    if r.deadlock && require {
                        // Rejected: the repair turn gets the deadlock diagnostic (its cycle,
                        // lines and the FIFO depth that would avoid it).
                        passed = false;
                        verdict = "deadlock".into();
                    }
                    diagnostics = Some(r.json.to_string());
                }
                Err(msg) if require => {
                    passed = false;
                    verdict = "sim_error".into();
                    diagnostics =
                        Some(serde_json::json!({"verdict": "sim_error", "error": msg}).to_string());
                }
                Err(_) => {}
            }
        }
        Evaluated {
            program,
            graph_hash: check.graph_hash,
            verdict,
            linear: v.linear,
            passed,
            guardian,
            diagnostics,
            cycles,
            onchip_bytes: onchip,
            feasible,
        }
    }

    /// Counts a round's outcomes (in key order) without deciding anything.
    fn tally(&self, results: Vec<(usize, f64, Outcome)>) -> Tally {
        let mut t = Tally::default();
        for (task, temp, o) in results {
            match o {
                Outcome::Finished {
                    passed,
                    tokens,
                    cost,
                } => {
                    t.samples += 1;
                    t.tokens += tokens;
                    t.cost += cost;
                    let e = t
                        .per
                        .entry(task)
                        .or_default()
                        .entry(format!("{temp:.2}"))
                        .or_default();
                    if let Some(r) = passed {
                        e.0 += 1;
                        e.1.push(*r);
                    }
                }
                Outcome::Pending => t.stop = t.stop.or(Some(self.waiting())),
                Outcome::Budget => t.stop = t.stop.or(Some(Status::BudgetExhausted)),
                Outcome::Fatal(e) => t.stop = Some(Status::Failed { error: e }),
            }
        }
        t
    }

    /// Best-of merge of a round into the solved set; records the iteration (timed).
    fn merge(
        &self,
        iteration: u32,
        stratum: Option<u32>,
        results: Vec<(usize, f64, Outcome)>,
        solved: &mut BTreeMap<usize, Solved>,
        fronts: &mut BTreeMap<usize, Pareto>,
        rows: &mut Vec<IterationRow>,
    ) -> Result<(), Status> {
        let start = std::time::Instant::now();
        let r = self.merge_round(iteration, stratum, results, solved, fronts, rows);
        self.merge_ns
            .fetch_add(crate::util::nanos(start.elapsed()), Ordering::Relaxed);
        r
    }

    fn merge_round(
        &self,
        iteration: u32,
        stratum: Option<u32>,
        results: Vec<(usize, f64, Outcome)>,
        solved: &mut BTreeMap<usize, Solved>,
        fronts: &mut BTreeMap<usize, Pareto>,
        rows: &mut Vec<IterationRow>,
    ) -> Result<(), Status> {
        let tally = self.tally(results);
        if let Some(Status::Waiting { .. } | Status::Failed { .. }) = &tally.stop {
            return Err(tally.stop.unwrap_or(Status::Done));
        }
        let before = solved.len();
        let mut sols = Vec::new();
        for (t, temps) in tally.per {
            self.update_front(t, &temps, fronts)?;
            let successes = temps.values().map(|(s, _)| *s).max().unwrap_or(0);
            let best = temps
                .into_values()
                .flat_map(|(_, r)| r)
                .min_by(|a, b| rank(a).cmp(&rank(b)));
            if let (Some(best), true) = (best, successes > 0) {
                let s = Solved {
                    successes,
                    solved_in: iteration,
                    best,
                };
                sols.push(self.solution_row(t, &s));
                solved.insert(t, s);
            }
        }
        let row = IterationRow {
            iteration,
            stratum,
            solved: solved.len() as u32,
            new: (solved.len() - before) as u32,
            samples: tally.samples,
            tokens: tally.tokens,
            cost: tally.cost,
            improved: None,
        };
        self.record_iteration(row, &sols, rows)?;
        match tally.stop {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    /// Writes the queued batch requests and names the file.
    fn waiting(&self) -> Status {
        let lines = self.provider.take_pending();
        let path = format!(
            "{}.batch-{}.requests.jsonl",
            self.cfg_store_stem(),
            self.batch_seq()
        );
        let mut text = String::new();
        for l in &lines {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        match std::fs::write(&path, text) {
            Ok(()) => Status::Waiting { requests: path },
            Err(e) => Status::Failed {
                error: format!("cannot write {path}: {e}"),
            },
        }
    }

    fn cfg_store_stem(&self) -> String {
        self.batch_prefix.clone()
    }

    /// Batch files are numbered by the answers already ingested (one file per wait).
    fn batch_seq(&self) -> usize {
        let mut n = 0;
        while std::path::Path::new(&format!(
            "{}.batch-{n}.requests.jsonl",
            self.cfg_store_stem()
        ))
        .exists()
        {
            n += 1;
        }
        n
    }

    fn finish(
        &self,
        status: Status,
        solved: &BTreeMap<usize, Solved>,
        rows: Vec<IterationRow>,
    ) -> Summary {
        let label = match &status {
            Status::Done => "done".to_string(),
            Status::Waiting { requests } => format!("waiting:{requests}"),
            Status::BudgetExhausted => "budget_exhausted".into(),
            Status::Failed { error } => format!("failed:{}", crate::util::truncate(error, 500)),
        };
        let start = std::time::Instant::now();
        let _ = self.store.set_status(self.run, &label);
        self.merge_ns
            .fetch_add(crate::util::nanos(start.elapsed()), Ordering::Relaxed);
        let mut solved_tasks: Vec<String> = solved
            .keys()
            .map(|t| self.tools[*t].name().to_string())
            .collect();
        solved_tasks.sort();
        Summary {
            run: self.run,
            status,
            tasks: self.tools.len(),
            solved: solved.len(),
            solved_tasks,
            samples: rows.iter().map(|r| r.samples).sum(),
            tokens: rows.iter().map(|r| r.tokens).sum(),
            cost: rows.iter().map(|r| r.cost).sum(),
            iterations: rows,
            guardian_fired: self.guardian.load(Ordering::Relaxed),
            verifications: self.verifications.load(Ordering::Relaxed),
            failures: self.provider.stats.snapshot(),
            timings: Timings {
                evaluations: self.evaluations.load(Ordering::Relaxed),
                evaluate_s: self.evaluate_ns.load(Ordering::Relaxed) as f64 / 1e9,
                store_commits: self.writer.commits(),
                store_s: self.writer.seconds(),
                startup: self
                    .startup
                    .lock()
                    .map(|s| s.phases.clone())
                    .unwrap_or_default(),
                first_call_s: self.first_call.get().copied(),
                merge_s: self.merge_ns.load(Ordering::Relaxed) as f64 / 1e9,
                finished_at: Some(std::time::Instant::now()),
            },
        }
    }
}

/// Demonstrations prefer fast solutions when cycles are known (then less on-chip memory),
/// else short ones; ties by key.
fn rank(r: &SampleRow) -> (u64, u64, usize, String) {
    (
        r.cycles.unwrap_or(u64::MAX),
        r.onchip_bytes.unwrap_or(u64::MAX),
        r.program.as_deref().map_or(usize::MAX, |p| p.trim().len()),
        r.key.clone(),
    )
}

/// An optimize answer replaces the best solution only when it takes fewer cycles, or as many
/// with less on-chip memory.
fn faster(new: &SampleRow, best: &SampleRow) -> bool {
    let key = |r: &SampleRow| {
        (
            r.cycles.unwrap_or(u64::MAX),
            r.onchip_bytes.unwrap_or(u64::MAX),
        )
    };
    key(new) < key(best)
}

/// Solved tasks by success count ascending (hardest first), split into at most m strata of
/// near-equal size; ties by task path.
fn stratify(solved: &BTreeMap<usize, Solved>, m: usize, tools: &[Arc<Tool>]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = solved.keys().copied().collect();
    order.sort_by(|a, b| {
        (solved[a].successes, tools[*a].path()).cmp(&(solved[b].successes, tools[*b].path()))
    });
    let n = order.len();
    let m = m.max(1).min(n.max(1));
    let mut out = Vec::new();
    for g in 0..m {
        let chunk: Vec<usize> = order[g * n / m..(g + 1) * n / m].to_vec();
        if !chunk.is_empty() {
            out.push(chunk);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Evaluated {
    program: String,
    graph_hash: Option<String>,
    verdict: String,
    linear: Option<bool>,
    passed: bool,
    guardian: bool,
    diagnostics: Option<String>,
    cycles: Option<u64>,
    onchip_bytes: Option<u64>,
    feasible: Option<bool>,
}

impl Evaluated {
    fn broken(msg: String) -> Evaluated {
        Evaluated {
            program: String::new(),
            graph_hash: None,
            verdict: "runtime_error".into(),
            linear: None,
            passed: false,
            guardian: false,
            diagnostics: Some(serde_json::json!({"error": msg}).to_string()),
            cycles: None,
            onchip_bytes: None,
            feasible: None,
        }
    }
}

/// A per-task Pareto set of (cycles, on-chip bytes): the `--objective cycles` bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pareto {
    /// (cycles, onchip bytes, sample key), no point dominated by another.
    pub points: Vec<(u64, u64, String)>,
}

impl Pareto {
    /// Inserts a point unless dominated; drops the points it dominates. True if kept.
    pub fn insert(&mut self, cycles: u64, bytes: u64, key: &str) -> bool {
        if self
            .points
            .iter()
            .any(|(c, b, _)| *c <= cycles && *b <= bytes)
        {
            return false;
        }
        self.points
            .retain(|(c, b, _)| !(cycles <= *c && bytes <= *b));
        self.points.push((cycles, bytes, key.to_string()));
        self.points.sort();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_the_front() {
        let mut p = Pareto::default();
        assert!(p.insert(100, 50, "a"));
        assert!(p.insert(80, 60, "b"));
        assert!(!p.insert(120, 70, "c"));
        assert!(p.insert(70, 40, "d"));
        assert_eq!(p.points, vec![(70, 40, "d".to_string())]);
    }
}
