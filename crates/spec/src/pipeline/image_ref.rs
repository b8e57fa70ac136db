//! The shapes of the image names `image` and `promote` actions write:
//! repositories and tags as the OCI distribution spec defines them, and
//! registries as `host[:port]`. Values may hold `#{...}`, resolved only when
//! the action starts, so callers check them with every reference replaced by
//! a stand-in ([`with_stand_ins`]): what is written around the references
//! must fit, whatever the references turn into.

use crate::template;

/// `text` with every `#{...}` replaced by `x` (valid in every part of an
/// image name); `None` when `text` is not a valid template, which is
/// reported on its own.
pub(super) fn with_stand_ins(text: &str) -> Option<String> {
    template::resolve(text, |_| Some("x".to_owned())).ok()
}

/// A repository: `/`-separated components of `[a-z0-9]` runs joined by `.`,
/// `_`, `__` or dashes; at most 255 characters.
pub(super) fn check_repository(repository: &str) -> Result<(), String> {
    let expected = "lowercase letters and digits in `/`-separated parts, joined inside a part by `.`, `_`, `__` or `-` (such as shop/catalog)";
    if repository.is_empty() || repository.len() > 255 {
        return Err(format!("use 1 to 255 characters: {expected}"));
    }
    let component_ok = |component: &str| {
        let starts_and_ends = component.starts_with(alnum) && component.ends_with(alnum);
        let mut separator = String::new();
        for c in component.chars() {
            if alnum(c) {
                let valid = separator.is_empty()
                    || separator == "."
                    || separator == "_"
                    || separator == "__"
                    || separator.chars().all(|s| s == '-');
                if !valid {
                    return false;
                }
                separator.clear();
            } else if matches!(c, '.' | '_' | '-') {
                separator.push(c);
            } else {
                return false;
            }
        }
        starts_and_ends
    };
    if repository.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(expected.to_owned())
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(super) fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err("use 1 to 128 characters from A-Z a-z 0-9 _ . -, not starting with . or -".to_owned())
    }
}

/// A registry: a host name or IP address, and an optional port.
pub(super) fn check_registry(registry: &str) -> Result<(), String> {
    let expected = || {
        "write a host and an optional port, such as 127.0.0.1:7701 or registry.example.com"
            .to_owned()
    };
    let (host, port) = match registry.rsplit_once(':') {
        // A bracketed IPv6 address without a port has colons only inside.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(expected());
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && label.ends_with(|c: char| c.is_ascii_alphanumeric())
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if host_ok { Ok(()) } else { Err(expected()) }
}

/// An image reference (`base`): anything without spaces; the registry that
/// serves it judges the rest.
pub(super) fn check_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() || reference.contains(char::is_whitespace) {
        Err(
            "write an image reference such as debian:bookworm-slim or registry/repository@sha256:…"
                .to_owned(),
        )
    } else {
        Ok(())
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for good in ["shop/catalog", "a", "a.b_c__d---e/f0", "library/debian"] {
            assert_eq!(check_repository(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Shop/catalog",
            "/a",
            "a/",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a._b",
            "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tags() {
        for good in ["latest", "v1.2.3", "_x", "0190a3b4-5c6d", &"a".repeat(128)] {
            assert_eq!(check_tag(good), Ok(()), "{good}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn registries() {
        for good in [
            "127.0.0.1:7701",
            "localhost",
            "registry.example.com:5000",
            "[::1]:5000",
            "[::1]",
        ] {
            assert_eq!(check_registry(good), Ok(()), "{good}");
        }
        for bad in [
            "", ":5000", "host:0", "host:x", "a/b", "-a.com", "a..b", "[zz]:1", "http://x",
        ] {
            assert!(check_registry(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn stand_ins_fill_references() {
        assert_eq!(
            with_stand_ins("v-#{Source.CommitId}").as_deref(),
            Some("v-x")
        );
        assert_eq!(with_stand_ins("#{broken"), None);
    }
}
