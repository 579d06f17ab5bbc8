//! The element-function IR: one body per element function, the task's `global` block and its
//! reference snippets, lowered once per task by `stepforge-check` and run by every back end
//! (the interpreter today, the JIT later).
//!
//! A [`Body`] is an arena: expressions live in one `Vec` and refer to their operands by
//! [`ExprId`] handles, with each node's span stored beside it. Names are resolved at lowering
//! time: locals become frame slots, builtins become [`Builtin`]s, keyword names become
//! `&'static str`s from [`crate::builtin::KEYWORDS`]. What depends on a run — names bound by
//! the `global` block ([`Expr::Global`]) and dimension values ([`Expr::DimValue`]) — is a node
//! the back end resolves when it prepares a body for a dimension binding, so one lowering
//! serves every binding. This module never depends on the AST.

use std::fmt::Write as _;
use std::sync::Arc;

use stepforge_diag::{Diagnostic, Span};

use crate::builtin::Builtin;

/// A handle to an expression of one [`Body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExprId(pub u32);

/// A frame slot (a local variable) of one [`Body`].
pub type Slot = u32;

/// Frame slot of `input` in an element function.
pub const INPUT_SLOT: Slot = 0;
/// Frame slot of `state` in an element function.
pub const STATE_SLOT: Slot = 1;

/// Arithmetic operators (`@` is `MatMul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    MatMul,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::MatMul => "@",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Pos,
    Not,
}

impl UnOp {
    pub fn as_str(self) -> &'static str {
        match self {
            UnOp::Neg => "-",
            UnOp::Pos => "+",
            UnOp::Not => "not ",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// The dtypes a program can name (`torch.float`, `torch.long`, `torch.bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I64,
    Bool,
}

/// A constant known at lowering time.
#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    DType(DType),
    /// A builtin used as a value (`act = torch.sigmoid`).
    Builtin(Builtin),
    /// The `input_data` map.
    InputData,
    /// The `ctx` dimension map.
    Ctx,
}

/// A `ctx[..]` / `input_data[..]` key.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Const(Arc<str>),
    Dyn(ExprId),
}

/// Tensor attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attr {
    T,
    MT,
    Shape,
    Dtype,
    Ndim,
    Data,
    Values,
    Indices,
}

impl Attr {
    pub fn as_str(self) -> &'static str {
        match self {
            Attr::T => "T",
            Attr::MT => "mT",
            Attr::Shape => "shape",
            Attr::Dtype => "dtype",
            Attr::Ndim => "ndim",
            Attr::Data => "data",
            Attr::Values => "values",
            Attr::Indices => "indices",
        }
    }

    /// The attribute called `name`.
    pub fn from_name(name: &str) -> Option<Attr> {
        Some(match name {
            "T" => Attr::T,
            "mT" => Attr::MT,
            "shape" => Attr::Shape,
            "dtype" => Attr::Dtype,
            "ndim" => Attr::Ndim,
            "data" => Attr::Data,
            "values" => Attr::Values,
            "indices" => Attr::Indices,
            _ => return None,
        })
    }

    pub const NAMES: &'static [&'static str] = &[
        "T", "mT", "shape", "dtype", "ndim", "data", "values", "indices",
    ];
}

/// One item of a subscript.
#[derive(Debug, Clone, PartialEq)]
pub enum Index {
    Index(ExprId),
    Slice(Option<ExprId>, Option<ExprId>, Option<ExprId>),
    Ellipsis,
}

/// Where an assignment stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Slot(Slot),
    /// `X_value = ..` in a `global` block: defines dim X unless it already has a value.
    DimName {
        slot: Slot,
        dim: Arc<str>,
    },
    Tuple(Vec<Target>, Span),
    /// `x[..] = ..` on a local.
    Item {
        slot: Slot,
        index: Vec<Index>,
        span: Span,
    },
    /// `ctx[X] = ..`
    Ctx(Key, Span),
}

/// A part of an f-string.
#[derive(Debug, Clone, PartialEq)]
pub enum FPart {
    Lit(Arc<str>),
    Expr(ExprId),
}

/// An expression node; operands are handles into the same [`Body`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(Const),
    Slot(Slot),
    /// A name bound by the task's `global` block, looked up in the evaluated global scope.
    Global(Arc<str>),
    /// `X_value` outside the `global` block: the value of dimension X in the current binding.
    DimValue(Arc<str>),
    /// `ctx[X]` looked up at run time (and `X_value` inside the `global` block).
    CtxGet(Key),
    /// `input_data[X]`.
    DataGet(Key),
    Attr(ExprId, Attr),
    /// A builtin called by name (`torch.exp(x)`) or as a method (`recv.exp()`).
    Call {
        func: Builtin,
        recv: Option<ExprId>,
        args: Vec<ExprId>,
        kwargs: Vec<(&'static str, ExprId)>,
        /// In-place method (`x.scatter_(..)`) on a local: the result is written back.
        inplace: Option<Slot>,
    },
    /// A call of a computed callable (a module object, a builtin held in a variable).
    CallValue {
        func: ExprId,
        args: Vec<ExprId>,
        kwargs: Vec<(&'static str, ExprId)>,
    },
    Subscript(ExprId, Vec<Index>),
    Binary(BinOp, ExprId, ExprId),
    Unary(UnOp, ExprId),
    /// `a < b <= c`: a chain of comparisons.
    Compare(ExprId, Vec<(CmpOp, ExprId)>),
    IfElse {
        cond: ExprId,
        then: ExprId,
        orelse: ExprId,
    },
    List(Vec<ExprId>),
    Tuple(Vec<ExprId>),
    ListComp {
        elt: ExprId,
        target: Target,
        iter: ExprId,
    },
    FString(Vec<FPart>),
}

impl Index {
    fn map_ids(&self, f: &mut impl FnMut(ExprId) -> ExprId) -> Index {
        match self {
            Index::Index(e) => Index::Index(f(*e)),
            Index::Slice(a, b, c) => Index::Slice(a.map(&mut *f), b.map(&mut *f), c.map(&mut *f)),
            Index::Ellipsis => Index::Ellipsis,
        }
    }
}

impl Key {
    fn map_ids(&self, f: &mut impl FnMut(ExprId) -> ExprId) -> Key {
        match self {
            Key::Const(k) => Key::Const(k.clone()),
            Key::Dyn(e) => Key::Dyn(f(*e)),
        }
    }
}

impl Target {
    fn map_ids(&self, f: &mut impl FnMut(ExprId) -> ExprId) -> Target {
        match self {
            Target::Slot(_) | Target::DimName { .. } => self.clone(),
            Target::Tuple(items, sp) => {
                Target::Tuple(items.iter().map(|t| t.map_ids(f)).collect(), *sp)
            }
            Target::Item { slot, index, span } => Target::Item {
                slot: *slot,
                index: index.iter().map(|i| i.map_ids(f)).collect(),
                span: *span,
            },
            Target::Ctx(k, sp) => Target::Ctx(k.map_ids(f), *sp),
        }
    }
}

impl Expr {
    /// The same node with every operand handle passed through `f`, in the order
    /// [`Expr::operands`] lists them: what a pass that copies nodes into a new body uses.
    pub fn map_ids(&self, f: &mut impl FnMut(ExprId) -> ExprId) -> Expr {
        let kw = |kwargs: &[(&'static str, ExprId)], f: &mut dyn FnMut(ExprId) -> ExprId| {
            kwargs.iter().map(|(k, e)| (*k, f(*e))).collect::<Vec<_>>()
        };
        match self {
            Expr::Const(_) | Expr::Slot(_) | Expr::Global(_) | Expr::DimValue(_) => self.clone(),
            Expr::CtxGet(k) => Expr::CtxGet(k.map_ids(f)),
            Expr::DataGet(k) => Expr::DataGet(k.map_ids(f)),
            Expr::Attr(v, a) => Expr::Attr(f(*v), *a),
            Expr::Call {
                func,
                recv,
                args,
                kwargs,
                inplace,
            } => {
                let recv = recv.map(&mut *f);
                let args = args.iter().map(|e| f(*e)).collect();
                Expr::Call {
                    func: *func,
                    recv,
                    args,
                    kwargs: kw(kwargs, f),
                    inplace: *inplace,
                }
            }
            Expr::CallValue { func, args, kwargs } => {
                let func = f(*func);
                let args = args.iter().map(|e| f(*e)).collect();
                Expr::CallValue {
                    func,
                    args,
                    kwargs: kw(kwargs, f),
                }
            }
            Expr::Subscript(v, items) => {
                let v = f(*v);
                Expr::Subscript(v, items.iter().map(|i| i.map_ids(f)).collect())
            }
            Expr::Binary(op, a, b) => {
                let a = f(*a);
                Expr::Binary(*op, a, f(*b))
            }
            Expr::Unary(op, a) => Expr::Unary(*op, f(*a)),
            Expr::Compare(first, rest) => {
                let first = f(*first);
                Expr::Compare(first, rest.iter().map(|(op, e)| (*op, f(*e))).collect())
            }
            Expr::IfElse { cond, then, orelse } => {
                let cond = f(*cond);
                let then = f(*then);
                Expr::IfElse {
                    cond,
                    then,
                    orelse: f(*orelse),
                }
            }
            Expr::List(items) => Expr::List(items.iter().map(|e| f(*e)).collect()),
            Expr::Tuple(items) => Expr::Tuple(items.iter().map(|e| f(*e)).collect()),
            Expr::ListComp { elt, target, iter } => {
                let elt = f(*elt);
                let target = target.map_ids(f);
                Expr::ListComp {
                    elt,
                    target,
                    iter: f(*iter),
                }
            }
            Expr::FString(parts) => Expr::FString(
                parts
                    .iter()
                    .map(|p| match p {
                        FPart::Lit(l) => FPart::Lit(l.clone()),
                        FPart::Expr(e) => FPart::Expr(f(*e)),
                    })
                    .collect(),
            ),
        }
    }

    /// Every operand handle of this node, in evaluation order.
    pub fn operands(&self) -> Vec<ExprId> {
        let mut out = Vec::new();
        self.map_ids(&mut |e| {
            out.push(e);
            e
        });
        out
    }
}

/// A statement of a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Assign(Target, ExprId),
    Return(ExprId),
    Expr(ExprId),
}

/// What a body is, which decides the meaning of `input`, `state` and `X_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// An element function: slot 0 is `input`, slot 1 is `state`.
    Function,
    /// Reference snippets (all of a task's share one body and one scope).
    Snippet,
    /// The `global` block: `X_value` and `ctx[X]` assignments define dimensions.
    Global,
}

/// A lowered body: an expression arena, statements and the frame layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub mode: Mode,
    exprs: Vec<Expr>,
    spans: Vec<Span>,
    pub stmts: Vec<Stmt>,
    /// The name of every frame slot, by slot.
    pub slot_names: Vec<String>,
    /// The span of the whole body.
    pub span: Span,
}

impl Body {
    pub fn new(mode: Mode, span: Span) -> Body {
        Body {
            mode,
            exprs: Vec::new(),
            spans: Vec::new(),
            stmts: Vec::new(),
            slot_names: Vec::new(),
            span,
        }
    }

    /// Adds an expression to the arena.
    pub fn push(&mut self, e: Expr, span: Span) -> ExprId {
        let id = ExprId(u32::try_from(self.exprs.len()).unwrap_or(u32::MAX));
        self.exprs.push(e);
        self.spans.push(span);
        id
    }

    /// The expression `id` denotes. Ids come from this body's [`Body::push`].
    pub fn expr(&self, id: ExprId) -> &Expr {
        &self.exprs[id.0 as usize]
    }

    pub fn span(&self, id: ExprId) -> Span {
        self.spans[id.0 as usize]
    }

    /// Every expression, in arena order (operands before the nodes that use them).
    pub fn exprs(&self) -> impl Iterator<Item = (ExprId, &Expr)> {
        self.exprs
            .iter()
            .enumerate()
            .map(|(i, e)| (ExprId(i as u32), e))
    }

    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// A readable text form (for tests and `--dump`), one statement per line.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for s in &self.stmts {
            match s {
                Stmt::Assign(t, e) => {
                    let _ = writeln!(out, "{} = {}", self.target_str(t), self.expr_str(*e));
                }
                Stmt::Return(e) => {
                    let _ = writeln!(out, "return {}", self.expr_str(*e));
                }
                Stmt::Expr(e) => {
                    let _ = writeln!(out, "{}", self.expr_str(*e));
                }
            }
        }
        out
    }

    fn slot_str(&self, s: Slot) -> String {
        let name = self.slot_names.get(s as usize).map_or("?", String::as_str);
        format!("{name}#{s}")
    }

    fn target_str(&self, t: &Target) -> String {
        match t {
            Target::Slot(s) => self.slot_str(*s),
            Target::DimName { slot, dim } => format!("{}(dim {dim})", self.slot_str(*slot)),
            Target::Tuple(items, _) => {
                let parts: Vec<String> = items.iter().map(|t| self.target_str(t)).collect();
                format!("({})", parts.join(", "))
            }
            Target::Item { slot, index, .. } => {
                format!("{}[{}]", self.slot_str(*slot), self.index_str(index))
            }
            Target::Ctx(k, _) => format!("ctx[{}]", self.key_str(k)),
        }
    }

    fn key_str(&self, k: &Key) -> String {
        match k {
            Key::Const(s) => format!("{s:?}"),
            Key::Dyn(e) => self.expr_str(*e),
        }
    }

    fn index_str(&self, items: &[Index]) -> String {
        let opt = |e: &Option<ExprId>| e.map_or(String::new(), |e| self.expr_str(e));
        let parts: Vec<String> = items
            .iter()
            .map(|i| match i {
                Index::Index(e) => self.expr_str(*e),
                Index::Slice(a, b, None) => format!("{}:{}", opt(a), opt(b)),
                Index::Slice(a, b, c) => format!("{}:{}:{}", opt(a), opt(b), opt(c)),
                Index::Ellipsis => "...".to_string(),
            })
            .collect();
        parts.join(", ")
    }

    fn list_str(&self, es: &[ExprId]) -> String {
        let parts: Vec<String> = es.iter().map(|e| self.expr_str(*e)).collect();
        parts.join(", ")
    }

    fn call_args_str(&self, args: &[ExprId], kwargs: &[(&'static str, ExprId)]) -> String {
        let mut parts: Vec<String> = args.iter().map(|e| self.expr_str(*e)).collect();
        parts.extend(
            kwargs
                .iter()
                .map(|(k, e)| format!("{k}={}", self.expr_str(*e))),
        );
        parts.join(", ")
    }

    /// The text of one expression. Recursion is bounded by the lowering's nesting limit.
    pub fn expr_str(&self, id: ExprId) -> String {
        match self.expr(id) {
            Expr::Const(c) => const_str(c),
            Expr::Slot(s) => self.slot_str(*s),
            Expr::Global(n) => format!("global {n}"),
            Expr::DimValue(d) => format!("dim {d}"),
            Expr::CtxGet(k) => format!("ctx[{}]", self.key_str(k)),
            Expr::DataGet(k) => format!("input_data[{}]", self.key_str(k)),
            Expr::Attr(v, a) => format!("{}.{}", self.expr_str(*v), a.as_str()),
            Expr::Call {
                func,
                recv,
                args,
                kwargs,
                inplace,
            } => {
                let recv = recv.map_or(String::new(), |r| format!("{}.", self.expr_str(r)));
                let bang = if inplace.is_some() { "_" } else { "" };
                format!(
                    "{recv}<{}>{bang}({})",
                    func.name(),
                    self.call_args_str(args, kwargs)
                )
            }
            Expr::CallValue { func, args, kwargs } => format!(
                "({})({})",
                self.expr_str(*func),
                self.call_args_str(args, kwargs)
            ),
            Expr::Subscript(v, items) => {
                format!("{}[{}]", self.expr_str(*v), self.index_str(items))
            }
            Expr::Binary(op, a, b) => format!(
                "({} {} {})",
                self.expr_str(*a),
                op.as_str(),
                self.expr_str(*b)
            ),
            Expr::Unary(op, a) => format!("({}{})", op.as_str(), self.expr_str(*a)),
            Expr::Compare(first, rest) => {
                let mut s = format!("({}", self.expr_str(*first));
                for (op, e) in rest {
                    let _ = write!(s, " {} {}", op.as_str(), self.expr_str(*e));
                }
                s.push(')');
                s
            }
            Expr::IfElse { cond, then, orelse } => format!(
                "({} if {} else {})",
                self.expr_str(*then),
                self.expr_str(*cond),
                self.expr_str(*orelse)
            ),
            Expr::List(items) => format!("[{}]", self.list_str(items)),
            Expr::Tuple(items) => format!("({})", self.list_str(items)),
            Expr::ListComp { elt, target, iter } => format!(
                "[{} for {} in {}]",
                self.expr_str(*elt),
                self.target_str(target),
                self.expr_str(*iter)
            ),
            Expr::FString(parts) => {
                let mut s = String::from("f\"");
                for p in parts {
                    match p {
                        FPart::Lit(l) => s.push_str(l),
                        FPart::Expr(e) => {
                            let _ = write!(s, "{{{}}}", self.expr_str(*e));
                        }
                    }
                }
                s.push('"');
                s
            }
        }
    }
}

fn const_str(c: &Const) -> String {
    match c {
        Const::None => "None".into(),
        Const::Bool(b) => if *b { "True" } else { "False" }.into(),
        Const::Int(i) => i.to_string(),
        Const::Float(x) => format!("{x:?}"),
        Const::Str(s) => format!("{s:?}"),
        Const::DType(d) => format!("{d:?}"),
        Const::Builtin(b) => format!("<{}>", b.name()),
        Const::InputData => "input_data".into(),
        Const::Ctx => "ctx".into(),
    }
}

/// A task's reference snippets (`outputs[].data_transform`), lowered into one body because
/// they share one scope in file order (DESIGN §7): a later snippet may use a name an earlier
/// one bound.
#[derive(Debug, Clone, PartialEq)]
pub struct References {
    pub body: Body,
    /// Per output field (in the task's order): the statements of its snippet in
    /// `body.stmts`, or `None` when the output has no reference. Each snippet's value is its
    /// last line.
    pub parts: Vec<Option<std::ops::Range<usize>>>,
}

/// Everything of a task that runs inside element functions, lowered once. A part that did not
/// lower holds the diagnostic saying why (located in the task file), so a back end that needs
/// it reports exactly what `stepforge check` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFunctions {
    /// The `global` block (`Ok(None)`: the task has none).
    pub global: Result<Option<Body>, Box<Diagnostic>>,
    /// One body per element function, indexed like the task's fns (and like the graph's
    /// [`crate::FnId`]s).
    pub fns: Vec<Result<Arc<Body>, Box<Diagnostic>>>,
    /// The reference snippets.
    pub references: Result<References, Box<Diagnostic>>,
}

impl TaskFunctions {
    /// The diagnostic of every part that did not lower: `global`, then the functions in
    /// order, then the references.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.global
            .as_ref()
            .err()
            .into_iter()
            .chain(self.fns.iter().filter_map(|f| f.as_ref().err()))
            .chain(self.references.as_ref().err())
            .map(|d| &**d)
    }
}

impl Default for TaskFunctions {
    fn default() -> TaskFunctions {
        TaskFunctions {
            global: Ok(None),
            fns: Vec::new(),
            references: Ok(References {
                body: Body::new(Mode::Snippet, Span::default()),
                parts: Vec::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_shows_slots_builtins_and_run_time_names() {
        let sp = Span::default();
        let mut b = Body::new(Mode::Function, sp);
        b.slot_names = vec!["input".into(), "state".into(), "y".into()];
        let input = b.push(Expr::Slot(INPUT_SLOT), sp);
        let zero = b.push(Expr::Const(Const::Int(0)), sp);
        let x = b.push(Expr::Subscript(input, vec![Index::Index(zero)]), sp);
        let d = b.push(Expr::DimValue("D".into()), sp);
        let g = b.push(Expr::Global("scale".into()), sp);
        let m = b.push(Expr::Binary(BinOp::Mul, x, g), sp);
        let call = b.push(
            Expr::Call {
                func: Builtin::Sum,
                recv: Some(m),
                args: vec![],
                kwargs: vec![("dim", d)],
                inplace: None,
            },
            sp,
        );
        b.stmts.push(Stmt::Assign(Target::Slot(2), call));
        let y = b.push(Expr::Slot(2), sp);
        b.stmts.push(Stmt::Return(y));
        assert_eq!(
            b.dump(),
            "y#2 = (input#0[0] * global scale).<sum>(dim=dim D)\nreturn y#2\n"
        );
        assert_eq!(b.len(), 8);
    }
}
