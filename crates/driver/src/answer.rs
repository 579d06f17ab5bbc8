//! The program inside a raw LLM answer (a fenced block, a YAML `impl:` entry, or bare text),
//! as clean program text: what the agent stores, shows as a demonstration and exports.

/// The program of `answer`, dedented; `None` when the answer holds no program at all.
pub fn answer_program(answer: &str) -> Option<String> {
    let x = stepforge_syntax::answer::extract(answer).ok()?;
    let p = x.program(answer);
    let ind = p
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(p.len());
    for l in p.lines() {
        out.push_str(l.get(ind..).unwrap_or(l.trim_start()));
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn extracts_yaml_and_fences() {
        let a = "Here you go:\n```yaml\nimpl: |\n  Y = step.Streamify().apply(X)\n  return Y\n```\nDone.";
        assert_eq!(
            answer_program(a).unwrap(),
            "Y = step.Streamify().apply(X)\nreturn Y\n"
        );
        assert!(answer_program("").is_none());
    }
}
