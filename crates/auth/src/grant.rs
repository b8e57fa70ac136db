//! Roles, scoped grants, and the one function that answers "may this
//! identity do that?".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// What a grant lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads executions, logs, environments, parameters (SecureStrings as `***`).
    Viewer,
    /// Runs, retries and stops pipelines; applies, deploys and rolls back
    /// services; pushes images; writes parameters.
    Operator,
    /// Decides approvals.
    Approver,
    /// Reads SecureString values (the explicit grant the issue asks for).
    Secrets,
    /// Everything: users, tokens, SecureString values, key rotation, shutdown.
    Admin,
    /// A build agent (`gantry agent`): takes work and reports it, and
    /// nothing else: no read of executions, logs, parameters or images.
    Agent,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Secrets,
        Role::Admin,
        Role::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Secrets => "secrets",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Role, AuthError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AuthError::InvalidGrant(format!(
                    "unknown role `{s}` (roles: viewer, operator, approver, secrets, admin, agent)"
                ))
            })
    }
}

/// A role, limited to some environments, pipelines or parameter paths.
/// Written `ROLE` or `ROLE:KEY=VALUE[,KEY=VALUE]` with keys `env`,
/// `pipeline` and `path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    pub role: Role,
    pub environment: Option<String>,
    pub pipeline: Option<String>,
    /// A parameter path prefix (`/shop/staging`), for `secrets`.
    pub path: Option<String>,
}

impl Grant {
    pub fn new(role: Role) -> Grant {
        Grant {
            role,
            environment: None,
            pipeline: None,
            path: None,
        }
    }

    fn is_scoped(&self) -> bool {
        self.environment.is_some() || self.pipeline.is_some() || self.path.is_some()
    }

    /// Whether the scope covers `target`: every dimension the grant limits
    /// must be named by the target and match it.
    fn covers(&self, target: &Target<'_>) -> bool {
        let dimension = |limit: &Option<String>, named: Option<&str>, prefix: bool| match limit {
            None => true,
            Some(limit) => named.is_some_and(|named| {
                if prefix {
                    path_within(named, limit)
                } else {
                    named == limit
                }
            }),
        };
        dimension(&self.environment, target.environment, false)
            && dimension(&self.pipeline, target.pipeline, false)
            && dimension(&self.path, target.parameter, true)
    }
}

/// Whether parameter `name` lies at or under `prefix` (`/a/b` covers
/// `/a/b` and `/a/b/c`, not `/a/bc`).
fn path_within(name: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    let name = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    prefix.is_empty()
        || name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role.as_str())?;
        let scope: Vec<String> = [
            ("env", &self.environment),
            ("pipeline", &self.pipeline),
            ("path", &self.path),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        if !scope.is_empty() {
            write!(f, ":{}", scope.join(","))?;
        }
        Ok(())
    }
}

impl FromStr for Grant {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Grant, AuthError> {
        let (role, scope) = s.split_once(':').unwrap_or((s, ""));
        let mut grant = Grant::new(role.trim().parse()?);
        for part in scope.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(AuthError::InvalidGrant(format!(
                    "`{part}` in grant `{s}` is not KEY=VALUE (keys: env, pipeline, path)"
                )));
            };
            let value = value.trim();
            let valid = !value.is_empty()
                && value.len() <= 200
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@/".contains(c));
            if !valid {
                return Err(AuthError::InvalidGrant(format!(
                    "`{value}` in grant `{s}` is not a name"
                )));
            }
            let slot = match key.trim() {
                "env" | "environment" => &mut grant.environment,
                "pipeline" => &mut grant.pipeline,
                "path" => &mut grant.path,
                other => {
                    return Err(AuthError::InvalidGrant(format!(
                        "unknown scope `{other}` in grant `{s}` (keys: env, pipeline, path)"
                    )));
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(AuthError::InvalidGrant(format!(
                    "grant `{s}` names `{key}` twice"
                )));
            }
        }
        if grant.path.is_some() && grant.role != Role::Secrets {
            return Err(AuthError::InvalidGrant(format!(
                "grant `{s}`: only `secrets` is scoped by path"
            )));
        }
        if matches!(grant.role, Role::Admin | Role::Agent) && grant.is_scoped() {
            return Err(AuthError::InvalidGrant(format!(
                "grant `{s}`: {} cannot be scoped",
                grant.role
            )));
        }
        Ok(grant)
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Grant, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read state and logs (any grant).
    Read,
    /// Change executions, environments, images or parameters.
    Operate,
    /// Decide an approval.
    Approve,
    /// Reveal a SecureString's value.
    Decrypt,
    /// Users, tokens, key rotation, shutdown.
    Admin,
    /// Take work as a build agent and report it.
    Agent,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::Approve => "approve",
            Permission::Decrypt => "decrypt",
            Permission::Admin => "admin",
            Permission::Agent => "agent",
        }
    }
}

/// What a request is about, for scoped grants. Empty = the server as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target<'a> {
    pub pipeline: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub parameter: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn any() -> Target<'a> {
        Target::default()
    }

    pub fn pipeline(name: &'a str) -> Target<'a> {
        Target {
            pipeline: Some(name),
            ..Target::default()
        }
    }

    pub fn environment(name: &'a str) -> Target<'a> {
        Target {
            environment: Some(name),
            ..Target::default()
        }
    }

    pub fn parameter(name: &'a str) -> Target<'a> {
        Target {
            parameter: Some(name),
            ..Target::default()
        }
    }
}

/// Who is calling, as established by a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub grants: Vec<Grant>,
}

impl Identity {
    /// Whether this identity may do `permission` on `target`.
    ///
    /// Admin may do everything. Any grant but an agent's may read. Only an
    /// agent grant takes agent work (not admin). Operate needs an
    /// operator grant, Approve an approver grant, Decrypt a secrets grant,
    /// each whose scope covers the target.
    pub fn allows(&self, permission: Permission, target: &Target<'_>) -> bool {
        if permission == Permission::Agent {
            // Not even admin: an agent's routes hand out secrets of builds
            // to whoever takes the job, so only a token made for it may.
            return self.grants.iter().any(|g| g.role == Role::Agent);
        }
        self.grants.iter().any(|grant| {
            if grant.role == Role::Admin {
                return true;
            }
            let role_fits = match permission {
                Permission::Read => grant.role != Role::Agent,
                Permission::Agent => grant.role == Role::Agent,
                Permission::Operate => grant.role == Role::Operator,
                Permission::Approve => grant.role == Role::Approver,
                Permission::Decrypt => grant.role == Role::Secrets,
                Permission::Admin => false,
            };
            role_fits && (permission == Permission::Read || grant.covers(target))
        })
    }

    /// Whether every grant of this identity is an agent's: such a caller
    /// reaches the agent routes and nothing else.
    pub fn agent_only(&self) -> bool {
        !self.grants.is_empty() && self.grants.iter().all(|g| g.role == Role::Agent)
    }

    /// Whether any grant of this identity has `role`, whatever its scope.
    pub fn has_role(&self, role: Role) -> bool {
        self.grants
            .iter()
            .any(|g| g.role == role || g.role == Role::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(grants: &[&str]) -> Identity {
        Identity {
            name: "u".into(),
            email: None,
            grants: grants.iter().map(|g| g.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn grants_round_trip_through_text() {
        for text in [
            "viewer",
            "operator:env=staging",
            "approver:pipeline=shop",
            "operator:env=prod,pipeline=shop",
            "secrets:path=/shop/staging",
            "admin",
        ] {
            let grant: Grant = text.parse().unwrap();
            assert_eq!(grant.to_string(), text);
        }
    }

    #[test]
    fn bad_grants_say_why() {
        for (text, says) in [
            ("root", "unknown role"),
            ("operator:region=eu", "unknown scope"),
            ("operator:env", "KEY=VALUE"),
            ("operator:env=a,env=b", "twice"),
            ("operator:path=/a", "only `secrets`"),
            ("admin:env=prod", "cannot be scoped"),
            ("viewer:env=a b", "not a name"),
        ] {
            let error = text.parse::<Grant>().unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn scoped_operator_operates_only_its_environment() {
        let op = identity(&["operator:env=staging"]);
        assert!(op.allows(Permission::Operate, &Target::environment("staging")));
        assert!(!op.allows(Permission::Operate, &Target::environment("production")));
        // A scope the target does not name does not cover it.
        assert!(!op.allows(Permission::Operate, &Target::pipeline("shop")));
        assert!(!op.allows(Permission::Operate, &Target::any()));
        assert!(op.allows(Permission::Read, &Target::environment("production")));
        assert!(!op.allows(Permission::Approve, &Target::pipeline("shop")));
    }

    #[test]
    fn each_role_does_what_it_says_and_nothing_else() {
        let t = Target::any();
        let table = [
            ("viewer", [true, false, false, false, false]),
            ("operator", [true, true, false, false, false]),
            ("approver", [true, false, true, false, false]),
            ("secrets", [true, false, false, true, false]),
            ("admin", [true, true, true, true, true]),
        ];
        let permissions = [
            Permission::Read,
            Permission::Operate,
            Permission::Approve,
            Permission::Decrypt,
            Permission::Admin,
        ];
        for (role, expected) in table {
            let who = identity(&[role]);
            for (p, want) in permissions.iter().zip(expected) {
                assert_eq!(who.allows(*p, &t), want, "{role} {p:?}");
            }
        }
        assert!(!identity(&[]).allows(Permission::Read, &t));
    }

    #[test]
    fn secrets_by_path_prefix_not_text_prefix() {
        let s = identity(&["secrets:path=/shop/staging"]);
        assert!(s.allows(Permission::Decrypt, &Target::parameter("/shop/staging")));
        assert!(s.allows(Permission::Decrypt, &Target::parameter("/shop/staging/DB")));
        assert!(s.allows(Permission::Decrypt, &Target::parameter("shop/staging/DB")));
        assert!(!s.allows(Permission::Decrypt, &Target::parameter("/shop/stagingX/DB")));
        assert!(!s.allows(
            Permission::Decrypt,
            &Target::parameter("/shop/production/DB")
        ));
    }
}
