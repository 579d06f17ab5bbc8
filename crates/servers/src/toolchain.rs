//! The only module that reaches the toolchain: everything goes through the session API
//! (`stepforge-driver`). It also owns the session cache shared by the servers, so a task file
//! is loaded once and reloaded only when the file changes on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use driver::{
    CheckReport, FixReport, OpenError, Session, SimOptions, SimReport, TypedStream, Verdict,
    VerifyOptions, VerifyReport,
};
use stepforge_driver as driver;

/// The op manual: the same text the agent's proposer prompt uses.
pub fn manual() -> String {
    driver::manual()
}

/// The long explanation of a diagnostic code, if the code exists.
pub fn explain(code: &str) -> Option<String> {
    driver::explain(code)
}

/// A session over a task text that is not (or not yet) saved: an editor buffer.
pub fn session_from_text(name: &str, text: &str) -> Result<Session, OpenError> {
    Session::from_yaml(name, text)
}

/// Why a task file could not be opened.
#[derive(Debug, Clone)]
pub enum OpenFailure {
    /// Unreadable or missing file.
    Io(String),
    /// The file was read but is not a valid task.
    Task(OpenError),
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Io(m) => f.write_str(m),
            OpenFailure::Task(e) => write!(f, "{e}"),
        }
    }
}

/// Open sessions keyed by canonical path, each stamped with the file's modification time and
/// length so an edited task file is reloaded. Bounded: the least recently used session goes
/// when the cache is full.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<Cache>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Cache {
    tick: u64,
    map: BTreeMap<PathBuf, Entry>,
}

#[derive(Debug)]
struct Entry {
    stamp: (Option<SystemTime>, u64),
    used: u64,
    session: Arc<Session>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(256)
    }
}

impl Sessions {
    pub fn new(capacity: usize) -> Sessions {
        Sessions {
            inner: Mutex::new(Cache::default()),
            capacity: capacity.max(1),
        }
    }

    /// The session of the task file at `path`, opening (or reopening) it when needed.
    pub fn open(&self, path: &Path) -> Result<Arc<Session>, OpenFailure> {
        let canon = path
            .canonicalize()
            .map_err(|e| OpenFailure::Io(format!("cannot open {}: {e}", path.display())))?;
        let meta = std::fs::metadata(&canon)
            .map_err(|e| OpenFailure::Io(format!("cannot open {}: {e}", path.display())))?;
        let stamp = (meta.modified().ok(), meta.len());
        {
            let mut c = self.lock();
            c.tick += 1;
            let tick = c.tick;
            if let Some(e) = c.map.get_mut(&canon)
                && e.stamp == stamp
            {
                e.used = tick;
                return Ok(e.session.clone());
            }
        }
        // Load outside the lock: a big task file must not stall other requests.
        let session = Arc::new(Session::open(&canon).map_err(|e| match e {
            OpenError::Io { .. } => OpenFailure::Io(e.to_string()),
            OpenError::Task { .. } => OpenFailure::Task(e),
        })?);
        let mut c = self.lock();
        if c.map.len() >= self.capacity && !c.map.contains_key(&canon) {
            let oldest = c
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                c.map.remove(&k);
            }
        }
        c.tick += 1;
        let used = c.tick;
        c.map.insert(
            canon,
            Entry {
                stamp,
                used,
                session: session.clone(),
            },
        );
        Ok(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The JSON of a check (the `stepforge check --format json` object: diagnostics with fixes,
/// `linear`, `graph_hash`, streams) plus the task's name.
pub fn check_json(s: &Session, c: &CheckReport) -> serde_json::Value {
    let mut j = c.to_json();
    if let Some(o) = j.as_object_mut() {
        o.insert("task".into(), s.name().into());
    }
    j
}

/// One message for a task file that failed to open: the error and its diagnostics, one line
/// each.
pub fn describe_open_error(e: &OpenError) -> String {
    match e {
        OpenError::Io { .. } => e.to_string(),
        OpenError::Task {
            source,
            diagnostics,
        } => {
            let mut s = format!("{} is not a valid task file:", source.name);
            for d in diagnostics.iter().filter(|d| d.is_error()) {
                s.push('\n');
                s.push_str(&d.render_short(source));
            }
            s
        }
    }
}
