//! `#{namespace.NAME}` references inside strings, resolved just before an
//! action starts (as CodePipeline resolves its variables).
//!
//! The syntax, decided here once for every caller:
//!
//! - `#{namespace.NAME}` is a reference. `namespace` is 1 to 100 of
//!   `A-Z a-z 0-9 @ _ -` and `NAME` is 1 to 128 of the same characters; the
//!   first `.` separates them, so a name holds no dot.
//! - `##{` is a literal `#{`. This is the escape for commands that need the
//!   characters themselves, such as Ruby's `"#{x}"` string interpolation.
//! - Any other `#{` is a syntax error: an unterminated `#{`, `#{}`, `#{NAME}`
//!   without a namespace, or characters outside the sets above. Refusing them
//!   (instead of passing them through) catches typos such as
//!   `#{Source_CommitId}` at validation time instead of at run time.
//! - A `#` not followed by `{` is an ordinary character.
//!
//! Resolved values are inserted as they are; they are never scanned again, so
//! a value holding `#{...}` cannot inject another reference.

use std::fmt;

/// One `#{namespace.NAME}` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{{{}.{}}}", self.namespace, self.name)
    }
}

/// Why a string could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The string is not well-formed (see the module documentation).
    #[error("{0}")]
    Syntax(String),
    /// The lookup knows no value for this reference.
    #[error("unresolved variable {0}")]
    Unresolved(VarRef),
}

/// A piece of a parsed string.
enum Piece<'s> {
    Text(&'s str),
    Ref(VarRef),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-')
}

/// Splits `s` into literal text and references.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("#{") {
        // `##{` is the escape: keep one `#{` and go on after it.
        if at > 0 && rest.as_bytes()[at - 1] == b'#' {
            out.push(Piece::Text(&rest[..at - 1]));
            out.push(Piece::Text("#{"));
            rest = &rest[at + 2..];
            continue;
        }
        out.push(Piece::Text(&rest[..at]));
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else {
            // Quote only the start of the reference: the string may be a long
            // multi-line command.
            let start: String = after.chars().take(20).take_while(|&c| c != '\n').collect();
            return Err(format!(
                "unterminated `#{{{start}`: a reference is `#{{namespace.NAME}}`, and `##{{` is a literal `#{{`"
            ));
        };
        let inner = &after[..close];
        out.push(Piece::Ref(parse_ref(inner)?));
        rest = &after[close + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

fn parse_ref(inner: &str) -> Result<VarRef, String> {
    let bad = || {
        format!(
            "`#{{{inner}}}` is not a variable reference: expected `#{{namespace.NAME}}` (letters, digits, @, _ and -), or `##{{` for a literal `#{{`"
        )
    };
    let (namespace, name) = inner.split_once('.').ok_or_else(bad)?;
    let valid = |part: &str, max: usize| {
        !part.is_empty() && part.chars().count() <= max && part.chars().all(is_name_char)
    };
    if !valid(namespace, 100) || !valid(name, 128) {
        return Err(bad());
    }
    Ok(VarRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Every reference in `s`, in order (repeats included); a syntax error as a
/// message.
pub fn references(s: &str) -> Result<Vec<VarRef>, String> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Replaces every reference in `s` with `lookup`'s value for it, and every
/// `##{` with `#{`. Fails on the first reference `lookup` does not know.
pub fn resolve(
    s: &str,
    lookup: impl Fn(&VarRef) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(s.len());
    for piece in pieces(s).map_err(TemplateError::Syntax)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Ref(r) => match lookup(&r) {
                Some(value) => out.push_str(&value),
                None => return Err(TemplateError::Unresolved(r)),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(namespace: &str, name: &str) -> VarRef {
        VarRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn finds_references_in_order() {
        assert_eq!(
            references("docker push #{variables.REGISTRY}/x:#{Source.CommitId} #{Source.CommitId}"),
            Ok(vec![
                r("variables", "REGISTRY"),
                r("Source", "CommitId"),
                r("Source", "CommitId")
            ])
        );
        assert_eq!(references("no refs, # and { and } alone"), Ok(vec![]));
        assert_eq!(references(""), Ok(vec![]));
    }

    #[test]
    fn double_hash_is_a_literal() {
        assert_eq!(references(r###"ruby -e 'puts "##{1+1}"'"###), Ok(vec![]));
        assert_eq!(
            resolve(r###"ruby -e 'puts "##{1+1}"' #{a.b}"###, |_| Some(
                "X".into()
            )),
            Ok(r###"ruby -e 'puts "#{1+1}"' X"###.to_owned())
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "#{", "x #{a.b", "#{}", "#{NAME}", "#{.x}", "#{a.}", "#{a.b.c}", "#{a b.c}", "#{1+1}",
            "#{é.x}",
        ] {
            assert!(references(bad).is_err(), "{bad:?} was accepted");
            assert!(
                matches!(resolve(bad, |_| None), Err(TemplateError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            references("echo #{Source"),
            Err("unterminated `#{Source`: a reference is `#{namespace.NAME}`, and `##{` is a literal `#{`".to_owned())
        );
    }

    #[test]
    fn resolves_and_names_the_missing_reference() {
        let lookup = |v: &VarRef| (v.namespace == "Source").then(|| format!("<{}>", v.name));
        assert_eq!(
            resolve("a #{Source.CommitId} b", lookup),
            Ok("a <CommitId> b".to_owned())
        );
        let err = resolve("tag #{Build.IMAGE_TAG}", lookup).unwrap_err();
        assert_eq!(err, TemplateError::Unresolved(r("Build", "IMAGE_TAG")));
        assert_eq!(err.to_string(), "unresolved variable #{Build.IMAGE_TAG}");
    }

    #[test]
    fn values_are_not_rescanned() {
        assert_eq!(
            resolve("#{a.b}", |_| Some("#{c.d}".into())),
            Ok("#{c.d}".to_owned())
        );
    }

    #[test]
    fn multibyte_text_around_references() {
        assert_eq!(
            resolve("été #{a.b} ✓", |_| Some("→".into())),
            Ok("été → ✓".to_owned())
        );
    }
}
