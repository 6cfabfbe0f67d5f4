//! The language as a user meets it: the committed schema, validation errors
//! with positions, and run-input checks.

use serde_json::json;
use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, check_input, load, workflow_schema_text};

fn catalog() -> Catalog {
    Catalog::new(vec![ConnectorSpec {
        name: "transform".into(),
        version: "0.1.0".into(),
        actions: vec![
            ActionSpec { name: "echo".into(), input_schema: json!({}), output_schema: json!({}) },
            ActionSpec {
                name: "double".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": { "value": { "type": "number" } },
                    "required": ["value"]
                }),
                output_schema: json!({
                    "type": "object",
                    "properties": { "value": { "$ref": "#/$defs/Amount" } },
                    "required": ["value"],
                    "$defs": { "Amount": { "type": "object", "properties": { "cents": { "type": "integer" } } } }
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
fn schema_problems_do_not_hide_the_others() {
    let text = r#"{
  "name": "both",
  "colour": 1,
  "trigger": { "schedule": { "cron": "0 25 * * *", "timezone": "Mars/Olympus" } },
  "steps": [
    { "id": "a", "uses": "nope/get" },
    { "id": "b", "uses": "transform/echo", "needs": ["ghost"] },
    { "id": "c", "uses": "nosuch/thing", "retries": 3 }
  ]
}"#;
    let errors = load("both.json", text, &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    let expect = [
        ("3:3: $.colour", "unknown field `colour`"),
        ("4:30: $.trigger.schedule.cron", "`0 25 * * *` is not a cron expression of five fields"),
        ("4:52: $.trigger.schedule.timezone", "`Mars/Olympus` is not an IANA time zone"),
        ("6:18: $.steps[0].uses", "unknown connector `nope`"),
        ("7:54: $.steps[1].needs[0]", "unknown step `ghost`"),
        ("8:42: $.steps[2].retries", "unknown field `retries`"),
        ("8:18: $.steps[2].uses", "unknown connector `nosuch`"),
    ];
    for (at, what) in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(at) && l.contains(what)),
            "expected `{at}` … `{what}` among:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
}

#[test]
fn schedules_take_five_field_cron_expressions_and_iana_time_zones() {
    for (cron, zone) in [("0 9 * * 1-5", "Europe/Berlin"), ("*/15 * * * *", "UTC"), ("0 0 1 jan *", "America/New_York")]
    {
        let text = json!({ "name": "s", "trigger": { "schedule": { "cron": cron, "timezone": zone } },
                           "steps": [{ "id": "a", "sleep": "1s" }] })
        .to_string();
        load("s.json", &text, &catalog()).unwrap_or_else(|e| panic!("{cron} {zone}: {e}"));
    }
    for cron in ["0 9 * *", "0 0 9 * * 1-5", "61 * * * *", "* * * * mon-xyz", ""] {
        let text = json!({ "name": "s", "trigger": { "schedule": { "cron": cron } },
                           "steps": [{ "id": "a", "sleep": "1s" }] })
        .to_string();
        let errors = load("s.json", &text, &catalog()).unwrap_err().to_string();
        assert!(
            errors.contains("$.trigger.schedule.cron") && errors.contains("is not a cron expression"),
            "{cron}: {errors}"
        );
    }
}

/// The names between two markers of docs/workflows.md's template section,
/// each in backticks: `abs`, `attr`, ….
fn documented(after: &str, until: &str) -> Vec<String> {
    let docs = include_str!("../../docs/workflows.md");
    let start = docs.find(after).unwrap_or_else(|| panic!("docs/workflows.md lacks {after:?}")) + after.len();
    let end = start + docs[start..].find(until).unwrap();
    docs[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_filters_and_tests_the_docs_list_exist() {
    let filters = documented("Filters (`{{ input.name | upper }}`):", ". Tests");
    assert!(filters.len() > 40, "{filters:?}");
    for filter in filters {
        // Arguments may be wrong for some; the filter must exist.
        if let Err(e) = weft_workflows::expr::eval(&format!("[1, 2] | {filter}"), &json!({})) {
            assert!(!e.to_string().contains("unknown filter"), "`{filter}`: {e}");
        }
    }
    let tests = documented("`\"if\": \"input.n is even\"`):", "They are");
    assert!(tests.len() > 30, "{tests:?}");
    for test in tests {
        if let Err(e) = weft_workflows::expr::eval(&format!("2 is {test}"), &json!({})) {
            assert!(!e.to_string().contains("unknown test"), "`{test}`: {e}");
        }
    }
    // A name that is not there fails as unknown: the check above can fail.
    let e = weft_workflows::expr::eval("[1] | no_such_filter", &json!({})).unwrap_err();
    assert!(e.to_string().contains("unknown filter"), "{e}");
}

#[test]
fn templates_read_only_fields_that_an_actions_output_has() {
    let workflow = |read: &str| {
        json!({ "name": "o", "steps": [
            { "id": "d", "uses": "transform/double", "with": { "value": 1 } },
            { "id": "f", "uses": "transform/echo" },
            { "id": "e", "uses": "transform/echo", "with": { "x": read } },
            { "id": "each", "uses": "transform/double", "foreach": "[1]", "with": { "value": "{{ item }}" } }
        ], "output": read })
        .to_string()
    };
    for fine in [
        "{{ steps.d.output.value.cents }}",
        "{{ steps.d.output.value }}",
        "{{ steps.f.output.anything.at.all }}",
        "{{ steps.d.error.message }}",
        "{{ steps.each.output }}",
    ] {
        load("o.json", &workflow(fine), &catalog()).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    let errors = load("o.json", &workflow("{{ steps.d.output.valeu }}"), &catalog()).unwrap_err().to_string();
    assert!(
        errors.contains("$.steps[2].with.x: `steps.d.output` (transform/double) has no field `valeu`; it has: value")
            && errors.contains("$.output: `steps.d.output` (transform/double) has no field `valeu`"),
        "{errors}"
    );
    let errors = load("o.json", &workflow("{{ steps.d.output.value.euros }}"), &catalog()).unwrap_err().to_string();
    assert!(
        errors.contains("`steps.d.output.value` (transform/double) has no field `euros`; it has: cents"),
        "{errors}"
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

#[test]
fn a_yaml_workflow_is_the_same_workflow_as_its_json() {
    let json = r#"{
      "name": "ok",
      "steps": [
        { "id": "a", "uses": "transform/double", "with": { "value": "{{ input.n }}" }, "retry": { "max_attempts": 3 } },
        { "id": "b", "uses": "transform/echo", "needs": ["a"], "if": "steps.a.output.value > 2", "with": { "on": true, "n": 1.5, "none": null } }
      ]
    }"#;
    let yaml = r#"# yaml-language-server: $schema=../workflows/schema/workflow.schema.json
name: ok
steps:
  - id: a
    uses: transform/double
    with:
      value: "{{ input.n }}"
    retry:
      max_attempts: 3
  - id: b
    uses: transform/echo
    needs: [a]
    if: steps.a.output.value > 2
    with: { on: true, n: 1.5, none: ~ }
"#;
    let from_json = load("ok.json", json, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    let from_yaml = load("ok.yaml", yaml, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_yaml.hash, from_json.hash, "a workflow's hash does not depend on its file format");
    assert_eq!(from_yaml.workflow.steps[1].id, "b");

    let anchored = "name: a\nsteps:\n  - id: a\n    uses: transform/echo\n    with: &shared { n: 1 }\n  - id: b\n    uses: transform/echo\n    with: *shared\n";
    let def = load("a.yaml", anchored, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(def.workflow.steps[1].input_template(), def.workflow.steps[0].input_template(), "aliases are resolved");
}

#[test]
fn yaml_problems_point_into_the_yaml_text() {
    let yaml = "name: broken\nsteps:\n  - id: fetch\n    uses: nope/get\n  - id: fetch\n    uses: transform/double\n    with:\n      value: seven\n";
    let errors = load("broken.yml", yaml, &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    for expected in [
        "4:5: $.steps[0].uses: unknown connector `nope`",
        "5:5: $.steps[1].id: duplicate step id `fetch`",
        "8:7: $.steps[1].with.value: input for `transform/double`: \"seven\" is not of type \"number\"",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(expected)), "expected `{expected}` among:\n{}", lines.join("\n"));
    }

    // Structure is checked before meaning, as for JSON.
    let errors = load("broken.yml", &format!("{yaml}    colour: red\n"), &catalog()).unwrap_err();
    let lines: Vec<String> = errors.items.iter().map(|d| d.to_string()).collect();
    assert!(lines.iter().any(|l| l.starts_with("9:5: $.steps[1].colour: unknown field `colour`")), "{lines:#?}");
}

#[test]
fn yaml_that_cannot_be_a_workflow_is_refused_with_its_position() {
    let cases = [
        ("name: x\nsteps:\n  - id: a\n     uses: b\n", "4:10", "invalid YAML"),
        ("name: x\nname: y\nsteps: []\n", "2:1", "duplicated key"),
        (
            "name: x\nsteps:\n  - id: a\n    uses: transform/echo\n    with: { x: {{ input.x }} }\n",
            "5:17",
            "must be quoted",
        ),
        ("name: x\nsteps: !custom []\n", "2:8", "YAML tags such as"),
        ("name: a\n---\nname: b\n", "3:1", "one YAML document"),
        ("# nothing here\n", "1:1", "no YAML document"),
        ("name: x\nsteps:\n  - id: a\n    sleep: 1s\n    with: { .nan: 1 }\n", "5:13", "must be text"),
    ];
    for (text, at, what) in cases {
        let errors = load("w.yaml", text, &catalog()).unwrap_err();
        let first = errors.items[0].to_string();
        assert!(
            first.starts_with(at) && first.contains(what),
            "for {text:?}: expected `{at}` … `{what}`, got `{first}`"
        );
    }
}

/// Loading reads nothing on its own: child workflows come from the loader
/// given (files for the CLI; a server reads its stored versions).
#[test]
fn child_workflows_come_from_the_loader_given() {
    struct Stored(std::collections::BTreeMap<&'static str, String>);
    impl weft_workflows::Loader for Stored {
        fn child(&self, _parent: &str, path: &str) -> Result<weft_workflows::Source, String> {
            let text = self.0.get(path).ok_or_else(|| format!("no stored workflow `{path}`"))?;
            Ok(weft_workflows::Source { name: path.to_string(), text: text.clone() })
        }
    }
    let parent = r#"{ "name": "p", "steps": [ { "id": "kid", "workflow": { "path": "kid" } } ] }"#;
    let kid = r#"{ "name": "kid", "steps": [ { "id": "x", "uses": "transform/echo" } ] }"#.to_string();

    let refused = load("p.json", parent, &catalog()).unwrap_err();
    assert_eq!(refused.items[0].path.to_string(), "$.steps[0].workflow.path");
    assert!(refused.items[0].message.contains("cannot be loaded here"), "{refused}");

    let stored = Stored([("kid", kid)].into());
    let def = weft_workflows::load_with("p.json", parent, &catalog(), &stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(def.children["kid"].workflow.name, "kid");

    let looped = Stored([("kid", parent.replace("\"p\"", "\"kid\""))].into());
    let cycle = weft_workflows::load_with("kid", parent, &catalog(), &looped).unwrap_err();
    assert!(cycle.to_string().contains("cycle"), "{cycle}");
}

/// Hostile YAML and long chains: alias bombs (through values or keys),
/// nesting past the limit, and a 50,000-step `needs` chain end in bounded
/// time and memory with a positioned error, and do not overflow the stack.
#[test]
fn hostile_documents_are_refused_or_loaded_without_blowing_up() {
    let mut bomb = String::from("name: x\na0: &a0 {k: v}\n");
    for i in 1..30 {
        bomb.push_str(&format!("a{i}: &a{i} {{ *a{p} : 1, x: *a{p} }}\n", p = i - 1));
    }
    bomb.push_str("steps: []\n");
    let mut keys_only = String::from("name: x\nk0: &k0 {k: v}\n");
    for i in 1..30 {
        keys_only.push_str(&format!("k{i}: &k{i} {{ *k{p} : 1, ? *k{p} : 2 }}\n", p = i - 1));
    }
    keys_only.push_str("steps: []\n");
    let flow = format!("name: x\nsteps: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let mut block = String::from("name: x\nsteps:\n");
    for level in 0..3000 {
        block.push_str(&format!("{}- k:\n", " ".repeat(2 + 2 * level)));
    }
    let aliased_depth = format!("name: x\nd: &d {}1{}\nsteps: [[[[[[[*d]]]]]]]\n", "[".repeat(60), "]".repeat(60));
    let cases = [
        (bomb, "expand past the limit of 100000 nodes"),
        (keys_only, "expand past the limit of 100000 nodes"),
        (flow, "recursion limit exceeded"),
        (block, "the workflow nests deeper than the limit of 64 levels"),
        (aliased_depth, "nests deeper than the limit of 64 levels"),
    ];
    for (text, expected) in cases {
        let errors = load("w.yaml", &text, &catalog()).unwrap_err();
        assert!(errors.items[0].message.contains(expected), "expected {expected:?}, got {errors}");
    }
    // The error names where the nesting went too deep, not the document root.
    let mut deep = String::from("name: x\nsteps:\n  - id: a\n    uses: transform/echo\n    with:\n");
    for level in 0..100 {
        deep.push_str(&format!("{}k{level}:\n", " ".repeat(6 + 2 * level)));
    }
    let errors = load("w.yaml", &deep, &catalog()).unwrap_err();
    let path = errors.items[0].path.to_string();
    assert!(path.starts_with("$.steps[0].with.k0.k1"), "too deep at {path}: {errors}");
    assert!(errors.items[0].line > 60, "{errors}");
    // Aliases within the limits still work.
    let fine = "name: x\nsteps:\n  - &step { id: a, sleep: 1s }\n  - { id: b, sleep: 1s, needs: [a] }\n";
    assert_eq!(load("w.yaml", fine, &catalog()).unwrap().workflow.steps.len(), 2);

    // A 50,000-step chain, and the same chain closed into a cycle.
    let steps: Vec<serde_json::Value> = (0..50_000)
        .map(|i| match i {
            0 => json!({ "id": "s0", "sleep": "1ms" }),
            _ => json!({ "id": format!("s{i}"), "sleep": "1ms", "needs": [format!("s{}", i - 1)] }),
        })
        .collect();
    let mut chain = json!({ "name": "chain", "steps": steps });
    let child = std::thread::Builder::new().stack_size(256 << 10);
    let loaded = child
        .spawn({
            let text = chain.to_string();
            move || load("w.json", &text, &Catalog::default()).map(|d| d.workflow.steps.len())
        })
        .unwrap()
        .join()
        .expect("loading a long chain overflowed a 256 KiB stack");
    assert_eq!(loaded.unwrap(), 50_000);
    chain["steps"][0]["needs"] = json!(["s49999"]);
    let errors = load("w.json", &chain.to_string(), &Catalog::default()).unwrap_err();
    let expected = "dependency cycle: s0 -> s49999 -> s49998 -> s49997 -> s49996 -> s49995 -> … 49991 more … -> s3 -> s2 -> s1 -> s0";
    assert!(
        errors.items.iter().any(|d| d.message == expected),
        "{}",
        &errors.to_string()[..500.min(errors.to_string().len())]
    );
}

/// The README's example does what its text says: the fan-out waits for the
/// sleep and the approval, not only for the step whose output it reads.
#[test]
fn the_readme_example_fans_out_after_the_approval() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## A workflow").expect("README has `## A workflow`")..];
    let start = section.find("```json\n").expect("a JSON block") + "```json\n".len();
    let text = &section[start..start + section[start..].find("```").unwrap()];
    let spec = |name: &str, action: &str| ConnectorSpec {
        name: name.into(),
        version: "0.1.0".into(),
        actions: vec![ActionSpec { name: action.into(), input_schema: json!({}), output_schema: json!({}) }],
    };
    let catalog = Catalog::new(vec![spec("transform", "echo"), spec("http", "request")]);
    let def = load("README.json", text, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = def.workflow.steps.iter().map(|s| s.id.as_str()).collect();
    let deps = weft_workflows::dependencies(&def.workflow);
    // Everything `each` waits for, directly or through the steps it waits for.
    let mut waits = std::collections::BTreeSet::new();
    let mut todo: Vec<usize> = deps[ids.iter().position(|id| *id == "each").unwrap()].iter().copied().collect();
    while let Some(step) = todo.pop() {
        if waits.insert(ids[step]) {
            todo.extend(deps[step].iter().copied());
        }
    }
    assert_eq!(waits, ["approve", "fetch", "wait"].into(), "`each` waits for {waits:?}");
}
