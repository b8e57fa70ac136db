//! `application/x-www-form-urlencoded`: what a browser's `<form method=post>`
//! sends (WHATWG URL §5), and percent-encoding for building such bodies.

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`). A `%`
/// not followed by two hex digits stays as it is, as browsers do; bytes that
/// are not UTF-8 become U+FFFD.
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => {
                let hex = input.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| {
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
                }) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a form body into `(name, value)` pairs, in order. Empty pieces
/// (`a=1&&b=2`) are skipped; a piece without `=` has an empty value.
pub fn parse(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (
                percent_decode(&piece[..eq], true),
                percent_decode(&piece[eq + 1..], true),
            ),
            None => (percent_decode(piece, true), String::new()),
        })
        .collect()
}

/// The first value named `name`.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Percent-encodes `s` for a form body: unreserved characters stay, a space
/// becomes `+`, everything else `%XX`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Encodes pairs as a form body.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_plus_and_bad_sequences() {
        assert_eq!(percent_decode(b"a%20b+c", true), "a b c");
        assert_eq!(percent_decode(b"a%20b+c", false), "a b+c");
        assert_eq!(percent_decode(b"%C3%A9%e2%82%ac", true), "é€");
        assert_eq!(percent_decode(b"100%", true), "100%");
        assert_eq!(percent_decode(b"%zz%4", true), "%zz%4");
        assert_eq!(percent_decode(b"%+1", true), "% 1");
        assert_eq!(percent_decode(b"%FF", true), "\u{fffd}");
    }

    #[test]
    fn parses_form_bodies() {
        let pairs = parse(b"product_id=p1&quantity=2&&note=hello+world%21&flag&=x");
        assert_eq!(
            pairs,
            vec![
                ("product_id".to_string(), "p1".to_string()),
                ("quantity".to_string(), "2".to_string()),
                ("note".to_string(), "hello world!".to_string()),
                ("flag".to_string(), String::new()),
                (String::new(), "x".to_string()),
            ]
        );
        assert_eq!(get(&pairs, "quantity"), Some("2"));
        assert_eq!(get(&pairs, "nope"), None);
        assert!(parse(b"").is_empty());
    }

    #[test]
    fn encoding_round_trips() {
        let body = encode(&[("product_id", "p1"), ("note", "a b&c=d/é")]);
        assert_eq!(body, "product_id=p1&note=a+b%26c%3Dd%2F%C3%A9");
        let pairs = parse(body.as_bytes());
        assert_eq!(get(&pairs, "note"), Some("a b&c=d/é"));
    }
}
