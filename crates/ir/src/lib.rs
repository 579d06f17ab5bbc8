//! `stepforge-ir` owns the single source of truth after lowering (DESIGN §2, §3): element and
//! stream types, symbolic dimensions, function signatures and the typed stream graph that the
//! executor, the JIT and the simulator consume.
//!
//! It does no checking of programs (that is `stepforge-check`, which builds graphs only for
//! well-typed programs) and no I/O. It does not depend on the parser: spans come from
//! `stepforge-diag`, and converting written types (AST) into IR types is the checker's job
//! (`stepforge_check::ast_types`). The invariants of a finished [`Graph`] are listed, and
//! checked, by the IR verifier ([`verify::verify`]); [`Graph::instantiate`] turns symbolic
//! shapes into concrete ones for one dimension binding ([`Instance`]).

pub mod builtin;
pub mod dim;
pub mod dump;
pub mod func;
pub mod graph;
pub mod hash;
pub mod instance;
pub mod types;
pub mod verify;

pub use dim::{Dim, DimEnv, DynDim, Sym, dims_to_string, strip_value_suffix};
pub use dump::GraphDump;
pub use graph::{
    Edge, FnId, FnKind, FnSig, Graph, GraphBuilder, GraphError, Op, OpId, OpKind, Param, ParamId,
    PortRef, Stream, StreamId,
};
pub use hash::{GraphHash, graph_hash, stream_hashes};
pub use instance::{
    Extent, Instance, InstanceError, InstanceErrorKind, InstanceSite, ParamShape, StreamShape,
};
pub use types::{ElemType, Scalar, StreamType};
pub use verify::{Invariant, Violation, verify};

#[cfg(test)]
mod tests {
    use super::*;
    use stepforge_diag::Span;

    /// in0 → Map → Copy → (Accum, Output1); Accum → Output0
    pub(crate) fn sample() -> Graph {
        let d = Dim::sym("D");
        let n = Dim::sym("N");
        let fns = vec![
            FnSig {
                id: FnId::new(0),
                name: "f".into(),
                label: "f".into(),
                kind: FnKind::Stateless,
                input: ElemType::Fp32,
                output: ElemType::Fp32,
                span: Span::DUMMY,
            },
            FnSig {
                id: FnId::new(1),
                name: "add".into(),
                label: "add".into(),
                kind: FnKind::Reducer { init: vec![0.0] },
                input: ElemType::Fp32,
                output: ElemType::Fp32,
                span: Span::DUMMY,
            },
        ];
        let st = StreamType::new(ElemType::Fp32, vec![d.clone(), n.clone()]);
        let mut b = GraphBuilder::new(fns);
        b.add_param(
            "W".into(),
            ElemType::Fp32,
            vec![d.clone(), Dim::lit(4)],
            Span::DUMMY,
        );
        let i = b.add_op(
            OpKind::Input {
                index: 0,
                name: "E0".into(),
            },
            Span::DUMMY,
        );
        let s0 = b
            .add_output(i, st.clone(), Some("E0".into()), Span::DUMMY)
            .unwrap();
        let m = b.add_op(OpKind::Map { f: FnId::new(0) }, Span::new(0, 5));
        b.add_input(m, s0).unwrap();
        let s1 = b
            .add_output(m, st.clone(), Some("E1".into()), Span::DUMMY)
            .unwrap();
        let c = b.add_op(OpKind::Copy, Span::DUMMY);
        b.add_input(c, s1).unwrap();
        let s2 = b
            .add_output(c, st.clone(), Some("a".into()), Span::DUMMY)
            .unwrap();
        let s3 = b
            .add_output(c, st.clone(), Some("b".into()), Span::DUMMY)
            .unwrap();
        let acc = b.add_op(
            OpKind::Accum {
                f: FnId::new(1),
                b: 1,
            },
            Span::DUMMY,
        );
        b.add_input(acc, s2).unwrap();
        let s4 = b
            .add_output(
                acc,
                StreamType::new(ElemType::Fp32, vec![n]),
                Some("r".into()),
                Span::DUMMY,
            )
            .unwrap();
        for (index, name, s) in [(1, "y", s3), (0, "x", s4)] {
            let o = b.add_op(
                OpKind::Output {
                    index,
                    name: name.into(),
                },
                Span::DUMMY,
            );
            b.add_input(o, s).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn builder_links_ports_and_orders_topologically() {
        let g = sample();
        assert_eq!(g.op_count(), 6);
        assert_eq!(g.topo_order().len(), 6);
        let pos = |id: usize| g.topo_order().iter().position(|o| o.index() == id).unwrap();
        for s in g.streams() {
            for c in g.consumers(s.id) {
                assert!(pos(g.producer(s.id).op.index()) < pos(c.op.index()));
            }
        }
        let copy = OpId::new(2);
        assert_eq!(g.outputs_of(copy).len(), 2);
        assert_eq!(g.producer(g.outputs_of(copy)[1]).port, 1);
        assert_eq!(g.inputs_of(OpId::new(3)), &[StreamId::new(2)]);
        assert_eq!(
            g.consumers(StreamId::new(3)),
            &[PortRef {
                op: OpId::new(4),
                port: 0
            }]
        );
        assert!(verify(&g).is_empty(), "{:?}", verify(&g));
        assert_eq!(g.outputs(), &[OpId::new(5), OpId::new(4)]);
        assert!(g.is_linear());
        assert_eq!(
            g.input_type(OpId::new(3), 0).unwrap().to_string(),
            "fp32 [D, N]"
        );
    }

    #[test]
    fn dumps_are_stable() {
        let g = sample();
        insta::assert_snapshot!("sample_text", g.dump());
        insta::assert_snapshot!("sample_dot", g.to_dot());
        insta::assert_json_snapshot!("sample_serde", g.to_serde());
    }

    #[test]
    fn missing_fn_is_rejected() {
        let mut b = GraphBuilder::new(Vec::new());
        b.add_op(OpKind::Map { f: FnId::new(3) }, Span::DUMMY);
        assert!(b.finish().is_err());
    }
}
