//! Lowering AST → side tables (name resolution, operand and parameter checks, type rules), and
//! the final graph build for well-typed programs.
//!
//! The lowerer never stops at the first error: an ill-typed op still produces output streams,
//! typed `None`, and every rule skips operands typed `None`, so one mistake yields one
//! diagnostic rather than a cascade. Names bound to a failed statement become
//! [`Value::Error`], which is silent on use.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::ast_types::{dim_from_ast, elem_type_from_ast};
use stepforge_ir::{
    Dim, DimEnv, ElemType, FnId, FnKind, FnSig, Graph, GraphBuilder, OpId, OpKind, StreamId,
    StreamType, strip_value_suffix,
};
use stepforge_syntax::ast::{Arg, CompIter, Comprehension, Ident, KwValue, OpCall, Program, Rhs};
use stepforge_syntax::codes::Code;
use stepforge_syntax::diag::{Applicability, Fix};
use stepforge_syntax::ops::{self, did_you_mean};
use stepforge_syntax::{Diagnostic, Span};
use stepforge_task::Task;

use crate::rules::{self, Blame, Operand, RuleError, elem_eq};

/// A parameter's element type and dims (innermost first).
pub type ParamType = (ElemType, Vec<Dim>);

/// What the task contributes to checking: function signatures, input and output types, dim
/// values and the known dimension symbols.
#[derive(Debug, Clone)]
pub struct TaskEnv {
    pub env: DimEnv,
    pub known_syms: BTreeSet<String>,
    /// `None` where the task's declared types are not STeP types (reported once as E0315).
    pub fns: Vec<Option<FnSig>>,
    pub fn_by_name: BTreeMap<String, FnId>,
    pub inputs: Vec<(String, Option<StreamType>, Span)>,
    pub outputs: Vec<(String, Option<StreamType>)>,
    /// The task's parameter tensors: name, (element type, dims innermost first) — `None` where
    /// the declaration is not a STeP type (reported as E0315) — and the declaration's span.
    pub params: Vec<(String, Option<ParamType>, Span)>,
    pub diagnostics: Vec<Diagnostic>,
    /// `task.yaml:LINE` of each fn declaration, for notes on diagnostics about task fns when
    /// the program lives in another file (their spans could not be shown there).
    pub fn_decl_at: Vec<String>,
    /// The task's element functions, `global` block and reference snippets, lowered once
    /// (their errors are in `diagnostics`).
    pub functions: stepforge_ir::func::TaskFunctions,
}

/// An E0315 about a task declaration. It is located only when the program's spans point into
/// the task file: otherwise a task span would be read as a place in the program.
fn decl_error(message: String, at: Span, same_source: bool) -> Diagnostic {
    let d = Diagnostic::new(Code::E0315, message);
    if same_source { d.at(at.in_task()) } else { d }
}

/// A diagnostic located in the task file: kept as is when the program's spans point into the
/// task file, else unlocated with a `task.yaml:LINE` note (a task span would be read as a place
/// in the program).
fn task_located(d: Diagnostic, task: &Task, same_source: bool) -> Diagnostic {
    if same_source {
        return d;
    }
    let line = d.span.map(|s| task.source.line_col(s.lo).line);
    let mut d = d;
    d.span = None;
    match line {
        Some(l) => d.note(format!("at {}:{l}", task.source.name)),
        None => d,
    }
}

fn decl_type(
    dtype: &stepforge_syntax::ast::DtypeAst,
    dims: &[stepforge_syntax::ast::DimExpr],
    what: &str,
    diags: &mut Vec<Diagnostic>,
    same_source: bool,
    span: Span,
) -> Option<StreamType> {
    let mut fail = |message: String, at: Span| {
        diags.push(decl_error(message, at, same_source));
        None
    };
    let elem = match elem_type_from_ast(dtype) {
        Ok(e) => e,
        Err(e) => return fail(format!("{what}: {}", e.message), e.span),
    };
    let mut out = Vec::with_capacity(dims.len());
    for d in dims {
        match dim_from_ast(d) {
            Some(x) => out.push(x),
            None => {
                let msg = format!("{what}: a dimension overflows or divides by zero");
                return fail(msg, d.span());
            }
        }
    }
    if out.is_empty() {
        return fail(format!("{what}: a stream needs at least one dim"), span);
    }
    Some(StreamType::new(elem, out))
}

impl TaskEnv {
    /// `same_source`: the program's spans point into the task file (its reference impl), so
    /// task declarations may be labelled.
    pub fn new(task: &Task, overrides: &[(String, i64)], same_source: bool) -> TaskEnv {
        let mut diagnostics = Vec::new();
        let values = match stepforge_task::dim_values(task, overrides) {
            Ok(v) => v,
            Err(d) => {
                diagnostics.push(d);
                stepforge_task::DEFAULT_DIMS
                    .iter()
                    .map(|&(k, v)| (k.to_string(), v))
                    .collect()
            }
        };
        let mut known_syms = stepforge_task::used_symbols(task);
        known_syms.extend(values.keys().cloned());
        let env = DimEnv::from_statics(values);
        let mut fns = Vec::with_capacity(task.fns.len());
        let mut fn_by_name = BTreeMap::new();
        for (i, f) in task.fns.iter().enumerate() {
            let id = FnId::new(i);
            fn_by_name.entry(f.func_name.name.clone()).or_insert(id);
            let what = |which: &str| format!("the {which} type of function {}", f.func_name.name);
            let conv = |t, which: &str, diags: &mut Vec<Diagnostic>| {
                elem_type_from_ast(t)
                    .map_err(|e| {
                        let msg = format!("{}: {}", what(which), e.message);
                        diags.push(decl_error(msg, e.span, same_source));
                    })
                    .ok()
            };
            let input = conv(&f.input_dtype, "input", &mut diagnostics);
            let output = conv(&f.output_dtype, "output", &mut diagnostics);
            let sig = match (input, output) {
                (Some(input), Some(output)) => Some(FnSig {
                    id,
                    name: f.func_name.name.clone(),
                    label: f.name.clone(),
                    kind: match &f.init {
                        Some(vals) => FnKind::Reducer {
                            init: vals.iter().map(|v| v.value).collect(),
                        },
                        None => FnKind::Stateless,
                    },
                    input,
                    output,
                    span: f.span,
                }),
                _ => None,
            };
            fns.push(sig);
        }
        let mut stream_type = |what: String, dtype, dims: &[_], span| {
            decl_type(dtype, dims, &what, &mut diagnostics, same_source, span)
        };
        let inputs = task
            .inputs
            .iter()
            .map(|i| {
                let what = format!("task input {}", i.name.name);
                let ty = stream_type(what, &i.dtype, &i.dims, i.span);
                (i.name.name.clone(), ty, i.name.span)
            })
            .collect();
        let outputs = task
            .outputs
            .iter()
            .map(|o| {
                let what = format!("task output {}", o.name.name);
                let ty = stream_type(what, &o.dtype, &o.dims, o.span);
                (o.name.name.clone(), ty)
            })
            .collect();
        let params = task
            .parameters
            .iter()
            .map(|p| {
                let what = format!("task parameter {}", p.name.name);
                let ty = param_type(p, &what, &mut diagnostics, same_source);
                (p.name.name.clone(), ty, p.span)
            })
            .collect();
        let fn_decl_at = if same_source {
            Vec::new()
        } else {
            task.fns
                .iter()
                .map(|f| {
                    let at = task.source.line_col(f.func_name.span.lo);
                    format!("{}:{}", task.source.name, at.line)
                })
                .collect()
        };
        let (functions, fn_diags) = crate::func_lower::lower_task_functions(task);
        for d in fn_diags {
            diagnostics.push(task_located(d, task, same_source));
        }
        TaskEnv {
            env,
            known_syms,
            fns,
            fn_by_name,
            inputs,
            outputs,
            params,
            diagnostics,
            fn_decl_at,
            functions,
        }
    }
}

/// A parameter's element type and dims (possibly none: a scalar parameter).
fn param_type(
    p: &stepforge_task::ParamDecl,
    what: &str,
    diags: &mut Vec<Diagnostic>,
    same_source: bool,
) -> Option<ParamType> {
    let elem = match crate::ast_types::elem_type_from_ast(&p.dtype) {
        Ok(e) => e,
        Err(e) => {
            diags.push(decl_error(
                format!("{what}: {}", e.message),
                e.span,
                same_source,
            ));
            return None;
        }
    };
    let mut dims = Vec::with_capacity(p.dims.len());
    for d in &p.dims {
        let Some(x) = crate::ast_types::dim_from_ast(d) else {
            let msg = format!("{what}: a dimension overflows or divides by zero");
            diags.push(decl_error(msg, d.span(), same_source));
            return None;
        };
        dims.push(x);
    }
    Some((elem, dims))
}

#[derive(Debug, Clone)]
pub(crate) struct UseRec {
    pub span: Span,
    pub ret: bool,
    pub renameable: bool,
    pub stmt_lo: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamRec {
    pub ty: Option<StreamType>,
    /// The program name (binding target or task input), if any.
    pub name: Option<String>,
    pub def_span: Option<Span>,
    pub uses: Vec<UseRec>,
    /// Owned by this list (a Partition bound to one name or a comprehension's result).
    pub owner: Option<usize>,
    pub producer: usize,
}

impl StreamRec {
    /// For messages: the program name, or `list[i]` for a list element.
    pub fn disp(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ListRec {
    pub name: String,
    pub elems: Vec<usize>,
    pub def_span: Span,
    /// A list literal (its slots are separate from the element streams, which it consumed).
    pub literal: bool,
    pub uses: Vec<UseRec>,
    pub slot_uses: Vec<Vec<UseRec>>,
}

#[derive(Debug, Clone)]
pub(crate) struct OpRec {
    pub kind: Option<OpKind>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub span: Span,
    /// Bufferize's `a` value and its span (for the off-by-one fix).
    pub a_param: Option<(i64, Span)>,
}

#[derive(Debug, Clone)]
enum Value {
    Stream(usize),
    List(usize),
    Fn(FnId),
    FnList(Vec<FnId>),
    /// Comprehension variable: element `.1` of list `.0`.
    Slot(usize, usize),
    Error,
}

#[derive(Debug, Clone)]
struct Binding {
    value: Value,
    span: Option<Span>,
}

/// A resolved stream operand.
#[derive(Debug, Clone)]
struct Opnd<'a> {
    stream: usize,
    name: &'a str,
    span: Span,
}

#[derive(Debug, Default, Clone)]
struct Params {
    f: Option<FnId>,
    a: Option<i64>,
    b: Option<i64>,
    l: Option<Vec<i64>>,
    dim: Option<Dim>,
    spans: Vec<(&'static str, Span)>,
}

impl Params {
    fn span(&self, k: &str) -> Option<Span> {
        self.spans.iter().find(|(p, _)| *p == k).map(|(_, s)| *s)
    }
}

pub(crate) struct Lowerer<'t> {
    pub te: &'t TaskEnv,
    pub same_source: bool,
    pub ops: Vec<OpRec>,
    pub streams: Vec<StreamRec>,
    pub lists: Vec<ListRec>,
    pub diags: Vec<Diagnostic>,
    pub fn_used: Vec<bool>,
    /// Every identifier the program mentions (fresh names for fixes avoid them).
    pub names: BTreeSet<String>,
    /// Name → binding. Hashed (not ordered): a 10,000-line program binds tens of thousands of
    /// names and looks each one up on every use; nothing iterates it except the did-you-mean of
    /// an undefined name, which sorts its candidates.
    scope: FxHashMap<&'t str, Binding>,
    comp_vars: Vec<(&'t str, Value)>,
    stmt_lo: u32,
    returned: Vec<Option<usize>>,
}

const PARAMS: [&str; 7] = ["fn", "a", "b", "L", "S", "n", "N"];

fn param_static(key: &str) -> &'static str {
    PARAMS.iter().copied().find(|p| *p == key).unwrap_or("?")
}

impl<'t> Lowerer<'t> {
    pub fn new(te: &'t TaskEnv, same_source: bool) -> Lowerer<'t> {
        let mut lw = Lowerer {
            te,
            same_source,
            ops: Vec::new(),
            streams: Vec::new(),
            lists: Vec::new(),
            diags: Vec::new(),
            fn_used: vec![false; te.fns.len()],
            names: BTreeSet::new(),
            scope: FxHashMap::default(),
            comp_vars: Vec::new(),
            stmt_lo: 0,
            returned: Vec::new(),
        };
        for (i, (name, ty, span)) in te.inputs.iter().enumerate() {
            let op = lw.ops.len();
            lw.ops.push(OpRec {
                kind: Some(OpKind::Input {
                    index: i,
                    name: name.clone(),
                }),
                inputs: Vec::new(),
                outputs: Vec::new(),
                span: if same_source { *span } else { Span::DUMMY },
                a_param: None,
            });
            let s = lw.new_stream(op, ty.clone());
            if let Some(st) = lw.streams.get_mut(s) {
                st.name = Some(name.clone());
                st.def_span = same_source.then_some(*span);
            }
            lw.names.insert(name.clone());
            lw.scope.insert(
                name.as_str(),
                Binding {
                    value: if ty.is_some() {
                        Value::Stream(s)
                    } else {
                        Value::Error
                    },
                    span: same_source.then_some(*span),
                },
            );
        }
        lw.names.extend(te.fn_by_name.keys().cloned());
        lw
    }

    fn new_stream(&mut self, op: usize, ty: Option<StreamType>) -> usize {
        let id = self.streams.len();
        self.streams.push(StreamRec {
            ty,
            name: None,
            def_span: None,
            uses: Vec::new(),
            owner: None,
            producer: op,
        });
        if let Some(o) = self.ops.get_mut(op) {
            o.outputs.push(id);
        }
        id
    }

    fn emit(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Every identifier of the program, the task inputs and the functions (fresh names for
    /// fixes must avoid them). Only needed when a fix is generated.
    pub fn collect_names(&mut self, p: &Program) {
        fn arg_names(a: &Arg, out: &mut BTreeSet<String>) {
            match a {
                Arg::Name(id) => {
                    out.insert(id.name.clone());
                }
                Arg::Tuple(v, _) => v.iter().for_each(|x| arg_names(x, out)),
            }
        }
        fn call_names(c: &OpCall, out: &mut BTreeSet<String>) {
            arg_names(&c.arg, out);
            for k in &c.kwargs {
                if let KwValue::Name(id) = &k.value {
                    out.insert(id.name.clone());
                }
            }
        }
        for s in &p.stmts {
            for t in &s.targets {
                self.names.insert(t.name.clone());
            }
            match &s.rhs {
                Rhs::Op(c) => call_names(c, &mut self.names),
                Rhs::List(ids, _) => self.names.extend(ids.iter().map(|i| i.name.clone())),
                Rhs::Comp(c) => {
                    call_names(&c.body, &mut self.names);
                    self.names.extend(c.vars.iter().map(|i| i.name.clone()));
                    match &c.iter {
                        CompIter::Name(i) => {
                            self.names.insert(i.name.clone());
                        }
                        CompIter::Zip(v, _) => self.names.extend(v.iter().map(|i| i.name.clone())),
                    }
                }
            }
        }
        self.names
            .extend(p.ret.values.iter().map(|i| i.name.clone()));
    }

    pub fn run(&mut self, p: &'t Program) {
        let n = p.stmts.len() * 2 + p.ret.values.len() + 4;
        self.ops.reserve(n);
        self.streams.reserve(n);
        self.scope.reserve(p.stmts.len() + p.ret.values.len());
        for stmt in &p.stmts {
            self.stmt_lo = stmt.span.lo;
            match &stmt.rhs {
                Rhs::Op(call) => {
                    let outs = self.op_call(call);
                    self.bind_outputs(&stmt.targets, outs, &call.op.name, stmt.span);
                }
                Rhs::List(ids, span) => {
                    let v = self.list_literal(ids, *span, stmt.targets.first());
                    self.bind_single(&stmt.targets, v, "a list");
                }
                Rhs::Comp(c) => {
                    let v = match self.comprehension(c) {
                        Some(elems) => {
                            let name = stmt
                                .targets
                                .first()
                                .map(|t| t.name.clone())
                                .unwrap_or_default();
                            Value::List(self.owned_list(name, elems, c.span))
                        }
                        None => Value::Error,
                    };
                    self.bind_single(&stmt.targets, v, "a comprehension");
                }
            }
        }
        self.stmt_lo = p.ret.span.lo;
        self.ret(p);
    }

    fn owned_list(&mut self, name: String, elems: Vec<usize>, span: Span) -> usize {
        let id = self.lists.len();
        for (i, &s) in elems.iter().enumerate() {
            if let Some(st) = self.streams.get_mut(s) {
                st.owner = Some(id);
                st.name = Some(format!("{name}[{i}]"));
                st.def_span = Some(span);
            }
        }
        self.lists.push(ListRec {
            name,
            slot_uses: vec![Vec::new(); elems.len()],
            elems,
            def_span: span,
            literal: false,
            uses: Vec::new(),
        });
        id
    }

    fn bind(&mut self, target: &'t Ident, value: Value) {
        if let Some(prev) = self.scope.get(target.name.as_str()) {
            let mut d = Diagnostic::new(
                Code::W0201,
                format!(
                    "`{}` is bound again; later uses see the new stream",
                    target.name
                ),
            )
            .at(target.span)
            .help(format!(
                "give the new value its own name, e.g. `{}_2`",
                target.name
            ));
            if let Some(s) = prev.span {
                d = d.label(s, format!("`{}` first bound here", target.name));
            }
            self.emit(d);
        }
        self.scope.insert(
            target.name.as_str(),
            Binding {
                value,
                span: Some(target.span),
            },
        );
    }

    fn bind_single(&mut self, targets: &'t [Ident], v: Value, what: &str) {
        match targets {
            [t] => self.bind(t, v),
            _ => {
                if let (Some(a), Some(b)) = (targets.first(), targets.last()) {
                    self.emit(
                        Diagnostic::new(
                            Code::E0204,
                            format!("{what} is one value, but {} names are bound", targets.len()),
                        )
                        .at(a.span.to(b.span)),
                    );
                }
                for t in targets {
                    self.bind(t, Value::Error);
                }
            }
        }
    }

    fn bind_outputs(
        &mut self,
        targets: &'t [Ident],
        outs: Option<Vec<usize>>,
        op: &str,
        span: Span,
    ) {
        let Some(outs) = outs else {
            for t in targets {
                self.bind(t, Value::Error);
            }
            return;
        };
        if targets.len() == outs.len() {
            for (t, &s) in targets.iter().zip(&outs) {
                if let Some(st) = self.streams.get_mut(s) {
                    st.name = Some(t.name.clone());
                    st.def_span = Some(t.span);
                }
                self.bind(t, Value::Stream(s));
            }
        } else if let [t] = targets {
            let l = self.owned_list(t.name.clone(), outs, t.span);
            self.bind(t, Value::List(l));
        } else {
            let at = match (targets.first(), targets.last()) {
                (Some(a), Some(b)) => a.span.to(b.span),
                _ => span,
            };
            self.emit(
                Diagnostic::new(
                    Code::E0204,
                    format!(
                        "{op}() produces {} stream(s), but {} names are bound",
                        outs.len(),
                        targets.len()
                    ),
                )
                .at(at)
                .help(format!(
                    "bind one name per stream, or a single name to get a list of {}",
                    outs.len()
                )),
            );
            for t in targets {
                self.bind(t, Value::Error);
            }
            // Unbound results are unusable: keep them out of later reports.
            for s in outs {
                if let Some(st) = self.streams.get_mut(s) {
                    st.ty = None;
                }
            }
        }
    }

    /// True when some stream is used more than once (the fix then needs fresh names).
    pub fn any_reuse(&self) -> bool {
        self.streams.iter().any(|s| s.uses.len() > 1)
    }

    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.comp_vars.iter().rev().find(|(n, _)| *n == name) {
            return Some(v.clone());
        }
        self.scope.get(name).map(|b| b.value.clone())
    }

    fn in_comp(&self) -> bool {
        !self.comp_vars.is_empty()
    }

    fn undefined(&mut self, id: &Ident, what: &str) {
        let mut cands: Vec<&str> = self.scope.keys().copied().collect();
        // In name order, so ties go to the same candidate on every run.
        cands.sort_unstable();
        cands.extend(self.comp_vars.iter().map(|(n, _)| *n));
        let mut d =
            Diagnostic::new(Code::E0201, format!("undefined name `{}`", id.name)).at(id.span);
        if let Some(s) = did_you_mean(&id.name, &cands) {
            d = d.suggest(id.span, s);
        }
        let inputs: Vec<String> = self
            .te
            .inputs
            .iter()
            .map(|(n, t, _)| match t {
                Some(t) => format!("{n} ({t})"),
                None => n.clone(),
            })
            .collect();
        d = d.note(format!(
            "{what}; the task's inputs are: {}",
            inputs.join(", ")
        ));
        self.emit(d);
    }

    fn use_rec(&self, span: Span, ret: bool) -> UseRec {
        UseRec {
            span,
            ret,
            renameable: !self.in_comp(),
            stmt_lo: self.stmt_lo,
        }
    }

    /// Records a use of element `i` of list `l`.
    fn use_slot(&mut self, l: usize, i: usize, u: UseRec) -> Option<usize> {
        let list = self.lists.get_mut(l)?;
        let s = *list.elems.get(i)?;
        if list.literal {
            list.slot_uses.get_mut(i)?.push(u);
        } else if let Some(st) = self.streams.get_mut(s) {
            st.uses.push(UseRec {
                renameable: false,
                ..u
            });
        }
        Some(s)
    }

    /// Resolves a name that must be one stream, recording its use.
    fn stream_operand<'a>(&mut self, id: &'a Ident, op: &str, ret: bool) -> Option<Opnd<'a>> {
        let u = self.use_rec(id.span, ret);
        let stream = match self.lookup(&id.name) {
            Some(Value::Stream(s)) => {
                self.streams.get_mut(s)?.uses.push(u);
                s
            }
            Some(Value::Slot(l, i)) => self.use_slot(l, i, u)?,
            Some(Value::List(l)) => {
                let n = self.lists.get(l).map_or(0, |x| x.elems.len());
                self.consume_list(l, id.span, ret);
                self.emit(
                    Diagnostic::new(
                        Code::E0203,
                        format!("`{}` is a list of {n} streams, but {op} takes one stream here", id.name),
                    )
                    .at(id.span)
                    .help(format!(
                        "apply the op to each element with a comprehension: `[step.{op}(..).apply(x) for x in {}]`",
                        id.name
                    )),
                );
                return None;
            }
            Some(Value::Fn(_)) | Some(Value::FnList(_)) => {
                self.emit(
                    Diagnostic::new(
                        Code::E0203,
                        format!(
                            "`{}` names element function(s), but {op} takes a stream here",
                            id.name
                        ),
                    )
                    .at(id.span)
                    .help("pass functions with `fn=`; `.apply(...)` takes streams"),
                );
                return None;
            }
            Some(Value::Error) => return None,
            None => {
                if self.te.fn_by_name.contains_key(&id.name) {
                    self.emit(
                        Diagnostic::new(
                            Code::E0203,
                            format!(
                                "`{}` is an element function, but {op} takes a stream here",
                                id.name
                            ),
                        )
                        .at(id.span)
                        .help(format!(
                            "pass it as `fn={}`; `.apply(...)` takes streams",
                            id.name
                        )),
                    );
                } else {
                    self.undefined(id, "not a stream bound earlier nor a task input");
                }
                return None;
            }
        };
        Some(Opnd {
            stream,
            name: &id.name,
            span: id.span,
        })
    }

    fn consume_list(&mut self, l: usize, span: Span, ret: bool) -> Vec<usize> {
        let u = self.use_rec(span, ret);
        let n = match self.lists.get_mut(l) {
            Some(list) => {
                list.uses.push(u.clone());
                list.elems.len()
            }
            None => 0,
        };
        (0..n)
            .filter_map(|i| {
                self.use_slot(
                    l,
                    i,
                    UseRec {
                        renameable: false,
                        ..u.clone()
                    },
                )
            })
            .collect()
    }

    fn flat_idents<'a>(a: &'a Arg, out: &mut Vec<&'a Ident>) {
        match a {
            Arg::Name(id) => out.push(id),
            Arg::Tuple(v, _) => v.iter().for_each(|x| Self::flat_idents(x, out)),
        }
    }

    /// Resolves every name in `a` for its uses only (after an arity error).
    fn touch_all(&mut self, a: &Arg, op: &str) {
        let mut ids = Vec::new();
        Self::flat_idents(a, &mut ids);
        for id in ids {
            if let Some(Value::List(l)) = self.lookup(&id.name) {
                self.consume_list(l, id.span, false);
            } else {
                let _ = self.stream_operand(id, op, false);
            }
        }
    }

    fn params(&mut self, call: &OpCall, info: &ops::OpInfo) -> Option<Params> {
        let op = info.name;
        let mut p = Params::default();
        let mut ok = true;
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for kw in &call.kwargs {
            let key = kw.key.name.as_str();
            if !info.params.contains(&key) {
                let mut d = Diagnostic::new(Code::E0312, format!("{op} has no parameter `{key}`"))
                    .at(kw.key.span);
                let expected = if info.params.is_empty() {
                    format!("{op} takes no parameters")
                } else {
                    format!("{op} takes {}", info.params.join(", "))
                };
                d = d.note(expected);
                if let Some(s) = did_you_mean(key, info.params) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                self.emit(d);
                ok = false;
                continue;
            }
            if !seen.insert(key) {
                self.emit(
                    Diagnostic::new(Code::E0312, format!("parameter `{key}` is given twice"))
                        .at(kw.span),
                );
                ok = false;
                continue;
            }
            let pk = param_static(key);
            p.spans.push((pk, kw.value.span()));
            let v = &kw.value;
            match key {
                "fn" => match self.fn_param(v, op) {
                    Some(f) => p.f = Some(f),
                    None => ok = false,
                },
                "a" | "b" => match v {
                    KwValue::Int(i, _) => {
                        if key == "a" {
                            p.a = Some(*i);
                        } else {
                            p.b = Some(*i);
                        }
                    }
                    other => {
                        self.emit(
                            Diagnostic::new(
                                Code::E0312,
                                format!("{op}({key}=..) takes an integer (a number of dims)"),
                            )
                            .at(other.span()),
                        );
                        ok = false;
                    }
                },
                "L" => {
                    let items: Option<Vec<i64>> = match v {
                        KwValue::Int(i, _) => Some(vec![*i]),
                        KwValue::List(xs, _) | KwValue::Tuple(xs, _) => xs
                            .iter()
                            .map(|x| match x {
                                KwValue::Int(i, _) => Some(*i),
                                _ => None,
                            })
                            .collect(),
                        KwValue::Name(_) => None,
                    };
                    match items {
                        Some(l) => p.l = Some(l),
                        None => {
                            self.emit(
                                Diagnostic::new(
                                    Code::E0312,
                                    format!(
                                        "{op}(L=..) takes a list of dim indices such as [1, 2]"
                                    ),
                                )
                                .at(v.span()),
                            );
                            ok = false;
                        }
                    }
                }
                _ => match self.dim_param(v, op, key) {
                    Some(d) => p.dim = Some(d),
                    None => ok = false,
                },
            }
        }
        for &need in info.params {
            if !seen.contains(need) {
                let what = match need {
                    "fn" => "an element function",
                    "a" | "b" => "an integer",
                    "L" => "a list of dim indices",
                    _ => "an integer or a dimension symbol",
                };
                self.emit(
                    Diagnostic::new(
                        Code::E0312,
                        format!("{op} needs the parameter `{need}` ({what})"),
                    )
                    .at(call.head_span)
                    .note(format!("{op} takes {}", info.params.join(", "))),
                );
                ok = false;
            }
        }
        ok.then_some(p)
    }

    fn fn_param(&mut self, v: &KwValue, op: &str) -> Option<FnId> {
        let KwValue::Name(id) = v else {
            self.emit(
                Diagnostic::new(
                    Code::E0312,
                    format!("{op}(fn=..) takes an element function name"),
                )
                .at(v.span()),
            );
            return None;
        };
        let local = self
            .comp_vars
            .iter()
            .rev()
            .find(|(n, _)| *n == id.name)
            .map(|(_, v)| v.clone());
        let found = match local {
            Some(Value::Fn(f)) => Some(f),
            Some(_) => None,
            None => self.te.fn_by_name.get(&id.name).copied(),
        };
        if let Some(f) = found {
            if let Some(u) = self.fn_used.get_mut(f.index()) {
                *u = true;
            }
            return Some(f);
        }
        let kind = match self.lookup(&id.name) {
            Some(Value::FnList(_)) => {
                Some("a list of functions; iterate over it with zip in a comprehension")
            }
            Some(Value::Stream(_)) | Some(Value::Slot(..)) => Some("a stream"),
            Some(Value::List(_)) => Some("a list of streams"),
            _ => None,
        };
        if let Some(kind) = kind {
            self.emit(
                Diagnostic::new(
                    Code::E0203,
                    format!("`{}` is {kind}, but fn= takes an element function", id.name),
                )
                .at(id.span),
            );
            return None;
        }
        let names: Vec<&str> = self.te.fn_by_name.keys().map(String::as_str).collect();
        let mut d = Diagnostic::new(
            Code::E0202,
            format!("`{}` is not an element function of this task", id.name),
        )
        .at(id.span)
        .note(format!("the task's functions are: {}", names.join(", ")));
        if let Some(s) = did_you_mean(&id.name, &names) {
            d = d.suggest(id.span, s);
        }
        self.emit(d);
        None
    }

    fn dim_param(&mut self, v: &KwValue, op: &str, key: &str) -> Option<Dim> {
        match v {
            KwValue::Int(i, _) => Some(Dim::lit(*i)),
            KwValue::Name(id) => {
                let base = strip_value_suffix(&id.name);
                if self.te.known_syms.contains(base) || self.te.env.get_static(base).is_some() {
                    return Some(Dim::sym(base));
                }
                let cands: Vec<&str> = self.te.known_syms.iter().map(String::as_str).collect();
                let mut d = Diagnostic::new(
                    Code::E0206,
                    format!("`{}` is not a dimension of this task", id.name),
                )
                .at(id.span)
                .note(format!("known dimensions: {}", cands.join(", ")));
                if let Some(s) = did_you_mean(base, &cands) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                self.emit(d);
                None
            }
            other => {
                self.emit(
                    Diagnostic::new(
                        Code::E0312,
                        format!("{op}({key}=..) takes an integer or a dimension symbol"),
                    )
                    .at(other.span()),
                );
                None
            }
        }
    }

    /// Lowers one op call; returns its output streams (`None` when even their number is
    /// unknown).
    fn op_call(&mut self, call: &'t OpCall) -> Option<Vec<usize>> {
        let Some(info) = ops::lookup(&call.op.name) else {
            let mut d = Diagnostic::new(
                Code::E0112,
                format!("`{}` is not a STeP operator", call.op.name),
            )
            .at(call.op.span);
            if let Some(s) = ops::suggest_op(&call.op.name) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            self.emit(d);
            self.touch_all(&call.arg, &call.op.name);
            return None;
        };
        let op = info.name;
        let params = self.params(call, info);
        let (operands, n_branches, arity_ok) = self.op_operands(call, op)?;
        let op_idx = self.ops.len();
        let n_out_guess: Option<usize> = match op {
            "Copy" => Some(2),
            "Partition" => params
                .as_ref()
                .and_then(|p| p.dim.as_ref())
                .and_then(|n| rules::branch_count(n, &self.te.env, "N").ok()),
            _ => Some(1),
        };
        let a_param = params.as_ref().and_then(|p| p.a.zip(p.span("a")));
        let inputs: Vec<usize> = operands.iter().map(|o| o.stream).collect();

        let result: Option<Result<(OpKind, Vec<StreamType>), RuleError>> = match (&params, arity_ok)
        {
            (Some(p), true) => {
                let ops_: Option<Vec<Operand>> = operands
                    .iter()
                    .map(|o| {
                        let ty = self.streams.get(o.stream)?.ty.as_ref()?;
                        Some(Operand { name: o.name, ty })
                    })
                    .collect();
                ops_.and_then(|ops_| self.apply_rule(op, p, &ops_, n_branches, OpId::new(op_idx)))
            }
            _ => None,
        };
        let (kind, out_types): (Option<OpKind>, Vec<Option<StreamType>>) = match result {
            Some(Ok((k, outs))) => (Some(k), outs.into_iter().map(Some).collect()),
            Some(Err(mut e)) => {
                self.accum_scan_help(&mut e, &operands);
                let fix = self.bufferize_fix(&e, op, params.as_ref(), &operands);
                self.emit_rule_error(e, call, params.as_ref(), &operands, fix);
                match n_out_guess {
                    Some(n) => (None, vec![None; n]),
                    None => (None, Vec::new()),
                }
            }
            None => match n_out_guess {
                Some(n) => (None, vec![None; n]),
                None => (None, Vec::new()),
            },
        };
        if kind.is_none() && n_out_guess.is_none() {
            // Partition whose branch count is unknown: there are no streams to bind.
            self.ops.push(OpRec {
                kind: None,
                inputs,
                outputs: Vec::new(),
                span: call.span,
                a_param,
            });
            return None;
        }
        self.ops.push(OpRec {
            kind,
            inputs,
            outputs: Vec::new(),
            span: call.span,
            a_param,
        });
        Some(
            out_types
                .into_iter()
                .map(|t| self.new_stream(op_idx, t))
                .collect(),
        )
    }

    /// The stream operands of an op call (`.apply(..)`), in the form each op takes; the branch
    /// count of a Merge; whether the operands had the right form (else E0309 was reported).
    fn op_operands(&mut self, call: &'t OpCall, op: &str) -> Option<(Vec<Opnd<'t>>, usize, bool)> {
        let mut operands: Vec<Opnd<'t>> = Vec::new();
        let mut n_branches = 0usize;
        let mut arity_ok = true;
        match op {
            "Map" => {
                let mut ids = Vec::new();
                Self::flat_idents(&call.arg, &mut ids);
                for id in ids {
                    match self.stream_operand(id, op, false) {
                        Some(o) => operands.push(o),
                        None => arity_ok = false,
                    }
                }
            }
            "Zip" | "RepeatRef" | "Partition" => match &call.arg {
                Arg::Tuple(items, _)
                    if items.len() == 2 && items.iter().all(|a| matches!(a, Arg::Name(_))) =>
                {
                    for a in items {
                        if let Arg::Name(id) = a {
                            match self.stream_operand(id, op, false) {
                                Some(o) => operands.push(o),
                                None => arity_ok = false,
                            }
                        }
                    }
                }
                other => {
                    let form = match op {
                        "Zip" => "two streams, `.apply((a, b))`",
                        "RepeatRef" => "`.apply((data, ref))`",
                        _ => "`.apply((data, selector))`",
                    };
                    self.emit(
                        Diagnostic::new(Code::E0309, format!("{op} takes {form}")).at(other.span()),
                    );
                    self.touch_all(other, op);
                    arity_ok = false;
                }
            },
            "Merge" => match &call.arg {
                Arg::Tuple(items, _) if items.len() == 2 => {
                    let (Some(br), Some(sel)) = (items.first(), items.get(1)) else {
                        return None;
                    };
                    match br {
                        Arg::Name(id) => match self.lookup(&id.name) {
                            Some(Value::List(l)) => {
                                let elems = self.consume_list(l, id.span, false);
                                for s in elems {
                                    operands.push(Opnd {
                                        stream: s,
                                        name: &id.name,
                                        span: id.span,
                                    });
                                }
                            }
                            Some(Value::Error) => arity_ok = false,
                            _ => match self.stream_operand(id, op, false) {
                                Some(o) => operands.push(o),
                                None => arity_ok = false,
                            },
                        },
                        Arg::Tuple(..) => {
                            let mut ids = Vec::new();
                            Self::flat_idents(br, &mut ids);
                            for id in ids {
                                match self.stream_operand(id, op, false) {
                                    Some(o) => operands.push(o),
                                    None => arity_ok = false,
                                }
                            }
                        }
                    }
                    n_branches = operands.len();
                    match sel {
                        Arg::Name(id) => match self.stream_operand(id, op, false) {
                            Some(o) => operands.push(o),
                            None => arity_ok = false,
                        },
                        other => {
                            self.emit(
                                Diagnostic::new(Code::E0309, "Merge's selector must be one stream")
                                    .at(other.span()),
                            );
                            self.touch_all(other, op);
                            arity_ok = false;
                        }
                    }
                }
                other => {
                    self.emit(
                        Diagnostic::new(
                            Code::E0309,
                            "Merge takes `.apply((branches, selector))`, with branches a list of streams",
                        )
                        .at(other.span()),
                    );
                    self.touch_all(other, op);
                    arity_ok = false;
                }
            },
            _ => match &call.arg {
                Arg::Name(id) => match self.stream_operand(id, op, false) {
                    Some(o) => operands.push(o),
                    None => arity_ok = false,
                },
                other => {
                    let mut help = None;
                    if op == "Accum" || op == "Scan" {
                        help = Some(
                            "zip the streams first with Zip() or a Map over the tuple".to_string(),
                        );
                    }
                    let mut d = Diagnostic::new(
                        Code::E0309,
                        format!("{op} takes exactly one stream, `.apply(x)`"),
                    )
                    .at(other.span());
                    if let Some(h) = help {
                        d = d.help(h);
                    }
                    self.emit(d);
                    self.touch_all(other, op);
                    arity_ok = false;
                }
            },
        }

        Some((operands, n_branches, arity_ok))
    }

    fn sig(&self, f: FnId) -> Option<&FnSig> {
        self.te.fns.get(f.index()).and_then(Option::as_ref)
    }

    fn apply_rule(
        &self,
        op: &str,
        p: &Params,
        o: &[Operand],
        n_branches: usize,
        id: OpId,
    ) -> Option<Result<(OpKind, Vec<StreamType>), RuleError>> {
        let env = &self.te.env;
        let one = o.first();
        let r = match op {
            "Map" => {
                let f = p.f?;
                rules::map(self.sig(f)?, o, env).map(|t| (OpKind::Map { f }, vec![t]))
            }
            "Accum" | "Scan" => {
                let (f, b) = (p.f?, p.b?);
                let scan = op == "Scan";
                rules::accum(self.sig(f)?, b, one?, scan, env).map(|t| {
                    let b = b as usize;
                    let k = if scan {
                        OpKind::Scan { f, b }
                    } else {
                        OpKind::Accum { f, b }
                    };
                    (k, vec![t])
                })
            }
            "Zip" => rules::zip(o, env).map(|t| (OpKind::Zip, vec![t])),
            "Copy" => Ok((OpKind::Copy, rules::copy(one?).to_vec())),
            "Bufferize" => {
                let a = p.a?;
                rules::bufferize(a, one?).map(|t| (OpKind::Bufferize { a: a as usize }, vec![t]))
            }
            "Streamify" => rules::streamify(one?).map(|t| (OpKind::Streamify, vec![t])),
            "Promote" => {
                let b = p.b?;
                rules::promote(b, one?).map(|t| (OpKind::Promote { b: b as usize }, vec![t]))
            }
            "Flatten" => rules::flatten(p.l.as_ref()?, one?)
                .map(|(t, dims)| (OpKind::Flatten { dims }, vec![t])),
            "Reshape" => {
                let c = p.dim.clone()?;
                rules::reshape(p.l.as_ref()?, &c, one?, env)
                    .map(|(t, dims)| (OpKind::Reshape { dims, chunk: c }, vec![t]))
            }
            "Repeat" => {
                let n = p.dim.clone()?;
                rules::repeat(&n, one?).map(|t| (OpKind::Repeat { n }, vec![t]))
            }
            "RepeatRef" => {
                rules::repeat_ref(o.first()?, o.get(1)?, env).map(|t| (OpKind::RepeatRef, vec![t]))
            }
            "Partition" => {
                let n = p.dim.as_ref()?;
                let (data, sel) = (o.first()?, o.get(1)?);
                rules::partition(n, data, sel, id, env).map(|ts| {
                    (
                        OpKind::Partition {
                            n: ts.len(),
                            sel_dims: sel.ty.dims.len(),
                        },
                        ts,
                    )
                })
            }
            "Merge" => {
                let f = p.f?;
                let (branches, sel) = (o.get(..n_branches)?, o.get(n_branches)?);
                rules::merge(self.sig(f)?, branches, sel, env)
                    .map(|t| (OpKind::Merge { f, n: n_branches }, vec![t]))
            }
            _ => return None,
        };
        Some(r)
    }

    /// An E0305 whose short operand comes from an Accum: a Repeat would fix the shape, but a
    /// stream joined element by element with the Accum's input usually wanted a running value
    /// there, which is what Scan keeps (same function, same `b`, the input's dims).
    fn accum_scan_help(&self, e: &mut RuleError, operands: &[Opnd]) {
        // Only where the help so far is a Repeat: a Bufferize help means the shapes differ
        // by a tile, not by a folded dim.
        if e.code != Code::E0305 || !e.help.as_deref().is_some_and(|h| h.contains("Repeat(")) {
            return;
        }
        let ranks: Vec<Option<usize>> = operands
            .iter()
            .map(|o| Some(self.streams.get(o.stream)?.ty.as_ref()?.dims.len()))
            .collect();
        let Some(longest) = ranks.iter().flatten().max().copied() else {
            return;
        };
        for (o, r) in operands.iter().zip(&ranks) {
            // The Accum may sit behind Copies.
            let mut prod = self
                .streams
                .get(o.stream)
                .and_then(|st| self.ops.get(st.producer));
            while let Some(OpRec {
                kind: Some(OpKind::Copy),
                inputs,
                ..
            }) = prod
            {
                prod = inputs
                    .first()
                    .and_then(|&i| self.streams.get(i))
                    .and_then(|st| self.ops.get(st.producer));
            }
            let Some(OpKind::Accum { f, b }) = prod.and_then(|p| p.kind.as_ref()) else {
                continue;
            };
            if r.is_none_or(|r| r + b != longest) {
                continue;
            }
            let fname = self.sig(*f).map_or("..", |s| s.name.as_str());
            let scan = format!(
                "{} comes from Accum(fn={fname}, b={b}), which folds {b} dim(s) away; if each \
                 element should be joined with the running value, Scan(fn={fname}, b={b}) keeps \
                 the dims and is likely the intent",
                o.name
            );
            e.help = Some(match e.help.take() {
                Some(h) => format!("{h}; {scan}"),
                None => scan,
            });
            return;
        }
    }

    /// `Bufferize(a=k)` feeding an op whose function wants the tile one dim larger or smaller:
    /// if exactly one neighbouring value of `a` type-checks, that edit is the fix.
    fn bufferize_fix(
        &self,
        e: &RuleError,
        op: &str,
        p: Option<&Params>,
        operands: &[Opnd],
    ) -> Option<Fix> {
        if e.code != Code::E0302 || !matches!(op, "Map" | "Accum" | "Scan") || operands.len() != 1 {
            return None;
        }
        let f = self.sig(p?.f?)?;
        let s = self.streams.get(operands.first()?.stream)?;
        let prod = self.ops.get(s.producer)?;
        let (a, span) = prod.a_param?;
        if !matches!(prod.kind, Some(OpKind::Bufferize { .. })) {
            return None;
        }
        let input = self.streams.get(*prod.inputs.first()?)?.ty.as_ref()?;
        let good: Vec<i64> = [a - 1, a + 1]
            .into_iter()
            .filter(|&alt| alt >= 1 && (alt as usize) <= input.rank())
            .filter(|&alt| {
                ElemType::buffer(&input.elem, &input.dims[..alt as usize])
                    .is_some_and(|t| elem_eq(&t, &f.input, &self.te.env))
            })
            .collect();
        match good.as_slice() {
            [alt] => Some(Fix::replace(
                format!("use Bufferize(a={alt}) so that {} gets {}", f.name, f.input),
                Applicability::Safe,
                span,
                alt.to_string(),
            )),
            _ => None,
        }
    }

    fn emit_rule_error(
        &mut self,
        e: RuleError,
        call: &OpCall,
        p: Option<&Params>,
        operands: &[Opnd],
        fix: Option<Fix>,
    ) {
        let primary = match e.blame {
            Blame::Op => call.arg.span(),
            Blame::Param(k) => p.and_then(|p| p.span(k)).unwrap_or(call.head_span),
            Blame::Operand(i) => operands.get(i).map_or(call.arg.span(), |o| o.span),
        };
        let mut d = Diagnostic::new(e.code, e.message).at(primary);
        let labelled: Vec<&Opnd> = match e.blame {
            Blame::Operand(i) => operands.get(i).into_iter().collect(),
            _ => operands.iter().take(2).collect(),
        };
        for o in labelled {
            if let Some(s) = self.streams.get(o.stream)
                && let (Some(def), Some(ty)) = (s.def_span, &s.ty)
                && def != primary
            {
                d = d.label(
                    def,
                    format!("{} defined here with dims {}", s.disp(), ty.dims_string()),
                );
            }
        }
        for n in e.notes {
            d = d.note(n);
        }
        if let Some(h) = e.help {
            d = d.help(h);
        }
        if let Some(f) = fix {
            d = d.fix(f);
        }
        self.emit(d);
    }

    fn list_literal(&mut self, ids: &'t [Ident], span: Span, target: Option<&'t Ident>) -> Value {
        let mut streams = Vec::new();
        let mut fns = Vec::new();
        let mut bad = false;
        for id in ids {
            match self.lookup(&id.name) {
                Some(Value::Stream(s)) => {
                    let u = self.use_rec(id.span, false);
                    if let Some(st) = self.streams.get_mut(s) {
                        st.uses.push(u);
                    }
                    streams.push(s);
                }
                Some(Value::Fn(f)) => fns.push(f),
                Some(Value::List(_)) | Some(Value::FnList(_)) => {
                    self.emit(
                        Diagnostic::new(
                            Code::E0203,
                            format!("`{}` is a list; lists do not nest", id.name),
                        )
                        .at(id.span),
                    );
                    bad = true;
                }
                Some(Value::Slot(..)) | Some(Value::Error) => bad = true,
                None => match self.te.fn_by_name.get(&id.name) {
                    Some(&f) => {
                        if let Some(u) = self.fn_used.get_mut(f.index()) {
                            *u = true;
                        }
                        fns.push(f);
                    }
                    None => {
                        self.undefined(id, "not a stream, a list element or an element function");
                        bad = true;
                    }
                },
            }
        }
        if !streams.is_empty() && !fns.is_empty() {
            self.emit(
                Diagnostic::new(
                    Code::E0203,
                    "a list holds either streams or element functions, not both",
                )
                .at(span),
            );
            return Value::Error;
        }
        if bad {
            return Value::Error;
        }
        if !fns.is_empty() {
            return Value::FnList(fns);
        }
        let id = self.lists.len();
        self.lists.push(ListRec {
            name: target.map(|t| t.name.clone()).unwrap_or_default(),
            slot_uses: vec![Vec::new(); streams.len()],
            elems: streams,
            def_span: target.map_or(span, |t| t.span),
            literal: true,
            uses: Vec::new(),
        });
        Value::List(id)
    }

    fn comprehension(&mut self, c: &'t Comprehension) -> Option<Vec<usize>> {
        let iters: Vec<&Ident> = match &c.iter {
            CompIter::Name(id) => vec![id],
            CompIter::Zip(ids, _) => ids.iter().collect(),
        };
        if c.vars.len() != iters.len() {
            let mut d = Diagnostic::new(
                Code::E0205,
                format!(
                    "the comprehension binds {} variable(s) but iterates over {} list(s)",
                    c.vars.len(),
                    iters.len()
                ),
            )
            .at(c.vars.first().map_or(c.span, |v| v.span));
            if matches!(c.iter, CompIter::Name(_)) && c.vars.len() > 1 {
                d = d.help("iterate over several lists with `zip(xs, ys)`, one variable per list");
            }
            self.emit(d);
            return None;
        }
        enum It {
            Streams(usize),
            Fns(Vec<FnId>),
        }
        let mut its = Vec::new();
        let mut ok = true;
        for id in &iters {
            match self.lookup(&id.name) {
                Some(Value::List(l)) => {
                    let u = self.use_rec(id.span, false);
                    if let Some(list) = self.lists.get_mut(l) {
                        list.uses.push(u);
                    }
                    its.push((It::Streams(l), id));
                }
                Some(Value::FnList(fs)) => its.push((It::Fns(fs), id)),
                Some(Value::Error) => ok = false,
                Some(_) => {
                    self.emit(
                        Diagnostic::new(
                            Code::E0203,
                            format!(
                                "`{}` is not a list; a comprehension iterates over lists",
                                id.name
                            ),
                        )
                        .at(id.span),
                    );
                    ok = false;
                }
                None => {
                    self.undefined(id, "a comprehension iterates over lists bound earlier");
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let lens: Vec<usize> = its
            .iter()
            .map(|(it, _)| match it {
                It::Streams(l) => self.lists.get(*l).map_or(0, |x| x.elems.len()),
                It::Fns(f) => f.len(),
            })
            .collect();
        let n = lens.first().copied().unwrap_or(0);
        if lens.iter().any(|&k| k != n) {
            let desc: Vec<String> = its
                .iter()
                .zip(&lens)
                .map(|((_, id), k)| format!("{} has {k}", id.name))
                .collect();
            self.emit(
                Diagnostic::new(
                    Code::E0205,
                    format!("zip over lists of different lengths: {}", desc.join(", ")),
                )
                .at(match &c.iter {
                    CompIter::Zip(_, s) => *s,
                    CompIter::Name(id) => id.span,
                }),
            );
            return None;
        }
        let mut out = Vec::with_capacity(n);
        let mut failed = false;
        for i in 0..n {
            let depth = self.comp_vars.len();
            for (v, (it, _)) in c.vars.iter().zip(&its) {
                let val = match it {
                    It::Streams(l) => Value::Slot(*l, i),
                    It::Fns(fs) => fs.get(i).map_or(Value::Error, |f| Value::Fn(*f)),
                };
                self.comp_vars.push((v.name.as_str(), val));
            }
            let outs = self.op_call(&c.body);
            self.comp_vars.truncate(depth);
            match outs {
                Some(v) if v.len() == 1 => out.extend(v),
                Some(v) => {
                    self.emit(
                        Diagnostic::new(
                            Code::E0205,
                            format!(
                                "the body of a comprehension must produce one stream, but {}() produces {}",
                                c.body.op.name,
                                v.len()
                            ),
                        )
                        .at(c.body.head_span),
                    );
                    failed = true;
                }
                None => failed = true,
            }
        }
        (!failed).then_some(out)
    }

    fn ret(&mut self, p: &'t Program) {
        let mut returned: Vec<(Option<usize>, Span)> = Vec::new();
        for id in &p.ret.values {
            match self.lookup(&id.name) {
                Some(Value::List(l)) => {
                    for s in self.consume_list(l, id.span, true) {
                        returned.push((Some(s), id.span));
                    }
                }
                Some(Value::Error) => returned.push((None, id.span)),
                _ => {
                    let o = self.stream_operand(id, "return", true);
                    returned.push((o.map(|o| o.stream), id.span));
                }
            }
        }
        let outs = &self.te.outputs;
        if returned.len() != outs.len() {
            let decl: Vec<String> = outs
                .iter()
                .map(|(n, t)| match t {
                    Some(t) => format!("{n} ({t})"),
                    None => n.clone(),
                })
                .collect();
            self.emit(
                Diagnostic::new(
                    Code::E0310,
                    format!(
                        "the program returns {} stream(s), but the task declares {} output(s)",
                        returned.len(),
                        outs.len()
                    ),
                )
                .at(p.ret.span)
                .note(format!("the task's outputs, in order: {}", decl.join(", "))),
            );
        } else {
            for (i, ((s, span), (oname, oty))) in returned.iter().zip(outs.iter()).enumerate() {
                let (Some(s), Some(oty)) = (s, oty) else {
                    continue;
                };
                let Some(st) = self.streams.get(*s) else {
                    continue;
                };
                let Some(ty) = &st.ty else { continue };
                let env = &self.te.env;
                if elem_eq(&ty.elem, &oty.elem, env) && rules::dims_eq(&ty.dims, &oty.dims, env) {
                    continue;
                }
                let mut d = Diagnostic::new(
                    Code::E0311,
                    format!(
                        "output {i} ({oname}) must be {oty}, but {} is {ty}",
                        st.disp()
                    ),
                )
                .at(*span)
                .note(format!("expected {}", oty))
                .note(format!("found {}", ty));
                if let Some(def) = st.def_span
                    && def != *span
                {
                    d = d.label(
                        def,
                        format!("{} defined here with dims {}", st.disp(), ty.dims_string()),
                    );
                }
                let o = Operand {
                    name: st.disp(),
                    ty,
                };
                if let Some(h) = swap_help(i, &returned, outs, &self.streams, env) {
                    d = d.help(h);
                } else if let Some(h) = rules::elem_help(&oty.elem, &o, env) {
                    d = d.help(h);
                } else if let Some(h) = placeholder_dim_help(ty, oty, env) {
                    d = d.help(h);
                } else if ty.dims.len() > oty.dims.len()
                    && rules::dims_eq(&ty.dims[ty.dims.len() - oty.dims.len()..], &oty.dims, env)
                {
                    let k = ty.dims.len() - oty.dims.len();
                    d = d.help(format!(
                        "{} has {k} extra inner dim(s); fold them with Accum(b={k})",
                        st.disp()
                    ));
                }
                self.emit(d);
            }
        }
        // Output pseudo-ops, one per returned stream that has a slot in the task's outputs.
        for (i, (s, span)) in returned.into_iter().enumerate() {
            let name = outs
                .get(i)
                .map_or_else(|| format!("out{i}"), |(n, _)| n.clone());
            self.returned.push(s);
            self.ops.push(OpRec {
                kind: Some(OpKind::Output { index: i, name }),
                inputs: s.into_iter().collect(),
                outputs: Vec::new(),
                span,
                a_param: None,
            });
        }
    }

    /// The graph, if every op and stream got a type. Moves the stream types and names into
    /// the graph (call it last).
    pub fn build_graph(&mut self) -> Option<Graph> {
        if self.returned.iter().any(Option::is_none) {
            return None;
        }
        let fns: Vec<FnSig> = self.te.fns.iter().cloned().collect::<Option<Vec<_>>>()?;
        let mut b = GraphBuilder::with_capacity(fns, self.ops.len(), self.streams.len());
        if self.streams.iter().any(|s| s.ty.is_none()) {
            return None;
        }
        for (name, ty, span) in &self.te.params {
            let (elem, dims) = ty.clone()?;
            b.add_param(name.clone(), elem, dims, *span);
        }
        for o in &mut self.ops {
            let kind = o.kind.take()?;
            let id = b.add_op(kind, o.span);
            for &i in &o.inputs {
                b.add_input(id, StreamId::new(i)).ok()?;
            }
            for &s in &o.outputs {
                let st = self.streams.get_mut(s)?;
                let sid = b
                    .add_output(
                        id,
                        st.ty.take()?,
                        st.name.take(),
                        st.def_span.unwrap_or(o.span),
                    )
                    .ok()?;
                if sid.index() != s {
                    return None;
                }
            }
        }
        let g = b.finish().ok()?;
        // The IR verifier runs on every lowered graph in debug builds and tests: a violation
        // is a lowering bug, caught where it is made rather than in a back end.
        #[cfg(debug_assertions)]
        {
            let violations = stepforge_ir::verify(&g);
            debug_assert!(
                violations.is_empty(),
                "lowering built an invalid graph: {violations:?}"
            );
        }
        Some(g)
    }
}

/// Whether returned stream `s` has output `o`'s type.
fn returned_matches(
    s: Option<usize>,
    o: &Option<StreamType>,
    streams: &[StreamRec],
    env: &stepforge_ir::DimEnv,
) -> bool {
    match (s.and_then(|s| streams.get(s)?.ty.as_ref()), o) {
        (Some(ty), Some(oty)) => {
            elem_eq(&ty.elem, &oty.elem, env) && rules::dims_eq(&ty.dims, &oty.dims, env)
        }
        _ => false,
    }
}

/// E0311 help when the returned streams are the task's outputs in another order: output `i`
/// is returned at position `j` and output `j` at position `i`.
fn swap_help(
    i: usize,
    returned: &[(Option<usize>, Span)],
    outs: &[(String, Option<StreamType>)],
    streams: &[StreamRec],
    env: &stepforge_ir::DimEnv,
) -> Option<String> {
    let at = |k: usize| returned.get(k).and_then(|r| r.0);
    let j = (0..outs.len()).find(|&j| {
        j != i
            && returned_matches(at(j), &outs[i].1, streams, env)
            && returned_matches(at(i), &outs[j].1, streams, env)
    })?;
    let name = |k: usize| {
        at(k)
            .and_then(|s| streams.get(s))
            .map_or("?", StreamRec::disp)
    };
    let mut order: Vec<&str> = (0..returned.len()).map(name).collect();
    order.swap(i, j);
    Some(format!(
        "the returned streams are the task's outputs in another order: swap the returned \
         streams {} and {} (`return {}`)",
        name(i),
        name(j),
        order.join(", ")
    ))
}

/// E0311 help when the found dims are the expected ones plus an outermost placeholder dim of
/// size 1 (left by `Promote` + `Bufferize` + `Streamify`): `Flatten` merges it away.
fn placeholder_dim_help(
    ty: &StreamType,
    oty: &StreamType,
    env: &stepforge_ir::DimEnv,
) -> Option<String> {
    let n = ty.dims.len();
    if n < 2 || n != oty.dims.len() + 1 || !elem_eq(&ty.elem, &oty.elem, env) {
        return None;
    }
    let last = ty.dims.last()?;
    if !rules::dim_eq(last, &stepforge_ir::Dim::lit(1), env)
        || !rules::dims_eq(&ty.dims[..n - 1], &oty.dims, env)
    {
        return None;
    }
    Some(format!(
        "the outermost dim is a size-1 placeholder: Flatten(L=[{}]) removes the placeholder dim \
         (it merges it into {})",
        n - 1,
        ty.dims[n - 2]
    ))
}
