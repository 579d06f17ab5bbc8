//! The canonical graph hash (DESIGN §14: "duplicate programs are detected by a canonical hash
//! of the typed graph").
//!
//! Two programs hash equal when they build the same dataflow: stream names, comments,
//! whitespace and the order of independent statements never reach the hash, because it is a
//! Merkle hash over the graph's structure rather than over ops in program order. Each stream's
//! hash folds in its producer op (kind, checked parameters, element-function name), the output
//! port it leaves by, its type, and recursively the hashes of the producer's input streams in
//! port order. The graph hash folds the hashes of the `Output` pseudo-ops in output order.
//!
//! The two outputs of a `Copy` are interchangeable (both carry the same values), so they hash
//! alike: `a, b = Copy(x)` and `b, a = Copy(x)` are one program. Any semantic change — an op
//! kind, a parameter, a function, an operand order, a type — changes some stream's hash and so
//! the graph's.
//!
//! Dynamic dimensions (Partition's branch sizes) are named in types by the Partition's op id;
//! the hash names them by the Partition's own structural hash instead, so statement order
//! cannot leak in through a type.
//!
//! The hash is FNV-1a over a fixed byte encoding, 128 bits wide: stable across runs, platforms
//! and compiler versions (std's `DefaultHasher` promises none of that), which matters because
//! the agent's experience store keeps these hashes on disk.

use petgraph::visit::NodeIndexable;

use crate::dim::{Dim, Sym};
use crate::graph::{Graph, OpKind, StreamId};
use crate::types::{ElemType, Scalar};

const FNV_OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
const FNV_PRIME: u128 = 0x0000000001000000000000000000013B;

/// `FNV_PRIME^k` for `k` in `0..=16`: hashing `k` zero bytes is one multiplication by it,
/// since a zero byte leaves the xor step a no-op.
const PRIME_POW: [u128; 17] = {
    let mut t = [1u128; 17];
    let mut i = 1;
    while i < 17 {
        t[i] = t[i - 1].wrapping_mul(FNV_PRIME);
        i += 1;
    }
    t
};

/// A canonical 128-bit structural hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GraphHash(pub u128);

impl std::fmt::Display for GraphHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

struct Fnv(u128);

impl Fnv {
    fn new() -> Fnv {
        Fnv(FNV_OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Fnv {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// Length-prefixed, so adjacent fields can never run into each other.
    fn str(&mut self, s: &str) -> &mut Fnv {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// Little-endian; the zero high bytes of a small value (lengths, counts, most parameters)
    /// cost one multiplication together instead of one each, with the same result.
    fn u64(&mut self, v: u64) -> &mut Fnv {
        let low = 8 - (v.leading_zeros() / 8) as usize;
        let bytes = v.to_le_bytes();
        self.bytes(bytes.get(..low).unwrap_or(&bytes));
        self.zeros(8 - low)
    }

    fn u128(&mut self, v: u128) -> &mut Fnv {
        let low = 16 - (v.leading_zeros() / 8) as usize;
        let bytes = v.to_le_bytes();
        self.bytes(bytes.get(..low).unwrap_or(&bytes));
        self.zeros(16 - low)
    }

    /// `k` zero bytes (`k <= 16`).
    fn zeros(&mut self, k: usize) -> &mut Fnv {
        self.0 = self.0.wrapping_mul(PRIME_POW.get(k).copied().unwrap_or(1));
        self
    }
}

/// The op's identity without its operands, for ops whose parameters hold no [`Dim`].
fn op_key(g: &Graph, kind: &OpKind, h: &mut Fnv) {
    h.str(kind.name());
    match kind {
        OpKind::Input { index, .. } | OpKind::Output { index, .. } => {
            h.u64(*index as u64);
        }
        OpKind::Map { f } => {
            h.str(&g.fn_sig(*f).name);
        }
        OpKind::Accum { f, b } | OpKind::Scan { f, b } => {
            h.str(&g.fn_sig(*f).name).u64(*b as u64);
        }
        OpKind::Merge { f, n } => {
            h.str(&g.fn_sig(*f).name).u64(*n as u64);
        }
        OpKind::Bufferize { a } => {
            h.u64(*a as u64);
        }
        OpKind::Promote { b } => {
            h.u64(*b as u64);
        }
        OpKind::Flatten { dims } => {
            h.u64(dims.len() as u64);
            for d in dims {
                h.u64(*d as u64);
            }
        }
        // Dims are encoded by `Canon` (dynamic symbols must not leak op ids).
        OpKind::Reshape { .. } | OpKind::Repeat { .. } => {}
        OpKind::Partition { n, sel_dims } => {
            h.u64(*n as u64).u64(*sel_dims as u64);
        }
        OpKind::Zip | OpKind::Copy | OpKind::Streamify | OpKind::RepeatRef => {}
    }
}

/// Canonical encodings of types and dims. A dynamic dimension (`P3.1`, branch 1 of the
/// Partition op3) is named by its Partition's structural hash instead of the op id, which
/// depends on statement order.
struct Canon {
    /// Per op id: the hash of the op's key and input hashes (filled in topological order).
    op_base: Vec<u128>,
    /// The hasher after the `"static"` / `"dynamic"` tags every factor starts with.
    static_tag: u128,
    dynamic_tag: u128,
}

impl Canon {
    fn dim(&self, d: &Dim, h: &mut Fnv) {
        let (num, den) = d.coefficient();
        h.u64(num as u64).u64(den as u64);
        // Factors are sorted by symbol, and dynamic symbols sort by op id: sort the canonical
        // encodings instead. Nearly every dim has at most one factor, which needs neither the
        // sort nor an allocation (a graph of 10,000 ops hashes tens of thousands of dims).
        match d.factors() {
            [] => {
                h.u64(0);
            }
            [(sym, e)] => {
                let f = self.factor(sym, *e);
                h.u64(1).u128(f);
            }
            many => {
                let mut fs: Vec<u128> = many.iter().map(|(sym, e)| self.factor(sym, *e)).collect();
                fs.sort_unstable();
                h.u64(fs.len() as u64);
                for x in fs {
                    h.u128(x);
                }
            }
        }
    }

    /// The canonical encoding of one symbol power.
    fn factor(&self, sym: &Sym, e: i32) -> u128 {
        let mut f;
        match sym {
            Sym::Static(name) => {
                f = Fnv(self.static_tag);
                f.str(name);
            }
            Sym::Dynamic(dd) => {
                let base = self.op_base.get(dd.op.index()).copied().unwrap_or(0);
                f = Fnv(self.dynamic_tag);
                f.u128(base).u64(u64::from(dd.branch));
            }
        }
        f.u64(i64::from(e) as u64);
        f.0
    }

    fn dims(&self, ds: &[Dim], h: &mut Fnv) {
        h.u64(ds.len() as u64);
        for d in ds {
            self.dim(d, h);
        }
    }

    fn elem(&self, e: &ElemType, h: &mut Fnv) {
        match e {
            ElemType::Fp32 => {
                h.str("fp32");
            }
            ElemType::Multihot(x) => {
                h.str("multihot");
                self.dim(x, h);
            }
            ElemType::Buffer { elem, dims } => {
                h.str("buffer");
                match elem {
                    Scalar::Fp32 => {
                        h.str("fp32");
                    }
                    Scalar::Multihot(x) => {
                        h.str("multihot");
                        self.dim(x, h);
                    }
                }
                self.dims(dims, h);
            }
            ElemType::Tuple(fs) => {
                h.str("tuple").u64(fs.len() as u64);
                for f in fs {
                    self.elem(f, h);
                }
            }
        }
    }

    /// The op's identity without its operands: kind, parameters and element-function name.
    fn op_key(&self, g: &Graph, kind: &OpKind, h: &mut Fnv) {
        match kind {
            OpKind::Reshape { dims, chunk } => {
                h.str(kind.name()).u64(dims.len() as u64);
                for d in dims {
                    h.u64(*d as u64);
                }
                self.dim(chunk, h);
            }
            OpKind::Repeat { n } => {
                h.str(kind.name());
                self.dim(n, h);
            }
            _ => op_key(g, kind, h),
        }
    }
}

/// The canonical hash of every stream of `g`, by stream id: equal for two streams exactly when
/// they carry the same dataflow (the same sub-program up to names and statement order).
pub fn stream_hashes(g: &Graph) -> Vec<GraphHash> {
    let mut canon = Canon {
        op_base: vec![0; g.petgraph().node_bound()],
        static_tag: Fnv::new().str("static").0,
        dynamic_tag: Fnv::new().str("dynamic").0,
    };
    let mut stream_hash = vec![0u128; g.streams().len()];
    // One pass in topological order sees every producer before its consumers.
    for &id in g.topo_order() {
        let op = g.op(id);
        let mut base = Fnv::new();
        canon.op_key(g, &op.kind, &mut base);
        for s in g.inputs_of(id) {
            base.u128(stream_hash.get(s.index()).copied().unwrap_or(0));
        }
        if let Some(slot) = canon.op_base.get_mut(id.index()) {
            *slot = base.0;
        }
        for (port, s) in g.outputs_of(id).iter().enumerate() {
            let mut h = Fnv(base.0);
            // Copy's two outputs are the same values; every other op's ports differ.
            let port = if matches!(op.kind, OpKind::Copy) {
                0
            } else {
                port
            };
            h.u64(port as u64);
            let ty = &g.stream(*s).ty;
            canon.elem(&ty.elem, &mut h);
            canon.dims(&ty.dims, &mut h);
            if let Some(slot) = stream_hash.get_mut(s.index()) {
                *slot = h.0;
            }
        }
    }
    stream_hash.into_iter().map(GraphHash).collect()
}

/// The canonical hash of `g` (see the module docs).
pub fn graph_hash(g: &Graph) -> GraphHash {
    let stream_hash = stream_hashes(g);
    let sh = |s: &StreamId| stream_hash.get(s.index()).map_or(0, |h| h.0);
    let mut h = Fnv::new();
    h.str("stepforge-graph-v2");
    for &out in g.outputs() {
        let op = g.op(out);
        h.str(op.kind.name());
        for s in g.inputs_of(out) {
            h.u128(sh(s));
        }
    }
    // Streams nobody reads still change the program (W0401), and they are not reachable from
    // the outputs: fold them in, in a canonical (sorted) order.
    let mut dangling: Vec<u128> = g
        .streams()
        .iter()
        .filter(|s| g.consumers(s.id).is_empty())
        .map(|s| sh(&s.id))
        .collect();
    dangling.sort_unstable();
    h.u64(dangling.len() as u64);
    for d in dangling {
        h.u128(d);
    }
    GraphHash(h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zero-run shortcut of `u64`/`u128` hashes exactly what byte-by-byte FNV-1a does:
    /// hashes are stored on disk, so the encoding must never drift.
    #[test]
    fn integers_hash_byte_by_byte() {
        let u64s = [
            0u64,
            1,
            0xff,
            0x100,
            0x1234_5678,
            u64::MAX,
            1 << 63,
            0x00ff_0000_0000,
        ];
        for v in u64s {
            let mut fast = Fnv::new();
            fast.u64(v);
            let mut slow = Fnv::new();
            slow.bytes(&v.to_le_bytes());
            assert_eq!(fast.0, slow.0, "{v:#x}");
        }
        let u128s = [0u128, 7, u128::MAX, 1 << 100, FNV_OFFSET, 0xdead_beef];
        for v in u128s {
            let mut fast = Fnv::new();
            fast.str("x").u128(v);
            let mut slow = Fnv::new();
            slow.str("x").bytes(&v.to_le_bytes());
            assert_eq!(fast.0, slow.0, "{v:#x}");
        }
    }
}
