//! Contractions: `matmul` in every torch rank combination, `bmm`, and general `einsum`.

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
        let dtype = a.dtype().promote(b.dtype());
        // Offsets of each batch's matrix in a and b.
        let sta = broadcast_strides(ba, &batch);
        let stb = broadcast_strides(bb, &batch);
        let mut offs_a = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &sta, 0, |o| offs_a.push(o as usize * m * k));
        let mut offs_b = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &stb, 0, |o| offs_b.push(o as usize * k * n));
        let dims = MatDims { m, k, n };
        let acc = match (&a.data, &b.data) {
            // f32 operands are read in place (no f64 copies of a weight matrix per call).
            (Data::F32(x), Data::F32(y)) => mm_kernel(x, y, &offs_a, &offs_b, dims)?,
            _ => mm_kernel(&a.to_f64_vec(), &b.to_f64_vec(), &offs_a, &offs_b, dims)?,
        };
        let mut shape = batch;
        if !a1 {
            shape.push(m);
        }
        if !b1 {
            shape.push(n);
        }
        Ok(Tensor::raw(shape, out_data(dtype, acc)))
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
        const ELL: usize = 52;
        let letter = |c: char| -> Result<usize> {
            match c {
                'A'..='Z' => Ok(c as usize - 'A' as usize),
                'a'..='z' => Ok(26 + c as usize - 'a' as usize),
                _ => Err(TensorError::invalid(format!(
                    "einsum(): invalid subscript '{c}' in equation '{equation}'"
                ))),
            }
        };
        // Parse each operand into a list of label ids (ellipsis dims filled in below).
        enum Item {
            L(usize),
            Ell,
        }
        let parse = |spec: &str| -> Result<Vec<Item>> {
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
        };
        let parsed: Vec<Vec<Item>> = specs.iter().map(|s| parse(s)).collect::<Result<_>>()?;
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
        let nlabels = ELL + emax;
        let mut size: Vec<Option<usize>> = vec![None; nlabels];
        let mut count = vec![0usize; nlabels];
        // Per operand: the label of each of its dims.
        let mut dim_labels: Vec<Vec<usize>> = Vec::with_capacity(operands.len());
        for (oi, (items, t)) in parsed.iter().zip(operands).enumerate() {
            let mut labels = Vec::with_capacity(t.ndim());
            for it in items {
                match it {
                    Item::L(l) => labels.push(*l),
                    Item::Ell => {
                        for j in 0..ell_dims[oi] {
                            labels.push(ELL + emax - ell_dims[oi] + j);
                        }
                    }
                }
            }
            for (d, &l) in labels.iter().enumerate() {
                let s = t.shape[d];
                count[l] += 1;
                size[l] = match size[l] {
                    None => Some(s),
                    Some(1) => Some(s),
                    Some(prev) if s == 1 || s == prev => Some(prev),
                    Some(prev) => {
                        return Err(TensorError::invalid(format!(
                            "einsum(): operands do not broadcast: subscript '{}' has size {s} for operand {oi} which does not broadcast with previously seen size {prev}",
                            label_name(l)
                        )));
                    }
                };
            }
            dim_labels.push(labels);
        }
        // Output labels.
        let out_labels: Vec<usize> = match rhs {
            Some(r) => {
                let mut out = Vec::new();
                for it in parse(r)? {
                    match it {
                        Item::L(l) => {
                            if size[l].is_none() {
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
                        Item::Ell => out.extend(ELL..ELL + emax),
                    }
                }
                out
            }
            None => {
                let mut out: Vec<usize> = (ELL..ELL + emax).collect();
                out.extend((0..ELL).filter(|&l| count[l] == 1));
                out
            }
        };
        let summed: Vec<usize> = (0..nlabels)
            .filter(|l| size[*l].is_some() && !out_labels.contains(l))
            .collect();
        let order: Vec<usize> = out_labels.iter().chain(&summed).copied().collect();
        let sizes: Vec<usize> = order.iter().map(|&l| size[l].unwrap_or(1)).collect();
        let out_shape: Vec<usize> = sizes[..out_labels.len()].to_vec();
        let out_n = limits::checked_numel(&out_shape)?;
        limits::check_work("einsum", &sizes)?;
        if let [a, b] = operands
            && let [la, lb] = &dim_labels[..]
            && let Some(r) = einsum2_as_matmul(a, la, b, lb, &out_labels)?
        {
            return Ok(r);
        }
        // The general loop multiplies one value per operand at every step, so its work is the
        // loop size times the operand count: a 16-operand einsum of size-4 vectors (2^32 steps,
        // 2^36 multiplies) is refused here before it starts.
        let mut weighted = sizes.clone();
        weighted.push(operands.len());
        limits::check_work("einsum", &weighted)?;
        let mut meter = limits::Meter::new("einsum")?;
        let inner: usize = sizes[out_labels.len()..].iter().product();
        // Per operand, per position in `order`: the stride (sum over repeated labels, 0 where
        // the operand lacks the label or broadcasts it).
        let mut strides: Vec<Vec<isize>> = Vec::with_capacity(operands.len());
        for (t, labels) in operands.iter().zip(&dim_labels) {
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

/// Batched `out[b] = x[b] · y[b]` with f64 accumulation; `offs_*` locate each batch's matrix.
fn mm_kernel<T: Copy + Into<f64>>(
    x: &[T],
    y: &[T],
    offs_a: &[usize],
    offs_b: &[usize],
    d: MatDims,
) -> Result<Vec<f64>> {
    let MatDims { m, k, n } = d;
    let mut meter = limits::Meter::new("matmul")?;
    let row_units = (k as u64).saturating_mul(n as u64);
    let mut acc = vec![0f64; offs_a.len() * m * n];
    let mut row = vec![0f64; n];
    for (bi, (&oa, &ob)) in offs_a.iter().zip(offs_b).enumerate() {
        let out = &mut acc[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            meter.charge(row_units)?;
            let out_row = &mut out[i * n..(i + 1) * n];
            for p in 0..k {
                let av: f64 = x[oa + i * k + p].into();
                for (r, &bv) in row.iter_mut().zip(&y[ob + p * n..ob + (p + 1) * n]) {
                    *r = bv.into();
                }
                for (o, &bv) in out_row.iter_mut().zip(&row) {
                    *o += av * bv;
                }
            }
        }
    }
    Ok(acc)
}
