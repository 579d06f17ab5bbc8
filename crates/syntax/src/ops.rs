//! The single table of STeP operators (DESIGN §4) and their keyword parameters, in positional
//! order. The parser uses it to name positional parameters and misspellings; the checker reuses
//! it so the two can never disagree about what an operator takes.

/// One operator: its name after `step.` and its parameters in positional order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    pub name: &'static str,
    pub params: &'static [&'static str],
}

pub const OPS: &[OpInfo] = &[
    OpInfo {
        name: "Map",
        params: &["fn"],
    },
    OpInfo {
        name: "Accum",
        params: &["fn", "b"],
    },
    OpInfo {
        name: "Scan",
        params: &["fn", "b"],
    },
    OpInfo {
        name: "Zip",
        params: &[],
    },
    OpInfo {
        name: "Copy",
        params: &[],
    },
    OpInfo {
        name: "Bufferize",
        params: &["a"],
    },
    OpInfo {
        name: "Streamify",
        params: &[],
    },
    OpInfo {
        name: "Promote",
        params: &["b"],
    },
    OpInfo {
        name: "Flatten",
        params: &["L"],
    },
    OpInfo {
        name: "Reshape",
        params: &["L", "S"],
    },
    OpInfo {
        name: "Repeat",
        params: &["n"],
    },
    OpInfo {
        name: "RepeatRef",
        params: &[],
    },
    OpInfo {
        name: "Partition",
        params: &["N"],
    },
    OpInfo {
        name: "Merge",
        params: &["fn"],
    },
];

/// The operator called exactly `name`.
pub fn lookup(name: &str) -> Option<&'static OpInfo> {
    OPS.iter().find(|o| o.name == name)
}

/// Every operator name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|o| o.name)
}

/// The closest of `candidates` to `word`, if it is close enough to be a plausible typo.
/// A case-insensitive exact match always wins (`map` → `Map`, `l` → `L`).
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if let Some(c) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(c);
    }
    let lw = word.to_ascii_lowercase();
    // Short names (the one-letter parameters) are compared by edit distance: one edit away and
    // not both a single letter (`a` for `b` is a different parameter, not a typo).
    if lw.len() <= 3 {
        return candidates.iter().copied().find(|c| {
            let lc = c.to_ascii_lowercase();
            lc.len().max(lw.len()) >= 2 && strsim::levenshtein(&lw, &lc) <= 1
        });
    }
    let mut best: Option<(f64, &'c str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&lw, &c.to_ascii_lowercase());
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    let (score, c) = best?;
    (score >= 0.8 && c.len() > 2).then_some(c)
}

/// Did-you-mean over operator names.
pub fn suggest_op(word: &str) -> Option<&'static str> {
    let names: Vec<&'static str> = names().collect();
    did_you_mean(word, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete() {
        assert_eq!(OPS.len(), 14);
        assert_eq!(lookup("Reshape").map(|o| o.params), Some(&["L", "S"][..]));
        assert!(lookup("map").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest_op("Mapp"), Some("Map"));
        assert_eq!(suggest_op("map"), Some("Map"));
        assert_eq!(suggest_op("Acum"), Some("Accum"));
        assert_eq!(suggest_op("Bufferise"), Some("Bufferize"));
        assert_eq!(suggest_op("Repeatref"), Some("RepeatRef"));
        assert_eq!(suggest_op("Conv2d"), None);
        assert_eq!(did_you_mean("bb", &["fn", "b"]), Some("b"));
        assert_eq!(did_you_mean("a", &["fn", "b"]), None);
        assert_eq!(did_you_mean("func", &["fn", "b"]), None);
        assert_eq!(did_you_mean("l", &["L", "S"]), Some("L"));
    }
}
