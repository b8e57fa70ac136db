//! The JSON Schema committed at `schema/gantry.schema.json` (for editors) is
//! the one `pipeline_schema()` generates, so it cannot drift from the code.

use std::path::Path;

use gantry_spec::pipeline::pipeline_schema;

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/gantry.schema.json");
    let generated = match serde_json::to_string_pretty(&pipeline_schema()) {
        Ok(json) => json + "\n",
        Err(err) => panic!("the schema does not serialize: {err}"),
    };
    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create schema/");
        }
        std::fs::write(&path, &generated).expect("write the schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema the code generates; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p gantry-spec --test schema` and commit the result",
        path.display()
    );
}
