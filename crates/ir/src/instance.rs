//! Concrete shapes of a graph under one dimension binding ([`Graph::instantiate`]).
//!
//! Back ends allocate from these numbers, so every size is validated here, once, without
//! overflow: each static dimension must evaluate to a positive integer, and every product a
//! back end would form (a field tensor's element count, the number of stream elements, their
//! product) must fit in `usize`. Dimensions that depend on a Partition's routing are only known
//! while the program runs; they are marked [`Extent::Dynamic`] rather than guessed.

use std::fmt;

use crate::dim::{Dim, DimEnv, Sym};
use crate::graph::{Graph, ParamId, StreamId};
use crate::types::StreamType;

/// One concrete dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extent {
    Static(usize),
    /// Depends on a Partition's routing: known at run time only.
    Dynamic,
}

impl Extent {
    pub fn get(self) -> Option<usize> {
        match self {
            Extent::Static(n) => Some(n),
            Extent::Dynamic => None,
        }
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extent::Static(n) => write!(f, "{n}"),
            Extent::Dynamic => f.write_str("?"),
        }
    }
}

/// The concrete shape of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamShape {
    /// Stream dims, innermost first (like [`StreamType::dims`]).
    pub dims: Vec<Extent>,
    /// Per tuple field: the tensor shape of one element, outermost first
    /// ([`crate::ElemType::field_tensor_dims`]).
    pub fields: Vec<Vec<Extent>>,
    /// Number of elements in the stream (product of `dims`), when static.
    pub len: Option<usize>,
    /// Per field: scalars in one element, when static.
    pub elem_lens: Vec<Option<usize>>,
}

/// The concrete shape of a parameter tensor (parameters never have dynamic dims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamShape {
    /// Outermost first (the data layout: reversed declaration dims, then the element's own
    /// tensor dims).
    pub shape: Vec<usize>,
    pub len: usize,
}

/// A graph's shapes under one binding of its dimension symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    streams: Vec<StreamShape>,
    params: Vec<ParamShape>,
}

impl Instance {
    /// The shape of `s`; `None` for a foreign id.
    pub fn stream(&self, s: StreamId) -> Option<&StreamShape> {
        self.streams.get(s.index())
    }

    pub fn streams(&self) -> &[StreamShape] {
        &self.streams
    }

    pub fn param(&self, p: ParamId) -> Option<&ParamShape> {
        self.params.get(p.index())
    }

    pub fn params(&self) -> &[ParamShape] {
        &self.params
    }
}

/// What is wrong with a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceErrorKind {
    /// A symbol with no value in the binding.
    Unbound(String),
    /// The dimension is not an integer under the binding, or exceeds `i64`.
    NotInteger,
    /// The dimension evaluates to zero or less.
    NonPositive(i64),
    /// A product of sizes exceeds `usize`.
    Overflow,
}

/// Where the bad size is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceSite {
    Stream(StreamId),
    Param(ParamId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceError {
    pub site: InstanceSite,
    /// The offending dimension as written, or the whole shape for an overflow.
    pub dim: String,
    pub kind: InstanceErrorKind,
}

impl fmt::Display for InstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let site = match self.site {
            InstanceSite::Stream(s) => format!("stream {s}"),
            InstanceSite::Param(p) => format!("parameter {p}"),
        };
        match &self.kind {
            InstanceErrorKind::Unbound(sym) => {
                write!(
                    f,
                    "{site}: dimension `{}` uses `{sym}`, which has no value",
                    self.dim
                )
            }
            InstanceErrorKind::NotInteger => write!(
                f,
                "{site}: dimension `{}` is not an integer that fits in 64 bits",
                self.dim
            ),
            InstanceErrorKind::NonPositive(v) => {
                write!(
                    f,
                    "{site}: dimension `{}` is {v}; sizes must be ≥ 1",
                    self.dim
                )
            }
            InstanceErrorKind::Overflow => {
                write!(f, "{site}: the size of `{}` overflows", self.dim)
            }
        }
    }
}

impl std::error::Error for InstanceError {}

fn extent(d: &Dim, env: &DimEnv, site: InstanceSite) -> Result<Extent, InstanceError> {
    let err = |kind| InstanceError {
        site,
        dim: d.to_string(),
        kind,
    };
    if !d.is_static() {
        return Ok(Extent::Dynamic);
    }
    for s in d.symbols() {
        if let Sym::Static(name) = s
            && env.get_static(name).is_none()
        {
            return Err(err(InstanceErrorKind::Unbound(name.to_string())));
        }
    }
    let v = d
        .eval(env)
        .ok_or_else(|| err(InstanceErrorKind::NotInteger))?;
    if v <= 0 {
        return Err(err(InstanceErrorKind::NonPositive(v)));
    }
    usize::try_from(v)
        .map(Extent::Static)
        .map_err(|_| err(InstanceErrorKind::Overflow))
}

/// The product of the static extents, `None` if any is dynamic; `Err` on overflow.
fn product(xs: &[Extent]) -> Result<Option<usize>, ()> {
    let mut acc = Some(1usize);
    for x in xs {
        match (acc, x) {
            (Some(a), Extent::Static(n)) => acc = Some(a.checked_mul(*n).ok_or(())?),
            (_, Extent::Dynamic) => acc = None,
            (None, Extent::Static(_)) => {}
        }
    }
    Ok(acc)
}

fn stream_shape(
    ty: &StreamType,
    env: &DimEnv,
    site: InstanceSite,
) -> Result<StreamShape, InstanceError> {
    let overflow = || InstanceError {
        site,
        dim: ty.to_string(),
        kind: InstanceErrorKind::Overflow,
    };
    let dims = ty
        .dims
        .iter()
        .map(|d| extent(d, env, site))
        .collect::<Result<Vec<_>, _>>()?;
    let len = product(&dims).map_err(|()| overflow())?;
    let mut fields = Vec::with_capacity(ty.elem.arity());
    let mut elem_lens = Vec::with_capacity(ty.elem.arity());
    for f in ty.elem.fields() {
        let shape = f
            .field_tensor_dims()
            .iter()
            .map(|d| extent(d, env, site))
            .collect::<Result<Vec<_>, _>>()?;
        let n = product(&shape).map_err(|()| overflow())?;
        // The whole stream's data for this field must be addressable too.
        if let (Some(a), Some(b)) = (len, n) {
            a.checked_mul(b).ok_or_else(overflow)?;
        }
        fields.push(shape);
        elem_lens.push(n);
    }
    Ok(StreamShape {
        dims,
        fields,
        len,
        elem_lens,
    })
}

impl Graph {
    /// Concrete shapes of every stream and parameter under `env` (see the module docs).
    pub fn instantiate(&self, env: &DimEnv) -> Result<Instance, InstanceError> {
        let streams = self
            .streams()
            .iter()
            .map(|s| stream_shape(&s.ty, env, InstanceSite::Stream(s.id)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = Vec::with_capacity(self.params().len());
        for p in self.params() {
            let site = InstanceSite::Param(p.id);
            let mut dims: Vec<Dim> = p.dims.iter().rev().cloned().collect();
            dims.extend(p.elem.field_tensor_dims());
            let mut shape = Vec::with_capacity(dims.len());
            for d in &dims {
                match extent(d, env, site)? {
                    Extent::Static(n) => shape.push(n),
                    // A parameter is data of the task: its dims never depend on routing.
                    Extent::Dynamic => {
                        return Err(InstanceError {
                            site,
                            dim: d.to_string(),
                            kind: InstanceErrorKind::NotInteger,
                        });
                    }
                }
            }
            let len = shape
                .iter()
                .try_fold(1usize, |a, &n| a.checked_mul(n))
                .ok_or_else(|| InstanceError {
                    site,
                    dim: p.name.clone(),
                    kind: InstanceErrorKind::Overflow,
                })?;
            params.push(ParamShape { shape, len });
        }
        Ok(Instance { streams, params })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dim::DynDim;
    use crate::graph::{GraphBuilder, OpId, OpKind};
    use crate::types::ElemType;
    use stepforge_syntax::span::Span;

    fn one_stream(ty: StreamType) -> Graph {
        let mut b = GraphBuilder::new(Vec::new());
        let op = b.add_op(
            OpKind::Input {
                index: 0,
                name: "X".into(),
            },
            Span::DUMMY,
        );
        b.add_output(op, ty, None, Span::DUMMY).unwrap();
        b.add_param(
            "W".into(),
            ElemType::Fp32,
            vec![Dim::sym("D"), Dim::sym("N")],
            Span::DUMMY,
        );
        b.finish().unwrap()
    }

    fn env(n: i64) -> DimEnv {
        DimEnv::from_statics([("D", 16), ("N", n)])
    }

    #[test]
    fn shapes_are_concrete_and_dynamic_dims_marked() {
        let buf = ElemType::buffer(&ElemType::Fp32, &[Dim::sym("D")]).unwrap();
        let p = Dim::dynamic(DynDim {
            op: OpId::new(0),
            branch: 1,
        });
        let g = one_stream(StreamType::new(buf, vec![Dim::sym("N"), p]));
        let inst = g.instantiate(&env(7)).unwrap();
        let s = &inst.streams()[0];
        assert_eq!(s.dims, [Extent::Static(7), Extent::Dynamic]);
        assert_eq!(s.fields, [vec![Extent::Static(16)]]);
        assert_eq!((s.len, s.elem_lens.as_slice()), (None, &[Some(16)][..]));
        let w = inst.param(crate::graph::ParamId::new(0)).unwrap();
        assert_eq!((w.shape.as_slice(), w.len), (&[7, 16][..], 112));
    }

    #[test]
    fn non_positive_unbound_and_overflowing_sizes_are_errors() {
        let t = StreamType::new(ElemType::Fp32, vec![Dim::sym("N"), Dim::sym("N")]);
        let g = one_stream(t);
        let e = g.instantiate(&env(0)).unwrap_err();
        assert_eq!(e.kind, InstanceErrorKind::NonPositive(0));
        let e = g
            .instantiate(&DimEnv::from_statics([("D", 1)]))
            .unwrap_err();
        assert_eq!(e.kind, InstanceErrorKind::Unbound("N".into()));
        // N*N overflows usize on 64-bit only through the product: each dim alone fits.
        let e = g.instantiate(&env(i64::MAX / 2)).unwrap_err();
        assert_eq!(e.kind, InstanceErrorKind::Overflow);
        assert!(e.to_string().contains("overflows"), "{e}");
    }
}
