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
        let x = a.to_f64_vec();
        let y = b.to_f64_vec();
        // Offsets of each batch's matrix in a and b.
        let sta = broadcast_strides(ba, &batch);
        let stb = broadcast_strides(bb, &batch);
        let mut offs_a = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &sta, 0, |o| offs_a.push(o as usize * m * k));
        let mut offs_b = Vec::with_capacity(nbatch);
        crate::for_each_offset(&batch, &stb, 0, |o| offs_b.push(o as usize * k * n));
        if batch.is_empty() {
            offs_a.clear();
            offs_a.push(0);
            offs_b.clear();
            offs_b.push(0);
        }
        let mut acc = vec![0f64; nbatch * m * n];
        for (bi, (&oa, &ob)) in offs_a.iter().zip(&offs_b).enumerate() {
            let out = &mut acc[bi * m * n..(bi + 1) * m * n];
            for i in 0..m {
                for p in 0..k {
                    let av = x[oa + i * k + p];
                    let row = &y[ob + p * n..ob + (p + 1) * n];
                    for (o, &bv) in out[i * n..(i + 1) * n].iter_mut().zip(row) {
                        *o += av * bv;
                    }
                }
            }
        }
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
        for t in 0..total {
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
