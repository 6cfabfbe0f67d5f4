//! The workflow JSON Schema, generated from the types with schemars.

use serde_json::Value;

use crate::model::Workflow;

/// Where the committed copy lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "workflows/schema/workflow.schema.json";

/// The JSON Schema of a workflow file.
pub fn workflow_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Workflow)).expect("a schema is JSON");
    if let Value::Object(map) = &mut schema {
        map.insert("$id".into(), Value::String("https://weft.dev/schema/workflow.schema.json".into()));
    }
    schema
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn workflow_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&workflow_schema()).expect("a schema serializes");
    text.push('\n');
    text
}
