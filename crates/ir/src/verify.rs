//! The IR verifier (in the manner of Cranelift's `verifier`): a pass that checks a finished
//! [`Graph`] against the invariants every back end relies on, and returns every violation it
//! finds instead of stopping at the first. It never panics, whatever the graph.
//!
//! The checker runs it after lowering in debug builds and tests; a property test runs it on
//! every program of the checker's random-program generator. A violation is always a bug in the
//! code that built the graph, never a user error.
//!
//! Invariants checked ([`Invariant`]):
//! 1. `DenseIds` — op, stream, function and parameter ids are `0..count`, each entry's `id` is
//!    its index, and every id an edge, a producer port, `inputs()`/`outputs()` or the
//!    topological order mentions is in range;
//! 2. `Producer` — every stream has exactly one producer port, on an existing op;
//! 3. `Ports` — each op's input ports (from edges) and output ports (from producers) are
//!    `0, 1, …, k-1`, each used once;
//! 4. `Edges` — every edge leaves the op that produces the stream it carries, and the derived
//!    port index (`inputs_of`, `outputs_of`, `consumers`) equals what the store implies;
//! 5. `Functions` — every function id names an entry of the function table, and its kind
//!    matches the op: a reducer for `Accum`/`Scan`/`Merge`, stateless for `Map`;
//! 6. `Arity` — input/output counts per op kind: `Input` 0→1, `Output` 1→0, `Map` ≥1→1,
//!    `Zip`/`RepeatRef` 2→1, `Partition{n}` 2→n, `Merge{n}` n+1→1, `Copy` 1→2, every other op
//!    1→1; `n ≥ 1`;
//! 7. `Acyclic` — the graph has no cycle, and `topo_order()` lists every op once with every
//!    producer before its consumers;
//! 8. `IoIndices` — `Input` indices are `0..k` each once and `inputs()` lists them in index
//!    order; likewise `Output` and `outputs()`;
//! 9. `Types` — stream, function and parameter types are well formed: a stream has at least one
//!    dim, a tuple has at least two fields and no tuple fields (tuples never nest), a buffer has
//!    at least one dim (a buffer of a buffer cannot even be represented: buffers hold
//!    [`crate::Scalar`]s), and no dimension has a non-positive coefficient.

use std::collections::BTreeMap;
use std::fmt;

use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};

use crate::dim::Dim;
use crate::graph::{FnKind, Graph, OpId, OpKind, PortIndex, StreamId, topo_order};
use crate::types::{ElemType, Scalar, StreamType};

/// Which invariant a violation breaks (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    DenseIds,
    Producer,
    Ports,
    Edges,
    Functions,
    Arity,
    Acyclic,
    IoIndices,
    Types,
}

/// One broken invariant, located at an op or a stream when that makes sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub op: Option<OpId>,
    pub stream: Option<StreamId>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.invariant)?;
        if let Some(op) = self.op {
            write!(f, " at {op}")?;
        }
        if let Some(s) = self.stream {
            write!(f, " on {s}")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct Verifier<'g> {
    g: &'g Graph,
    out: Vec<Violation>,
}

impl Verifier<'_> {
    fn report(
        &mut self,
        invariant: Invariant,
        op: Option<OpId>,
        stream: Option<StreamId>,
        message: String,
    ) {
        self.out.push(Violation {
            invariant,
            op,
            stream,
            message,
        });
    }

    fn op_exists(&self, op: OpId) -> bool {
        self.g.get_op(op).is_some()
    }

    fn dense_ids(&mut self) {
        let g = self.g;
        let bound = g.g.node_bound();
        if bound != g.g.node_count() {
            let msg = format!("{} op slots for {} ops", bound, g.g.node_count());
            self.report(Invariant::DenseIds, None, None, msg);
        }
        for idx in g.g.node_indices() {
            let op = &g.g[idx];
            if op.id.index() != idx.index() {
                let msg = format!("node {} holds {}", idx.index(), op.id);
                self.report(Invariant::DenseIds, Some(op.id), None, msg);
            }
        }
        for (i, s) in g.streams.iter().enumerate() {
            if s.id.index() != i {
                let msg = format!("stream slot {i} holds {}", s.id);
                self.report(Invariant::DenseIds, None, Some(s.id), msg);
            }
        }
        for (i, f) in g.fns.iter().enumerate() {
            if f.id.index() != i {
                let msg = format!("function slot {i} holds {}", f.id);
                self.report(Invariant::DenseIds, None, None, msg);
            }
        }
        let mut names = BTreeMap::new();
        for (i, p) in g.params.iter().enumerate() {
            if p.id.index() != i {
                let msg = format!("parameter slot {i} holds {}", p.id);
                self.report(Invariant::DenseIds, None, None, msg);
            }
            if let Some(prev) = names.insert(p.name.as_str(), p.id) {
                let msg = format!("parameters {prev} and {} are both `{}`", p.id, p.name);
                self.report(Invariant::DenseIds, None, None, msg);
            }
        }
        let listed = g.inputs.iter().chain(&g.outputs).chain(&g.topo);
        let missing: Vec<OpId> = listed.copied().filter(|&o| !self.op_exists(o)).collect();
        for o in missing {
            let msg = format!("{o} is listed but does not exist");
            self.report(Invariant::DenseIds, Some(o), None, msg);
        }
    }

    /// Producer and port checks; returns (input count, output count) per op slot.
    fn ports(&mut self) -> (Vec<usize>, Vec<usize>) {
        let g = self.g;
        let bound = g.g.node_bound();
        let mut ins: Vec<Vec<u32>> = vec![Vec::new(); bound];
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); bound];
        if g.producers.len() != g.streams.len() {
            let msg = format!(
                "{} producer ports for {} streams",
                g.producers.len(),
                g.streams.len()
            );
            self.report(Invariant::Producer, None, None, msg);
        }
        for (i, p) in g.producers.iter().enumerate() {
            let s = StreamId::new(i);
            match outs.get_mut(p.op.index()).filter(|_| self.op_exists(p.op)) {
                Some(v) => v.push(p.port),
                None => {
                    let msg = format!("produced by missing {}", p.op);
                    self.report(Invariant::Producer, None, Some(s), msg);
                }
            }
        }
        for e in g.g.edge_references() {
            let w = *e.weight();
            let (src, dst) = (OpId::new(e.source().index()), OpId::new(e.target().index()));
            if let Some(v) = ins.get_mut(dst.index()) {
                v.push(w.port);
            }
            match g.producers.get(w.stream.index()) {
                None => {
                    let msg = format!("an edge into {dst} carries missing {}", w.stream);
                    self.report(Invariant::DenseIds, Some(dst), None, msg);
                }
                Some(p) if p.op != src => {
                    let msg = format!("the edge {src} → {dst} carries a stream of {}", p.op);
                    self.report(Invariant::Edges, Some(dst), Some(w.stream), msg);
                }
                Some(_) => {}
            }
        }
        for (what, table) in [("input", &mut ins), ("output", &mut outs)] {
            for (i, ports) in table.iter_mut().enumerate() {
                ports.sort_unstable();
                let ok = ports.iter().enumerate().all(|(k, &p)| p as usize == k);
                if !ok {
                    let msg = format!("{what} ports {ports:?} are not 0..{}", ports.len());
                    self.report(Invariant::Ports, Some(OpId::new(i)), None, msg);
                }
            }
        }
        (
            ins.iter().map(Vec::len).collect(),
            outs.iter().map(Vec::len).collect(),
        )
    }

    fn derived_index(&mut self) {
        match PortIndex::derive(&self.g.g, &self.g.producers) {
            Ok(idx) if idx == self.g.index => {}
            Ok(_) => {
                let msg = "the port index differs from the edges and producers".to_string();
                self.report(Invariant::Edges, None, None, msg);
            }
            // Already reported per op by `ports`.
            Err(_) => {}
        }
    }

    fn functions_and_arity(&mut self, ins: &[usize], outs: &[usize]) {
        let g = self.g;
        for op in g.ops() {
            let (i, o) = (
                ins.get(op.id.index()).copied().unwrap_or(0),
                outs.get(op.id.index()).copied().unwrap_or(0),
            );
            if let Some(f) = op.kind.fn_id() {
                match g.fns.get(f.index()) {
                    None => {
                        let msg = format!("names missing {f}");
                        self.report(Invariant::Functions, Some(op.id), None, msg);
                    }
                    Some(sig) => {
                        let reducer = matches!(sig.kind, FnKind::Reducer { .. });
                        let wants = !matches!(op.kind, OpKind::Map { .. });
                        if reducer != wants {
                            let msg = format!(
                                "{} needs a {} function, {} is {}",
                                op.kind.name(),
                                if wants { "reducer" } else { "stateless" },
                                sig.name,
                                if reducer { "a reducer" } else { "stateless" }
                            );
                            self.report(Invariant::Functions, Some(op.id), None, msg);
                        }
                    }
                }
            }
            if let Some(msg) = arity_error(&op.kind, i, o) {
                self.report(Invariant::Arity, Some(op.id), None, msg);
            }
        }
    }

    fn acyclic(&mut self) {
        let g = self.g;
        if topo_order(&g.g).is_none() {
            let msg = "the graph has a cycle".to_string();
            self.report(Invariant::Acyclic, None, None, msg);
        }
        let mut pos = vec![None; g.g.node_bound()];
        for (k, o) in g.topo.iter().enumerate() {
            match pos.get_mut(o.index()) {
                Some(slot @ None) => *slot = Some(k),
                Some(Some(_)) => {
                    let msg = "listed twice in the topological order".to_string();
                    self.report(Invariant::Acyclic, Some(*o), None, msg);
                }
                None => {}
            }
        }
        for idx in g.g.node_indices() {
            if pos.get(idx.index()).copied().flatten().is_none() {
                let msg = "missing from the topological order".to_string();
                self.report(Invariant::Acyclic, Some(OpId::new(idx.index())), None, msg);
            }
        }
        for e in g.g.edge_references() {
            let (a, b) = (e.source().index(), e.target().index());
            if let (Some(Some(pa)), Some(Some(pb))) = (pos.get(a), pos.get(b))
                && pa >= pb
            {
                let msg = format!("runs before its producer {}", OpId::new(a));
                self.report(Invariant::Acyclic, Some(OpId::new(b)), None, msg);
            }
        }
    }

    fn io_indices(&mut self) {
        let g = self.g;
        let (mut ins, mut outs) = (Vec::new(), Vec::new());
        for op in g.ops() {
            match op.kind {
                OpKind::Input { index, .. } => ins.push((index, op.id)),
                OpKind::Output { index, .. } => outs.push((index, op.id)),
                _ => {}
            }
        }
        for (what, mut found, listed) in [("Input", ins, &g.inputs), ("Output", outs, &g.outputs)] {
            found.sort_unstable();
            for (k, (index, op)) in found.iter().enumerate() {
                if *index != k {
                    let msg = format!("{what} index {index} where {k} was expected");
                    self.report(Invariant::IoIndices, Some(*op), None, msg);
                }
            }
            let ids: Vec<OpId> = found.iter().map(|&(_, op)| op).collect();
            if &ids != listed {
                let msg = format!("the graph lists {what}s {listed:?}, their indices say {ids:?}");
                self.report(Invariant::IoIndices, None, None, msg);
            }
        }
    }

    fn types(&mut self) {
        let g = self.g;
        for s in &g.streams {
            if let Some(msg) = stream_type_error(&s.ty) {
                self.report(Invariant::Types, None, Some(s.id), msg);
            }
        }
        for f in &g.fns {
            for (which, t) in [("input", &f.input), ("output", &f.output)] {
                if let Some(msg) = elem_error(t) {
                    let msg = format!("{which} type of {} ({}): {msg}", f.name, f.id);
                    self.report(Invariant::Types, None, None, msg);
                }
            }
        }
        for p in &g.params {
            let bad = elem_error(&p.elem).or_else(|| p.dims.iter().find_map(dim_error));
            if let Some(msg) = bad {
                let msg = format!("parameter {} ({}): {msg}", p.name, p.id);
                self.report(Invariant::Types, None, None, msg);
            }
        }
    }
}

/// The expected (inputs, outputs) of an op kind; `None` for "at least one".
fn arity(kind: &OpKind) -> (Option<usize>, usize) {
    match kind {
        OpKind::Input { .. } => (Some(0), 1),
        OpKind::Output { .. } => (Some(1), 0),
        OpKind::Map { .. } => (None, 1),
        OpKind::Zip | OpKind::RepeatRef => (Some(2), 1),
        OpKind::Partition { n, .. } => (Some(2), *n),
        OpKind::Merge { n, .. } => (Some(n.saturating_add(1)), 1),
        OpKind::Copy => (Some(1), 2),
        OpKind::Accum { .. }
        | OpKind::Scan { .. }
        | OpKind::Bufferize { .. }
        | OpKind::Streamify
        | OpKind::Promote { .. }
        | OpKind::Flatten { .. }
        | OpKind::Reshape { .. }
        | OpKind::Repeat { .. } => (Some(1), 1),
    }
}

fn arity_error(kind: &OpKind, ins: usize, outs: usize) -> Option<String> {
    if let OpKind::Partition { n: 0, .. } | OpKind::Merge { n: 0, .. } = kind {
        return Some(format!("{} with no branches", kind.name()));
    }
    let (want_in, want_out) = arity(kind);
    let in_ok = match want_in {
        Some(k) => ins == k,
        None => ins >= 1,
    };
    if !in_ok || outs != want_out {
        let want_in = want_in.map_or_else(|| "≥1".to_string(), |k| k.to_string());
        return Some(format!(
            "{} has {ins} input(s) and {outs} output(s), expected {want_in} and {want_out}",
            kind.name()
        ));
    }
    None
}

fn dim_error(d: &Dim) -> Option<String> {
    (d.coefficient().0 <= 0).then(|| format!("dimension `{d}` is not positive"))
}

fn scalar_error(s: &Scalar) -> Option<String> {
    match s {
        Scalar::Fp32 => None,
        Scalar::Multihot(x) => dim_error(x),
    }
}

fn elem_error(e: &ElemType) -> Option<String> {
    match e {
        ElemType::Fp32 => None,
        ElemType::Multihot(x) => dim_error(x),
        ElemType::Buffer { elem, dims } => {
            if dims.is_empty() {
                return Some("a buffer with no dims".into());
            }
            scalar_error(elem).or_else(|| dims.iter().find_map(dim_error))
        }
        ElemType::Tuple(fs) => {
            if fs.len() < 2 {
                return Some(format!("a tuple of {} field(s)", fs.len()));
            }
            if fs.iter().any(ElemType::is_tuple) {
                return Some("a nested tuple".into());
            }
            fs.iter().find_map(elem_error)
        }
    }
}

fn stream_type_error(t: &StreamType) -> Option<String> {
    if t.dims.is_empty() {
        return Some("a stream type with no dims".into());
    }
    elem_error(&t.elem).or_else(|| t.dims.iter().find_map(dim_error))
}

/// Every violation of the module's invariants in `g`, in check order (empty when it is sound).
pub fn verify(g: &Graph) -> Vec<Violation> {
    let mut v = Verifier { g, out: Vec::new() };
    v.dense_ids();
    let (ins, outs) = v.ports();
    v.derived_index();
    v.functions_and_arity(&ins, &outs);
    v.acyclic();
    v.io_indices();
    v.types();
    v.out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::graph::{Edge, FnId, FnSig, GraphBuilder};
    use stepforge_syntax::span::Span;

    fn sig(id: usize, reducer: bool) -> FnSig {
        FnSig {
            id: FnId::new(id),
            name: format!("f{id}"),
            label: String::new(),
            kind: if reducer {
                FnKind::Reducer { init: vec![0.0] }
            } else {
                FnKind::Stateless
            },
            input: ElemType::Fp32,
            output: ElemType::Fp32,
            span: Span::DUMMY,
        }
    }

    fn fp32() -> StreamType {
        StreamType::new(ElemType::Fp32, vec![Dim::sym("N")])
    }

    /// An `Input` op and its stream.
    fn input(b: &mut GraphBuilder, index: usize) -> StreamId {
        let name = format!("X{index}");
        let op = b.add_op(OpKind::Input { index, name }, Span::DUMMY);
        b.add_output(op, fp32(), None, Span::DUMMY).unwrap()
    }

    fn output(b: &mut GraphBuilder, index: usize, s: StreamId) {
        let name = format!("O{index}");
        let op = b.add_op(OpKind::Output { index, name }, Span::DUMMY);
        b.add_input(op, s).unwrap();
    }

    fn invariants(g: &Graph) -> Vec<Invariant> {
        let mut v: Vec<Invariant> = verify(g).into_iter().map(|v| v.invariant).collect();
        v.dedup();
        v
    }

    #[test]
    fn the_sample_graph_is_sound() {
        assert_eq!(verify(&crate::tests::sample()), Vec::new());
    }

    #[test]
    fn copy_with_one_output_breaks_arity() {
        let mut b = GraphBuilder::new(Vec::new());
        let x = input(&mut b, 0);
        let c = b.add_op(OpKind::Copy, Span::DUMMY);
        b.add_input(c, x).unwrap();
        let y = b.add_output(c, fp32(), None, Span::DUMMY).unwrap();
        output(&mut b, 0, y);
        let g = b.finish().unwrap();
        let v = verify(&g);
        assert_eq!(invariants(&g), [Invariant::Arity]);
        assert_eq!(v[0].op, Some(OpId::new(1)));
        assert!(v[0].to_string().contains("expected 1 and 2"), "{}", v[0]);
    }

    #[test]
    fn merge_needs_n_plus_one_inputs_and_a_reducer() {
        let mut b = GraphBuilder::new(vec![sig(0, false)]);
        let x = input(&mut b, 0);
        let m = b.add_op(
            OpKind::Merge {
                f: FnId::new(0),
                n: 2,
            },
            Span::DUMMY,
        );
        b.add_input(m, x).unwrap();
        let y = b.add_output(m, fp32(), None, Span::DUMMY).unwrap();
        output(&mut b, 0, y);
        let g = b.finish().unwrap();
        assert_eq!(invariants(&g), [Invariant::Functions, Invariant::Arity]);
    }

    #[test]
    fn map_with_a_reducer_is_reported() {
        let mut b = GraphBuilder::new(vec![sig(0, true)]);
        let x = input(&mut b, 0);
        let m = b.add_op(OpKind::Map { f: FnId::new(0) }, Span::DUMMY);
        b.add_input(m, x).unwrap();
        let y = b.add_output(m, fp32(), None, Span::DUMMY).unwrap();
        output(&mut b, 0, y);
        assert_eq!(invariants(&b.finish().unwrap()), [Invariant::Functions]);
    }

    #[test]
    fn io_indices_must_be_dense() {
        let mut b = GraphBuilder::new(Vec::new());
        let x = input(&mut b, 1);
        output(&mut b, 0, x);
        assert_eq!(invariants(&b.finish().unwrap()), [Invariant::IoIndices]);
    }

    #[test]
    fn malformed_types_are_reported() {
        let mut b = GraphBuilder::new(Vec::new());
        let op = b.add_op(
            OpKind::Input {
                index: 0,
                name: "X".into(),
            },
            Span::DUMMY,
        );
        let nested = ElemType::Tuple(vec![
            ElemType::Fp32,
            ElemType::Tuple(vec![ElemType::Fp32, ElemType::Fp32]),
        ]);
        let x = b
            .add_output(
                op,
                StreamType::new(nested, vec![Dim::lit(0)]),
                None,
                Span::DUMMY,
            )
            .unwrap();
        output(&mut b, 0, x);
        let g = b.finish().unwrap();
        let v = verify(&g);
        assert_eq!(invariants(&g), [Invariant::Types]);
        assert!(v[0].message.contains("nested tuple"), "{}", v[0]);
        assert_eq!(v[0].stream, Some(x));
    }

    #[test]
    fn a_tampered_store_is_caught_not_panicked_on() {
        let mut g = crate::tests::sample();
        // An edge whose source is not its stream's producer, and a stream with a dangling
        // producer: both are builder bugs the verifier must name.
        let w = Edge {
            stream: StreamId::new(0),
            port: 1,
        };
        g.g.add_edge(
            petgraph::stable_graph::NodeIndex::new(2),
            petgraph::stable_graph::NodeIndex::new(3),
            w,
        );
        g.producers[4] = crate::graph::PortRef {
            op: OpId::new(99),
            port: 0,
        };
        g.topo.pop();
        g.streams[1].id = StreamId::new(7);
        let found = invariants(&g);
        for want in [
            Invariant::DenseIds,
            Invariant::Producer,
            Invariant::Edges,
            Invariant::Arity,
            Invariant::Acyclic,
        ] {
            assert!(found.contains(&want), "{want:?} missing from {found:?}");
        }
    }

    #[test]
    fn a_cycle_is_reported() {
        let mut g = crate::tests::sample();
        // op3 (Accum) feeds back into op1 (Map).
        g.g.add_edge(
            petgraph::stable_graph::NodeIndex::new(3),
            petgraph::stable_graph::NodeIndex::new(1),
            Edge {
                stream: StreamId::new(4),
                port: 1,
            },
        );
        assert!(invariants(&g).contains(&Invariant::Acyclic));
    }
}
