//! Turning references in service and build definitions into values.

use crate::error::ParamError;
use crate::name::{ParamName, Selector};
use crate::secret::SecretValue;
use crate::store::{ParamStore, ParamValue, fetch_selected};

/// One resolved reference: which variable it feeds, and exactly which version it came
/// from, so a deployment or approval can record what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedParam {
    pub var: String,
    pub name: ParamName,
    pub version: u64,
    /// True for a SecureString: callers should mask this value in logs.
    pub secret: bool,
    pub value: SecretValue,
}

impl ParamStore {
    /// Resolves `(variable, selector)` pairs, decrypting SecureStrings, from one
    /// consistent snapshot of the store: a concurrent put can't leave half the
    /// references on the old value and half on the new.
    ///
    /// Fails on the first reference that picks nothing, with
    /// [`ParamError::Unresolved`] naming the variable and the parameter; other errors
    /// (a wrong master key, say) are returned as they are.
    pub async fn resolve<V: AsRef<str>>(
        &self,
        refs: &[(V, Selector)],
    ) -> Result<Vec<ResolvedParam>, ParamError> {
        let key = self.key.read().await;
        let mut tx = self.snapshot().await?;
        let mut resolved = Vec::with_capacity(refs.len());
        for (var, selector) in refs {
            let var = var.as_ref();
            let row = fetch_selected(&mut tx, selector).await.map_err(|e| {
                if e.is_not_found() {
                    ParamError::Unresolved {
                        var: var.to_owned(),
                        selector: selector.to_string(),
                        source: Box::new(e),
                    }
                } else {
                    e
                }
            })?;
            let value = match row.value(true, &key)? {
                ParamValue::Plain(text) => SecretValue::new(text),
                ParamValue::Secret(secret) => secret,
                // Unreachable with decrypt = true, but a wrong guess here must not
                // hand out an empty value as if it were the parameter's.
                ParamValue::Encrypted => {
                    return Err(ParamError::Corrupt {
                        reason: format!("{} was not decrypted", row.name),
                    });
                }
            };
            resolved.push(ResolvedParam {
                var: var.to_owned(),
                secret: row.param_type.is_secure(),
                name: row.name,
                version: row.version,
                value,
            });
        }
        tx.commit().await?;
        Ok(resolved)
    }
}

/// Substitutes `${environment}` in a parameter reference, so one service definition
/// can point at `/shop/${environment}/SERVICE_DNS` and get `/shop/staging/SERVICE_DNS`
/// in staging. Other `${...}` text is left alone; it then fails name validation with a
/// clear message rather than silently becoming something else.
pub fn expand_environment(template: &str, environment: &str) -> String {
    template.replace("${environment}", environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_substituted_everywhere() {
        assert_eq!(
            expand_environment("/shop/${environment}/SERVICE_DNS", "staging"),
            "/shop/staging/SERVICE_DNS"
        );
        assert_eq!(
            expand_environment("/${environment}/${environment}", "prod"),
            "/prod/prod"
        );
        assert_eq!(expand_environment("/plain", "prod"), "/plain");
        let other = expand_environment("/shop/${region}/x", "prod");
        assert_eq!(
            ParamName::parse(&other).unwrap_err().code(),
            "param.invalid_name"
        );
    }
}
