//! Property tests: random trees round-trip through the printer; random text never panics any
//! entry point and every reported span lies inside the text.

use proptest::prelude::*;
use proptest::sample::select;
use stepforge_syntax::ast::*;
use stepforge_syntax::*;

const D: Span = Span::DUMMY;

fn ident() -> impl Strategy<Value = Ident> {
    select(
        &[
            "x", "y", "input", "state", "torch", "E_value", "a1", "_t", "W", "fn_sum",
        ][..],
    )
    .prop_map(|n| Ident::new(n, D))
}

fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: D }
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (0i64..1_000_000).prop_map(|i| e(ExprKind::Int(i))),
        select(&["1.5", "1e-5", ".5", "2.", "3.25e+2", "0.0"][..])
            .prop_map(|t| e(ExprKind::Float(t.parse().unwrap(), t.to_string()))),
        any::<bool>().prop_map(|b| e(ExprKind::Bool(b))),
        Just(e(ExprKind::None)),
        "[a-z'\"\\\\{} \n\t]{0,6}".prop_map(|s| e(ExprKind::Str(s))),
        ident().prop_map(|i| e(ExprKind::Name(i.name))),
        // f-strings: literal pieces never adjacent (the parser merges them), holes are names.
        (
            "[a-z_{}]{1,4}",
            ident(),
            proptest::option::of("[a-z_{}]{1,4}")
        )
            .prop_map(|(l, h, t)| {
                let mut parts = vec![
                    FStringPart::Lit(l),
                    FStringPart::Expr(e(ExprKind::Name(h.name))),
                ];
                parts.extend(t.map(FStringPart::Lit));
                e(ExprKind::FString(parts))
            }),
    ]
}

fn target_names() -> impl Strategy<Value = Target> {
    prop_oneof![
        ident().prop_map(Target::Name),
        proptest::collection::vec(ident().prop_map(Target::Name), 2..4)
            .prop_map(|v| Target::Tuple(v, D)),
    ]
}

fn slice_item(inner: BoxedStrategy<Expr>) -> impl Strategy<Value = SliceItem> {
    let o = || proptest::option::of(inner.clone());
    prop_oneof![
        inner.clone().prop_map(SliceItem::Index),
        Just(SliceItem::Ellipsis(D)),
        (o(), o(), o()).prop_map(|(lo, hi, step)| SliceItem::Slice {
            lo,
            hi,
            step,
            span: D
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 48, 4, |inner| {
        let b = || inner.clone().prop_map(Box::new);
        let v = |n| proptest::collection::vec(inner.clone(), 0..n);
        prop_oneof![
            (b(), ident()).prop_map(|(value, attr)| e(ExprKind::Attr { value, attr })),
            (
                b(),
                v(3),
                proptest::collection::btree_map(
                    select(&["dim", "dtype", "keepdim", "unbiased"][..]),
                    inner.clone(),
                    0..3
                )
            )
                .prop_map(|(func, args, kw)| e(ExprKind::Call {
                    func,
                    args,
                    kwargs: kw.into_iter().map(|(k, v)| (Ident::new(k, D), v)).collect(),
                })),
            (
                b(),
                proptest::collection::vec(slice_item(inner.clone().boxed()), 1..4)
            )
                .prop_map(|(value, index)| e(ExprKind::Subscript { value, index })),
            (
                select(
                    &[
                        BinOp::Add,
                        BinOp::Sub,
                        BinOp::Mul,
                        BinOp::Div,
                        BinOp::FloorDiv,
                        BinOp::Mod,
                        BinOp::Pow,
                        BinOp::MatMul
                    ][..]
                ),
                b(),
                b()
            )
                .prop_map(|(op, lhs, rhs)| e(ExprKind::Binary { op, lhs, rhs })),
            (select(&[UnOp::Neg, UnOp::Pos, UnOp::Not][..]), b())
                .prop_map(|(op, operand)| e(ExprKind::Unary { op, operand })),
            (
                b(),
                proptest::collection::vec(
                    (
                        select(
                            &[
                                CmpOp::Lt,
                                CmpOp::Le,
                                CmpOp::Gt,
                                CmpOp::Ge,
                                CmpOp::Eq,
                                CmpOp::Ne
                            ][..]
                        ),
                        inner.clone()
                    ),
                    1..3
                )
            )
                .prop_map(|(first, rest)| e(ExprKind::Compare { first, rest })),
            (b(), b(), b()).prop_map(|(cond, body, orelse)| e(ExprKind::IfElse {
                cond,
                body,
                orelse
            })),
            v(4).prop_map(|xs| e(ExprKind::List(xs))),
            v(4).prop_map(|xs| e(ExprKind::Tuple(xs))),
            (b(), target_names(), b()).prop_map(|(elt, t, iter)| e(ExprKind::ListComp {
                elt,
                target: Box::new(t),
                iter
            })),
        ]
    })
}

fn assign_target() -> impl Strategy<Value = Target> {
    let leaf_t = prop_oneof![
        ident().prop_map(Target::Name),
        (
            expr(),
            proptest::collection::vec(slice_item(expr().boxed()), 1..3)
        )
            .prop_map(|(value, index)| Target::Subscript {
                value: Box::new(value),
                index,
                span: D
            }),
    ];
    leaf_t.prop_recursive(2, 8, 3, |inner| {
        proptest::collection::vec(inner, 1..4).prop_map(|v| Target::Tuple(v, D))
    })
}

fn py_stmt() -> impl Strategy<Value = PyStmt> {
    prop_oneof![
        (assign_target(), expr()).prop_map(|(target, value)| PyStmtKind::Assign { target, value }),
        expr().prop_map(PyStmtKind::Return),
        expr().prop_map(PyStmtKind::Expr),
    ]
    .prop_map(|kind| PyStmt { kind, span: D })
}

fn kwvalue() -> impl Strategy<Value = KwValue> {
    let leaf = prop_oneof![
        (-1000i64..1000).prop_map(|i| KwValue::Int(i, D)),
        ident().prop_map(KwValue::Name),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| KwValue::List(v, D)),
            proptest::collection::vec(inner, 0..4).prop_map(|v| KwValue::Tuple(v, D)),
        ]
    })
}

fn arg() -> impl Strategy<Value = Arg> {
    ident()
        .prop_map(Arg::Name)
        .prop_recursive(2, 8, 3, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(|v| Arg::Tuple(v, D))
        })
}

fn opcall() -> impl Strategy<Value = OpCall> {
    (
        select(ops::OPS),
        proptest::collection::vec(kwvalue(), 3),
        arg(),
    )
        .prop_map(|(info, values, arg)| OpCall {
            op: Ident::new(info.name, D),
            kwargs: info
                .params
                .iter()
                .zip(values)
                .map(|(p, value)| Kwarg {
                    key: Ident::new(*p, D),
                    value,
                    span: D,
                })
                .collect(),
            arg,
            head_span: D,
            span: D,
        })
}

fn program() -> impl Strategy<Value = Program> {
    let names = || proptest::collection::vec(ident(), 1..4);
    let rhs = prop_oneof![
        opcall().prop_map(Rhs::Op),
        proptest::collection::vec(ident(), 0..4).prop_map(|v| Rhs::List(v, D)),
        (
            opcall(),
            proptest::collection::vec(ident(), 1..3),
            prop_oneof![
                ident().prop_map(CompIter::Name),
                proptest::collection::vec(ident(), 0..3).prop_map(|v| CompIter::Zip(v, D)),
            ]
        )
            .prop_map(|(body, vars, iter)| Rhs::Comp(Comprehension {
                body,
                vars,
                iter,
                span: D
            })),
    ];
    (
        proptest::collection::vec(
            (names(), rhs).prop_map(|(targets, rhs)| Stmt {
                targets,
                rhs,
                span: D,
            }),
            0..6,
        ),
        names(),
    )
        .prop_map(|(stmts, values)| Program {
            stmts,
            ret: Return { values, span: D },
            span: D,
        })
}

fn dim() -> impl Strategy<Value = DimExpr> {
    prop_oneof![
        (1i64..100).prop_map(|i| DimExpr::Int(i, D)),
        select(&["M", "N", "K", "D", "E"][..]).prop_map(|n| DimExpr::Sym(Ident::new(n, D))),
    ]
    .prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| DimExpr::Mul(
                Box::new(a),
                Box::new(b),
                D
            )),
            (inner.clone(), inner).prop_map(|(a, b)| DimExpr::Div(Box::new(a), Box::new(b), D)),
        ]
    })
}

fn dtype() -> impl Strategy<Value = DtypeAst> {
    let elem = prop_oneof![
        Just(DtypeAst::Fp32(D)),
        dim().prop_map(|len| DtypeAst::Multihot {
            elem: Box::new(DtypeAst::Fp32(D)),
            len,
            span: D
        }),
    ];
    let single = prop_oneof![
        elem.clone(),
        (elem, proptest::collection::vec(dim(), 1..4)).prop_map(|(e, dims)| DtypeAst::Buffer {
            elem: Box::new(e),
            dims,
            span: D
        }),
    ];
    prop_oneof![
        single.clone(),
        proptest::collection::vec(single, 1..4).prop_map(|v| DtypeAst::Tuple(v, D)),
    ]
}

/// No panic, and every span of every diagnostic lies inside the text on char boundaries.
fn check_spans<T>(text: &str, p: &Parsed<T>) {
    for (i, d) in p.diagnostics.iter().enumerate() {
        for s in d.spans() {
            assert!(
                s.lo <= s.hi && s.hi as usize <= text.len(),
                "{:?} outside {} bytes",
                s,
                text.len()
            );
            assert!(text.is_char_boundary(s.lo as usize) && text.is_char_boundary(s.hi as usize));
        }
        // Both renderers cope (the human one is slow in debug builds: sample it).
        let src = Source::new("t", text);
        if i < 2 {
            let _ = d.render_human(&src, false);
        }
        let _ = d.to_json(&src);
    }
}

fn all_entry_points(text: &str) {
    check_spans(text, &parse_program(text));
    check_spans(text, &parse_answer(text));
    check_spans(text, &parse_block(text));
    check_spans(text, &parse_snippet(text));
    check_spans(text, &parse_dtype(text));
    check_spans(text, &parse_dim(text));
}

const SOUP: &[&str] = &[
    "E1",
    "x",
    "step",
    ".",
    "Map",
    "Accum",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "fn",
    "=",
    "==",
    ",",
    ":",
    ";",
    "apply",
    "return",
    "for",
    "in",
    "zip",
    "if",
    "else",
    "not",
    "and",
    "1",
    "1e-5",
    ".5",
    "'s'",
    "\"s",
    "f\"{E}_v\"",
    "f\"{",
    "}",
    "+",
    "-",
    "*",
    "**",
    "/",
    "//",
    "@",
    "%",
    "...",
    "#c",
    "\\",
    "`",
    "$",
    "é",
    "import",
    "def",
    "```",
    "```python",
    "impl:",
    "impl: |",
    "|",
    "torch",
    "None",
    "True",
    "lambda",
    "+=",
    "\t",
    "fp32",
    "Buffer",
    "Multihot",
];

fn soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            select(SOUP),
            select(&["", " ", "  ", "\n", "\n  ", "\n\t", "\r\n"][..]),
        ),
        0..40,
    )
    .prop_map(|v| v.into_iter().map(|(a, b)| format!("{a}{b}")).collect())
}

/// Fragments of program lines, so random sequences are often almost canonical: the fast
/// path must either build the grammar's tree or step aside.
const PROGRAM_BITS: &[&str] = &[
    "E1",
    "x",
    "Xs",
    " = ",
    "=",
    "step",
    ".",
    "step.",
    "Map",
    "Accum",
    "Copy",
    "Zip",
    "Mapp",
    "(",
    ")",
    "(fn=f)",
    "fn=",
    "b=",
    "L=",
    "n=",
    "N=",
    "f",
    "1",
    "-1",
    "1_0",
    "--1",
    "[",
    "]",
    "[0, 1]",
    "(0,)",
    "(0)",
    ",",
    ", ",
    ".apply(",
    "apply",
    "x)",
    "(a, b)",
    "((a,), b)",
    "()",
    " for ",
    "g, x",
    " in ",
    "zip(",
    "Fs, Xs",
    "return ",
    "return",
    "\n",
    "\n",
    "# c\n",
    "  ",
    "\"f\"",
    "==",
    "step.Map(fn=f).apply(x)",
    "step.Accum(fn=f, b=1).apply(x)",
];

fn program_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(PROGRAM_BITS), 0..30).prop_map(|v| v.concat())
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=N` runs more.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn blocks_round_trip(stmts in proptest::collection::vec(py_stmt(), 1..5)) {
        let b = Block { stmts, span: D };
        let text = print::block(&b);
        let p = parse_block(&text);
        prop_assert!(p.diagnostics.is_empty(), "{text}\n{:?}", p.diagnostics);
        let back = p.value.unwrap();
        prop_assert!(same_tree(&b, &back), "changed:\n{text}\n{}", print::block(&back));
    }

    #[test]
    fn expressions_round_trip_at_base_indent(x in expr()) {
        let text = format!("\n\n    {}\n", print::expr(&x));
        let p = parse_snippet(&text);
        prop_assert!(p.diagnostics.is_empty(), "{text}\n{:?}", p.diagnostics);
        let b = p.value.unwrap();
        let PyStmtKind::Expr(back) = &b.stmts[0].kind else { panic!("{text}") };
        prop_assert!(same_tree(&x, back), "changed:\n{text}\n{}", print::expr(back));
    }

    #[test]
    fn programs_round_trip(p in program()) {
        let text = print::program(&p);
        let parsed = parse_program(&text);
        prop_assert!(parsed.diagnostics.is_empty(), "{text}\n{:?}", parsed.diagnostics);
        prop_assert!(same_tree(&p, &parsed.value.unwrap()), "changed:\n{text}");
        // The same program as an LLM answer in a fenced YAML block.
        let indented: String = text.lines().map(|l| format!("  {l}\n")).collect();
        let answer = format!("Here:\n```yaml\nimpl: |\n{indented}```\nbye");
        let parsed = parse_answer(&answer);
        prop_assert!(parsed.diagnostics.is_empty(), "{answer}\n{:?}", parsed.diagnostics);
        prop_assert!(same_tree(&p, &parsed.value.unwrap()));
    }

    #[test]
    fn fast_path_builds_the_grammars_tree(p in program(), spaced in any::<bool>()) {
        let mut text = print::program(&p);
        if spaced {
            text = text.replace(", ", " ,  ").replace('(', "(\n   ").replace('=', " = ");
        }
        let fast = parse_program(&text);
        let slow = parse_program_via_grammar(&text);
        prop_assert!(fast.diagnostics.is_empty(), "{text}\n{:?}", fast.diagnostics);
        prop_assert_eq!(fast.value, slow.value, "{}", text);
    }

    #[test]
    fn fast_path_agrees_on_near_misses(text in program_soup()) {
        let fast = parse_program(&text);
        let slow = parse_program_via_grammar(&text);
        prop_assert_eq!(fast.value, slow.value, "{}", text);
        prop_assert_eq!(fast.diagnostics, slow.diagnostics, "{}", text);
    }

    #[test]
    fn fast_path_agrees_on_soup(text in soup()) {
        let fast = parse_program(&text);
        let slow = parse_program_via_grammar(&text);
        prop_assert_eq!(fast.value, slow.value);
        prop_assert_eq!(fast.diagnostics, slow.diagnostics);
    }

    #[test]
    fn dtypes_round_trip(d in dtype()) {
        let text = print::dtype(&d);
        let p = parse_dtype(&text);
        prop_assert!(p.diagnostics.is_empty(), "{text}\n{:?}", p.diagnostics);
        prop_assert!(same_tree(&d, &p.value.unwrap()), "changed: {text}");
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        all_entry_points(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_unicode_never_panics(text in "\\PC{0,200}") {
        all_entry_points(&text);
    }

    #[test]
    fn token_soup_never_panics(text in soup()) {
        all_entry_points(&text);
    }
}
