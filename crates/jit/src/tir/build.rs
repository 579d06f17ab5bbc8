//! Builtins whose results are compile-time facts or are built from several operands: shape
//! queries (`size`, `dim`, `numel`, `len`), `dtype=` arguments and conversions, `arange`
//! tables, `zeros_like`/`ones_like`, `cat`/`stack`/`chunk`/`split`, and `topk`/`max(dim)`
//! with the `scatter` of their indices.
//!
//! Each accepts exactly the arguments the interpreter accepts for the supported cases, and
//! returns [`Unsupported`] wherever the interpreter could raise an error (an out-of-range `k`,
//! an index that may not fit), so a function that compiles never hides an interpreter error.

use super::*;

/// Elements of constant tables (`arange`) one function may own.
const MAX_TABLE_ELEMS: usize = 1 << 20;

/// Indices travel as f32 and are exact below 2^24.
const MAX_INDEX_RANGE: usize = 1 << 24;

impl Cx<'_> {
    pub(super) fn call_built(&mut self, f: Builtin, a: Args) -> R<Av> {
        use Builtin as B;
        match f {
            B::Size | B::Dim | B::Numel | B::PyLen => self.shape_query(f, &a),
            B::Arange => self.arange(&a),
            B::ZerosLike | B::OnesLike => self.like(f, &a),
            B::To | B::ToBool => self.convert(f, &a),
            B::Cat | B::Stack => self.join(f, &a),
            B::Chunk | B::Split => self.split(f, &a),
            B::Topk => self.topk_call(&a),
            B::Scatter => self.scatter(&a),
            _ => self.call_shape(f, a),
        }
    }

    fn receiver(&self, a: &Args, what: &str) -> R<View> {
        match a.pos.first() {
            Some(Av::T(t)) => Ok(t.clone()),
            _ => no(format!(
                "`{what}` of a value that is not a float or bool tensor"
            )),
        }
    }

    fn shape_query(&mut self, f: Builtin, a: &Args) -> R<Av> {
        use Builtin as B;
        if f == B::PyLen {
            return match a.pos.as_slice() {
                [Av::List(items)] if a.kw.is_empty() => Ok(Av::Int(items.len() as i64)),
                [Av::T(t) | Av::Idx(t, _)] if a.kw.is_empty() => match t.shape.first() {
                    Some(&n) => Ok(Av::Int(n as i64)),
                    None => no("len() of a 0-d tensor"),
                },
                _ => no("len() of this value"),
            };
        }
        let x = match a.pos.first() {
            Some(Av::T(t) | Av::Idx(t, _)) => t.clone(),
            _ => return no(format!("`{}` of a non-tensor", f.name())),
        };
        match f {
            B::Size => {
                a.only(&["dim"])?;
                match a.get(1, "dim") {
                    None | Some(Av::None) => Ok(Av::List(
                        x.shape
                            .iter()
                            .map(|&d| Av::Int(d as i64))
                            .collect::<Vec<_>>()
                            .into(),
                    )),
                    Some(d) => {
                        let d = norm_dim(self.int(d)?, x.shape.len())?;
                        Ok(Av::Int(x.shape.get(d).copied().unwrap_or(1) as i64))
                    }
                }
            }
            B::Dim => Ok(Av::Int(x.shape.len() as i64)),
            _ => Ok(Av::Int(numel(&x.shape) as i64)),
        }
    }

    /// The keyword `dtype=` as the element type it makes (`None`: not given).
    fn dtype_kw(&self, a: &Args) -> R<Option<Dt>> {
        match a.kw("dtype") {
            None | Some(Av::None) => Ok(None),
            Some(Av::DType(d)) => dt_of(*d).map(Some),
            Some(_) => no("a dtype= that is not a torch dtype"),
        }
    }

    fn number(&self, v: &Av) -> R<f64> {
        match v {
            Av::Int(i) => Ok(*i as f64),
            Av::Float(x) => Ok(*x),
            Av::Bool(b) => Ok(f64::from(u8::from(*b))),
            _ => no("a non-constant number"),
        }
    }

    /// `torch.arange(..)` as a constant table, computed by the tensor crate exactly as the
    /// interpreter computes it.
    fn arange(&mut self, a: &Args) -> R<Av> {
        a.only(&["start", "end", "step", "dtype"])?;
        let is_int = |v: &Av| matches!(v, Av::Int(_) | Av::Bool(_));
        let nums: Vec<&Av> = a.pos.iter().collect();
        let (start, end, step, ints) = match (nums.as_slice(), a.kw("start"), a.kw("end")) {
            (&[e], None, None) | (&[], None, Some(e)) => (0.0, self.number(e)?, 1.0, is_int(e)),
            (&[], Some(s), Some(e)) | (&[s, e], None, None) => (
                self.number(s)?,
                self.number(e)?,
                1.0,
                is_int(s) && is_int(e),
            ),
            (&[s, e, st], None, None) => (
                self.number(s)?,
                self.number(e)?,
                self.number(st)?,
                is_int(s) && is_int(e) && is_int(st),
            ),
            _ => return no("arange arguments"),
        };
        let (step, ints) = match a.kw("step") {
            Some(v) => (self.number(v)?, ints && is_int(v)),
            None => (step, ints),
        };
        match self.dtype_kw(a)? {
            Some(Dt::F32) => {}
            None if !ints => {}
            _ => return no("an integer or bool arange"),
        }
        let count = ((end - start) / step).ceil();
        let room = MAX_TABLE_ELEMS.saturating_sub(self.tables.iter().map(Vec::len).sum());
        let fits = count >= 1.0 && count <= room as f64;
        if !fits {
            return no("an arange that is empty or larger than the compiled tables allow");
        }
        let t = stepforge_tensor::Tensor::arange(start, end, step, stepforge_tensor::DType::F32)
            .or_else(|e| no(format!("arange: {e}")))?;
        let Some(v) = t.as_f32() else {
            return no("arange without f32 data");
        };
        let n = v.len();
        self.tables.push(v.to_vec());
        let p = Param::Table(self.tables.len() - 1);
        Ok(Av::T(self.push(
            NodeKind::Param(p),
            vec![n],
            false,
            Dt::F32,
        )))
    }

    /// `zeros_like(x, dtype=..)` / `ones_like`: a broadcast constant.
    fn like(&mut self, f: Builtin, a: &Args) -> R<Av> {
        a.only(&["input", "dtype"])?;
        if a.pos.len() != 1 {
            return no("zeros_like/ones_like with extra arguments");
        }
        let x = self.receiver(a, f.name())?;
        let dt = self.dtype_kw(a)?.unwrap_or(self.dt(&x));
        let v = if f == Builtin::ZerosLike { 0.0 } else { 1.0 };
        Ok(Av::T(self.constant_dt(v, dt).expand_to(&x.shape)))
    }

    /// `x.to(dtype)`, `x.type(dtype)`, `x.bool()`: a dtype conversion (device moves are
    /// no-ops).
    fn convert(&mut self, f: Builtin, a: &Args) -> R<Av> {
        let x = self.receiver(a, f.name())?;
        let to = if f == Builtin::ToBool {
            if a.pos.len() != 1 || !a.kw.is_empty() {
                return no("bool() with arguments");
            }
            Dt::Bool
        } else {
            a.only(&["dtype"])?;
            if a.pos.len() + a.kw.len() != 2 {
                return no("to() with other than one argument");
            }
            match a.get(1, "dtype") {
                Some(Av::DType(d)) => dt_of(*d)?,
                Some(Av::T(o)) => self.dt(o),
                Some(Av::Str) => return Ok(Av::T(x)),
                _ => return no("to() with this argument"),
            }
        };
        match (self.dt(&x), to) {
            (from, to) if from == to => Ok(Av::T(x)),
            (Dt::Bool, _) => {
                // Same 0/1 bits; a copy gives the value its float dtype.
                let y = self.materialise(x);
                self.nodes[y.node].dt = Dt::F32;
                Ok(Av::T(y))
            }
            (Dt::F32, _) => {
                // `x != 0` (NaN is true, as torch's cast).
                let z = self.constant(0.0);
                self.binary(Bin::Ne, x, z).map(Av::T)
            }
        }
    }

    /// The tensors of a `cat`/`stack` list argument.
    fn tensor_list(&self, a: &Args) -> R<Vec<View>> {
        let items = match a.get(0, "tensors") {
            Some(Av::List(items)) if !items.is_empty() => items.clone(),
            _ => return no("cat/stack of something other than a non-empty list"),
        };
        items
            .iter()
            .map(|v| match v {
                Av::T(t) => Ok(t.clone()),
                _ => no("cat/stack of a non-tensor"),
            })
            .collect()
    }

    fn join(&mut self, f: Builtin, a: &Args) -> R<Av> {
        a.only(&["tensors", "dim"])?;
        let mut parts = self.tensor_list(a)?;
        let dim = match a.get(1, "dim") {
            Some(d) => self.int(d)?,
            None => 0,
        };
        let rank = parts[0].shape.len();
        let d = if f == Builtin::Stack {
            if parts.iter().any(|p| p.shape != parts[0].shape) {
                return no("stack of tensors of different shapes");
            }
            let d = norm_dim(dim, rank + 1)?;
            for p in &mut parts {
                p.shape.insert(d, 1);
                p.strides.insert(d, 0);
            }
            d
        } else {
            if rank == 0 {
                return no("cat of 0-d tensors");
            }
            let d = norm_dim(dim, rank)?;
            let same = |p: &View| {
                p.shape.len() == rank
                    && (0..rank).all(|j| j == d || p.shape[j] == parts[0].shape[j])
            };
            if !parts.iter().all(same) {
                return no("cat of tensors whose shapes differ outside the dim");
            }
            d
        };
        let mut shape = parts[0].shape.clone();
        shape[d] = parts.iter().map(|p| p.shape[d]).sum();
        if parts.len() == 1 {
            return Ok(Av::T(parts.remove(0)));
        }
        let refs: Vec<&View> = parts.iter().collect();
        let batched = self.batched(&refs);
        let dt = if parts.iter().all(|p| self.dt(p) == Dt::Bool) {
            Dt::Bool
        } else {
            Dt::F32
        };
        self.flops += numel(&shape) as u64;
        Ok(Av::T(self.push(
            NodeKind::Cat { parts, dim: d },
            shape,
            batched,
            dt,
        )))
    }

    /// `x.chunk(n, dim)` / `x.split(size, dim)`: views, as `Tensor::chunk`/`split` cut them.
    fn split(&mut self, f: Builtin, a: &Args) -> R<Av> {
        let name = if f == Builtin::Chunk {
            "chunks"
        } else {
            "split_size_or_sections"
        };
        a.only(&[name, "dim"])?;
        let x = self.receiver(a, f.name())?;
        let Some(n) = a.get(1, name) else {
            return no(format!("missing argument `{name}`"));
        };
        let n = self.int(n)?;
        let dim = match a.get(2, "dim") {
            Some(d) => self.int(d)?,
            None => 0,
        };
        if x.shape.is_empty() || n <= 0 {
            return no("chunk/split of a 0-d tensor or into no pieces");
        }
        let d = norm_dim(dim, x.shape.len())?;
        let size = x.shape[d];
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let step = if f == Builtin::Chunk {
            size.div_ceil(n).max(1)
        } else {
            n
        };
        self.list_items += size.div_ceil(step);
        if self.list_items > MAX_LIST_ITEMS {
            return no("more list items than the analysis allows");
        }
        let mut out = Vec::new();
        let mut start = 0;
        while start < size {
            let len = step.min(size - start);
            let mut v = x.clone();
            v.offset = offset_add(v.offset, start as isize * x.strides[d])?;
            v.shape[d] = len;
            out.push(Av::T(v));
            start += len;
        }
        Ok(Av::List(out.into()))
    }

    fn topk_call(&mut self, a: &Args) -> R<Av> {
        a.only(&["input", "k", "dim", "largest"])?;
        let x = self.receiver(a, "topk")?;
        let Some(k) = a.get(1, "k") else {
            return no("topk without k");
        };
        let k = self.int(k)?;
        let dim = match a.get(2, "dim") {
            Some(d) => self.int(d)?,
            None => -1,
        };
        let largest = match a.get(3, "largest") {
            None => true,
            Some(Av::Bool(b)) => *b,
            Some(_) => return no("a non-constant largest="),
        };
        let (v, i, n) = self.topk(x, k, dim, largest)?;
        Ok(Av::List(vec![Av::T(v), Av::Idx(i, n)].into()))
    }

    /// `torch.max(x, dim, keepdim)` / `min`: the values and indices of a top-1.
    pub(super) fn max_dim(&mut self, largest: bool, a: &Args) -> R<Av> {
        let x = self.receiver(a, if largest { "max" } else { "min" })?;
        let Some(dim) = a.get(1, "dim") else {
            return no("max/min without dim");
        };
        let dim = self.int(dim)?;
        let keep = self.keepdim(a, 2)?;
        let d = norm_dim(dim, x.shape.len())?;
        let (mut v, mut i, n) = self.topk(x, 1, dim, largest)?;
        if !keep {
            for t in [&mut v, &mut i] {
                t.shape.remove(d);
                t.strides.remove(d);
            }
        }
        Ok(Av::List(vec![Av::T(v), Av::Idx(i, n)].into()))
    }

    /// A [`NodeKind::TopK`] node: (values, indices, range of the indices).
    fn topk(&mut self, x: View, k: i64, dim: i64, largest: bool) -> R<(View, View, usize)> {
        if self.dt(&x) == Dt::Bool || x.shape.is_empty() {
            return no("topk of a bool or 0-d tensor");
        }
        let d = norm_dim(dim, x.shape.len())?;
        let n = x.shape[d];
        let k = match usize::try_from(k) {
            Ok(k) if (1..=n).contains(&k) => k,
            _ => return no("topk with k out of range"),
        };
        if n >= MAX_INDEX_RANGE {
            return no("topk over a dim too long for exact f32 indices");
        }
        let src = if x.is_contiguous() && !matches!(self.node(&x).kind, NodeKind::Const(_)) {
            x
        } else {
            self.materialise(x)
        };
        let mut out = src.shape.clone();
        out[d] = k;
        let mut shape = vec![2];
        shape.extend_from_slice(&out);
        let batched = self.batched(&[&src]);
        let len = numel(&src.shape) as u64;
        self.flops += len * (2 + u64::from(n.max(2).ilog2()));
        let node = self
            .push(
                NodeKind::TopK {
                    src,
                    dim: d,
                    k,
                    largest,
                },
                shape,
                batched,
                Dt::F32,
            )
            .node;
        let strides = contiguous_strides(&out);
        let values = View {
            node,
            offset: 0,
            shape: out.clone(),
            strides: strides.clone(),
        };
        let indices = View {
            node,
            offset: numel(&out),
            shape: out,
            strides,
        };
        Ok((values, indices, n))
    }

    /// `base.scatter(dim, index, src | value)` with `index` from a topk.
    fn scatter(&mut self, a: &Args) -> R<Av> {
        a.only(&["input", "dim", "index", "src", "value"])?;
        let base = self.receiver(a, "scatter")?;
        if self.dt(&base) != Dt::F32 || base.shape.is_empty() {
            return no("scatter into a bool or 0-d tensor");
        }
        let rank = base.shape.len();
        let Some(dim) = a.get(1, "dim") else {
            return no("scatter without dim");
        };
        let d = norm_dim(self.int(dim)?, rank)?;
        let Some(Av::Idx(index, bound)) = a.get(2, "index").cloned() else {
            return no("a scatter index that is not a topk's indices");
        };
        let fits = index.shape.len() == rank
            && bound <= base.shape[d]
            && (0..rank).all(|j| j == d || index.shape[j] <= base.shape[j]);
        if !fits {
            return no("a scatter index that may not fit the tensor");
        }
        let src = match (a.kw("src"), a.kw("value"), a.pos.get(3)) {
            (Some(v), _, _) | (None, Some(v), _) | (None, None, Some(v)) => v.clone(),
            _ => return no("scatter without src or value"),
        };
        let src = match src {
            Av::Int(_) | Av::Float(_) | Av::Bool(_) => {
                let x = self.number(&src)? as f32;
                self.constant(x).expand_to(&index.shape)
            }
            Av::T(s) if s.shape.is_empty() => s.expand_to(&index.shape),
            Av::T(s) => {
                let ok = s.shape.len() == rank && (0..rank).all(|j| index.shape[j] <= s.shape[j]);
                if !ok {
                    return no("a scatter source smaller than the index");
                }
                View {
                    shape: index.shape.clone(),
                    ..s
                }
            }
            _ => return no("a scatter source that is not a number or tensor"),
        };
        let batched = self.batched(&[&base, &index, &src]);
        self.flops += (numel(&base.shape) + numel(&index.shape)) as u64;
        let shape = base.shape.clone();
        Ok(Av::T(self.push(
            NodeKind::Scatter {
                base,
                index,
                src,
                dim: d,
            },
            shape,
            batched,
            Dt::F32,
        )))
    }
}

/// The element type a torch dtype makes here (int64 tensors are not compiled).
fn dt_of(d: DType) -> R<Dt> {
    match d {
        DType::F32 => Ok(Dt::F32),
        DType::Bool => Ok(Dt::Bool),
        DType::I64 => no("an int64 tensor"),
    }
}
