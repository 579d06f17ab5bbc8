//! The loaded, validated task: what every later phase consumes.
//!
//! All spans are byte offsets into [`Task::source`] (the task file's text), including the spans
//! inside embedded code (element-function bodies, `global`, reference snippets, the reference
//! `impl`), so one renderer shows any diagnostic in context.

use std::collections::BTreeMap;

use stepforge_syntax::Source;
use stepforge_syntax::ast::{Block, DimExpr, DtypeAst, Ident};
use stepforge_syntax::span::Span;

/// Dimension values used when neither `global` nor `--dims` sets them (DESIGN §8).
pub const DEFAULT_DIMS: &[(&str, i64)] = &[("M", 5), ("N", 7), ("K", 9), ("D", 16)];

#[derive(Debug, Clone)]
pub struct Task {
    /// `test_name`, or the file stem when absent.
    pub name: String,
    pub source: Source,
    pub global: Option<Block>,
    pub inputs: Vec<StreamDecl>,
    pub parameters: Vec<ParamDecl>,
    pub fns: Vec<FnDecl>,
    pub outputs: Vec<OutputDecl>,
    /// The reference solution, if the task carries one; [`crate::parse_impl`] parses it with
    /// file spans.
    pub reference_impl: Option<EmbeddedText>,
    pub tolerance: Option<Tolerance>,
}

/// A piece of code embedded in the task file, with where it sits there.
#[derive(Debug, Clone)]
pub struct EmbeddedText {
    /// The code as YAML decoded it.
    pub text: String,
    /// Where the value sits in the file: the scalar's text including quotes (for block
    /// scalars: the content lines).
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct StreamDecl {
    pub name: Ident,
    pub dtype: DtypeAst,
    /// Innermost first (DESIGN §3).
    pub dims: Vec<DimExpr>,
    /// `torch.randn` when the file has no `data_gen`. Multihot fields ignore it (hot bits are
    /// drawn from `hot`).
    pub data_gen: DataGen,
    /// Hot bits per Multihot vector, inclusive range, from `min`/`max`. A missing `min` is 1, a
    /// missing `max` is `i64::MAX`; the generator clamps `max` to the vector length. `None` (no
    /// `min`/`max`) means 1 to the vector length. Only Multihot elements use it.
    pub hot: Option<(i64, i64)>,
    /// The whole list entry, from its first key to the end of its last value.
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: Ident,
    pub dtype: DtypeAst,
    /// Innermost first, like streams: `input_data['W']` has the reversed shape. May be empty
    /// (a scalar parameter).
    pub dims: Vec<DimExpr>,
    /// `torch.randn` when the file has no `data_gen`.
    pub data_gen: DataGen,
    /// The whole list entry, from its first key to the end of its last value.
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct FnDecl {
    /// The label (`name:`).
    pub name: String,
    /// What programs refer to (`func_name:`).
    pub func_name: Ident,
    pub body: Block,
    /// `Some` for reducers (usable by Accum, Scan, Merge): one value per output field.
    pub init: Option<Vec<InitValue>>,
    pub input_dtype: DtypeAst,
    pub output_dtype: DtypeAst,
    /// The whole list entry, from its first key to the end of its last value.
    pub span: Span,
}

impl FnDecl {
    pub fn is_reducer(&self) -> bool {
        self.init.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct OutputDecl {
    pub name: Ident,
    pub dtype: DtypeAst,
    pub dims: Vec<DimExpr>,
    /// One reference snippet per tuple field of `dtype`.
    pub transforms: Vec<Block>,
    /// The whole list entry, from its first key to the end of its last value.
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataGen {
    /// `torch.randn`: normal(0, 1)
    Randn,
    /// `torch.rand`: uniform [0, 1)
    Rand,
    /// `torch.ones`
    Ones,
    /// `binary`: Bernoulli(0.5) as 0.0/1.0
    Binary,
}

impl DataGen {
    /// The spellings the loader accepts (`randn` etc. without the `torch.` prefix too).
    pub const NAMES: &'static [&'static str] = &[
        "torch.randn",
        "torch.rand",
        "torch.ones",
        "binary",
        "randn",
        "rand",
        "ones",
    ];

    pub fn parse(s: &str) -> Option<DataGen> {
        match s.trim() {
            "torch.randn" | "randn" => Some(DataGen::Randn),
            "torch.rand" | "rand" => Some(DataGen::Rand),
            "torch.ones" | "ones" => Some(DataGen::Ones),
            "binary" => Some(DataGen::Binary),
            _ => None,
        }
    }

    /// The canonical (benchmark) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DataGen::Randn => "torch.randn",
            DataGen::Rand => "torch.rand",
            DataGen::Ones => "torch.ones",
            DataGen::Binary => "binary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitValue {
    pub value: f64,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    /// torch's float32 defaults (DESIGN §9).
    fn default() -> Tolerance {
        Tolerance {
            rtol: 1.3e-6,
            atol: 1e-5,
        }
    }
}

/// Dimension values for one run: defaults, then literal `X_value = n` / `ctx[X] = n` bindings
/// found in `global`, then `--dims` overrides.
pub type DimValues = BTreeMap<String, i64>;
