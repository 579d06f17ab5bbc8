//! "Did you mean" for misspelled field names and data generators.

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|&c| (strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase()), c))
        .filter(|&(d, c)| d > 0 && d <= (c.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
        .or_else(|| {
            // `datagen` vs `data_gen`, `funcname` vs `func_name`.
            let squash = |s: &str| s.replace(['_', '-', '.'], "").to_ascii_lowercase();
            let sw = squash(word);
            candidates
                .iter()
                .copied()
                .find(|c| *c != word && squash(c) == sw)
        })
}

/// Whether `s` is a Python-style identifier (what programs can refer to).
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_found_and_strangers_are_not() {
        let known = ["name", "dtype", "dims", "data_gen"];
        assert_eq!(did_you_mean("dtyp", &known), Some("dtype"));
        assert_eq!(did_you_mean("datagen", &known), Some("data_gen"));
        assert_eq!(did_you_mean("Dims", &known), Some("dims"));
        assert_eq!(did_you_mean("description", &known), None);
        assert_eq!(did_you_mean("dims", &known), None);
    }

    #[test]
    fn identifiers() {
        assert!(is_ident("E0"));
        assert!(is_ident("_x1"));
        assert!(!is_ident("1x"));
        assert!(!is_ident("a b"));
        assert!(!is_ident(""));
    }
}
