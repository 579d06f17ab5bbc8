//! Operator documentation for hover and completion. Parameters come from the one op table
//! (`stepforge_syntax::ops`) and the prose (input, output type and shape rule, meaning,
//! example) from the op manual of `stepforge-driver` — the text the agent's prompt and the MCP
//! `manual` tool use — so the editors never show a second, drifting copy.

use stepforge_driver::op_doc;
use stepforge_syntax::ops;

/// `step.Op(k=…, …).apply(…)`: the signature line of an operator.
pub fn signature(op: &ops::OpInfo) -> String {
    let params: Vec<String> = op.params.iter().map(|p| format!("{p}=…")).collect();
    format!("step.{}({}).apply(…)", op.name, params.join(", "))
}

/// Markdown hover for the operator called `name`.
pub fn hover(name: &str) -> Option<String> {
    let op = ops::lookup(name)?;
    let d = op_doc(name)?;
    Some(format!(
        "```python\n{}\n```\n{}.\n\n- input: {}\n- output: {}\n\n```python\n{}\n```\n\nShapes are innermost first: `S = [s0, …, sr]`, rank r.",
        signature(op),
        d.meaning,
        d.input,
        d.output,
        d.example
    ))
}

/// One line for completion details.
pub fn summary(name: &str) -> Option<&'static str> {
    op_doc(name).map(|d| d.meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_a_hover() {
        for op in ops::OPS {
            let h = hover(op.name).unwrap_or_else(|| panic!("{} has no manual entry", op.name));
            assert!(h.contains(&format!("step.{}(", op.name)));
        }
        assert_eq!(
            signature(ops::lookup("Accum").unwrap()),
            "step.Accum(fn=…, b=…).apply(…)"
        );
    }
}
