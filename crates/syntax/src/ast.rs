//! The abstract syntax of stepforge's three languages: STeP programs (DESIGN §6), the
//! Python/torch subset of element functions, `global` blocks and reference snippets (DESIGN §7),
//! and dtypes (DESIGN §3).
//!
//! Every node carries the byte span of its text. Equality of nodes ignores nothing (spans
//! included), so tests that compare trees across a print/parse round trip use
//! [`crate::strip_spans`] / [`crate::same_tree`] (equality modulo spans) rather than `==`.

use serde::Serialize;

use crate::span::Span;

/// An identifier with its span.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn new(name: impl Into<String>, span: Span) -> Ident {
        Ident {
            name: name.into(),
            span,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// STeP programs
// ---------------------------------------------------------------------------------------------

/// `stmt* return names`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    pub stmts: Vec<Stmt>,
    pub ret: Return,
    pub span: Span,
}

/// `return a, b` — the streams that are the program's outputs, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Return {
    pub values: Vec<Ident>,
    pub span: Span,
}

/// `targets = rhs`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stmt {
    pub targets: Vec<Ident>,
    pub rhs: Rhs,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Rhs {
    /// `step.Op(k=v, ..).apply(arg)`
    Op(OpCall),
    /// `[a, b, c]` — a list of streams or of fn names.
    List(Vec<Ident>, Span),
    /// `[step.Op(..).apply(x) for x, y in zip(xs, ys)]`
    Comp(Comprehension),
}

impl Rhs {
    pub fn span(&self) -> Span {
        match self {
            Rhs::Op(op) => op.span,
            Rhs::List(_, span) => *span,
            Rhs::Comp(c) => c.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpCall {
    /// The operator name as written after `step.` (validated against the 14 ops by the parser).
    pub op: Ident,
    pub kwargs: Vec<Kwarg>,
    pub arg: Arg,
    /// Span of `step.Op(...)` without the `.apply(...)` part (where "missing .apply" points).
    pub head_span: Span,
    /// The whole call including `.apply(...)`.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kwarg {
    pub key: Ident,
    pub value: KwValue,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum KwValue {
    Int(i64, Span),
    /// A dimension symbol, a `NAME_value`, an fn name, or a comprehension variable.
    Name(Ident),
    /// `[..]`
    List(Vec<KwValue>, Span),
    /// `(..)`
    Tuple(Vec<KwValue>, Span),
}

impl KwValue {
    pub fn span(&self) -> Span {
        match self {
            KwValue::Int(_, s) | KwValue::List(_, s) | KwValue::Tuple(_, s) => *s,
            KwValue::Name(id) => id.span,
        }
    }
}

/// The argument of `.apply(...)`: a name or a (possibly nested) tuple of names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Arg {
    Name(Ident),
    Tuple(Vec<Arg>, Span),
}

impl Arg {
    pub fn span(&self) -> Span {
        match self {
            Arg::Name(id) => id.span,
            Arg::Tuple(_, s) => *s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comprehension {
    /// The op applied per element; its kwargs and arg may name the loop variables.
    pub body: OpCall,
    pub vars: Vec<Ident>,
    pub iter: CompIter,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CompIter {
    /// `in xs`
    Name(Ident),
    /// `in zip(xs, ys, ..)`
    Zip(Vec<Ident>, Span),
}

// ---------------------------------------------------------------------------------------------
// Python/torch subset
// ---------------------------------------------------------------------------------------------

/// A sequence of statements: an element-function body, a `global` block or a snippet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub stmts: Vec<PyStmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PyStmt {
    pub kind: PyStmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PyStmtKind {
    /// `t1 = t2 = value` is not supported; one target (possibly a tuple) per assignment.
    Assign {
        target: Target,
        value: Expr,
    },
    Return(Expr),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Target {
    Name(Ident),
    /// `ctx[E] = ...`, `x[0] = ...`
    Subscript {
        value: Box<Expr>,
        index: Vec<SliceItem>,
        span: Span,
    },
    /// `a, b = ...` / `(a, b) = ...` / `[a, b] = ...`
    Tuple(Vec<Target>, Span),
}

impl Target {
    pub fn span(&self) -> Span {
        match self {
            Target::Name(id) => id.span,
            Target::Subscript { span, .. } | Target::Tuple(_, span) => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `//`
    FloorDiv,
    Mod,
    Pow,
    MatMul,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UnOp {
    Neg,
    Pos,
    Not,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Int(i64),
    /// The literal text is kept so `1e-5` prints back as written.
    Float(f64, String),
    Bool(bool),
    None,
    Str(String),
    /// `f"{E}_value"`: literal pieces and `{expr}` holes, in order.
    FString(Vec<FStringPart>),
    Name(String),
    /// `x.attr`
    Attr {
        value: Box<Expr>,
        attr: Ident,
    },
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        kwargs: Vec<(Ident, Expr)>,
    },
    /// `x[i]`, `x[:, 0]`, `x[..., ::2]`
    Subscript {
        value: Box<Expr>,
        index: Vec<SliceItem>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Unary {
        op: UnOp,
        operand: Box<Expr>,
    },
    /// `a > b` (chains like `a < b < c` are one node with several ops).
    Compare {
        first: Box<Expr>,
        rest: Vec<(CmpOp, Expr)>,
    },
    /// `body if cond else orelse`
    IfElse {
        cond: Box<Expr>,
        body: Box<Expr>,
        orelse: Box<Expr>,
    },
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    /// `[elt for target in iter]` (one `for`, no `if`: all the benchmark needs).
    ListComp {
        elt: Box<Expr>,
        target: Box<Target>,
        iter: Box<Expr>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FStringPart {
    Lit(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SliceItem {
    Index(Expr),
    Slice {
        lo: Option<Expr>,
        hi: Option<Expr>,
        step: Option<Expr>,
        span: Span,
    },
    /// `...`
    Ellipsis(Span),
}

// ---------------------------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------------------------

/// A dimension as written in a dtype or a task's `dims:` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DimExpr {
    Int(i64, Span),
    Sym(Ident),
    Mul(Box<DimExpr>, Box<DimExpr>, Span),
    Div(Box<DimExpr>, Box<DimExpr>, Span),
}

impl DimExpr {
    pub fn span(&self) -> Span {
        match self {
            DimExpr::Int(_, s) | DimExpr::Mul(_, _, s) | DimExpr::Div(_, _, s) => *s,
            DimExpr::Sym(id) => id.span,
        }
    }
}

/// `fp32`, `Multihot(fp32, E)`, `Buffer(T, [D, N])`, `[T1, T2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DtypeAst {
    Fp32(Span),
    Multihot {
        elem: Box<DtypeAst>,
        len: DimExpr,
        span: Span,
    },
    Buffer {
        elem: Box<DtypeAst>,
        dims: Vec<DimExpr>,
        span: Span,
    },
    Tuple(Vec<DtypeAst>, Span),
}

impl DtypeAst {
    pub fn span(&self) -> Span {
        match self {
            DtypeAst::Fp32(s) | DtypeAst::Tuple(_, s) => *s,
            DtypeAst::Multihot { span, .. } | DtypeAst::Buffer { span, .. } => *span,
        }
    }
}
