//! The ONE table of builtins of the Python/torch subset (DESIGN §7): torch functions, tensor
//! methods, `torch.nn` modules, `math` functions and Python builtins.
//!
//! Every consumer derives what it needs from this table: the lowering resolves names with
//! [`Builtin::lookup`] and suggests with [`Builtin::names`]; the interpreter dispatches on the
//! [`Builtin`] enum; the batching analysis asks [`Builtin::is_elementwise`] and the class; the
//! simulator's FLOP model asks [`Builtin::cost`]; the JIT asks the class; the interpreter and
//! the JIT both map one-operand elementwise builtins to the tensor crate's functions with
//! [`Builtin::unary_op`]. Adding a builtin is one row here plus its implementation in the
//! interpreter.
//!
//! FLOP costs follow DESIGN §12: elementwise arithmetic and comparisons 1 per output element;
//! exp, log, sqrt, pow, sigmoid, tanh, sin, cos, erf 4; gelu and silu 8; reductions 1 per input
//! element; contractions 2·m·k·n (computed from shapes by the caller); shape and indexing
//! operations move data but compute nothing.

use std::fmt;

use stepforge_tensor::UnaryOp;

/// Where a name is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ns {
    /// `torch.X`, `torch.nn.functional.X`, `F.X`.
    Torch,
    /// A tensor method `t.X(..)`.
    Method,
    /// Both `torch.X(t, ..)` and `t.X(..)` (a table-only namespace: lookups in `Torch` or
    /// `Method` see it).
    Common,
    /// `torch.nn.X` module constructors.
    Nn,
    /// `math.X`.
    Math,
    /// Python builtins (`range`, `len`, ..).
    Py,
    /// `torch.ops.aten.X` / `torch.ops.aten.X.default`.
    Aten,
}

/// What kind of computation a builtin is (for batching, FLOP counts and the JIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Makes a tensor from sizes, values or another tensor's shape.
    Creation,
    /// Elementwise, one tensor operand.
    Unary,
    /// Elementwise with broadcasting, two or more tensor operands.
    Binary,
    /// Reduces or scans along a dim.
    Reduce,
    /// Contractions and other linear algebra.
    Linalg,
    /// Moves data without computing (views, joins, splits, dtype casts).
    Shape,
    /// Gathers or scatters by index.
    Index,
    /// `torch.nn` modules and layer norms.
    Nn,
    /// Python builtins and `math` functions on numbers.
    Py,
}

/// FLOPs of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cost {
    Free,
    /// This many FLOPs per output element.
    PerOut(u32),
    /// This many FLOPs per input element (reductions).
    PerIn(u32),
    /// A contraction: 2 FLOPs per multiply-add, counted from the operand shapes.
    Contract,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinInfo {
    pub builtin: Builtin,
    /// The name shown in messages.
    pub name: &'static str,
    pub class: Class,
    pub cost: Cost,
    /// The names it answers to, per namespace.
    pub names: &'static [(Ns, &'static [&'static str])],
}

macro_rules! builtins {
    ($( $v:ident = $name:literal, $class:ident, $cost:expr, [ $( $ns:ident ( $($alias:literal),+ ) )* ] ; )*) => {
        /// A callable known to the evaluator.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Builtin { $($v,)* }

        /// The table, in [`Builtin`] declaration order (`TABLE[b as usize].builtin == b`).
        pub static TABLE: &[BuiltinInfo] = &[
            $( BuiltinInfo {
                builtin: Builtin::$v,
                name: $name,
                class: Class::$class,
                cost: $cost,
                names: &[ $( (Ns::$ns, &[$($alias),+]) ),* ],
            }, )*
        ];
    };
}

use Cost::{Contract, Free, PerIn, PerOut};

builtins! {
    // --- creation -----------------------------------------------------------------------
    Tensor = "torch.tensor", Creation, Free, [Torch("tensor", "as_tensor")];
    Zeros = "torch.zeros", Creation, Free, [Torch("zeros", "empty") Method("new_zeros")];
    Ones = "torch.ones", Creation, Free, [Torch("ones") Method("new_ones")];
    Full = "torch.full", Creation, Free, [Torch("full")];
    ZerosLike = "zeros_like", Creation, Free, [Torch("zeros_like", "empty_like") Method("zeros_like")];
    OnesLike = "ones_like", Creation, Free, [Torch("ones_like")];
    FullLike = "full_like", Creation, Free, [Torch("full_like")];
    Arange = "torch.arange", Creation, Free, [Torch("arange")];
    // --- elementwise ----------------------------------------------------------------------
    Exp = "exp", Unary, PerOut(4), [Common("exp")];
    Log = "log", Unary, PerOut(4), [Common("log")];
    Sqrt = "sqrt", Unary, PerOut(4), [Common("sqrt")];
    Rsqrt = "rsqrt", Unary, PerOut(4), [Common("rsqrt")];
    Sin = "sin", Unary, PerOut(4), [Common("sin")];
    Cos = "cos", Unary, PerOut(4), [Common("cos")];
    Tanh = "tanh", Unary, PerOut(4), [Common("tanh")];
    Sigmoid = "sigmoid", Unary, PerOut(4), [Common("sigmoid")];
    Relu = "relu", Unary, PerOut(1), [Common("relu")];
    Abs = "abs", Unary, PerOut(1), [Common("abs")];
    Erf = "erf", Unary, PerOut(4), [Common("erf")];
    Square = "square", Unary, PerOut(1), [Common("square")];
    Reciprocal = "reciprocal", Unary, PerOut(1), [Common("reciprocal")];
    Floor = "floor", Unary, PerOut(1), [Common("floor")];
    Ceil = "ceil", Unary, PerOut(1), [Common("ceil")];
    Round = "round", Unary, PerOut(1), [Common("round")];
    Sign = "sign", Unary, PerOut(1), [Common("sign")];
    Neg = "neg", Unary, PerOut(1), [Common("neg", "negative")];
    Silu = "silu", Unary, PerOut(8), [Common("silu")];
    Gelu = "gelu", Unary, PerOut(8), [Common("gelu")];
    LogicalNot = "logical_not", Unary, PerOut(1), [Common("logical_not")];
    Pow = "pow", Binary, PerOut(4), [Common("pow")];
    Add = "add", Binary, PerOut(1), [Common("add")];
    Sub = "sub", Binary, PerOut(1), [Common("sub", "subtract")];
    Mul = "mul", Binary, PerOut(1), [Common("mul", "multiply")];
    Div = "div", Binary, PerOut(1), [Common("div", "divide", "true_divide")];
    Maximum = "maximum", Binary, PerOut(1), [Common("maximum")];
    Minimum = "minimum", Binary, PerOut(1), [Common("minimum")];
    // `max`/`min` reduce with one tensor and compare elementwise with two.
    Max = "max", Reduce, PerIn(1), [Common("max")];
    Min = "min", Reduce, PerIn(1), [Common("min")];
    Where = "where", Binary, PerOut(1), [Torch("where") Method("where")];
    Clamp = "clamp", Binary, PerOut(2), [Common("clamp", "clip")];
    MaskedFill = "masked_fill", Binary, PerOut(1), [Common("masked_fill")];
    Gt = "gt", Binary, PerOut(1), [Common("gt", "greater")];
    Ge = "ge", Binary, PerOut(1), [Common("ge", "greater_equal")];
    Lt = "lt", Binary, PerOut(1), [Common("lt", "less")];
    Le = "le", Binary, PerOut(1), [Common("le", "less_equal")];
    Eq = "eq", Binary, PerOut(1), [Common("eq")];
    Ne = "ne", Binary, PerOut(1), [Common("ne", "not_equal")];
    // --- reductions and scans ---------------------------------------------------------------
    Sum = "sum", Reduce, PerIn(1), [Common("sum")];
    Mean = "mean", Reduce, PerIn(1), [Common("mean")];
    Var = "var", Reduce, PerIn(3), [Common("var")];
    Std = "std", Reduce, PerIn(3), [Common("std")];
    Prod = "prod", Reduce, PerIn(1), [Common("prod")];
    Amax = "amax", Reduce, PerIn(1), [Common("amax")];
    Amin = "amin", Reduce, PerIn(1), [Common("amin")];
    Argmax = "argmax", Reduce, PerIn(1), [Common("argmax")];
    Argmin = "argmin", Reduce, PerIn(1), [Common("argmin")];
    Softmax = "softmax", Reduce, PerIn(7), [Common("softmax")];
    LogSoftmax = "log_softmax", Reduce, PerIn(7), [Common("log_softmax")];
    Cumprod = "cumprod", Reduce, PerIn(1), [Common("cumprod")];
    Cumsum = "cumsum", Reduce, PerIn(1), [Common("cumsum")];
    Topk = "topk", Reduce, PerIn(1), [Common("topk")];
    Sort = "sort", Reduce, PerIn(1), [Common("sort")];
    Argsort = "argsort", Reduce, PerIn(1), [Common("argsort")];
    Norm = "norm", Reduce, PerIn(2), [Common("norm")];
    // --- linear algebra ---------------------------------------------------------------------
    Matmul = "matmul", Linalg, Contract, [Common("matmul", "mv")];
    Mm = "mm", Linalg, Contract, [Common("mm")];
    Bmm = "bmm", Linalg, Contract, [Common("bmm")];
    Einsum = "torch.einsum", Linalg, Contract, [Torch("einsum")];
    Outer = "outer", Linalg, PerOut(1), [Common("outer", "ger")];
    Dot = "dot", Linalg, Contract, [Common("dot", "inner")];
    // --- shape ------------------------------------------------------------------------------
    RepeatInterleave = "repeat_interleave", Shape, Free, [Common("repeat_interleave")];
    Unbind = "unbind", Shape, Free, [Common("unbind")];
    Flip = "flip", Shape, Free, [Common("flip")];
    Reshape = "reshape", Shape, Free, [Common("reshape")];
    View = "view", Shape, Free, [Method("view")];
    Unsqueeze = "unsqueeze", Shape, Free, [Common("unsqueeze")];
    Squeeze = "squeeze", Shape, Free, [Common("squeeze")];
    Flatten = "flatten", Shape, Free, [Common("flatten")];
    Permute = "permute", Shape, Free, [Common("permute")];
    Transpose = "transpose", Shape, Free, [Common("transpose", "swapaxes")];
    TMethod = "t", Shape, Free, [Common("t")];
    Movedim = "movedim", Shape, Free, [Common("movedim", "moveaxis")];
    Expand = "expand", Shape, Free, [Method("expand")];
    ExpandAs = "expand_as", Shape, Free, [Method("expand_as")];
    Repeat = "repeat", Shape, Free, [Method("repeat")];
    Chunk = "chunk", Shape, Free, [Common("chunk")];
    Split = "split", Shape, Free, [Common("split")];
    Stack = "torch.stack", Shape, Free, [Torch("stack")];
    Cat = "torch.cat", Shape, Free, [Torch("cat", "concat", "concatenate")];
    Size = "size", Shape, Free, [Method("size")];
    Dim = "dim", Shape, Free, [Method("dim", "ndimension")];
    Numel = "numel", Shape, Free, [Common("numel")];
    Identity = "clone", Shape, Free, [Common("clone") Method("contiguous", "detach", "cpu", "cuda")];
    ToFloat = "float", Shape, Free, [Method("float")];
    ToLong = "long", Shape, Free, [Method("long", "int")];
    ToBool = "bool", Shape, Free, [Method("bool")];
    To = "to", Shape, Free, [Method("to", "type")];
    TypeAs = "type_as", Shape, Free, [Method("type_as")];
    Item = "item", Shape, Free, [Method("item")];
    // --- indexing ---------------------------------------------------------------------------
    OneHot = "one_hot", Index, Free, [Common("one_hot")];
    Scatter = "scatter", Index, Free, [Common("scatter")];
    ScatterAdd = "scatter_add", Index, PerOut(1), [Common("scatter_add")];
    Gather = "gather", Index, Free, [Common("gather")];
    IndexSelect = "index_select", Index, Free, [Common("index_select")];
    Zero = "zero_", Index, Free, [Method("zero")];
    Fill = "fill_", Index, Free, [Method("fill")];
    Copy = "copy_", Index, Free, [Method("copy")];
    // --- nn ---------------------------------------------------------------------------------
    NativeLayerNorm = "torch.ops.aten.native_layer_norm.default", Nn, PerIn(8), [Aten("native_layer_norm")];
    LayerNorm = "torch.nn.functional.layer_norm", Nn, PerIn(8), [Torch("layer_norm")];
    NnGelu = "torch.nn.GELU", Nn, Free, [Nn("GELU")];
    NnSigmoid = "torch.nn.Sigmoid", Nn, Free, [Nn("Sigmoid")];
    NnSoftmax = "torch.nn.Softmax", Nn, Free, [Nn("Softmax")];
    NnLogSoftmax = "torch.nn.LogSoftmax", Nn, Free, [Nn("LogSoftmax")];
    NnSilu = "torch.nn.SiLU", Nn, Free, [Nn("SiLU")];
    NnRelu = "torch.nn.ReLU", Nn, Free, [Nn("ReLU")];
    NnTanh = "torch.nn.Tanh", Nn, Free, [Nn("Tanh")];
    NnIdentity = "torch.nn.Identity", Nn, Free, [Nn("Identity")];
    // --- Python builtins --------------------------------------------------------------------
    PyRange = "range", Py, Free, [Py("range")];
    PyLen = "len", Py, Free, [Py("len")];
    PyFloat = "float", Py, Free, [Py("float")];
    PyInt = "int", Py, Free, [Py("int")];
    PyBool = "bool", Py, Free, [Py("bool")];
    PyMin = "min", Py, Free, [Py("min")];
    PyMax = "max", Py, Free, [Py("max")];
    PyAbs = "abs", Py, Free, [Py("abs")];
    PySum = "sum", Py, Free, [Py("sum")];
    PyZip = "zip", Py, Free, [Py("zip")];
    PyEnumerate = "enumerate", Py, Free, [Py("enumerate")];
    PyList = "list", Py, Free, [Py("list")];
    PyTuple = "tuple", Py, Free, [Py("tuple")];
    PyRound = "round", Py, Free, [Py("round")];
    // --- math -------------------------------------------------------------------------------
    MathSqrt = "math.sqrt", Py, Free, [Math("sqrt")];
    MathExp = "math.exp", Py, Free, [Math("exp")];
    MathLog = "math.log", Py, Free, [Math("log")];
    MathCos = "math.cos", Py, Free, [Math("cos")];
    MathSin = "math.sin", Py, Free, [Math("sin")];
    MathCeil = "math.ceil", Py, Free, [Math("ceil")];
    MathFloor = "math.floor", Py, Free, [Math("floor")];
}

/// Keyword-argument names the evaluator understands. Lowering interns every keyword to one of
/// these `&'static str`s, so calls compare static strings and never allocate.
pub const KEYWORDS: &[&str] = &[
    "dim",
    "keepdim",
    "dtype",
    "unbiased",
    "correction",
    "k",
    "largest",
    "sorted",
    "index",
    "src",
    "value",
    "start_dim",
    "end_dim",
    "eps",
    "weight",
    "bias",
    "approximate",
    "descending",
    "min",
    "max",
    "input",
    "other",
    "exponent",
    "start",
    "end",
    "step",
    "source",
    "destination",
    "dims",
    "size",
    "chunks",
    "device",
    "requires_grad",
    "dim0",
    "dim1",
    "mask",
    "alpha",
    "normalized_shape",
    "split_size_or_sections",
    "fill_value",
    "inplace",
    "out_dtype",
    "layout",
    "memory_format",
    "non_blocking",
    "copy",
    "axis",
    "shape",
    "sizes",
    "mat2",
    "vec",
    "tensors",
    "equation",
    "condition",
    "beta",
    "repeats",
    "stable",
    "reduce",
    "vec2",
    "data",
    "p",
    "num_classes",
];

/// The interned keyword, if the evaluator understands it.
pub fn keyword(name: &str) -> Option<&'static str> {
    KEYWORDS.iter().copied().find(|k| *k == name)
}

fn ns_matches(row: Ns, wanted: Ns) -> bool {
    row == wanted || (row == Ns::Common && matches!(wanted, Ns::Torch | Ns::Method))
}

impl Builtin {
    pub fn info(self) -> &'static BuiltinInfo {
        &TABLE[self as usize]
    }

    /// The name shown in messages.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn class(self) -> Class {
        self.info().class
    }

    pub fn cost(self) -> Cost {
        self.info().cost
    }

    /// Computes each output element from the elements at the same (broadcast) position only.
    pub fn is_elementwise(self) -> bool {
        matches!(self.class(), Class::Unary | Class::Binary)
    }

    /// The builtin `name` denotes in `ns` (`Ns::Torch` and `Ns::Method` also see `Common`).
    pub fn lookup(ns: Ns, name: &str) -> Option<Builtin> {
        TABLE
            .iter()
            .find(|row| {
                row.names
                    .iter()
                    .any(|(rns, names)| ns_matches(*rns, ns) && names.contains(&name))
            })
            .map(|row| row.builtin)
    }

    /// Every name known in `ns`, sorted and deduplicated (for "did you mean").
    pub fn names(ns: Ns) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = TABLE
            .iter()
            .flat_map(|row| row.names.iter())
            .filter(|(rns, _)| ns_matches(*rns, ns))
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Builtin {
    /// The elementwise function a one-operand builtin computes on tensors (`gelu`'s
    /// `approximate=` is read by the caller): the one map the interpreter and the JIT dispatch
    /// by.
    pub fn unary_op(self) -> Option<UnaryOp> {
        use Builtin as B;
        Some(match self {
            B::Exp | B::MathExp => UnaryOp::Exp,
            B::Log | B::MathLog => UnaryOp::Log,
            B::Sqrt | B::MathSqrt => UnaryOp::Sqrt,
            B::Rsqrt => UnaryOp::Rsqrt,
            B::Sin | B::MathSin => UnaryOp::Sin,
            B::Cos | B::MathCos => UnaryOp::Cos,
            B::Tanh => UnaryOp::Tanh,
            B::Sigmoid => UnaryOp::Sigmoid,
            B::Relu => UnaryOp::Relu,
            B::Abs => UnaryOp::Abs,
            B::Erf => UnaryOp::Erf,
            B::Square => UnaryOp::Square,
            B::Reciprocal => UnaryOp::Reciprocal,
            B::Floor => UnaryOp::Floor,
            B::Ceil => UnaryOp::Ceil,
            B::Round => UnaryOp::Round,
            B::Sign => UnaryOp::Sign,
            B::Neg => UnaryOp::Neg,
            B::Silu => UnaryOp::Silu,
            B::LogicalNot => UnaryOp::LogicalNot,
            B::Gelu => UnaryOp::Gelu,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.builtin as usize, i, "{}", row.name);
        }
    }

    #[test]
    fn every_name_resolves_to_its_row_and_is_unambiguous() {
        for row in TABLE {
            for (ns, names) in row.names {
                let lookups: &[Ns] = match ns {
                    Ns::Common => &[Ns::Torch, Ns::Method],
                    other => std::slice::from_ref(other),
                };
                for &l in lookups {
                    for n in *names {
                        assert_eq!(Builtin::lookup(l, n), Some(row.builtin), "{l:?} {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn namespaces_keep_python_and_torch_apart() {
        assert_eq!(Builtin::lookup(Ns::Py, "max"), Some(Builtin::PyMax));
        assert_eq!(Builtin::lookup(Ns::Method, "max"), Some(Builtin::Max));
        assert_eq!(Builtin::lookup(Ns::Method, "float"), Some(Builtin::ToFloat));
        assert_eq!(Builtin::lookup(Ns::Torch, "float"), None);
        assert!(Builtin::names(Ns::Torch).contains(&"einsum"));
        assert!(!Builtin::names(Ns::Torch).contains(&"view"));
    }
}
