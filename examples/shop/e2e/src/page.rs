//! Just enough HTML reading for the plain-HTTP mode: tags with their
//! attributes, elements by id, and their text. Made for the BFF's simple,
//! well-formed markup, not for arbitrary pages.

use shop_http::html::unescape;

/// A start tag found in a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag {
    /// Lower-case tag name.
    pub(crate) name: String,
    /// Attributes, names lower-cased, values unescaped.
    pub(crate) attrs: Vec<(String, String)>,
    /// Byte offset of `<`.
    pub(crate) start: usize,
    /// Byte offset just after `>`.
    pub(crate) end: usize,
}

impl Tag {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Every start tag, in document order (comments and closing tags skipped).
pub(crate) fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(rel) = html.get(i..).and_then(|rest| rest.find('<')) {
        let start = i + rel;
        let name_len = bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if name_len == 0 || !bytes.get(start + 1).is_some_and(u8::is_ascii_alphabetic) {
            i = start + 1;
            continue;
        }
        // Find the closing `>`, ignoring any inside quoted values.
        let mut j = start + 1 + name_len;
        let mut quote: Option<u8> = None;
        while let Some(&b) = bytes.get(j) {
            match (quote, b) {
                (Some(q), b) if b == q => quote = None,
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        if j >= bytes.len() {
            break; // unterminated tag
        }
        // `<` and `>` are ASCII, so these offsets are char boundaries.
        let name = html[start + 1..start + 1 + name_len].to_ascii_lowercase();
        let attrs = parse_attrs(&html[start + 1 + name_len..j]);
        out.push(Tag {
            name,
            attrs,
            start,
            end: j + 1,
        });
        i = j + 1;
    }
    out
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/' || c == '>')
            .unwrap_or(rest.len());
        if name_end == 0 {
            rest = rest[1..].trim_start(); // a stray `/` or `=`
            continue;
        }
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after_eq[1..];
                    let close = body.find(q).unwrap_or(body.len());
                    value = unescape(&body[..close]);
                    rest = body.get(close + 1..).unwrap_or("");
                }
                _ => {
                    let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
                    value = unescape(&after_eq[..end]);
                    rest = &after_eq[end..];
                }
            }
        }
        attrs.push((name, value));
        rest = rest.trim_start();
    }
    attrs
}

/// The element with `id="<id>"`.
pub(crate) fn by_id<'a>(tags: &'a [Tag], id: &str) -> Option<&'a Tag> {
    tags.iter().find(|t| t.attr("id") == Some(id))
}

/// The text inside `tag`, up to its closing tag, with inner tags removed,
/// entities decoded and whitespace collapsed.
pub(crate) fn text(html: &str, tag: &Tag) -> String {
    let close = format!("</{}", tag.name);
    let inner = html.get(tag.end..).unwrap_or("");
    let inner = &inner[..inner.find(&close).unwrap_or(inner.len())];
    let mut plain = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    unescape(&plain).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the element with this id.
pub(crate) fn text_by_id(html: &str, tags: &[Tag], id: &str) -> Option<String> {
    by_id(tags, id).map(|t| text(html, t))
}

/// The tags between `outer` and its closing tag (first one found).
pub(crate) fn inside<'a>(html: &str, all: &'a [Tag], outer: &Tag) -> Vec<&'a Tag> {
    let close = format!("</{}", outer.name);
    let end = html
        .get(outer.end..)
        .and_then(|s| s.find(&close))
        .map(|i| outer.end + i)
        .unwrap_or(html.len());
    all.iter().filter(|t| t.start >= outer.end && t.start < end).collect()
}

/// A page's short, readable excerpt for failure messages.
pub(crate) fn excerpt(html: &str) -> String {
    let all = tags(html);
    let title = all
        .iter()
        .find(|t| t.name == "title")
        .map(|t| text(html, t))
        .unwrap_or_default();
    let main = all
        .iter()
        .find(|t| t.name == "main" || t.name == "body")
        .map(|t| text(html, t))
        .unwrap_or_default();
    let main: String = main.chars().take(300).collect();
    format!("page title: {title:?}; text: {main:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html><head><title>Products &middot; X</title></head><body>
<ul id="product-list" data-count="2">
<li><a id="product-p1" href="/products/p1">Espresso &amp; Beans</a> <span>$1</span></li>
<li><a id='product-p2' href=/products/p2 data-x="a>b">Mug</a></li>
</ul>
<form id="order-form" method="post" action="/orders"><input type="hidden" name="product_id" value="p1"><input id="quantity" name="quantity" required></form>
<footer>env: <span id="catalog-environment">staging</span></footer><!-- <a id="no"> --></body></html>"#;

    #[test]
    fn finds_tags_attributes_and_text() {
        let all = tags(PAGE);
        let list = by_id(&all, "product-list").unwrap();
        let links: Vec<_> = inside(PAGE, &all, list).into_iter().filter(|t| t.name == "a").collect();
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].attr("href"), Some("/products/p1"));
        assert_eq!(text(PAGE, links[0]), "Espresso & Beans");
        assert_eq!(links[1].attr("id"), Some("product-p2"));
        assert_eq!(links[1].attr("href"), Some("/products/p2"));
        assert_eq!(links[1].attr("data-x"), Some("a>b"));
        assert_eq!(
            text_by_id(PAGE, &all, "catalog-environment").as_deref(),
            Some("staging")
        );
        let form = by_id(&all, "order-form").unwrap();
        let inputs: Vec<_> = inside(PAGE, &all, form)
            .into_iter()
            .filter(|t| t.name == "input")
            .collect();
        assert_eq!(inputs[0].attr("value"), Some("p1"));
        assert_eq!(inputs[1].attr("required"), Some(""));
        assert!(excerpt(PAGE).contains("Products · X"));
    }

    #[test]
    fn survives_junk() {
        for junk in [
            "",
            "<",
            "<a",
            "<a href=\"x",
            "< a>",
            "<1>",
            "<a =x>",
            "<<>>",
            "<p>é</p><é>",
        ] {
            let all = tags(junk);
            for t in &all {
                let _ = text(junk, t);
            }
            let _ = excerpt(junk);
        }
    }
}
