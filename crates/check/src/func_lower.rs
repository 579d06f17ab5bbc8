//! Lowering of element-function bodies, the `global` block and reference snippets from the
//! AST to the element-function IR ([`stepforge_ir::func`]), once per task.
//!
//! Locals become frame slots, `torch.*` paths and method names become [`Builtin`]s, keyword
//! names become `&'static str`s, names the `global` block binds become [`Expr::Global`] and
//! `X_value` becomes [`Expr::DimValue`]. Everything the evaluator does not support is an
//! E0602 here, with a did-you-mean, so `stepforge check` reports it before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use stepforge_ir::builtin::{self as table, Builtin, Ns};
use stepforge_ir::func::{
    Attr, BinOp, Body, CmpOp, Const, DType, Expr as IrExpr, ExprId, FPart, Index, Key, Mode,
    References, Slot, Stmt, Target as IrTarget, TaskFunctions, UnOp,
};
use stepforge_syntax::Diagnostic;
use stepforge_syntax::Span;
use stepforge_syntax::ast::{
    self, Block, Expr, ExprKind, FStringPart, PyStmtKind, SliceItem, Target,
};
use stepforge_syntax::codes::Code;

/// A lowering error: what, where, and a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError {
    pub code: Code,
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl LowerError {
    fn new(code: Code, message: impl Into<String>, span: Span) -> LowerError {
        LowerError {
            code,
            message: message.into(),
            span,
            help: None,
        }
    }

    fn eval(message: impl Into<String>, span: Span) -> LowerError {
        LowerError::new(Code::E0601, message, span)
    }

    fn with_help(mut self, help: impl Into<String>) -> LowerError {
        self.help = Some(help.into());
        self
    }

    /// The diagnostic, located at the error's span.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let d = Diagnostic::new(self.code, self.message.clone()).at(self.span);
        match &self.help {
            Some(h) => d.help(h.clone()),
            None => d,
        }
    }
}

/// What a body may refer to besides its own locals.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Names bound by the task's `global` block.
    pub globals: BTreeSet<String>,
    /// Dimension names (so `X_value` and bare `X` resolve).
    pub dims: BTreeSet<String>,
}

/// How deeply expressions may nest. Lowering and evaluation recurse once per level; real
/// element functions nest a handful of levels, and this bound keeps both far from the stack
/// limit of a 2 MiB thread even in debug builds (the parser alone admits 200).
pub const MAX_NEST: usize = 100;

fn bin_op(op: ast::BinOp) -> BinOp {
    match op {
        ast::BinOp::Add => BinOp::Add,
        ast::BinOp::Sub => BinOp::Sub,
        ast::BinOp::Mul => BinOp::Mul,
        ast::BinOp::Div => BinOp::Div,
        ast::BinOp::FloorDiv => BinOp::FloorDiv,
        ast::BinOp::Mod => BinOp::Mod,
        ast::BinOp::Pow => BinOp::Pow,
        ast::BinOp::MatMul => BinOp::MatMul,
    }
}

fn un_op(op: ast::UnOp) -> UnOp {
    match op {
        ast::UnOp::Neg => UnOp::Neg,
        ast::UnOp::Pos => UnOp::Pos,
        ast::UnOp::Not => UnOp::Not,
    }
}

fn cmp_op(op: ast::CmpOp) -> CmpOp {
    match op {
        ast::CmpOp::Lt => CmpOp::Lt,
        ast::CmpOp::Le => CmpOp::Le,
        ast::CmpOp::Gt => CmpOp::Gt,
        ast::CmpOp::Ge => CmpOp::Ge,
        ast::CmpOp::Eq => CmpOp::Eq,
        ast::CmpOp::Ne => CmpOp::Ne,
    }
}

pub use stepforge_diag::suggest::closest;

pub(crate) fn did_you_mean(e: LowerError, suggestion: Option<String>) -> LowerError {
    match suggestion {
        Some(s) => e.with_help(format!("did you mean `{s}`?")),
        None => e,
    }
}

struct Lowerer<'s> {
    depth: usize,
    scope: &'s Scope,
    body: Body,
    slots: BTreeMap<String, Slot>,
}

fn unsupported(what: String, span: Span) -> LowerError {
    LowerError::new(Code::E0602, what, span)
}

/// Lowers one block (an element-function body or the `global` block).
pub fn lower_block(block: &Block, scope: &Scope, mode: Mode) -> Result<Body, LowerError> {
    let mut c = Lowerer::new(scope, mode, block.span);
    c.block(block)?;
    Ok(c.body)
}

/// The statements of one snippet in a shared body.
pub type StmtRange = std::ops::Range<usize>;

/// Lowers reference snippets into one body sharing one scope, in order: a later snippet sees
/// the names an earlier one bound. Returns the body and each snippet's statement range, or
/// the first error with the index of the snippet it is in.
pub fn lower_snippets(
    blocks: &[&Block],
    scope: &Scope,
    span: Span,
) -> Result<(Body, Vec<StmtRange>), (usize, LowerError)> {
    let mut c = Lowerer::new(scope, Mode::Snippet, span);
    let mut parts = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let start = c.body.stmts.len();
        c.block(b).map_err(|e| (i, e))?;
        parts.push(start..c.body.stmts.len());
    }
    Ok((c.body, parts))
}

impl<'s> Lowerer<'s> {
    fn new(scope: &'s Scope, mode: Mode, span: Span) -> Lowerer<'s> {
        let mut c = Lowerer {
            depth: 0,
            scope,
            body: Body::new(mode, span),
            slots: BTreeMap::new(),
        };
        if mode == Mode::Function {
            c.slot("input");
            c.slot("state");
        }
        c
    }

    fn block(&mut self, block: &Block) -> Result<(), LowerError> {
        for s in &block.stmts {
            let stmt = match &s.kind {
                PyStmtKind::Assign { target, value } => {
                    // The value is lowered first: in `x = x + 1` the right side reads the old x.
                    let v = self.expr(value)?;
                    let t = self.target(target)?;
                    Stmt::Assign(t, v)
                }
                PyStmtKind::Return(e) => Stmt::Return(self.expr(e)?),
                PyStmtKind::Expr(e) => Stmt::Expr(self.expr(e)?),
            };
            self.body.stmts.push(stmt);
        }
        Ok(())
    }

    fn mode(&self) -> Mode {
        self.body.mode
    }

    fn node(&mut self, e: IrExpr, span: Span) -> ExprId {
        self.body.push(e, span)
    }
}

/// `torch.float` and friends.
fn torch_const(name: &str) -> Option<Const> {
    Some(match name {
        "float" | "float32" | "float64" | "double" | "half" | "bfloat16" | "float16" => {
            Const::DType(DType::F32)
        }
        "long" | "int64" | "int" | "int32" | "int16" | "int8" | "uint8" => Const::DType(DType::I64),
        "bool" => Const::DType(DType::Bool),
        "inf" => Const::Float(f64::INFINITY),
        "nan" => Const::Float(f64::NAN),
        "pi" => Const::Float(std::f64::consts::PI),
        "e" => Const::Float(std::f64::consts::E),
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
    Func(Builtin),
    Const(Const),
}

impl Lowerer<'_> {
    fn slot(&mut self, name: &str) -> Slot {
        if let Some(&s) = self.slots.get(name) {
            return s;
        }
        let s = Slot::try_from(self.body.slot_names.len()).unwrap_or(Slot::MAX);
        self.slots.insert(name.to_string(), s);
        self.body.slot_names.push(name.to_string());
        s
    }

    /// Whether `name` is bound by the block or the env (so it is not a module root).
    fn is_bound(&self, name: &str) -> bool {
        self.slots.contains_key(name) || self.scope.globals.contains(name)
    }

    /// Resolves `torch.x.y`, `math.x`, `torch.nn.X` paths.
    fn path(&self, p: &[&str], span: Span) -> Result<Option<Path>, LowerError> {
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
                .or_else(|| Builtin::lookup(Ns::Torch, name).map(Path::Func)),
            ("torch", ["nn", name]) => Builtin::lookup(Ns::Nn, name).map(Path::Func),
            ("torch", ["nn", "functional", name]) | ("F", [name]) => {
                Builtin::lookup(Ns::Torch, name).map(Path::Func)
            }
            ("torch", ["ops", "aten", name]) | ("torch", ["ops", "aten", name, "default"]) => {
                Builtin::lookup(Ns::Aten, name).map(Path::Func)
            }
            ("math", [name]) => match *name {
                "pi" => Some(Path::Const(Const::Float(std::f64::consts::PI))),
                "e" => Some(Path::Const(Const::Float(std::f64::consts::E))),
                "inf" => Some(Path::Const(Const::Float(f64::INFINITY))),
                _ => Builtin::lookup(Ns::Math, name).map(Path::Func),
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
                let hint = closest(last, Builtin::names(ns)).map(|c| format!("{prefix}.{c}"));
                Err(did_you_mean(
                    unsupported(format!("unsupported name `{full}`"), span),
                    hint,
                ))
            }
        }
    }

    fn name(&mut self, n: &str, span: Span) -> Result<ExprId, LowerError> {
        let kind = if let Some(&s) = self.slots.get(n) {
            IrExpr::Slot(s)
        } else if n == "input_data" {
            IrExpr::Const(Const::InputData)
        } else if n == "ctx" {
            IrExpr::Const(Const::Ctx)
        } else if self.scope.globals.contains(n) {
            IrExpr::Global(Arc::from(n))
        } else if let Some(dim) = n.strip_suffix("_value").filter(|d| !d.is_empty()) {
            if self.mode() == Mode::Global {
                IrExpr::CtxGet(Key::Const(Arc::from(dim)))
            } else if self.scope.dims.contains(dim) {
                IrExpr::DimValue(Arc::from(dim))
            } else {
                return Err(unsupported(
                    format!("unknown name `{n}`: dimension {dim} has no value"),
                    span,
                ));
            }
        } else if let Some(f) = Builtin::lookup(Ns::Py, n) {
            IrExpr::Const(Const::Builtin(f))
        } else if self.scope.dims.contains(n) {
            // A bare dimension symbol is its own name, as a key: `f"{E}_value"` is "E_value"
            // (the benchmark's harness binds symbols that print as their names).
            IrExpr::Const(Const::Str(Arc::from(n)))
        } else if n == "input" || n == "state" {
            return Err(unsupported(
                format!("`{n}` is only available inside element functions"),
                span,
            ));
        } else {
            let mut known: Vec<&str> = self.slots.keys().map(String::as_str).collect();
            known.extend(self.scope.globals.iter().map(String::as_str));
            known.extend(Builtin::names(Ns::Py));
            known.extend(["input", "state", "input_data", "ctx"]);
            let hint = closest(n, known).map(str::to_string);
            return Err(did_you_mean(
                unsupported(format!("unknown name `{n}`"), span),
                hint,
            ));
        };
        Ok(self.node(kind, span))
    }

    fn key(&mut self, index: &[SliceItem], span: Span, what: &str) -> Result<Key, LowerError> {
        match index {
            [SliceItem::Index(e)] => match &e.kind {
                // `ctx[E]`: the bare name is the key.
                ExprKind::Name(n) if what == "ctx" => Ok(Key::Const(Arc::from(n.as_str()))),
                ExprKind::Str(s) => Ok(Key::Const(Arc::from(s.as_str()))),
                _ => Ok(Key::Dyn(self.expr(e)?)),
            },
            _ => Err(LowerError::eval(format!("{what}[...] takes one key"), span)),
        }
    }

    fn target(&mut self, t: &Target) -> Result<IrTarget, LowerError> {
        match t {
            Target::Name(id) => {
                let slot = self.slot(&id.name);
                if self.mode() == Mode::Global
                    && let Some(dim) = id.name.strip_suffix("_value").filter(|d| !d.is_empty())
                {
                    return Ok(IrTarget::DimName {
                        slot,
                        dim: Arc::from(dim),
                    });
                }
                Ok(IrTarget::Slot(slot))
            }
            Target::Tuple(items, span) => Ok(IrTarget::Tuple(
                items
                    .iter()
                    .map(|t| self.target(t))
                    .collect::<Result<_, _>>()?,
                *span,
            )),
            Target::Subscript { value, index, span } => match &value.kind {
                ExprKind::Name(n) if n == "ctx" && !self.slots.contains_key("ctx") => {
                    Ok(IrTarget::Ctx(self.key(index, *span, "ctx")?, *span))
                }
                ExprKind::Name(n) if self.slots.contains_key(n.as_str()) => {
                    let slot = self.slot(n);
                    let index = self.index(index)?;
                    Ok(IrTarget::Item {
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

    fn index(&mut self, items: &[SliceItem]) -> Result<Vec<Index>, LowerError> {
        items
            .iter()
            .map(|it| {
                Ok(match it {
                    SliceItem::Index(e) => Index::Index(self.expr(e)?),
                    SliceItem::Slice { lo, hi, step, .. } => Index::Slice(
                        lo.as_ref().map(|e| self.expr(e)).transpose()?,
                        hi.as_ref().map(|e| self.expr(e)).transpose()?,
                        step.as_ref().map(|e| self.expr(e)).transpose()?,
                    ),
                    SliceItem::Ellipsis(_) => Index::Ellipsis,
                })
            })
            .collect()
    }

    fn kwargs(
        &mut self,
        kwargs: &[(ast::Ident, Expr)],
    ) -> Result<Vec<(&'static str, ExprId)>, LowerError> {
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
    fn exprs(&mut self, es: &[Expr]) -> Result<Vec<ExprId>, LowerError> {
        let mut out = Vec::with_capacity(es.len());
        for e in es {
            out.push(self.expr(e)?);
        }
        Ok(out)
    }

    fn bx(&mut self, e: &Expr) -> Result<ExprId, LowerError> {
        self.expr(e)
    }

    // Recursive once per nesting level: keep this frame small by moving every arm with
    // locals into a non-inlined method (see the interpreter's `expr`).
    fn expr(&mut self, e: &Expr) -> Result<ExprId, LowerError> {
        if self.depth >= MAX_NEST {
            return Err(LowerError::eval(
                format!("expression nests more than {MAX_NEST} levels deep"),
                e.span,
            ));
        }
        self.depth += 1;
        let r = self.expr_inner(e);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &Expr) -> Result<ExprId, LowerError> {
        let span = e.span;
        let kind = match &e.kind {
            ExprKind::Int(i) => IrExpr::Const(Const::Int(*i)),
            ExprKind::Float(x, _) => IrExpr::Const(Const::Float(*x)),
            ExprKind::Bool(b) => IrExpr::Const(Const::Bool(*b)),
            ExprKind::None => IrExpr::Const(Const::None),
            ExprKind::Str(s) => IrExpr::Const(Const::Str(Arc::from(s.as_str()))),
            ExprKind::FString(parts) => self.fstring(parts)?,
            ExprKind::Name(n) => return self.name(n, span),
            ExprKind::Attr { value, attr } => return self.attr(e, value, attr),
            ExprKind::Call { func, args, kwargs } => return self.call(func, args, kwargs, span),
            ExprKind::Subscript { value, index } => self.subscript(value, index, span)?,
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs)?,
            ExprKind::Unary { op, operand } => self.unary(*op, operand)?,
            ExprKind::Compare { first, rest } => self.compare(first, rest)?,
            ExprKind::IfElse { cond, body, orelse } => self.if_else(cond, body, orelse)?,
            ExprKind::List(items) => IrExpr::List(self.exprs(items)?),
            ExprKind::Tuple(items) => IrExpr::Tuple(self.exprs(items)?),
            ExprKind::ListComp { elt, target, iter } => self.list_comp(elt, target, iter)?,
        };
        Ok(self.node(kind, span))
    }

    #[inline(never)]
    fn fstring(&mut self, parts: &[FStringPart]) -> Result<IrExpr, LowerError> {
        let parts = parts
            .iter()
            .map(|p| {
                Ok(match p {
                    FStringPart::Lit(s) => FPart::Lit(Arc::from(s.as_str())),
                    FStringPart::Expr(e) => FPart::Expr(self.expr(e)?),
                })
            })
            .collect::<Result<_, LowerError>>()?;
        Ok(IrExpr::FString(parts))
    }

    #[inline(never)]
    fn attr(&mut self, e: &Expr, value: &Expr, attr: &ast::Ident) -> Result<ExprId, LowerError> {
        let span = e.span;
        if let Some(p) = dotted(e) {
            match self.path(&p, span)? {
                Some(Path::Const(v)) => {
                    let kind = IrExpr::Const(v);
                    return Ok(self.node(kind, span));
                }
                Some(Path::Func(f)) => {
                    let kind = IrExpr::Const(Const::Builtin(f));
                    return Ok(self.node(kind, span));
                }
                None => {}
            }
        }
        let a = match Attr::from_name(attr.name.as_str()) {
            Some(a) => a,
            None => {
                let other = attr.name.as_str();
                let msg = if Builtin::lookup(Ns::Method, other.trim_end_matches('_')).is_some() {
                    format!("method `.{other}` must be called: `.{other}(...)`")
                } else {
                    format!("unsupported attribute `.{other}`")
                };
                let hint = closest(other, Attr::NAMES.iter().copied()).map(|c| format!(".{c}"));
                return Err(did_you_mean(unsupported(msg, attr.span), hint));
            }
        };
        let kind = IrExpr::Attr(self.bx(value)?, a);
        Ok(self.node(kind, span))
    }

    #[inline(never)]
    fn subscript(
        &mut self,
        value: &Expr,
        index: &[SliceItem],
        span: Span,
    ) -> Result<IrExpr, LowerError> {
        Ok(match &value.kind {
            ExprKind::Name(n) if n == "ctx" && !self.is_bound("ctx") => {
                IrExpr::CtxGet(self.key(index, span, "ctx")?)
            }
            ExprKind::Name(n) if n == "input_data" && !self.is_bound("input_data") => {
                IrExpr::DataGet(self.key(index, span, "input_data")?)
            }
            _ => IrExpr::Subscript(self.bx(value)?, self.index(index)?),
        })
    }

    #[inline(never)]
    fn binary(&mut self, op: ast::BinOp, lhs: &Expr, rhs: &Expr) -> Result<IrExpr, LowerError> {
        Ok(IrExpr::Binary(bin_op(op), self.bx(lhs)?, self.bx(rhs)?))
    }

    #[inline(never)]
    fn unary(&mut self, op: ast::UnOp, operand: &Expr) -> Result<IrExpr, LowerError> {
        Ok(IrExpr::Unary(un_op(op), self.bx(operand)?))
    }

    #[inline(never)]
    fn compare(&mut self, first: &Expr, rest: &[(ast::CmpOp, Expr)]) -> Result<IrExpr, LowerError> {
        Ok(IrExpr::Compare(
            self.bx(first)?,
            rest.iter()
                .map(|(op, e)| Ok((cmp_op(*op), self.expr(e)?)))
                .collect::<Result<_, LowerError>>()?,
        ))
    }

    #[inline(never)]
    fn if_else(&mut self, cond: &Expr, body: &Expr, orelse: &Expr) -> Result<IrExpr, LowerError> {
        Ok(IrExpr::IfElse {
            cond: self.bx(cond)?,
            then: self.bx(body)?,
            orelse: self.bx(orelse)?,
        })
    }

    #[inline(never)]
    fn list_comp(
        &mut self,
        elt: &Expr,
        target: &Target,
        iter: &Expr,
    ) -> Result<IrExpr, LowerError> {
        let iter = self.bx(iter)?;
        let target = self.target(target)?;
        let elt = self.bx(elt)?;
        Ok(IrExpr::ListComp { elt, target, iter })
    }

    #[inline(never)]
    fn call(
        &mut self,
        func: &Expr,
        args: &[Expr],
        kwargs: &[(ast::Ident, Expr)],
        span: Span,
    ) -> Result<ExprId, LowerError> {
        // A torch function or builtin named by a path.
        if let Some(p) = dotted(func) {
            let direct = match self.path(&p, func.span)? {
                Some(Path::Func(f)) => Some(f),
                Some(Path::Const(_)) => {
                    return Err(LowerError::eval(
                        format!("`{}` is not callable", p.join(".")),
                        span,
                    ));
                }
                None => match p.as_slice() {
                    [n] if !self.is_bound(n) => Builtin::lookup(Ns::Py, n),
                    _ => None,
                },
            };
            if let Some(f) = direct {
                let kind = IrExpr::Call {
                    func: f,
                    recv: None,
                    args: self.exprs(args)?,
                    kwargs: self.kwargs(kwargs)?,
                    inplace: None,
                };
                return Ok(self.node(kind, span));
            }
        }
        // A method call `recv.name(..)`.
        if let ExprKind::Attr { value, attr } = &func.kind {
            let name = attr.name.as_str();
            let (base, inplace) = match name.strip_suffix('_') {
                Some(b) if !b.is_empty() && !b.ends_with('_') => (b, true),
                _ => (name, false),
            };
            let Some(f) = Builtin::lookup(Ns::Method, base) else {
                let hint = closest(name, Builtin::names(Ns::Method)).map(|c| format!(".{c}()"));
                return Err(did_you_mean(
                    unsupported(format!("unsupported method `.{name}()`"), attr.span),
                    hint,
                ));
            };
            let recv = self.bx(value)?;
            let inplace = match (self.body.expr(recv), inplace) {
                (IrExpr::Slot(s), true) => Some(*s),
                _ => None,
            };
            let kind = IrExpr::Call {
                func: f,
                recv: Some(recv),
                args: self.exprs(args)?,
                kwargs: self.kwargs(kwargs)?,
                inplace,
            };
            return Ok(self.node(kind, span));
        }
        let kind = IrExpr::CallValue {
            func: self.bx(func)?,
            args: self.exprs(args)?,
            kwargs: self.kwargs(kwargs)?,
        };
        Ok(self.node(kind, span))
    }
}

/// The dims a `global` body defines (`X_value = ..`, `ctx[X] = ..`).
fn defined_dims(body: &Body, out: &mut BTreeSet<String>) {
    fn walk(t: &IrTarget, out: &mut BTreeSet<String>) {
        match t {
            IrTarget::DimName { dim, .. } => {
                out.insert(dim.to_string());
            }
            IrTarget::Ctx(Key::Const(k), _) => {
                out.insert(k.to_string());
            }
            IrTarget::Tuple(items, _) => items.iter().for_each(|t| walk(t, out)),
            _ => {}
        }
    }
    for s in &body.stmts {
        if let Stmt::Assign(t, _) = s {
            walk(t, out);
        }
    }
}

/// Lowers everything of `task` that runs inside element functions, once: the `global` block,
/// every fn body (indexed like `task.fns`) and the reference snippets (one shared scope, in
/// output order). Errors are E0602/E0601 diagnostics located in the task file; the parts that
/// failed are `None` in the result.
pub fn lower_task_functions(task: &stepforge_task::Task) -> (TaskFunctions, Vec<Diagnostic>) {
    let mut scope = Scope {
        globals: BTreeSet::new(),
        dims: stepforge_task::used_symbols(task),
    };
    if let Ok(values) = stepforge_task::dim_values(task, &[]) {
        scope.dims.extend(values.into_keys());
    }
    scope.dims.extend(
        stepforge_task::DEFAULT_DIMS
            .iter()
            .map(|(k, _)| k.to_string()),
    );
    let global = match &task.global {
        None => Ok(None),
        Some(g) => lower_block(g, &scope, Mode::Global).map(Some).map_err(|e| {
            let d = e.to_diagnostic().note("in the task's `global` block");
            Box::new(d.in_task())
        }),
    };
    if let Ok(Some(g)) = &global {
        scope.globals.extend(g.slot_names.iter().cloned());
        defined_dims(g, &mut scope.dims);
    }
    let fns: Vec<_> = task
        .fns
        .iter()
        .map(|f| {
            lower_block(&f.body, &scope, Mode::Function)
                .map(Arc::new)
                .map_err(|e| {
                    let note = format!("in element function `{}`", f.func_name.name);
                    Box::new(e.to_diagnostic().note(note).in_task())
                })
        })
        .collect();
    let references = lower_references(task, &scope);
    let functions = TaskFunctions {
        global,
        fns,
        references,
    };
    let diags = functions.errors().cloned().collect();
    (functions, diags)
}

/// The reference snippets of every output field, in one shared scope.
fn lower_references(
    task: &stepforge_task::Task,
    scope: &Scope,
) -> Result<References, Box<Diagnostic>> {
    let mut blocks = Vec::new();
    let mut owner = Vec::new();
    for o in &task.outputs {
        for (field, b) in o.transforms.iter().enumerate() {
            blocks.push(b);
            owner.push((o.name.name.as_str(), field, o.transforms.len()));
        }
    }
    let span = blocks.first().map(|b| b.span).unwrap_or_default();
    match lower_snippets(&blocks, scope, span) {
        Ok((body, ranges)) => Ok(References {
            body,
            parts: ranges.into_iter().map(Some).collect(),
        }),
        Err((i, e)) => {
            let (name, field, n) = owner.get(i).copied().unwrap_or(("?", 0, 1));
            let which = if n > 1 {
                format!("field {field} of output `{name}`")
            } else {
                format!("output `{name}`")
            };
            let mut d = e.to_diagnostic();
            d.message = format!("{} (in the reference of {which})", d.message);
            Err(Box::new(d.in_task()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn scope() -> Scope {
        Scope {
            globals: ["act".to_string()].into_iter().collect(),
            dims: ["D".to_string()].into_iter().collect(),
        }
    }

    fn lower(src: &str) -> Result<Body, LowerError> {
        let block = stepforge_syntax::parse_block(src).value.expect("parses");
        lower_block(&block, &scope(), Mode::Function)
    }

    #[test]
    fn names_resolve_to_slots_builtins_globals_and_dims() {
        let b = lower("x = input[0] * D_value\ny = act(x).sum(dim=-1)\nreturn [torch.exp(y)]\n")
            .unwrap();
        assert_eq!(
            b.dump(),
            "x#2 = (input#0[0] * dim D)\n\
             y#3 = (global act)(x#2).<sum>(dim=(-1))\n\
             return [<exp>(y#3)]\n"
        );
    }

    #[test]
    fn unknown_names_are_e0602_with_a_suggestion() {
        let e = lower("return [torch.sigmoud(input[0])]").unwrap_err();
        assert_eq!(e.code, Code::E0602);
        assert_eq!(e.message, "unsupported name `torch.sigmoud`");
        assert_eq!(e.help.as_deref(), Some("did you mean `torch.sigmoid`?"));
        let e = lower("return [input[0].sume()]").unwrap_err();
        assert_eq!(e.message, "unsupported method `.sume()`");
        let e = lower("return [input[0].sum(dimm=0)]").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `dim`?"));
        let e = lower("return [actt(input[0])]").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `act`?"));
    }

    #[test]
    fn snippets_share_one_scope_in_order() {
        let a = stepforge_syntax::parse_snippet("affinity = input_data['X']\naffinity")
            .value
            .unwrap();
        let b = stepforge_syntax::parse_snippet("affinity").value.unwrap();
        let (body, parts) = lower_snippets(&[&a, &b], &scope(), Span::default()).unwrap();
        assert_eq!(parts, vec![0..2, 2..3]);
        assert_eq!(
            body.dump(),
            "affinity#0 = input_data[\"X\"]\naffinity#0\naffinity#0\n"
        );
        // In the other order the name is not bound yet.
        let e = lower_snippets(&[&b, &a], &scope(), Span::default()).unwrap_err();
        assert_eq!(e.0, 0);
        assert_eq!(e.1.code, Code::E0602);
    }
}
