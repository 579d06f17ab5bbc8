//! Reductions (sum, mean, var, max along dims), lane operations (softmax, cumulative products,
//! topk) — all accumulating in f64.

use std::cmp::Ordering;

use crate::{DType, Data, Result, Tensor, TensorError, limits, norm_dim};

/// Which dims a reduction removes, and the output shape with and without them.
struct Plan {
    reduced: Vec<bool>,
    keep_shape: Vec<usize>,
    out_shape: Vec<usize>,
    count: usize,
}

fn plan(shape: &[usize], dims: Option<&[i64]>, keepdim: bool) -> Result<Plan> {
    // A reduction reads every element: a large one looks at the deadline first.
    limits::checked_numel(shape)?;
    let nd = shape.len();
    let mut reduced = vec![false; nd];
    match dims {
        None => reduced.iter_mut().for_each(|r| *r = true),
        Some([]) => reduced.iter_mut().for_each(|r| *r = true),
        Some(ds) => {
            for &d in ds {
                let d = norm_dim(d, nd)?;
                if nd == 0 {
                    continue;
                }
                if reduced[d] {
                    return Err(TensorError::invalid(format!(
                        "dim {d} appears multiple times in the list of dims"
                    )));
                }
                reduced[d] = true;
            }
        }
    }
    let keep_shape: Vec<usize> = shape
        .iter()
        .zip(&reduced)
        .map(|(&s, &r)| if r { 1 } else { s })
        .collect();
    let out_shape: Vec<usize> = if keepdim {
        keep_shape.clone()
    } else {
        shape
            .iter()
            .zip(&reduced)
            .filter(|(_, r)| !**r)
            .map(|(&s, _)| s)
            .collect()
    };
    let count = shape
        .iter()
        .zip(&reduced)
        .filter(|(_, r)| **r)
        .map(|(&s, _)| s)
        .product();
    Ok(Plan {
        reduced,
        keep_shape,
        out_shape,
        count,
    })
}

impl Plan {
    /// Strides that map an input index to its output slot.
    fn out_strides(&self) -> Vec<isize> {
        let s = crate::contiguous_strides(&self.keep_shape);
        s.iter()
            .zip(&self.reduced)
            .map(|(&s, &r)| if r { 0 } else { s as isize })
            .collect()
    }

    /// When the reduced dims are a suffix of the shape (`dim=-1`, or everything), every
    /// output reduces one contiguous chunk of this many elements.
    fn suffix_chunk(&self) -> Option<usize> {
        let first = self.reduced.iter().position(|&r| r)?;
        self.reduced[first..]
            .iter()
            .all(|&r| r)
            .then_some(self.count)
    }

    fn out_len(&self) -> usize {
        self.keep_shape.iter().product()
    }
}

/// Splits `shape` around `dim` into (outer, n, inner) for lane-wise operations.
pub(crate) fn lanes(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = shape[..dim].iter().product();
    let n = shape.get(dim).copied().unwrap_or(1);
    let inner = shape.get(dim + 1..).map_or(1, |s| s.iter().product());
    (outer, n, inner)
}

/// NaN-aware order of values for topk/max: NaN is the largest value (torch), every NaN
/// equal to every other, and `-0.0 == 0.0`. `topk` breaks the ties of this order by index
/// (lower first); the native backend's topk ranks with the same function.
pub fn topk_value_cmp(a: f32, b: f32) -> Ordering {
    cmp_f32(a, b)
}

fn cmp_f32(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

impl Tensor {
    fn sum_f64(&self, p: &Plan) -> Vec<f64> {
        if let Some(chunk) = p.suffix_chunk() {
            if chunk == 0 {
                return vec![0.0; p.out_len()];
            }
            return match &self.data {
                Data::F32(v) => v
                    .chunks(chunk)
                    .map(|c| c.iter().map(|&x| f64::from(x)).sum())
                    .collect(),
                _ => self
                    .to_f64_vec()
                    .chunks(chunk)
                    .map(|c| c.iter().sum())
                    .collect(),
            };
        }
        let mut acc = vec![0.0f64; p.out_len()];
        let x = self.to_f64_vec();
        let mut i = 0usize;
        crate::for_each_offset(&self.shape, &p.out_strides(), 0, |o| {
            acc[o as usize] += x[i];
            i += 1;
        });
        acc
    }

    /// `x.sum(dim, keepdim)`; `dims = None` sums everything. Integer and bool sums are i64.
    pub fn sum(&self, dims: Option<&[i64]>, keepdim: bool) -> Result<Tensor> {
        let p = plan(&self.shape, dims, keepdim)?;
        let data = match &self.data {
            Data::F32(_) => Data::F32(self.sum_f64(&p).into_iter().map(|x| x as f32).collect()),
            _ => {
                let v = self.to_dtype(DType::I64);
                let Data::I64(x) = &v.data else {
                    return Err(TensorError::invalid("internal error: sum"));
                };
                let mut acc = vec![0i64; p.out_len()];
                let mut i = 0usize;
                crate::for_each_offset(&self.shape, &p.out_strides(), 0, |o| {
                    acc[o as usize] = acc[o as usize].wrapping_add(x[i]);
                    i += 1;
                });
                Data::I64(acc)
            }
        };
        Ok(Tensor::raw(p.out_shape, data))
    }

    /// `x.mean(dim, keepdim)` (integer inputs are averaged as f32).
    pub fn mean(&self, dims: Option<&[i64]>, keepdim: bool) -> Result<Tensor> {
        let p = plan(&self.shape, dims, keepdim)?;
        let c = p.count as f64;
        let v = self
            .sum_f64(&p)
            .into_iter()
            .map(|s| (s / c) as f32)
            .collect();
        Ok(Tensor::raw(p.out_shape, Data::F32(v)))
    }

    /// `x.var(dim, unbiased, keepdim)`: Bessel-corrected when `unbiased` (torch's default).
    pub fn var(&self, dims: Option<&[i64]>, unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let p = plan(&self.shape, dims, keepdim)?;
        let c = p.count as f64;
        let mean: Vec<f64> = self.sum_f64(&p).into_iter().map(|s| s / c).collect();
        let x = self.to_f64_vec();
        let mut acc = vec![0.0f64; p.out_len()];
        let mut i = 0usize;
        crate::for_each_offset(&self.shape, &p.out_strides(), 0, |o| {
            let d = x[i] - mean[o as usize];
            acc[o as usize] += d * d;
            i += 1;
        });
        let denom = if unbiased { c - 1.0 } else { c };
        let v = acc
            .into_iter()
            .map(|s| {
                if denom > 0.0 {
                    (s / denom) as f32
                } else {
                    f32::NAN
                }
            })
            .collect();
        Ok(Tensor::raw(p.out_shape, Data::F32(v)))
    }

    /// `x.prod(dim)` over all elements or one dim.
    pub fn prod(&self, dims: Option<&[i64]>, keepdim: bool) -> Result<Tensor> {
        let p = plan(&self.shape, dims, keepdim)?;
        let x = self.to_f64_vec();
        let mut acc = vec![1.0f64; p.out_len()];
        let mut i = 0usize;
        crate::for_each_offset(&self.shape, &p.out_strides(), 0, |o| {
            acc[o as usize] *= x[i];
            i += 1;
        });
        let data = match self.dtype() {
            DType::F32 => Data::F32(acc.into_iter().map(|x| x as f32).collect()),
            _ => Data::I64(acc.into_iter().map(|x| x as i64).collect()),
        };
        Ok(Tensor::raw(p.out_shape, data))
    }

    /// `x.amax(dims)` / `x.max()` without a dim.
    pub fn amax(&self, dims: Option<&[i64]>, keepdim: bool) -> Result<Tensor> {
        self.extremum(dims, keepdim, true)
    }

    pub fn amin(&self, dims: Option<&[i64]>, keepdim: bool) -> Result<Tensor> {
        self.extremum(dims, keepdim, false)
    }

    fn extremum(&self, dims: Option<&[i64]>, keepdim: bool, largest: bool) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(TensorError::invalid(
                "max(): Expected reduction dim to be specified for input.numel() == 0",
            ));
        }
        let p = plan(&self.shape, dims, keepdim)?;
        let pick = |cur: f32, v: f32| {
            if cur.is_nan() || v.is_nan() {
                f32::NAN
            } else if largest {
                cur.max(v)
            } else {
                cur.min(v)
            }
        };
        if let (Some(chunk), Data::F32(v)) = (p.suffix_chunk(), &self.data)
            && chunk > 0
        {
            let out = v
                .chunks(chunk)
                .map(|c| c.iter().copied().reduce(pick).unwrap_or(0.0))
                .collect();
            return Ok(Tensor::raw(p.out_shape, Data::F32(out)));
        }
        let x = self.to_f64_vec();
        let mut acc: Vec<Option<f64>> = vec![None; p.out_len()];
        let mut i = 0usize;
        crate::for_each_offset(&self.shape, &p.out_strides(), 0, |o| {
            let slot = &mut acc[o as usize];
            let v = x[i];
            *slot = Some(match *slot {
                None => v,
                Some(cur) if cur.is_nan() => cur,
                Some(_) if v.is_nan() => v,
                Some(cur) => {
                    if largest {
                        cur.max(v)
                    } else {
                        cur.min(v)
                    }
                }
            });
            i += 1;
        });
        let acc = acc.into_iter().map(|v| v.unwrap_or(0.0));
        let data = match self.dtype() {
            DType::F32 => Data::F32(acc.map(|x| x as f32).collect()),
            DType::I64 => Data::I64(acc.map(|x| x as i64).collect()),
            DType::Bool => Data::Bool(acc.map(|x| x != 0.0).collect()),
        };
        Ok(Tensor::raw(p.out_shape, data))
    }

    /// `x.max(dim)` / `x.min(dim)`: (values, indices); ties pick the lowest index.
    pub fn max_dim(&self, dim: i64, keepdim: bool, largest: bool) -> Result<(Tensor, Tensor)> {
        let d = norm_dim(dim, self.ndim())?;
        let size = self.shape.get(d).copied().unwrap_or(1);
        if size == 0 {
            return Err(TensorError::invalid(
                "max(): cannot reduce over a zero-size dimension",
            ));
        }
        let (v, i) = self.topk(1, dim, largest)?;
        if keepdim || self.ndim() == 0 {
            Ok((v, i))
        } else {
            Ok((v.squeeze(Some(&[dim]))?, i.squeeze(Some(&[dim]))?))
        }
    }

    /// `x.argmax(dim)`.
    pub fn argmax(&self, dim: Option<i64>, keepdim: bool) -> Result<Tensor> {
        match dim {
            Some(d) => Ok(self.max_dim(d, keepdim, true)?.1),
            None => self.reshape(&[-1])?.max_dim(0, false, true).map(|r| r.1),
        }
    }

    /// `torch.softmax(x, dim)`, computed in f64 with the max subtracted.
    pub fn softmax(&self, dim: i64) -> Result<Tensor> {
        self.softmax_impl(dim, false)
    }

    pub fn log_softmax(&self, dim: i64) -> Result<Tensor> {
        self.softmax_impl(dim, true)
    }

    fn softmax_impl(&self, dim: i64, log: bool) -> Result<Tensor> {
        let d = norm_dim(dim, self.ndim())?;
        let (outer, n, inner) = lanes(&self.shape, d);
        let x = self.to_f64_vec();
        let mut out = vec![0f32; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| o * n * inner + j * inner + i;
                let m = (0..n).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..n).map(|j| (x[at(j)] - m).exp()).sum();
                for j in 0..n {
                    let e = x[at(j)] - m;
                    out[at(j)] = if log {
                        (e - s.ln()) as f32
                    } else {
                        (e.exp() / s) as f32
                    };
                }
            }
        }
        Ok(Tensor::raw(self.shape.clone(), Data::F32(out.into())))
    }

    /// `torch.cumprod(x, dim)`.
    pub fn cumprod(&self, dim: i64) -> Result<Tensor> {
        self.cumulative(dim, true)
    }

    /// `torch.cumsum(x, dim)`.
    pub fn cumsum(&self, dim: i64) -> Result<Tensor> {
        self.cumulative(dim, false)
    }

    fn cumulative(&self, dim: i64, product: bool) -> Result<Tensor> {
        let d = norm_dim(dim, self.ndim())?;
        let (outer, n, inner) = lanes(&self.shape, d);
        let x = self.to_f64_vec();
        let mut out = vec![0f64; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = if product { 1.0 } else { 0.0 };
                for j in 0..n {
                    let k = o * n * inner + j * inner + i;
                    if product {
                        acc *= x[k];
                    } else {
                        acc += x[k];
                    }
                    out[k] = acc;
                }
            }
        }
        let data = match self.dtype() {
            DType::F32 => Data::F32(out.into_iter().map(|x| x as f32).collect()),
            _ => Data::I64(out.into_iter().map(|x| x as i64).collect()),
        };
        Ok(Tensor::raw(self.shape.clone(), data))
    }

    /// `torch.topk(x, k, dim, largest)`: sorted values and their i64 indices. Equal values keep
    /// index order (lower index first), so results are deterministic.
    pub fn topk(&self, k: i64, dim: i64, largest: bool) -> Result<(Tensor, Tensor)> {
        let d = norm_dim(dim, self.ndim())?;
        let (outer, n, inner) = lanes(&self.shape, d);
        // A 0-d tensor has one element and no dim to shrink, so only k = 1 keeps its shape.
        if self.ndim() == 0 && k != 1 {
            return Err(TensorError::invalid(format!(
                "selected index k={k} out of range for a 0-d tensor"
            )));
        }
        let k = usize::try_from(k).ok().filter(|&k| k <= n).ok_or_else(|| {
            TensorError::invalid(format!(
                "selected index k={k} out of range (dimension size {n})"
            ))
        })?;
        limits::check_work("topk", &[outer, inner, n, (n.max(2)).ilog2() as usize + 1])?;
        let mut out_shape = self.shape.clone();
        if let Some(s) = out_shape.get_mut(d) {
            *s = k;
        }
        let x = self.to_f32_vec();
        let mut idx = vec![0i64; outer * k * inner];
        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut sel = vec![0usize; outer * k * inner];
        let mut meter = limits::Meter::new("topk")?;
        for o in 0..outer {
            for i in 0..inner {
                meter.charge(n as u64)?;
                order.clear();
                order.extend(0..n);
                let at = |j: usize| o * n * inner + j * inner + i;
                // Ties are broken by index (lower first), which makes the order total: the same
                // result as a stable sort, whichever algorithm runs.
                let cmp = |p: &usize, q: &usize| {
                    let c = cmp_f32(x[at(*p)], x[at(*q)]);
                    let c = if largest { c.reverse() } else { c };
                    c.then(p.cmp(q))
                };
                if k < n && k > 0 {
                    // Partition first (linear), then sort only the k selected.
                    order.select_nth_unstable_by(k - 1, cmp);
                    order.truncate(k);
                }
                sort_metered(&mut order, cmp, &mut meter)?;
                for (r, &j) in order.iter().take(k).enumerate() {
                    let out_at = o * k * inner + r * inner + i;
                    idx[out_at] = j as i64;
                    sel[out_at] = at(j);
                }
            }
        }
        let data = match &self.data {
            Data::F32(v) => Data::F32(sel.iter().map(|&s| v[s]).collect()),
            Data::I64(v) => Data::I64(sel.iter().map(|&s| v[s]).collect()),
            Data::Bool(v) => Data::Bool(sel.iter().map(|&s| v[s]).collect()),
        };
        Ok((
            Tensor::raw(out_shape.clone(), data),
            Tensor::raw(out_shape, Data::I64(idx)),
        ))
    }

    /// `torch.sort(x, dim, descending)`: (values, indices), stable.
    pub fn sort(&self, dim: i64, descending: bool) -> Result<(Tensor, Tensor)> {
        let d = norm_dim(dim, self.ndim())?;
        let n = self.shape.get(d).copied().unwrap_or(1);
        self.topk(n as i64, dim, descending)
    }
}

/// Sorts `v` by the total order `cmp`, charging `meter` as it goes so a sort of tens of
/// millions of elements stops at the deadline: short runs sorted by the standard library,
/// then merged pairwise (a bottom-up merge sort).
fn sort_metered(
    v: &mut Vec<usize>,
    cmp: impl Fn(&usize, &usize) -> std::cmp::Ordering,
    meter: &mut limits::Meter,
) -> Result<()> {
    const RUN: usize = 1 << 12;
    let n = v.len();
    for c in v.chunks_mut(RUN) {
        c.sort_unstable_by(&cmp);
        meter.charge((c.len() as u64) * 12)?;
    }
    if n <= RUN {
        return Ok(());
    }
    let mut buf = vec![0usize; n];
    let mut width = RUN;
    while width < n {
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (a, b) = (&v[start..mid], &v[mid..end]);
            let (mut i, mut j) = (0, 0);
            for (t, slot) in buf[start..end].iter_mut().enumerate() {
                if t % RUN == 0 {
                    meter.charge(RUN as u64)?;
                }
                let take_a = j == b.len() || (i < a.len() && cmp(&b[j], &a[i]).is_ge());
                if take_a {
                    *slot = a[i];
                    i += 1;
                } else {
                    *slot = b[j];
                    j += 1;
                }
            }
        }
        std::mem::swap(v, &mut buf);
        width *= 2;
    }
    Ok(())
}
