//! Reading a pipeline file and the files it includes, on the client: the
//! server never reads a path a request names, so the CLI sends the text of
//! every file. An include must stay inside the including file's directory
//! tree, symlinks resolved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A file as the API takes it: its absolute path (for errors and `.`
/// paths), its text, and the text of each file it includes.
pub(crate) struct ProjectFiles {
    pub(crate) file: PathBuf,
    pub(crate) text: String,
    pub(crate) includes: BTreeMap<String, String>,
}

impl ProjectFiles {
    pub(crate) fn read(file: &Path) -> Result<ProjectFiles> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Self::with_text(file, text)
    }

    pub(crate) fn with_text(file: &Path, text: String) -> Result<ProjectFiles> {
        let absolute = std::fs::canonicalize(file)
            .with_context(|| format!("cannot resolve {}", file.display()))?;
        let base = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut includes = BTreeMap::new();
        // An invalid file is sent as it is: the server reports its errors.
        if let Ok(document) = gantry_spec::parse_document(&file.display().to_string(), &text) {
            for include in &document.includes {
                let path = base.join(&include.value);
                let resolved = std::fs::canonicalize(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if !resolved.starts_with(&base) {
                    bail!(
                        "{}:{}:{}: `{}` leaves {} (it resolves to {})",
                        file.display(),
                        include.location.line,
                        include.location.col,
                        include.value,
                        base.display(),
                        resolved.display()
                    );
                }
                let included = std::fs::read_to_string(&resolved)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                includes.insert(include.value.clone(), included);
            }
        }
        Ok(ProjectFiles {
            file: absolute,
            text,
            includes,
        })
    }
}
