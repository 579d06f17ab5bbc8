//! Contractions: `matmul` in every torch rank combination, `bmm`, and general `einsum`.

use std::cell::Cell;

use ndarray::linalg::{general_mat_mul, general_mat_vec_mul};
use ndarray::{ArrayView2, ArrayViewMut1, ArrayViewMut2, LinalgScalar};

use crate::elementwise::{broadcast_shapes, broadcast_strides};
use crate::{DType, Data, Result, Tensor, TensorError, fmt_shape, limits};

fn out_data(dtype: DType, acc: Vec<f64>) -> Data {
    match dtype {
        DType::F32 => Data::F32(acc.into_iter().map(|x| x as f32).collect()),
        _ => Data::I64(acc.into_iter().map(|x| x as i64).collect()),
    }
}

impl Tensor {
    /// `a @ b` / `torch.matmul`: 1-d·1-d (dot), vector·matrix, matrix·vector, matrix·matrix,
    /// and batched with broadcasting of the batch dims.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = (self, other);
        if a.ndim() == 0 || b.ndim() == 0 {
            return Err(TensorError::invalid(
                "both arguments to matmul need to be at least 1D",
            ));
        }
        let a1 = a.ndim() == 1;
        let b1 = b.ndim() == 1;
        let sa: Vec<usize> = if a1 {
            vec![1, a.shape[0]]
        } else {
            a.shape.clone()
        };
        let sb: Vec<usize> = if b1 {
            vec![b.shape[0], 1]
        } else {
            b.shape.clone()
        };
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(TensorError::invalid(format!(
                "matmul: shapes {} and {} cannot be multiplied ({k} != {k2})",
                fmt_shape(&a.shape),
                fmt_shape(&b.shape)
            )));
        }
        let ba = &sa[..sa.len() - 2];
        let bb = &sb[..sb.len() - 2];
        let batch = broadcast_shapes(ba, bb).map_err(|_| {
            TensorError::invalid(format!(
                "matmul: batch dims of {} and {} cannot broadcast",
                fmt_shape(&a.shape),
                fmt_shape(&b.shape)
            ))
        })?;
        let mut full = batch.clone();
        full.push(m);
        full.push(n);
        limits::checked_numel(&full)?;
        let nbatch: usize = batch.iter().product();
        limits::check_work("matmul", &[nbatch, m, n, k])?;
        // Offsets of each batch's matrix in a and b.
        let sta = broadcast_strides(ba, &batch);
        let stb = broadcast_strides(bb, &batch);
        let mut offs_a = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &sta, 0, |o| offs_a.push(o as usize * m * k));
        let mut offs_b = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &stb, 0, |o| offs_b.push(o as usize * k * n));
        let data = contract(a, b, &offs_a, &offs_b, MatDims { m, k, n })?;
        let mut shape = batch;
        if !a1 {
            shape.push(m);
        }
        if !b1 {
            shape.push(n);
        }
        Ok(Tensor::raw(shape, data))
    }

    /// `torch.bmm`: strictly (b, n, m) × (b, m, p).
    pub fn bmm(&self, other: &Tensor) -> Result<Tensor> {
        if self.ndim() != 3 || other.ndim() != 3 || self.shape[0] != other.shape[0] {
            return Err(TensorError::invalid(format!(
                "bmm expects two 3-d tensors with the same batch size, got {} and {}",
                fmt_shape(&self.shape),
                fmt_shape(&other.shape)
            )));
        }
        self.matmul(other)
    }

    /// `torch.einsum(equation, operands)`: any equation with repeated (diagonal) and summed
    /// labels, `...`, and the implicit output form; size-1 dims broadcast.
    pub fn einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let specs: Vec<&str> = lhs.split(',').collect();
        if specs.len() != operands.len() {
            return Err(TensorError::invalid(format!(
                "einsum(): {} operands were given but the equation '{equation}' has {}",
                operands.len(),
                specs.len()
            )));
        }
        let parsed: Vec<Vec<Item>> = specs
            .iter()
            .map(|s| parse_subscripts(s, equation))
            .collect::<Result<_>>()?;
        let labels = Labels::of(&parsed, operands)?;
        let out_labels = labels.output(rhs, equation)?;
        let summed: Vec<usize> = (0..labels.size.len())
            .filter(|l| labels.size[*l].is_some() && !out_labels.contains(l))
            .collect();
        let order: Vec<usize> = out_labels.iter().chain(&summed).copied().collect();
        let sizes: Vec<usize> = order.iter().map(|&l| labels.size[l].unwrap_or(1)).collect();
        let out_shape: Vec<usize> = sizes[..out_labels.len()].to_vec();
        limits::checked_numel(&out_shape)?;
        limits::check_work("einsum", &sizes)?;
        if let [a, b] = operands
            && let [la, lb] = &labels.dims[..]
            && let Some(r) = einsum2_as_matmul(a, la, b, lb, &out_labels)?
        {
            return Ok(r);
        }
        einsum_loop(operands, &labels.dims, &order, &sizes, out_shape)
    }
}

/// Label ids of einsum subscripts: `A`–`Z` are 0–25, `a`–`z` 26–51, and the dims an ellipsis
/// stands for are numbered from `ELL` on, right-aligned across operands.
const ELL: usize = 52;

/// One item of an operand's subscripts.
enum Item {
    L(usize),
    Ell,
}

fn parse_subscripts(spec: &str, equation: &str) -> Result<Vec<Item>> {
    let letter = |c: char| -> Result<usize> {
        match c {
            'A'..='Z' => Ok(c as usize - 'A' as usize),
            'a'..='z' => Ok(26 + c as usize - 'a' as usize),
            _ => Err(TensorError::invalid(format!(
                "einsum(): invalid subscript '{c}' in equation '{equation}'"
            ))),
        }
    };
    let mut items = Vec::new();
    let mut rest = spec;
    let mut seen_ell = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if seen_ell {
                return Err(TensorError::invalid(
                    "einsum(): more than one ellipsis in a subscript",
                ));
            }
            seen_ell = true;
            items.push(Item::Ell);
            rest = r;
        } else {
            let mut cs = rest.chars();
            let c = cs.next().unwrap_or('?');
            items.push(Item::L(letter(c)?));
            rest = cs.as_str();
        }
    }
    Ok(items)
}

/// The labels of an einsum's operands: per operand the label of each dim, and per label its
/// (broadcast) size and how many operand dims carry it.
struct Labels {
    dims: Vec<Vec<usize>>,
    size: Vec<Option<usize>>,
    count: Vec<usize>,
    /// Dims the widest ellipsis stands for.
    emax: usize,
}

impl Labels {
    fn of(parsed: &[Vec<Item>], operands: &[&Tensor]) -> Result<Labels> {
        let mut ell_dims = vec![0usize; operands.len()];
        for (i, (items, t)) in parsed.iter().zip(operands).enumerate() {
            let nl = items.iter().filter(|x| matches!(x, Item::L(_))).count();
            let has_ell = items.iter().any(|x| matches!(x, Item::Ell));
            if (!has_ell && nl != t.ndim()) || (has_ell && nl > t.ndim()) {
                return Err(TensorError::invalid(format!(
                    "einsum(): the number of subscripts in the equation ({nl}) does not match the number of dimensions ({}) for operand {i}{}",
                    t.ndim(),
                    if has_ell {
                        " and an ellipsis"
                    } else {
                        " and no ellipsis was given"
                    }
                )));
            }
            ell_dims[i] = t.ndim() - nl;
        }
        let emax = ell_dims.iter().copied().max().unwrap_or(0);
        let mut lab = Labels {
            dims: Vec::with_capacity(operands.len()),
            size: vec![None; ELL + emax],
            count: vec![0; ELL + emax],
            emax,
        };
        for (oi, (items, t)) in parsed.iter().zip(operands).enumerate() {
            let mut labels = Vec::with_capacity(t.ndim());
            for it in items {
                match it {
                    Item::L(l) => labels.push(*l),
                    Item::Ell => {
                        labels.extend((0..ell_dims[oi]).map(|j| ELL + emax - ell_dims[oi] + j))
                    }
                }
            }
            for (d, &l) in labels.iter().enumerate() {
                lab.add(l, t.shape[d], oi)?;
            }
            lab.dims.push(labels);
        }
        Ok(lab)
    }

    /// One more operand dim of size `s` carries label `l`: sizes must agree or broadcast.
    fn add(&mut self, l: usize, s: usize, oi: usize) -> Result<()> {
        self.count[l] += 1;
        self.size[l] = match self.size[l] {
            None | Some(1) => Some(s),
            Some(prev) if s == 1 || s == prev => Some(prev),
            Some(prev) => {
                return Err(TensorError::invalid(format!(
                    "einsum(): operands do not broadcast: subscript '{}' has size {s} for operand {oi} which does not broadcast with previously seen size {prev}",
                    label_name(l)
                )));
            }
        };
        Ok(())
    }

    /// The output's labels: the explicit `-> rhs`, or (implicit form) the ellipsis dims then
    /// every label used once, in alphabetical order.
    fn output(&self, rhs: Option<&str>, equation: &str) -> Result<Vec<usize>> {
        let ell = ELL..ELL + self.emax;
        let Some(r) = rhs else {
            let mut out: Vec<usize> = ell.collect();
            out.extend((0..ELL).filter(|&l| self.count[l] == 1));
            return Ok(out);
        };
        let mut out = Vec::new();
        for it in parse_subscripts(r, equation)? {
            match it {
                Item::L(l) => {
                    if self.size[l].is_none() {
                        return Err(TensorError::invalid(format!(
                            "einsum(): output subscript '{}' does not appear in the equation for any input operand",
                            label_name(l)
                        )));
                    }
                    if out.contains(&l) {
                        return Err(TensorError::invalid(format!(
                            "einsum(): output subscript '{}' appears more than once in the output",
                            label_name(l)
                        )));
                    }
                    out.push(l);
                }
                Item::Ell => out.extend(ell.clone()),
            }
        }
        Ok(out)
    }
}

/// The general einsum: one loop over the output labels then the summed ones (`order`, of
/// `sizes`), multiplying one value per operand at every step, accumulated in f64.
fn einsum_loop(
    operands: &[&Tensor],
    dim_labels: &[Vec<usize>],
    order: &[usize],
    sizes: &[usize],
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    // Its work is the loop size times the operand count: a 16-operand einsum of size-4 vectors
    // (2^32 steps, 2^36 multiplies) is refused here before it starts.
    let mut weighted = sizes.to_vec();
    weighted.push(operands.len());
    limits::check_work("einsum", &weighted)?;
    let mut meter = limits::Meter::new("einsum")?;
    let out_n: usize = out_shape.iter().product();
    let inner: usize = sizes[out_shape.len()..].iter().product();
    // Per operand, per position in `order`: the stride (sum over repeated labels, 0 where
    // the operand lacks the label or broadcasts it).
    let mut strides: Vec<Vec<isize>> = Vec::with_capacity(operands.len());
    for (t, labels) in operands.iter().zip(dim_labels) {
        let own = t.strides();
        let mut st = vec![0isize; order.len()];
        for (d, &l) in labels.iter().enumerate() {
            if t.shape[d] == 1 {
                continue;
            }
            if let Some(pos) = order.iter().position(|&o| o == l) {
                st[pos] += own[d] as isize;
            }
        }
        strides.push(st);
    }
    let vals: Vec<Vec<f64>> = operands.iter().map(|t| t.to_f64_vec()).collect();
    let dtype = operands
        .iter()
        .map(|t| t.dtype())
        .max()
        .unwrap_or(DType::F32);
    let mut acc = vec![0f64; out_n];
    let total = out_n * inner;
    let nd = order.len();
    let mut idx = vec![0usize; nd];
    let mut offs = vec![0isize; operands.len()];
    let step_units = operands.len() as u64;
    for t in 0..total {
        meter.charge(step_units)?;
        let mut p = 1.0f64;
        for (v, &o) in vals.iter().zip(&offs) {
            p *= v[o as usize];
        }
        acc[t / inner] += p;
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            for (o, st) in offs.iter_mut().zip(&strides) {
                *o += st[d];
            }
            if idx[d] < sizes[d] {
                break;
            }
            for (o, st) in offs.iter_mut().zip(&strides) {
                *o -= st[d] * sizes[d] as isize;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor::raw(out_shape, out_data(dtype, acc)))
}

fn label_name(l: usize) -> String {
    match l {
        0..26 => ((b'A' + l as u8) as char).to_string(),
        26..52 => ((b'a' + (l - 26) as u8) as char).to_string(),
        _ => "...".to_string(),
    }
}

/// The common two-operand contraction (`bij,bjk->bik` and its relatives) as one batched matmul:
/// permute A to (batch, free A, contracted) and B to (batch, contracted, free B). Returns `None`
/// when the equation needs the general loop (a repeated label, a label summed in only one
/// operand, or size-1 broadcasting).
fn einsum2_as_matmul(
    a: &Tensor,
    la: &[usize],
    b: &Tensor,
    lb: &[usize],
    out: &[usize],
) -> Result<Option<Tensor>> {
    let distinct = |l: &[usize]| l.iter().enumerate().all(|(i, x)| !l[..i].contains(x));
    if !distinct(la) || !distinct(lb) {
        return Ok(None);
    }
    let size_of = |l: usize| -> Option<usize> {
        let sa = la.iter().position(|&x| x == l).map(|d| a.shape[d]);
        let sb = lb.iter().position(|&x| x == l).map(|d| b.shape[d]);
        match (sa, sb) {
            (Some(x), Some(y)) if x != y => None,
            (Some(x), _) | (None, Some(x)) => Some(x),
            (None, None) => None,
        }
    };
    let (mut batch, mut contract, mut free_a, mut free_b) = (vec![], vec![], vec![], vec![]);
    for &l in la {
        match (lb.contains(&l), out.contains(&l)) {
            (true, true) => batch.push(l),
            (true, false) => contract.push(l),
            (false, true) => free_a.push(l),
            (false, false) => return Ok(None),
        }
    }
    for &l in lb {
        match (la.contains(&l), out.contains(&l)) {
            (false, true) => free_b.push(l),
            (false, false) => return Ok(None),
            (true, _) => {}
        }
    }
    let sz = |ls: &[usize]| -> Option<Vec<usize>> { ls.iter().map(|&l| size_of(l)).collect() };
    let (Some(sb), Some(sc), Some(sfa), Some(sfb)) =
        (sz(&batch), sz(&contract), sz(&free_a), sz(&free_b))
    else {
        return Ok(None);
    };
    let pos = |ls: &[usize], l: usize| ls.iter().position(|&x| x == l).unwrap_or(0);
    let perm_a: Vec<usize> = batch
        .iter()
        .chain(&free_a)
        .chain(&contract)
        .map(|&l| pos(la, l))
        .collect();
    let perm_b: Vec<usize> = batch
        .iter()
        .chain(&contract)
        .chain(&free_b)
        .map(|&l| pos(lb, l))
        .collect();
    let prod = |v: &[usize]| v.iter().product::<usize>() as i64;
    let a3 = a
        .permute_usize(&perm_a)?
        .into_reshape(&[prod(&sb), prod(&sfa), prod(&sc)])?;
    let b3 = b
        .permute_usize(&perm_b)?
        .into_reshape(&[prod(&sb), prod(&sc), prod(&sfb)])?;
    let r = a3.matmul(&b3)?;
    let mid_labels: Vec<usize> = batch
        .iter()
        .chain(&free_a)
        .chain(&free_b)
        .copied()
        .collect();
    let mid_shape: Vec<i64> = sb
        .iter()
        .chain(&sfa)
        .chain(&sfb)
        .map(|&d| d as i64)
        .collect();
    let r = r.into_reshape(&mid_shape)?;
    let perm_out: Vec<usize> = out.iter().map(|&l| pos(&mid_labels, l)).collect();
    Ok(Some(r.permute_usize(&perm_out)?))
}

#[derive(Clone, Copy)]
struct MatDims {
    m: usize,
    k: usize,
    n: usize,
}

/// Batched `out[b] = x[b] · y[b]` through a blocked SIMD GEMM ([`Gemm`]: `matrixmultiply`
/// for f32, the `gemm` crate for f64); `offs_*` locate each batch's row-major matrix
/// (m×k in `x`, k×n in `y`). Accumulates in `T`: f32 for program values, f64 for references
/// and integers (exact below 2^53, as before).
fn gemm_batched<T: Gemm>(
    x: &[T],
    y: &[T],
    offs_a: &[usize],
    offs_b: &[usize],
    d: MatDims,
) -> Result<Vec<T>> {
    let MatDims { m, k, n } = d;
    let mut out = vec![T::zero(); offs_a.len() * m * n];
    if m == 0 || n == 0 || k == 0 {
        return Ok(out);
    }
    let internal = || TensorError::invalid("matmul: operand smaller than its shape (internal)");
    let mut meter = limits::Meter::new("matmul")?;
    let row_units = (k as u64).saturating_mul(n as u64);
    for (c, (&oa, &ob)) in out.chunks_exact_mut(m * n).zip(offs_a.iter().zip(offs_b)) {
        let a = x.get(oa..oa + m * k).ok_or_else(internal)?;
        let b = y.get(ob..ob + k * n).ok_or_else(internal)?;
        let bv = ArrayView2::from_shape((k, n), b).map_err(|_| internal())?;
        // Blocks of GEMM_ROWS rows, each charged to the meter before it runs, so a deadline
        // is noticed within one block (≈ 128·k·n multiply-adds) rather than one whole product.
        for (a, c) in a.chunks(GEMM_ROWS * k).zip(c.chunks_mut(GEMM_ROWS * n)) {
            let rows = a.len() / k;
            meter.charge(row_units.saturating_mul(rows as u64))?;
            gemm_block(a, &bv, c, rows, n).ok_or_else(internal)?;
        }
    }
    Ok(out)
}

/// Rows of A (row-major, `rows`×k) in a block of one GEMM.
const GEMM_ROWS: usize = 128;

/// `c = a · b` for one block of rows; `None` if a slice disagrees with its shape.
fn gemm_block<T: Gemm>(
    a: &[T],
    bv: &ArrayView2<'_, T>,
    c: &mut [T],
    m: usize,
    n: usize,
) -> Option<()> {
    let k = bv.nrows();
    let av = ArrayView2::from_shape((m, k), a).ok()?;
    let b = bv.as_slice()?;
    {
        if m == 1 {
            // A row times a matrix (the per-element shape of streamed rows). Measured here:
            // matrixmultiply's packing and 8-row micro-kernel make 1×1024·1024×1024 4.5 ms, and
            // ndarray's GEMV on the transposed view (strided column dots) 24 ms; axpy over B's
            // contiguous rows vectorises and reads B once.
            for (&ap, row) in a.iter().zip(b.chunks_exact(n)) {
                for (o, &bv) in c.iter_mut().zip(row) {
                    *o = *o + ap * bv;
                }
            }
        } else if n == 1 {
            let mut cv = ArrayViewMut1::from_shape(m, c).ok()?;
            general_mat_vec_mul(T::one(), &av, &bv.column(0), T::zero(), &mut cv);
        } else {
            T::gemm(a, b, c, m, k, n)?;
        }
    }
    Some(())
}

/// The general (m, n > 1) product of one block, per element type.
trait Gemm: LinalgScalar {
    fn gemm(a: &[Self], b: &[Self], c: &mut [Self], m: usize, k: usize, n: usize) -> Option<()>;
}

/// f32 program values and f64 references alike: `matrixmultiply`'s sgemm/dgemm through
/// ndarray's safe `general_mat_mul`.
impl<T: LinalgScalar> Gemm for T {
    fn gemm(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize) -> Option<()> {
        let av = ArrayView2::from_shape((m, k), a).ok()?;
        let bv = ArrayView2::from_shape((k, n), b).ok()?;
        let mut cv = ArrayViewMut2::from_shape((m, n), c).ok()?;
        general_mat_mul(T::one(), &av, &bv, T::zero(), &mut cv);
        Some(())
    }
}

/// The contraction kernel for `matmul`: f32 operands stay f32 (sgemm) unless this thread asked
/// for [`Accumulation::F64`]; everything else (i64, bool, mixed) goes through dgemm on f64
/// copies, exact for integers below 2^53 like the old f64 loop.
fn contract(
    a: &Tensor,
    b: &Tensor,
    offs_a: &[usize],
    offs_b: &[usize],
    d: MatDims,
) -> Result<Data> {
    let dtype = a.dtype().promote(b.dtype());
    match (&a.data, &b.data, accumulation()) {
        (Data::F32(x), Data::F32(y), Accumulation::F32) => {
            Ok(Data::F32(gemm_batched(x, y, offs_a, offs_b, d)?.into()))
        }
        (Data::F32(x), Data::F32(y), Accumulation::F64) => Ok(out_data(
            dtype,
            gemm_batched_widened(x, y, offs_a, offs_b, d)?,
        )),
        _ => {
            let acc = gemm_batched(&a.to_f64_vec(), &b.to_f64_vec(), offs_a, offs_b, d)?;
            Ok(out_data(dtype, acc))
        }
    }
}

/// [`gemm_batched`] in f64 on f32 operands, widening one batch's matrices at a time: a
/// reference contraction over a model-dims input (hundreds of megabytes of f32) then needs
/// f64 copies of one batch entry, not of the whole operand.
fn gemm_batched_widened(
    x: &[f32],
    y: &[f32],
    offs_a: &[usize],
    offs_b: &[usize],
    d: MatDims,
) -> Result<Vec<f64>> {
    let MatDims { m, k, n } = d;
    let internal = || TensorError::invalid("matmul: operand smaller than its shape (internal)");
    let widen = |v: &[f32], at: usize, len: usize| -> Result<Vec<f64>> {
        let part = v.get(at..at + len).ok_or_else(internal)?;
        Ok(part.iter().map(|&z| f64::from(z)).collect())
    };
    let mut out = Vec::with_capacity(offs_a.len().saturating_mul(m * n));
    for (&oa, &ob) in offs_a.iter().zip(offs_b) {
        let a = widen(x, oa, m * k)?;
        let b = widen(y, ob, k * n)?;
        out.extend(gemm_batched(&a, &b, &[0], &[0], d)?);
    }
    Ok(out)
}

/// How contractions (`matmul`, `bmm`, the matmul-shaped `einsum`s) accumulate f32 operands.
/// Per thread, like the size limits, so a verifier can evaluate references and programs
/// differently on one thread and concurrent verifications don't interfere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulation {
    /// f32 blocked SIMD GEMM: the arithmetic a program's f32 values get (torch's too). The
    /// default.
    F32,
    /// f64 GEMM on f64 copies of the operands, rounded to f32 at the end: for references,
    /// which DESIGN §9 lets evaluate more exactly than the program.
    F64,
}

thread_local! {
    static ACCUMULATION: Cell<Accumulation> = const { Cell::new(Accumulation::F32) };
}

/// This thread's contraction accumulation.
pub fn accumulation() -> Accumulation {
    ACCUMULATION.with(Cell::get)
}

/// Sets this thread's contraction accumulation until dropped (then the previous one returns).
#[derive(Debug)]
pub struct AccumulationGuard {
    prev: Accumulation,
}

impl AccumulationGuard {
    pub fn new(acc: Accumulation) -> AccumulationGuard {
        AccumulationGuard {
            prev: ACCUMULATION.with(|c| c.replace(acc)),
        }
    }
}

impl Drop for AccumulationGuard {
    fn drop(&mut self) {
        ACCUMULATION.with(|c| c.set(self.prev));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The textbook triple loop in f64: the oracle the GEMM is checked against.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    out[i * n + j] += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                }
            }
        }
        out
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// f32 accumulation stays within the depth-scaled bound `k · eps32 · Σ|a||b|` of the exact
    /// product; f64 accumulation rounds only once.
    fn check(m: usize, k: usize, n: usize) {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let exact = naive(&a, &b, m, k, n);
        let abs: Vec<f64> = {
            let aa: Vec<f32> = a.iter().map(|x| x.abs()).collect();
            let bb: Vec<f32> = b.iter().map(|x| x.abs()).collect();
            naive(&aa, &bb, m, k, n)
        };
        let ta = Tensor::from_f32(vec![m, k], a).unwrap();
        let tb = Tensor::from_f32(vec![k, n], b).unwrap();
        let f32_res = ta.matmul(&tb).unwrap().to_f64_vec();
        let f64_res = {
            let _g = AccumulationGuard::new(Accumulation::F64);
            ta.matmul(&tb).unwrap().to_f64_vec()
        };
        assert_eq!(accumulation(), Accumulation::F32, "guard restores");
        let eps = f64::from(f32::EPSILON);
        for i in 0..m * n {
            let bound32 = (k as f64) * eps * abs[i] + 1e-30;
            assert!((f32_res[i] - exact[i]).abs() <= bound32, "f32 at {i}");
            let bound64 = eps * exact[i].abs() / 2.0 + 1e-30;
            assert!((f64_res[i] - exact[i]).abs() <= bound64, "f64 at {i}");
        }
    }

    #[test]
    fn gemm_matches_naive_loops() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 37, 1),
            (3, 5, 7),
            (1, 64, 33),
            (17, 1, 9),
            (65, 130, 31),
        ] {
            check(m, k, n);
        }
    }

    #[test]
    fn batched_broadcast_and_integers() {
        // (2,1,3,4) @ (5,4,2): batch dims broadcast to (2,5).
        let a = Tensor::from_f32(vec![2, 1, 3, 4], data(24, 3)).unwrap();
        let b = Tensor::from_f32(vec![5, 4, 2], data(40, 4)).unwrap();
        let r = a.matmul(&b).unwrap();
        assert_eq!(r.shape(), &[2, 5, 3, 2]);
        let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
        let rv = r.to_f64_vec();
        for i in 0..2 {
            for j in 0..5 {
                let a32: Vec<f32> = av[i * 12..i * 12 + 12].iter().map(|&x| x as f32).collect();
                let b32: Vec<f32> = bv[j * 8..j * 8 + 8].iter().map(|&x| x as f32).collect();
                let want = naive(&a32, &b32, 3, 4, 2);
                for (q, w) in want.iter().enumerate() {
                    assert!((rv[(i * 5 + j) * 6 + q] - w).abs() < 1e-5);
                }
            }
        }
        let ia = Tensor::from_i64(vec![2, 2], vec![1 << 40, 3, -7, 2]).unwrap();
        let ib = Tensor::from_i64(vec![2, 1], vec![3, 1 << 20]).unwrap();
        let r = ia.matmul(&ib).unwrap();
        assert_eq!(r.dtype(), DType::I64);
        assert_eq!(
            r.to_f64_vec(),
            vec![
                (3i64 * (1 << 40) + 3 * (1 << 20)) as f64,
                (-21 + 2 * (1 << 20)) as f64
            ]
        );
        let z = Tensor::from_f32(vec![3, 0], vec![]).unwrap();
        let w = Tensor::from_f32(vec![0, 2], vec![]).unwrap();
        assert_eq!(z.matmul(&w).unwrap().to_f64_vec(), vec![0.0; 6]);
    }
}
