//! Element and stream types (DESIGN §3).

use std::fmt;

use serde::Serialize;

use crate::dim::{Dim, DimEnv, dims_to_string};

/// What a buffer may hold: `fp32` or `Multihot(fp32, X)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scalar {
    Fp32,
    Multihot(Dim),
}

impl Scalar {
    pub fn to_elem(&self) -> ElemType {
        match self {
            Scalar::Fp32 => ElemType::Fp32,
            Scalar::Multihot(x) => ElemType::Multihot(x.clone()),
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Fp32 => f.write_str("fp32"),
            Scalar::Multihot(x) => write!(f, "Multihot(fp32, {x})"),
        }
    }
}

/// The type of one stream element.
///
/// Invariants (kept by [`ElemType::buffer`] and [`ElemType::tuple`], checked by
/// the checker's conversion of written dtypes): a tuple has at least two fields and none of them is a tuple; a
/// one-field tuple is the field itself (same data layout).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemType {
    Fp32,
    /// `Multihot(fp32, X)`: a 0/1 vector of length X.
    Multihot(Dim),
    /// `Buffer(elem, dims)`, dims innermost first.
    Buffer {
        elem: Scalar,
        dims: Vec<Dim>,
    },
    Tuple(Vec<ElemType>),
}

impl ElemType {
    /// `Buffer(of, dims)`; a buffer of a buffer extends the dims (inner buffer dims first).
    /// `None` for a tuple (buffers hold scalars only).
    pub fn buffer(of: &ElemType, dims: &[Dim]) -> Option<ElemType> {
        match of {
            ElemType::Fp32 => Some(ElemType::Buffer {
                elem: Scalar::Fp32,
                dims: dims.to_vec(),
            }),
            ElemType::Multihot(x) => Some(ElemType::Buffer {
                elem: Scalar::Multihot(x.clone()),
                dims: dims.to_vec(),
            }),
            ElemType::Buffer { elem, dims: inner } => Some(ElemType::Buffer {
                elem: elem.clone(),
                dims: inner.iter().chain(dims).cloned().collect(),
            }),
            ElemType::Tuple(_) => None,
        }
    }

    /// The tuple of `fields`, flattened (tuples never nest); one field is that field itself.
    pub fn tuple(fields: Vec<ElemType>) -> ElemType {
        let mut flat = Vec::with_capacity(fields.len());
        for f in fields {
            match f {
                ElemType::Tuple(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(ElemType::Fp32)
        } else {
            ElemType::Tuple(flat)
        }
    }

    /// The tuple fields, or the type itself as its only field.
    pub fn fields(&self) -> &[ElemType] {
        match self {
            ElemType::Tuple(fs) => fs,
            other => std::slice::from_ref(other),
        }
    }

    pub fn arity(&self) -> usize {
        self.fields().len()
    }

    pub fn is_tuple(&self) -> bool {
        matches!(self, ElemType::Tuple(_))
    }

    pub fn is_buffer(&self) -> bool {
        matches!(self, ElemType::Buffer { .. })
    }

    /// Tensor shape of one *non-tuple* element, outermost first (DESIGN §3 data layout):
    /// `fp32` → `()`, `Multihot(X)` → `(X)`, `Buffer(fp32, [b0, b1])` → `(b1, b0)`,
    /// `Buffer(Multihot(X), [b0])` → `(b0, X)`. For a tuple, use [`ElemType::fields`].
    pub fn field_tensor_dims(&self) -> Vec<Dim> {
        match self {
            ElemType::Fp32 | ElemType::Tuple(_) => Vec::new(),
            ElemType::Multihot(x) => vec![x.clone()],
            ElemType::Buffer { elem, dims } => {
                let mut out: Vec<Dim> = dims.iter().rev().cloned().collect();
                if let Scalar::Multihot(x) = elem {
                    out.push(x.clone());
                }
                out
            }
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::Fp32 => f.write_str("fp32"),
            ElemType::Multihot(x) => write!(f, "Multihot(fp32, {x})"),
            ElemType::Buffer { elem, dims } => {
                write!(f, "Buffer({elem}, {})", dims_to_string(dims))
            }
            ElemType::Tuple(fs) => {
                let parts: Vec<String> = fs.iter().map(ElemType::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

impl Serialize for ElemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Element type + shape. `dims` are innermost first; the last entry counts the tensors in the
/// stream, so `rank = dims.len() - 1`. A well-formed stream type has at least one dim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StreamType {
    pub elem: ElemType,
    pub dims: Vec<Dim>,
}

impl StreamType {
    pub fn new(elem: ElemType, dims: Vec<Dim>) -> StreamType {
        StreamType { elem, dims }
    }

    /// `len(dims) - 1` (0 for the degenerate empty shape).
    pub fn rank(&self) -> usize {
        self.dims.len().saturating_sub(1)
    }

    /// `[D, N, M]`
    pub fn dims_string(&self) -> String {
        dims_to_string(&self.dims)
    }

    /// The stream's data as one tensor per tuple field, outermost first:
    /// `(dk, …, d0) ++ field_tensor_dims(field)`.
    pub fn tensor_dims(&self) -> Vec<Vec<Dim>> {
        self.elem
            .fields()
            .iter()
            .map(|f| {
                let mut out: Vec<Dim> = self.dims.iter().rev().cloned().collect();
                out.extend(f.field_tensor_dims());
                out
            })
            .collect()
    }

    /// Stream dims evaluated under `env`; `None` if any is unknown or not an integer.
    pub fn eval_dims(&self, env: &DimEnv) -> Option<Vec<i64>> {
        self.dims.iter().map(|d| d.eval(env)).collect()
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.elem, self.dims_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_of_buffer_extends_and_tuples_flatten() {
        let b = ElemType::buffer(&ElemType::Fp32, &[Dim::sym("D")]).unwrap();
        let bb = ElemType::buffer(&b, &[Dim::sym("N")]).unwrap();
        assert_eq!(bb.to_string(), "Buffer(fp32, [D, N])");
        let t = ElemType::tuple(vec![
            ElemType::tuple(vec![ElemType::Fp32, b.clone()]),
            ElemType::Multihot(Dim::sym("E")),
        ]);
        assert_eq!(
            t.to_string(),
            "[fp32, Buffer(fp32, [D]), Multihot(fp32, E)]"
        );
        assert_eq!(ElemType::tuple(vec![b.clone()]), b);
        assert!(ElemType::buffer(&t, &[Dim::ONE]).is_none());
    }

    #[test]
    fn layout_is_outermost_first() {
        let elem = ElemType::Buffer {
            elem: Scalar::Multihot(Dim::sym("E")),
            dims: vec![Dim::sym("D"), Dim::sym("N")],
        };
        let st = StreamType::new(elem, vec![Dim::sym("K"), Dim::sym("M")]);
        assert_eq!(st.rank(), 1);
        let dims: Vec<String> = st.tensor_dims()[0].iter().map(Dim::to_string).collect();
        assert_eq!(dims, ["M", "K", "N", "D", "E"]);
        assert_eq!(st.to_string(), "Buffer(Multihot(fp32, E), [D, N]) [K, M]");
    }
}
