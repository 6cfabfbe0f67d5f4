//! The language as a user meets it: the committed schema, validation errors
//! with positions, and run-input checks.

use serde_json::json;
use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, check_input, load, workflow_schema_text};

fn catalog() -> Catalog {
    Catalog::new(vec![ConnectorSpec {
        name: "transform".into(),
        version: "0.1.0".into(),
        actions: vec![
            ActionSpec { name: "echo".into(), input_schema: json!({}) },
            ActionSpec {
                name: "double".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": { "value": { "type": "number" } },
                    "required": ["value"]
                }),
            },
        ],
    }])
}

#[test]
fn committed_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/workflow.schema.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(path, workflow_schema_text()).unwrap();
        return;
    }
    assert!(
        committed == workflow_schema_text(),
        "{path} is stale; regenerate it with `WEFT_BLESS=1 cargo test -p weft-workflows --test language` \
         (or `weft schema > {path}`)"
    );
}

#[test]
fn a_valid_workflow_loads_with_its_dependency_graph() {
    let text = r#"{
      "name": "ok",
      "input": { "type": "object", "required": ["n"] },
      "steps": [
        { "id": "a", "uses": "transform/double", "with": { "value": "{{ input.n }}" } },
        { "id": "b", "uses": "transform@0.1.0/double", "with": { "value": "{{ steps.a.output.value }}" } },
        { "id": "c", "sleep": "10ms", "needs": ["a"] },
        { "id": "d", "uses": "transform/echo", "foreach": "steps.b.output.value | list", "with": { "i": "{{ item }}" } }
      ],
      "output": { "b": "{{ steps.b.output }}" }
    }"#;
    let def = load("ok.json", text, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(def.deps[0].len(), 0);
    assert_eq!(def.deps[1].iter().copied().collect::<Vec<_>>(), vec![0], "template references add edges");
    assert_eq!(def.deps[2].iter().copied().collect::<Vec<_>>(), vec![0]);
    assert!(def.hash.starts_with("sha256:"));
    let reformatted = load("ok.json", &text.replace('\n', " "), &catalog()).unwrap();
    assert_eq!(def.hash, reformatted.hash, "formatting does not change the content hash");
}

#[test]
fn every_problem_is_reported_at_once_with_path_and_position() {
    let text = r#"{
  "name": "broken",
  "steps": [
    { "id": "fetch", "uses": "nope/get" },
    { "id": "fetch", "uses": "transform/double", "with": { "value": "seven" } },
    { "id": "c", "uses": "transform/triple" },
    { "id": "d", "uses": "transform/echo", "needs": ["ghost"], "with": { "x": "{{ steps.zzz.output }}" } },
    { "id": "e", "sleep": "1s", "needs": ["f"] },
    { "id": "f", "sleep": "1s", "needs": ["e"] }
  ]
}"#;
    let errors = load("broken.json", text, &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    let expect = [
        ("4:22: $.steps[0].uses", "unknown connector `nope`"),
        ("5:7: $.steps[1].id", "duplicate step id `fetch`"),
        ("5:60: $.steps[1].with.value", "is not of type \"number\""),
        ("6:18: $.steps[2].uses", "has no action `triple`"),
        ("7:54: $.steps[3].needs[0]", "unknown step `ghost`"),
        ("7:74: $.steps[3].with.x", "unknown step `zzz`"),
        ("8:5: $.steps[4]", "dependency cycle: e -> f -> e"),
    ];
    for (at, what) in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(at) && l.contains(what)),
            "expected `{at}` … `{what}` among:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn structural_errors_name_the_field_and_all_are_listed() {
    let text = "{\n  \"name\": \"s\",\n  \"colour\": 1,\n  \"steps\": [\n    { \"id\": \"a\", \"sleep\": \"soon\", \"retry\": { \"max_attempts\": 0 } }\n  ]\n}";
    let errors = load("s.json", text, &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    assert!(lines.iter().any(|l| l.starts_with("3:3: $.colour: unknown field `colour`")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("5:18: $.steps[0].sleep: \"soon\" is not a duration")), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("5:46: $.steps[0].retry.max_attempts: 0 is less than the minimum of 1")),
        "{lines:#?}"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let errors = load("bad.json", "{\n  \"name\": \"x\",\n  \"steps\": [,]\n}", &catalog()).unwrap_err();
    assert_eq!(errors.items.len(), 1);
    assert_eq!((errors.items[0].line, errors.items[0].column), (3, 13), "{errors}");
}

#[test]
fn templates_are_checked_for_syntax_and_scope() {
    let text = r#"{ "name": "t", "steps": [
      { "id": "a", "uses": "transform/echo", "with": { "x": "{{ item }}", "y": "{{ oops( }}", "z": "{{ secrets.k }}" } }
    ] }"#;
    let errors = load("t.json", text, &catalog()).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("$.steps[0].with.x: `item` is only defined inside a step with `foreach`"), "{text}");
    assert!(text.contains("$.steps[0].with.y: template error"), "{text}");
    assert!(text.contains("$.steps[0].with.z: unknown name `secrets`"), "{text}");
}

#[test]
fn run_input_is_checked_against_the_input_schema() {
    let def = load(
        "i.json",
        r#"{ "name": "i", "input": { "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"] },
             "steps": [ { "id": "a", "sleep": "1ms" } ] }"#,
        &catalog(),
    )
    .unwrap();
    assert!(check_input(&def.workflow, &json!({ "n": 1 })).is_ok());
    let problems = check_input(&def.workflow, &json!({})).unwrap_err();
    assert!(problems[0].contains("\"n\" is a required property"), "{problems:?}");
}

#[test]
fn child_workflows_load_with_their_parent_and_pin_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "child.json",
        r#"{ "name": "child", "steps": [ { "id": "x", "uses": "transform/double", "with": { "value": "{{ input.n }}" } } ] }"#,
    );
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let parent = dir.path().join("sub/parent.json");
    std::fs::write(
        &parent,
        r#"{ "name": "parent", "steps": [
      { "id": "a", "uses": "transform/echo", "with": { "n": 3 } },
      { "id": "kid", "workflow": { "path": "../child.json", "input": { "n": "{{ steps.a.output.n }}" } } }
    ] }"#,
    )
    .unwrap();
    let def = weft_workflows::load_file(&parent, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(def.children["kid"].workflow.name, "child");
    assert_eq!(def.deps[1].iter().copied().collect::<Vec<_>>(), vec![0], "the child's input reads step a");

    // The stored form names the child by hash, and reads back.
    let stored = weft_workflows::Stored::parse(&def.stored_form().to_string()).unwrap();
    assert_eq!(stored.children["kid"], def.children["kid"].hash);
    assert_eq!(stored.workflow, def.workflow);

    // Changing only the child changes the parent's hash: a run pins both.
    write("child.json", r#"{ "name": "child", "steps": [ { "id": "y", "uses": "transform/echo" } ] }"#);
    let changed = weft_workflows::load_file(&parent, &catalog()).unwrap();
    assert_ne!(changed.hash, def.hash);
}

#[test]
fn child_workflow_problems_are_reported_through_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    write("broken.json", "{ \"name\": \"b\",\n  \"steps\": [ { \"id\": \"x\", \"uses\": \"nope/go\" } ] }");
    write("a.json", r#"{ "name": "a", "steps": [ { "id": "to_b", "workflow": { "path": "b.json" } } ] }"#);
    write("b.json", r#"{ "name": "b", "steps": [ { "id": "to_a", "workflow": { "path": "a.json" } } ] }"#);
    let parent = write(
        "parent.json",
        r#"{ "name": "p", "steps": [
  { "id": "one", "workflow": { "path": "broken.json" } },
  { "id": "two", "workflow": { "path": "missing.json" } },
  { "id": "three", "workflow": { "path": "a.json" } }
] }"#,
    );
    let errors = weft_workflows::load_file(&parent, &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("2:32: $.steps[0].workflow.path: in child workflow"), "{lines:#?}");
    assert!(lines[0].contains("broken.json:2:27: $.steps[0].uses: unknown connector `nope`"), "{lines:#?}");
    assert!(lines[1].starts_with("3:32: $.steps[1].workflow.path: cannot read child workflow"), "{lines:#?}");
    assert!(lines[2].contains("child workflows form a cycle"), "{lines:#?}");
    assert!(lines[2].contains("a.json -> ") && lines[2].contains("b.json -> "), "{lines:#?}");
}
