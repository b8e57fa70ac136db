//! `#{namespace.NAME}` references inside strings, resolved just before an
//! action starts.

// CONTRACT (spec helper implements):
// pub struct VarRef { pub namespace: String, pub name: String }
// pub fn references(s: &str) -> Result<Vec<VarRef>, String>          // all refs in a string, syntax errors as message
// pub fn resolve(s: &str, lookup: impl Fn(&VarRef) -> Option<String>) -> Result<String, TemplateError>
//   TemplateError names the first unresolvable reference: "unresolved variable #{Build.IMAGE_TAG}"
