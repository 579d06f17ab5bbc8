//! Robustness: no input makes the loader (or the steps after it) panic, and every diagnostic
//! span lies within the text. Also: spans of embedded code in the sample tasks are exact.

use proptest::prelude::*;
use stepforge_syntax::{Diagnostic, Source};
use stepforge_task::{GenLimits, check_dims, dim_values, generate, load_str, parse_impl};

use crate::workspace_root;

fn assert_in_bounds(d: &Diagnostic, source: &Source) {
    let len = source.text.len() as u32;
    for s in d.spans() {
        assert!(
            s.lo <= s.hi && s.hi <= len,
            "{s:?} outside a text of {len} bytes: {d:?}"
        );
    }
}

/// Loads `text` and runs everything downstream of loading on what comes out.
fn exercise(text: &str) {
    let loaded = load_str("fuzz.yaml", text);
    for d in &loaded.diagnostics {
        assert_in_bounds(d, &loaded.source);
    }
    if loaded.task.is_none() {
        assert!(
            loaded.has_errors(),
            "no task but no error: {:?}",
            loaded.diagnostics
        );
    }
    let Some(task) = &loaded.task else { return };
    for d in parse_impl(task).diagnostics {
        assert_in_bounds(&d, &loaded.source);
    }
    let Ok(dims) = dim_values(task, &[]) else {
        return;
    };
    for d in check_dims(task, &dims) {
        assert_in_bounds(&d, &loaded.source);
    }
    let limits = GenLimits {
        max_tensor_elements: 1 << 16,
        max_total_elements: 1 << 16,
        max_total_bytes: 1 << 18,
    };
    if let Err(d) = generate(task, &dims, 7, &limits) {
        assert_in_bounds(&d, &loaded.source);
    }
}

const TOKENS: &[&str] = &[
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "  ",
    "\t",
    "- ",
    "-",
    ": ",
    ":",
    "#",
    "|",
    "|-",
    ">",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: ",
    "---",
    "...",
    "!!str ",
    "?",
    "%YAML 1.2",
    "test_name",
    "global",
    "inputs",
    "parameters",
    "fns",
    "outputs",
    "impl",
    "tolerance",
    "name",
    "dtype",
    "dims",
    "data_gen",
    "min",
    "max",
    "func_name",
    "apply",
    "init",
    "input_dtype",
    "output_dtype",
    "data_transform",
    "rtol",
    "atol",
    "fp32",
    "fp23",
    "Multihot(fp32, E)",
    "Buffer(fp32, [D, N])",
    "M",
    "N",
    "E",
    "M*N",
    "K/0",
    "0",
    "-1",
    "1e999",
    ".inf",
    "-.inf",
    "null",
    "true",
    "torch.randn",
    "binary",
    "E0",
    "é",
    "return [input[0] + 1]",
    "x = (",
    "state[0]",
    "input_data['E0'].sum(-1)",
    "step.Map(fn=f).apply(E0)",
    "return S",
    "E_value = 3",
    "ctx[E] = E_value",
    "\\n",
    "\\t",
    "\r\n",
];

const GOOD: &str = "\
test_name: t
global: |
  E_value = 3
  ctx[E] = E_value
inputs:
  - name: E0
    dtype: fp32
    dims: [N, M]
    data_gen: torch.randn
  - name: S
    dtype: Multihot(fp32, E)
    dims: [M]
    min: 1
    max: 2
parameters:
  - {name: W, dtype: fp32, dims: [D, N], data_gen: torch.rand}
fns:
  - name: sum
    func_name: fn_sum
    apply: |
      return [state[0] + input[0]]
    init: [0]
    input_dtype: fp32
    output_dtype: fp32
outputs:
  - name: out
    dtype: \"[fp32, fp32]\"
    dims: [M]
    data_transform:
      - input_data['E0'].sum(-1)
      - \"input_data['E0'].sum(-1) * 2\"
tolerance: {rtol: 0.001, atol: 0.001}
impl: |
  S1 = step.Accum(fn=fn_sum, b=1).apply(E0)
  return S1
";

fn bases() -> Vec<String> {
    let mut out = vec![GOOD.to_owned()];
    if let Ok(entries) = std::fs::read_dir(workspace_root().join("tests/tasks")) {
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t = text.to_owned();
    for e in edits {
        let snap = |i: usize, t: &str| {
            let mut i = i % (t.len() + 1);
            while !t.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match *e {
            Edit::Delete(at, n) => {
                let lo = snap(at, &t);
                let hi = snap(lo + n % 8, &t).max(lo);
                t.replace_range(lo..hi, "");
            }
            Edit::Insert(at, s) => {
                let at = snap(at, &t);
                t.insert_str(at, s);
            }
        }
    }
    t
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(a, s)| Edit::Insert(a, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups_never_panic(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        exercise(&tokens.concat());
    }

    #[test]
    fn mutated_tasks_never_panic(
        base in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let bases = bases();
        let chosen: &String = base.get(bases.as_slice());
        let text = apply(chosen, &edits);
        exercise(&text);
    }
}

#[test]
fn the_unmutated_base_is_clean() {
    let loaded = load_str("good.yaml", GOOD);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
}

/// Every statement of every embedded body in the sample tasks slices, from the task file, to
/// text that occurs in the decoded YAML value: the blanking trick gives exact spans.
#[test]
fn embedded_spans_in_samples_are_exact() {
    let mut checked = 0;
    for text in bases() {
        let loaded = load_str("sample.yaml", &text);
        let task = loaded.task.unwrap();
        let src = &task.source;
        let mut blocks: Vec<&stepforge_syntax::ast::Block> =
            task.fns.iter().map(|f| &f.body).collect();
        blocks.extend(task.outputs.iter().flat_map(|o| &o.transforms));
        blocks.extend(&task.global);
        for b in blocks {
            for s in &b.stmts {
                let slice = src.slice(s.span);
                assert!(!slice.is_empty() && slice.trim() == slice, "{:?}", slice);
                assert!(!slice.contains('\n') || slice.lines().count() > 1);
                checked += 1;
            }
        }
        for i in &task.inputs {
            assert_eq!(src.slice(i.name.span), i.name.name);
            for d in &i.dims {
                assert!(!src.slice(d.span()).is_empty());
            }
            assert!(src.slice(i.dtype.span()).starts_with(['f', 'M', 'B', '[']));
        }
        if let Some(p) = parse_impl(&task).value {
            assert_eq!(
                src.slice(p.ret.span).split_whitespace().next(),
                Some("return")
            );
        }
    }
    assert!(checked > 10);
}
