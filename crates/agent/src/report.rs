//! Reports over the experience store: per iteration and per group solved counts, pass rate
//! per task, tokens and cost, best cycles (when simulated). Rendered as a markdown table and as
//! one self-contained HTML page with hand-written SVG plots (no scripts, no external assets).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::store::{IterationRow, ParetoRow, Store};

#[derive(Debug, Clone, Serialize)]
pub struct TaskStats {
    pub task: String,
    pub group: String,
    pub samples: u64,
    pub passed: u64,
    pub pass_rate: f64,
    /// The iteration that solved it.
    pub solved_in: Option<u32>,
    pub best_cycles: Option<u64>,
    /// (iteration, best cycles among that iteration's passing samples).
    pub cycles_over_time: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: i64,
    pub status: String,
    pub model: String,
    pub tasks: usize,
    pub solved: usize,
    pub iterations: Vec<IterationRow>,
    /// group → solved count after each iteration.
    pub groups: BTreeMap<String, Vec<u32>>,
    pub group_sizes: BTreeMap<String, u32>,
    pub per_task: Vec<TaskStats>,
    /// Every task's Pareto set of (cycles, on-chip bytes), by task then cycles.
    pub pareto: Vec<ParetoRow>,
    pub guardian_fired: u64,
    pub provider_errors: u64,
    pub tokens: u64,
    pub cost: f64,
}

/// Builds the report of the store's latest run.
pub fn build(store: &Store) -> Result<Report, String> {
    let run = store.run(None)?.ok_or("the store holds no run")?;
    let cfg: serde_json::Value = serde_json::from_str(&run.config).unwrap_or_default();
    let tasks = store.tasks(run.id)?;
    let samples = store.samples(run.id)?;
    let solutions = store.solutions(run.id)?;
    let iterations = store.iterations(run.id)?;
    let group_of: BTreeMap<String, String> = tasks
        .iter()
        .map(|(name, path, _)| {
            let g = path
                .split('/')
                .next()
                .filter(|_| path.contains('/'))
                .unwrap_or("(top)");
            (name.clone(), g.to_string())
        })
        .collect();
    let mut per_task: BTreeMap<String, TaskStats> = BTreeMap::new();
    for (name, _, _) in &tasks {
        per_task.insert(
            name.clone(),
            TaskStats {
                task: name.clone(),
                group: group_of[name].clone(),
                samples: 0,
                passed: 0,
                pass_rate: 0.0,
                solved_in: None,
                best_cycles: None,
                cycles_over_time: Vec::new(),
            },
        );
    }
    let (mut guardian, mut perr) = (0, 0);
    let mut cyc: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for s in samples.values() {
        guardian += u64::from(s.guardian);
        perr += u64::from(s.verdict == "provider_error");
        let Some(t) = per_task.get_mut(&s.task) else {
            continue;
        };
        // A sample is counted once, at its last turn (turn 0 rows of repaired samples would
        // count it twice); passing turns end a sample.
        let last =
            s.passed || s.verdict == "provider_error" || !samples.contains_key(&next_turn(&s.key));
        if last {
            t.samples += 1;
            t.passed += u64::from(s.passed);
        }
        if let (true, Some(c)) = (s.passed, s.cycles) {
            let e = cyc.entry((s.task.clone(), s.iteration)).or_insert(u64::MAX);
            *e = (*e).min(c);
        }
    }
    for ((task, it), c) in cyc {
        if let Some(t) = per_task.get_mut(&task) {
            t.cycles_over_time.push((it, c));
        }
    }
    for sol in &solutions {
        if let Some(t) = per_task.get_mut(&sol.task) {
            t.solved_in = Some(sol.iteration);
            t.best_cycles = sol.cycles;
        }
    }
    let mut group_sizes: BTreeMap<String, u32> = BTreeMap::new();
    for g in group_of.values() {
        *group_sizes.entry(g.clone()).or_insert(0) += 1;
    }
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for g in group_sizes.keys() {
        let counts = iterations
            .iter()
            .map(|it| {
                per_task
                    .values()
                    .filter(|t| &t.group == g && t.solved_in.is_some_and(|s| s <= it.iteration))
                    .count() as u32
            })
            .collect();
        groups.insert(g.clone(), counts);
    }
    for t in per_task.values_mut() {
        t.pass_rate = if t.samples == 0 {
            0.0
        } else {
            t.passed as f64 / t.samples as f64
        };
    }
    Ok(Report {
        run: run.id,
        status: run.status,
        model: cfg["provider"]["model"].as_str().unwrap_or("").to_string(),
        tasks: tasks.len(),
        solved: solutions.len(),
        tokens: iterations.iter().map(|i| i.tokens).sum(),
        cost: iterations.iter().map(|i| i.cost).sum(),
        iterations,
        groups,
        group_sizes,
        per_task: per_task.into_values().collect(),
        pareto: store.pareto(run.id)?,
        guardian_fired: guardian,
        provider_errors: perr,
    })
}

fn next_turn(key: &str) -> String {
    match key.rsplit_once("/t") {
        Some((base, n)) => format!("{base}/t{}", n.parse::<u32>().unwrap_or(0) + 1),
        None => key.to_string(),
    }
}

/// The report as markdown tables.
pub fn render_table(r: &Report) -> String {
    let mut s = format!(
        "run {} ({}), model `{}`: {}/{} tasks solved, {} tokens, ${:.4}, guardian fired {}×, {} provider errors\n\n",
        r.run,
        r.status,
        r.model,
        r.solved,
        r.tasks,
        r.tokens,
        r.cost,
        r.guardian_fired,
        r.provider_errors
    );
    s.push_str("| iteration | stratum | solved | new | samples | tokens | cost | faster |\n|---|---|---|---|---|---|---|---|\n");
    for i in &r.iterations {
        let stratum = match (i.stratum, i.improved) {
            (_, Some(_)) => "optimize".to_string(),
            (Some(x), None) => x.to_string(),
            (None, None) => "-".to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} |",
            i.iteration,
            stratum,
            i.solved,
            i.new,
            i.samples,
            i.tokens,
            i.cost,
            i.improved.map_or("-".into(), |x| x.to_string())
        );
    }
    s.push_str("\n| group | tasks | solved |\n|---|---|---|\n");
    for (g, n) in &r.group_sizes {
        let solved = r.groups.get(g).and_then(|v| v.last()).copied().unwrap_or(0);
        let _ = writeln!(s, "| {g} | {n} | {solved} |");
    }
    s.push_str("\n| task | group | samples | passed | pass rate | solved in | best cycles |\n|---|---|---|---|---|---|---|\n");
    for t in &r.per_task {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {} | {} |",
            t.task,
            t.group,
            t.samples,
            t.passed,
            t.pass_rate,
            t.solved_in.map_or("-".into(), |x| x.to_string()),
            t.best_cycles.map_or("-".into(), |x| x.to_string())
        );
    }
    if !r.pareto.is_empty() {
        s.push_str("\nPareto sets (verified, deadlock-free solutions no other beats on both):\n\n| task | cycles | on-chip bytes | sample |\n|---|---|---|---|\n");
        for p in &r.pareto {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                p.task, p.cycles, p.onchip_bytes, p.sample_key
            );
        }
    }
    s
}

/// A scatter plot of every task's Pareto set: cycles (x) against on-chip bytes (y), each
/// task's points joined in cycle order.
fn pareto_chart(points: &[ParetoRow]) -> String {
    let (w, h, left, bottom, top) = (720.0, 300.0, 70.0, 40.0, 30.0);
    let xmax = points.iter().map(|p| p.cycles).max().unwrap_or(1).max(1) as f64;
    let ymax = points
        .iter()
        .map(|p| p.onchip_bytes)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let sx = |x: u64| left + (w - left - 140.0) * x as f64 / xmax;
    let sy = |y: u64| h - bottom - (h - bottom - top) * y as f64 / ymax;
    let mut s = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>Pareto sets</title>\
         <text x=\"{x}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">Pareto sets: cycles vs on-chip bytes</text>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{xr}\" y2=\"{y0}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#333\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{ymax} B</text><text x=\"{xr}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"end\">{xmax} cycles</text>",
        x = w / 2.0,
        y0 = h - bottom,
        xr = w - 140.0,
        lx = left - 4.0,
        ty = top + 4.0,
        xl = h - bottom + 16.0,
    );
    let mut by_task: BTreeMap<&str, Vec<&ParetoRow>> = BTreeMap::new();
    for p in points {
        by_task.entry(p.task.as_str()).or_default().push(p);
    }
    for (i, (task, ps)) in by_task.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = ps
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.cycles), sy(p.onchip_bytes)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1\" points=\"{}\"/>",
            path.join(" ")
        );
        for p in ps {
            let _ = write!(
                s,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{c}\"><title>{}: {} cycles, {} B</title></circle>",
                sx(p.cycles),
                sy(p.onchip_bytes),
                esc(task),
                p.cycles,
                p.onchip_bytes
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{c}\">{}</text>",
            w - 135.0,
            top + 14.0 * (i as f64 + 1.0),
            esc(task)
        );
    }
    s.push_str("</svg>");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
];

/// A vertical bar chart.
fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let (w, h, left, bottom, top) = (720.0, 300.0, 50.0, 90.0, 30.0);
    let max = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let n = values.len().max(1) as f64;
    let bw = (w - left - 10.0) / n;
    let mut s = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{t}</title>\
         <text x=\"{x}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">{t}</text>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#333\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{maxs}</text>",
        t = esc(title),
        x = w / 2.0,
        y0 = h - bottom,
        lx = left - 4.0,
        ty = top + 4.0,
        maxs = esc(&fmt(max)),
    );
    for (i, (l, v)) in labels.iter().zip(values).enumerate() {
        let bh = (h - bottom - top) * v / max;
        let x = left + i as f64 * bw + bw * 0.1;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw2:.1}\" height=\"{bh:.1}\" fill=\"{c}\"><title>{l}: {v}</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ly:.1}\" font-size=\"9\" transform=\"rotate(-50 {tx:.1} {ly:.1})\" text-anchor=\"end\">{l}</text>",
            y = h - bottom - bh,
            bw2 = bw * 0.8,
            c = PALETTE[i % PALETTE.len()],
            l = esc(l),
            v = esc(&fmt(*v)),
            tx = x + bw * 0.4,
            ly = h - bottom + 12.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// A line chart of several series over integer x.
fn line_chart(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h, left, bottom, top) = (720.0, 300.0, 60.0, 40.0, 30.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut xmax, mut ymax) = (1.0f64, 1e-9f64);
    for (x, y) in pts {
        xmax = xmax.max(*x);
        ymax = ymax.max(*y);
    }
    let sx = |x: f64| left + (w - left - 120.0) * x / xmax;
    let sy = |y: f64| h - bottom - (h - bottom - top) * y / ymax;
    let mut s = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{t}</title>\
         <text x=\"{x}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">{t}</text>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{xr}\" y2=\"{y0}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#333\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{ymax}</text><text x=\"{xr}\" y=\"{xl}\" font-size=\"10\" text-anchor=\"end\">iteration {xmax}</text>",
        t = esc(title),
        x = w / 2.0,
        y0 = h - bottom,
        xr = w - 120.0,
        lx = left - 4.0,
        ty = top + 4.0,
        xl = h - bottom + 16.0,
    );
    for (i, (name, p)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = p
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in p {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                sx(*x),
                sy(*y)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{c}\">{}</text>",
            w - 115.0,
            top + 14.0 * (i as f64 + 1.0),
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The report as one self-contained HTML page.
pub fn render_html(r: &Report) -> String {
    let its: Vec<String> = r
        .iterations
        .iter()
        .map(|i| format!("it {}", i.iteration))
        .collect();
    let solved: Vec<f64> = r.iterations.iter().map(|i| f64::from(i.solved)).collect();
    let mut plots = Vec::new();
    plots.push(bar_chart(
        "Solved tasks after each iteration",
        &its,
        &solved,
        &|v| format!("{v:.0}"),
    ));
    let group_series: Vec<(String, Vec<(f64, f64)>)> = r
        .groups
        .iter()
        .map(|(g, v)| {
            (
                g.clone(),
                v.iter()
                    .enumerate()
                    .map(|(i, c)| (i as f64, f64::from(*c)))
                    .collect(),
            )
        })
        .collect();
    plots.push(line_chart(
        "Solved per group over iterations",
        &group_series,
    ));
    let names: Vec<String> = r.per_task.iter().map(|t| t.task.clone()).collect();
    let rates: Vec<f64> = r.per_task.iter().map(|t| t.pass_rate).collect();
    plots.push(bar_chart("Pass rate per task", &names, &rates, &|v| {
        format!("{v:.2}")
    }));
    let tokens: Vec<f64> = r.iterations.iter().map(|i| i.tokens as f64).collect();
    plots.push(bar_chart("Tokens per iteration", &its, &tokens, &|v| {
        format!("{v:.0}")
    }));
    let cost: Vec<f64> = r.iterations.iter().map(|i| i.cost).collect();
    plots.push(bar_chart("Cost per iteration (USD)", &its, &cost, &|v| {
        format!("{v:.4}")
    }));
    let cyc: Vec<(String, Vec<(f64, f64)>)> = r
        .per_task
        .iter()
        .filter(|t| !t.cycles_over_time.is_empty())
        .map(|t| {
            (
                t.task.clone(),
                t.cycles_over_time
                    .iter()
                    .map(|(i, c)| (f64::from(*i), *c as f64))
                    .collect(),
            )
        })
        .collect();
    let mut cycles_plot = if cyc.is_empty() {
        "<p class=\"note\">No cycle counts: this run did not simulate its samples.</p>".to_string()
    } else {
        line_chart("Best cycles per task over iterations", &cyc)
    };
    if !r.pareto.is_empty() {
        cycles_plot.push_str(&pareto_chart(&r.pareto));
    }
    let table = render_table(r);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stepforge agent run {run}</title>\
         <style>body{{font-family:sans-serif;margin:24px;background:#fff;color:#222}}svg.plot{{display:block;margin:16px 0;border:1px solid #ddd}}pre{{background:#f6f6f6;padding:8px;overflow-x:auto}}</style></head>\
         <body><h1>stepforge agent run {run}</h1><p>{solved}/{tasks} tasks solved · {tokens} tokens · ${cost:.4} · status {status}</p>\
         {plots}<h2>Cycles</h2>{cycles_plot}<h2>Tables</h2><pre>{table}</pre></body></html>\n",
        run = r.run,
        solved = r.solved,
        tasks = r.tasks,
        tokens = r.tokens,
        cost = r.cost,
        status = esc(&r.status),
        plots = plots.join("\n"),
        table = esc(&table),
    )
}
