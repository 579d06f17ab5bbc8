//! Indexing (`x[i, a:b:s, ..., None, idx]`), assignment through an index, `scatter`, `gather`.

use crate::{DType, Data, Result, Tensor, TensorError, fmt_shape, limits, norm_dim};

/// One item of a subscript.
#[derive(Debug, Clone, PartialEq)]
pub enum Index {
    /// `x[i]` (negative counts from the end); removes the dim.
    Int(i64),
    /// `x[start:stop:step]`.
    Slice {
        start: Option<i64>,
        stop: Option<i64>,
        step: Option<i64>,
    },
    /// `...`
    Ellipsis,
    /// `None` / `np.newaxis`: inserts a size-1 dim.
    NewAxis,
    /// An i64 index tensor (selects along one dim) or a bool mask (selects along as many dims
    /// as it has). At most one per subscript.
    Tensor(Tensor),
}

impl Index {
    pub fn full() -> Index {
        Index::Slice {
            start: None,
            stop: None,
            step: None,
        }
    }
}

/// Python slice resolution: (start, len) for a positive step, clamped to the dim.
fn resolve_slice(
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
    size: usize,
) -> Result<(i64, usize, i64)> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(TensorError::invalid("slice step cannot be zero"));
    }
    let n = size as i64;
    let norm = |v: i64, lo: i64, hi: i64| -> i64 {
        let v = if v < 0 { v.saturating_add(n) } else { v };
        v.clamp(lo, hi)
    };
    let (s, e) = if step > 0 {
        (
            start.map_or(0, |v| norm(v, 0, n)),
            stop.map_or(n, |v| norm(v, 0, n)),
        )
    } else {
        (
            start.map_or(n - 1, |v| norm(v, -1, n - 1)),
            stop.map_or(-1, |v| {
                // A negative stop that normalises below zero means "run to the front".
                let w = if v < 0 { v.saturating_add(n) } else { v };
                w.clamp(-1, n - 1)
            }),
        )
    };
    let len = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok((s, len as usize, step))
}

struct View {
    shape: Vec<usize>,
    strides: Vec<isize>,
    offset: isize,
    /// Where the tensor index sits in the view's dims, and the tensor.
    adv: Option<(usize, Tensor)>,
}

impl Tensor {
    fn basic_view(&self, items: &[Index]) -> Result<View> {
        let consumes = |it: &Index| match it {
            Index::Int(_) | Index::Slice { .. } => 1,
            Index::Tensor(t) if t.dtype() == DType::Bool => t.ndim(),
            Index::Tensor(_) => 1,
            Index::Ellipsis | Index::NewAxis => 0,
        };
        let used: usize = items.iter().map(consumes).sum();
        let ells = items
            .iter()
            .filter(|i| matches!(i, Index::Ellipsis))
            .count();
        if ells > 1 {
            return Err(TensorError::invalid(
                "an index can only have a single ellipsis ('...')",
            ));
        }
        if items
            .iter()
            .filter(|i| matches!(i, Index::Tensor(_)))
            .count()
            > 1
        {
            return Err(TensorError::invalid(
                "indexing with more than one tensor index is not supported",
            ));
        }
        let nd = self.ndim();
        if used > nd {
            return Err(TensorError::invalid(format!(
                "too many indices for tensor of dimension {nd}"
            )));
        }
        let st = self.istrides();
        let mut v = View {
            shape: Vec::new(),
            strides: Vec::new(),
            offset: 0,
            adv: None,
        };
        let mut d = 0usize;
        for it in items {
            match it {
                Index::Int(i) => {
                    let size = self.shape[d];
                    let j = if *i < 0 {
                        i.saturating_add(size as i64)
                    } else {
                        *i
                    };
                    if j < 0 || j >= size as i64 {
                        return Err(TensorError::invalid(format!(
                            "index {i} is out of bounds for dimension {d} with size {size}"
                        )));
                    }
                    v.offset += j as isize * st[d];
                    d += 1;
                }
                Index::Slice { start, stop, step } => {
                    let (s, len, step) = resolve_slice(*start, *stop, *step, self.shape[d])?;
                    if len > 0 {
                        v.offset += s as isize * st[d];
                    }
                    v.shape.push(len);
                    v.strides.push(step as isize * st[d]);
                    d += 1;
                }
                Index::Ellipsis => {
                    for _ in 0..nd - used {
                        v.shape.push(self.shape[d]);
                        v.strides.push(st[d]);
                        d += 1;
                    }
                }
                Index::NewAxis => {
                    v.shape.push(1);
                    v.strides.push(0);
                }
                Index::Tensor(t) => {
                    let k = consumes(it);
                    if t.dtype() == DType::Bool && t.shape[..] != self.shape[d..d + k] {
                        return Err(TensorError::invalid(format!(
                            "the shape of the mask {} does not match the shape of the indexed tensor {} at dim {d}",
                            fmt_shape(&t.shape),
                            fmt_shape(&self.shape[d..d + k])
                        )));
                    }
                    v.adv = Some((v.shape.len(), t.clone()));
                    for _ in 0..k {
                        v.shape.push(self.shape[d]);
                        v.strides.push(st[d]);
                        d += 1;
                    }
                }
            }
        }
        while d < nd {
            v.shape.push(self.shape[d]);
            v.strides.push(st[d]);
            d += 1;
        }
        Ok(v)
    }

    /// `x[items]` with torch semantics (basic indexing plus at most one tensor index).
    pub fn index(&self, items: &[Index]) -> Result<Tensor> {
        let v = self.basic_view(items)?;
        let base = self.view_copy(v.shape, &v.strides, v.offset)?;
        match v.adv {
            None => Ok(base),
            Some((pos, t)) if t.dtype() == DType::Bool => {
                // Merge the masked dims into one and select the true positions.
                let k = t.ndim();
                let merged = base.flatten_range(pos, k)?;
                let Data::Bool(m) = &t.data else {
                    return Err(TensorError::invalid("internal error: mask"));
                };
                let picks: Vec<i64> = m
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b)
                    .map(|(i, _)| i as i64)
                    .collect();
                let idx = Tensor::raw(vec![picks.len()], Data::I64(picks));
                merged.index_select_nd(pos, &idx)
            }
            Some((pos, t)) => base.index_select_nd(pos, &t.to_dtype(DType::I64)),
        }
    }

    /// Merges dims `pos..pos+k` into one (k = 0 inserts a size-1 dim).
    fn flatten_range(&self, pos: usize, k: usize) -> Result<Tensor> {
        let mut shape = self.shape[..pos].to_vec();
        shape.push(self.shape[pos..pos + k].iter().product());
        shape.extend_from_slice(&self.shape[pos + k..]);
        Ok(Tensor::raw(shape, self.data.clone()))
    }

    /// Selects along `dim` with an i64 tensor of any shape; its dims replace `dim`.
    fn index_select_nd(&self, dim: usize, idx: &Tensor) -> Result<Tensor> {
        let Data::I64(iv) = &idx.data else {
            return Err(TensorError::invalid(
                "tensors used as indices must be long or bool",
            ));
        };
        let size = self.shape[dim];
        let mut shape = self.shape[..dim].to_vec();
        shape.extend_from_slice(&idx.shape);
        shape.extend_from_slice(&self.shape[dim + 1..]);
        limits::checked_numel(&shape)?;
        let outer: usize = self.shape[..dim].iter().product();
        let inner: usize = self.shape[dim + 1..].iter().product();
        let mut sel = Vec::with_capacity(outer * iv.len() * inner);
        for o in 0..outer {
            for &i in iv {
                let j = if i < 0 { i + size as i64 } else { i };
                if j < 0 || j >= size as i64 {
                    return Err(TensorError::invalid(format!(
                        "index {i} is out of bounds for dimension {dim} with size {size}"
                    )));
                }
                let base = (o * size + j as usize) * inner;
                sel.extend(base..base + inner);
            }
        }
        let data = match &self.data {
            Data::F32(v) => Data::F32(sel.iter().map(|&s| v[s]).collect()),
            Data::I64(v) => Data::I64(sel.iter().map(|&s| v[s]).collect()),
            Data::Bool(v) => Data::Bool(sel.iter().map(|&s| v[s]).collect()),
        };
        Ok(Tensor::raw(shape, data))
    }

    /// `torch.index_select(x, dim, idx)` with a 1-d index.
    pub fn index_select(&self, dim: i64, idx: &Tensor) -> Result<Tensor> {
        let d = norm_dim(dim, self.ndim())?;
        if idx.ndim() > 1 || self.ndim() == 0 {
            return Err(TensorError::invalid(
                "index_select(): index must be a 1-d tensor",
            ));
        }
        self.index_select_nd(d, &idx.to_dtype(DType::I64))
    }

    /// `x[items] = value` (value broadcasts to the selected region and is cast to x's dtype).
    pub fn index_put(&mut self, items: &[Index], value: &Tensor) -> Result<()> {
        // Index a tensor of flat positions the same way to learn which elements are selected;
        // this reuses every indexing rule, advanced ones included.
        let n = self.numel();
        let pos = Tensor::raw(self.shape.clone(), Data::I64((0..n as i64).collect()));
        let sel = pos.index(items)?;
        let v = value.to_dtype(self.dtype()).broadcast_to(&sel.shape).map_err(|_| {
            TensorError::invalid(format!(
                "shape mismatch: value tensor of shape {} cannot be broadcast to indexing result of shape {}",
                fmt_shape(&value.shape),
                fmt_shape(&sel.shape)
            ))
        })?;
        let Data::I64(targets) = &sel.data else {
            return Err(TensorError::invalid("internal error: index_put"));
        };
        fn put<T: Copy>(dst: &mut [T], targets: &[i64], src: &[T]) {
            for (&t, &s) in targets.iter().zip(src) {
                if let Some(d) = dst.get_mut(t as usize) {
                    *d = s;
                }
            }
        }
        match (&mut self.data, &v.data) {
            (Data::F32(d), Data::F32(s)) => put(d, targets, s),
            (Data::I64(d), Data::I64(s)) => put(d, targets, s),
            (Data::Bool(d), Data::Bool(s)) => put(d, targets, s),
            _ => return Err(TensorError::invalid("internal error: index_put dtype")),
        }
        Ok(())
    }

    /// Checks `index` against `self` (and `src`) for scatter/gather and yields, for every
    /// position of `index` in row-major order, (flat position in self with dim replaced by the
    /// index value, flat position in `src_shape`).
    fn scatter_plan(
        &self,
        dim: i64,
        index: &Tensor,
        src_shape: Option<&[usize]>,
        what: &str,
    ) -> Result<(usize, Vec<(usize, usize)>)> {
        let nd = self.ndim();
        let d = norm_dim(dim, nd)?;
        let Data::I64(iv) = &index.data else {
            return Err(TensorError::invalid(format!(
                "{what}(): Expected dtype int64 for index"
            )));
        };
        if index.ndim() != nd {
            return Err(TensorError::invalid(format!(
                "{what}(): Index tensor must have the same number of dimensions as self tensor ({} vs {nd})",
                index.ndim()
            )));
        }
        for (i, &s) in index.shape.iter().enumerate() {
            let own = self.shape.get(i).copied().unwrap_or(1);
            if i != d && s > own {
                return Err(TensorError::invalid(format!(
                    "{what}(): Expected index {} to be smaller than self {} apart from dimension {d}",
                    fmt_shape(&index.shape),
                    fmt_shape(&self.shape)
                )));
            }
            if let Some(ss) = src_shape
                && s > ss.get(i).copied().unwrap_or(1)
            {
                return Err(TensorError::invalid(format!(
                    "{what}(): Expected index {} to be smaller than src {}",
                    fmt_shape(&index.shape),
                    fmt_shape(ss)
                )));
            }
        }
        let st_self = self.strides();
        let st_src = src_shape.map(crate::contiguous_strides);
        let size = self.shape.get(d).copied().unwrap_or(1);
        let mut out = Vec::with_capacity(iv.len());
        let mut pos = vec![0usize; index.ndim()];
        for &v in iv {
            if v < 0 || v >= size as i64 {
                return Err(TensorError::invalid(format!(
                    "{what}(): index {v} is out of bounds for dimension {d} with size {size}"
                )));
            }
            let mut a = 0usize;
            let mut b = 0usize;
            for (i, &p) in pos.iter().enumerate() {
                let q = if i == d { v as usize } else { p };
                a += q * st_self.get(i).copied().unwrap_or(0);
                if let Some(s) = &st_src {
                    b += p * s.get(i).copied().unwrap_or(0);
                }
            }
            out.push((a, b));
            // Advance the row-major position in `index`.
            let mut k = pos.len();
            while k > 0 {
                k -= 1;
                pos[k] += 1;
                if pos[k] < index.shape[k] {
                    break;
                }
                pos[k] = 0;
            }
        }
        Ok((d, out))
    }

    /// `x.scatter(dim, index, src)`: a copy of x with `x[..index[i]..] = src[i]` along dim.
    pub fn scatter(&self, dim: i64, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let mut out = self.clone();
        out.scatter_(dim, index, src)?;
        Ok(out)
    }

    /// In-place `scatter_` with a tensor source (cast to x's dtype).
    pub fn scatter_(&mut self, dim: i64, index: &Tensor, src: &Tensor) -> Result<()> {
        let index = index.cast_cow(DType::I64);
        let (_, plan) = self.scatter_plan(dim, &index, Some(&src.shape), "scatter")?;
        let src = src.to_dtype(self.dtype());
        fn put<T: Copy>(dst: &mut [T], src: &[T], plan: &[(usize, usize)]) {
            for &(a, b) in plan {
                if let (Some(d), Some(&s)) = (dst.get_mut(a), src.get(b)) {
                    *d = s;
                }
            }
        }
        match (&mut self.data, &src.data) {
            (Data::F32(d), Data::F32(s)) => put(d, s, &plan),
            (Data::I64(d), Data::I64(s)) => put(d, s, &plan),
            (Data::Bool(d), Data::Bool(s)) => put(d, s, &plan),
            _ => return Err(TensorError::invalid("internal error: scatter dtype")),
        }
        Ok(())
    }

    /// `x.scatter(dim, index, value)` with a scalar value.
    pub fn scatter_value(&self, dim: i64, index: &Tensor, value: f64) -> Result<Tensor> {
        let src = Tensor::full(&index.shape, crate::Scalar::F32(value as f32), self.dtype())?;
        self.scatter(dim, index, &src)
    }

    /// `x.scatter_add(dim, index, src)`.
    pub fn scatter_add(&self, dim: i64, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let index = index.cast_cow(DType::I64);
        let (_, plan) = self.scatter_plan(dim, &index, Some(&src.shape), "scatter_add")?;
        let mut out = self.to_dtype(self.dtype().max(src.dtype()).max(DType::I64));
        let s = src.to_f64_vec();
        match &mut out.data {
            Data::F32(d) => {
                for &(a, b) in &plan {
                    if let (Some(d), Some(&s)) = (d.get_mut(a), s.get(b)) {
                        *d += s as f32;
                    }
                }
            }
            Data::I64(d) => {
                for &(a, b) in &plan {
                    if let (Some(d), Some(&s)) = (d.get_mut(a), s.get(b)) {
                        *d += s as i64;
                    }
                }
            }
            Data::Bool(_) => return Err(TensorError::invalid("internal error: scatter_add")),
        }
        Ok(out)
    }

    /// `torch.gather(x, dim, index)`.
    pub fn gather(&self, dim: i64, index: &Tensor) -> Result<Tensor> {
        let index = index.cast_cow(DType::I64);
        let (_, plan) = self.scatter_plan(dim, &index, None, "gather")?;
        let data = match &self.data {
            Data::F32(v) => Data::F32(plan.iter().map(|&(a, _)| v[a]).collect()),
            Data::I64(v) => Data::I64(plan.iter().map(|&(a, _)| v[a]).collect()),
            Data::Bool(v) => Data::Bool(plan.iter().map(|&(a, _)| v[a]).collect()),
        };
        Ok(Tensor::raw(index.shape.clone(), data))
    }
}
