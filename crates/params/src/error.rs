//! The one error type of the parameter store.
//!
//! Every variant names the parameter (or the input) it is about and never carries a
//! secret value, so an error can be logged or returned over the API as it is. Each
//! variant has a stable [`ParamError::code`] that API clients can match on; messages may
//! change, codes may not.

use std::path::PathBuf;

use crate::crypto::KeyId;

/// Why a string is not a valid parameter name or path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty (or only `/`).
    Empty,
    /// Longer than [`crate::MAX_NAME_LEN`] characters in canonical form.
    TooLong { len: usize },
    /// A character outside `a-zA-Z0-9_.-` and `/` (spaces included).
    InvalidChar { ch: char, at: usize },
    /// The first segment starts with `aws` or `ssm`, in any case.
    ReservedPrefix,
    /// More than [`crate::MAX_DEPTH`] `/`-separated levels.
    TooDeep { depth: usize },
    /// A hierarchical name (one with `/` inside) must start with `/`, as in SSM.
    NotFullyQualified,
    /// `//` or a trailing `/`: every level needs a name.
    EmptySegment,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { len } => write!(
                f,
                "it is {len} characters long, the maximum is {}",
                crate::MAX_NAME_LEN
            ),
            Self::InvalidChar { ch, at } => write!(
                f,
                "character {ch:?} at position {at} is not allowed (only a-zA-Z0-9_.- and / are)"
            ),
            Self::ReservedPrefix => f.write_str("names can't start with \"aws\" or \"ssm\""),
            Self::TooDeep { depth } => write!(
                f,
                "it has {depth} levels, the maximum is {}",
                crate::MAX_DEPTH
            ),
            Self::NotFullyQualified => f.write_str("a name with a hierarchy must start with '/'"),
            Self::EmptySegment => f.write_str("it has an empty level ('//' or a trailing '/')"),
        }
    }
}

/// Why a string is not a valid version label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelProblem {
    Empty,
    TooLong { len: usize },
    InvalidChar { ch: char },
    StartsWithDigit,
    ReservedPrefix,
}

impl std::fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { len } => write!(
                f,
                "it is {len} characters long, the maximum is {}",
                crate::MAX_LABEL_LEN
            ),
            Self::InvalidChar { ch } => write!(
                f,
                "character {ch:?} is not allowed (only letters, digits, '.', '-' and '_' are)"
            ),
            Self::StartsWithDigit => f.write_str("labels can't start with a digit"),
            Self::ReservedPrefix => f.write_str("labels can't start with \"aws\" or \"ssm\""),
        }
    }
}

/// Everything that can go wrong in the parameter store.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("invalid parameter name {name:?}: {problem}")]
    InvalidName { name: String, problem: NameProblem },

    #[error("invalid parameter path {path:?}: {problem}")]
    InvalidPath { path: String, problem: NameProblem },

    #[error("invalid parameter selector {selector:?}: {reason}")]
    InvalidSelector { selector: String, reason: String },

    #[error("invalid label {label:?}: {problem}")]
    LabelInvalid {
        label: String,
        problem: LabelProblem,
    },

    #[error("version {version} of parameter {name} would carry more than {max} labels")]
    TooManyLabels {
        name: String,
        version: u64,
        max: usize,
    },

    #[error("invalid parameter type {value:?}: expected String, StringList or SecureString")]
    InvalidType { value: String },

    #[error("value of parameter {name} is {size} bytes, the maximum is {max}")]
    ValueTooLarge {
        name: String,
        size: usize,
        max: usize,
    },

    #[error("value of parameter {name} is empty")]
    ValueEmpty { name: String },

    #[error("description of parameter {name} is {len} characters, the maximum is {max}")]
    DescriptionTooLong {
        name: String,
        len: usize,
        max: usize,
    },

    #[error("parameter {name} not found")]
    NotFound { name: String },

    #[error("version {version} of parameter {name} not found")]
    VersionNotFound { name: String, version: u64 },

    #[error("label {label:?} of parameter {name} not found")]
    LabelNotFound { name: String, label: String },

    #[error("parameter {name} already exists (put it with overwrite to add a version)")]
    AlreadyExists { name: String },

    #[error(
        "parameter {name} already has {max} versions and the oldest, version {oldest}, carries a \
         label: move or remove the label before adding a version"
    )]
    HistoryFullWithLabel {
        name: String,
        oldest: u64,
        max: usize,
    },

    #[error(
        "version {version} of parameter {name} was encrypted with master key {found}, but the \
         store holds master key {expected}"
    )]
    WrongMasterKey {
        name: String,
        version: u64,
        found: KeyId,
        expected: KeyId,
    },

    #[error(
        "version {version} of parameter {name} failed to decrypt: the ciphertext was altered or \
         belongs to another parameter or version"
    )]
    DecryptionFailed { name: String, version: u64 },

    #[error("version {version} of parameter {name} could not be encrypted")]
    EncryptionFailed { name: String, version: u64 },

    #[error("invalid master key: {reason}")]
    MasterKeyInvalid { reason: String },

    #[error("master key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the operating system's random number generator failed: {0}")]
    Randomness(getrandom::Error),

    #[error("could not resolve {var} from {selector}: {source}")]
    Unresolved {
        var: String,
        selector: String,
        #[source]
        source: Box<ParamError>,
    },

    #[error("parameter store database holds an invalid row: {reason}")]
    Corrupt { reason: String },

    #[error("parameter store database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ParamError {
    /// How to fix a reference to a parameter that does not exist: the exact
    /// `gantry param put` to run (the value from standard input, so it stays
    /// out of shell history). `None` for every other error.
    pub fn how_to_fix(&self) -> Option<String> {
        match self {
            Self::NotFound { name } => Some(format!(
                "store it with `gantry param put {name} --type SecureString` (the value from \
                 standard input), or `gantry param put {name} VALUE` for a value that is not secret"
            )),
            Self::Unresolved { source, .. } => source.how_to_fix(),
            _ => None,
        }
    }

    /// A stable, machine-readable code for this error, for API responses and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "param.invalid_name",
            Self::InvalidPath { .. } => "param.invalid_path",
            Self::InvalidSelector { .. } => "param.invalid_selector",
            Self::LabelInvalid { .. } => "param.label_invalid",
            Self::TooManyLabels { .. } => "param.label_limit_exceeded",
            Self::InvalidType { .. } => "param.invalid_type",
            Self::ValueTooLarge { .. } => "param.value_too_large",
            Self::ValueEmpty { .. } => "param.value_empty",
            Self::DescriptionTooLong { .. } => "param.description_too_long",
            Self::NotFound { .. } => "param.not_found",
            Self::VersionNotFound { .. } => "param.version_not_found",
            Self::LabelNotFound { .. } => "param.label_not_found",
            Self::AlreadyExists { .. } => "param.already_exists",
            Self::HistoryFullWithLabel { .. } => "param.history_full_with_label",
            Self::WrongMasterKey { .. } => "param.wrong_master_key",
            Self::DecryptionFailed { .. } => "param.decrypt_failed",
            Self::EncryptionFailed { .. } => "param.encrypt_failed",
            Self::MasterKeyInvalid { .. } => "param.master_key_invalid",
            Self::KeyFile { .. } => "param.key_file",
            Self::Randomness(_) => "param.randomness",
            Self::Unresolved { .. } => "param.unresolved",
            Self::Corrupt { .. } => "param.corrupt",
            Self::Database(_) => "param.database",
        }
    }

    /// The HTTP status an API answers this error with: 404 for what does
    /// not exist, 409 for a conflict with what does, 500 for a broken store
    /// or key, 400 for the rest (the request was wrong).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound { .. }
            | Self::VersionNotFound { .. }
            | Self::LabelNotFound { .. }
            | Self::Unresolved { .. } => 404,
            Self::AlreadyExists { .. } | Self::HistoryFullWithLabel { .. } => 409,
            Self::WrongMasterKey { .. }
            | Self::DecryptionFailed { .. }
            | Self::EncryptionFailed { .. }
            | Self::MasterKeyInvalid { .. }
            | Self::KeyFile { .. }
            | Self::Randomness(_)
            | Self::Corrupt { .. }
            | Self::Database(_) => 500,
            Self::InvalidName { .. }
            | Self::InvalidPath { .. }
            | Self::InvalidSelector { .. }
            | Self::LabelInvalid { .. }
            | Self::TooManyLabels { .. }
            | Self::InvalidType { .. }
            | Self::ValueTooLarge { .. }
            | Self::ValueEmpty { .. }
            | Self::DescriptionTooLong { .. } => 400,
        }
    }

    /// True for the three "no such thing" errors, so callers (and `get_many`) can tell a
    /// missing parameter from a broken store.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::VersionNotFound { .. } | Self::LabelNotFound { .. }
        )
    }
}
