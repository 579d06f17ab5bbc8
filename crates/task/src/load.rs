//! The task-file loader: YAML tree → validated [`Task`], with every problem located.
//!
//! The loader never stops at the first problem: it walks the whole file and reports every
//! missing field, wrong type, unknown key and syntax error in embedded code. A [`Task`] is built
//! when every declaration could be completed (all required fields present with the right kind,
//! every dtype and dimension parsed); errors inside code bodies (`apply`, `global`,
//! `data_transform`) still yield a task, with the recovered or an empty body, so a caller that
//! wants to go on must check [`Loaded::has_errors`].

use std::path::Path;

use stepforge_syntax::ast::{Block, DimExpr, DtypeAst, Ident};
use stepforge_syntax::codes::Code;
use stepforge_syntax::diag::{Applicability, Fix, plural};
use stepforge_syntax::lexer::is_ident;
use stepforge_syntax::{Diagnostic, Parsed, Source, Span};

use crate::embed::{self, EmbedBudget};
use crate::model::*;
use crate::suggest::did_you_mean;
use crate::yaml::{self, YKind, YNode};

/// The outcome of loading a task file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file; every span in `task` and `diagnostics` is a byte offset into it.
    pub source: Source,
    /// `None` only when errors prevent building the task.
    pub task: Option<Task>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The task, only if the file loaded without errors (warnings allowed).
    pub fn ok_task(&self) -> Option<&Task> {
        if self.has_errors() {
            None
        } else {
            self.task.as_ref()
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "test_name",
    "global",
    "inputs",
    "parameters",
    "fns",
    "outputs",
    "impl",
    "tolerance",
];
const INPUT_FIELDS: &[&str] = &["name", "dtype", "dims", "data_gen", "min", "max"];
const PARAM_FIELDS: &[&str] = &["name", "dtype", "dims", "data_gen"];
const FN_FIELDS: &[&str] = &[
    "name",
    "func_name",
    "apply",
    "init",
    "input_dtype",
    "output_dtype",
];
const OUTPUT_FIELDS: &[&str] = &["name", "dtype", "dims", "data_transform"];
const TOLERANCE_FIELDS: &[&str] = &["rtol", "atol"];

/// Loads a task from its text. `name` is the file name used in diagnostics; its stem is the
/// task's name when the file has no `test_name`.
pub fn load_str(name: &str, text: &str) -> Loaded {
    let source = Source::new(name, text);
    let mut cx = Cx {
        source: &source,
        diags: Vec::new(),
        budget: EmbedBudget::new(),
        complete: true,
    };
    let task = match yaml::parse(&source) {
        Ok(root) => cx.task(&root, name),
        Err(d) => {
            cx.diags.push(d);
            None
        }
    };
    // Every span the loader reports points into the task file.
    let mut diagnostics: Vec<Diagnostic> = cx.diags.into_iter().map(Diagnostic::in_task).collect();
    // Stable order: by position, errors before warnings at the same place.
    diagnostics.sort_by_key(|d| (d.span.map_or(0, |s| s.lo), d.severity));
    Loaded {
        source,
        task,
        diagnostics,
    }
}

/// Reads and loads a task file. I/O errors (missing or unreadable file) are the `Err`; a file
/// that is not UTF-8 or is too large is a loaded result with an error diagnostic.
pub fn load_file(path: &Path) -> std::io::Result<Loaded> {
    use std::io::Read;
    let name = path.display().to_string();
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    // Read at most one byte past the limit: enough to know the file is too large without
    // reading a hostile multi-gigabyte file into memory.
    file.take(yaml::MAX_TASK_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > yaml::MAX_TASK_BYTES {
        let source = Source::new(name, "");
        let d = Diagnostic::new(
            Code::E0508,
            format!(
                "task file is larger than the limit of {} bytes",
                yaml::MAX_TASK_BYTES
            ),
        );
        return Ok(Loaded {
            source,
            task: None,
            diagnostics: vec![d],
        });
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(load_str(&name, &text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let source = Source::new(name, text);
            let d = Diagnostic::new(Code::E0501, "task file is not valid UTF-8")
                .at(Span::new(at, at))
                .help("save the file as UTF-8");
            Ok(Loaded {
                source,
                task: None,
                diagnostics: vec![d],
            })
        }
    }
}

/// Parses the task's reference `impl` with spans that are byte offsets into the task file.
/// A task without one yields no value and no diagnostics.
pub fn parse_impl(task: &Task) -> Parsed<stepforge_syntax::ast::Program> {
    match &task.reference_impl {
        Some(e) => embed::parse_embedded(&task.source, e, stepforge_syntax::parse_program),
        None => Parsed {
            value: None,
            diagnostics: Vec::new(),
        },
    }
}

struct Cx<'s> {
    source: &'s Source,
    diags: Vec<Diagnostic>,
    budget: EmbedBudget,
    /// Cleared when a declaration could not be completed.
    complete: bool,
}

/// The entries of one YAML mapping, after unknown keys were reported.
struct Fields<'n> {
    entries: Vec<(&'n str, &'n YNode, &'n YNode)>,
    /// Where to point "missing field" errors: the mapping's first key (or the mapping itself).
    anchor: Span,
}

impl<'n> Fields<'n> {
    /// A present, non-null field.
    fn get(&self, key: &str) -> Option<&'n YNode> {
        self.entries
            .iter()
            .find(|(k, _, v)| *k == key && !matches!(v.kind, YKind::Null))
            .map(|(_, _, v)| *v)
    }
}

impl<'s> Cx<'s> {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// An error that leaves a declaration incomplete.
    fn fail(&mut self, d: Diagnostic) {
        self.complete = false;
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &YNode, what: &str, expected: &str) {
        let span = if node.span.is_empty() {
            node.extent()
        } else {
            node.span
        };
        self.fail(
            Diagnostic::new(
                Code::E0503,
                format!("{what} must be {expected}, found {}", node.kind_name()),
            )
            .at(span),
        );
    }

    /// Checks that `node` is a mapping and reports its unknown keys as W0501 (with the field
    /// path and a did-you-mean).
    fn fields<'n>(
        &mut self,
        node: &'n YNode,
        what: &str,
        path: &str,
        known: &[&str],
    ) -> Option<Fields<'n>> {
        let YKind::Map(entries) = &node.kind else {
            self.wrong_type(node, what, "a mapping of fields");
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.error(
                    Diagnostic::new(
                        Code::W0501,
                        format!("ignored non-string key in {what} (field names are strings)"),
                    )
                    .at(k.span),
                );
                continue;
            };
            if known.contains(&key) {
                out.push((key, k, v));
                continue;
            }
            let field_path = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
            let mut d = Diagnostic::new(
                Code::W0501,
                format!("unknown field `{field_path}` is ignored"),
            )
            .at(k.span)
            .note(format!("known fields here: {}", known.join(", ")));
            if let Some(s) = did_you_mean(key, known) {
                // Only offer the rename if the right key is not already there.
                let taken = entries.iter().any(|(k2, _)| k2.as_str() == Some(s));
                d = d.help(format!("did you mean `{s}`?"));
                if !taken {
                    d = d.fix(Fix::replace(
                        format!("rename `{key}` to `{s}`"),
                        Applicability::Unsafe,
                        k.span,
                        s,
                    ));
                }
            }
            self.error(d);
        }
        let anchor = entries.first().map_or(node.extent(), |(k, _)| k.span);
        Some(Fields {
            entries: out,
            anchor,
        })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, key: &str, owner: &str) -> Option<&'n YNode> {
        let v = f.get(key);
        if v.is_none() {
            let present_but_empty = f.entries.iter().any(|(k, _, _)| *k == key);
            let msg = if present_but_empty {
                format!("{owner}: required field `{key}` has no value")
            } else {
                format!("{owner} is missing required field `{key}`")
            };
            let span = f
                .entries
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or(f.anchor, |(_, k, _)| k.span);
            let mut d = Diagnostic::new(Code::E0502, msg).at(span);
            if let Some(h) = field_help(key) {
                d = d.help(h);
            }
            self.fail(d);
        }
        v
    }

    fn task(&mut self, root: &YNode, file_name: &str) -> Option<Task> {
        if matches!(root.kind, YKind::Null) {
            self.fail(
                Diagnostic::new(Code::E0502, "task file is empty")
                    .at(Span::new(0, 0))
                    .help("a task needs at least `inputs` and `outputs` (and usually `fns`)"),
            );
            return None;
        }
        let f = self.fields(root, "a task file", "", TOP_FIELDS)?;

        let name = match f.get("test_name") {
            Some(n) => self.scalar_text(n, "`test_name`"),
            None => None,
        }
        .unwrap_or_else(|| file_stem(file_name));

        let global = f
            .get("global")
            .and_then(|g| self.code(g, "`global`", stepforge_syntax::parse_block));

        let inputs = match self.required(&f, "inputs", "task") {
            Some(n) => self.list(n, "`inputs`", |cx, i, item| cx.input(i, item)),
            None => Vec::new(),
        };
        let parameters = match f.get("parameters") {
            Some(n) => self.list(n, "`parameters`", |cx, i, item| cx.parameter(i, item)),
            None => Vec::new(),
        };
        let fns = match f.get("fns") {
            Some(n) => self.list(n, "`fns`", |cx, i, item| cx.function(i, item)),
            None => Vec::new(),
        };
        let outputs = match self.required(&f, "outputs", "task") {
            Some(n) => self.list(n, "`outputs`", |cx, i, item| cx.output(i, item)),
            None => Vec::new(),
        };
        let reference_impl = f.get("impl").and_then(|n| match &n.kind {
            YKind::Str(s) => Some(EmbeddedText {
                text: s.clone(),
                span: n.def,
            }),
            _ => {
                self.wrong_type(n, "`impl`", "a string (the reference program)");
                None
            }
        });
        let tolerance = f.get("tolerance").and_then(|n| self.tolerance(n));

        self.duplicates(
            inputs
                .iter()
                .map(|i| (&i.name, "input"))
                .chain(parameters.iter().map(|p| (&p.name, "parameter"))),
            "inputs and parameters share one namespace (`input_data['X']`)",
        );
        self.duplicates(
            fns.iter().map(|f| (&f.func_name, "function")),
            "programs refer to functions by `func_name`",
        );
        self.duplicates(outputs.iter().map(|o| (&o.name, "output")), "");

        if !self.complete {
            return None;
        }
        Some(Task {
            name,
            source: self.source.clone(),
            global,
            inputs,
            parameters,
            fns,
            outputs,
            reference_impl,
            tolerance,
        })
    }

    /// Walks a list field, building each entry (entries that fail are dropped; their errors
    /// have cleared `complete`).
    fn list<T>(
        &mut self,
        node: &YNode,
        what: &str,
        mut each: impl FnMut(&mut Self, usize, &YNode) -> Option<T>,
    ) -> Vec<T> {
        let YKind::Seq(items) = &node.kind else {
            self.wrong_type(node, what, "a list (entries start with `- `)");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(self, i, item))
            .collect()
    }

    /// What inputs and parameters share (`kind` is `input` or `parameter`; an input is a
    /// parameter plus hot-bit bounds): the entry's fields, the name diagnostics call it by, and
    /// the declaration if every shared field could be read.
    fn stream_fields<'n>(
        &mut self,
        kind: &str,
        i: usize,
        node: &'n YNode,
        known: &[&str],
        allow_empty_dims: bool,
    ) -> Option<(Fields<'n>, String, Option<ParamDecl>)> {
        let path = format!("{kind}s[{i}]");
        let f = self.fields(node, &format!("{kind} #{}", i + 1), &path, known)?;
        let owner = owner_name(kind, i, &f);
        let name = self
            .required(&f, "name", &owner)
            .and_then(|n| self.ident(n, &format!("{kind} `name`")));
        let dtype = self
            .required(&f, "dtype", &owner)
            .and_then(|n| self.dtype(n, &format!("`dtype` of {owner}")));
        let dims = self
            .required(&f, "dims", &owner)
            .and_then(|n| self.dims(n, &owner, allow_empty_dims));
        let data_gen = self.data_gen(&f);
        let decl = match (name, dtype, dims, data_gen) {
            (Some(name), Some(dtype), Some(dims), Some(data_gen)) => Some(ParamDecl {
                name,
                dtype,
                dims,
                data_gen,
                span: node.extent(),
            }),
            _ => None,
        };
        Some((f, owner, decl))
    }

    fn input(&mut self, i: usize, node: &YNode) -> Option<StreamDecl> {
        let (f, owner, decl) = self.stream_fields("input", i, node, INPUT_FIELDS, false)?;
        let min = f.get("min").and_then(|n| self.hot_bound(n, "min"));
        let max = f.get("max").and_then(|n| self.hot_bound(n, "max"));
        let hot = match (min, max) {
            (None, None) => None,
            (lo, hi) => {
                let (lo_v, hi_v) = (lo.map_or(1, |x| x.0), hi.map_or(i64::MAX, |x| x.0));
                if lo_v > hi_v {
                    let (ls, hs) = (
                        lo.map_or(Span::DUMMY, |x| x.1),
                        hi.map_or(Span::DUMMY, |x| x.1),
                    );
                    self.fail(
                        Diagnostic::new(
                            Code::E0510,
                            format!("{owner}: `min` ({lo_v}) is greater than `max` ({hi_v})"),
                        )
                        .at(ls)
                        .label(hs, "`max` is here"),
                    );
                }
                Some((lo_v, hi_v))
            }
        };
        let p = decl?;
        Some(StreamDecl {
            name: p.name,
            dtype: p.dtype,
            dims: p.dims,
            data_gen: p.data_gen,
            hot,
            span: p.span,
        })
    }

    fn parameter(&mut self, i: usize, node: &YNode) -> Option<ParamDecl> {
        self.stream_fields("parameter", i, node, PARAM_FIELDS, true)?
            .2
    }

    fn function(&mut self, i: usize, node: &YNode) -> Option<FnDecl> {
        let path = format!("fns[{i}]");
        let f = self.fields(node, &format!("function #{}", i + 1), &path, FN_FIELDS)?;
        let owner = match f.get("func_name").and_then(YNode::as_str) {
            Some(n) => format!("function `{n}`"),
            None => owner_name("function", i, &f),
        };
        let label = f
            .get("name")
            .and_then(|n| self.scalar_text(n, "function `name`"));
        let func_name = self
            .required(&f, "func_name", &owner)
            .and_then(|n| self.ident(n, "`func_name`"));
        let body = self.required(&f, "apply", &owner).map(|n| {
            self.code(
                n,
                &format!("`apply` of {owner}"),
                stepforge_syntax::parse_block,
            )
            .unwrap_or_else(|| empty_block(n))
        });
        let input_dtype = self
            .required(&f, "input_dtype", &owner)
            .and_then(|n| self.dtype(n, &format!("`input_dtype` of {owner}")));
        let output_dtype = self
            .required(&f, "output_dtype", &owner)
            .and_then(|n| self.dtype(n, &format!("`output_dtype` of {owner}")));
        let init = match (f.get("init"), &output_dtype) {
            (Some(n), Some(out)) => self.init(n, out, &owner),
            (Some(n), None) => self.init_values(n, &owner).map(|(v, _)| v),
            (None, _) => None,
        };
        let func_name = func_name?;
        Some(FnDecl {
            name: label.unwrap_or_else(|| func_name.name.clone()),
            func_name,
            body: body?,
            init,
            input_dtype: input_dtype?,
            output_dtype: output_dtype?,
            span: node.extent(),
        })
    }

    fn output(&mut self, i: usize, node: &YNode) -> Option<OutputDecl> {
        let path = format!("outputs[{i}]");
        let f = self.fields(node, &format!("output #{}", i + 1), &path, OUTPUT_FIELDS)?;
        let owner = owner_name("output", i, &f);
        let name = self.required(&f, "name", &owner).and_then(|n| {
            let text = self.scalar_text(n, "output `name`")?;
            Some(Ident::new(text, n.span))
        });
        let dtype = self
            .required(&f, "dtype", &owner)
            .and_then(|n| self.dtype(n, &format!("`dtype` of {owner}")));
        let dims = self
            .required(&f, "dims", &owner)
            .and_then(|n| self.dims(n, &owner, false));
        let transforms = self
            .required(&f, "data_transform", &owner)
            .and_then(|n| self.transforms(n, &owner));
        if let (Some(dt), Some((ts, tnode))) = (&dtype, &transforms) {
            let want = arity(dt);
            if ts.len() != want {
                self.error(
                    Diagnostic::new(
                        Code::E0512,
                        format!(
                            "{owner} has {} reference snippet{} but its dtype has {want} field{}",
                            ts.len(),
                            plural(ts.len()),
                            plural(want),
                        ),
                    )
                    .at(tnode.extent())
                    .label(dt.span(), "the dtype")
                    .help("`data_transform` holds one snippet per tuple field of `dtype`"),
                );
            }
        }
        Some(OutputDecl {
            name: name?,
            dtype: dtype?,
            dims: dims?,
            transforms: transforms?.0,
            span: node.extent(),
        })
    }

    fn transforms<'n>(&mut self, node: &'n YNode, owner: &str) -> Option<(Vec<Block>, &'n YNode)> {
        let what = format!("`data_transform` of {owner}");
        let items: Vec<&YNode> = match &node.kind {
            YKind::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            let b = self
                .code(item, &what, stepforge_syntax::parse_snippet)
                .unwrap_or_else(|| empty_block(item));
            out.push(b);
        }
        Some((out, node))
    }

    /// Text of a scalar used as a label (strings, and numbers as written).
    fn scalar_text(&mut self, node: &YNode, what: &str) -> Option<String> {
        match &node.kind {
            YKind::Str(s) => Some(s.clone()),
            YKind::Int(_) | YKind::Float(_) | YKind::Bool(_) => {
                Some(self.source.slice(node.span).to_owned())
            }
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    fn ident(&mut self, node: &YNode, what: &str) -> Option<Ident> {
        let YKind::Str(s) = &node.kind else {
            self.wrong_type(node, what, "a name");
            return None;
        };
        if !is_ident(s) {
            self.fail(
                Diagnostic::new(
                    Code::E0503,
                    format!("{what} `{s}` is not an identifier"),
                )
                .at(node.span)
                .help("names that programs refer to use letters, digits and `_`, and do not start with a digit"),
            );
            return None;
        }
        // The span of the name itself (without quotes, if it was quoted).
        let raw = self.source.slice(node.span);
        let span = match raw.find(s.as_str()) {
            Some(off) => Span::new(
                node.span.lo as usize + off,
                node.span.lo as usize + off + s.len(),
            ),
            None => node.span,
        };
        Some(Ident::new(s.clone(), span))
    }

    /// Parses an embedded code field with file-accurate spans. Parse errors are reported; the
    /// recovered tree (if any) is returned.
    fn code(
        &mut self,
        node: &YNode,
        what: &str,
        parse: fn(&str) -> Parsed<Block>,
    ) -> Option<Block> {
        let text = match &node.kind {
            YKind::Str(s) => s.clone(),
            // A bare number is a (trivial) snippet; take it as written.
            YKind::Int(_) | YKind::Float(_) => self.source.slice(node.def).to_owned(),
            _ => {
                self.wrong_type(node, what, "code (a string; use `|` for several lines)");
                return None;
            }
        };
        let parsed = embed::parse_at(self.source, node.def, &text, &mut self.budget, parse);
        self.diags.extend(parsed.diagnostics);
        parsed.value
    }

    fn dtype(&mut self, node: &YNode, what: &str) -> Option<DtypeAst> {
        let parse = stepforge_syntax::parse_dtype;
        match &node.kind {
            YKind::Str(s) => {
                let p = embed::parse_at(self.source, node.def, s, &mut self.budget, parse);
                self.parsed_required(p, node, what)
            }
            YKind::Seq(items) if !items.is_empty() => {
                // A flow list `[fp32, Multihot(fp32, E)]` is re-read from the file as one dtype:
                // YAML splits it at the comma inside `Multihot(..)`.
                if let Some(raw) = flow_extent(&self.source.text, node.def.lo as usize) {
                    let text = self.source.slice(raw).to_owned();
                    if !text.contains(['"', '\'', '#']) {
                        let p = embed::parse_at(self.source, raw, &text, &mut self.budget, parse);
                        return self.parsed_required(p, node, what);
                    }
                }
                let mut elems = Vec::new();
                for item in items {
                    elems.push(self.dtype(item, what));
                }
                let elems: Option<Vec<DtypeAst>> = elems.into_iter().collect();
                let elems = elems?;
                let span = match (elems.first(), elems.last()) {
                    (Some(a), Some(b)) => a.span().to(b.span()),
                    _ => node.extent(),
                };
                Some(DtypeAst::Tuple(elems, span))
            }
            _ => {
                self.wrong_type(
                    node,
                    what,
                    "a dtype such as `fp32`, `Multihot(fp32, E)`, `Buffer(fp32, [D, N])` or a list of them",
                );
                None
            }
        }
    }

    /// Takes a parse result for a value the task cannot do without.
    fn parsed_required<T>(&mut self, p: Parsed<T>, node: &YNode, what: &str) -> Option<T> {
        let errors = p.has_errors();
        self.diags.extend(p.diagnostics);
        if errors || p.value.is_none() {
            if !errors && !self.budget.exhausted {
                self.fail(
                    Diagnostic::new(Code::E0503, format!("{what} could not be read")).at(node.span),
                );
            }
            self.complete = false;
            return None;
        }
        p.value
    }

    fn dims(&mut self, node: &YNode, owner: &str, allow_empty: bool) -> Option<Vec<DimExpr>> {
        let YKind::Seq(items) = &node.kind else {
            self.fail(
                Diagnostic::new(
                    Code::E0504,
                    format!(
                        "`dims` of {owner} must be a list of dimensions, found {}",
                        node.kind_name()
                    ),
                )
                .at(node.extent())
                .help("write dims innermost first, for example `dims: [D, N, M]`"),
            );
            return None;
        };
        if items.is_empty() && !allow_empty {
            self.fail(
                Diagnostic::new(Code::E0504, format!("{owner} has an empty `dims` list"))
                    .at(node.extent())
                    .help("a stream has at least one dimension: the outermost counts its elements"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.dim(item, owner) {
                Some(d) => out.push(d),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn dim(&mut self, node: &YNode, owner: &str) -> Option<DimExpr> {
        match &node.kind {
            YKind::Int(n) if *n >= 1 => Some(DimExpr::Int(*n, node.span)),
            YKind::Int(n) => {
                self.fail(
                    Diagnostic::new(
                        Code::E0504,
                        format!("{owner} has a dimension of size {n}; sizes are positive"),
                    )
                    .at(node.span),
                );
                None
            }
            YKind::Str(s) => {
                let p = embed::parse_at(
                    self.source,
                    node.def,
                    s,
                    &mut self.budget,
                    stepforge_syntax::parse_dim,
                );
                let d = self.parsed_required(p, node, &format!("{owner} dimension"))?;
                if let Some(bad) = nonpositive_literal(&d) {
                    self.fail(
                        Diagnostic::new(
                            Code::E0504,
                            format!("{owner} has a dimension with the literal size {}", bad.0),
                        )
                        .at(bad.1),
                    );
                    return None;
                }
                Some(d)
            }
            _ => {
                self.fail(
                    Diagnostic::new(
                        Code::E0504,
                        format!(
                            "{owner}: a dimension must be a symbol, a positive integer or a product like `M*N`, found {}",
                            node.kind_name()
                        ),
                    )
                    .at(node.extent()),
                );
                None
            }
        }
    }

    /// `data_gen`, defaulting to `torch.randn` when absent. `None` only after an error.
    fn data_gen(&mut self, f: &Fields<'_>) -> Option<DataGen> {
        let Some(node) = f.get("data_gen") else {
            return Some(DataGen::Randn);
        };
        let YKind::Str(s) = &node.kind else {
            self.wrong_type(node, "`data_gen`", "the name of a generator");
            return None;
        };
        if let Some(g) = DataGen::parse(s) {
            return Some(g);
        }
        let mut d = Diagnostic::new(Code::E0505, format!("unknown data generator `{s}`"))
            .at(node.span)
            .note(format!("known generators: {}", DataGen::NAMES.join(", ")));
        if let Some(sug) = did_you_mean(s, DataGen::NAMES) {
            d = d.suggest(node.span, sug);
        }
        self.fail(d);
        None
    }

    fn hot_bound(&mut self, node: &YNode, key: &str) -> Option<(i64, Span)> {
        match node.kind {
            YKind::Int(n) if n >= 0 => Some((n, node.span)),
            YKind::Int(n) => {
                self.fail(
                    Diagnostic::new(
                        Code::E0510,
                        format!("`{key}` hot bits must be at least 0, found {n}"),
                    )
                    .at(node.span),
                );
                None
            }
            _ => {
                self.wrong_type(
                    node,
                    &format!("`{key}`"),
                    "a count of hot bits (an integer)",
                );
                None
            }
        }
    }

    /// One init value per output field; a single scalar is broadcast to every field.
    fn init(&mut self, node: &YNode, out: &DtypeAst, owner: &str) -> Option<Vec<InitValue>> {
        let (mut values, scalar) = self.init_values(node, owner)?;
        let want = arity(out);
        if scalar && want > 1 {
            let v = values.first().copied()?;
            values = vec![v; want];
        }
        if values.len() != want {
            self.fail(
                Diagnostic::new(
                    Code::E0507,
                    format!(
                        "{owner} has {} init value{} but its output_dtype has {want} field{}",
                        values.len(),
                        plural(values.len()),
                        plural(want)
                    ),
                )
                .at(node.extent())
                .label(out.span(), "the output dtype")
                .help("give one init value per output field, e.g. `init: [0]` for one field"),
            );
            return None;
        }
        Some(values)
    }

    /// The values and whether they were given as a bare scalar.
    fn init_values(&mut self, node: &YNode, owner: &str) -> Option<(Vec<InitValue>, bool)> {
        match &node.kind {
            YKind::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.init_value(item, owner) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some((out, false))
            }
            _ => self.init_value(node, owner).map(|v| (vec![v], true)),
        }
    }

    fn init_value(&mut self, node: &YNode, owner: &str) -> Option<InitValue> {
        let value = match &node.kind {
            YKind::Int(n) => Some(*n as f64),
            YKind::Float(x) if x.is_finite() => Some(*x),
            YKind::Str(s) => parse_init_str(s),
            _ => None,
        };
        match value {
            Some(value) => Some(InitValue {
                value,
                span: node.span,
            }),
            None => {
                let found = match &node.kind {
                    YKind::Str(s) => format!("`{s}`"),
                    YKind::Bool(b) => format!("`{b}`"),
                    _ => node.kind_name().to_owned(),
                };
                self.fail(
                    Diagnostic::new(Code::E0507, format!("{owner}: bad init value {found}"))
                        .at(node.extent())
                        .help("init values are numbers or `inf` / `-inf` (e.g. `0`, `1`, `-1`, `-inf`)"),
                );
                None
            }
        }
    }

    fn tolerance(&mut self, node: &YNode) -> Option<Tolerance> {
        let f = self.fields(node, "`tolerance`", "tolerance", TOLERANCE_FIELDS)?;
        let mut t = Tolerance::default();
        for (key, slot) in [("rtol", &mut t.rtol), ("atol", &mut t.atol)] {
            let Some(n) = f.get(key) else { continue };
            let v = match n.kind {
                YKind::Int(i) => Some(i as f64),
                YKind::Float(x) => Some(x),
                _ => None,
            };
            match v {
                Some(v) if v.is_finite() && v >= 0.0 => *slot = v,
                _ => self.fail(
                    Diagnostic::new(
                        Code::E0503,
                        format!(
                            "`tolerance.{key}` must be a number >= 0, found {}",
                            self.source.slice(n.span)
                        ),
                    )
                    .at(n.extent()),
                ),
            }
        }
        Some(t)
    }

    fn duplicates<'a>(
        &mut self,
        names: impl Iterator<Item = (&'a Ident, &'static str)>,
        why: &str,
    ) {
        let mut seen: std::collections::BTreeMap<&str, (&Ident, &str)> = Default::default();
        for (id, kind) in names {
            match seen.get(id.name.as_str()) {
                Some((first, first_kind)) => {
                    let mut d = Diagnostic::new(
                        Code::E0506,
                        format!("{kind} name `{}` is already used", id.name),
                    )
                    .at(id.span)
                    .label(
                        first.span,
                        format!("first used by the {first_kind} declared here"),
                    );
                    if !why.is_empty() {
                        d = d.note(why.to_owned());
                    }
                    self.fail(d);
                }
                None => {
                    seen.insert(&id.name, (id, kind));
                }
            }
        }
    }
}

fn field_help(key: &str) -> Option<&'static str> {
    Some(match key {
        "inputs" => {
            "`inputs` lists the input streams, e.g. `- {name: E0, dtype: fp32, dims: [N, M], data_gen: torch.randn}`"
        }
        "outputs" => {
            "`outputs` lists the results with their references, e.g. `- {name: out, dtype: fp32, dims: [M], data_transform: [\"input_data['E0'].sum(-1)\"]}`"
        }
        "name" => "every entry needs a `name`",
        "dtype" => "`dtype` is the element type, e.g. `dtype: fp32` or `dtype: Buffer(fp32, [D])`",
        "dims" => "`dims` is the shape, innermost first, e.g. `dims: [N, M]`",
        "func_name" => "`func_name` is what programs refer to, e.g. `func_name: fn_add`",
        "apply" => "`apply` is the function body, e.g. `apply: return [input[0] + 1]`",
        "input_dtype" | "output_dtype" => {
            "a function declares its element types, e.g. `input_dtype: fp32` and `output_dtype: fp32`"
        }
        "data_transform" => {
            "`data_transform` gives one reference snippet per output field, e.g. `data_transform: [\"input_data['E0'].sum(-1)\"]`"
        }
        _ => return None,
    })
}

fn owner_name(kind: &str, i: usize, f: &Fields<'_>) -> String {
    match f.get("name").and_then(YNode::as_str) {
        Some(n) => format!("{kind} `{n}`"),
        None => format!("{kind} #{}", i + 1),
    }
}

fn file_stem(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rfind('.') {
        Some(i) if i > 0 => base[..i].to_owned(),
        _ => base.to_owned(),
    }
}

fn empty_block(node: &YNode) -> Block {
    Block {
        stmts: Vec::new(),
        span: node.def,
    }
}

/// The number of fields of a (possibly tuple) dtype.
pub fn arity(d: &DtypeAst) -> usize {
    match d {
        DtypeAst::Tuple(v, _) => v.len(),
        _ => 1,
    }
}

fn parse_init_str(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_lowercase();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let v = match body {
        "inf" | ".inf" | "infinity" | "float('inf')" | "float(\"inf\")" | "math.inf"
        | "torch.inf" => f64::INFINITY,
        other => match other.parse::<f64>() {
            Ok(x) if x.is_finite() => x,
            _ => return None,
        },
    };
    Some(if neg { -v } else { v })
}

/// The first literal `<= 0` in a dimension expression.
fn nonpositive_literal(d: &DimExpr) -> Option<(i64, Span)> {
    match d {
        DimExpr::Int(n, s) if *n <= 0 => Some((*n, *s)),
        DimExpr::Int(..) | DimExpr::Sym(_) => None,
        DimExpr::Mul(a, b, _) | DimExpr::Div(a, b, _) => {
            nonpositive_literal(a).or_else(|| nonpositive_literal(b))
        }
    }
}

/// The span of a flow collection `[ ... ]` starting at byte `lo` (to its matching bracket).
fn flow_extent(text: &str, lo: usize) -> Option<Span> {
    let bytes = text.as_bytes();
    if bytes.get(lo) != Some(&b'[') {
        return None;
    }
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(lo) {
        match b {
            b'[' | b'(' => depth += 1,
            b']' | b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b == b']').then(|| Span::new(lo, i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_strings() {
        assert_eq!(parse_init_str("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_init_str("-.inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_init_str(".inf"), Some(f64::INFINITY));
        assert_eq!(parse_init_str("+inf"), Some(f64::INFINITY));
        assert_eq!(parse_init_str("-1"), Some(-1.0));
        assert_eq!(parse_init_str(".nan"), None);
        assert_eq!(parse_init_str("zero"), None);
    }

    #[test]
    fn stems_and_flow_extents() {
        assert_eq!(file_stem("tests/tasks/row_sum.yaml"), "row_sum");
        assert_eq!(file_stem("x"), "x");
        let t = "a: [Multihot(fp32, E), [fp32]] # c\n";
        let lo = t.find('[').unwrap();
        assert_eq!(
            &t[flow_extent(t, lo).unwrap().range()],
            "[Multihot(fp32, E), [fp32]]"
        );
        assert_eq!(flow_extent("a: [x", 3), None);
    }
}
