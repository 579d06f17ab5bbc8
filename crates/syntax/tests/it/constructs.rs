//! Every construct of DESIGN §6 and §7 parses, means what Python means, and round-trips through
//! the printer.

use stepforge_syntax::ast::*;
use stepforge_syntax::codes::Code;
use stepforge_syntax::*;

fn rendered<T>(src: &str, p: &Parsed<T>) -> String {
    let s = Source::new("t", src);
    p.diagnostics
        .iter()
        .map(|d| d.render_human(&s, false))
        .collect()
}

fn block_ok(src: &str) -> Block {
    let p = parse_block(src);
    assert!(p.diagnostics.is_empty(), "{}", rendered(src, &p));
    p.value.unwrap()
}

fn program_ok(src: &str) -> Program {
    let p = parse_program(src);
    assert!(p.diagnostics.is_empty(), "{}", rendered(src, &p));
    p.value.unwrap()
}

fn expr_of(src: &str) -> Expr {
    let b = block_ok(src);
    match b.stmts.into_iter().next().unwrap().kind {
        PyStmtKind::Expr(e) => e,
        other => panic!("not an expression statement: {other:?}"),
    }
}

fn round_trip_block(src: &str) {
    let b = block_ok(src);
    let printed = print::block(&b);
    let again = block_ok(&printed);
    assert!(
        same_tree(&b, &again),
        "round trip changed the tree:\n{src}\n---\n{printed}"
    );
    assert_eq!(print::block(&again), printed, "printer is not idempotent");
}

fn round_trip_program(src: &str) {
    let p = program_ok(src);
    assert_eq!(
        Some(&p),
        parse_program_via_grammar(src).value.as_ref(),
        "fast path differs"
    );
    let printed = print::program(&p);
    let again = program_ok(&printed);
    assert!(
        same_tree(&p, &again),
        "round trip changed the tree:\n{src}\n---\n{printed}"
    );
}

/// Every construct DESIGN §7 lists, in one snippet.
const ALL_PY: &str = r#"
E_value = 3
ctx[E] = E_value
gelu = torch.nn.GELU()
sig = torch.nn.Sigmoid()
sm = torch.nn.Softmax(dim=-1)
silu = torch.nn.SiLU()
eps = 1e-5
a = -x ** 2 + y @ z - 3 // 2 % 5 / 2.
ok = True if x > 0.5 else False
none = None
b = x[0][1] + x[:, :, 0] + x[..., ::2] + x[1:3:2] + x[None, :] + x[:-1]
w = input_data['W'] @ input_data[f"{E}_value"]
v, i = torch.topk(x, 2, dim=-1)
y = torch.einsum('bij,bjk->bik', p, q)
z = torch.zeros_like(x, dtype=torch.float32)
t = torch.tensor([1.0, 2.0]) + torch.exp(x) + torch.sqrt(x) + torch.max(x, y)
r = torch.arange(0, D_value, 2, dtype=torch.float) / D_value
s = torch.stack([p, q], dim=0) + torch.cat([p, q], 1) + torch.bmm(p, q)
u = torch.softmax(x, dim=-1) + torch.sum(x, 0) + torch.cumprod(x, dim=0) + torch.ones(3)
ln = torch.ops.aten.native_layer_norm.default(x, [D_value], None, None, 1e-5)[0]
m = x.unsqueeze(0).squeeze(-1).movedim(0, 1).sum(dim=1).mean(-1).var(unbiased=False)
c = x.cos() * x.sin() + x.chunk(2, dim=-1)[0] + x.flatten().expand(3, 4).expand_as(y)
f = x.float().pow(2).repeat(2, 1).view(-1, 4).size(0) + x.scatter(0, i, y).T
x.scatter_(1, i, 1.0)
lst = [torch.zeros(D_value) for i in range(E_value)]
pairs = [p * q for p, q in zip(ps, qs)]
eq = x == y
ne = not x != y
return [gelu(state[0]) + sig(input[1]), silu(x)]
"#;

#[test]
fn every_python_construct_parses_and_round_trips() {
    let b = block_ok(ALL_PY);
    assert_eq!(b.stmts.len(), 29);
    round_trip_block(ALL_PY);
}

#[test]
fn precedence_follows_python() {
    // -x**2 == -(x**2)
    let e = expr_of("-x**2");
    let ExprKind::Unary {
        op: UnOp::Neg,
        operand,
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(
        operand.kind,
        ExprKind::Binary { op: BinOp::Pow, .. }
    ));
    // 2**-1 == 2**(-1); ** is right-associative
    let e = expr_of("a ** b ** c");
    let ExprKind::Binary {
        op: BinOp::Pow,
        rhs,
        ..
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(rhs.kind, ExprKind::Binary { op: BinOp::Pow, .. }));
    // @ binds like *, left-associative
    let e = expr_of("a @ b * c");
    let ExprKind::Binary {
        op: BinOp::Mul,
        lhs,
        ..
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(
        lhs.kind,
        ExprKind::Binary {
            op: BinOp::MatMul,
            ..
        }
    ));
    // + looser than *
    let e = expr_of("a + b * c");
    assert!(matches!(e.kind, ExprKind::Binary { op: BinOp::Add, .. }));
    // conditional is loosest; comparison inside its condition
    let e = expr_of("[a] if input[0] > 0.5 else [b]");
    let ExprKind::IfElse { cond, .. } = e.kind else {
        panic!()
    };
    assert!(matches!(cond.kind, ExprKind::Compare { .. }));
    // attribute chains
    let e = expr_of("torch.ops.aten.native_layer_norm.default(x)");
    assert_eq!(
        print::expr(&e),
        "torch.ops.aten.native_layer_norm.default(x)"
    );
    // parenthesised subexpressions survive printing
    assert_eq!(
        print::expr(&expr_of("(a + b) * -(c - d) ** 2")),
        "(a + b) * -(c - d) ** 2"
    );
    assert_eq!(print::expr(&expr_of("(-x) ** 2")), "(-x) ** 2");
    assert_eq!(print::expr(&expr_of("a - (b - c)")), "a - (b - c)");
}

#[test]
fn literals() {
    let e = expr_of("[1, 1e-5, .5, 2., True, False, None, 'it', \"q\\\"\"]");
    let ExprKind::List(items) = e.kind else {
        panic!()
    };
    assert!(matches!(items[0].kind, ExprKind::Int(1)));
    assert!(matches!(&items[1].kind, ExprKind::Float(v, t) if *v == 1e-5 && t == "1e-5"));
    assert!(matches!(&items[2].kind, ExprKind::Float(v, _) if *v == 0.5));
    assert!(matches!(&items[3].kind, ExprKind::Float(v, _) if *v == 2.0));
    assert!(matches!(items[4].kind, ExprKind::Bool(true)));
    assert!(matches!(items[6].kind, ExprKind::None));
    assert!(matches!(&items[8].kind, ExprKind::Str(s) if s == "q\""));
}

#[test]
fn fstring_holes_have_file_spans() {
    let src = "x = input_data[f\"{E}_value\"]";
    let b = block_ok(src);
    let PyStmtKind::Assign { value, .. } = &b.stmts[0].kind else {
        panic!()
    };
    let ExprKind::Subscript { index, .. } = &value.kind else {
        panic!()
    };
    let SliceItem::Index(Expr {
        kind: ExprKind::FString(parts),
        ..
    }) = &index[0]
    else {
        panic!()
    };
    let FStringPart::Expr(hole) = &parts[0] else {
        panic!()
    };
    assert_eq!(&src[hole.span.range()], "E");
    assert!(matches!(&parts[1], FStringPart::Lit(l) if l == "_value"));
}

#[test]
fn embedded_code_keeps_file_offsets() {
    // What the task loader hands over: the whole file with everything but the code blanked.
    let file = "fns:\n  - apply: |\n      x = input[0]\n      return [x * 2]\n";
    let blanked: String = file
        .char_indices()
        .map(|(i, c)| if i >= 24 || c == '\n' { c } else { ' ' })
        .collect();
    let b = block_ok(&blanked);
    assert_eq!(&file[b.stmts[0].span.range()], "x = input[0]");
    assert_eq!(&file[b.stmts[1].span.range()], "return [x * 2]");
}

const ALL_STEP: &str = "
# a comment
E1 = step.Map(fn=fn_sum).apply(E0)
E2, E3 = step.Copy().apply(E1)
E4 = step.Accum(fn=fn_acc, b=1).apply(E2)
E5 = step.Scan(fn=fn_acc, b=2).apply(E3)
E6 = step.Zip().apply((E4, E5))
E7 = step.Bufferize(a=1).apply(E6)
E8 = step.Streamify().apply(E7)
E9 = step.Promote(b=0).apply(E8)
E10 = step.Flatten(L=[0, 1,]).apply(E9)
E11 = step.Reshape(L=(0,), S=2).apply(E10)
E12 = step.Repeat(n=N).apply(E11)
E13 = step.RepeatRef().apply((E12, S0))
Bs = step.Partition(N=E_value).apply((E13, S1))
Fs = [fn_a, fn_b]
Cs = [step.Map(fn=f).apply(x) for f, x in zip(Fs, Bs)]
Ds = [step.Map(fn=g).apply(x) for x in Cs]
E14 = step.Merge(fn=fn_add).apply((Ds, S2))
E15 = step.Promote(b=-1).apply(E14)
return E15, E5
";

#[test]
fn every_program_construct_parses_and_round_trips() {
    let p = program_ok(ALL_STEP);
    assert_eq!(p.stmts.len(), 18);
    assert_eq!(p.ret.values.len(), 2);
    let Rhs::Comp(c) = &p.stmts[14].rhs else {
        panic!()
    };
    assert!(matches!(&c.iter, CompIter::Zip(xs, _) if xs.len() == 2));
    assert_eq!(c.vars.len(), 2);
    round_trip_program(ALL_STEP);
}

#[test]
fn multi_line_statements_and_base_indent() {
    let src = "\n\n      E1 = step.Map(\n          fn=f,\n      ).apply(E0)\n      return E1\n";
    let p = program_ok(src);
    assert_eq!(
        &src[p.stmts[0].span.range()],
        "E1 = step.Map(\n          fn=f,\n      ).apply(E0)"
    );
}

#[test]
fn dtypes_and_dims() {
    for src in [
        "fp32",
        "Multihot(fp32, E)",
        "Buffer(fp32, [D, N])",
        "Buffer(Multihot(fp32, E), [N])",
        "[fp32, Buffer(fp32, [D])]",
        "Buffer(fp32, [M*N, N/2])",
    ] {
        let p = parse_dtype(src);
        assert!(p.diagnostics.is_empty(), "{src}: {}", rendered(src, &p));
        assert_eq!(print::dtype(&p.value.unwrap()), src);
    }
    for (src, code) in [
        ("fp23", Code::E0119),
        ("buffer(fp32, [D])", Code::E0119),
        ("Multihot(fp32)", Code::E0119),
        ("Buffer(Buffer(fp32, [D]), [N])", Code::E0119),
        ("[fp32, [fp32]]", Code::E0119),
        ("", Code::E0119),
    ] {
        let p = parse_dtype(src);
        assert_eq!(p.diagnostics.first().map(|d| d.code), Some(code), "{src}");
        assert!(p.value.is_none());
    }
    let d = parse_dtype("fp23").diagnostics.remove(0);
    assert_eq!(d.help.as_deref(), Some("did you mean `fp32`?"));
    for src in ["M", "1", "M*N", "N/2", "M*(N/2)"] {
        let p = parse_dim(src);
        assert_eq!(print::dim(&p.value.unwrap()), src);
    }
    assert_eq!(parse_dim("M+1").diagnostics[0].code, Code::E0120);
}

#[test]
fn answers_keep_original_offsets() {
    let answer = "Here you go.\n\n```yaml\nimpl: |\n  E1 = step.Map(fn=f).apply(E0)\n  return E1\n```\nDone.";
    let p = parse_answer(answer);
    assert!(p.diagnostics.is_empty(), "{}", rendered(answer, &p));
    let prog = p.value.unwrap();
    assert_eq!(
        &answer[prog.stmts[0].span.range()],
        "E1 = step.Map(fn=f).apply(E0)"
    );
    let bare = parse_answer("E1 = step.Map(fn=f).apply(E0)\nreturn E1");
    assert!(bare.diagnostics.is_empty());
    let none = parse_answer("Sorry, I can't help with that.");
    assert_eq!(none.diagnostics[0].code, Code::E0118);
    assert!(none.diagnostics[0].help.is_some());
}

#[test]
fn recovery_reports_each_broken_line_once() {
    let src = "E1 = step.Map(fn=f).apply(E0\nE2 = step.Map(fn=g).apply(E1)\nE3 = = E2\nreturn E2\n";
    let p = parse_program(src);
    let codes: Vec<Code> = p.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        vec![Code::E0111, Code::E0110],
        "{}",
        rendered(src, &p)
    );
    // The good statement in the middle survived.
    assert_eq!(p.value.unwrap().stmts.len(), 1);
}

#[test]
fn deep_nesting_is_bounded_not_a_stack_overflow() {
    // Just inside the depth limit: parses, prints, round-trips.
    let n = 190;
    let ok = [
        format!("x = {}1", "-".repeat(n)),
        format!("x = {}y{}", "(".repeat(n), ")".repeat(n)),
        format!("x = y{}", "**y".repeat(n)),
        format!("x = {}y{}", "[".repeat(n), "]".repeat(n)),
        format!("x = y{}", "+y".repeat(n)),
        format!("x = {}y", "not ".repeat(n)),
    ];
    for text in &ok {
        let p = parse_block(text);
        assert!(p.diagnostics.is_empty(), "{}", &p.diagnostics[0].message);
        let b = p.value.unwrap();
        let printed = print::block(&b);
        assert!(same_tree(&b, &parse_block(&printed).value.unwrap()));
        // As a program the same line is rejected with a diagnostic, not a crash.
        assert!(parse_program(text).has_errors());
    }
    // Beyond it: a diagnostic, never a stack overflow.
    for text in [
        format!("x = {}1", "-".repeat(900)),
        format!("x = y{}", "**y".repeat(450)),
        format!("x = {}1", "-".repeat(5000)),
    ] {
        assert_eq!(parse_block(&text).diagnostics[0].code, Code::E0110);
        assert!(parse_program(&text).has_errors());
    }
    let long = format!("{}fp32{}", "[".repeat(3000), "]".repeat(3000));
    assert!(parse_dtype(&long).has_errors());
    // Long but flat statements are fine.
    let flat = format!("x = [{}]", "1.0, ".repeat(450));
    assert!(parse_block(&flat).diagnostics.is_empty());
}

#[test]
fn safe_fixes_produce_clean_programs() {
    let src = "E1 = step.Map(fn_sum).apply(E0)\nE2 = step.Accum(fn_acc, 1).apply(E1)\nE3 = step.Zip().apply(E1, E2)\nE4 = step.Map(fn=\"f\").apply([E3])\nE5 = step.Copy.apply(E4)\nreturn E5\n";
    let p = parse_program(src);
    assert!(p.has_errors());
    let fixed = diag::apply_fixes(src, &p.diagnostics, true);
    let again = parse_program(&fixed);
    assert!(
        again.diagnostics.is_empty(),
        "{fixed}\n{}",
        rendered(&fixed, &again)
    );
    assert_eq!(
        fixed,
        "E1 = step.Map(fn=fn_sum).apply(E0)\nE2 = step.Accum(fn=fn_acc, b=1).apply(E1)\nE3 = step.Zip().apply((E1, E2))\nE4 = step.Map(fn=f).apply((E3,))\nE5 = step.Copy().apply(E4)\nreturn E5\n"
    );
    // Unsafe fixes (did-you-mean) are applied only on request.
    let src = "E1 = step.Mapp(fn=f).apply(E0)\nE2 = step.Accum(fn=g, bb=1).apply(E1)\n";
    let p = parse_program(src);
    assert_eq!(diag::apply_fixes(src, &p.diagnostics, true), src);
    let fixed = diag::apply_fixes(src, &p.diagnostics, false);
    assert!(parse_program(&fixed).diagnostics.is_empty(), "{fixed}");
}
