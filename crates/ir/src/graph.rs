//! The typed stream graph.
//!
//! Nodes are ops (the 14 STeP operators plus `Input`/`Output` pseudo-ops for the task's input
//! streams and the program's returned streams); streams are stored in a side vector indexed by
//! [`StreamId`].
//!
//! ## Where connectivity lives (one source of truth)
//!
//! Builders write each fact once:
//! - *consumption*: one petgraph edge per use of a stream (producer → consumer), weighted with
//!   the stream and the consumer's input port ([`Edge`]);
//! - *production*: the stream table records the single output port that defines each stream
//!   (a stream nobody reads has no edge, so production cannot live on edges alone).
//!
//! Everything else — an op's inputs and outputs by port, a stream's consumers — is a derived,
//! immutable index ([`Graph::inputs_of`], [`Graph::outputs_of`], [`Graph::consumers`]) built
//! once in [`GraphBuilder::finish`] from those two facts, in compact CSR form so that the
//! executor's per-op lookups are slices. [`crate::verify`] re-derives it from the store and
//! checks the two agree. Graphs are immutable after `finish`; a pass that rewrites a graph
//! builds a new one (never remove nodes in place: `StableGraph` reuses freed slots, which
//! would break id density).
//!
//! A stream has exactly one producer and, in a linear program, at most one consumer; a
//! non-linear program (which still runs in the executor) has streams with several consumers.
//! Ids are dense, never reused, and ops are numbered in program order, which is already a
//! topological order.
//!
//! The graph never points into the task's AST: function signatures carry their own [`FnId`]
//! (function bodies live in the element-function IR, keyed by the same id), input streams carry
//! their types, and the task's parameter tensors are a graph-level table ([`Param`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use serde::Serialize;
use stepforge_diag::Span;

use crate::dim::Dim;
use crate::types::{ElemType, StreamType};

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            pub fn new(index: usize) -> $name {
                $name(u32::try_from(index).unwrap_or(u32::MAX))
            }
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(OpId, "op");
id_type!(StreamId, "s");
id_type!(FnId, "fn");
id_type!(ParamId, "param");

/// One end of a stream: input or output port `port` of `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRef {
    pub op: OpId,
    pub port: u32,
}

/// Stateless (`Map`) or reducer (`Accum`, `Scan`, `Merge`) with one init value per output field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FnKind {
    Stateless,
    Reducer { init: Vec<f64> },
}

/// An element function's signature, from the task's `fns[]`. `id` is the function's identity
/// everywhere in the IR (its body in the element-function IR is keyed by it); nothing here
/// indexes into the task's AST.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FnSig {
    pub id: FnId,
    /// `func_name`: what programs write.
    pub name: String,
    /// The task's `name:` label.
    pub label: String,
    pub kind: FnKind,
    pub input: ElemType,
    pub output: ElemType,
    /// The declaration in the task file.
    pub span: Span,
}

impl FnSig {
    pub fn is_reducer(&self) -> bool {
        matches!(self.kind, FnKind::Reducer { .. })
    }
}

/// An op and its checked parameters. Input ports, in order:
/// - `Map`: 1..k streams, implicitly zipped (the element is the flattened tuple);
/// - `Zip`: 2 streams; `RepeatRef`: data, ref; `Partition`: data, selector;
/// - `Merge`: the `n` branches, then the selector (port `n`);
/// - every other op: 1 stream; `Input`: none; `Output`: 1.
///
/// Output ports: `Copy` 2, `Partition` `n`, `Output` none, every other op 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum OpKind {
    /// Task input `index` (`inputs[index]`), read from off-chip memory.
    Input {
        index: usize,
        name: String,
    },
    /// Task output `index` (`outputs[index]`), written to off-chip memory.
    Output {
        index: usize,
        name: String,
    },
    Map {
        f: FnId,
    },
    Accum {
        f: FnId,
        b: usize,
    },
    Scan {
        f: FnId,
        b: usize,
    },
    Zip,
    Copy,
    Bufferize {
        a: usize,
    },
    Streamify,
    Promote {
        b: usize,
    },
    /// `L`: consecutive, ascending, `L[0] ≥ 1`.
    Flatten {
        dims: Vec<usize>,
    },
    /// `L` (ascending, distinct) and `S=c`.
    Reshape {
        dims: Vec<usize>,
        chunk: Dim,
    },
    Repeat {
        n: Dim,
    },
    RepeatRef,
    /// `n` branches; the selector covers the data's outermost `sel_dims` dims.
    Partition {
        n: usize,
        sel_dims: usize,
    },
    Merge {
        f: FnId,
        n: usize,
    },
}

impl OpKind {
    /// The operator's name as written after `step.` (`Input`/`Output` for the pseudo-ops).
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Input { .. } => "Input",
            OpKind::Output { .. } => "Output",
            OpKind::Map { .. } => "Map",
            OpKind::Accum { .. } => "Accum",
            OpKind::Scan { .. } => "Scan",
            OpKind::Zip => "Zip",
            OpKind::Copy => "Copy",
            OpKind::Bufferize { .. } => "Bufferize",
            OpKind::Streamify => "Streamify",
            OpKind::Promote { .. } => "Promote",
            OpKind::Flatten { .. } => "Flatten",
            OpKind::Reshape { .. } => "Reshape",
            OpKind::Repeat { .. } => "Repeat",
            OpKind::RepeatRef => "RepeatRef",
            OpKind::Partition { .. } => "Partition",
            OpKind::Merge { .. } => "Merge",
        }
    }

    /// The element function, for Map/Accum/Scan/Merge.
    pub fn fn_id(&self) -> Option<FnId> {
        match self {
            OpKind::Map { f }
            | OpKind::Accum { f, .. }
            | OpKind::Scan { f, .. }
            | OpKind::Merge { f, .. } => Some(*f),
            _ => None,
        }
    }

    pub fn is_pseudo(&self) -> bool {
        matches!(self, OpKind::Input { .. } | OpKind::Output { .. })
    }
}

/// An op and its checked parameters. Its ports are answered by the graph
/// ([`Graph::inputs_of`], [`Graph::outputs_of`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub id: OpId,
    pub kind: OpKind,
    /// The op call in the program (for pseudo-ops: the task declaration or the `return` name).
    pub span: Span,
}

/// A stream's own facts. Its producer and consumers are answered by the graph
/// ([`Graph::producer`], [`Graph::consumers`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    pub id: StreamId,
    pub ty: StreamType,
    /// The program name the stream was bound to (`E1`, `parts[0]`), if any.
    pub name: Option<String>,
    /// Where it was bound (the target name), or the producing op.
    pub span: Span,
}

/// A task parameter tensor (`parameters[index]`), read by element functions by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub id: ParamId,
    pub name: String,
    pub elem: ElemType,
    /// Innermost first, like stream dims (the data tensor has the reversed shape); empty for a
    /// scalar parameter.
    pub dims: Vec<Dim>,
    /// The declaration in the task file.
    pub span: Span,
}

/// Edge weight: which stream flows and into which input port of the target op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub stream: StreamId,
    pub port: u32,
}

/// Why a builder could not produce a graph (a checker bug, never user error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError(pub String);

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compressed rows: row `i` is `items[start[i]..start[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rows<T> {
    start: Vec<u32>,
    items: Vec<T>,
}

impl<T: Copy> Rows<T> {
    /// Rows from `(row, item)` pairs already sorted by row (then by position in the row).
    fn from_sorted(rows: usize, pairs: &[(usize, T)]) -> Rows<T> {
        let mut start = Vec::with_capacity(rows + 1);
        let mut items = Vec::with_capacity(pairs.len());
        let mut next = 0;
        for r in 0..rows {
            start.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
            while let Some(&(row, item)) = pairs.get(next) {
                if row != r {
                    break;
                }
                items.push(item);
                next += 1;
            }
        }
        start.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
        Rows { start, items }
    }

    pub(crate) fn row(&self, i: usize) -> &[T] {
        let (Some(&lo), Some(&hi)) = (self.start.get(i), self.start.get(i + 1)) else {
            return &[];
        };
        self.items.get(lo as usize..hi as usize).unwrap_or(&[])
    }
}

/// The derived port index (see the module docs): a pure function of the edges and the stream
/// table, built once in `finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortIndex {
    pub(crate) op_inputs: Rows<StreamId>,
    pub(crate) op_outputs: Rows<StreamId>,
    pub(crate) consumers: Rows<PortRef>,
}

impl PortIndex {
    /// Derives the index from the store. Fails when input or output ports are not contiguous
    /// from 0 or a port is used twice (the builder never does that).
    pub(crate) fn derive(
        g: &StableDiGraph<Op, Edge>,
        producers: &[PortRef],
    ) -> Result<PortIndex, GraphError> {
        let ops = g.node_bound();
        let mut ins: Vec<(usize, u32, StreamId)> = Vec::with_capacity(g.edge_count());
        // Edge indices grow in insertion order and edges are never removed, so sorting by
        // edge index is consumption order.
        let mut cons: Vec<(usize, usize, PortRef)> = Vec::with_capacity(g.edge_count());
        for e in g.edge_references() {
            let w = *e.weight();
            let op = OpId::new(e.target().index());
            ins.push((op.index(), w.port, w.stream));
            cons.push((
                w.stream.index(),
                e.id().index(),
                PortRef { op, port: w.port },
            ));
        }
        ins.sort_unstable_by_key(|&(op, port, _)| (op, port));
        cons.sort_unstable_by_key(|&(s, e, _)| (s, e));
        let mut outs: Vec<(usize, u32, StreamId)> = producers
            .iter()
            .enumerate()
            .map(|(s, p)| (p.op.index(), p.port, StreamId::new(s)))
            .collect();
        outs.sort_unstable_by_key(|&(op, port, _)| (op, port));
        contiguous(&ins, "input")?;
        contiguous(&outs, "output")?;
        let strip = |v: Vec<(usize, u32, StreamId)>| -> Vec<(usize, StreamId)> {
            v.into_iter().map(|(op, _, s)| (op, s)).collect()
        };
        let cons: Vec<(usize, PortRef)> = cons.into_iter().map(|(s, _, p)| (s, p)).collect();
        Ok(PortIndex {
            op_inputs: Rows::from_sorted(ops, &strip(ins)),
            op_outputs: Rows::from_sorted(ops, &strip(outs)),
            consumers: Rows::from_sorted(producers.len(), &cons),
        })
    }
}

/// Ports of each op, sorted by (op, port), must be 0, 1, 2, … without gaps or repeats.
fn contiguous(ports: &[(usize, u32, StreamId)], what: &str) -> Result<(), GraphError> {
    let mut prev: Option<(usize, u32)> = None;
    for &(op, port, _) in ports {
        let expected = match prev {
            Some((p_op, p_port)) if p_op == op => p_port.saturating_add(1),
            _ => 0,
        };
        if port != expected {
            return Err(GraphError(format!(
                "{} {what} port {port} is not contiguous (expected {expected})",
                OpId::new(op)
            )));
        }
        prev = Some((op, port));
    }
    Ok(())
}

/// The typed stream graph. Built with [`GraphBuilder`].
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) g: StableDiGraph<Op, Edge>,
    pub(crate) streams: Vec<Stream>,
    /// The output port defining each stream (by stream id): the production half of the store.
    pub(crate) producers: Vec<PortRef>,
    pub(crate) fns: Vec<FnSig>,
    pub(crate) params: Vec<Param>,
    pub(crate) inputs: Vec<OpId>,
    pub(crate) outputs: Vec<OpId>,
    pub(crate) topo: Vec<OpId>,
    pub(crate) index: PortIndex,
}

fn node(id: OpId) -> NodeIndex {
    NodeIndex::new(id.index())
}

impl Graph {
    /// The op with this id. Ids come from this graph; a foreign id panics.
    pub fn op(&self, id: OpId) -> &Op {
        &self.g[node(id)]
    }

    pub fn get_op(&self, id: OpId) -> Option<&Op> {
        self.g.node_weight(node(id))
    }

    /// All ops in id (= program) order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.g.node_weights()
    }

    pub fn op_count(&self) -> usize {
        self.g.node_count()
    }

    /// A topological order (deterministic: among ready ops, the smallest id first).
    pub fn topo_order(&self) -> &[OpId] {
        &self.topo
    }

    /// The streams flowing into `op`, by input port (empty for a foreign id).
    pub fn inputs_of(&self, op: OpId) -> &[StreamId] {
        self.index.op_inputs.row(op.index())
    }

    /// The streams `op` produces, by output port (empty for a foreign id).
    pub fn outputs_of(&self, op: OpId) -> &[StreamId] {
        self.index.op_outputs.row(op.index())
    }

    /// The output port that produces `stream`. Ids come from this graph; a foreign id panics.
    pub fn producer(&self, stream: StreamId) -> PortRef {
        self.producers[stream.index()]
    }

    /// The input ports that read `stream`, in consumption order: empty for a stream nobody
    /// reads, more than one only in a non-linear program.
    pub fn consumers(&self, stream: StreamId) -> &[PortRef] {
        self.index.consumers.row(stream.index())
    }

    pub fn stream(&self, id: StreamId) -> &Stream {
        &self.streams[id.index()]
    }

    pub fn get_stream(&self, id: StreamId) -> Option<&Stream> {
        self.streams.get(id.index())
    }

    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    pub fn fn_sig(&self, id: FnId) -> &FnSig {
        &self.fns[id.index()]
    }

    pub fn fns(&self) -> &[FnSig] {
        &self.fns
    }

    /// The function a program names `name` (the first declaration, as the checker resolves).
    pub fn fn_by_name(&self, name: &str) -> Option<&FnSig> {
        self.fns.iter().find(|f| f.name == name)
    }

    /// The task's parameter tensors, in declaration order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn param(&self, id: ParamId) -> Option<&Param> {
        self.params.get(id.index())
    }

    /// The `Input` pseudo-ops, in task input order.
    pub fn inputs(&self) -> &[OpId] {
        &self.inputs
    }

    /// The `Output` pseudo-ops, in task output (= return) order.
    pub fn outputs(&self) -> &[OpId] {
        &self.outputs
    }

    /// The underlying petgraph (node index = `OpId::index()`), for graph algorithms.
    pub fn petgraph(&self) -> &StableDiGraph<Op, Edge> {
        &self.g
    }

    /// Type of the stream on input `port` of `op`.
    pub fn input_type(&self, op: OpId, port: usize) -> Option<&StreamType> {
        let s = *self.inputs_of(op).get(port)?;
        Some(&self.get_stream(s)?.ty)
    }

    /// True when every stream has at most one consumer.
    pub fn is_linear(&self) -> bool {
        self.streams.iter().all(|s| self.consumers(s.id).len() <= 1)
    }
}

/// Builds a [`Graph`] op by op, in program order.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    g: StableDiGraph<Op, Edge>,
    streams: Vec<Stream>,
    producers: Vec<PortRef>,
    fns: Vec<FnSig>,
    params: Vec<Param>,
    /// Next free input/output port per op: builder scratch, not connectivity.
    next_in: Vec<u32>,
    next_out: Vec<u32>,
}

impl GraphBuilder {
    pub fn new(fns: Vec<FnSig>) -> GraphBuilder {
        GraphBuilder::with_capacity(fns, 0, 0)
    }

    /// Like [`GraphBuilder::new`], with room for `ops` ops and `streams` streams.
    pub fn with_capacity(fns: Vec<FnSig>, ops: usize, streams: usize) -> GraphBuilder {
        GraphBuilder {
            g: StableDiGraph::with_capacity(ops, streams),
            streams: Vec::with_capacity(streams),
            producers: Vec::with_capacity(streams),
            fns,
            params: Vec::new(),
            next_in: Vec::with_capacity(ops),
            next_out: Vec::with_capacity(ops),
        }
    }

    pub fn fns(&self) -> &[FnSig] {
        &self.fns
    }

    /// Adds the next task parameter tensor.
    pub fn add_param(
        &mut self,
        name: String,
        elem: ElemType,
        dims: Vec<Dim>,
        span: Span,
    ) -> ParamId {
        let id = ParamId::new(self.params.len());
        self.params.push(Param {
            id,
            name,
            elem,
            dims,
            span,
        });
        id
    }

    /// Adds an op with no ports connected yet.
    pub fn add_op(&mut self, kind: OpKind, span: Span) -> OpId {
        let id = OpId::new(self.g.node_count());
        let idx = self.g.add_node(Op { id, kind, span });
        debug_assert_eq!(idx.index(), id.index());
        self.next_in.push(0);
        self.next_out.push(0);
        id
    }

    /// Adds the next output stream of `op`.
    pub fn add_output(
        &mut self,
        op: OpId,
        ty: StreamType,
        name: Option<String>,
        span: Span,
    ) -> Result<StreamId, GraphError> {
        let id = StreamId::new(self.streams.len());
        let next = self
            .next_out
            .get_mut(op.index())
            .ok_or_else(|| GraphError(format!("{op} does not exist")))?;
        let port = *next;
        *next = next.saturating_add(1);
        self.producers.push(PortRef { op, port });
        self.streams.push(Stream { id, ty, name, span });
        Ok(id)
    }

    /// Connects `stream` to the next input port of `op`.
    pub fn add_input(&mut self, op: OpId, stream: StreamId) -> Result<(), GraphError> {
        let producer = self
            .producers
            .get(stream.index())
            .ok_or_else(|| GraphError(format!("{stream} does not exist")))?
            .op;
        let next = self
            .next_in
            .get_mut(op.index())
            .ok_or_else(|| GraphError(format!("{op} does not exist")))?;
        let port = *next;
        *next = next.saturating_add(1);
        self.g
            .add_edge(node(producer), node(op), Edge { stream, port });
        Ok(())
    }

    pub fn stream_type(&self, stream: StreamId) -> Option<&StreamType> {
        self.streams.get(stream.index()).map(|s| &s.ty)
    }

    /// Validates fn references and acyclicity, computes the topological order and derives the
    /// port index.
    pub fn finish(self) -> Result<Graph, GraphError> {
        let GraphBuilder {
            g,
            streams,
            producers,
            fns,
            params,
            ..
        } = self;
        for op in g.node_weights() {
            if let Some(f) = op.kind.fn_id()
                && f.index() >= fns.len()
            {
                return Err(GraphError(format!("{} refers to missing {f}", op.id)));
            }
        }
        let topo = topo_order(&g).ok_or_else(|| GraphError("the graph has a cycle".into()))?;
        let index = PortIndex::derive(&g, &producers)?;
        let inputs = g
            .node_weights()
            .filter(|o| matches!(o.kind, OpKind::Input { .. }))
            .map(|o| o.id)
            .collect();
        let mut outputs: Vec<(usize, OpId)> = g
            .node_weights()
            .filter_map(|o| match o.kind {
                OpKind::Output { index, .. } => Some((index, o.id)),
                _ => None,
            })
            .collect();
        outputs.sort();
        Ok(Graph {
            g,
            streams,
            producers,
            fns,
            params,
            inputs,
            outputs: outputs.into_iter().map(|(_, id)| id).collect(),
            topo,
            index,
        })
    }
}

/// Kahn's algorithm, smallest ready id first; `None` when there is a cycle.
pub(crate) fn topo_order(g: &StableDiGraph<Op, Edge>) -> Option<Vec<OpId>> {
    let n = g.node_bound();
    let mut indeg = vec![0usize; n];
    for e in g.edge_references() {
        if let Some(d) = indeg.get_mut(e.target().index()) {
            *d += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = g
        .node_indices()
        .map(NodeIndex::index)
        .filter(|&i| indeg.get(i) == Some(&0))
        .map(Reverse)
        .collect();
    let mut topo = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        topo.push(OpId::new(i));
        for nb in g.neighbors(NodeIndex::new(i)) {
            if let Some(d) = indeg.get_mut(nb.index()) {
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(nb.index()));
                }
            }
        }
    }
    (topo.len() == g.node_count()).then_some(topo)
}
