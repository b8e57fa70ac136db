//! The validated names of gantry's files, each a newtype that only the
//! validators (or `new`, which checks) can build.
//!
//! Pipeline, stage and action names follow CodePipeline's rules. Environment
//! and service names are stricter, RFC 1123 labels (`[a-z0-9]`, `-` inside,
//! at most 63): they become host names, container names, Docker labels and
//! parameter-path segments, and a label is valid in all of those.

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub(crate) String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Checks a name written outside a pipeline file (an API call,
            /// a test); the message says what is allowed.
            pub fn new(name: &str) -> Result<Self, String> {
                NameRule::$name.check(name).map(|()| $name(name.to_owned()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`
    PipelineName
);
name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`, unique in the pipeline.
    StageName
);
name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`, unique in its stage.
    ActionName
);
name_type!(
    /// `[A-Za-z0-9_-]{1,100}`, unique in the pipeline.
    ArtifactName
);
name_type!(
    /// `[A-Za-z0-9@_-]{1,100}`, unique, not an artifact name, not a reserved namespace.
    Namespace
);
name_type!(
    /// An RFC 1123 label, `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, unique in a project.
    EnvironmentName
);
name_type!(
    /// An RFC 1123 label, `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, unique in a project.
    ServiceName
);

/// The characters and length a kind of name allows.
#[derive(Clone, Copy)]
pub(crate) struct NameRule {
    what: &'static str,
    /// Allowed besides ASCII letters and digits.
    extra: &'static str,
    max: usize,
    /// Lowercase only, and the first and last characters are letters or digits.
    label: bool,
}

#[allow(non_upper_case_globals)] // Named after the name types, so that `name_type!` can pick them.
impl NameRule {
    pub(crate) const PipelineName: NameRule = NameRule::ascii("pipeline name", ".@_-", 100);
    pub(crate) const StageName: NameRule = NameRule::ascii("stage name", ".@_-", 100);
    pub(crate) const ActionName: NameRule = NameRule::ascii("action name", ".@_-", 100);
    pub(crate) const ArtifactName: NameRule = NameRule::ascii("artifact name", "_-", 100);
    pub(crate) const Namespace: NameRule = NameRule::ascii("namespace", "@_-", 100);
    /// Pipeline variables, as CodePipeline allows them.
    pub(crate) const Variable: NameRule = NameRule::ascii("variable name", "@_-", 128);
    /// Container names as ECS allows them; they are matched against the
    /// `name`s in imagedefinitions.json.
    pub(crate) const Container: NameRule = NameRule::ascii("container name", "_-", 255);
    pub(crate) const EnvironmentName: NameRule = NameRule::label("environment name");
    pub(crate) const ServiceName: NameRule = NameRule::label("service name");
    /// A kubernetes namespace: a DNS-1123 label, as environments are.
    pub(crate) const KubeNamespace: NameRule = NameRule::label("kubernetes namespace");

    const fn ascii(what: &'static str, extra: &'static str, max: usize) -> NameRule {
        NameRule {
            what,
            extra,
            max,
            label: false,
        }
    }

    const fn label(what: &'static str) -> NameRule {
        NameRule {
            what,
            extra: "-",
            max: 63,
            label: true,
        }
    }

    pub(crate) fn check(self, name: &str) -> Result<(), String> {
        let length = name.chars().count();
        let allowed = |c: char| {
            let alphanumeric = if self.label {
                c.is_ascii_lowercase() || c.is_ascii_digit()
            } else {
                c.is_ascii_alphanumeric()
            };
            alphanumeric || self.extra.contains(c)
        };
        let ends_ok = !self.label
            || (name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric()));
        if (1..=self.max).contains(&length) && name.chars().all(allowed) && ends_ok {
            return Ok(());
        }
        if self.label {
            return Err(format!(
                "invalid {} `{name}`: use 1 to {} characters from a-z 0-9 -, starting and ending with a letter or digit",
                self.what, self.max
            ));
        }
        let extra: Vec<String> = self.extra.chars().map(String::from).collect();
        Err(format!(
            "invalid {} `{name}`: use 1 to {} characters from A-Z a-z 0-9 {}",
            self.what,
            self.max,
            extra.join(" ")
        ))
    }
}

/// The schema of a mapping keyed by environment or service names: the keys
/// are RFC 1123 labels, the values `T`.
pub(crate) struct ByLabel<T>(std::marker::PhantomData<T>);

impl<T: schemars::JsonSchema> schemars::JsonSchema for ByLabel<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("ByLabel_{}", T::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "propertyNames": {"pattern": LABEL_PATTERN},
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

/// [`NameRule::EnvironmentName`] and [`NameRule::ServiceName`] as a regular expression.
pub(crate) const LABEL_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Why `name` is not an environment variable name as a POSIX shell accepts
/// it, if it is not.
pub(crate) fn variable_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!valid).then(|| {
        format!(
            "invalid variable name `{name}`: use letters, digits and _, not starting with a digit"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_lowercase_and_start_and_end_alphanumeric() {
        for good in [
            "a",
            "staging",
            "shop-catalog",
            "0",
            "a1-b2",
            &"a".repeat(63),
        ] {
            assert!(ServiceName::new(good).is_ok(), "{good:?} was refused");
        }
        for bad in [
            "",
            "Catalog",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(EnvironmentName::new(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
