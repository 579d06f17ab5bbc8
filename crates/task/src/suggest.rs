//! "Did you mean" for misspelled field names and data generators.
//!
//! Kept apart from [`stepforge_syntax::ops::did_you_mean`], which is tuned for operator and
//! parameter names (one-letter parameters, Jaro–Winkler): this one scales an edit distance to
//! the key's length and also matches keys that differ only in `_`, `-` or `.` (`datagen` →
//! `data_gen`). Merging the two would change suggestions.

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
}
