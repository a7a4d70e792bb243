//! Word splitting, quoting and C escapes as systemd's `extract_first_word()` with
//! `EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE` and `cunescape()` do them, and the inverse used
//! by the writer.

/// Why a word or an escape could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeError {
    /// A backslash followed by something that is not a valid C escape.
    BadEscape(String),
    /// A quote that is never closed, or a backslash at the end of the line.
    Unterminated,
    /// The decoded text is not UTF-8 (only possible with `\xHH` / octal escapes >= 0x80).
    NotUtf8,
}

impl std::fmt::Display for EscapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EscapeError::BadEscape(s) => write!(f, "invalid escape sequence `\\{s}`"),
            EscapeError::Unterminated => write!(f, "unterminated quote or trailing backslash"),
            EscapeError::NotUtf8 => write!(f, "escaped text is not valid UTF-8"),
        }
    }
}

fn hex(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// Decode one escape; `s` starts right after the backslash. Returns the bytes and how many
/// bytes of `s` were consumed. NUL is never accepted (as systemd without `accept_nul`).
pub fn unescape_one(s: &[u8]) -> Result<(Vec<u8>, usize), EscapeError> {
    let bad = || EscapeError::BadEscape(String::from_utf8_lossy(&s[..s.len().min(9)]).into_owned());
    let Some(&c) = s.first() else {
        return Err(EscapeError::Unterminated);
    };
    let simple = |b: u8| Ok((vec![b], 1));
    match c {
        b'a' => simple(7),
        b'b' => simple(8),
        b'f' => simple(12),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(11),
        b'\\' | b'"' | b'\'' => simple(c),
        b's' => simple(b' '),
        b'x' => {
            let (a, b) = (
                s.get(1).and_then(|&x| hex(x)),
                s.get(2).and_then(|&x| hex(x)),
            );
            match (a, b) {
                (Some(a), Some(b)) if a | b != 0 => Ok((vec![(a << 4 | b) as u8], 3)),
                _ => Err(bad()),
            }
        }
        b'u' | b'U' => {
            let n = if c == b'u' { 4 } else { 8 };
            if s.len() < n + 1 {
                return Err(bad());
            }
            let mut v: u32 = 0;
            for &d in &s[1..=n] {
                v = v.checked_mul(16).ok_or_else(bad)? + hex(d).ok_or_else(bad)?;
            }
            match char::from_u32(v) {
                Some(ch) if v != 0 => Ok((ch.to_string().into_bytes(), n + 1)),
                _ => Err(bad()),
            }
        }
        b'0'..=b'7' => {
            let d = |i: usize| s.get(i).and_then(|&x| (x as char).to_digit(8));
            match (d(0), d(1), d(2)) {
                (Some(a), Some(b), Some(c)) if a <= 3 && (a | b | c) != 0 => {
                    Ok((vec![(a << 6 | b << 3 | c) as u8], 3))
                }
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// `cunescape()`: decode every backslash escape in `s`.
pub fn unescape(s: &str) -> Result<Vec<u8>, EscapeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (bytes, n) = unescape_one(&b[i + 1..])?;
            out.extend_from_slice(&bytes);
            i += 1 + n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Whitespace as systemd's `WHITESPACE`.
pub fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Extract the first word of `s` (leading whitespace skipped), unquoting and unescaping.
/// Returns `None` when only whitespace is left, else the word and the rest of the input
/// after the word and the whitespace that follows it.
pub fn extract_word(s: &str) -> Result<Option<(String, &str)>, EscapeError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    if i == b.len() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            let (bytes, n) = unescape_one(&b[i + 1..])?;
            out.extend_from_slice(&bytes);
            i += 1 + n;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if is_ws(c) => break,
            None => out.push(c),
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(EscapeError::Unterminated);
    }
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    let word = String::from_utf8(out).map_err(|_| EscapeError::NotUtf8)?;
    Ok(Some((word, &s[i..])))
}

/// Quote a field so that [`extract_word`] gives it back unchanged. Plain words stay as they
/// are; anything else is double-quoted with C escapes.
pub fn quote_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'\\'));
    if plain {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for ch in s.chars() {
        push_escaped(&mut out, ch, true);
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, ch: char, in_quotes: bool) {
    match ch {
        '\\' => out.push_str("\\\\"),
        '"' if in_quotes => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c => out.push(c),
    }
}

/// Escape bytes for an argument field of a type that `cunescape()`s its argument (f, w, L,
/// C): the result, unescaped, gives `data` back. Leading whitespace, `-` alone and `%` are
/// protected too (`%` becomes `%%` unless `specifiers` is false).
pub fn escape_argument(data: &[u8], specifiers: bool) -> String {
    let mut out = String::new();
    let text = String::from_utf8_lossy(data);
    let exact = text.as_bytes() == data;
    if exact {
        for (idx, ch) in text.chars().enumerate() {
            match ch {
                ' ' if idx == 0 => out.push_str("\\x20"),
                '%' if specifiers => out.push_str("%%"),
                c => push_escaped(&mut out, c, false),
            }
        }
    } else {
        for &b in data {
            if b.is_ascii_graphic() && b != b'\\' && b != b'%' {
                out.push(b as char);
            } else if b == b'%' && specifiers {
                out.push_str("%%");
            } else if b == b'%' {
                out.push('%');
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    if out == "-" {
        out = "\\x2d".into();
    }
    // Trailing whitespace would be stripped with the line.
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\x20");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        let mut rest = s;
        while let Some((w, r)) = extract_word(rest).unwrap() {
            v.push(w);
            rest = r;
        }
        v
    }

    #[test]
    fn splitting() {
        assert_eq!(words("  a  b\t c "), ["a", "b", "c"]);
        assert_eq!(words("\"a b\" 'c d'e"), ["a b", "c de"]);
        assert_eq!(words("a\\x20b \"\\n\""), ["a b", "\n"]);
        assert_eq!(words("\"\""), [""]);
        assert!(extract_word("\"abc").is_err());
        assert!(extract_word("a\\q").is_err());
        assert!(extract_word("a\\x00").is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(
            unescape("\\101\\x41\\u00e9\\U0001F600\\s").unwrap(),
            "AAé😀 ".as_bytes()
        );
        assert!(unescape("\\400").is_err());
        assert!(unescape("\\").is_err());
        for s in [
            "",
            "-",
            " lead",
            "a b",
            "tab\there",
            "50%",
            "back\\slash",
            "\"q\"",
        ] {
            assert_eq!(
                unescape(&escape_argument(s.as_bytes(), false)).unwrap(),
                s.as_bytes()
            );
            let w = quote_word(s);
            assert_eq!(words(&w), [s], "{w}");
        }
    }
}
