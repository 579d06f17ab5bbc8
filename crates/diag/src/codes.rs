//! The registry of stable diagnostic codes.
//!
//! A code, once shipped, keeps its meaning forever: agents and tests key on it. Each code has a
//! default severity, a one-line title and a long explanation (`explain/CODE.md`, printed by
//! `stepforge explain`) with a wrong and a right example. Adding a code means adding a line to the
//! table below and its explanation file; the tests check that every code has one.
//!
//! Ranges: E01xx lexing/parsing, E02xx names, E03xx types and shapes, E04xx linearity, E05xx task
//! files, E06xx evaluation, E07xx limits, E08xx simulation; Wxxxx warnings.

use std::fmt;

use crate::diag::Severity;

macro_rules! codes {
    ($($code:ident : $sev:ident, $title:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($code,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$code,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$code => stringify!($code),)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$code => Severity::$sev,)* }
            }

            /// One line saying what the code is about.
            pub fn title(self) -> &'static str {
                match self { $(Code::$code => $title,)* }
            }

            /// The long explanation with a wrong and a right example (Markdown).
            pub fn explanation(self) -> &'static str {
                match self {
                    $(Code::$code => include_str!(concat!("../explain/", stringify!($code), ".md")),)*
                }
            }

            pub fn parse(s: &str) -> Option<Code> {
                let s = s.trim().to_ascii_uppercase();
                Code::ALL.iter().copied().find(|c| c.as_str() == s)
            }
        }
    };
}

codes! {
    // --- E01xx: lexing and parsing -------------------------------------------------------
    E0101: Error, "unexpected character";
    E0102: Error, "unterminated string literal";
    E0103: Error, "tabs and spaces mixed in indentation";
    E0104: Error, "unexpected indentation";
    E0110: Error, "unexpected token";
    E0111: Error, "unexpected end of input (unclosed bracket or unfinished statement)";
    E0112: Error, "unknown STeP operator";
    E0113: Error, "operator parameter passed positionally";
    E0114: Error, "missing `.apply(...)` after an operator";
    E0115: Error, "unknown operator parameter";
    E0116: Error, "program has no `return`";
    E0117: Error, "construct not allowed in a STeP program";
    E0118: Error, "no program found in the answer";
    E0119: Error, "malformed dtype";
    E0120: Error, "malformed dimension";
    // --- E02xx: names ---------------------------------------------------------------------
    E0201: Error, "undefined name";
    E0202: Error, "unknown element function";
    E0203: Error, "wrong kind of name (stream, list or function)";
    E0204: Error, "wrong number of names bound";
    E0205: Error, "malformed comprehension";
    E0206: Error, "unknown dimension symbol";
    // --- E03xx: types, shapes, parameters ------------------------------------------------
    E0301: Error, "wrong kind of element function (stateless vs reducer)";
    E0302: Error, "element type does not match the function's input type";
    E0303: Error, "parameter out of range for the stream's rank";
    E0304: Error, "invalid parameter value";
    E0305: Error, "operand shapes do not match";
    E0306: Error, "Streamify of a stream that does not carry buffers";
    E0307: Error, "element type not allowed for this operator";
    E0308: Error, "Reshape dimension not divisible";
    E0309: Error, "wrong number of operands";
    E0310: Error, "wrong number of returned streams";
    E0311: Error, "returned stream does not match the task's output";
    E0312: Error, "missing or malformed operator parameter";
    E0313: Error, "branch count does not match the selector";
    E0314: Error, "dimension too large";
    E0315: Error, "invalid type in the task's declarations";
    // --- E04xx: linearity ----------------------------------------------------------------
    E0401: Error, "stream consumed more than once";
    E0402: Error, "stream both consumed and returned";
    E0403: Error, "list consumed more than once";
    // --- E05xx: task files ---------------------------------------------------------------
    E0501: Error, "task file is not valid YAML";
    E0502: Error, "required task field missing";
    E0503: Error, "task field has the wrong type";
    E0504: Error, "bad dimension list";
    E0505: Error, "unknown data generator";
    E0506: Error, "duplicate name in task";
    E0507: Error, "bad reducer init value";
    E0508: Error, "task file too large";
    E0509: Error, "dimension has no value";
    E0510: Error, "bad Multihot hot-bit range";
    E0511: Error, "bad dimension value";
    E0512: Error, "wrong number of reference snippets";
    // --- E06xx: evaluation ---------------------------------------------------------------
    E0601: Error, "evaluation error";
    E0602: Error, "unsupported name or method";
    E0603: Error, "element function returned the wrong shape or arity";
    E0610: Error, "output shape differs from the reference";
    E0611: Error, "output values differ from the reference";
    E0612: Error, "stream operator failed at run time";
    // --- E07xx: limits -------------------------------------------------------------------
    E0701: Error, "tensor too large";
    E0702: Error, "evaluation fuel exhausted";
    E0703: Error, "live stream memory limit exceeded";
    E0704: Error, "too many ops";
    E0705: Error, "verification time limit exceeded";
    // --- E08xx: simulation ---------------------------------------------------------------
    E0801: Error, "deadlock on bounded FIFOs";
    E0802: Error, "program cannot be simulated";
    E0803: Error, "simulation failed at run time";
    // --- warnings ------------------------------------------------------------------------
    W0101: Warning, "several programs in the answer (the last one is checked)";
    W0201: Warning, "name rebound";
    W0202: Warning, "element function never used";
    W0401: Warning, "stream never consumed";
    W0501: Warning, "unknown task field (ignored)";
    W0801: Warning, "copied stream rejoins after a reduction: deadlocks on shallow FIFOs";
}

/// Which phase a code belongs to: the range its number is in (see the module docs). Callers
/// classify diagnostics with this instead of matching on code prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// E01xx: lexing, parsing, answer extraction, dtype and dim syntax.
    Syntax,
    /// E02xx: names.
    Names,
    /// E03xx: types, shapes, parameters.
    Types,
    /// E04xx: linearity.
    Linearity,
    /// E05xx: task files.
    Task,
    /// E06xx: evaluation and comparison with the reference.
    Eval,
    /// E07xx: resource limits.
    Limit,
    /// E08xx: simulation.
    Sim,
    /// Wxxxx: every warning, whatever it is about.
    Warning,
}

impl Code {
    pub fn phase(self) -> Phase {
        let s = self.as_str();
        if s.starts_with('W') {
            return Phase::Warning;
        }
        match s.get(1..3) {
            Some("01") => Phase::Syntax,
            Some("02") => Phase::Names,
            Some("03") => Phase::Types,
            Some("04") => Phase::Linearity,
            Some("05") => Phase::Task,
            Some("06") => Phase::Eval,
            Some("07") => Phase::Limit,
            // E08xx; the registry has no other range (`phases_cover_every_code` checks).
            _ => Phase::Sim,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_real_explanation() {
        for c in Code::ALL {
            let text = c.explanation();
            assert!(
                text.starts_with(&format!("# {}", c.as_str())),
                "{c}: heading"
            );
            assert!(text.contains("Wrong"), "{c}: needs a wrong example");
            assert!(text.contains("Right"), "{c}: needs a right example");
            assert_eq!(Code::parse(c.as_str()), Some(*c));
        }
    }

    #[test]
    fn ranges_match_severity() {
        for c in Code::ALL {
            let warn = c.phase() == Phase::Warning;
            assert_eq!(c.severity() == Severity::Warning, warn, "{c}");
        }
    }

    #[test]
    fn phases_cover_every_code() {
        for c in Code::ALL {
            let s = c.as_str();
            let ok =
                s.starts_with('W') || (s.starts_with('E') && ("01"..="08").contains(&&s[1..3]));
            assert!(ok, "{c}: outside every phase range");
        }
        assert_eq!(Code::E0110.phase(), Phase::Syntax);
        assert_eq!(Code::E0206.phase(), Phase::Names);
        assert_eq!(Code::E0315.phase(), Phase::Types);
        assert_eq!(Code::E0401.phase(), Phase::Linearity);
        assert_eq!(Code::E0512.phase(), Phase::Task);
        assert_eq!(Code::E0611.phase(), Phase::Eval);
        assert_eq!(Code::E0705.phase(), Phase::Limit);
        assert_eq!(Code::W0401.phase(), Phase::Warning);
    }
}
