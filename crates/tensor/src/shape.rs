//! Shape manipulation: reshape, permutations, (un)squeeze, flatten, expand, repeat, chunk,
//! cat and stack. Every result is materialised contiguously.

use crate::{
    DType, Data, Result, Tensor, TensorError, fmt_shape, limits, norm_dim, norm_insert_dim,
};

impl Tensor {
    /// `x.reshape(shape)` / `x.view(shape)`, with at most one `-1`.
    pub fn reshape(&self, shape: &[i64]) -> Result<Tensor> {
        let new_shape =
            resolve_shape(self.numel(), shape).ok_or_else(|| self.bad_reshape(shape))?;
        limits::checked_numel(&new_shape)?;
        Ok(Tensor::raw(new_shape, self.data.clone()))
    }

    /// Same as [`Tensor::reshape`] but keeps the buffer (no copy).
    pub fn into_reshape(self, shape: &[i64]) -> Result<Tensor> {
        let new_shape =
            resolve_shape(self.numel(), shape).ok_or_else(|| self.bad_reshape(shape))?;
        limits::checked_numel(&new_shape)?;
        Ok(Tensor::raw(new_shape, self.data))
    }

    fn bad_reshape(&self, shape: &[i64]) -> TensorError {
        let parts: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        TensorError::invalid(format!(
            "shape '[{}]' is invalid for input of size {}",
            parts.join(", "),
            self.numel()
        ))
    }

    /// `x.permute(dims)`.
    pub fn permute(&self, dims: &[i64]) -> Result<Tensor> {
        let nd = self.ndim();
        if dims.len() != nd {
            return Err(TensorError::invalid(format!(
                "permute: number of dims ({}) doesn't match the tensor's rank ({nd})",
                dims.len()
            )));
        }
        let mut seen = vec![false; nd];
        let mut perm = Vec::with_capacity(nd);
        for &d in dims {
            let d = norm_dim(d, nd)?;
            if std::mem::replace(&mut seen[d], true) {
                return Err(TensorError::invalid("permute: repeated dim"));
            }
            perm.push(d);
        }
        self.permute_usize(&perm)
    }

    pub(crate) fn permute_usize(&self, perm: &[usize]) -> Result<Tensor> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(self.clone());
        }
        let st = self.istrides();
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
        self.view_copy(shape, &strides, 0)
    }

    /// `x.transpose(d0, d1)`.
    pub fn transpose(&self, d0: i64, d1: i64) -> Result<Tensor> {
        let nd = self.ndim();
        if nd == 0 {
            return Ok(self.clone());
        }
        let (a, b) = (norm_dim(d0, nd)?, norm_dim(d1, nd)?);
        let mut perm: Vec<usize> = (0..nd).collect();
        perm.swap(a, b);
        self.permute_usize(&perm)
    }

    /// `x.T`: reverses all dims (the matrix transpose for 2-d).
    pub fn t_all(&self) -> Result<Tensor> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.permute_usize(&perm)
    }

    /// `x.t()`: only for rank ≤ 2.
    pub fn t(&self) -> Result<Tensor> {
        if self.ndim() > 2 {
            return Err(TensorError::invalid(format!(
                "t() expects a tensor with <= 2 dimensions, but self is {}D",
                self.ndim()
            )));
        }
        self.t_all()
    }

    /// `x.movedim(source, destination)` with ints or equal-length lists.
    pub fn movedim(&self, src: &[i64], dst: &[i64]) -> Result<Tensor> {
        let nd = self.ndim();
        if src.len() != dst.len() {
            return Err(TensorError::invalid(format!(
                "movedim: Invalid source or destination dims: source ({} dims) should contain the same number of dims as destination ({} dims)",
                src.len(),
                dst.len()
            )));
        }
        let mut perm: Vec<Option<usize>> = vec![None; nd];
        let mut used = vec![false; nd];
        for (&s, &d) in src.iter().zip(dst) {
            let s = norm_dim(s, nd)?;
            let d = norm_dim(d, nd)?;
            if nd == 0 {
                return Ok(self.clone());
            }
            if perm[d].is_some() || used[s] {
                return Err(TensorError::invalid("movedim: repeated dim"));
            }
            perm[d] = Some(s);
            used[s] = true;
        }
        let mut rest = (0..nd).filter(|i| !used[*i]);
        let perm: Vec<usize> = perm
            .into_iter()
            .map(|p| p.or_else(|| rest.next()).unwrap_or(0))
            .collect();
        self.permute_usize(&perm)
    }

    /// `x.unsqueeze(dim)`.
    pub fn unsqueeze(&self, dim: i64) -> Result<Tensor> {
        let d = norm_insert_dim(dim, self.ndim())?;
        let mut shape = self.shape.clone();
        shape.insert(d, 1);
        Ok(Tensor::raw(shape, self.data.clone()))
    }

    /// `x.squeeze()` (all size-1 dims) or `x.squeeze(dim)` (that dim if it has size 1).
    pub fn squeeze(&self, dims: Option<&[i64]>) -> Result<Tensor> {
        let nd = self.ndim();
        let mut drop = vec![false; nd];
        match dims {
            None => {
                for (i, &s) in self.shape.iter().enumerate() {
                    drop[i] = s == 1;
                }
            }
            Some(ds) => {
                for &d in ds {
                    let d = norm_dim(d, nd)?;
                    if let Some(slot) = drop.get_mut(d) {
                        *slot = self.shape[d] == 1;
                    }
                }
            }
        }
        let shape = self
            .shape
            .iter()
            .zip(&drop)
            .filter(|(_, d)| !**d)
            .map(|(&s, _)| s)
            .collect();
        Ok(Tensor::raw(shape, self.data.clone()))
    }

    /// `x.flatten(start_dim, end_dim)`.
    pub fn flatten(&self, start: i64, end: i64) -> Result<Tensor> {
        let nd = self.ndim();
        if nd == 0 {
            return Ok(Tensor::raw(vec![1], self.data.clone()));
        }
        let (s, e) = (norm_dim(start, nd)?, norm_dim(end, nd)?);
        if s > e {
            return Err(TensorError::invalid(
                "flatten() has invalid args: start_dim cannot come after end_dim",
            ));
        }
        let mut shape = self.shape[..s].to_vec();
        shape.push(self.shape[s..=e].iter().product());
        shape.extend_from_slice(&self.shape[e + 1..]);
        Ok(Tensor::raw(shape, self.data.clone()))
    }

    /// `x.expand(sizes)`: `-1` keeps a dim; size-1 dims stretch; new leading dims may be added.
    pub fn expand(&self, sizes: &[i64]) -> Result<Tensor> {
        let nd = self.ndim();
        if sizes.len() < nd {
            return Err(TensorError::invalid(format!(
                "expand: the number of sizes provided ({}) must be greater or equal to the number of dimensions in the tensor ({nd})",
                sizes.len()
            )));
        }
        let lead = sizes.len() - nd;
        let mut target = Vec::with_capacity(sizes.len());
        for (i, &s) in sizes.iter().enumerate() {
            let own = if i >= lead {
                Some(self.shape[i - lead])
            } else {
                None
            };
            let t = match (s, own) {
                (-1, Some(o)) => o,
                (-1, None) => {
                    return Err(TensorError::invalid(
                        "expand: -1 not allowed in leading, non-existing dimension",
                    ));
                }
                (s, _) if s < 0 => {
                    return Err(TensorError::invalid(format!("expand: invalid size {s}")));
                }
                (s, _) => usize::try_from(s).unwrap_or(usize::MAX),
            };
            if let Some(o) = own
                && o != 1
                && o != t
            {
                return Err(TensorError::invalid(format!(
                    "the expanded size of the tensor ({t}) must match the existing size ({o}) at non-singleton dimension {i}; target sizes {:?}, tensor shape {}",
                    sizes,
                    fmt_shape(&self.shape)
                )));
            }
            target.push(t);
        }
        self.broadcast_to(&target)
    }

    /// `x.repeat(reps)`: tiles the tensor; `reps` may add leading dims.
    pub fn repeat(&self, reps: &[i64]) -> Result<Tensor> {
        let nd = self.ndim();
        if reps.len() < nd {
            return Err(TensorError::invalid(format!(
                "Number of dimensions of repeat dims ({}) can not be smaller than number of dimensions of tensor ({nd})",
                reps.len()
            )));
        }
        let mut r = Vec::with_capacity(reps.len());
        for &x in reps {
            r.push(
                usize::try_from(x).map_err(|_| {
                    TensorError::invalid(format!("repeat: invalid repeat count {x}"))
                })?,
            );
        }
        let lead = reps.len() - nd;
        let src: Vec<usize> = (0..reps.len())
            .map(|i| if i < lead { 1 } else { self.shape[i - lead] })
            .collect();
        let out: Vec<usize> = src
            .iter()
            .zip(&r)
            .map(|(&s, &k)| s.saturating_mul(k))
            .collect();
        limits::checked_numel(&out)?;
        // View the output as (r0, s0, r1, s1, ...) with stride 0 on each repeat axis.
        let st = crate::contiguous_strides(&src);
        let mut shape2 = Vec::with_capacity(2 * out.len());
        let mut strides2 = Vec::with_capacity(2 * out.len());
        for i in 0..out.len() {
            shape2.push(r[i]);
            strides2.push(0isize);
            shape2.push(src[i]);
            strides2.push(st[i] as isize);
        }
        let t = self.view_copy(shape2, &strides2, 0)?;
        Ok(Tensor::raw(out, t.data))
    }

    /// `x.narrow(dim, start, len)`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let Some(&size) = self.shape.get(dim) else {
            return Err(TensorError::invalid(format!(
                "narrow: dim {dim} is out of range for a tensor of rank {}",
                self.ndim()
            )));
        };
        if start.checked_add(len).is_none_or(|e| e > size) {
            return Err(TensorError::invalid(format!(
                "narrow: start ({start}) + length ({len}) exceeds dimension size ({size})"
            )));
        }
        let st = self.istrides();
        let mut shape = self.shape.clone();
        shape[dim] = len;
        self.view_copy(shape, &st, start as isize * st[dim])
    }

    /// `x.chunk(n, dim)`: chunks of size ceil(size/n); the last may be smaller, and fewer than
    /// n chunks come back when the size does not allow n (torch).
    pub fn chunk(&self, n: i64, dim: i64) -> Result<Vec<Tensor>> {
        if n <= 0 {
            return Err(TensorError::invalid(format!(
                "chunk expects `chunks` to be greater than 0, got: {n}"
            )));
        }
        let d = norm_dim(dim, self.ndim())?;
        if self.ndim() == 0 {
            return Err(TensorError::invalid(
                "chunk expects at least a 1-dimensional tensor",
            ));
        }
        let size = self.shape[d];
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let step = size.div_ceil(n).max(1);
        self.split_sizes(d, size, step)
    }

    /// `x.split(size, dim)`.
    pub fn split(&self, size: i64, dim: i64) -> Result<Vec<Tensor>> {
        let d = norm_dim(dim, self.ndim())?;
        if size <= 0 || self.ndim() == 0 {
            return Err(TensorError::invalid("split expects a positive split size"));
        }
        self.split_sizes(
            d,
            self.shape[d],
            usize::try_from(size).unwrap_or(usize::MAX),
        )
    }

    fn split_sizes(&self, d: usize, size: usize, step: usize) -> Result<Vec<Tensor>> {
        limits::check_pieces("splitting", size.div_ceil(step.max(1)), self.numel())?;
        let mut out = Vec::new();
        let mut start = 0;
        while start < size {
            let len = step.min(size - start);
            out.push(self.narrow(d, start, len)?);
            start += len;
        }
        if out.is_empty() {
            out.push(self.clone());
        }
        Ok(out)
    }

    /// `torch.cat(tensors, dim)`.
    pub fn cat(tensors: &[&Tensor], dim: i64) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(TensorError::invalid(
                "torch.cat(): expected a non-empty list of Tensors",
            ));
        };
        let nd = first.ndim();
        if nd == 0 {
            return Err(TensorError::invalid(
                "zero-dimensional tensor cannot be concatenated",
            ));
        }
        let d = norm_dim(dim, nd)?;
        let mut total = 0usize;
        for (i, t) in tensors.iter().enumerate() {
            let ok = t.ndim() == nd
                && t.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(j, (a, b))| j == d || a == b);
            if !ok {
                return Err(TensorError::invalid(format!(
                    "torch.cat: sizes of tensors must match except in dimension {d}: tensor 0 has shape {} but tensor {i} has shape {}",
                    fmt_shape(&first.shape),
                    fmt_shape(&t.shape)
                )));
            }
            total = total.saturating_add(t.shape[d]);
        }
        let mut shape = first.shape.clone();
        shape[d] = total;
        let widths: Vec<usize> = tensors
            .iter()
            .map(|t| t.shape[d..].iter().product())
            .collect();
        concat_rows(tensors, shape, d, &widths)
    }

    /// `torch.stack(tensors, dim)`. The result's size is checked before anything is copied, and
    /// the inputs are read in place (an unsqueezed tensor has the same row-major data), so
    /// `torch.stack([x] * 1000000)` costs one size check, not a million copies.
    pub fn stack(tensors: &[&Tensor], dim: i64) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(TensorError::invalid("stack expects a non-empty TensorList"));
        };
        for (i, t) in tensors.iter().enumerate() {
            if t.shape != first.shape {
                return Err(TensorError::invalid(format!(
                    "stack expects each tensor to be equal size, but got {} at entry 0 and {} at entry {i}",
                    fmt_shape(&first.shape),
                    fmt_shape(&t.shape)
                )));
            }
        }
        let d = norm_insert_dim(dim, first.ndim())?;
        let mut shape = first.shape.clone();
        shape.insert(d, tensors.len());
        let width: usize = first.shape[d..].iter().product();
        concat_rows(tensors, shape, d, &vec![width; tensors.len()])
    }
}

/// Concatenation along `d` of the result `shape`: for each outer index (the dims before `d`),
/// row `o` of every part in turn, part `i` contributing `widths[i]` elements. Size-checked
/// before allocating; copying charges a [`limits::Meter`].
fn concat_rows(
    tensors: &[&Tensor],
    shape: Vec<usize>,
    d: usize,
    widths: &[usize],
) -> Result<Tensor> {
    let cap = limits::checked_numel(&shape)?;
    limits::check_pieces("concatenating", tensors.len(), cap)?;
    let dtype = tensors
        .iter()
        .map(|t| t.dtype())
        .max()
        .unwrap_or(DType::F32);
    let outer: usize = shape[..d].iter().product();
    let parts: Vec<std::borrow::Cow<'_, Tensor>> =
        tensors.iter().map(|t| t.cast_cow(dtype)).collect();
    fn go<T: Copy>(parts: &[&[T]], widths: &[usize], outer: usize, cap: usize) -> Result<Vec<T>> {
        let mut meter = limits::Meter::new("concatenation")?;
        let mut out = Vec::with_capacity(cap);
        for o in 0..outer {
            for (p, &w) in parts.iter().zip(widths) {
                meter.charge(w as u64 + 1)?;
                out.extend_from_slice(&p[o * w..(o + 1) * w]);
            }
        }
        Ok(out)
    }
    macro_rules! cat_as {
        ($var:ident) => {{
            let mut slices = Vec::with_capacity(parts.len());
            for p in &parts {
                match &p.data {
                    Data::$var(v) => slices.push(&v[..]),
                    _ => return Err(TensorError::invalid("internal error: cat dtype")),
                }
            }
            Data::$var(go(&slices, widths, outer, cap)?.into())
        }};
    }
    let data = match dtype {
        DType::F32 => cat_as!(F32),
        DType::I64 => cat_as!(I64),
        DType::Bool => cat_as!(Bool),
    };
    Ok(Tensor::raw(shape, data))
}

fn resolve_shape(n: usize, shape: &[i64]) -> Option<Vec<usize>> {
    let mut infer = None;
    let mut known: usize = 1;
    let mut out = Vec::with_capacity(shape.len());
    for (i, &s) in shape.iter().enumerate() {
        if s == -1 {
            if infer.is_some() {
                return None;
            }
            infer = Some(i);
            out.push(1);
        } else {
            let s = usize::try_from(s).ok()?;
            known = known.checked_mul(s)?;
            out.push(s);
        }
    }
    if let Some(i) = infer {
        if known == 0 || !n.is_multiple_of(known) {
            return None;
        }
        out[i] = n / known;
    } else if known != n {
        return None;
    }
    Some(out)
}
