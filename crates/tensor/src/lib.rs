//! `stepforge-tensor`: dense f32/i64/bool tensors with torch semantics.
//!
//! This crate owns the numeric core that element functions, `global` blocks and reference
//! snippets run on (DESIGN §7): contiguous row-major tensors, torch's broadcasting and type
//! promotion (bool < i64 < f32), and the operations the benchmark uses (einsum, matmul, topk,
//! scatter, softmax, GELU, reductions, shape manipulation, indexing, layer norm).
//!
//! Rules it keeps:
//! - Every operation returns `Result<_, TensorError>`; nothing panics on bad input (shapes that
//!   cannot broadcast, out-of-range dims, absurd sizes).
//! - Every allocation is sized-checked first against a per-thread limit ([`limits`]), so an
//!   untrusted `torch.ones(10**12)` fails in microseconds with [`ErrorKind::TooLarge`].
//! - Reductions accumulate in f64 (more exact than torch's f32, which the verification
//!   tolerance allows for). Contractions go through a blocked SIMD GEMM (`matrixmultiply`,
//!   through ndarray's safe `general_mat_mul`): f32 operands accumulate in f32 like torch's,
//!   unless the thread asked for f64 ([`AccumulationGuard`], what references use); integer
//!   operands accumulate in f64. No `unsafe` here: the issue keeps it to the jit's runtime
//!   module. (The `gemm` crate's dgemm measured ~5% faster end to end on the top-1 MoE
//!   reference, within noise under load, and has no safe API, so it stays a bench comparison.)
//! - One list of elementwise one-operand functions ([`UnaryOp`], with its f64 table
//!   [`UnaryOp::f64_fn`]) serves the interpreter and the native backend.
//!
//! It does no I/O and knows nothing about the syntax or the evaluator.

mod elementwise;
mod index;
pub mod limits;
mod linalg;
mod nn;
mod reduce;
mod shape;

use std::fmt;

pub use elementwise::{BinaryOp, CmpOp, UnaryOp, broadcast_shapes};
pub use index::Index;
pub use linalg::{Accumulation, AccumulationGuard, accumulation};
pub use reduce::topk_value_cmp;

/// Element type. The order is torch's promotion order for the three kinds we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DType {
    Bool,
    I64,
    F32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "torch.bool",
            DType::I64 => "torch.int64",
            DType::F32 => "torch.float32",
        }
    }

    /// The result type of a binary arithmetic op (torch's category promotion).
    pub fn promote(self, other: DType) -> DType {
        self.max(other)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The storage of a tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    I64(Vec<i64>),
    F32(F32Buf),
}

/// f32 storage, shared between tensors (and with a caller's `Arc<Vec<f32>>`, see
/// [`Tensor::from_f32_shared`]) until one of them writes: writes copy first
/// (`Arc::make_mut`). At model dims an input tensor is hundreds of megabytes, and the
/// verifier hands the same data to the references and to the program.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct F32Buf(std::sync::Arc<Vec<f32>>);

impl F32Buf {
    /// The shared buffer itself (no copy).
    pub fn shared(&self) -> std::sync::Arc<Vec<f32>> {
        std::sync::Arc::clone(&self.0)
    }

    /// The values as an owned `Vec` (no copy when this is the only reference).
    pub fn into_vec(self) -> Vec<f32> {
        std::sync::Arc::unwrap_or_clone(self.0)
    }
}

impl From<Vec<f32>> for F32Buf {
    fn from(v: Vec<f32>) -> F32Buf {
        F32Buf(std::sync::Arc::new(v))
    }
}

impl FromIterator<f32> for F32Buf {
    fn from_iter<I: IntoIterator<Item = f32>>(it: I) -> F32Buf {
        F32Buf::from(it.into_iter().collect::<Vec<f32>>())
    }
}

impl std::ops::Deref for F32Buf {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for F32Buf {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl<'a> IntoIterator for &'a F32Buf {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a mut F32Buf {
    type Item = &'a mut f32;
    type IntoIter = std::slice::IterMut<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        std::sync::Arc::make_mut(&mut self.0).iter_mut()
    }
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::Bool(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Data::Bool(_) => DType::Bool,
            Data::I64(_) => DType::I64,
            Data::F32(_) => DType::F32,
        }
    }
}

/// A single element, as returned by [`Tensor::item`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Bool(bool),
    I64(i64),
    F32(f32),
}

impl Scalar {
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => f64::from(u8::from(b)),
            Scalar::I64(i) => i as f64,
            Scalar::F32(x) => f64::from(x),
        }
    }

    pub fn truthy(self) -> bool {
        match self {
            Scalar::Bool(b) => b,
            Scalar::I64(i) => i != 0,
            Scalar::F32(x) => x != 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad shapes, dims, dtypes or arguments.
    Invalid,
    /// A result would exceed the element or work limit of [`limits`].
    TooLarge,
}

/// An operation failed; `message` is one readable line in torch's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TensorError {
    pub fn invalid(message: impl Into<String>) -> TensorError {
        TensorError {
            kind: ErrorKind::Invalid,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> TensorError {
        TensorError {
            kind: ErrorKind::TooLarge,
            message: message.into(),
        }
    }
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TensorError {}

pub type Result<T> = std::result::Result<T, TensorError>;

/// Formats a shape the way torch users read it: `(3, 4)`, `(5,)`, `()`.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [a] => format!("({a},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// A dense, contiguous, row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// Builds a tensor, checking that `data` has exactly as many elements as `shape` says.
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Tensor> {
        let n = limits::checked_numel(&shape)?;
        if n != data.len() {
            return Err(TensorError::invalid(format!(
                "shape {} needs {n} elements but {} were given",
                fmt_shape(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, Data::F32(data.into()))
    }

    /// A tensor over `data` without copying it (it is copied only if the tensor is written).
    pub fn from_f32_shared(shape: Vec<usize>, data: std::sync::Arc<Vec<f32>>) -> Result<Tensor> {
        Tensor::new(shape, Data::F32(F32Buf(data)))
    }

    /// The f32 buffer itself, shared (no copy); `None` for other dtypes.
    pub fn f32_shared(&self) -> Option<std::sync::Arc<Vec<f32>>> {
        match &self.data {
            Data::F32(v) => Some(v.shared()),
            _ => None,
        }
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Tensor::new(shape, Data::I64(data))
    }

    pub fn from_bool(shape: Vec<usize>, data: Vec<bool>) -> Result<Tensor> {
        Tensor::new(shape, Data::Bool(data))
    }

    /// Internal constructor for results whose size the caller already validated.
    pub(crate) fn raw(shape: Vec<usize>, data: Data) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn scalar_f32(x: f32) -> Tensor {
        Tensor::raw(Vec::new(), Data::F32(vec![x].into()))
    }

    pub fn scalar_i64(x: i64) -> Tensor {
        Tensor::raw(Vec::new(), Data::I64(vec![x]))
    }

    pub fn scalar_bool(x: bool) -> Tensor {
        Tensor::raw(Vec::new(), Data::Bool(vec![x]))
    }

    pub fn scalar(s: Scalar) -> Tensor {
        match s {
            Scalar::Bool(b) => Tensor::scalar_bool(b),
            Scalar::I64(i) => Tensor::scalar_i64(i),
            Scalar::F32(x) => Tensor::scalar_f32(x),
        }
    }

    /// `torch.full(shape, value, dtype)`.
    pub fn full(shape: &[usize], value: Scalar, dtype: DType) -> Result<Tensor> {
        let n = limits::checked_numel(shape)?;
        let data = match dtype {
            DType::F32 => Data::F32(vec![value.as_f64() as f32; n].into()),
            DType::I64 => Data::I64(vec![
                match value {
                    Scalar::F32(x) => x as i64,
                    Scalar::I64(i) => i,
                    Scalar::Bool(b) => i64::from(b),
                };
                n
            ]),
            DType::Bool => Data::Bool(vec![value.truthy(); n]),
        };
        Ok(Tensor::raw(shape.to_vec(), data))
    }

    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, Scalar::I64(0), dtype)
    }

    pub fn ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, Scalar::I64(1), dtype)
    }

    pub fn zeros_like(&self, dtype: Option<DType>) -> Result<Tensor> {
        Tensor::zeros(&self.shape, dtype.unwrap_or(self.dtype()))
    }

    pub fn ones_like(&self, dtype: Option<DType>) -> Result<Tensor> {
        Tensor::ones(&self.shape, dtype.unwrap_or(self.dtype()))
    }

    /// `torch.arange(start, end, step)`; `dtype` defaults to i64 when every bound is an integer
    /// (the caller says so with `ints`), else f32.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(TensorError::invalid(
                "arange: step must be nonzero and bounds finite",
            ));
        }
        if (end - start) / step < 0.0 {
            return Err(TensorError::invalid(
                "arange: upper bound and larger bound inconsistent with step sign",
            ));
        }
        let count = ((end - start) / step).ceil();
        if count > limits::max_numel() as f64 {
            return Err(TensorError::too_large(format!(
                "arange would create {count} elements (limit {})",
                limits::max_numel()
            )));
        }
        let n = count as usize;
        let data = match dtype {
            DType::F32 => Data::F32(
                limits::collect_metered("arange", n, |i| (start + i as f64 * step) as f32)?.into(),
            ),
            DType::I64 => Data::I64(limits::collect_metered("arange", n, |i| {
                (start + i as f64 * step) as i64
            })?),
            DType::Bool => {
                return Err(TensorError::invalid(
                    "arange: dtype torch.bool is not supported",
                ));
            }
        };
        Ok(Tensor::raw(vec![n], data))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            Data::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The elements converted to f32 (bools are 0/1).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.to_vec(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::Bool(v) => v.iter().map(|&b| f32::from(u8::from(b))).collect(),
        }
    }

    /// The elements converted to f64 (for comparison and accumulation).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
        }
    }

    /// Element `i` of the flat data.
    pub fn get_flat(&self, i: usize) -> Option<Scalar> {
        match &self.data {
            Data::F32(v) => v.get(i).map(|&x| Scalar::F32(x)),
            Data::I64(v) => v.get(i).map(|&x| Scalar::I64(x)),
            Data::Bool(v) => v.get(i).map(|&x| Scalar::Bool(x)),
        }
    }

    /// `x.item()`: the only element of a one-element tensor.
    pub fn item(&self) -> Result<Scalar> {
        if self.numel() != 1 {
            return Err(TensorError::invalid(format!(
                "a Tensor with {} elements cannot be converted to Scalar",
                self.numel()
            )));
        }
        self.get_flat(0)
            .ok_or_else(|| TensorError::invalid("empty tensor"))
    }

    /// Python truthiness: only defined for one-element tensors (torch's rule).
    pub fn truthy(&self) -> Result<bool> {
        if self.numel() != 1 {
            return Err(TensorError::invalid(format!(
                "Boolean value of Tensor with {} values is ambiguous",
                self.numel()
            )));
        }
        Ok(self.item()?.truthy())
    }

    /// `x.to(dtype)`.
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        let data = match (dtype, &self.data) {
            (DType::F32, _) => Data::F32(self.to_f32_vec().into()),
            (DType::I64, Data::F32(v)) => Data::I64(v.iter().map(|&x| x as i64).collect()),
            (DType::I64, Data::Bool(v)) => Data::I64(v.iter().map(|&b| i64::from(b)).collect()),
            (DType::I64, Data::I64(v)) => Data::I64(v.clone()),
            (DType::Bool, Data::F32(v)) => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
            (DType::Bool, Data::I64(v)) => Data::Bool(v.iter().map(|&x| x != 0).collect()),
            (DType::Bool, Data::Bool(v)) => Data::Bool(v.clone()),
        };
        Tensor::raw(self.shape.clone(), data)
    }

    /// Like [`Tensor::to_dtype`] but consumes `self`, avoiding a copy when the dtype matches.
    pub fn into_dtype(self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            self
        } else {
            self.to_dtype(dtype)
        }
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        contiguous_strides(&self.shape)
    }
}

pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Normalises a possibly negative dim for a tensor of rank `ndim` (torch wraps 0-d tensors as
/// if they had one dim).
pub fn norm_dim(dim: i64, ndim: usize) -> Result<usize> {
    let n = ndim.max(1) as i64;
    let d = if dim < 0 { dim + n } else { dim };
    if d < 0 || d >= n {
        return Err(TensorError::invalid(format!(
            "Dimension out of range (expected to be in range of [{}, {}], but got {dim})",
            -n,
            n - 1
        )));
    }
    Ok(d as usize)
}

/// Like [`norm_dim`] for positions where a new dim is inserted (`unsqueeze`, `stack`).
pub fn norm_insert_dim(dim: i64, ndim: usize) -> Result<usize> {
    let n = ndim as i64 + 1;
    let d = if dim < 0 { dim + n } else { dim };
    if d < 0 || d >= n {
        return Err(TensorError::invalid(format!(
            "Dimension out of range (expected to be in range of [{}, {}], but got {dim})",
            -n,
            n - 1
        )));
    }
    Ok(d as usize)
}

/// Calls `f(offset)` for every index of `shape` in row-major order, where the offset of an index
/// is `offset + Σ idx[d]·strides[d]`. Strides may be 0 (broadcast) or negative (reversed slice).
pub(crate) fn for_each_offset(
    shape: &[usize],
    strides: &[isize],
    offset: isize,
    mut f: impl FnMut(isize),
) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let nd = shape.len();
    if nd == 1 {
        let mut off = offset;
        for _ in 0..n {
            f(off);
            off += strides[0];
        }
        return;
    }
    // Small ranks (all real ones) keep the odometer on the stack.
    let mut buf = [0usize; 8];
    let mut heap = Vec::new();
    let idx: &mut [usize] = if nd <= buf.len() {
        &mut buf[..nd]
    } else {
        heap.resize(nd, 0);
        &mut heap
    };
    let mut off = offset;
    for _ in 0..n {
        f(off);
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
}

/// Copies the elements of a strided view of `src` into a new contiguous vector.
pub(crate) fn gather_view<T: Copy>(
    src: &[T],
    shape: &[usize],
    strides: &[isize],
    offset: isize,
) -> Result<Vec<T>> {
    let n = limits::checked_numel(shape)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    // A view that is one contiguous run of the source (`x[1]`, a leading-dim slice) is a copy.
    let mut expect = 1isize;
    let contiguous = shape.iter().zip(strides).rev().all(|(&d, &st)| {
        let ok = d == 1 || st == expect;
        expect = expect.saturating_mul(d as isize);
        ok
    });
    if contiguous && let Ok(start) = usize::try_from(offset) {
        return match src.get(start..start.saturating_add(n)) {
            Some(run) => Ok(run.to_vec()),
            None => Err(TensorError::invalid("internal error: view out of bounds")),
        };
    }
    let mut out = Vec::with_capacity(n);
    let mut bad = false;
    for_each_offset(shape, strides, offset, |o| {
        match usize::try_from(o).ok().and_then(|o| src.get(o)) {
            Some(&v) => out.push(v),
            None => bad = true,
        }
    });
    if bad {
        return Err(TensorError::invalid("internal error: view out of bounds"));
    }
    Ok(out)
}

impl Tensor {
    /// Materialises a strided view of this tensor's data.
    pub(crate) fn view_copy(
        &self,
        shape: Vec<usize>,
        strides: &[isize],
        offset: isize,
    ) -> Result<Tensor> {
        let data = match &self.data {
            Data::F32(v) => Data::F32(gather_view(v, &shape, strides, offset)?.into()),
            Data::I64(v) => Data::I64(gather_view(v, &shape, strides, offset)?),
            Data::Bool(v) => Data::Bool(gather_view(v, &shape, strides, offset)?),
        };
        Ok(Tensor::raw(shape, data))
    }

    pub(crate) fn istrides(&self) -> Vec<isize> {
        self.strides().iter().map(|&s| s as isize).collect()
    }
}

#[cfg(test)]
mod tests;
