//! The typed stream graph.
//!
//! Nodes are ops (the 14 STeP operators plus `Input`/`Output` pseudo-ops for the task's input
//! streams and the program's returned streams); streams are stored in a side vector indexed by
//! [`StreamId`] and each consumption of a stream is one petgraph edge (producer → consumer). A
//! stream has exactly one producer and, in a linear program, at most one consumer; a non-linear
//! program (which still runs in the executor) has streams with several consumers.
//!
//! The graph is immutable once built ([`GraphBuilder::finish`]); ids are dense, never reused,
//! and ops are numbered in program order, which is already a topological order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
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

/// An element function's signature, from the task's `fns[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FnSig {
    pub id: FnId,
    /// `func_name`: what programs write.
    pub name: String,
    /// The task's `name:` label.
    pub label: String,
    /// Index into the task's `fns[]` (where the body lives).
    pub decl_index: usize,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub id: OpId,
    pub kind: OpKind,
    /// Input streams by port.
    pub inputs: Vec<StreamId>,
    /// Output streams by port.
    pub outputs: Vec<StreamId>,
    /// The op call in the program (for pseudo-ops: the task declaration or the `return` name).
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    pub id: StreamId,
    pub ty: StreamType,
    pub producer: PortRef,
    /// In consumption order; empty for a stream nobody reads, more than one only in a
    /// non-linear program.
    pub consumers: Vec<PortRef>,
    /// The program name the stream was bound to (`E1`, `parts[0]`), if any.
    pub name: Option<String>,
    /// Where it was bound (the target name), or the producing op.
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

/// The typed stream graph. Built with [`GraphBuilder`].
#[derive(Debug, Clone)]
pub struct Graph {
    g: StableDiGraph<Op, Edge>,
    streams: Vec<Stream>,
    fns: Vec<FnSig>,
    inputs: Vec<OpId>,
    outputs: Vec<OpId>,
    topo: Vec<OpId>,
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
        let s = *self.get_op(op)?.inputs.get(port)?;
        Some(&self.get_stream(s)?.ty)
    }

    /// True when every stream has at most one consumer.
    pub fn is_linear(&self) -> bool {
        self.streams.iter().all(|s| s.consumers.len() <= 1)
    }
}

/// Builds a [`Graph`] op by op, in program order.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    g: StableDiGraph<Op, Edge>,
    streams: Vec<Stream>,
    fns: Vec<FnSig>,
}

impl GraphBuilder {
    pub fn new(fns: Vec<FnSig>) -> GraphBuilder {
        GraphBuilder {
            g: StableDiGraph::new(),
            streams: Vec::new(),
            fns,
        }
    }

    /// Like [`GraphBuilder::new`], with room for `ops` ops and `streams` streams.
    pub fn with_capacity(fns: Vec<FnSig>, ops: usize, streams: usize) -> GraphBuilder {
        GraphBuilder {
            g: StableDiGraph::with_capacity(ops, streams),
            streams: Vec::with_capacity(streams),
            fns,
        }
    }

    pub fn fns(&self) -> &[FnSig] {
        &self.fns
    }

    /// Adds an op with no ports connected yet.
    pub fn add_op(&mut self, kind: OpKind, span: Span) -> OpId {
        let id = OpId::new(self.g.node_count());
        let idx = self.g.add_node(Op {
            id,
            kind,
            inputs: Vec::new(),
            outputs: Vec::new(),
            span,
        });
        debug_assert_eq!(idx.index(), id.index());
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
        let o = self
            .g
            .node_weight_mut(node(op))
            .ok_or_else(|| GraphError(format!("{op} does not exist")))?;
        let port = u32::try_from(o.outputs.len()).unwrap_or(u32::MAX);
        o.outputs.push(id);
        self.streams.push(Stream {
            id,
            ty,
            producer: PortRef { op, port },
            consumers: Vec::new(),
            name,
            span,
        });
        Ok(id)
    }

    /// Connects `stream` to the next input port of `op`.
    pub fn add_input(&mut self, op: OpId, stream: StreamId) -> Result<(), GraphError> {
        let producer = self
            .streams
            .get(stream.index())
            .ok_or_else(|| GraphError(format!("{stream} does not exist")))?
            .producer
            .op;
        let o = self
            .g
            .node_weight_mut(node(op))
            .ok_or_else(|| GraphError(format!("{op} does not exist")))?;
        let port = u32::try_from(o.inputs.len()).unwrap_or(u32::MAX);
        o.inputs.push(stream);
        if let Some(s) = self.streams.get_mut(stream.index()) {
            s.consumers.push(PortRef { op, port });
        }
        self.g
            .add_edge(node(producer), node(op), Edge { stream, port });
        Ok(())
    }

    pub fn stream_type(&self, stream: StreamId) -> Option<&StreamType> {
        self.streams.get(stream.index()).map(|s| &s.ty)
    }

    /// Validates fn references and acyclicity and computes the topological order.
    pub fn finish(self) -> Result<Graph, GraphError> {
        let GraphBuilder { g, streams, fns } = self;
        for op in g.node_weights() {
            if let Some(f) = op.kind.fn_id()
                && f.index() >= fns.len()
            {
                return Err(GraphError(format!("{} refers to missing {f}", op.id)));
            }
        }
        let n = g.node_count();
        let mut indeg = vec![0usize; n];
        for e in g.edge_indices() {
            if let Some((_, b)) = g.edge_endpoints(e) {
                indeg[b.index()] += 1;
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
        let mut topo = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            topo.push(OpId::new(i));
            for nb in g.neighbors(NodeIndex::new(i)) {
                indeg[nb.index()] -= 1;
                if indeg[nb.index()] == 0 {
                    ready.push(Reverse(nb.index()));
                }
            }
        }
        if topo.len() != n {
            return Err(GraphError("the graph has a cycle".into()));
        }
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
            fns,
            inputs,
            outputs: outputs.into_iter().map(|(_, id)| id).collect(),
            topo,
        })
    }
}
