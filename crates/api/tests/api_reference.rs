//! `docs/api.md`, the HTTP API's reference, written from the route table
//! and the OpenAPI document (`gantry_api::openapi`) so it cannot drift from
//! what the server serves: every operation with its role, parameters,
//! bodies and error statuses, grouped by area in the table's order, then
//! every type the operations name, with its fields. Run with
//! `UPDATE_DOCS=1` after changing a route or a type of the API.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_api::openapi::{self, ROUTES, Route};
use serde_json::Value;

const BLESS: &str = "UPDATE_DOCS=1 cargo test -p gantry-api --test api_reference";

/// The area a route belongs to, by its path's first segment after the
/// prefix; an unknown segment is an area of its own.
fn area(path: &str) -> String {
    let rest = path
        .strip_prefix("/api/v1/")
        .unwrap_or(path.trim_start_matches('/'));
    let segment = rest.split('/').next().unwrap_or(rest);
    let title = match segment {
        "health" | "openapi.json" | "metrics" | "whoami" | "changes" | "shutdown" => "The server",
        "executions" => "Executions and approvals",
        "params" => "Parameters",
        "apply" | "environments" => "Environments and deployments",
        "users" | "tokens" | "audit" => "Users, tokens and the audit log",
        "pipelines" | "triggers" | "hooks" => "Pipelines and triggers",
        "registry" => "The embedded registry",
        other => other,
    };
    title.to_string()
}

/// A description on one line, fit for a table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The name of the component a `$ref` points at.
fn ref_name(reference: &str) -> &str {
    reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or(reference)
}

/// A link to a type's section below.
fn type_link(name: &str) -> String {
    format!("[`{name}`](#{})", name.to_ascii_lowercase())
}

/// A schema's type in words: `string`, `array of [`StageView`]`,
/// `map of string`, `"Succeeded"`, `integer or null`.
fn type_of(schema: &Value) -> String {
    let Some(object) = schema.as_object() else {
        return "any JSON".to_string();
    };
    if let Some(Value::String(reference)) = object.get("$ref") {
        return type_link(ref_name(reference));
    }
    if let Some(constant) = object.get("const") {
        return format!("`{constant}`");
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return values.join(" \\| ");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = object.get(key) {
            let (nulls, others): (Vec<&Value>, Vec<&Value>) = options
                .iter()
                .partition(|o| o.get("type") == Some(&"null".into()));
            let mut words: Vec<String> = others.into_iter().map(type_of).collect();
            if !nulls.is_empty() {
                words.push("null".to_string());
            }
            return words.join(" or ");
        }
    }
    let types: Vec<&str> = match object.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return "any JSON".to_string(),
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!(
                "array of {}",
                object.get("items").map_or("any JSON".to_string(), type_of)
            ),
            "object" => match object.get("additionalProperties") {
                Some(Value::Bool(false)) | None => "object".to_string(),
                Some(values) => format!("map of {}", type_of(values)),
            },
            other => other.to_string(),
        })
        .collect();
    words.join(" or ")
}

/// The table of an object schema's fields: name, type, whether it is
/// required (or its default), description.
fn fields_table(schema: &Value, out: &mut String) {
    let Some(Value::Object(properties)) = schema.get("properties") else {
        out.push_str("No fields.\n");
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
    for (name, property) in properties {
        let needed = if required.contains(&name.as_str()) {
            "yes".to_string()
        } else {
            match property.get("default") {
                Some(default) => format!("no (default `{default}`)"),
                None => "no".to_string(),
            }
        };
        let description = property
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        out.push_str(&format!(
            "| `{name}` | {} | {needed} | {} |\n",
            type_of(property),
            cell(description)
        ));
    }
}

/// A type's section: its description, then its fields (for each variant
/// of a union, named by the field that tells them apart).
fn type_section(name: &str, schema: &Value, out: &mut String) {
    out.push_str(&format!("\n### `{name}`\n\n"));
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        out.push_str(description.trim());
        out.push_str("\n\n");
    }
    if schema.get("properties").is_some() {
        fields_table(schema, out);
        return;
    }
    let variants = ["oneOf", "anyOf"]
        .iter()
        .find_map(|key| schema.get(*key).and_then(Value::as_array));
    match variants {
        Some(variants) => {
            out.push_str("One of:\n");
            for variant in variants {
                if variant.get("properties").is_none() {
                    let description = variant
                        .get("description")
                        .and_then(Value::as_str)
                        .map(|d| format!(": {}", cell(d)))
                        .unwrap_or_default();
                    out.push_str(&format!("\n- {}{description}\n", type_of(variant)));
                    continue;
                }
                let tag = variant["properties"]
                    .as_object()
                    .and_then(|p| p.iter().find(|(_, v)| v.get("const").is_some()))
                    .map(|(field, v)| format!("when `{field}` is `{}`", v["const"]))
                    .unwrap_or_else(|| "an object".to_string());
                out.push_str(&format!("\n{tag}:\n\n"));
                fields_table(variant, out);
            }
        }
        None => out.push_str(&format!("Type: {}.\n", type_of(schema))),
    }
}

/// A body's schema in the document: a link to its type, or its type in
/// words, with its media type unless it is JSON.
fn body(content: &Value) -> String {
    match content.as_object().and_then(|c| c.iter().next()) {
        Some((media, body)) if media == "application/json" => type_of(&body["schema"]),
        Some((media, body)) => format!("{} (`{media}`)", type_of(&body["schema"])),
        None => "nothing".to_string(),
    }
}

/// One operation's section.
fn operation_section(route: &Route, document: &Value, out: &mut String) {
    let method = route.method.as_str();
    let op = &document["paths"][route.path][method.to_ascii_lowercase()];
    out.push_str(&format!(
        "\n### `{method} {}`\n\n{}\n\n",
        route.path,
        route.summary.trim()
    ));
    out.push_str(&format!(
        "- Operation: `{}`\n- Role: {}\n",
        route.id,
        route.role.as_str()
    ));
    let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
    let path: Vec<String> = parameters
        .iter()
        .filter(|p| p["in"] == "path")
        .map(|p| format!("`{}`", p["name"].as_str().unwrap_or("")))
        .collect();
    if !path.is_empty() {
        out.push_str(&format!("- Path parameters: {}\n", path.join(", ")));
    }
    if let Some(request) = op.get("requestBody") {
        out.push_str(&format!("- Request body: {}\n", body(&request["content"])));
    }
    let answer = &op["responses"][route.status.to_string()];
    let mut answer_line = format!("- Answer: {} {}", route.status, body(&answer["content"]));
    // The webhook endpoint answers 200 too, with the same body.
    if route.status != 200 && op["responses"].get("200").is_some() {
        answer_line.push_str(" (or 200)");
    }
    out.push_str(&answer_line);
    out.push('\n');
    let errors: Vec<String> = openapi::error_statuses(route)
        .iter()
        .map(u16::to_string)
        .collect();
    out.push_str(&format!(
        "- Errors: {} (each an {})\n",
        errors.join(", "),
        type_link("ErrorBody")
    ));
    let query: Vec<&Value> = parameters.iter().filter(|p| p["in"] == "query").collect();
    if !query.is_empty() {
        out.push_str(
            "\nQuery parameters:\n\n| name | type | required | description |\n|---|---|---|---|\n",
        );
        for parameter in query {
            let schema = &parameter["schema"];
            let required = if parameter["required"] == true {
                "yes".to_string()
            } else {
                match schema.get("default") {
                    Some(default) => format!("no (default `{default}`)"),
                    None => "no".to_string(),
                }
            };
            out.push_str(&format!(
                "| `{}` | {} | {required} | {} |\n",
                parameter["name"].as_str().unwrap_or(""),
                type_of(schema),
                cell(parameter["description"].as_str().unwrap_or(""))
            ));
        }
    }
}

/// The whole page.
fn api_reference() -> String {
    let document = openapi::document();
    let mut out = format!(
        "# gantry's HTTP API\n\n\
         Generated by `crates/api/tests/api_reference.rs` from the route table and the \
         OpenAPI 3.1 document of `gantry_api::openapi` (`{BLESS}`); do not edit by hand. \
         A running server serves the same document at `GET /api/v1/openapi.json`.\n\n\
         {}\n\n\
         Requests and answers are JSON. A role is what a token's grants must give for the \
         route's object (docs/formats.md, the role table): scoped grants \
         (`operator:env=staging`) narrow it to what they cover.\n",
        document["info"]["description"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );

    // The statuses answered, with what each means.
    let mut statuses = BTreeMap::new();
    for item in document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let description = response["description"].as_str().unwrap_or("");
                statuses.insert(status.clone(), description.to_string());
            }
        }
    }
    out.push_str("\n## Statuses\n\n| status | meaning |\n|---|---|\n");
    for (status, description) in &statuses {
        out.push_str(&format!("| {status} | {} |\n", cell(description)));
    }

    let mut areas: Vec<String> = Vec::new();
    for route in ROUTES {
        let area = area(route.path);
        if !areas.contains(&area) {
            areas.push(area);
        }
    }
    for area_title in &areas {
        out.push_str(&format!("\n## {area_title}\n"));
        for route in ROUTES.iter().filter(|r| &area(r.path) == area_title) {
            operation_section(route, &document, &mut out);
        }
    }

    out.push_str(
        "\n## Types\n\nThe bodies named above, from their JSON Schemas \
         (`components/schemas`), in alphabetical order.\n",
    );
    for (name, schema) in document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        type_section(name, schema, &mut out);
    }
    out
}

#[test]
fn docs_api_md_is_the_reference_generated_from_the_route_table() {
    let page = api_reference();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &page).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == page,
        "docs/api.md is stale (the route table or an API type changed): run {BLESS}"
    );
}
