//! Broadcasting binary ops, comparisons and unary maps.

use std::borrow::Cow;

use crate::{DType, Data, Result, Tensor, TensorError, fmt_shape, limits};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// True division: the result is always floating point.
    Div,
    /// `//` (floor division, Python semantics).
    FloorDiv,
    /// `%` (remainder with the sign of the divisor, Python/torch semantics).
    Rem,
    Pow,
    /// `torch.maximum` / `torch.max(a, b)`.
    Max,
    Min,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::FloorDiv => "//",
            BinaryOp::Rem => "%",
            BinaryOp::Pow => "**",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// Elementwise functions of one operand: the one list the interpreter (`Tensor::unary`), the
/// native backend (`stepforge-jit`, whose helpers compute [`UnaryOp::f64_fn`] too, so both agree
/// bit for bit) and the executor's builtin dispatch share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Silu,
    /// Exact (erf) GELU, torch's default.
    Gelu,
    /// The tanh approximation (`approximate='tanh'`).
    GeluTanh,
    Relu,
    Erf,
    Square,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sign,
    LogicalNot,
    /// The value itself (a copy): the jit materialises views and `.float()` of a 0/1 bool
    /// with it.
    Identity,
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

impl UnaryOp {
    /// The function on f64 values, which f32 values go through (computed in f64, rounded once
    /// to f32). `LogicalNot` maps 0 to 1 and everything else to 0.
    pub fn f64_fn(self) -> fn(f64) -> f64 {
        match self {
            UnaryOp::Neg => |x| -x,
            UnaryOp::Abs => f64::abs,
            UnaryOp::Exp => f64::exp,
            UnaryOp::Log => f64::ln,
            UnaryOp::Sqrt => f64::sqrt,
            UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
            UnaryOp::Sin => f64::sin,
            UnaryOp::Cos => f64::cos,
            UnaryOp::Tanh => f64::tanh,
            UnaryOp::Sigmoid => sigmoid,
            UnaryOp::Silu => |x| x * sigmoid(x),
            UnaryOp::Gelu => gelu,
            UnaryOp::GeluTanh => gelu_tanh,
            UnaryOp::Relu => |x| if x > 0.0 { x } else { 0.0 },
            UnaryOp::Erf => libm::erf,
            UnaryOp::Square => |x| x * x,
            UnaryOp::Reciprocal => |x| 1.0 / x,
            UnaryOp::Floor => f64::floor,
            UnaryOp::Ceil => f64::ceil,
            // torch rounds half to even.
            UnaryOp::Round => f64::round_ties_even,
            UnaryOp::Sign => sign,
            UnaryOp::LogicalNot => |x| if x == 0.0 { 1.0 } else { 0.0 },
            UnaryOp::Identity => |x| x,
        }
    }
}

/// The shape two shapes broadcast to, or the torch-style error.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0usize; n];
    for i in 0..n {
        let da = if i < n - a.len() {
            1
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            1
        } else {
            b[i - (n - b.len())]
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(TensorError::invalid(format!(
                "shapes {} and {} cannot broadcast",
                fmt_shape(a),
                fmt_shape(b)
            )));
        };
    }
    Ok(out)
}

/// Strides of `shape` viewed as `out` (right-aligned), 0 on broadcast dims.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<isize> {
    let own = crate::contiguous_strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                own[i - lead] as isize
            }
        })
        .collect()
}

/// Applies `f` to aligned pairs of `a` (shape `sa`) and `b` (shape `sb`) broadcast to `out`.
fn zip_bcast<A: Copy, B: Copy, O>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out: &[usize],
    mut f: impl FnMut(A, B) -> O,
) -> Result<Vec<O>> {
    // The fast paths build in chunks with a look at the deadline between them.
    if sa == sb {
        return limits::collect_metered("an elementwise op", a.len(), |i| f(a[i], b[i]));
    }
    if a.len() == 1 && sb == out {
        let x = a[0];
        return limits::collect_metered("an elementwise op", b.len(), |i| f(x, b[i]));
    }
    if b.len() == 1 && sa == out {
        let y = b[0];
        return limits::collect_metered("an elementwise op", a.len(), |i| f(a[i], y));
    }
    let ta = broadcast_strides(sa, out);
    let tb = broadcast_strides(sb, out);
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    if n == 0 {
        return Ok(res);
    }
    let nd = out.len();
    let mut buf = [0usize; 8];
    let mut heap = Vec::new();
    let idx: &mut [usize] = if nd <= buf.len() {
        &mut buf[..nd]
    } else {
        heap.resize(nd, 0);
        &mut heap
    };
    let (mut oa, mut ob) = (0isize, 0isize);
    for k in 0..n {
        if k % (limits::CHECK_EVERY_UNITS as usize) == 0 {
            limits::check_deadline("an elementwise op")?;
        }
        // Offsets stay inside the inputs by construction of the broadcast strides.
        res.push(f(a[oa as usize], b[ob as usize]));
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oa += ta[d];
            ob += tb[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= ta[d] * out[d] as isize;
            ob -= tb[d] * out[d] as isize;
            idx[d] = 0;
        }
    }
    Ok(res)
}

fn py_floordiv_i64(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn py_rem_i64(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

fn py_rem_f32(a: f32, b: f32) -> f32 {
    let r = a % b;
    if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        r + b
    } else {
        r
    }
}

fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

impl Tensor {
    pub(crate) fn cast_cow(&self, dtype: DType) -> Cow<'_, Tensor> {
        if self.dtype() == dtype {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(self.to_dtype(dtype))
        }
    }

    /// `expand` to `shape` and materialise.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let out = broadcast_shapes(&self.shape, shape)?;
        if out != shape {
            return Err(TensorError::invalid(format!(
                "shape {} cannot be broadcast to {}",
                fmt_shape(&self.shape),
                fmt_shape(shape)
            )));
        }
        if out == self.shape {
            return Ok(self.clone());
        }
        limits::checked_numel(&out)?;
        let strides = broadcast_strides(&self.shape, &out);
        self.view_copy(out, &strides, 0)
    }

    /// A broadcasting binary op with torch's type promotion.
    pub fn binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let out = broadcast_shapes(&self.shape, &other.shape)?;
        limits::checked_numel(&out)?;
        let common = self.dtype().promote(other.dtype());
        let dtype = match op {
            BinaryOp::Div => DType::F32,
            BinaryOp::Max | BinaryOp::Min => common,
            _ => common.max(DType::I64),
        };
        let a = self.cast_cow(dtype);
        let b = other.cast_cow(dtype);
        let (sa, sb) = (&self.shape[..], &other.shape[..]);
        let data = match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => Data::F32(crate::F32Buf::from(match op {
                BinaryOp::Add => zip_bcast(x, sa, y, sb, &out, |p, q| p + q)?,
                BinaryOp::Sub => zip_bcast(x, sa, y, sb, &out, |p, q| p - q)?,
                BinaryOp::Mul => zip_bcast(x, sa, y, sb, &out, |p, q| p * q)?,
                BinaryOp::Div => zip_bcast(x, sa, y, sb, &out, |p, q| p / q)?,
                BinaryOp::FloorDiv => zip_bcast(x, sa, y, sb, &out, |p, q| (p / q).floor())?,
                BinaryOp::Rem => zip_bcast(x, sa, y, sb, &out, py_rem_f32)?,
                BinaryOp::Pow => zip_bcast(x, sa, y, sb, &out, |p, q| {
                    f64::from(p).powf(f64::from(q)) as f32
                })?,
                BinaryOp::Max => zip_bcast(x, sa, y, sb, &out, nan_max)?,
                BinaryOp::Min => zip_bcast(x, sa, y, sb, &out, nan_min)?,
            })),
            (Data::I64(x), Data::I64(y)) => {
                if matches!(op, BinaryOp::FloorDiv | BinaryOp::Rem) && y.contains(&0) {
                    return Err(TensorError::invalid("integer division by zero"));
                }
                if op == BinaryOp::Pow && y.iter().any(|&e| e < 0) {
                    return Err(TensorError::invalid(
                        "Integers to negative integer powers are not allowed",
                    ));
                }
                Data::I64(match op {
                    BinaryOp::Add => zip_bcast(x, sa, y, sb, &out, i64::wrapping_add)?,
                    BinaryOp::Sub => zip_bcast(x, sa, y, sb, &out, i64::wrapping_sub)?,
                    BinaryOp::Mul => zip_bcast(x, sa, y, sb, &out, i64::wrapping_mul)?,
                    BinaryOp::FloorDiv => zip_bcast(x, sa, y, sb, &out, py_floordiv_i64)?,
                    BinaryOp::Rem => zip_bcast(x, sa, y, sb, &out, py_rem_i64)?,
                    BinaryOp::Pow => zip_bcast(x, sa, y, sb, &out, |p, q| {
                        p.wrapping_pow(u32::try_from(q).unwrap_or(u32::MAX))
                    })?,
                    BinaryOp::Max => zip_bcast(x, sa, y, sb, &out, i64::max)?,
                    BinaryOp::Min => zip_bcast(x, sa, y, sb, &out, i64::min)?,
                    BinaryOp::Div => {
                        return Err(TensorError::invalid(
                            "internal error: integer true division",
                        ));
                    }
                })
            }
            (Data::Bool(x), Data::Bool(y)) => Data::Bool(match op {
                BinaryOp::Max => zip_bcast(x, sa, y, sb, &out, |p, q| p | q)?,
                BinaryOp::Min => zip_bcast(x, sa, y, sb, &out, |p, q| p & q)?,
                _ => {
                    return Err(TensorError::invalid(format!(
                        "operator {} is not supported on bool tensors",
                        op.name()
                    )));
                }
            }),
            _ => return Err(TensorError::invalid("internal error: dtype promotion")),
        };
        Ok(Tensor::raw(out, data))
    }

    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, o)
    }

    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, o)
    }

    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, o)
    }

    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, o)
    }

    pub fn pow(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Pow, o)
    }

    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Max, o)
    }

    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Min, o)
    }

    /// A broadcasting comparison; the result is bool.
    pub fn compare(&self, op: CmpOp, other: &Tensor) -> Result<Tensor> {
        let out = broadcast_shapes(&self.shape, &other.shape)?;
        limits::checked_numel(&out)?;
        let dtype = self.dtype().promote(other.dtype());
        let a = self.cast_cow(dtype);
        let b = other.cast_cow(dtype);
        let (sa, sb) = (&self.shape[..], &other.shape[..]);
        fn cmp<T: PartialOrd + Copy>(op: CmpOp) -> impl Fn(T, T) -> bool {
            move |p: T, q: T| match op {
                CmpOp::Lt => p < q,
                CmpOp::Le => p <= q,
                CmpOp::Gt => p > q,
                CmpOp::Ge => p >= q,
                CmpOp::Eq => p == q,
                CmpOp::Ne => p != q,
            }
        }
        let data = match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => zip_bcast(x, sa, y, sb, &out, cmp::<f32>(op))?,
            (Data::I64(x), Data::I64(y)) => zip_bcast(x, sa, y, sb, &out, cmp::<i64>(op))?,
            (Data::Bool(x), Data::Bool(y)) => zip_bcast(x, sa, y, sb, &out, cmp::<bool>(op))?,
            _ => return Err(TensorError::invalid("internal error: dtype promotion")),
        };
        Ok(Tensor::raw(out, Data::Bool(data)))
    }

    /// `torch.where(cond, a, b)`.
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let shape = broadcast_shapes(&broadcast_shapes(&cond.shape, &a.shape)?, &b.shape)?;
        limits::checked_numel(&shape)?;
        let dtype = a.dtype().promote(b.dtype());
        let c = cond.to_dtype(DType::Bool).broadcast_to(&shape)?;
        let a = a.cast_cow(dtype).broadcast_to(&shape)?;
        let b = b.cast_cow(dtype).broadcast_to(&shape)?;
        let Data::Bool(c) = &c.data else {
            return Err(TensorError::invalid("internal error: where condition"));
        };
        fn pick<T: Copy>(c: &[bool], a: &[T], b: &[T]) -> Vec<T> {
            c.iter()
                .zip(a.iter().zip(b))
                .map(|(&c, (&x, &y))| if c { x } else { y })
                .collect()
        }
        let data = match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => Data::F32(pick(c, x, y).into()),
            (Data::I64(x), Data::I64(y)) => Data::I64(pick(c, x, y)),
            (Data::Bool(x), Data::Bool(y)) => Data::Bool(pick(c, x, y)),
            _ => return Err(TensorError::invalid("internal error: dtype promotion")),
        };
        Ok(Tensor::raw(shape, data))
    }

    /// Elementwise unary op. Floating-point functions of integer tensors give f32 (torch).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        // The result is as large as the input: a large one looks at the deadline first.
        limits::checked_numel(&self.shape)?;
        let shape = self.shape.clone();
        match (op, &self.data) {
            (UnaryOp::Identity, _) => Ok(self.clone()),
            (UnaryOp::LogicalNot, _) => {
                let b = self.cast_cow(DType::Bool);
                let Data::Bool(v) = &b.data else {
                    return Err(TensorError::invalid("internal error: logical_not"));
                };
                Ok(Tensor::raw(
                    shape,
                    Data::Bool(v.iter().map(|&x| !x).collect()),
                ))
            }
            (UnaryOp::Neg, Data::Bool(_)) => Err(TensorError::invalid(
                "negation, the `-` operator, on a bool tensor is not supported",
            )),
            (
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Relu
                | UnaryOp::Square
                | UnaryOp::Sign
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round,
                Data::I64(v),
            ) => {
                let f: fn(i64) -> i64 = match op {
                    UnaryOp::Neg => i64::wrapping_neg,
                    UnaryOp::Abs => i64::wrapping_abs,
                    UnaryOp::Relu => |x| x.max(0),
                    UnaryOp::Square => |x| x.wrapping_mul(x),
                    UnaryOp::Sign => i64::signum,
                    _ => |x| x,
                };
                Ok(Tensor::raw(
                    shape,
                    Data::I64(v.iter().map(|&x| f(x)).collect()),
                ))
            }
            _ => {
                let f = op.f64_fn();
                let v: Vec<f32> = match &self.data {
                    Data::F32(v) => v.iter().map(|&x| f(f64::from(x)) as f32).collect(),
                    _ => self.to_f64_vec().into_iter().map(|x| f(x) as f32).collect(),
                };
                Ok(Tensor::raw(shape, Data::F32(v.into())))
            }
        }
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }

    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }

    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }

    /// `torch.clamp(x, min, max)`.
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        let mut t = self.clone();
        match &mut t.data {
            Data::F32(v) => {
                for x in v {
                    if let Some(lo) = min
                        && f64::from(*x) < lo
                    {
                        *x = lo as f32;
                    }
                    if let Some(hi) = max
                        && f64::from(*x) > hi
                    {
                        *x = hi as f32;
                    }
                }
            }
            Data::I64(v) => {
                for x in v {
                    if let Some(lo) = min
                        && (*x as f64) < lo
                    {
                        *x = lo as i64;
                    }
                    if let Some(hi) = max
                        && (*x as f64) > hi
                    {
                        *x = hi as i64;
                    }
                }
            }
            Data::Bool(_) => {
                return Err(TensorError::invalid(
                    "clamp is not supported on bool tensors",
                ));
            }
        }
        Ok(t)
    }
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub(crate) fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}
