//! Linearity (DESIGN §5) and the unused-value lints, on the lowerer's side tables.
//!
//! Linear resources are streams (used by name, as a list-literal element, or through the list
//! that owns them) and the slots of list literals. A resource used k > 1 times needs k-1 Copy
//! ops; when every use is a distinct name occurrence outside comprehensions, the diagnostic
//! carries a safe fix that inserts the Copy chain before the first use and renames each use.

use std::collections::BTreeSet;

use stepforge_syntax::codes::Code;
use stepforge_syntax::diag::{Applicability, Edit, Fix};
use stepforge_syntax::span::line_start_at;
use stepforge_syntax::{Diagnostic, Span};

use crate::lower::{Lowerer, UseRec};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Linearity {
    pub linear: bool,
    pub linear_compat: bool,
    pub copies_needed: usize,
}

fn compat_ok(uses: &[UseRec]) -> bool {
    let ret = uses.iter().filter(|u| u.ret).count();
    uses.len() - ret <= 1 && ret <= 1
}

/// Generates names that occur nowhere in the program or task.
struct Fresh<'a> {
    taken: &'a BTreeSet<String>,
    made: BTreeSet<String>,
}

impl Fresh<'_> {
    fn name(&mut self, base: &str, tag: &str, i: usize) -> String {
        let mut cand = format!("{base}_{tag}{i}");
        let mut k = 0;
        while self.taken.contains(&cand) || self.made.contains(&cand) {
            k += 1;
            cand = format!("{base}_{tag}{i}_{k}");
        }
        self.made.insert(cand.clone());
        cand
    }
}

/// The whitespace before `lo` on its line, if only whitespace precedes it.
fn indent_at(text: &str, lo: u32) -> Option<&str> {
    let lo = lo as usize;
    let head = text.get(..lo)?;
    let start = line_start_at(text, lo);
    let indent = head.get(start..)?;
    indent
        .chars()
        .all(|c| c == ' ' || c == '\t')
        .then_some(indent)
}

fn copy_fix(name: &str, uses: &[&UseRec], text: Option<&str>, fresh: &mut Fresh) -> Option<Fix> {
    let first = uses.first()?;
    let indent = match text {
        Some(t) => indent_at(t, first.stmt_lo)?,
        None => "",
    };
    let k = uses.len();
    let new_names: Vec<String> = (1..=k).map(|i| fresh.name(name, "", i)).collect();
    let mut lines = Vec::new();
    let mut cur = name.to_string();
    for i in 0..k - 1 {
        let left = new_names.get(i)?;
        let right = if i == k - 2 {
            new_names.get(k - 1)?.clone()
        } else {
            fresh.name(name, "t", i + 1)
        };
        lines.push(format!("{left}, {right} = step.Copy().apply({cur})"));
        cur = right;
    }
    let mut insertion = String::new();
    for l in &lines {
        insertion.push_str(l);
        insertion.push('\n');
        insertion.push_str(indent);
    }
    let mut edits = vec![Edit {
        span: Span::new(first.stmt_lo as usize, first.stmt_lo as usize),
        replacement: insertion,
    }];
    for (u, n) in uses.iter().zip(&new_names) {
        edits.push(Edit {
            span: u.span,
            replacement: n.clone(),
        });
    }
    Some(Fix {
        message: format!(
            "insert {} Copy op(s) before the first use and give each use its own copy",
            k - 1
        ),
        applicability: Applicability::Safe,
        edits,
    })
}

pub(crate) fn analyse(lw: &Lowerer, text: Option<&str>) -> (Linearity, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut lin = Linearity {
        linear: true,
        linear_compat: true,
        copies_needed: 0,
    };
    let mut fresh = Fresh {
        taken: &lw.names,
        made: BTreeSet::new(),
    };

    let reused_list = |l: Option<usize>| {
        l.and_then(|l| lw.lists.get(l))
            .is_some_and(|x| x.uses.len() > 1)
    };

    for s in &lw.streams {
        let k = s.uses.len();
        if k == 0 {
            continue;
        }
        if !compat_ok(&s.uses) {
            lin.linear_compat = false;
        }
        if k < 2 {
            continue;
        }
        lin.linear = false;
        lin.copies_needed += k - 1;
        if reused_list(s.owner) {
            continue;
        }
        let mut uses: Vec<&UseRec> = s.uses.iter().collect();
        uses.sort_by_key(|u| (u.span.lo, u.span.hi));
        let (Some(first), Some(second)) = (uses.first(), uses.get(1)) else {
            continue;
        };
        let rets = s.uses.iter().filter(|u| u.ret).count();
        let (code, message) = if k == 2 && rets == 1 {
            (
                Code::E0402,
                format!(
                    "{} is returned and also consumed by an op, but a stream can be read only once",
                    s.disp()
                ),
            )
        } else {
            (
                Code::E0401,
                format!(
                    "{} is consumed {k} times, but a stream can be read only once",
                    s.disp()
                ),
            )
        };
        let at = if second.span == first.span {
            first.span
        } else {
            second.span
        };
        let mut d = Diagnostic::new(code, message).at(at);
        if second.span != first.span {
            d = d.label(first.span, format!("{} first consumed here", s.disp()));
        } else {
            d = d.note("this use is inside a comprehension, so it happens once per element");
        }
        if let Some(def) = s.def_span {
            let dims =
                s.ty.as_ref()
                    .map(|t| format!(" with dims {}", t.dims_string()))
                    .unwrap_or_default();
            d = d.label(def, format!("{} defined here{dims}", s.disp()));
        }
        d = d.note(format!("copies needed: {}", k - 1));
        let name = s.name.as_deref().unwrap_or(s.disp());
        let help = if k == 2 {
            format!(
                "duplicate it with Copy: `{name}_1, {name}_2 = step.Copy().apply({name})`, then use each copy once"
            )
        } else {
            format!(
                "duplicate it with a chain of {} Copy ops and use each copy once",
                k - 1
            )
        };
        d = d.help(help);
        let renameable = s.owner.is_none() && uses.iter().all(|u| u.renameable);
        let distinct: BTreeSet<(u32, u32)> = uses.iter().map(|u| (u.span.lo, u.span.hi)).collect();
        if renameable
            && distinct.len() == k
            && let Some(fix) = copy_fix(name, &uses, text, &mut fresh)
        {
            d = d.fix(fix);
        }
        out.push(d);
    }

    for l in &lw.lists {
        if !compat_ok(&l.uses) {
            lin.linear_compat = false;
        }
        if l.uses.len() > 1 {
            lin.linear = false;
            let mut uses: Vec<&UseRec> = l.uses.iter().collect();
            uses.sort_by_key(|u| u.span.lo);
            if let (Some(first), Some(second)) = (uses.first(), uses.get(1)) {
                let mut d = Diagnostic::new(
                    Code::E0403,
                    format!(
                        "list {} is consumed {} times, but each of its {} streams can be read only once",
                        l.name,
                        l.uses.len(),
                        l.elems.len()
                    ),
                )
                .at(second.span)
                .label(l.def_span, format!("{} defined here", l.name))
                .note(format!(
                    "copies needed: {}",
                    l.elems.len() * (l.uses.len() - 1)
                ))
                .help("destructure the list into names (`a, b = ...`) and Copy the streams you need twice");
                if first.span != second.span {
                    d = d.label(first.span, format!("{} first consumed here", l.name));
                }
                out.push(d);
            }
        }
        if !l.literal {
            continue;
        }
        for (i, su) in l.slot_uses.iter().enumerate() {
            if !compat_ok(su) {
                lin.linear_compat = false;
            }
            if su.len() < 2 {
                continue;
            }
            lin.linear = false;
            lin.copies_needed += su.len() - 1;
            if l.uses.len() > 1 {
                continue;
            }
            if let Some(u) = su.first() {
                let elem = l
                    .elems
                    .get(i)
                    .and_then(|s| lw.streams.get(*s))
                    .map_or_else(|| format!("{}[{i}]", l.name), |s| s.disp().to_string());
                out.push(
                    Diagnostic::new(
                        Code::E0401,
                        format!(
                            "{elem} (element {i} of {}) is consumed {} times, but a stream can be read only once",
                            l.name,
                            su.len()
                        ),
                    )
                    .at(u.span)
                    .label(l.def_span, format!("{} defined here", l.name))
                    .note("the uses come from a comprehension body that names its variable more than once")
                    .help("Copy the element before putting it into the list, and use one copy per consumer"),
                );
            }
        }
    }
    (lin, out)
}

/// Streams and list slots nobody consumes; functions never used.
pub(crate) fn unused(lw: &Lowerer) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in &lw.streams {
        if !s.uses.is_empty() || s.owner.is_some() || s.ty.is_none() {
            continue;
        }
        let mut d = Diagnostic::new(
            Code::W0401,
            format!(
                "{} is never consumed; its FIFO would fill and stall its producer",
                s.disp()
            ),
        );
        match s.def_span {
            Some(sp) => d = d.at(sp),
            None => {
                d.message = format!("task input {} is never consumed", s.disp());
            }
        }
        out.push(d.help("consume it, return it, or don't produce it"));
    }
    for l in &lw.lists {
        let unused: usize = if l.literal {
            l.slot_uses.iter().filter(|u| u.is_empty()).count()
        } else {
            l.elems
                .iter()
                .filter(|&&s| {
                    lw.streams
                        .get(s)
                        .is_some_and(|st| st.uses.is_empty() && st.ty.is_some())
                })
                .count()
        };
        if unused == 0 {
            continue;
        }
        let message = if l.uses.is_empty() {
            format!("list {} is never consumed", l.name)
        } else {
            format!(
                "{unused} of the {} streams of list {} are never consumed",
                l.elems.len(),
                l.name
            )
        };
        out.push(
            Diagnostic::new(Code::W0401, message)
                .at(l.def_span)
                .help("consume every stream, e.g. with a comprehension or Merge"),
        );
    }
    for (i, used) in lw.fn_used.iter().enumerate() {
        if *used {
            continue;
        }
        let Some(Some(f)) = lw.te.fns.get(i) else {
            continue;
        };
        let mut d = Diagnostic::new(
            Code::W0202,
            format!(
                "element function {} ({} -> {}) is never used",
                f.name, f.input, f.output
            ),
        );
        if lw.same_source {
            d = d.at(f.span);
        } else if let Some(at) = lw.te.fn_decl_at.get(i) {
            d = d.note(format!("{} is declared at {at}", f.name));
        }
        out.push(d);
    }
    out
}
