//! A generator of random well-typed programs with a synthetic task to go with them.
//!
//! It builds programs forward from the operator rules of DESIGN §4, written out here
//! independently of the checker: a pool of unconsumed streams with their types; each step picks
//! an operator that applies to some pool streams, consumes them and adds its results. Functions
//! are declared on demand with exactly the signature their use needs. Composite steps build
//! RepeatRef (via Copy + Repeat) and Partition/Merge (selector from a gate Map, lists,
//! destructuring, comprehensions over a list or over `zip(streams, fns)`). At the end every
//! pool stream is returned, so the program is linear and every stream is consumed.

use stepforge_ir::{Dim, DimEnv, ElemType, StreamType};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

struct FnDef {
    name: String,
    input: ElemType,
    output: ElemType,
    reducer: bool,
}

pub struct Generated {
    pub task_yaml: String,
    pub program: String,
}

struct Gen {
    rng: Rng,
    env: DimEnv,
    pool: Vec<(String, StreamType)>,
    lines: Vec<String>,
    inputs: Vec<(String, StreamType)>,
    fns: Vec<FnDef>,
    next: usize,
}

fn d(s: &str) -> Dim {
    s.parse::<i64>()
        .map(Dim::lit)
        .unwrap_or_else(|_| Dim::sym(s))
}

fn dims_eq(a: &[Dim], b: &[Dim], env: &DimEnv) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x == y
                || (x.eval(env).is_some()
                    && x.eval(env) == y.eval(env)
                    && (x.as_int().is_some() || y.as_int().is_some()))
        })
}

impl Gen {
    fn fresh(&mut self, p: &str) -> String {
        self.next += 1;
        format!("{p}{}", self.next)
    }

    fn func(&mut self, input: ElemType, output: ElemType, reducer: bool) -> String {
        let name = self.fresh("f");
        self.fns.push(FnDef {
            name: name.clone(),
            input,
            output,
            reducer,
        });
        name
    }

    fn take(&mut self, pred: impl Fn(&StreamType) -> bool) -> Option<(String, StreamType)> {
        let idx: Vec<usize> = (0..self.pool.len())
            .filter(|&i| pred(&self.pool[i].1))
            .collect();
        if idx.is_empty() {
            return None;
        }
        let i = *self.rng.pick(&idx);
        Some(self.pool.remove(i))
    }

    /// Two streams of equal dims; when the first has no partner it goes back into the pool.
    fn take_pair(&mut self) -> Option<((String, StreamType), (String, StreamType))> {
        let (a, ta) = self.take(|_| true)?;
        let env = self.env.clone();
        let Some(b) = self.take(|t| dims_eq(&t.dims, &ta.dims, &env)) else {
            self.push(a, ta);
            return None;
        };
        Some(((a, ta), b))
    }

    fn emit(&mut self, targets: &[&str], op: &str, arg: &str) {
        self.lines
            .push(format!("{} = step.{op}.apply({arg})", targets.join(", ")));
    }

    fn push(&mut self, name: String, t: StreamType) {
        self.pool.push((name, t));
    }

    fn out_elem(&mut self, input: &ElemType) -> ElemType {
        match self.rng.below(3) {
            0 => input.clone(),
            1 => ElemType::Fp32,
            _ => ElemType::buffer(&ElemType::Fp32, &[d("D")]).unwrap_or(ElemType::Fp32),
        }
    }

    fn step(&mut self) {
        match self.rng.below(15) {
            0 | 1 => {
                let Some((x, t)) = self.take(|_| true) else {
                    return;
                };
                let out = self.out_elem(&t.elem);
                let f = self.func(t.elem.clone(), out.clone(), false);
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Map(fn={f})"), &x);
                self.push(y, StreamType::new(out, t.dims));
            }
            2 => {
                let Some(((a, ta), (b, tb))) = self.take_pair() else {
                    return;
                };
                let f = self.func(
                    ElemType::tuple(vec![ta.elem.clone(), tb.elem.clone()]),
                    ElemType::Fp32,
                    false,
                );
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Map(fn={f})"), &format!("({a}, {b})"));
                self.push(y, StreamType::new(ElemType::Fp32, ta.dims));
            }
            3 | 4 => {
                let Some((x, t)) = self.take(|t| t.rank() >= 1) else {
                    return;
                };
                let b = 1 + self.rng.below(t.rank());
                let f = self.func(t.elem.clone(), t.elem.clone(), true);
                let y = self.fresh("s");
                let scan = self.rng.chance(40);
                let op = if scan { "Scan" } else { "Accum" };
                self.emit(&[&y], &format!("{op}(fn={f}, b={b})"), &x);
                let dims = if scan {
                    t.dims.clone()
                } else {
                    t.dims[b..].to_vec()
                };
                self.push(y, StreamType::new(t.elem, dims));
            }
            5 => {
                let Some(((a, ta), (b, tb))) = self.take_pair() else {
                    return;
                };
                let y = self.fresh("s");
                self.emit(&[&y], "Zip()", &format!("({a}, {b})"));
                self.push(
                    y,
                    StreamType::new(ElemType::tuple(vec![ta.elem, tb.elem]), ta.dims),
                );
            }
            6 => {
                let Some((x, t)) = self.take(|_| true) else {
                    return;
                };
                let (y, z) = (self.fresh("s"), self.fresh("s"));
                self.emit(&[&y, &z], "Copy()", &x);
                self.push(y, t.clone());
                self.push(z, t);
            }
            7 => {
                let Some((x, t)) = self.take(|t| t.rank() >= 1 && !t.elem.is_tuple()) else {
                    return;
                };
                let a = 1 + self.rng.below(t.rank());
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Bufferize(a={a})"), &x);
                let elem = ElemType::buffer(&t.elem, &t.dims[..a]).unwrap_or(ElemType::Fp32);
                self.push(y, StreamType::new(elem, t.dims[a..].to_vec()));
            }
            8 => {
                let Some((x, t)) = self.take(|t| t.elem.is_buffer()) else {
                    return;
                };
                let ElemType::Buffer { elem, dims } = t.elem else {
                    return;
                };
                let y = self.fresh("s");
                self.emit(&[&y], "Streamify()", &x);
                let mut all = dims;
                all.extend(t.dims);
                self.push(y, StreamType::new(elem.to_elem(), all));
            }
            9 => {
                let Some((x, t)) = self.take(|t| t.dims.len() < 5) else {
                    return;
                };
                let b = self.rng.below(t.rank() + 2);
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Promote(b={b})"), &x);
                let mut dims = t.dims[..b].to_vec();
                dims.push(Dim::ONE);
                dims.extend(t.dims[b..].iter().cloned());
                self.push(y, StreamType::new(t.elem, dims));
            }
            10 => {
                let Some((x, t)) = self.take(|t| t.rank() >= 1) else {
                    return;
                };
                let l0 = 1 + self.rng.below(t.rank());
                let l1 = l0 + self.rng.below(t.rank() - l0 + 1);
                let l: Vec<String> = (l0..=l1).map(|i| i.to_string()).collect();
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Flatten(L=[{}])", l.join(", ")), &x);
                let mut m = t.dims[l0 - 1].clone();
                for dd in &t.dims[l0..=l1] {
                    m = m.mul(dd).unwrap_or(Dim::ONE);
                }
                let mut dims = t.dims[..l0 - 1].to_vec();
                dims.push(m);
                dims.extend(t.dims[l1 + 1..].iter().cloned());
                self.push(y, StreamType::new(t.elem, dims));
            }
            11 => {
                let env = self.env.clone();
                let even = |dd: &Dim| dd.eval(&env).is_some_and(|v| v % 2 == 0 && v > 0);
                let Some((x, t)) = self.take(|t| t.dims.len() < 5 && t.dims.iter().any(even))
                else {
                    return;
                };
                let cand: Vec<usize> = (0..t.dims.len()).filter(|&i| even(&t.dims[i])).collect();
                let i = *self.rng.pick(&cand);
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Reshape(L=[{i}], S=2)"), &x);
                let mut dims = Vec::new();
                for (j, dd) in t.dims.iter().enumerate() {
                    if j == i {
                        dims.push(Dim::lit(2));
                        dims.push(dd.div(&Dim::lit(2)).unwrap_or(Dim::ONE));
                    } else {
                        dims.push(dd.clone());
                    }
                }
                self.push(y, StreamType::new(t.elem, dims));
            }
            12 => {
                let Some((x, t)) = self.take(|t| t.dims.len() < 5) else {
                    return;
                };
                let n = self.rng.pick(&["2", "K", "M_value"][..]).to_string();
                let y = self.fresh("s");
                self.emit(&[&y], &format!("Repeat(n={n})"), &x);
                let mut dims = vec![d(n.trim_end_matches("_value"))];
                dims.extend(t.dims);
                self.push(y, StreamType::new(t.elem, dims));
            }
            13 => {
                let Some((x, t)) = self.take(|t| t.dims.len() < 5) else {
                    return;
                };
                let (x1, x2, r, y) = (
                    self.fresh("s"),
                    self.fresh("s"),
                    self.fresh("s"),
                    self.fresh("s"),
                );
                self.emit(&[&x1, &x2], "Copy()", &x);
                self.emit(&[&r], "Repeat(n=N)", &x2);
                self.emit(&[&y], "RepeatRef()", &format!("({x1}, {r})"));
                let mut dims = vec![d("N")];
                dims.extend(t.dims.iter().cloned());
                self.push(y, StreamType::new(t.elem, dims));
            }
            _ => self.partition_merge(),
        }
    }

    fn partition_merge(&mut self) {
        let Some((x, t)) = self.take(|_| true) else {
            return;
        };
        let r = t.rank();
        let (x1, x2) = (self.fresh("s"), self.fresh("s"));
        self.emit(&[&x1, &x2], "Copy()", &x);
        let g0 = if r >= 1 {
            let f = self.func(t.elem.clone(), t.elem.clone(), true);
            let g = self.fresh("s");
            self.emit(&[&g], &format!("Accum(fn={f}, b={r})"), &x2);
            g
        } else {
            x2
        };
        let gate = self.func(t.elem.clone(), ElemType::Multihot(d("E")), false);
        let sel = self.fresh("sel");
        self.emit(&[&sel], &format!("Map(fn={gate})"), &g0);
        let (sa, sb) = (self.fresh("sel"), self.fresh("sel"));
        self.emit(&[&sa, &sb], "Copy()", &sel);
        let u = self.out_elem(&t.elem);
        let fa = self.func(t.elem.clone(), u.clone(), false);
        let n = if self.rng.chance(50) { "E" } else { "2" };
        let ps = self.fresh("ps");
        let ys = self.fresh("ys");
        let merge_arg = match self.rng.below(4) {
            0 => {
                // Destructured, one Map per branch, inline branch tuple.
                let fb = self.func(t.elem.clone(), u.clone(), false);
                let (p0, p1, y0, y1) = (
                    self.fresh("p"),
                    self.fresh("p"),
                    self.fresh("y"),
                    self.fresh("y"),
                );
                self.emit(
                    &[&p0, &p1],
                    &format!("Partition(N={n})"),
                    &format!("({x1}, {sa})"),
                );
                self.emit(&[&y0], &format!("Map(fn={fa})"), &p0);
                self.emit(&[&y1], &format!("Map(fn={fb})"), &p1);
                format!("(({y0}, {y1}), {sb})")
            }
            1 => {
                // Destructured, list literal, comprehension over zip with a list of fns.
                let fb = self.func(t.elem.clone(), u.clone(), false);
                let (p0, p1, fs) = (self.fresh("p"), self.fresh("p"), self.fresh("fs"));
                self.emit(
                    &[&p0, &p1],
                    &format!("Partition(N={n})"),
                    &format!("({x1}, {sa})"),
                );
                self.lines.push(format!("{ps} = [{p0}, {p1}]"));
                self.lines.push(format!("{fs} = [{fa}, {fb}]"));
                self.lines.push(format!(
                    "{ys} = [step.Map(fn=f).apply(p) for p, f in zip({ps}, {fs})]"
                ));
                format!("({ys}, {sb})")
            }
            2 => {
                // A list-valued Partition and a comprehension over it.
                self.emit(
                    &[&ps],
                    &format!("Partition(N={n})"),
                    &format!("({x1}, {sa})"),
                );
                self.lines
                    .push(format!("{ys} = [step.Map(fn={fa}).apply(p) for p in {ps}]"));
                format!("({ys}, {sb})")
            }
            _ => {
                let fb = self.func(t.elem.clone(), u.clone(), false);
                let fs = self.fresh("fs");
                self.emit(
                    &[&ps],
                    &format!("Partition(N={n})"),
                    &format!("({x1}, {sa})"),
                );
                self.lines.push(format!("{fs} = [{fa}, {fb}]"));
                self.lines.push(format!(
                    "{ys} = [step.Map(fn=g).apply(q) for q, g in zip({ps}, {fs})]"
                ));
                format!("({ys}, {sb})")
            }
        };
        let mg = self.func(u.clone(), u.clone(), true);
        let m = self.fresh("m");
        self.emit(&[&m], &format!("Merge(fn={mg})"), &merge_arg);
        self.push(m, StreamType::new(u, t.dims));
    }

    fn input(&mut self, i: usize) {
        let syms = ["D", "N", "M", "K", "2", "4"];
        let len = 1 + self.rng.below(4);
        let dims: Vec<Dim> = (0..len)
            .map(|_| {
                let s: &&str = self.rng.pick(&syms[..]);
                d(s)
            })
            .collect();
        let elem = match self.rng.below(10) {
            0 | 1 => ElemType::buffer(&ElemType::Fp32, &[d("D")]).unwrap_or(ElemType::Fp32),
            2 => ElemType::Multihot(d("E")),
            _ => ElemType::Fp32,
        };
        let t = StreamType::new(elem, dims);
        let name = format!("X{i}");
        self.inputs.push((name.clone(), t.clone()));
        self.pool.push((name, t));
    }
}

fn dims_yaml(dims: &[Dim]) -> String {
    let v: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", v.join(", "))
}

/// A random well-typed program with `steps` generation steps, and its task.
pub fn generate(seed: u64, steps: usize) -> Generated {
    let env = DimEnv::from_statics([("M", 5), ("N", 7), ("K", 9), ("D", 16), ("E", 2)]);
    let mut g = Gen {
        rng: Rng::new(seed),
        env,
        pool: Vec::new(),
        lines: Vec::new(),
        inputs: Vec::new(),
        fns: Vec::new(),
        next: 0,
    };
    let n_inputs = 1 + g.rng.below(3);
    for i in 0..n_inputs {
        g.input(i);
    }
    for _ in 0..steps {
        g.step();
    }
    let rets: Vec<(String, StreamType)> = std::mem::take(&mut g.pool);
    let names: Vec<&str> = rets.iter().map(|(n, _)| n.as_str()).collect();
    let mut program = g.lines.join("\n");
    if !program.is_empty() {
        program.push('\n');
    }
    program.push_str(&format!("return {}\n", names.join(", ")));

    let mut y = String::from(
        "test_name: generated\nglobal: |\n  E_value = 2\n  ctx[E] = E_value\ninputs:\n",
    );
    for (n, t) in &g.inputs {
        y.push_str(&format!(
            "  - name: {n}\n    dtype: \"{}\"\n    dims: {}\n    data_gen: torch.randn\n",
            t.elem,
            dims_yaml(&t.dims)
        ));
        if matches!(t.elem, ElemType::Multihot(_)) {
            y.push_str("    min: 1\n    max: 1\n");
        }
    }
    y.push_str("fns:\n");
    for f in &g.fns {
        y.push_str(&format!(
            "  - name: {0}\n    func_name: {0}\n    apply: |\n      return [input[0]]\n    input_dtype: \"{1}\"\n    output_dtype: \"{2}\"\n",
            f.name, f.input, f.output
        ));
        if f.reducer {
            let zeros: Vec<&str> = (0..f.output.arity()).map(|_| "0").collect();
            y.push_str(&format!("    init: [{}]\n", zeros.join(", ")));
        }
    }
    if g.fns.is_empty() {
        y.push_str("  []\n");
    }
    y.push_str("outputs:\n");
    for (i, (_, t)) in rets.iter().enumerate() {
        y.push_str(&format!(
            "  - name: O{i}\n    dtype: \"{}\"\n    dims: {}\n    data_transform:\n",
            t.elem,
            dims_yaml(&t.dims)
        ));
        for _ in 0..t.elem.arity() {
            y.push_str("      - \"0\"\n");
        }
    }
    Generated {
        task_yaml: y,
        program,
    }
}
