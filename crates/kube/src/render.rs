//! Manifests as one multi-document YAML, for people and `kubectl apply
//! --dry-run`: each object as the API would take it, in apply order, a
//! comment line above each naming it. Secret values never appear: the
//! manifests carry none until a deploy fills them, and a Secret's comment
//! names the parameter versions gantry would read.

use serde::Serialize;

use crate::error::KubeError;
use crate::manifest::{ANNOTATION_PARAMETERS, Manifests};

/// The YAML text of `manifests`, documents separated by `---`.
pub fn to_yaml(manifests: &Manifests) -> Result<String, KubeError> {
    let mut out = String::new();
    document(
        &mut out,
        &format!(
            "Namespace {}",
            manifests.namespace.metadata.name.as_deref().unwrap_or("")
        ),
        &manifests.namespace,
    )?;
    for service in &manifests.services {
        if let Some(secret) = &service.secret {
            let name = secret.metadata.name.as_deref().unwrap_or("");
            let versions = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_PARAMETERS))
                .map(|p| p.replace('\n', ", "))
                .unwrap_or_default();
            // Rendered manifests must never hold a value, whatever the
            // caller filled in.
            let mut shown = secret.clone();
            if let Some(data) = shown.data.as_mut() {
                for value in data.values_mut() {
                    value.0.clear();
                }
            }
            document(
                &mut out,
                &format!(
                    "Secret {name}: values not shown; gantry fills them at deploy from {versions}"
                ),
                &shown,
            )?;
        }
        let name = service.deployment.metadata.name.as_deref().unwrap_or("");
        document(&mut out, &format!("Deployment {name}"), &service.deployment)?;
        document(&mut out, &format!("Service {name}"), &service.service)?;
    }
    Ok(out)
}

fn document<T: Serialize>(out: &mut String, comment: &str, object: &T) -> Result<(), KubeError> {
    let value = serde_json::to_value(object).map_err(|e| KubeError::Manifest {
        object: comment.to_owned(),
        reason: e.to_string(),
    })?;
    let text = serde_saphyr::to_string(&value).map_err(|e| KubeError::Manifest {
        object: comment.to_owned(),
        reason: e.to_string(),
    })?;
    out.push_str("---\n# ");
    out.push_str(comment);
    out.push('\n');
    out.push_str(&text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    Ok(())
}

/// Every object of a multi-document YAML text, as JSON values (for tests
/// and for reading rendered manifests back).
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, KubeError> {
    serde_saphyr::from_str_multiple(text).map_err(|e| KubeError::Manifest {
        object: "rendered manifests".to_owned(),
        reason: e.to_string(),
    })
}
