//! The one capability table for model quirks. Reasoning models reject `temperature`, take
//! `max_completion_tokens` and a `developer` system role; some local reasoning models wrap their
//! thoughts in `<think>` tags inside the content, which [`strip_thinking`] removes.

/// What a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Accepts a sampling temperature.
    pub temperature: bool,
    /// The name of the output-length field (OpenAI API).
    pub max_tokens_field: &'static str,
    /// Role of the system prompt (OpenAI API).
    pub system_role: &'static str,
}

const DEFAULT: Caps = Caps {
    temperature: true,
    max_tokens_field: "max_tokens",
    system_role: "system",
};

const REASONING: Caps = Caps {
    temperature: false,
    max_tokens_field: "max_completion_tokens",
    system_role: "developer",
};

/// Model-name prefixes (after any `vendor/` path) and their capabilities; first match wins.
const TABLE: &[(&str, Caps)] = &[
    ("o1", REASONING),
    ("o3", REASONING),
    ("o4", REASONING),
    ("gpt-5", REASONING),
    (
        "deepseek-reasoner",
        Caps {
            temperature: false,
            max_tokens_field: "max_tokens",
            system_role: "system",
        },
    ),
];

/// The capabilities of `model`.
pub fn lookup(model: &str) -> Caps {
    let base = model.rsplit('/').next().unwrap_or(model);
    TABLE
        .iter()
        .find(|(p, _)| base.starts_with(p))
        .map_or(DEFAULT, |(_, c)| *c)
}

/// Removes `<think>…</think>` sections (an unclosed one drops the rest).
pub fn strip_thinking(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("<think>") {
        out.push_str(&rest[..i]);
        match rest[i..].find("</think>") {
            Some(j) => rest = &rest[i + j + "</think>".len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert!(lookup("gpt-4o-mini").temperature);
        assert!(!lookup("o1-preview").temperature);
        assert!(!lookup("openai/gpt-5-mini").temperature);
        assert!(!lookup("deepseek-reasoner").temperature);
        assert_eq!(strip_thinking("a<think>x</think>b<think>y"), "ab");
    }
}
