//! The experience store: one SQLite file (WAL) holding runs, their tasks, every sample turn,
//! solutions, demonstrations, per-iteration totals and batch answers. Schema changes are
//! numbered migrations applied in order (`PRAGMA user_version`).
//!
//! Every finished sample turn is committed before its sample goes on (rows that finish together
//! share a commit), so a killed run loses at most the calls that were in flight; `agent resume`
//! finds the finished ones by key and never repeats them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Migrations, in order; entry i brings the schema from version i to i+1.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        config TEXT NOT NULL,
        prices TEXT NOT NULL,
        toolchain_version TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    CREATE TABLE tasks (
        run_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE samples (
        run_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        task TEXT NOT NULL,
        iteration INTEGER NOT NULL,
        temperature REAL NOT NULL,
        sample INTEGER NOT NULL,
        turn INTEGER NOT NULL,
        prompt_hash TEXT NOT NULL,
        response TEXT,
        program TEXT,
        graph_hash TEXT,
        verdict TEXT NOT NULL,
        linear INTEGER,
        passed INTEGER NOT NULL,
        guardian INTEGER NOT NULL,
        diagnostics TEXT,
        cycles INTEGER,
        onchip_bytes INTEGER,
        feasible INTEGER,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        toolchain_version TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (run_id, key)
    );
    CREATE INDEX samples_task ON samples (run_id, task);
    CREATE TABLE solutions (
        run_id INTEGER NOT NULL,
        task TEXT NOT NULL,
        program TEXT NOT NULL,
        sample_key TEXT NOT NULL,
        iteration INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        cycles INTEGER,
        onchip_bytes INTEGER,
        PRIMARY KEY (run_id, task)
    );
    CREATE TABLE demonstrations (
        run_id INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        task TEXT NOT NULL,
        PRIMARY KEY (run_id, iteration, task)
    );
    CREATE TABLE iterations (
        run_id INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        stratum INTEGER,
        solved INTEGER NOT NULL,
        new INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        PRIMARY KEY (run_id, iteration)
    );
    CREATE TABLE batch_answers (
        run_id INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (run_id, custom_id)
    );",
    // 2: the optimize objective: per-task Pareto sets, and optimize rounds' improvement counts.
    "CREATE TABLE pareto (
        run_id INTEGER NOT NULL,
        task TEXT NOT NULL,
        cycles INTEGER NOT NULL,
        onchip_bytes INTEGER NOT NULL,
        sample_key TEXT NOT NULL,
        PRIMARY KEY (run_id, task, sample_key)
    );
    ALTER TABLE iterations ADD COLUMN improved INTEGER;",
];

/// One finished sample turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    pub key: String,
    pub task: String,
    pub iteration: u32,
    pub temperature: f64,
    pub sample: u32,
    pub turn: u32,
    pub prompt_hash: String,
    pub response: Option<String>,
    pub program: Option<String>,
    pub graph_hash: Option<String>,
    /// A verify verdict, or `provider_error`.
    pub verdict: String,
    pub linear: Option<bool>,
    pub passed: bool,
    /// The guardian's Copy fix was applied.
    pub guardian: bool,
    /// The verify JSON (diagnostics, outputs) the repair turn feeds back.
    pub diagnostics: Option<String>,
    /// Simulator results: `None` when the run simulates nothing or the sample did not verify.
    pub cycles: Option<u64>,
    pub onchip_bytes: Option<u64>,
    pub feasible: Option<bool>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub provider: String,
    pub model: String,
    pub toolchain_version: String,
    pub error: Option<String>,
}

/// A task's chosen solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolutionRow {
    pub task: String,
    pub program: String,
    pub sample_key: String,
    pub iteration: u32,
    pub successes: u32,
    pub cycles: Option<u64>,
    pub onchip_bytes: Option<u64>,
}

/// Totals of one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRow {
    pub iteration: u32,
    /// The demonstration level (1 = hardest stratum only); `None` for iteration 0.
    pub stratum: Option<u32>,
    pub solved: u32,
    pub new: u32,
    pub samples: u64,
    pub tokens: u64,
    pub cost: f64,
    /// Optimize rounds (`--objective cycles`): how many tasks got a faster solution; `None`
    /// for solve iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub improved: Option<u32>,
}

/// One point of a task's Pareto set: a verified, feasible solution no other one beats on both
/// cycles and on-chip bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParetoRow {
    pub task: String,
    pub cycles: u64,
    pub onchip_bytes: u64,
    pub sample_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub config: String,
    pub prices: String,
    pub toolchain_version: String,
    pub status: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

type R<T> = Result<T, String>;

fn e(err: rusqlite::Error) -> String {
    format!("store: {err}")
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &str) -> R<Store> {
        let conn =
            Connection::open(path).map_err(|err| format!("cannot open store {path}: {err}"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(e)?;
        // `synchronous` first: switching a new file to WAL is itself a commit, and at the
        // default FULL it costs extra fsyncs (the overhead bench saw ~60 ms of them on a busy
        // disk). In WAL mode NORMAL syncs at checkpoints only; a crash can lose the last
        // commits, never corrupt the store.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(e)?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(format!(
                "store {path} has schema version {version}, newer than this stepforge knows ({})",
                MIGRATIONS.len()
            ));
        }
        // Every pending migration in one transaction: a new store costs one commit, not one
        // per migration, and a failed upgrade leaves the old schema whole.
        if version < MIGRATIONS.len() {
            let mut batch = String::from("BEGIN;");
            for m in &MIGRATIONS[version..] {
                batch.push_str(m);
                batch.push(';');
            }
            batch.push_str(&format!(
                "PRAGMA user_version = {}; COMMIT;",
                MIGRATIONS.len()
            ));
            conn.execute_batch(&batch).map_err(e)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> R<T> {
        let c = self
            .conn
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        f(&c).map_err(e)
    }

    pub fn create_run(&self, config: &str, prices: &str, version: &str) -> R<i64> {
        self.create_run_with_tasks(config, prices, version, &[])
    }

    /// Creates a run and stores its tasks (name, path, text) in one transaction: one commit
    /// instead of one per task (the overhead bench counts start-up before the first call), and
    /// a run is never seen with half of its tasks.
    pub fn create_run_with_tasks(
        &self,
        config: &str,
        prices: &str,
        version: &str,
        tasks: &[(&str, &str, &str)],
    ) -> R<i64> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO runs (config, prices, toolchain_version, status, started_at) VALUES (?1, ?2, ?3, 'running', datetime('now'))",
                params![config, prices, version],
            )?;
            let run = tx.last_insert_rowid();
            {
                let mut st = tx.prepare(
                    "INSERT OR IGNORE INTO tasks (run_id, name, path, text) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (name, path, text) in tasks {
                    st.execute(params![run, name, path, text])?;
                }
            }
            tx.commit()?;
            Ok(run)
        })
    }

    pub fn set_status(&self, run: i64, status: &str) -> R<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?1 WHERE id = ?2",
                params![status, run],
            )
            .map(|_| ())
        })
    }

    /// The latest run, or the one with `id`.
    pub fn run(&self, id: Option<i64>) -> R<Option<RunRow>> {
        self.with(|c| {
            let sql = "SELECT id, config, prices, toolchain_version, status FROM runs WHERE (?1 IS NULL OR id = ?1) ORDER BY id DESC LIMIT 1";
            c.query_row(sql, params![id], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    config: r.get(1)?,
                    prices: r.get(2)?,
                    toolchain_version: r.get(3)?,
                    status: r.get(4)?,
                })
            })
            .optional()
        })
    }

    /// (name, path, text) of the run's tasks, by name.
    pub fn tasks(&self, run: i64) -> R<Vec<(String, String, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, path, text FROM tasks WHERE run_id = ?1 ORDER BY path, name",
            )?;
            let rows = st.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    pub fn insert_sample(&self, run: i64, s: &SampleRow) -> R<()> {
        self.insert_samples(run, &[s])
    }

    /// Stores sample turns in one transaction: a round answers many samples at once, and one
    /// commit per row would cost the loop more CPU than the rows themselves (the group commit
    /// of [`crate::writer`]).
    pub fn insert_samples(&self, run: i64, rows: &[&SampleRow]) -> R<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                // Parsed once per connection.
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO samples (run_id, key, task, iteration, temperature, sample, turn, prompt_hash,
                     response, program, graph_hash, verdict, linear, passed, guardian, diagnostics, cycles, onchip_bytes,
                     feasible, prompt_tokens, completion_tokens, cost, provider, model, toolchain_version, error)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26)",
                )?;
                for s in rows {
                    st.execute(params![
                        run, s.key, s.task, s.iteration, s.temperature, s.sample, s.turn, s.prompt_hash,
                        s.response, s.program, s.graph_hash, s.verdict, s.linear, s.passed, s.guardian,
                        s.diagnostics, s.cycles.map(i), s.onchip_bytes.map(i), s.feasible,
                        i(s.prompt_tokens), i(s.completion_tokens), s.cost, s.provider, s.model,
                        s.toolchain_version, s.error
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Every finished sample turn of the run, by key.
    pub fn samples(&self, run: i64) -> R<BTreeMap<String, SampleRow>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT key, task, iteration, temperature, sample, turn, prompt_hash, response, program, graph_hash,
                 verdict, linear, passed, guardian, diagnostics, cycles, onchip_bytes, feasible, prompt_tokens,
                 completion_tokens, cost, provider, model, toolchain_version, error
                 FROM samples WHERE run_id = ?1 ORDER BY key",
            )?;
            let rows = st.query_map(params![run], |r| {
                Ok(SampleRow {
                    key: r.get(0)?,
                    task: r.get(1)?,
                    iteration: r.get(2)?,
                    temperature: r.get(3)?,
                    sample: r.get(4)?,
                    turn: r.get(5)?,
                    prompt_hash: r.get(6)?,
                    response: r.get(7)?,
                    program: r.get(8)?,
                    graph_hash: r.get(9)?,
                    verdict: r.get(10)?,
                    linear: r.get(11)?,
                    passed: r.get(12)?,
                    guardian: r.get(13)?,
                    diagnostics: r.get(14)?,
                    cycles: r.get::<_, Option<i64>>(15)?.map(u),
                    onchip_bytes: r.get::<_, Option<i64>>(16)?.map(u),
                    feasible: r.get(17)?,
                    prompt_tokens: u(r.get(18)?),
                    completion_tokens: u(r.get(19)?),
                    cost: r.get(20)?,
                    provider: r.get(21)?,
                    model: r.get(22)?,
                    toolchain_version: r.get(23)?,
                    error: r.get(24)?,
                })
            })?;
            let mut out = BTreeMap::new();
            for row in rows {
                let row = row?;
                out.insert(row.key.clone(), row);
            }
            Ok(out)
        })
    }

    /// Stores what a round decided in one transaction: the solutions it chose (or improved)
    /// and its iteration totals. One commit per round instead of one per solved task, and a
    /// killed run holds either both or neither (a resume redoes the round from its samples).
    pub fn put_round(&self, run: i64, solutions: &[SolutionRow], it: &IterationRow) -> R<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO solutions (run_id, task, program, sample_key, iteration, successes, cycles, onchip_bytes)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                )?;
                for s in solutions {
                    st.execute(params![run, s.task, s.program, s.sample_key, s.iteration, s.successes, s.cycles.map(i), s.onchip_bytes.map(i)])?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO iterations (run_id, iteration, stratum, solved, new, samples, tokens, cost, improved)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                params![run, it.iteration, it.stratum, it.solved, it.new, i(it.samples), i(it.tokens), it.cost, it.improved],
            )?;
            tx.commit()
        })
    }

    pub fn solutions(&self, run: i64) -> R<Vec<SolutionRow>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT task, program, sample_key, iteration, successes, cycles, onchip_bytes FROM solutions WHERE run_id = ?1 ORDER BY task",
            )?;
            let rows = st.query_map(params![run], |r| {
                Ok(SolutionRow {
                    task: r.get(0)?,
                    program: r.get(1)?,
                    sample_key: r.get(2)?,
                    iteration: r.get(3)?,
                    successes: r.get(4)?,
                    cycles: r.get::<_, Option<i64>>(5)?.map(u),
                    onchip_bytes: r.get::<_, Option<i64>>(6)?.map(u),
                })
            })?;
            rows.collect()
        })
    }

    /// One transaction for the iteration's demonstrations (not one commit per row).
    pub fn put_demonstrations(&self, run: i64, iteration: u32, tasks: &[String]) -> R<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for t in tasks {
                tx.execute(
                    "INSERT OR IGNORE INTO demonstrations (run_id, iteration, task) VALUES (?1, ?2, ?3)",
                    params![run, iteration, t],
                )?;
            }
            tx.commit()
        })
    }

    pub fn demonstrations(&self, run: i64) -> R<Vec<(u32, String)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT iteration, task FROM demonstrations WHERE run_id = ?1 ORDER BY iteration, task")?;
            let rows = st.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    pub fn iterations(&self, run: i64) -> R<Vec<IterationRow>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT iteration, stratum, solved, new, samples, tokens, cost, improved FROM iterations WHERE run_id = ?1 ORDER BY iteration",
            )?;
            let rows = st.query_map(params![run], |r| {
                Ok(IterationRow {
                    iteration: r.get(0)?,
                    stratum: r.get(1)?,
                    solved: r.get(2)?,
                    new: r.get(3)?,
                    samples: u(r.get(4)?),
                    tokens: u(r.get(5)?),
                    cost: r.get(6)?,
                    improved: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Replaces a task's Pareto set.
    pub fn put_pareto(&self, run: i64, task: &str, points: &[ParetoRow]) -> R<()> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        let tx = c.transaction().map_err(e)?;
        tx.execute(
            "DELETE FROM pareto WHERE run_id = ?1 AND task = ?2",
            params![run, task],
        )
        .map_err(e)?;
        for p in points {
            tx.execute(
                "INSERT OR REPLACE INTO pareto (run_id, task, cycles, onchip_bytes, sample_key) VALUES (?1,?2,?3,?4,?5)",
                params![run, task, i(p.cycles), i(p.onchip_bytes), p.sample_key],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// Every task's Pareto set, by task then cycles.
    pub fn pareto(&self, run: i64) -> R<Vec<ParetoRow>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT task, cycles, onchip_bytes, sample_key FROM pareto WHERE run_id = ?1 ORDER BY task, cycles, onchip_bytes, sample_key",
            )?;
            let rows = st.query_map(params![run], |r| {
                Ok(ParetoRow {
                    task: r.get(0)?,
                    cycles: u(r.get(1)?),
                    onchip_bytes: u(r.get(2)?),
                    sample_key: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn put_batch_answers(
        &self,
        run: i64,
        lines: &BTreeMap<String, serde_json::Value>,
    ) -> R<usize> {
        // One transaction for the whole output file (a batch holds a round's every sample).
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut n = 0;
            for (id, line) in lines {
                n += tx.execute(
                    "INSERT OR REPLACE INTO batch_answers (run_id, custom_id, line) VALUES (?1, ?2, ?3)",
                    params![run, id, line.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    pub fn batch_answers(&self, run: i64) -> R<BTreeMap<String, serde_json::Value>> {
        let raw: Vec<(String, String)> = self.with(|c| {
            let mut st =
                c.prepare("SELECT custom_id, line FROM batch_answers WHERE run_id = ?1")?;
            let rows = st.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, l)| serde_json::from_str(&l).ok().map(|v| (k, v)))
            .collect())
    }

    /// A canonical, timing-free dump of one run (samples, solutions, demonstrations,
    /// iterations) for comparing runs: replay against live, resumed against uninterrupted.
    pub fn dump(&self, run: i64) -> R<serde_json::Value> {
        Ok(serde_json::json!({
            "samples": self.samples(run)?.into_values().collect::<Vec<_>>(),
            "solutions": self.solutions(run)?,
            "demonstrations": self.demonstrations(run)?,
            "iterations": self.iterations(run)?,
            "pareto": self.pareto(run)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("sf-store-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("s.db");
        let _ = std::fs::remove_file(&p);
        let path = p.to_string_lossy().to_string();
        let s = Store::open(&path).unwrap();
        let run = s.create_run("{}", "{}", "v").unwrap();
        let row = SampleRow {
            key: "t/i0/s0/t0".into(),
            task: "t".into(),
            iteration: 0,
            temperature: 0.7,
            sample: 0,
            turn: 0,
            prompt_hash: "h".into(),
            response: Some("r".into()),
            program: None,
            graph_hash: None,
            verdict: "pass".into(),
            linear: Some(true),
            passed: true,
            guardian: false,
            diagnostics: None,
            cycles: None,
            onchip_bytes: None,
            feasible: None,
            prompt_tokens: 5,
            completion_tokens: 6,
            cost: 0.5,
            provider: "openai".into(),
            model: "m".into(),
            toolchain_version: "v".into(),
            error: None,
        };
        s.insert_sample(run, &row).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.samples(run).unwrap()["t/i0/s0/t0"], row);
        assert_eq!(s.run(None).unwrap().unwrap().status, "running");
    }
}
