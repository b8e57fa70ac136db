//! The parameter store: reading, writing, labelling and deleting
//! parameters, and rotating the master key.
//!
//! Answers declare their fields in alphabetical order, the order the JSON
//! had when the server built it as a `serde_json::Value` (a sorted map), so
//! they keep their bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One version of a parameter (`GET /api/v1/params/get`, and the items of
/// `list` and `history`). A SecureString read without decryption shows
/// `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterView {
    pub description: Option<String>,
    /// The labels on this version, sorted.
    pub labels: Vec<String>,
    /// RFC 3339.
    pub last_modified: String,
    pub modified_by: String,
    pub name: String,
    /// `String`, `StringList` or `SecureString`.
    #[serde(rename = "type")]
    pub param_type: String,
    pub value: String,
    pub version: u64,
}

/// `POST /api/v1/params/put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PutParameterRequest {
    pub name: String,
    pub value: String,
    /// `String` (default), `StringList` or `SecureString`.
    #[serde(rename = "type", default)]
    pub param_type: Option<String>,
    /// Required to write a new version of an existing parameter.
    #[serde(default)]
    pub overwrite: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Ignored: versions are recorded as modified by the caller's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The version a put wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterPut {
    pub name: String,
    pub version: u64,
}

/// `POST /api/v1/params/label`: attaches labels to a version (the latest
/// when `version` is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelParameterRequest {
    pub name: String,
    #[serde(default)]
    pub version: Option<u64>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterLabelled {
    /// The labels that were not attached because they are not valid labels.
    pub invalid_labels: Vec<String>,
    pub name: String,
    pub version: u64,
}

/// `POST /api/v1/params/delete`: a parameter and all its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeleteParameterRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterDeleted {
    /// Always true.
    pub deleted: bool,
    pub name: String,
}

/// `POST /api/v1/params/rotate-key`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RotateKeyRequest {
    /// The new key (64 hex characters). Required when the current key comes
    /// from `GANTRY_MASTER_KEY`; otherwise a new key is generated and the key
    /// file is replaced once every version is re-encrypted.
    #[serde(default)]
    pub new_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRotated {
    /// The new master key's id.
    pub key_id: String,
    /// How many SecureString versions were re-encrypted.
    pub rotated_versions: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    #[test]
    fn parameter_answers_keep_their_bytes() {
        same_bytes(
            &ParameterView {
                description: None,
                labels: vec!["prod".into()],
                last_modified: "2026-01-01T00:00:00Z".into(),
                modified_by: "ann".into(),
                name: "/shop/db".into(),
                param_type: "SecureString".into(),
                value: "***".into(),
                version: 3,
            },
            json!({
                "name": "/shop/db", "type": "SecureString", "version": 3, "value": "***",
                "labels": ["prod"], "description": null,
                "last_modified": "2026-01-01T00:00:00Z", "modified_by": "ann",
            }),
        );
        same_bytes(
            &ParameterPut {
                name: "/a".into(),
                version: 2,
            },
            json!({"name": "/a", "version": 2}),
        );
        same_bytes(
            &ParameterLabelled {
                invalid_labels: vec!["1x".into()],
                name: "/a".into(),
                version: 2,
            },
            json!({"name": "/a", "version": 2, "invalid_labels": ["1x"]}),
        );
        same_bytes(
            &ParameterDeleted {
                deleted: true,
                name: "/a".into(),
            },
            json!({"name": "/a", "deleted": true}),
        );
        same_bytes(
            &KeyRotated {
                key_id: "k2".into(),
                rotated_versions: 4,
            },
            json!({"rotated_versions": 4, "key_id": "k2"}),
        );
    }
}
