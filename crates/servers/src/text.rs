//! Positions: our spans are byte offsets, LSP positions are (line, UTF-16 code unit) pairs.
//! [`LineIndex`] converts both ways and never panics on out-of-range input (it clamps).

/// Line starts of one text, for offset ↔ position conversion.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

/// A zero-based line and UTF-16 column (the LSP `Position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub character: u32,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// Byte offset of the start of zero-based `line` (clamped to the text).
    pub fn line_start(&self, line: usize) -> usize {
        self.starts.get(line).copied().unwrap_or(self.len)
    }

    /// The position of byte `offset` in `text` (clamped; inside a character it rounds down).
    pub fn position(&self, text: &str, offset: usize) -> Pos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_start(line).min(offset);
        let character: usize = text[start..offset].chars().map(char::len_utf16).sum();
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    /// The byte offset of `pos` in `text`. A column past the end of its line clamps to the end
    /// of the line (before its newline); a line past the end clamps to the end of the text; a
    /// column inside a surrogate pair rounds down to the character.
    pub fn offset(&self, text: &str, pos: Pos) -> usize {
        let line = pos.line as usize;
        if line >= self.starts.len() {
            return text.len();
        }
        let start = self.line_start(line);
        let end = self
            .starts
            .get(line + 1)
            .map_or(text.len(), |n| n.saturating_sub(1));
        let mut units = 0usize;
        for (i, ch) in text.get(start..end).unwrap_or("").char_indices() {
            let next = units + ch.len_utf16();
            if next > pos.character as usize {
                return start + i;
            }
            units = next;
        }
        end.max(start)
    }
}

/// The identifier (`[A-Za-z0-9_]+`) around byte `offset`, with its byte range.
pub fn word_at(text: &str, offset: usize) -> Option<(std::ops::Range<usize>, &str)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let offset = offset.min(text.len());
    if !text.is_char_boundary(offset) {
        return None;
    }
    let lo = text[..offset]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_word(*c))
        .last()
        .map_or(offset, |(i, _)| i);
    let hi = text[offset..]
        .char_indices()
        .find(|(_, c)| !is_word(*c))
        .map_or(text.len(), |(i, _)| offset + i);
    (hi > lo).then(|| (lo..hi, &text[lo..hi]))
}

/// A `file://` URI for `path` (absolute when it can be made so), percent-encoding everything
/// but unreserved characters and `/`.
pub fn file_uri(path: &std::path::Path) -> String {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut s = String::from("file://");
    for b in abs.display().to_string().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The path of a `file://` URI (`file:///a%20b` → `/a b`); `None` for other schemes or bad
/// escapes.
pub fn uri_path(uri: &str) -> Option<std::path::PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file://localhost/x` names the same file as `file:///x`.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = rest.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_round_trip() {
        // 'é' is 2 bytes / 1 unit; '😀' is 4 bytes / 2 units.
        let text = "ab\né😀x = 1\n";
        let li = LineIndex::new(text);
        let x = text.find('x').unwrap_or(0);
        let p = li.position(text, x);
        assert_eq!(
            p,
            Pos {
                line: 1,
                character: 3
            }
        );
        assert_eq!(li.offset(text, p), x);
        // Past the end of a line clamps before its newline.
        assert_eq!(
            li.offset(
                text,
                Pos {
                    line: 0,
                    character: 99
                }
            ),
            2
        );
        // Past the last line clamps to the end.
        assert_eq!(
            li.offset(
                text,
                Pos {
                    line: 9,
                    character: 0
                }
            ),
            text.len()
        );
        // Inside the surrogate pair: rounds down to the emoji.
        assert_eq!(
            li.offset(
                text,
                Pos {
                    line: 1,
                    character: 2
                }
            ),
            5
        );
    }

    #[test]
    fn words() {
        let t = "Y = step.Map(fn=fn_rms).apply(Xb)";
        assert_eq!(word_at(t, 10).map(|w| w.1), Some("Map"));
        assert_eq!(word_at(t, 16).map(|w| w.1), Some("fn_rms"));
        assert_eq!(word_at(t, 1), Some((0..1, "Y")));
        assert_eq!(word_at(t, 3), None);
    }

    #[test]
    fn uris_round_trip() {
        let p = std::path::Path::new("/no/such dir/t\u{e9}.yaml");
        let u = file_uri(p);
        assert_eq!(u, "file:///no/such%20dir/t%C3%A9.yaml");
        assert_eq!(uri_path(&u).as_deref(), Some(p));
        assert_eq!(uri_path("http://x/y"), None);
        assert_eq!(uri_path("file:///a%zz"), None);
    }
}
