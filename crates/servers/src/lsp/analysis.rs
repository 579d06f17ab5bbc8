//! One analysed editor document: its task, the check of its program, and those diagnostics as
//! LSP diagnostics. A `.step` program finds its task by a first-line comment `# task: PATH`
//! (relative to the program's directory) or a sibling `STEM.yaml`/`STEM.yml`; a task file is
//! its own task, and its `impl:` is checked in place (the answer extractor keeps spans as
//! offsets into the whole file), so every span of an analysis points into the document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lsp_types::{
    DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Position, Range,
};
use stepforge_syntax::{Diagnostic, Severity, Span};

use crate::text::{LineIndex, Pos, file_uri, uri_path};
use crate::toolchain::{self, CheckReport, OpenError, OpenFailure, Session, Sessions};

/// An editor buffer at one version.
#[derive(Debug, Clone)]
pub struct Doc {
    pub uri: String,
    pub version: i32,
    pub text: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `.step` program (or any non-YAML file).
    Program,
    /// A task file (`*.yaml`/`*.yml`).
    Task,
}

/// The task a document is checked against.
#[derive(Debug)]
pub struct TaskRef {
    pub session: Arc<Session>,
    /// The task file's URI (the document itself for a task file).
    pub uri: String,
}

#[derive(Debug)]
pub struct Analysis {
    pub doc: Doc,
    pub kind: Kind,
    pub index: LineIndex,
    pub task: Option<TaskRef>,
    pub check: Option<CheckReport>,
    /// stepforge diagnostics with spans into the document: the check's, plus the task
    /// loader's for a task file.
    pub diagnostics: Vec<Diagnostic>,
    /// Problems found by the server itself (no task file found, task file broken).
    pub server_problems: Vec<(Range, String)>,
}

impl Analysis {
    pub fn new(doc: Doc, sessions: &Sessions) -> Analysis {
        let path = uri_path(&doc.uri);
        let kind = match path
            .as_deref()
            .and_then(Path::extension)
            .and_then(|e| e.to_str())
        {
            Some("yaml" | "yml") => Kind::Task,
            _ => Kind::Program,
        };
        let index = LineIndex::new(&doc.text);
        let mut a = Analysis {
            doc,
            kind,
            index,
            task: None,
            check: None,
            diagnostics: Vec::new(),
            server_problems: Vec::new(),
        };
        match kind {
            Kind::Task => a.analyse_task(path.as_deref()),
            Kind::Program => a.analyse_program(path.as_deref(), sessions),
        }
        a
    }

    fn analyse_task(&mut self, path: Option<&Path>) {
        let name = path.and_then(Path::file_name).map_or_else(
            || "task.yaml".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match toolchain::session_from_text(&name, &self.doc.text) {
            Ok(s) => {
                self.diagnostics.extend(s.task_warnings().iter().cloned());
                if s.reference_impl().is_some() {
                    let c = s.check(&self.doc.text);
                    self.diagnostics.extend(c.diagnostics.iter().cloned());
                    self.check = Some(c);
                }
                self.task = Some(TaskRef {
                    session: Arc::new(s),
                    uri: self.doc.uri.clone(),
                });
            }
            Err(OpenError::Task { diagnostics, .. }) => self.diagnostics.extend(diagnostics),
            Err(e @ OpenError::Io { .. }) => {
                self.server_problems.push((Range::default(), e.to_string()));
            }
        }
    }

    fn analyse_program(&mut self, path: Option<&Path>, sessions: &Sessions) {
        let task_path = match path.map(|p| find_task(p, &self.doc.text)) {
            Some(Ok(t)) => t,
            Some(Err(msg)) => {
                self.server_problems.push((self.first_line_range(), msg));
                return;
            }
            None => {
                let msg = "only file:// documents can find their task file".to_string();
                self.server_problems.push((Range::default(), msg));
                return;
            }
        };
        match sessions.open(&task_path) {
            Ok(s) => {
                let c = s.check(&self.doc.text);
                self.diagnostics = c.diagnostics.clone();
                self.check = Some(c);
                self.task = Some(TaskRef {
                    session: s,
                    uri: file_uri(&task_path),
                });
            }
            Err(e) => {
                let msg = match e {
                    OpenFailure::Io(m) => m,
                    OpenFailure::Task(e) => format!(
                        "the task file {} has errors (open it to see them): {}",
                        task_path.display(),
                        toolchain::describe_open_error(&e)
                    ),
                };
                self.server_problems.push((self.first_line_range(), msg));
            }
        }
    }

    fn first_line_range(&self) -> Range {
        let end = self.doc.text.find('\n').unwrap_or(self.doc.text.len());
        self.range(Span::new(0, end))
    }

    pub fn pos(&self, offset: usize) -> Position {
        let p = self.index.position(&self.doc.text, offset);
        Position::new(p.line, p.character)
    }

    pub fn range(&self, s: Span) -> Range {
        Range::new(self.pos(s.lo as usize), self.pos(s.hi as usize))
    }

    pub fn offset(&self, p: Position) -> usize {
        self.index.offset(
            &self.doc.text,
            Pos {
                line: p.line,
                character: p.character,
            },
        )
    }

    /// Every diagnostic of the document in LSP form.
    pub fn lsp_diagnostics(&self) -> Vec<lsp_types::Diagnostic> {
        let mut out: Vec<lsp_types::Diagnostic> =
            self.diagnostics.iter().map(|d| self.to_lsp(d)).collect();
        out.extend(
            self.server_problems
                .iter()
                .map(|(r, m)| lsp_types::Diagnostic {
                    range: *r,
                    severity: Some(DiagnosticSeverity::ERROR),
                    source: Some("stepforge".into()),
                    message: m.clone(),
                    ..Default::default()
                }),
        );
        out
    }

    pub fn to_lsp(&self, d: &Diagnostic) -> lsp_types::Diagnostic {
        let mut message = d.message.clone();
        for n in &d.notes {
            message.push_str("\nnote: ");
            message.push_str(n);
        }
        if let Some(h) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(h);
        }
        let uri = self.doc.uri.parse::<lsp_types::Uri>().ok();
        let related: Vec<DiagnosticRelatedInformation> = match &uri {
            Some(uri) => d
                .labels
                .iter()
                .map(|l| DiagnosticRelatedInformation {
                    location: Location::new(uri.clone(), self.range(l.span)),
                    message: l.message.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        lsp_types::Diagnostic {
            range: d.span.map(|s| self.range(s)).unwrap_or_default(),
            severity: Some(match d.severity {
                Severity::Error => DiagnosticSeverity::ERROR,
                Severity::Warning => DiagnosticSeverity::WARNING,
            }),
            code: Some(NumberOrString::String(d.code.as_str().to_string())),
            source: Some("stepforge".into()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            ..Default::default()
        }
    }
}

/// The task file of the program at `path`: a first-line `# task: PATH` comment, else a sibling
/// task file of the same stem.
pub fn find_task(path: &Path, text: &str) -> Result<PathBuf, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let first = text.lines().next().unwrap_or("").trim();
    if let Some(rest) = first.strip_prefix('#')
        && let Some(p) = rest.trim().strip_prefix("task:")
    {
        let p = p.trim();
        let t = dir.join(p);
        return if t.is_file() {
            Ok(t)
        } else {
            Err(format!(
                "the task file `{p}` named on the first line does not exist"
            ))
        };
    }
    for ext in ["yaml", "yml"] {
        let t = path.with_extension(ext);
        if t.is_file() {
            return Ok(t);
        }
    }
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Err(format!(
        "no task file for this program: start it with `# task: path/to/task.yaml` or put `{stem}.yaml` beside it"
    ))
}

/// Analyses by URI, one version each: requests reuse the analysis the diagnostics pass built,
/// and a request that arrives while that analysis is still running waits for it instead of
/// computing the same thing again (on a busy machine the duplicate would slow both).
#[derive(Debug, Default)]
pub struct Analyses {
    map: Mutex<BTreeMap<String, Slot>>,
    /// Analyses of replaced versions, not yet dropped: freeing a 10,000-line analysis takes
    /// milliseconds, which belong after the new diagnostics are out, not before (see
    /// [`Analyses::take_retired`]).
    retired: Mutex<Vec<Slot>>,
}

/// At most this many replaced analyses wait to be dropped; beyond it they drop at once.
const MAX_RETIRED: usize = 8;

#[derive(Debug)]
struct Slot {
    version: i32,
    text: Arc<str>,
    cell: Arc<OnceLock<Arc<Analysis>>>,
}

impl Analyses {
    /// The analysis of `doc` at its version, computed once (outside the map's lock).
    pub fn get(&self, doc: &Doc, sessions: &Sessions) -> Arc<Analysis> {
        let cell = {
            let mut m = self.lock();
            match m.get(&doc.uri) {
                Some(s) if s.version == doc.version && Arc::ptr_eq(&s.text, &doc.text) => {
                    s.cell.clone()
                }
                // A request about an older version than the one cached: answer it privately,
                // keep the newer analysis.
                Some(s) if s.version > doc.version => Arc::new(OnceLock::new()),
                _ => {
                    let cell = Arc::new(OnceLock::new());
                    let old = m.insert(
                        doc.uri.clone(),
                        Slot {
                            version: doc.version,
                            text: doc.text.clone(),
                            cell: cell.clone(),
                        },
                    );
                    if let Some(old) = old {
                        let mut r = self.retired.lock().unwrap_or_else(|p| p.into_inner());
                        if r.len() < MAX_RETIRED {
                            r.push(old);
                        }
                    }
                    cell
                }
            }
        };
        cell.get_or_init(|| Arc::new(Analysis::new(doc.clone(), sessions)))
            .clone()
    }

    pub fn remove(&self, uri: &str) {
        self.lock().remove(uri);
    }

    /// The replaced analyses, for the caller to drop where it costs nobody a wait.
    pub fn take_retired(&self) -> Vec<impl Send + use<>> {
        std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("stepforge-analysis-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rmsnorm() -> String {
        let root =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../operators/norm/rmsnorm.yaml");
        std::fs::read_to_string(root).unwrap()
    }

    fn doc(path: &Path, text: &str) -> Doc {
        Doc {
            uri: file_uri(path),
            version: 1,
            text: Arc::from(text),
        }
    }

    #[test]
    fn a_program_finds_its_sibling_task_and_reports_a_missing_one() {
        let d = temp("sibling");
        std::fs::write(d.join("k.yaml"), rmsnorm()).unwrap();
        let prog = d.join("k.step");
        let text = "Xb = step.Bufferize(a=1).apply(X)\nYb = step.Map(fn=fn_rms).apply(Xb)\nY = step.Streamify().apply(Yb)\nreturn Y\n";
        let a = Analysis::new(doc(&prog, text), &Sessions::default());
        assert_eq!(
            a.task.as_ref().map(|t| t.session.name()),
            Some("norm_rmsnorm")
        );
        assert!(a.lsp_diagnostics().is_empty(), "{:?}", a.lsp_diagnostics());

        let lone = d.join("other.step");
        let a = Analysis::new(doc(&lone, text), &Sessions::default());
        let diags = a.lsp_diagnostics();
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("# task:"), "{}", diags[0].message);

        let named = "# task: nowhere.yaml\nreturn X\n";
        let a = Analysis::new(doc(&lone, named), &Sessions::default());
        assert!(a.lsp_diagnostics()[0].message.contains("nowhere.yaml"));
    }

    #[test]
    fn a_broken_task_file_reports_its_loader_errors() {
        let d = temp("broken");
        let p = d.join("t.yaml");
        let text = rmsnorm().replace("dtype: fp32", "dtype: fp33");
        let a = Analysis::new(doc(&p, &text), &Sessions::default());
        let diags = a.lsp_diagnostics();
        assert!(!diags.is_empty());
        assert!(diags.iter().all(|d| d.code.is_some()), "{diags:?}");
        let line = text.lines().position(|l| l.contains("fp33")).unwrap() as u32;
        assert!(
            diags.iter().any(|d| d.range.start.line == line),
            "{diags:?}"
        );
    }
}
