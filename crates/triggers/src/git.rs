//! The git values triggers work on: commit ids, refs, and repository
//! addresses compared across their spellings.

use std::fmt;

use crate::error::TriggerError;

/// A commit id: 40 (SHA-1) or 64 (SHA-256) hexadecimal digits, kept in
/// lowercase so that equal commits compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(String);

impl CommitId {
    pub fn parse(value: &str) -> Result<CommitId, TriggerError> {
        let valid = matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit());
        if valid {
            Ok(CommitId(value.to_ascii_lowercase()))
        } else {
            Err(TriggerError::InvalidCommitId {
                value: value.chars().take(80).collect(),
            })
        }
    }

    /// A commit id, or `None` for git's all-zero id, which forges send as
    /// `before` of a created ref and `after` of a deleted one.
    pub fn parse_or_zero(value: &str) -> Result<Option<CommitId>, TriggerError> {
        let id = CommitId::parse(value)?;
        Ok((!id.0.bytes().all(|b| b == b'0')).then_some(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ref as git names it, split into what filters match on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GitRef {
    /// `refs/heads/NAME`; holds NAME.
    Branch(String),
    /// `refs/tags/NAME`; holds NAME.
    Tag(String),
    /// Any other ref (`refs/pull/1/head`, `refs/notes/x`), whole; no filter
    /// matches it.
    Other(String),
}

impl GitRef {
    /// Splits a full ref name. Never fails: what is not a branch or a tag is
    /// [`GitRef::Other`].
    pub fn parse(full: &str) -> GitRef {
        if let Some(name) = full.strip_prefix("refs/heads/")
            && !name.is_empty()
        {
            GitRef::Branch(name.to_owned())
        } else if let Some(name) = full.strip_prefix("refs/tags/")
            && !name.is_empty()
        {
            GitRef::Tag(name.to_owned())
        } else {
            GitRef::Other(full.to_owned())
        }
    }

    /// The full ref name (`refs/heads/main`).
    pub fn full_name(&self) -> String {
        match self {
            GitRef::Branch(name) => format!("refs/heads/{name}"),
            GitRef::Tag(name) => format!("refs/tags/{name}"),
            GitRef::Other(full) => full.clone(),
        }
    }

    /// The branch's name, for a branch.
    pub fn branch(&self) -> Option<&str> {
        match self {
            GitRef::Branch(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// A repository address reduced to what identifies the repository, so that
/// `https://github.com/Org/Repo.git`, `git@github.com:org/repo` and
/// `ssh://git@github.com:22/org/repo/` compare equal: the host (lowercase,
/// without user or port) and the path without `.git` or a trailing `/`,
/// compared without case as forges do. Local paths and `file://` URLs keep
/// their case and compare as paths. The server uses this to find the
/// triggers a delivery's repository belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryAddress(String);

impl RepositoryAddress {
    pub fn new(url: &str) -> RepositoryAddress {
        let url = url.trim();
        let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
            if scheme.eq_ignore_ascii_case("file") {
                (None, rest)
            } else {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                (Some(authority), path)
            }
        } else if let Some((authority, path)) = url.split_once(':')
            && !authority.contains('/')
            && !authority.is_empty()
        {
            // scp-like syntax: [user@]host:path.
            (Some(authority), path)
        } else {
            (None, url)
        };
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        match host {
            Some(authority) => {
                let host = authority.rsplit('@').next().unwrap_or(authority);
                let host = match host.rsplit_once(':') {
                    // A port, unless this is an IPv6 literal's last group.
                    Some((name, port))
                        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        name
                    }
                    _ => host,
                };
                let path = path.trim_start_matches('/');
                RepositoryAddress(format!("{}/{}", host, path).to_lowercase())
            }
            None => RepositoryAddress(path.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_hex_of_sha1_or_sha256_length() {
        let sha1 = "0D1A26E67D8F5EAF1F6BA5C57FC3C7D91AC0FD1C";
        assert_eq!(
            CommitId::parse(sha1).map(|c| c.to_string()),
            Ok(sha1.to_lowercase())
        );
        assert!(CommitId::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "abc",
            &"g".repeat(40),
            &"a".repeat(41),
            " 0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        ] {
            assert_eq!(
                CommitId::parse(bad).map_err(|e| e.code()),
                Err("trigger.invalid_commit_id"),
                "{bad:?}"
            );
        }
        assert_eq!(CommitId::parse_or_zero(&"0".repeat(40)), Ok(None));
    }

    #[test]
    fn refs_split_into_branches_tags_and_others() {
        assert_eq!(
            GitRef::parse("refs/heads/release/1.0"),
            GitRef::Branch("release/1.0".into())
        );
        assert_eq!(GitRef::parse("refs/tags/v1"), GitRef::Tag("v1".into()));
        assert_eq!(
            GitRef::parse("refs/pull/7/head"),
            GitRef::Other("refs/pull/7/head".into())
        );
        assert_eq!(GitRef::parse("main"), GitRef::Other("main".into()));
        assert_eq!(
            GitRef::parse("refs/heads/"),
            GitRef::Other("refs/heads/".into())
        );
        assert_eq!(
            GitRef::parse("refs/heads/a/b").full_name(),
            "refs/heads/a/b"
        );
    }

    #[test]
    fn repository_addresses_compare_across_spellings() {
        let same = [
            "https://github.com/Example/Shop.git",
            "https://github.com/example/shop",
            "https://token@github.com/example/shop/",
            "git@github.com:example/shop.git",
            "ssh://git@github.com:22/example/shop.git",
            "git://GitHub.com/example/shop",
        ];
        for url in same {
            assert_eq!(
                RepositoryAddress::new(url).as_str(),
                "github.com/example/shop",
                "{url}"
            );
        }
        assert_eq!(
            RepositoryAddress::new("file:///srv/git/Shop.git").as_str(),
            "/srv/git/Shop"
        );
        assert_eq!(
            RepositoryAddress::new("/srv/git/Shop.git/"),
            RepositoryAddress::new("file:///srv/git/Shop")
        );
        assert_ne!(
            RepositoryAddress::new("https://github.com/example/shop"),
            RepositoryAddress::new("https://gitlab.com/example/shop")
        );
    }
}
