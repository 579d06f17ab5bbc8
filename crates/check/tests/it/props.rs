//! Property tests over generated well-typed programs (see `gen.rs`).

use proptest::prelude::*;
use stepforge_syntax::Span;
use stepforge_syntax::ast::{Arg, KwValue, Rhs};
use stepforge_syntax::diag::apply_fixes;

use crate::common::*;
use crate::generator::{Rng, generate};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_programs_check_clean(seed in any::<u64>(), steps in 1usize..14) {
        let g = generate(seed, steps);
        let task = load_task_text("gen.yaml", &g.task_yaml);
        let (src, out) = stepforge_check::check_answer(&task, &g.program);
        prop_assert!(out.diagnostics.is_empty(), "{}\n{}\n{}", g.task_yaml, g.program, render_all(&src, &out.diagnostics));
        prop_assert!(out.ok && out.is_linear() && out.linear_compat.unwrap_or(false));
        let graph = out.graph.expect("well-typed");
        prop_assert!(graph.is_linear());
        prop_assert_eq!(graph.topo_order().len(), graph.op_count());
    }

    #[test]
    fn removing_copies_then_fixing_restores_a_linear_program(seed in any::<u64>(), steps in 1usize..14) {
        let g = generate(seed, steps);
        let task = load_task_text("gen.yaml", &g.task_yaml);
        let program = stepforge_syntax::parse_answer(&g.program).ok().unwrap();
        let removed = count_copies(&program);
        let stripped = strip_copies(&program);
        let text = stepforge_syntax::print::program(&stripped);
        let (src, out) = stepforge_check::check_answer(&task, &text);
        prop_assert!(out.well_typed(), "{}\n{}", text, render_all(&src, &out.diagnostics));
        // Each Copy split one stream into two uses: removing it leaves one extra use.
        prop_assert_eq!(out.copies_needed, removed, "{}", text);
        prop_assert_eq!(out.is_linear(), removed == 0);
        let fixed = apply_fixes(&text, &out.diagnostics, true);
        let (src2, out2) = stepforge_check::check_answer(&task, &fixed);
        prop_assert!(out2.ok && out2.is_linear() && out2.linear_compat.unwrap_or(false), "{}\n{}", fixed, render_all(&src2, &out2.diagnostics));
        prop_assert!(out2.diagnostics.is_empty(), "{}\n{}", fixed, render_all(&src2, &out2.diagnostics));
        let p2 = stepforge_syntax::parse_answer(&fixed).ok().unwrap();
        prop_assert_eq!(count_copies(&p2), out.copies_needed);
    }

    #[test]
    fn single_edits_never_panic_and_stay_in_bounds(seed in any::<u64>(), steps in 1usize..12, edit_seed in any::<u64>()) {
        let g = generate(seed, steps);
        let task = load_task_text("gen.yaml", &g.task_yaml);
        let text = mutate(&g.program, &task, edit_seed);
        let (_, out) = stepforge_check::check_answer(&task, &text);
        let len = text.len() as u32;
        let inside = |s: Span| s.lo <= s.hi && s.hi <= len;
        for d in &out.diagnostics {
            for s in d.spans() {
                prop_assert!(inside(s), "{:?}\n{}", d, text);
            }
        }
        if out.ok {
            prop_assert!(out.graph.is_some());
        }
    }
}

/// One random edit: swap an operand for another name, change an integer parameter, swap the
/// operator, or swap the function.
fn mutate(program: &str, task: &stepforge_task::Task, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let Some(p) = stepforge_syntax::parse_answer(program).ok() else {
        return program.to_string();
    };
    let mut operands: Vec<Span> = Vec::new();
    let mut ints: Vec<Span> = Vec::new();
    let mut opnames: Vec<Span> = Vec::new();
    let mut fnames: Vec<Span> = Vec::new();
    let mut names: Vec<String> = task.inputs.iter().map(|i| i.name.name.clone()).collect();
    fn args(a: &Arg, out: &mut Vec<Span>) {
        match a {
            Arg::Name(id) => out.push(id.span),
            Arg::Tuple(v, _) => v.iter().for_each(|x| args(x, out)),
        }
    }
    fn kw(v: &KwValue, key: &str, ints: &mut Vec<Span>, fnames: &mut Vec<Span>) {
        match v {
            KwValue::Int(_, s) => ints.push(*s),
            KwValue::Name(id) if key == "fn" => fnames.push(id.span),
            KwValue::List(xs, _) | KwValue::Tuple(xs, _) => {
                xs.iter().for_each(|x| kw(x, key, ints, fnames))
            }
            KwValue::Name(_) => {}
        }
    }
    for s in &p.stmts {
        names.extend(s.targets.iter().map(|t| t.name.clone()));
        let call = match &s.rhs {
            Rhs::Op(c) => Some(c),
            Rhs::Comp(c) => Some(&c.body),
            Rhs::List(ids, _) => {
                operands.extend(ids.iter().map(|i| i.span));
                None
            }
        };
        if let Some(c) = call {
            args(&c.arg, &mut operands);
            opnames.push(c.op.span);
            for k in &c.kwargs {
                kw(&k.value, &k.key.name, &mut ints, &mut fnames);
            }
        }
    }
    operands.extend(p.ret.values.iter().map(|v| v.span));
    let fns: Vec<String> = task.fns.iter().map(|f| f.func_name.name.clone()).collect();
    let ops = [
        "Map",
        "Accum",
        "Scan",
        "Zip",
        "Copy",
        "Bufferize",
        "Streamify",
        "Promote",
        "Flatten",
        "Reshape",
        "Repeat",
        "RepeatRef",
        "Partition",
        "Merge",
    ];
    let (span, repl) = match rng.below(4) {
        0 if !operands.is_empty() => (*rng.pick(&operands), rng.pick(&names).clone()),
        1 if !ints.is_empty() => (*rng.pick(&ints), (rng.below(7) as i64 - 1).to_string()),
        2 if !opnames.is_empty() => (*rng.pick(&opnames), rng.pick(&ops[..]).to_string()),
        3 if !fnames.is_empty() && !fns.is_empty() => (*rng.pick(&fnames), rng.pick(&fns).clone()),
        _ => return program.to_string(),
    };
    let mut out = program.to_string();
    out.replace_range(span.range(), &repl);
    out
}
