//! Validation: structure against the JSON Schema first, then the rules a
//! schema cannot state (ids, references, cycles, connectors, action inputs).
//! Every problem is collected; nothing stops at the first.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use crate::catalog::{Catalog, ConnectorRef};
use crate::diagnostic::{JsonPath, Segment};
use crate::expr;
use crate::model::{OnError, StepDocument, Workflow};

/// A problem before it is given a line and column.
pub(crate) type Problem = (JsonPath, String);

/// Validates `instance` against a JSON Schema; each error comes with its path.
/// `Err` means the schema itself does not compile.
pub fn schema_errors(schema: &Value, instance: &Value) -> Result<Vec<(JsonPath, String)>, String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| format!("the schema is invalid: {e}"))?;
    Ok(collect_errors(&validator, instance))
}

fn collect_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    for err in validator.iter_errors(instance) {
        push_error(&err, instance, &mut problems);
    }
    problems
}

/// Turns one schema error into problems. An `anyOf`/`oneOf` whose other
/// branches only allow `null` (how optional fields are written) is unwrapped,
/// so the user sees the real error instead of "not valid under any schema".
fn push_error(err: &jsonschema::ValidationError<'_>, instance: &Value, problems: &mut Vec<Problem>) {
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
    let path = JsonPath::from_pointer(err.instance_path().as_str(), instance);
    match err.kind() {
        Kind::AdditionalProperties { unexpected } => {
            for field in unexpected {
                problems.push((path.key(field.clone()), format!("unknown field `{field}`")));
            }
        }
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => {
            let only_null = |branch: &Vec<jsonschema::ValidationError<'static>>| {
                branch.len() == 1
                    && matches!(branch[0].kind(), Kind::Type { kind: TypeKind::Single(t) } if *t == jsonschema::JsonType::Null)
            };
            let real: Vec<_> = context.iter().filter(|branch| !only_null(branch)).collect();
            match real.as_slice() {
                [branch] if real.len() < context.len() => {
                    branch.iter().for_each(|inner| push_error(inner, instance, problems));
                }
                _ => problems.push((path, err.to_string())),
            }
        }
        Kind::Pattern { pattern } if pattern == crate::model::DURATION_PATTERN => problems.push((
            path,
            format!("{} is not a duration; write e.g. \"250ms\", \"30s\", \"5m\" or \"1h 30m\"", err.instance()),
        )),
        _ => problems.push((path, err.to_string())),
    }
}

fn workflow_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&crate::schema::workflow_schema()).expect("the generated workflow schema compiles")
    })
}

/// Structural problems: what the workflow JSON Schema rejects.
pub(crate) fn structure(doc: &Value) -> Vec<Problem> {
    collect_errors(workflow_validator(), doc)
}

/// Whether `id` can be written as `steps.<id>` in an expression.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A template found in a step, with where it is and how to read it.
struct TemplateSite<'a> {
    path: JsonPath,
    text: &'a str,
    bare: bool,
}

/// Every template-bearing string of a step, with its path: its inputs (by
/// member, such as `with` or `workflow.input`), its condition and `foreach`.
fn step_templates<'a>(
    inputs: impl IntoIterator<Item = (&'a Value, &'static str)>,
    condition: Option<&'a str>,
    foreach: Option<&'a str>,
    path: &JsonPath,
) -> Vec<TemplateSite<'a>> {
    let mut sites = Vec::new();
    for (value, member) in inputs {
        let at = member.split('.').fold(path.clone(), |at, key| at.key(key));
        collect_strings(value, &at, &mut sites);
    }
    if let Some(cond) = condition {
        sites.push(TemplateSite { path: path.key("if"), text: cond, bare: true });
    }
    if let Some(foreach) = foreach {
        sites.push(TemplateSite { path: path.key("foreach"), text: foreach, bare: true });
    }
    sites
}

/// A step file form's templates, including those of members that a valid
/// step would not combine.
fn document_templates<'a>(step: &'a StepDocument, path: &JsonPath) -> Vec<TemplateSite<'a>> {
    let inputs = step
        .with
        .iter()
        .map(|w| (w, "with"))
        .chain(step.workflow.as_ref().and_then(|c| c.input.as_ref()).map(|i| (i, "workflow.input")));
    step_templates(inputs, step.condition.as_deref(), step.foreach.as_deref(), path)
}

fn collect_strings<'a>(value: &'a Value, path: &JsonPath, out: &mut Vec<TemplateSite<'a>>) {
    match value {
        Value::String(text) if expr::is_template(text) => {
            out.push(TemplateSite { path: path.clone(), text, bare: false })
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| collect_strings(v, &path.index(i), out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| collect_strings(v, &path.key(k.clone()), out)),
        _ => {}
    }
}

/// The step ids a set of dotted references reads (`steps.<id>...`).
fn referenced_steps(refs: &BTreeSet<String>) -> impl Iterator<Item = &str> {
    refs.iter().filter_map(|r| r.strip_prefix("steps.")).map(|rest| rest.split('.').next().unwrap_or(rest))
}

/// Each step's dependencies (by index): its `needs` plus every step its
/// templates read. Unknown ids are left out; `semantics` reports them.
pub fn dependencies(workflow: &Workflow) -> Vec<BTreeSet<usize>> {
    dependency_sets(workflow.steps.iter().map(|step| {
        let sites = step_templates(
            step.input_template(),
            step.condition.as_deref(),
            step.foreach.as_deref(),
            &JsonPath::root(),
        );
        (step.id.as_str(), step.needs.as_slice(), sites)
    }))
}

/// Dependencies from each step's id, `needs` and template sites.
fn dependency_sets<'a>(
    steps: impl Iterator<Item = (&'a str, &'a [String], Vec<TemplateSite<'a>>)>,
) -> Vec<BTreeSet<usize>> {
    let steps: Vec<_> = steps.collect();
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, (id, ..))| (*id, i)).collect();
    steps
        .iter()
        .enumerate()
        .map(|(i, (_, needs, sites))| {
            let mut deps: BTreeSet<usize> = needs.iter().filter_map(|n| index.get(n.as_str()).copied()).collect();
            for site in sites {
                if let Ok(refs) = expr::references(site.text, site.bare) {
                    deps.extend(referenced_steps(&refs).filter_map(|id| index.get(id).copied()));
                }
            }
            deps.remove(&i);
            deps
        })
        .collect()
}

/// The rules beyond the schema, checked on the file form of the steps (so
/// that a step with no kind, or two, is reported with everything else) and
/// the workflow's `output` template.
pub(crate) fn semantics(steps: &[StepDocument], output: Option<&Value>, catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    let steps_path = JsonPath::root().key("steps");
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let path = steps_path.index(i).key("id");
        if !is_valid_id(&step.id) {
            problems.push((
                path.clone(),
                format!("step id `{}` must start with a letter or `_` and hold only letters, digits and `_`", step.id),
            ));
        }
        if let Some(first) = index.insert(&step.id, i) {
            index.insert(&step.id, first);
            problems.push((path, format!("duplicate step id `{}` (first used by $.steps[{first}])", step.id)));
        }
    }
    if steps.is_empty() {
        problems.push((steps_path.clone(), "a workflow needs at least one step".into()));
    }
    let known = || {
        let mut ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.join(", ")
    };
    let handlers: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.on_error {
            OnError::Handler { handler } => Some((handler.as_str(), i)),
            OnError::Mode(_) => None,
        })
        .collect();

    // What each call step without `foreach` outputs, by the schema of its
    // action, and the action as the step names it.
    let outputs: HashMap<&str, (&str, &Value)> = steps
        .iter()
        .filter(|step| step.foreach.is_none())
        .filter_map(|step| {
            let uses = step.uses.as_deref()?;
            let parsed: ConnectorRef = uses.parse().ok()?;
            let connector = catalog.find(&parsed.connector, parsed.version.as_deref())?;
            let action = connector.actions.iter().find(|a| a.name == parsed.action)?;
            Some((step.id.as_str(), (uses, &action.output_schema)))
        })
        .collect();

    for (i, step) in steps.iter().enumerate() {
        let path = steps_path.index(i);
        let kinds: Vec<&str> = [
            ("uses", step.uses.is_some()),
            ("sleep", step.sleep.is_some()),
            ("wait_for_signal", step.wait_for_signal.is_some()),
            ("workflow", step.workflow.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        match kinds.len() {
            0 => problems
                .push((path.clone(), "a step needs one of `uses`, `sleep`, `wait_for_signal` or `workflow`".into())),
            1 => {}
            _ => problems
                .push((path.clone(), format!("a step does one thing, but this one has {}", kinds.join(" and ")))),
        }
        if step.with.is_some() && step.uses.is_none() {
            problems.push((path.key("with"), "`with` is the input of a connector action; it needs `uses`".into()));
        }
        if step.concurrency.is_some() && step.foreach.is_none() {
            problems.push((path.key("concurrency"), "`concurrency` only applies to `foreach` steps".into()));
        }
        if step.concurrency == Some(0) {
            problems.push((path.key("concurrency"), "`concurrency` must be at least 1".into()));
        }
        if let Some(wait) = &step.wait_for_signal
            && wait.name.trim().is_empty()
        {
            problems.push((path.key("wait_for_signal").key("name"), "the signal name must not be empty".into()));
        }
        if let Some(child) = &step.workflow
            && child.path.trim().is_empty()
        {
            problems.push((path.key("workflow").key("path"), "the child workflow's path must not be empty".into()));
        }
        for (j, need) in step.needs.iter().enumerate() {
            if need == &step.id {
                problems.push((path.key("needs").index(j), "a step cannot need itself".into()));
            } else if !index.contains_key(need.as_str()) {
                problems.push((path.key("needs").index(j), format!("unknown step `{need}`; steps are: {}", known())));
            }
        }
        if let OnError::Handler { handler } = &step.on_error {
            let handler_path = path.key("on_error").key("handler");
            if handler == &step.id {
                problems.push((handler_path, "a step cannot handle its own errors".into()));
            } else if !index.contains_key(handler.as_str()) {
                problems.push((handler_path, format!("unknown step `{handler}`; steps are: {}", known())));
            }
        }
        if handlers.contains_key(step.id.as_str()) && !step.needs.is_empty() {
            problems.push((
                path.key("needs"),
                "an error handler step starts when the step it handles fails; it cannot also have `needs`".into(),
            ));
        }

        for site in document_templates(step, &path) {
            let in_foreach_scope =
                step.foreach.is_some() && !site.path.0.ends_with(&[crate::Segment::Key("foreach".into())]);
            let refs = check_references(&site, &step.id, in_foreach_scope, &index, &known, &mut problems);
            check_output_fields(&site, &refs, &outputs, &mut problems);
        }

        if let Some(uses) = &step.uses {
            check_uses(uses, step, &path, catalog, &mut problems);
        }
    }

    if let Some(output) = output {
        let mut sites = Vec::new();
        collect_strings(output, &JsonPath::root().key("output"), &mut sites);
        for site in &sites {
            let refs = check_references(site, "", false, &index, &known, &mut problems);
            check_output_fields(site, &refs, &outputs, &mut problems);
        }
    }

    let deps =
        dependency_sets(steps.iter().enumerate().map(|(i, step)| {
            (step.id.as_str(), step.needs.as_slice(), document_templates(step, &steps_path.index(i)))
        }));
    if let Some(cycle) = find_cycle(&deps) {
        let mut names: Vec<String> = cycle.iter().map(|&i| steps[i].id.clone()).collect();
        // A long cycle is named by its ends.
        if names.len() > 12 {
            let cut = names.len() - 10;
            names.splice(6..names.len() - 4, [format!("… {cut} more …")]);
        }
        problems.push((steps_path.index(cycle[0]), format!("dependency cycle: {}", names.join(" -> "))));
    }
    problems
}

fn check_references(
    site: &TemplateSite<'_>,
    own_id: &str,
    foreach_scope: bool,
    index: &HashMap<&str, usize>,
    known: &dyn Fn() -> String,
    problems: &mut Vec<Problem>,
) -> BTreeSet<String> {
    let refs = match expr::references(site.text, site.bare) {
        Ok(refs) => refs,
        Err(e) => {
            problems.push((site.path.clone(), format!("template error: {}", e.message)));
            return BTreeSet::new();
        }
    };
    for reference in &refs {
        let mut parts = reference.split('.');
        match parts.next().unwrap_or_default() {
            "input" | "run" => {}
            // The template engine's global functions.
            name if expr::GLOBAL_FUNCTIONS.contains(&name) => {}
            "item" | "index" if foreach_scope => {}
            "item" | "index" => problems.push((
                site.path.clone(),
                format!("`{reference}` is only defined inside a step with `foreach`"),
            )),
            "steps" => match (parts.next(), parts.next()) {
                (None, _) => problems.push((site.path.clone(), "refer to a step's result as `steps.<id>.output`".into())),
                (Some(id), _) if id == own_id => {
                    problems.push((site.path.clone(), format!("step `{id}` cannot read its own output")))
                }
                (Some(id), _) if !index.contains_key(id) => {
                    problems.push((site.path.clone(), format!("unknown step `{id}` in `{reference}`; steps are: {}", known())))
                }
                (Some(id), Some(field)) if field != "output" && field != "error" => problems.push((
                    site.path.clone(),
                    format!("`steps.{id}.{field}` does not exist; a step has `output` and `error`"),
                )),
                _ => {}
            },
            other => problems.push((
                site.path.clone(),
                format!("unknown name `{other}`; templates can read `input`, `steps`, `run`, and `item`/`index` in foreach steps"),
            )),
        }
    }
    refs
}

/// Flags a template (whose references are `refs`) that reads
/// `steps.<id>.output.<field>…` where the
/// output schema of the step's action has no such field. A schema that does
/// not list its properties (any JSON, like `http`'s `body`) or that allows
/// others ends the check there.
fn check_output_fields(
    site: &TemplateSite<'_>,
    refs: &BTreeSet<String>,
    outputs: &HashMap<&str, (&str, &Value)>,
    problems: &mut Vec<Problem>,
) {
    for reference in refs {
        let mut parts = reference.split('.');
        let (Some("steps"), Some(id), Some("output")) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Some(&(uses, root)) = outputs.get(id) else { continue };
        let mut schema = root;
        let mut read = format!("steps.{id}.output");
        for field in parts {
            schema = resolve(root, schema);
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else { break };
            if let Some(inner) = properties.get(field) {
                schema = inner;
                read = format!("{read}.{field}");
                continue;
            }
            if schema.get("additionalProperties").is_some_and(|extra| extra != &Value::Bool(false)) {
                break;
            }
            let names: Vec<&str> = properties.keys().map(String::as_str).collect();
            problems.push((
                site.path.clone(),
                format!(
                    "`{read}` ({uses}) has no field `{field}`; it has: {}",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ),
            ));
            break;
        }
    }
}

/// A schema with its local `$ref` (`#/$defs/…`, `#/definitions/…`) followed.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    // A reference to a reference is followed a few times, never in a loop.
    for _ in 0..8 {
        let Some(pointer) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) else {
            break;
        };
        match root.pointer(pointer) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

fn check_uses(uses: &str, step: &StepDocument, path: &JsonPath, catalog: &Catalog, problems: &mut Vec<Problem>) {
    let uses_path = path.key("uses");
    let parsed: ConnectorRef = match uses.parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            problems.push((uses_path, message));
            return;
        }
    };
    let Some(connector) = catalog.find(&parsed.connector, parsed.version.as_deref()) else {
        let message = match (parsed.version.as_deref(), catalog.find(&parsed.connector, None)) {
            (Some(version), Some(other)) => format!(
                "connector `{}` has no version {version} installed (installed: {})",
                parsed.connector, other.version
            ),
            _ => format!(
                "unknown connector `{}`; installed connectors are: {}",
                parsed.connector,
                catalog.names().join(", ")
            ),
        };
        problems.push((uses_path, message));
        return;
    };
    let Some(action) = connector.actions.iter().find(|a| a.name == parsed.action) else {
        let actions: Vec<&str> = connector.actions.iter().map(|a| a.name.as_str()).collect();
        problems.push((
            uses_path,
            format!(
                "connector `{}` has no action `{}`; its actions are: {}",
                connector.name,
                parsed.action,
                actions.join(", ")
            ),
        ));
        return;
    };
    let with = step.with.clone().unwrap_or_else(|| Value::Object(Default::default()));
    if matches!(&with, Value::String(text) if expr::is_template(text)) {
        return;
    }
    match schema_errors(&action.input_schema, &with) {
        Ok(errors) => {
            for (at, message) in errors {
                // A templated value is only known at run time; the run checks it then.
                let node = at.0.iter().try_fold(&with, |node, seg| match seg {
                    crate::Segment::Key(k) => node.get(k),
                    crate::Segment::Index(i) => node.get(i),
                });
                if matches!(node, Some(Value::String(text)) if expr::is_template(text)) {
                    continue;
                }
                let mut full = path.key("with");
                full.0.extend(at.0);
                problems.push((full, format!("input for `{uses}`: {message}")));
            }
        }
        Err(message) => {
            problems.push((uses_path, format!("connector `{}` action `{}`: {message}", connector.name, action.name)))
        }
    }
}

/// A dependency cycle as step indexes, first step repeated at the end. A
/// depth-first search with its own stack, so that a long chain of `needs`
/// cannot overflow the thread's.
fn find_cycle(deps: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; deps.len()];
    for start in 0..deps.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // The open path, each node with the dependencies it has yet to visit.
        let mut path: Vec<(usize, std::collections::btree_set::Iter<'_, usize>)> = vec![(start, deps[start].iter())];
        marks[start] = Mark::Open;
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            match pending.next() {
                Some(&next) if marks[next] == Mark::Open => {
                    let from = path.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(&next) if marks[next] == Mark::New => {
                    marks[next] = Mark::Open;
                    path.push((next, deps[next].iter()));
                }
                Some(_) => {}
                None => {
                    marks[node] = Mark::Done;
                    path.pop();
                }
            }
        }
    }
    None
}

/// Problems with the trigger that the schema cannot see: a `schedule`'s cron
/// expression (five fields: minute, hour, day of month, month, day of week)
/// and IANA time zone.
#[cfg(feature = "schedules")]
pub(crate) fn trigger(trigger: Option<&Value>) -> Vec<Problem> {
    let Some(schedule) = trigger.and_then(|t| t.get("schedule")) else { return Vec::new() };
    let at = JsonPath::root().key("trigger").key("schedule");
    let mut problems = Vec::new();
    if let Some(cron) = schedule.get("cron").and_then(Value::as_str) {
        let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Disallowed).build();
        if let Err(e) = parser.parse(cron) {
            let why = match e {
                croner::errors::CronError::InvalidPattern(m)
                | croner::errors::CronError::IllegalCharacters(m)
                | croner::errors::CronError::ComponentError(m) => m,
                other => other.to_string(),
            };
            problems.push((
                at.key("cron"),
                format!(
                    "`{cron}` is not a cron expression of five fields (minute hour day-of-month month day-of-week, \
                     e.g. `0 9 * * 1-5`): {why}"
                ),
            ));
        }
    }
    if let Some(zone) = schedule.get("timezone").and_then(Value::as_str)
        && jiff::tz::db().get(zone).is_err()
    {
        problems.push((
            at.key("timezone"),
            format!("`{zone}` is not an IANA time zone (such as `Europe/Berlin`, `America/New_York` or `UTC`)"),
        ));
    }
    problems
}

/// Without the `schedules` feature, triggers are checked by the schema alone.
#[cfg(not(feature = "schedules"))]
pub(crate) fn trigger(_: Option<&Value>) -> Vec<Problem> {
    Vec::new()
}

/// The `steps` member without the step members the schema refused in
/// `problems` (a step's `id` is kept: other steps name it), and the paths
/// that the schema refused, within a step or a whole step, so that the rules
/// beyond the schema keep quiet there. `None` when there is no `steps`.
pub(crate) fn without_refused(steps: Option<&Value>, problems: &[Problem]) -> (Option<Value>, Vec<JsonPath>) {
    let Some(mut steps) = steps.cloned() else { return (None, Vec::new()) };
    let mut refused = Vec::new();
    for (path, _) in problems {
        match path.0.as_slice() {
            [Segment::Key(top), Segment::Index(_)] if top == "steps" => refused.push(path.clone()),
            [Segment::Key(top), Segment::Index(i), Segment::Key(member), ..] if top == "steps" => {
                let at = JsonPath::root().key("steps").index(*i).key(member.clone());
                if member != "id"
                    && let Some(step) = steps.get_mut(*i).and_then(Value::as_object_mut)
                {
                    step.remove(member);
                }
                refused.push(at);
            }
            _ => {}
        }
    }
    (Some(steps), refused)
}
