//! Seeded data generation for a task's inputs and parameters (DESIGN §8).
//!
//! Data is drawn from one [`Rng`] seeded with the run's seed, in file order: inputs, then
//! parameters; within a tuple-typed input field by field; within a tensor in row-major order
//! (outermost first, innermost fastest). Every size is computed and checked against
//! [`GenLimits`] *before* anything is allocated, so `--dims M=100000000` fails at once with
//! E0701 instead of exhausting memory.
//!
//! Layout (DESIGN §3): a stream `[d0, .., dk]` (innermost first) becomes a tensor of shape
//! `(dk, .., d0)`; a `Buffer(T, [b0, .., bj])` element appends `(bj, .., b0)`; a
//! `Multihot(fp32, X)` element appends `X`. Parameters follow the same rule with no stream axes
//! beyond their `dims`.
//!
//! Generators: `torch.randn` normal(0, 1), `torch.rand` uniform [0, 1), `torch.ones`, `binary`
//! Bernoulli(1/2) as 0/1. Multihot fields ignore `data_gen`: each vector gets a count of hot bits
//! drawn uniformly from `[min, max]` (default `[1, X]`, `max` clamped to `X`) at distinct uniformly
//! random positions.

use stepforge_syntax::ast::{DimExpr, DtypeAst};
use stepforge_syntax::codes::Code;
use stepforge_syntax::{Diagnostic, Span};

use crate::dims::eval_dim;
use crate::model::{DataGen, DimValues, Task};
use crate::rng::Rng;

/// Size limits for generated data, enforced before allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenLimits {
    /// Elements in any one tensor.
    pub max_tensor_elements: u64,
    /// Elements of all inputs and parameters together.
    pub max_total_elements: u64,
    /// Bytes of all generated data together (4 per f32 element).
    pub max_total_bytes: u64,
}

impl Default for GenLimits {
    /// 64 Mi elements (256 MiB of f32) per tensor and in total.
    fn default() -> GenLimits {
        GenLimits {
            max_tensor_elements: 64 << 20,
            max_total_elements: 64 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// A dense f32 tensor, outermost axis first.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The data of one input or parameter: one tensor per tuple field of its dtype (one for a
/// non-tuple dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedTensor {
    pub name: String,
    pub fields: Vec<TensorData>,
}

impl GeneratedTensor {
    /// The tensor of a non-tuple input (the first field otherwise).
    pub fn single(&self) -> Option<&TensorData> {
        self.fields.first()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedData {
    /// In the order of the task's `inputs` (the order programs receive them).
    pub inputs: Vec<GeneratedTensor>,
    /// In the order of the task's `parameters`.
    pub parameters: Vec<GeneratedTensor>,
}

impl GeneratedData {
    /// An input or parameter by name (inputs first).
    pub fn get(&self, name: &str) -> Option<&GeneratedTensor> {
        self.inputs
            .iter()
            .chain(&self.parameters)
            .find(|t| t.name == name)
    }
}

/// How one field is to be filled, with sizes already checked.
struct FieldPlan {
    shape: Vec<usize>,
    elements: usize,
    /// `Some((len, min, max))` for Multihot fields.
    multihot: Option<(usize, usize, usize)>,
}

struct DeclPlan<'t> {
    name: &'t str,
    data_gen: DataGen,
    fields: Vec<FieldPlan>,
}

/// Generates every input and parameter of `task` for one seed.
pub fn generate(
    task: &Task,
    dims: &DimValues,
    seed: u64,
    limits: &GenLimits,
) -> Result<GeneratedData, Diagnostic> {
    let mut total: u64 = 0;
    let mut plans_in = Vec::new();
    let mut plans_par = Vec::new();
    let decls = task
        .inputs
        .iter()
        .map(|i| {
            (
                "input", &i.name, &i.dims, &i.dtype, i.data_gen, i.hot, i.span,
            )
        })
        .chain(task.parameters.iter().map(|p| {
            (
                "parameter",
                &p.name,
                &p.dims,
                &p.dtype,
                p.data_gen,
                None,
                p.span,
            )
        }));
    for (n, (kind, name, ds, dtype, data_gen, hot, span)) in decls.enumerate() {
        let what = format!("{kind} `{}`", name.name);
        let where_ = match (ds.first(), ds.last()) {
            (Some(a), Some(b)) => a.span().to(b.span()),
            _ => span,
        };
        let mut stream_axes = Vec::new();
        for d in ds.iter().rev() {
            stream_axes.push(eval_dim(d, dims)?.unsigned_abs());
        }
        let mut fields = Vec::new();
        for elem in element_fields(dtype) {
            let mut shape = stream_axes.clone();
            let mut multihot_len = None;
            element_axes(elem, dims, &mut shape, &mut multihot_len)?;
            let elements = shape.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x));
            let elements = match elements {
                Some(e) if e <= limits.max_tensor_elements => e,
                other => {
                    return Err(too_large(
                        &what,
                        &shape,
                        other,
                        limits.max_tensor_elements,
                        "per tensor",
                        where_,
                    ));
                }
            };
            total = total.saturating_add(elements);
            if total > limits.max_total_elements || total.saturating_mul(4) > limits.max_total_bytes
            {
                let limit = limits.max_total_elements.min(limits.max_total_bytes / 4);
                return Err(too_large(
                    &what,
                    &shape,
                    Some(elements),
                    limit,
                    "for all inputs and parameters together",
                    where_,
                )
                .note(format!(
                    "{total} elements generated up to and including this one"
                )));
            }
            let multihot = match multihot_len {
                Some(x) => Some(hot_range(x, hot, &what, span)?),
                None => None,
            };
            let shape: Vec<usize> = shape
                .into_iter()
                .map(|x| usize::try_from(x).unwrap_or(usize::MAX))
                .collect();
            fields.push(FieldPlan {
                shape,
                elements: usize::try_from(elements).unwrap_or(usize::MAX),
                multihot,
            });
        }
        let plan = DeclPlan {
            name: &name.name,
            data_gen,
            fields,
        };
        if n < task.inputs.len() {
            plans_in.push(plan);
        } else {
            plans_par.push(plan);
        }
    }

    let mut rng = Rng::new(seed);
    let mut fill = |plans: Vec<DeclPlan<'_>>| -> Vec<GeneratedTensor> {
        plans
            .into_iter()
            .map(|p| GeneratedTensor {
                name: p.name.to_owned(),
                fields: p
                    .fields
                    .into_iter()
                    .map(|f| TensorData {
                        data: fill_field(&mut rng, p.data_gen, &f),
                        shape: f.shape,
                    })
                    .collect(),
            })
            .collect()
    };
    let inputs = fill(plans_in);
    let parameters = fill(plans_par);
    Ok(GeneratedData { inputs, parameters })
}

fn too_large(
    what: &str,
    shape: &[u64],
    elements: Option<u64>,
    limit: u64,
    scope: &str,
    span: Span,
) -> Diagnostic {
    let count = match elements {
        Some(e) => e.to_string(),
        None => "more than 2^64".to_owned(),
    };
    let shape: Vec<String> = shape.iter().map(u64::to_string).collect();
    Diagnostic::new(
        Code::E0701,
        format!(
            "{what} would hold {count} elements (shape [{}]), over the limit of {limit} elements {scope}",
            shape.join(", ")
        ),
    )
    .at(span)
    .help("use smaller dimension values (`--dims`), or raise the data-generation limit")
}

/// The element types of the tuple fields of a dtype (one for a non-tuple).
fn element_fields(d: &DtypeAst) -> Vec<&DtypeAst> {
    match d {
        DtypeAst::Tuple(v, _) => v.iter().flat_map(element_fields).collect(),
        other => vec![other],
    }
}

/// Appends the element's own axes to `shape` (outermost first).
fn element_axes(
    d: &DtypeAst,
    dims: &DimValues,
    shape: &mut Vec<u64>,
    multihot: &mut Option<u64>,
) -> Result<(), Diagnostic> {
    match d {
        DtypeAst::Fp32(_) => Ok(()),
        DtypeAst::Multihot { elem, len, .. } => {
            element_axes(elem, dims, shape, multihot)?;
            let x = dim_u64(len, dims)?;
            shape.push(x);
            *multihot = Some(x);
            Ok(())
        }
        DtypeAst::Buffer { elem, dims: bd, .. } => {
            for b in bd.iter().rev() {
                shape.push(dim_u64(b, dims)?);
            }
            element_axes(elem, dims, shape, multihot)
        }
        // Tuples never nest (DESIGN §3); a nested one is laid out as its first field.
        DtypeAst::Tuple(v, _) => match v.first() {
            Some(first) => element_axes(first, dims, shape, multihot),
            None => Ok(()),
        },
    }
}

fn dim_u64(d: &DimExpr, dims: &DimValues) -> Result<u64, Diagnostic> {
    // eval_dim guarantees a positive value.
    eval_dim(d, dims).map(|v| v.unsigned_abs())
}

fn hot_range(
    len: u64,
    hot: Option<(i64, i64)>,
    what: &str,
    span: Span,
) -> Result<(usize, usize, usize), Diagnostic> {
    let len_us = usize::try_from(len).unwrap_or(usize::MAX);
    let (lo, hi) = hot.unwrap_or((1, i64::MAX));
    let lo_u = u64::try_from(lo.max(0)).unwrap_or(0);
    if lo_u > len {
        return Err(Diagnostic::new(
            Code::E0510,
            format!("{what}: `min` asks for {lo} hot bits but a Multihot vector has only {len} positions"),
        )
        .at(span));
    }
    // A missing `max` is i64::MAX (up to the vector length); an explicit one beyond the
    // length is a mistake, not something to clamp silently.
    if hi != i64::MAX && u64::try_from(hi).is_ok_and(|h| h > len) {
        return Err(Diagnostic::new(
            Code::E0510,
            format!("{what}: `max` asks for {hi} hot bits but a Multihot vector has only {len} positions"),
        )
        .at(span)
        .help(format!("use `max: {len}` or less, or a larger vector length")));
    }
    let hi_u = u64::try_from(hi.max(0)).unwrap_or(0).min(len);
    if lo_u > hi_u {
        return Err(Diagnostic::new(
            Code::E0510,
            format!("{what}: hot-bit range [{lo}, {hi}] is empty"),
        )
        .at(span));
    }
    Ok((
        len_us,
        usize::try_from(lo_u).unwrap_or(0),
        usize::try_from(hi_u).unwrap_or(0),
    ))
}

fn fill_field(rng: &mut Rng, data_gen: DataGen, f: &FieldPlan) -> Vec<f32> {
    let mut data = Vec::with_capacity(f.elements);
    if let Some((len, lo, hi)) = f.multihot {
        let vectors = f.elements.checked_div(len).unwrap_or(0);
        let mut perm: Vec<usize> = (0..len).collect();
        for _ in 0..vectors {
            let start = data.len();
            data.resize(start + len, 0.0);
            let count = lo + rng.below((hi - lo + 1) as u64) as usize;
            // Partial Fisher-Yates: the first `count` entries of `perm` become a uniform random
            // set of distinct positions.
            for i in 0..count {
                let j = i + rng.below((len - i) as u64) as usize;
                perm.swap(i, j);
                if let Some(slot) = perm.get(i).and_then(|&p| data.get_mut(start + p)) {
                    *slot = 1.0;
                }
            }
        }
        return data;
    }
    match data_gen {
        DataGen::Randn => data.extend((0..f.elements).map(|_| rng.normal() as f32)),
        DataGen::Rand => data.extend((0..f.elements).map(|_| rng.uniform_f32())),
        DataGen::Ones => data.resize(f.elements, 1.0),
        DataGen::Binary => data.extend((0..f.elements).map(|_| if rng.bit() { 1.0 } else { 0.0 })),
    }
    data
}
