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
//! The hash is FNV-1a over a fixed byte encoding, 128 bits wide: stable across runs, platforms
//! and compiler versions (std's `DefaultHasher` promises none of that), which matters because
//! the agent's experience store keeps these hashes on disk.

use crate::graph::{Graph, OpKind};

const FNV_OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
const FNV_PRIME: u128 = 0x0000000001000000000000000000013B;

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

    fn u64(&mut self, v: u64) -> &mut Fnv {
        self.bytes(&v.to_le_bytes())
    }

    fn u128(&mut self, v: u128) -> &mut Fnv {
        self.bytes(&v.to_le_bytes())
    }
}

/// The op's identity without its operands: kind, parameters and element-function name.
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
        OpKind::Reshape { dims, chunk } => {
            h.u64(dims.len() as u64);
            for d in dims {
                h.u64(*d as u64);
            }
            h.str(&chunk.to_string());
        }
        OpKind::Repeat { n } => {
            h.str(&n.to_string());
        }
        OpKind::Partition { n, sel_dims } => {
            h.u64(*n as u64).u64(*sel_dims as u64);
        }
        OpKind::Zip | OpKind::Copy | OpKind::Streamify | OpKind::RepeatRef => {}
    }
}

/// The canonical hash of `g` (see the module docs).
pub fn graph_hash(g: &Graph) -> GraphHash {
    // Ops are numbered in program order, which is a topological order, so one pass in
    // topological order sees every producer before its consumers.
    let mut stream_hash = vec![0u128; g.streams().len()];
    for &id in g.topo_order() {
        let op = g.op(id);
        let mut base = Fnv::new();
        op_key(g, &op.kind, &mut base);
        for s in &op.inputs {
            base.u128(stream_hash.get(s.index()).copied().unwrap_or(0));
        }
        for (port, s) in op.outputs.iter().enumerate() {
            let mut h = Fnv(base.0);
            // Copy's two outputs are the same values; every other op's ports differ.
            let port = if matches!(op.kind, OpKind::Copy) {
                0
            } else {
                port
            };
            h.u64(port as u64).str(&g.stream(*s).ty.to_string());
            if let Some(slot) = stream_hash.get_mut(s.index()) {
                *slot = h.0;
            }
        }
    }
    let mut h = Fnv::new();
    h.str("stepforge-graph-v1");
    for &out in g.outputs() {
        let op = g.op(out);
        h.str(op.kind.name());
        for s in &op.inputs {
            h.u128(stream_hash.get(s.index()).copied().unwrap_or(0));
        }
    }
    // Streams nobody reads still change the program (W0401), and they are not reachable from
    // the outputs: fold them in, in a canonical (sorted) order.
    let mut dangling: Vec<u128> = g
        .streams()
        .iter()
        .filter(|s| s.consumers.is_empty())
        .map(|s| stream_hash.get(s.id.index()).copied().unwrap_or(0))
        .collect();
    dangling.sort_unstable();
    h.u64(dangling.len() as u64);
    for d in dangling {
        h.u128(d);
    }
    GraphHash(h.0)
}
