use std::collections::BTreeMap;
use std::path::PathBuf;

use stepforge_syntax::Source;
use stepforge_syntax::ast::{Arg, CompIter, Ident, Program, Rhs};
use stepforge_task::Task;

pub fn tasks_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/tasks")
}

pub fn load_task_text(name: &str, text: &str) -> Task {
    let loaded = stepforge_task::load_str(name, text);
    let errs: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.render_short(&loaded.source))
        .collect();
    assert!(errs.is_empty(), "{name}: {errs:#?}");
    loaded.task.unwrap()
}

pub fn load_task(path: &std::path::Path) -> Task {
    load_task_text(
        &path.display().to_string(),
        &std::fs::read_to_string(path).unwrap(),
    )
}

pub fn render_all(src: &Source, diags: &[stepforge_syntax::Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.render_short(src))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn count_copies(p: &Program) -> usize {
    p.stmts
        .iter()
        .filter(|s| matches!(&s.rhs, Rhs::Op(c) if c.op.name == "Copy"))
        .count()
}

/// Removes every `a, b = step.Copy().apply(x)` and renames later uses of `a` and `b` back to
/// `x`: the program an author would write before making it linear.
pub fn strip_copies(p: &Program) -> Program {
    let mut alias: BTreeMap<String, String> = BTreeMap::new();
    let resolve = |alias: &BTreeMap<String, String>, n: &str| {
        let mut cur = n.to_string();
        while let Some(next) = alias.get(&cur) {
            cur = next.clone();
        }
        cur
    };
    fn rename_arg(a: &mut Arg, f: &dyn Fn(&str) -> String) {
        match a {
            Arg::Name(id) => id.name = f(&id.name),
            Arg::Tuple(v, _) => v.iter_mut().for_each(|x| rename_arg(x, f)),
        }
    }
    let mut out = p.clone();
    out.stmts.clear();
    for s in &p.stmts {
        if let Rhs::Op(c) = &s.rhs
            && c.op.name == "Copy"
            && let Arg::Name(src) = &c.arg
        {
            let src = resolve(&alias, &src.name);
            for t in &s.targets {
                alias.insert(t.name.clone(), src.clone());
            }
            continue;
        }
        let mut s2 = s.clone();
        let f = |n: &str| resolve(&alias, n);
        match &mut s2.rhs {
            Rhs::Op(c) => rename_arg(&mut c.arg, &f),
            Rhs::List(ids, _) => ids.iter_mut().for_each(|i: &mut Ident| i.name = f(&i.name)),
            Rhs::Comp(c) => {
                rename_arg(&mut c.body.arg, &f);
                match &mut c.iter {
                    CompIter::Name(i) => i.name = f(&i.name),
                    CompIter::Zip(v, _) => v.iter_mut().for_each(|i| i.name = f(&i.name)),
                }
            }
        }
        out.stmts.push(s2);
    }
    for v in &mut out.ret.values {
        v.name = resolve(&alias, &v.name);
    }
    out
}
