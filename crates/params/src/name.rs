//! Validated names, paths, labels, selectors and types: pure functions, no IO.
//!
//! Strings from users become these newtypes at the edge, so the store only ever sees
//! names that follow SSM's rules and are already in canonical form.

use std::fmt;
use std::str::FromStr;

use crate::error::{LabelProblem, NameProblem, ParamError};

/// Longest parameter name, counted on the canonical form (with its leading `/`).
///
/// SSM's 1011 includes the ARN prefix; gantry has no ARNs, so the whole budget goes to
/// the name.
pub const MAX_NAME_LEN: usize = 1011;
/// Deepest hierarchy: `/l1/l2/.../l15` is allowed, a sixteenth level is not.
pub const MAX_DEPTH: usize = 15;
/// Longest version label.
pub const MAX_LABEL_LEN: usize = 100;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn has_reserved_prefix(s: &str) -> bool {
    // `get` instead of slicing: the prefix test must not panic on short input.
    s.get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("aws") || p.eq_ignore_ascii_case("ssm"))
}

/// Checks the `/`-separated levels shared by names and paths: characters, empty levels
/// and depth. `body` is the text after the leading `/`; `offset` maps positions back to
/// the caller's input for error messages.
fn check_segments(body: &str, offset: usize) -> Result<usize, NameProblem> {
    for (i, c) in body.chars().enumerate() {
        if c != '/' && !is_name_char(c) {
            return Err(NameProblem::InvalidChar {
                ch: c,
                at: i + offset,
            });
        }
    }
    let mut depth = 0;
    for segment in body.split('/') {
        if segment.is_empty() {
            return Err(NameProblem::EmptySegment);
        }
        depth += 1;
    }
    if depth > MAX_DEPTH {
        return Err(NameProblem::TooDeep { depth });
    }
    Ok(depth)
}

/// A valid parameter name in canonical form.
///
/// The canonical form always starts with `/`: SSM treats `a` and `/a` as one parameter,
/// and storing both spellings as `/a` makes that identity a plain string equality while
/// `/Test/P1` and `/P1` stay distinct. Names are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamName(String);

impl ParamName {
    /// Validates `input` against SSM's naming rules and returns its canonical form.
    pub fn parse(input: &str) -> Result<Self, ParamError> {
        Self::check(input).map_err(|problem| ParamError::InvalidName {
            name: input.to_owned(),
            problem,
        })
    }

    fn check(input: &str) -> Result<Self, NameProblem> {
        let (body, offset) = match input.strip_prefix('/') {
            Some(rest) => (rest, 1),
            None => {
                // A bare name may not hide a hierarchy: `a/b` is "not fully qualified".
                if input.contains('/') {
                    return Err(NameProblem::NotFullyQualified);
                }
                (input, 0)
            }
        };
        if body.is_empty() {
            return Err(NameProblem::Empty);
        }
        check_segments(body, offset)?;
        if has_reserved_prefix(body) {
            return Err(NameProblem::ReservedPrefix);
        }
        let canonical = format!("/{body}");
        if canonical.len() > MAX_NAME_LEN {
            return Err(NameProblem::TooLong {
                len: canonical.len(),
            });
        }
        Ok(Self(canonical))
    }

    /// Wraps a name read back from the store, which only ever holds canonical names.
    pub(crate) fn from_stored(stored: String) -> Result<Self, ParamError> {
        match Self::check(&stored) {
            Ok(name) if name.0 == stored => Ok(name),
            _ => Err(ParamError::Corrupt {
                reason: format!("stored parameter name {stored:?} is not canonical"),
            }),
        }
    }

    /// The canonical name, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of `/`-separated levels: `/a` is 1, `/a/b` is 2.
    pub fn depth(&self) -> usize {
        self.0.matches('/').count()
    }

    /// The levels of the name, without slashes.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').skip(1)
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ParamName {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ParamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A hierarchy prefix for listing (GetParametersByPath's `Path`), such as `/shop/prod`.
///
/// Canonical form: starts with `/`, no trailing `/` except the root `/` itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamPath(String);

impl ParamPath {
    /// Validates a path. It must start with `/`; one trailing `/` is accepted and dropped.
    pub fn parse(input: &str) -> Result<Self, ParamError> {
        Self::check(input).map_err(|problem| ParamError::InvalidPath {
            path: input.to_owned(),
            problem,
        })
    }

    fn check(input: &str) -> Result<Self, NameProblem> {
        let Some(rest) = input.strip_prefix('/') else {
            return Err(if input.is_empty() {
                NameProblem::Empty
            } else {
                NameProblem::NotFullyQualified
            });
        };
        let body = rest.strip_suffix('/').unwrap_or(rest);
        if body.is_empty() {
            return Ok(Self::root());
        }
        check_segments(body, 1)?;
        let canonical = format!("/{body}");
        if canonical.len() > MAX_NAME_LEN {
            return Err(NameProblem::TooLong {
                len: canonical.len(),
            });
        }
        Ok(Self(canonical))
    }

    /// The root of the hierarchy, `/`: every parameter is below it.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string every name below this path starts with: the path plus a `/`.
    pub(crate) fn child_prefix(&self) -> String {
        if self.0 == "/" {
            "/".to_owned()
        } else {
            format!("{}/", self.0)
        }
    }
}

impl fmt::Display for ParamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ParamPath {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A valid version label, such as `prod` or `release-2024.06`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

impl Label {
    /// Validates a label: at most 100 characters from letters, digits, `.`, `-` and `_`,
    /// not starting with a digit, `aws` or `ssm` (any case).
    pub fn parse(input: &str) -> Result<Self, ParamError> {
        Self::check(input).map_err(|problem| ParamError::LabelInvalid {
            label: input.to_owned(),
            problem,
        })
    }

    fn check(input: &str) -> Result<Self, LabelProblem> {
        let Some(first) = input.chars().next() else {
            return Err(LabelProblem::Empty);
        };
        let len = input.chars().count();
        if len > MAX_LABEL_LEN {
            return Err(LabelProblem::TooLong { len });
        }
        if let Some(ch) = input.chars().find(|&c| !is_name_char(c)) {
            return Err(LabelProblem::InvalidChar { ch });
        }
        if first.is_ascii_digit() {
            return Err(LabelProblem::StartsWithDigit);
        }
        if has_reserved_prefix(input) {
            return Err(LabelProblem::ReservedPrefix);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Label {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Which version of a parameter a [`Selector`] picks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The newest version.
    Latest,
    /// Exactly this version; a missing version is an error, never a fallback.
    Version(u64),
    /// The version carrying this label; a missing label is an error, never a fallback.
    Label(Label),
}

/// A parameter reference as SSM's GetParameter accepts it: `name`, `name:3` or
/// `name:label`.
///
/// Names can't contain `:`, so the first `:` separates the name from the pick; labels
/// can't start with a digit, so an all-digit pick is a version and anything else a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    pub name: ParamName,
    pub pick: Pick,
}

impl Selector {
    /// A selector for the newest version of `name`.
    pub fn latest(name: ParamName) -> Self {
        Self {
            name,
            pick: Pick::Latest,
        }
    }

    pub fn version(name: ParamName, version: u64) -> Self {
        Self {
            name,
            pick: Pick::Version(version),
        }
    }

    pub fn label(name: ParamName, label: Label) -> Self {
        Self {
            name,
            pick: Pick::Label(label),
        }
    }

    pub fn parse(input: &str) -> Result<Self, ParamError> {
        let invalid = |reason: String| ParamError::InvalidSelector {
            selector: input.to_owned(),
            reason,
        };
        let Some((name, pick)) = input.split_once(':') else {
            return Ok(Self::latest(ParamName::parse(input)?));
        };
        let name = ParamName::parse(name)?;
        if pick.is_empty() {
            return Err(invalid(
                "nothing after ':' (expected a version or a label)".into(),
            ));
        }
        if pick.bytes().all(|b| b.is_ascii_digit()) {
            let version = pick
                .parse::<u64>()
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| invalid(format!("version {pick} is out of range")))?;
            return Ok(Self::version(name, version));
        }
        let label =
            Label::check(pick).map_err(|problem| invalid(format!("label {pick:?}: {problem}")))?;
        Ok(Self::label(name, label))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pick {
            Pick::Latest => write!(f, "{}", self.name),
            Pick::Version(v) => write!(f, "{}:{v}", self.name),
            Pick::Label(l) => write!(f, "{}:{l}", self.name),
        }
    }
}

impl FromStr for Selector {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<ParamName> for Selector {
    fn from(name: ParamName) -> Self {
        Self::latest(name)
    }
}

/// The three SSM parameter types. Spelled exactly as SSM spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// Any text.
    String,
    /// Comma-separated values; see [`crate::Parameter::list_items`].
    StringList,
    /// Text encrypted at rest and returned only when decryption is asked for.
    SecureString,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::StringList => "StringList",
            Self::SecureString => "SecureString",
        }
    }

    pub fn is_secure(self) -> bool {
        self == Self::SecureString
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParamType {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "String" => Ok(Self::String),
            "StringList" => Ok(Self::StringList),
            "SecureString" => Ok(Self::SecureString),
            other => Err(ParamError::InvalidType {
                value: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_problem(input: &str) -> Option<NameProblem> {
        match ParamName::parse(input) {
            Ok(_) => None,
            Err(ParamError::InvalidName { problem, .. }) => Some(problem),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn bare_and_slashed_names_are_the_same_parameter() {
        assert_eq!(
            ParamName::parse("a").unwrap(),
            ParamName::parse("/a").unwrap()
        );
        assert_eq!(ParamName::parse("a").unwrap().as_str(), "/a");
    }

    #[test]
    fn hierarchy_levels_make_distinct_names() {
        assert_ne!(
            ParamName::parse("/Test/P1").unwrap(),
            ParamName::parse("/P1").unwrap()
        );
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_ne!(
            ParamName::parse("/Db").unwrap(),
            ParamName::parse("/db").unwrap()
        );
    }

    #[test]
    fn valid_names() {
        for ok in [
            "a",
            "/a",
            "MyParameter1",
            "/Dev/Production/East/Project-ABC/MyParameter",
            "/shop/production/SERVICE_DNS",
            "/a.b-c_d/0",
            "/Dev/aws",      // only the first level is reserved
            "/awning-x/ssx", // "aw" and "ss" are not the reserved prefixes
            "/my/ssm",
        ] {
            assert_eq!(name_problem(ok), None, "{ok} should be valid");
        }
    }

    #[test]
    fn each_naming_rule_rejects() {
        let cases: &[(&str, NameProblem)] = &[
            ("", NameProblem::Empty),
            ("/", NameProblem::Empty),
            ("my param", NameProblem::InvalidChar { ch: ' ', at: 2 }),
            (" a", NameProblem::InvalidChar { ch: ' ', at: 0 }),
            ("/a/b c", NameProblem::InvalidChar { ch: ' ', at: 4 }),
            ("/a:b", NameProblem::InvalidChar { ch: ':', at: 2 }),
            ("/a$b", NameProblem::InvalidChar { ch: '$', at: 2 }),
            ("/é", NameProblem::InvalidChar { ch: 'é', at: 1 }),
            ("awsTestParameter", NameProblem::ReservedPrefix),
            ("SSM-testparameter", NameProblem::ReservedPrefix),
            ("/aws/testparam1", NameProblem::ReservedPrefix),
            ("/AwS", NameProblem::ReservedPrefix),
            ("/ssm", NameProblem::ReservedPrefix),
            ("MyParameter3/L1", NameProblem::NotFullyQualified),
            ("/a//b", NameProblem::EmptySegment),
            ("/a/", NameProblem::EmptySegment),
            ("//a", NameProblem::EmptySegment),
        ];
        for (input, want) in cases {
            assert_eq!(name_problem(input).as_ref(), Some(want), "{input:?}");
        }
    }

    #[test]
    fn depth_limit_is_fifteen_levels() {
        let fifteen: String = (1..=15).map(|i| format!("/L{i}")).collect();
        assert_eq!(ParamName::parse(&fifteen).unwrap().depth(), 15);
        let sixteen = format!("{fifteen}/leaf");
        assert_eq!(
            name_problem(&sixteen),
            Some(NameProblem::TooDeep { depth: 16 })
        );
    }

    #[test]
    fn length_limit_counts_the_canonical_name() {
        let max = format!("/{}", "a".repeat(MAX_NAME_LEN - 1));
        assert!(ParamName::parse(&max).is_ok());
        let over = format!("/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(
            name_problem(&over),
            Some(NameProblem::TooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        // Without the slash the input is 1011 characters, but the stored form is 1012.
        assert!(ParamName::parse(&"a".repeat(MAX_NAME_LEN)).is_err());
    }

    #[test]
    fn invalid_name_error_has_code_and_names_the_input() {
        let err = ParamName::parse("/aws/x").unwrap_err();
        assert_eq!(err.code(), "param.invalid_name");
        assert!(err.to_string().contains("/aws/x"));
    }

    #[test]
    fn paths_are_canonical() {
        assert_eq!(ParamPath::parse("/a/b/").unwrap().as_str(), "/a/b");
        assert_eq!(ParamPath::parse("/").unwrap(), ParamPath::root());
        assert_eq!(ParamPath::parse("/a/b").unwrap().child_prefix(), "/a/b/");
        assert_eq!(ParamPath::root().child_prefix(), "/");
        for bad in ["", "a/b", "/a//b", "/a b"] {
            let err = ParamPath::parse(bad).unwrap_err();
            assert_eq!(err.code(), "param.invalid_path", "{bad:?}");
        }
    }

    fn label_problem(input: &str) -> Option<LabelProblem> {
        Label::check(input).err()
    }

    #[test]
    fn label_rules() {
        for ok in ["prod", "Release-1.2_b", "x", "Aw", "s3", &"a".repeat(100)] {
            assert_eq!(label_problem(ok), None, "{ok:?}");
        }
        let cases: &[(&str, LabelProblem)] = &[
            ("", LabelProblem::Empty),
            ("1prod", LabelProblem::StartsWithDigit),
            ("awsLabel", LabelProblem::ReservedPrefix),
            ("SSMx", LabelProblem::ReservedPrefix),
            ("has space", LabelProblem::InvalidChar { ch: ' ' }),
            ("a/b", LabelProblem::InvalidChar { ch: '/' }),
            ("a:b", LabelProblem::InvalidChar { ch: ':' }),
        ];
        for (input, want) in cases {
            assert_eq!(label_problem(input).as_ref(), Some(want), "{input:?}");
        }
        assert_eq!(
            label_problem(&"a".repeat(101)),
            Some(LabelProblem::TooLong { len: 101 })
        );
        assert_eq!(
            Label::parse("1x").unwrap_err().code(),
            "param.label_invalid"
        );
    }

    #[test]
    fn selectors_by_version_and_label() {
        let s = Selector::parse("/db/url:3").unwrap();
        assert_eq!(s.name.as_str(), "/db/url");
        assert_eq!(s.pick, Pick::Version(3));
        let s = Selector::parse("db:prod").unwrap();
        assert_eq!(s.name.as_str(), "/db");
        assert_eq!(s.pick, Pick::Label(Label::parse("prod").unwrap()));
        let s = Selector::parse("/db").unwrap();
        assert_eq!(s.pick, Pick::Latest);
        assert_eq!(Selector::parse("/db:prod").unwrap().to_string(), "/db:prod");
        assert_eq!(Selector::parse("db:7").unwrap().to_string(), "/db:7");
    }

    #[test]
    fn bad_selectors() {
        for bad in [
            "/db:",
            "/db:0",
            "/db:99999999999999999999999",
            "/db:aws1",
            "/db:a:b",
        ] {
            let err = Selector::parse(bad).unwrap_err();
            assert_eq!(err.code(), "param.invalid_selector", "{bad:?}");
        }
        assert_eq!(
            Selector::parse("/aws:1").unwrap_err().code(),
            "param.invalid_name"
        );
    }

    #[test]
    fn types_parse_as_ssm_spells_them() {
        for t in [
            ParamType::String,
            ParamType::StringList,
            ParamType::SecureString,
        ] {
            assert_eq!(t.as_str().parse::<ParamType>().unwrap(), t);
        }
        assert_eq!(
            "securestring".parse::<ParamType>().unwrap_err().code(),
            "param.invalid_type"
        );
    }
}
