//! Text (`--emit ir`), DOT (`--emit dot`) and serde forms of the graph. All iterate in id order.

use std::fmt::Write as _;

use serde::Serialize;

use crate::dim::Dim;
use crate::dim::dims_to_string;
use crate::graph::{FnKind, FnSig, Graph, Op, OpId, OpKind, Param, PortRef, StreamId};
use crate::types::StreamType;

impl Graph {
    /// The op with its parameters as a program would write it: `Accum(fn=sum, b=2)`.
    pub fn op_label(&self, op: &Op) -> String {
        let fname = |f: crate::graph::FnId| {
            self.fns()
                .get(f.index())
                .map(|s| s.name.clone())
                .unwrap_or_else(|| f.to_string())
        };
        let list = |v: &[usize]| {
            let parts: Vec<String> = v.iter().map(usize::to_string).collect();
            format!("[{}]", parts.join(", "))
        };
        match &op.kind {
            OpKind::Input { index, name } => format!("Input[{index}]({name})"),
            OpKind::Output { index, name } => format!("Output[{index}]({name})"),
            OpKind::Map { f } => format!("Map(fn={})", fname(*f)),
            OpKind::Accum { f, b } => format!("Accum(fn={}, b={b})", fname(*f)),
            OpKind::Scan { f, b } => format!("Scan(fn={}, b={b})", fname(*f)),
            OpKind::Zip => "Zip()".into(),
            OpKind::Copy => "Copy()".into(),
            OpKind::Bufferize { a } => format!("Bufferize(a={a})"),
            OpKind::Streamify => "Streamify()".into(),
            OpKind::Promote { b } => format!("Promote(b={b})"),
            OpKind::Flatten { dims } => format!("Flatten(L={})", list(dims)),
            OpKind::Reshape { dims, chunk } => format!("Reshape(L={}, S={chunk})", list(dims)),
            OpKind::Repeat { n } => format!("Repeat(n={n})"),
            OpKind::RepeatRef => "RepeatRef()".into(),
            OpKind::Partition { n, .. } => format!("Partition(N={n})"),
            OpKind::Merge { f, .. } => format!("Merge(fn={})", fname(*f)),
        }
    }

    fn stream_ref(&self, id: StreamId) -> String {
        match self.get_stream(id).and_then(|s| s.name.as_deref()) {
            Some(n) => format!("{id} \"{n}\""),
            None => id.to_string(),
        }
    }

    /// A stable, line-per-item text form:
    ///
    /// ```text
    /// fn0 f_add: [fp32, fp32] -> fp32 stateless
    /// op0 Input[0](E0) -> s0 "E0": fp32 [D, N]
    /// op1 Map(fn=f_add) (s0 "E0") -> s1 "E1": fp32 [D, N]
    /// ```
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for f in self.fns() {
            let _ = writeln!(out, "{}", fn_line(f));
        }
        for p in self.params() {
            let _ = writeln!(out, "{}", param_line(p));
        }
        for &id in self.topo_order() {
            let op = self.op(id);
            let _ = write!(out, "{id} {}", self.op_label(op));
            let (inputs, outputs) = (self.inputs_of(id), self.outputs_of(id));
            if !inputs.is_empty() {
                let ins: Vec<String> = inputs.iter().map(|s| self.stream_ref(*s)).collect();
                let _ = write!(out, " ({})", ins.join(", "));
            }
            if !outputs.is_empty() {
                let outs: Vec<String> = outputs
                    .iter()
                    .map(|s| format!("{}: {}", self.stream_ref(*s), self.stream(*s).ty))
                    .collect();
                let _ = write!(out, " -> {}", outs.join(", "));
            }
            out.push('\n');
        }
        out
    }

    /// Graphviz DOT: one node per op, one edge per consumption labelled with the stream's name
    /// and type; unconsumed streams end in a dashed sink node.
    pub fn to_dot(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::from(
            "digraph stepforge {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for op in self.ops() {
            let shape = if op.kind.is_pseudo() {
                ", shape=ellipse"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} [label=\"{}: {}\"{shape}];",
                op.id,
                op.id,
                esc(&self.op_label(op))
            );
        }
        for s in self.streams() {
            let label = format!(
                "{}: {} {}",
                s.name.clone().unwrap_or_else(|| s.id.to_string()),
                s.ty.elem,
                dims_to_string(&s.ty.dims)
            );
            let producer = self.producer(s.id).op;
            let consumers = self.consumers(s.id);
            if consumers.is_empty() {
                let _ = writeln!(
                    out,
                    "  unused_{} [label=\"unused\", shape=point, style=dashed];\n  {} -> unused_{} [label=\"{}\", style=dashed];",
                    s.id,
                    producer,
                    s.id,
                    esc(&label)
                );
            }
            for c in consumers {
                let _ = writeln!(
                    out,
                    "  {} -> {} [label=\"{}\"];",
                    producer,
                    c.op,
                    esc(&label)
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// A serialisable snapshot of the whole graph (ops in id order), with each op's ports and
    /// each stream's producer and consumers spelled out.
    pub fn to_serde(&self) -> GraphDump<'_> {
        GraphDump {
            fns: self.fns(),
            params: self.params(),
            ops: self
                .ops()
                .map(|op| OpDump {
                    id: op.id,
                    kind: &op.kind,
                    inputs: self.inputs_of(op.id),
                    outputs: self.outputs_of(op.id),
                    span: op.span,
                })
                .collect(),
            streams: self
                .streams()
                .iter()
                .map(|s| StreamDump {
                    id: s.id,
                    ty: &s.ty,
                    producer: self.producer(s.id),
                    consumers: self.consumers(s.id),
                    name: s.name.as_deref(),
                    span: s.span,
                })
                .collect(),
            topo_order: self.topo_order().iter().map(|o| o.index()).collect(),
        }
    }
}

fn fn_line(f: &FnSig) -> String {
    let kind = match &f.kind {
        FnKind::Stateless => "stateless".to_string(),
        FnKind::Reducer { init } => {
            let parts: Vec<String> = init.iter().map(|v| v.to_string()).collect();
            format!("reducer init=[{}]", parts.join(", "))
        }
    };
    format!("{} {}: {} -> {} {kind}", f.id, f.name, f.input, f.output)
}

/// `param0 W: fp32 [D, N]`
fn param_line(p: &Param) -> String {
    let dims: Vec<String> = p.dims.iter().map(Dim::to_string).collect();
    format!("{} {}: {} [{}]", p.id, p.name, p.elem, dims.join(", "))
}

#[derive(Debug, Serialize)]
pub struct GraphDump<'a> {
    pub fns: &'a [FnSig],
    pub params: &'a [Param],
    pub ops: Vec<OpDump<'a>>,
    pub streams: Vec<StreamDump<'a>>,
    pub topo_order: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct OpDump<'a> {
    pub id: OpId,
    pub kind: &'a OpKind,
    pub inputs: &'a [StreamId],
    pub outputs: &'a [StreamId],
    pub span: stepforge_syntax::span::Span,
}

#[derive(Debug, Serialize)]
pub struct StreamDump<'a> {
    pub id: StreamId,
    pub ty: &'a StreamType,
    pub producer: PortRef,
    pub consumers: &'a [PortRef],
    pub name: Option<&'a str>,
    pub span: stepforge_syntax::span::Span,
}
