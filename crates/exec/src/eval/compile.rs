//! Compilation of a block against an [`Env`]: names to slots or constants, dotted torch paths
//! and method names to [`Func`]s, keyword names to static strings. Everything the evaluator
//! does not support is reported here, before any evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;

use stepforge_syntax::Span;
use stepforge_syntax::ast::{
    BinOp, Block, CmpOp, Expr, ExprKind, FStringPart, PyStmtKind, SliceItem, Target, UnOp,
};
use stepforge_syntax::codes::Code;
use stepforge_tensor::DType;

use stepforge_ir::builtin::{self as table, Ns};

use super::funcs::Func;
use super::value::Value;
use super::{Env, EvalError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An element function: slot 0 is `input`, slot 1 is `state`.
    Function,
    /// A reference snippet.
    Snippet,
    /// The `global` block: `X_value` and `ctx[X]` assignments define dimensions.
    Global,
}

pub(crate) const INPUT_SLOT: usize = 0;
pub(crate) const STATE_SLOT: usize = 1;

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub stmts: Vec<Stmt>,
    pub slot_names: Vec<String>,
    pub span: Span,
    pub mode: Mode,
}

#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub kind: StmtKind,
}

#[derive(Debug, Clone)]
pub(crate) enum StmtKind {
    Assign(CTarget, CExpr),
    Return(CExpr),
    Expr(CExpr),
}

#[derive(Debug, Clone)]
pub(crate) enum Key {
    Const(Arc<str>),
    Dyn(Box<CExpr>),
}

#[derive(Debug, Clone)]
pub(crate) enum CTarget {
    Slot(usize),
    /// `X_value = ..` in a global block: defines dim X unless it already has a value.
    DimName {
        slot: usize,
        dim: String,
    },
    Tuple(Vec<CTarget>, Span),
    /// `x[..] = ..` on a local.
    Item {
        slot: usize,
        index: Vec<CIndex>,
        span: Span,
    },
    /// `ctx[X] = ..`
    Ctx(Key, Span),
}

#[derive(Debug, Clone)]
pub(crate) enum CIndex {
    Index(CExpr),
    Slice(Option<CExpr>, Option<CExpr>, Option<CExpr>),
    Ellipsis,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Attr {
    T,
    MT,
    Shape,
    Dtype,
    Ndim,
    Data,
    Values,
    Indices,
}

#[derive(Debug, Clone)]
pub(crate) struct CExpr {
    pub kind: EK,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum EK {
    Const(Value),
    Slot(usize),
    /// `ctx[X]` / `X_value` looked up at run time (global blocks, dynamic keys).
    CtxGet(Key),
    DataGet(Key),
    Attr(Box<CExpr>, Attr),
    Call {
        func: Func,
        recv: Option<Box<CExpr>>,
        args: Vec<CExpr>,
        kwargs: Vec<(&'static str, CExpr)>,
        /// In-place method (`x.scatter_(..)`) on a local: the result is written back.
        inplace: Option<usize>,
    },
    CallValue {
        func: Box<CExpr>,
        args: Vec<CExpr>,
        kwargs: Vec<(&'static str, CExpr)>,
    },
    Subscript(Box<CExpr>, Vec<CIndex>),
    Binary(BinOp, Box<CExpr>, Box<CExpr>),
    Unary(UnOp, Box<CExpr>),
    Compare(Box<CExpr>, Vec<(CmpOp, CExpr)>),
    IfElse(Box<CExpr>, Box<CExpr>, Box<CExpr>),
    List(Vec<CExpr>),
    Tuple(Vec<CExpr>),
    ListComp {
        elt: Box<CExpr>,
        target: CTarget,
        iter: Box<CExpr>,
    },
    FString(Vec<FPart>),
}

#[derive(Debug, Clone)]
pub(crate) enum FPart {
    Lit(Arc<str>),
    Expr(CExpr),
}

/// How deeply expressions may nest. Compilation and evaluation recurse once per level; real
/// element functions nest a handful of levels, and this bound keeps both far from the stack
/// limit of a 2 MiB thread even in debug builds (the parser alone admits 200).
pub(crate) const MAX_NEST: usize = 100;

struct Compiler<'e> {
    depth: usize,
    env: &'e Env,
    mode: Mode,
    slots: BTreeMap<String, usize>,
    slot_names: Vec<String>,
}

fn unsupported(what: String, span: Span) -> EvalError {
    EvalError::new(Code::E0602, what, span)
}

/// Levenshtein distance (names are short; a two-row table is plenty).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        // Case-insensitive: `nn.Gelu` means `nn.GELU`.
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

pub(crate) fn did_you_mean(e: EvalError, suggestion: Option<String>) -> EvalError {
    match suggestion {
        Some(s) => e.with_help(format!("did you mean `{s}`?")),
        None => e,
    }
}

pub(crate) fn compile(block: &Block, env: &Env, mode: Mode) -> Result<Compiled, EvalError> {
    let mut c = Compiler {
        depth: 0,
        env,
        mode,
        slots: BTreeMap::new(),
        slot_names: Vec::new(),
    };
    if mode == Mode::Function {
        c.slot("input");
        c.slot("state");
    }
    let mut stmts = Vec::with_capacity(block.stmts.len());
    for s in &block.stmts {
        let kind = match &s.kind {
            PyStmtKind::Assign { target, value } => {
                // The value is compiled first: in `x = x + 1` the right side reads the old x.
                let v = c.expr(value)?;
                let t = c.target(target)?;
                StmtKind::Assign(t, v)
            }
            PyStmtKind::Return(e) => StmtKind::Return(c.expr(e)?),
            PyStmtKind::Expr(e) => StmtKind::Expr(c.expr(e)?),
        };
        stmts.push(Stmt { kind });
    }
    Ok(Compiled {
        stmts,
        slot_names: c.slot_names,
        span: block.span,
        mode,
    })
}

/// `torch.float` and friends.
fn torch_const(name: &str) -> Option<Value> {
    Some(match name {
        "float" | "float32" | "float64" | "double" | "half" | "bfloat16" | "float16" => {
            Value::DType(DType::F32)
        }
        "long" | "int64" | "int" | "int32" | "int16" | "int8" | "uint8" => Value::DType(DType::I64),
        "bool" => Value::DType(DType::Bool),
        "inf" => Value::Float(f64::INFINITY),
        "nan" => Value::Float(f64::NAN),
        "pi" => Value::Float(std::f64::consts::PI),
        "e" => Value::Float(std::f64::consts::E),
        _ => return None,
    })
}

/// The dotted path of `a.b.c` if it is made of names only.
fn dotted(e: &Expr) -> Option<Vec<&str>> {
    match &e.kind {
        ExprKind::Name(n) => Some(vec![n.as_str()]),
        ExprKind::Attr { value, attr } => {
            let mut p = dotted(value)?;
            p.push(attr.name.as_str());
            Some(p)
        }
        _ => None,
    }
}

enum Path {
    Func(Func),
    Const(Value),
}

impl Compiler<'_> {
    fn slot(&mut self, name: &str) -> usize {
        if let Some(&s) = self.slots.get(name) {
            return s;
        }
        let s = self.slot_names.len();
        self.slots.insert(name.to_string(), s);
        self.slot_names.push(name.to_string());
        s
    }

    /// Whether `name` is bound by the block or the env (so it is not a module root).
    fn is_bound(&self, name: &str) -> bool {
        self.slots.contains_key(name) || self.env.names.contains_key(name)
    }

    /// Resolves `torch.x.y`, `math.x`, `torch.nn.X` paths.
    fn path(&self, p: &[&str], span: Span) -> Result<Option<Path>, EvalError> {
        let Some((&root, rest)) = p.split_first() else {
            return Ok(None);
        };
        if self.is_bound(root) {
            return Ok(None);
        }
        let full = p.join(".");
        let found = match (root, rest) {
            ("torch", [name]) => torch_const(name)
                .map(Path::Const)
                .or_else(|| Func::lookup(Ns::Torch, name).map(Path::Func)),
            ("torch", ["nn", name]) => Func::lookup(Ns::Nn, name).map(Path::Func),
            ("torch", ["nn", "functional", name]) | ("F", [name]) => {
                Func::lookup(Ns::Torch, name).map(Path::Func)
            }
            ("torch", ["ops", "aten", name]) | ("torch", ["ops", "aten", name, "default"]) => {
                Func::lookup(Ns::Aten, name).map(Path::Func)
            }
            ("math", [name]) => match *name {
                "pi" => Some(Path::Const(Value::Float(std::f64::consts::PI))),
                "e" => Some(Path::Const(Value::Float(std::f64::consts::E))),
                "inf" => Some(Path::Const(Value::Float(f64::INFINITY))),
                _ => Func::lookup(Ns::Math, name).map(Path::Func),
            },
            ("torch" | "math" | "F", _) => None,
            _ => return Ok(None),
        };
        match found {
            Some(p) => Ok(Some(p)),
            None => {
                let last = rest.last().copied().unwrap_or(root);
                let prefix = p[..p.len() - 1].join(".");
                let ns = match (root, rest) {
                    ("torch", ["nn", _]) => Ns::Nn,
                    ("math", _) => Ns::Math,
                    _ => Ns::Torch,
                };
                let hint = closest(last, Func::names(ns)).map(|c| format!("{prefix}.{c}"));
                Err(did_you_mean(
                    unsupported(format!("unsupported name `{full}`"), span),
                    hint,
                ))
            }
        }
    }

    fn name(&mut self, n: &str, span: Span) -> Result<CExpr, EvalError> {
        let kind = if let Some(&s) = self.slots.get(n) {
            EK::Slot(s)
        } else if n == "input_data" {
            EK::Const(Value::InputData)
        } else if n == "ctx" {
            EK::Const(Value::Ctx)
        } else if let Some(v) = self.env.names.get(n) {
            EK::Const(v.clone())
        } else if let Some(dim) = n.strip_suffix("_value").filter(|d| !d.is_empty()) {
            if self.mode == Mode::Global {
                EK::CtxGet(Key::Const(Arc::from(dim)))
            } else if let Some(&v) = self.env.dims.get(dim) {
                EK::Const(Value::Int(v))
            } else {
                return Err(unsupported(
                    format!("unknown name `{n}`: dimension {dim} has no value"),
                    span,
                ));
            }
        } else if let Some(f) = Func::lookup(Ns::Py, n) {
            EK::Const(Value::Func(f))
        } else if self.env.dims.contains_key(n) {
            // A bare dimension symbol is its own name, as a key: `f"{E}_value"` is "E_value"
            // (the benchmark's harness binds symbols that print as their names).
            EK::Const(Value::Str(Arc::from(n)))
        } else if n == "input" || n == "state" {
            return Err(unsupported(
                format!("`{n}` is only available inside element functions"),
                span,
            ));
        } else {
            let mut known: Vec<&str> = self.slots.keys().map(String::as_str).collect();
            known.extend(self.env.names.keys().map(String::as_str));
            known.extend(Func::names(Ns::Py));
            known.extend(["input", "state", "input_data", "ctx"]);
            let hint = closest(n, known).map(str::to_string);
            return Err(did_you_mean(
                unsupported(format!("unknown name `{n}`"), span),
                hint,
            ));
        };
        Ok(CExpr { kind, span })
    }

    fn key(&mut self, index: &[SliceItem], span: Span, what: &str) -> Result<Key, EvalError> {
        match index {
            [SliceItem::Index(e)] => match &e.kind {
                // `ctx[E]`: the bare name is the key.
                ExprKind::Name(n) if what == "ctx" => Ok(Key::Const(Arc::from(n.as_str()))),
                ExprKind::Str(s) => Ok(Key::Const(Arc::from(s.as_str()))),
                _ => Ok(Key::Dyn(Box::new(self.expr(e)?))),
            },
            _ => Err(EvalError::eval(format!("{what}[...] takes one key"), span)),
        }
    }

    fn target(&mut self, t: &Target) -> Result<CTarget, EvalError> {
        match t {
            Target::Name(id) => {
                let slot = self.slot(&id.name);
                if self.mode == Mode::Global
                    && let Some(dim) = id.name.strip_suffix("_value").filter(|d| !d.is_empty())
                {
                    return Ok(CTarget::DimName {
                        slot,
                        dim: dim.to_string(),
                    });
                }
                Ok(CTarget::Slot(slot))
            }
            Target::Tuple(items, span) => Ok(CTarget::Tuple(
                items
                    .iter()
                    .map(|t| self.target(t))
                    .collect::<Result<_, _>>()?,
                *span,
            )),
            Target::Subscript { value, index, span } => match &value.kind {
                ExprKind::Name(n) if n == "ctx" && !self.slots.contains_key("ctx") => {
                    Ok(CTarget::Ctx(self.key(index, *span, "ctx")?, *span))
                }
                ExprKind::Name(n) if self.slots.contains_key(n.as_str()) => {
                    let slot = self.slot(n);
                    let index = self.index(index)?;
                    Ok(CTarget::Item {
                        slot,
                        index,
                        span: *span,
                    })
                }
                _ => Err(unsupported(
                    "assignment to an item is supported only on local variables and ctx".into(),
                    *span,
                )),
            },
        }
    }

    fn index(&mut self, items: &[SliceItem]) -> Result<Vec<CIndex>, EvalError> {
        items
            .iter()
            .map(|it| {
                Ok(match it {
                    SliceItem::Index(e) => CIndex::Index(self.expr(e)?),
                    SliceItem::Slice { lo, hi, step, .. } => CIndex::Slice(
                        lo.as_ref().map(|e| self.expr(e)).transpose()?,
                        hi.as_ref().map(|e| self.expr(e)).transpose()?,
                        step.as_ref().map(|e| self.expr(e)).transpose()?,
                    ),
                    SliceItem::Ellipsis(_) => CIndex::Ellipsis,
                })
            })
            .collect()
    }

    fn kwargs(
        &mut self,
        kwargs: &[(stepforge_syntax::ast::Ident, Expr)],
    ) -> Result<Vec<(&'static str, CExpr)>, EvalError> {
        kwargs
            .iter()
            .map(|(k, v)| {
                let Some(key) = table::keyword(&k.name) else {
                    let hint =
                        closest(&k.name, table::KEYWORDS.iter().copied()).map(str::to_string);
                    return Err(did_you_mean(
                        unsupported(format!("unsupported keyword argument `{}`", k.name), k.span),
                        hint,
                    ));
                };
                Ok((key, self.expr(v)?))
            })
            .collect()
    }

    // A plain loop: iterator adapters add several frames per nesting level in debug builds.
    #[inline(never)]
    fn exprs(&mut self, es: &[Expr]) -> Result<Vec<CExpr>, EvalError> {
        let mut out = Vec::with_capacity(es.len());
        for e in es {
            out.push(self.expr(e)?);
        }
        Ok(out)
    }

    fn bx(&mut self, e: &Expr) -> Result<Box<CExpr>, EvalError> {
        Ok(Box::new(self.expr(e)?))
    }

    // Recursive once per nesting level: keep this frame small by moving every arm with
    // locals into a non-inlined method (see the interpreter's `expr`).
    fn expr(&mut self, e: &Expr) -> Result<CExpr, EvalError> {
        if self.depth >= MAX_NEST {
            return Err(EvalError::eval(
                format!("expression nests more than {MAX_NEST} levels deep"),
                e.span,
            ));
        }
        self.depth += 1;
        let r = self.expr_inner(e);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &Expr) -> Result<CExpr, EvalError> {
        let span = e.span;
        let kind = match &e.kind {
            ExprKind::Int(i) => EK::Const(Value::Int(*i)),
            ExprKind::Float(x, _) => EK::Const(Value::Float(*x)),
            ExprKind::Bool(b) => EK::Const(Value::Bool(*b)),
            ExprKind::None => EK::Const(Value::None),
            ExprKind::Str(s) => EK::Const(Value::Str(Arc::from(s.as_str()))),
            ExprKind::FString(parts) => self.fstring(parts)?,
            ExprKind::Name(n) => return self.name(n, span),
            ExprKind::Attr { value, attr } => return self.attr(e, value, attr),
            ExprKind::Call { func, args, kwargs } => return self.call(func, args, kwargs, span),
            ExprKind::Subscript { value, index } => self.subscript(value, index, span)?,
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs)?,
            ExprKind::Unary { op, operand } => self.unary(*op, operand)?,
            ExprKind::Compare { first, rest } => self.compare(first, rest)?,
            ExprKind::IfElse { cond, body, orelse } => self.if_else(cond, body, orelse)?,
            ExprKind::List(items) => EK::List(self.exprs(items)?),
            ExprKind::Tuple(items) => EK::Tuple(self.exprs(items)?),
            ExprKind::ListComp { elt, target, iter } => self.list_comp(elt, target, iter)?,
        };
        Ok(CExpr { kind, span })
    }

    #[inline(never)]
    fn fstring(&mut self, parts: &[FStringPart]) -> Result<EK, EvalError> {
        let parts = parts
            .iter()
            .map(|p| {
                Ok(match p {
                    FStringPart::Lit(s) => FPart::Lit(Arc::from(s.as_str())),
                    FStringPart::Expr(e) => FPart::Expr(self.expr(e)?),
                })
            })
            .collect::<Result<_, EvalError>>()?;
        Ok(EK::FString(parts))
    }

    #[inline(never)]
    fn attr(
        &mut self,
        e: &Expr,
        value: &Expr,
        attr: &stepforge_syntax::ast::Ident,
    ) -> Result<CExpr, EvalError> {
        let span = e.span;
        if let Some(p) = dotted(e) {
            match self.path(&p, span)? {
                Some(Path::Const(v)) => {
                    return Ok(CExpr {
                        kind: EK::Const(v),
                        span,
                    });
                }
                Some(Path::Func(f)) => {
                    return Ok(CExpr {
                        kind: EK::Const(Value::Func(f)),
                        span,
                    });
                }
                None => {}
            }
        }
        let a = match attr.name.as_str() {
            "T" => Attr::T,
            "mT" => Attr::MT,
            "shape" => Attr::Shape,
            "dtype" => Attr::Dtype,
            "ndim" => Attr::Ndim,
            "data" => Attr::Data,
            "values" => Attr::Values,
            "indices" => Attr::Indices,
            other => {
                let msg = if Func::lookup(Ns::Method, other.trim_end_matches('_')).is_some() {
                    format!("method `.{other}` must be called: `.{other}(...)`")
                } else {
                    format!("unsupported attribute `.{other}`")
                };
                const ATTRS: &[&str] = &[
                    "T", "mT", "shape", "dtype", "ndim", "data", "values", "indices",
                ];
                let hint = closest(other, ATTRS.iter().copied()).map(|c| format!(".{c}"));
                return Err(did_you_mean(unsupported(msg, attr.span), hint));
            }
        };
        Ok(CExpr {
            kind: EK::Attr(self.bx(value)?, a),
            span,
        })
    }

    #[inline(never)]
    fn subscript(
        &mut self,
        value: &Expr,
        index: &[SliceItem],
        span: Span,
    ) -> Result<EK, EvalError> {
        Ok(match &value.kind {
            ExprKind::Name(n) if n == "ctx" && !self.is_bound("ctx") => {
                EK::CtxGet(self.key(index, span, "ctx")?)
            }
            ExprKind::Name(n) if n == "input_data" && !self.is_bound("input_data") => {
                EK::DataGet(self.key(index, span, "input_data")?)
            }
            _ => EK::Subscript(self.bx(value)?, self.index(index)?),
        })
    }

    #[inline(never)]
    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr) -> Result<EK, EvalError> {
        Ok(EK::Binary(op, self.bx(lhs)?, self.bx(rhs)?))
    }

    #[inline(never)]
    fn unary(&mut self, op: UnOp, operand: &Expr) -> Result<EK, EvalError> {
        Ok(EK::Unary(op, self.bx(operand)?))
    }

    #[inline(never)]
    fn compare(&mut self, first: &Expr, rest: &[(CmpOp, Expr)]) -> Result<EK, EvalError> {
        Ok(EK::Compare(
            self.bx(first)?,
            rest.iter()
                .map(|(op, e)| Ok((*op, self.expr(e)?)))
                .collect::<Result<_, EvalError>>()?,
        ))
    }

    #[inline(never)]
    fn if_else(&mut self, cond: &Expr, body: &Expr, orelse: &Expr) -> Result<EK, EvalError> {
        Ok(EK::IfElse(self.bx(cond)?, self.bx(body)?, self.bx(orelse)?))
    }

    #[inline(never)]
    fn list_comp(&mut self, elt: &Expr, target: &Target, iter: &Expr) -> Result<EK, EvalError> {
        let iter = self.bx(iter)?;
        let target = self.target(target)?;
        let elt = self.bx(elt)?;
        Ok(EK::ListComp { elt, target, iter })
    }

    #[inline(never)]
    fn call(
        &mut self,
        func: &Expr,
        args: &[Expr],
        kwargs: &[(stepforge_syntax::ast::Ident, Expr)],
        span: Span,
    ) -> Result<CExpr, EvalError> {
        // A torch function or builtin named by a path.
        if let Some(p) = dotted(func) {
            let direct = match self.path(&p, func.span)? {
                Some(Path::Func(f)) => Some(f),
                Some(Path::Const(_)) => {
                    return Err(EvalError::eval(
                        format!("`{}` is not callable", p.join(".")),
                        span,
                    ));
                }
                None => match p.as_slice() {
                    [n] if !self.is_bound(n) => Func::lookup(Ns::Py, n),
                    _ => None,
                },
            };
            if let Some(f) = direct {
                return Ok(CExpr {
                    kind: EK::Call {
                        func: f,
                        recv: None,
                        args: self.exprs(args)?,
                        kwargs: self.kwargs(kwargs)?,
                        inplace: None,
                    },
                    span,
                });
            }
        }
        // A method call `recv.name(..)`.
        if let ExprKind::Attr { value, attr } = &func.kind {
            let name = attr.name.as_str();
            let (base, inplace) = match name.strip_suffix('_') {
                Some(b) if !b.is_empty() && !b.ends_with('_') => (b, true),
                _ => (name, false),
            };
            let Some(f) = Func::lookup(Ns::Method, base) else {
                let hint = closest(name, Func::names(Ns::Method)).map(|c| format!(".{c}()"));
                return Err(did_you_mean(
                    unsupported(format!("unsupported method `.{name}()`"), attr.span),
                    hint,
                ));
            };
            let recv = self.bx(value)?;
            let inplace = match (&recv.kind, inplace) {
                (EK::Slot(s), true) => Some(*s),
                _ => None,
            };
            return Ok(CExpr {
                kind: EK::Call {
                    func: f,
                    recv: Some(recv),
                    args: self.exprs(args)?,
                    kwargs: self.kwargs(kwargs)?,
                    inplace,
                },
                span,
            });
        }
        Ok(CExpr {
            kind: EK::CallValue {
                func: self.bx(func)?,
                args: self.exprs(args)?,
                kwargs: self.kwargs(kwargs)?,
            },
            span,
        })
    }
}
