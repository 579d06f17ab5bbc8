//! Group commit of sample rows. Samples finish in bursts (a round's answers arrive together);
//! writing each row in its own transaction, on the async workers, stalled the calls behind it
//! (the overhead bench measured it). Here one thread owns the writing: every row queued while
//! a transaction runs goes into the next one, and each sample still waits until its own row is
//! committed, so a killed run never counts a sample the store does not hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::store::{SampleRow, Store};

/// Rows per transaction at most (bounds the time one commit holds the store).
const MAX_BATCH: usize = 256;

type Job = (SampleRow, oneshot::Sender<Result<SampleRow, String>>);

/// The handle the samples send their rows to; the writer thread ends when it is dropped.
#[derive(Debug)]
pub struct SampleWriter {
    tx: mpsc::UnboundedSender<Job>,
    stats: Arc<WriterStats>,
}

/// Transactions committed and the nanoseconds they took.
#[derive(Debug, Default)]
struct WriterStats {
    commits: AtomicU64,
    nanos: AtomicU64,
}

impl SampleWriter {
    pub fn start(store: Arc<Store>, run: i64) -> Result<SampleWriter, String> {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let stats = Arc::new(WriterStats::default());
        let st = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("stepforge-store".into())
            .spawn(move || write_loop(&store, run, rx, &st))
            .map_err(|e| format!("cannot start the store writer thread: {e}"))?;
        Ok(SampleWriter { tx, stats })
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.stats.commits.load(Ordering::Relaxed)
    }

    /// Seconds spent in those transactions.
    pub fn seconds(&self) -> f64 {
        self.stats.nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Stores `row`; returns it once its transaction has committed.
    pub async fn insert(&self, row: SampleRow) -> Result<SampleRow, String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((row, ack))
            .map_err(|_| "the store writer stopped".to_string())?;
        done.await
            .map_err(|_| "the store writer stopped".to_string())?
    }
}

fn write_loop(store: &Store, run: i64, mut rx: mpsc::UnboundedReceiver<Job>, stats: &WriterStats) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let rows: Vec<&SampleRow> = batch.iter().map(|(r, _)| r).collect();
        let start = std::time::Instant::now();
        let result = store.insert_samples(run, &rows);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .nanos
            .fetch_add(crate::util::nanos(start.elapsed()), Ordering::Relaxed);
        for (row, ack) in batch.drain(..) {
            // A sample that stopped waiting (its run failed) needs no answer.
            let _ = ack.send(result.clone().map(|()| row));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(key: &str) -> SampleRow {
        SampleRow {
            key: key.into(),
            task: "t".into(),
            verdict: "pass".into(),
            ..SampleRow::default()
        }
    }

    #[test]
    fn every_row_is_committed_before_its_sample_continues() {
        let dir = std::env::temp_dir().join(format!("sf-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db").display().to_string();
        let store = Arc::new(Store::open(&path).unwrap());
        let run = store.create_run("{}", "{}", "v").unwrap();
        let w = Arc::new(SampleWriter::start(Arc::clone(&store), run).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
        let keys: Vec<String> = rt.block_on(async {
            let hs: Vec<_> = (0..600)
                .map(|n| {
                    let (w, store) = (Arc::clone(&w), Arc::clone(&store));
                    tokio::spawn(async move {
                        let r = w.insert(row(&format!("k{n:04}"))).await.unwrap();
                        // Committed: visible to any reader now (checked for some rows: each
                        // check reads them all).
                        if n % 50 == 0 {
                            assert!(store.samples(run).unwrap().contains_key(&r.key));
                        }
                        r.key
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.unwrap());
            }
            out
        });
        assert_eq!(keys.len(), 600);
        assert_eq!(store.samples(run).unwrap().len(), 600);
        drop(rt);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
