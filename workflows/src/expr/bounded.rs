//! Which templates are bounded by what they read.
//!
//! minijinja's fuel counts operations, not bytes: one `*` can build a 100 MB
//! string or a list of 100 million items, a `replace` or `center` can do
//! the same, and a loop can repeat it. So only templates whose every
//! operation costs at most a small multiple of the values it reads are
//! evaluated in the host process. That is the shape nearly every workflow's
//! templates have: `{{ steps.fetch.output.body }}`, `{{ input.name |
//! default('world') }}`, `{{ input.n > 3 and not input.dry_run }}`. Any other
//! template (blocks, loops, `*`, calls, other filters) runs in the template
//! sandbox, which bounds memory and time, when one is installed.
//!
//! The check reads minijinja's syntax tree, before anything is compiled:
//! compiling folds constants, and folding `(1,) * 100000000` alone builds
//! gigabytes.

use std::collections::BTreeSet;

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt};

use super::Mode;

/// How many `+` and `~` one template may hold and still be evaluated in the
/// host: each makes a value at most as large as its two operands together.
const MAX_CONCATENATIONS: usize = 8;

/// The longest constant `join` separator evaluated in the host (a separator
/// is repeated once per item).
const MAX_JOIN_SEPARATOR: usize = 8;

/// Filters whose result is at most a small multiple of their input, whatever
/// their arguments (when the arguments are bounded too).
const LINEAR_FILTERS: &[&str] = &[
    "abs",
    "attr",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "sort",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
];

/// Whether `source`, read as `mode`, is bounded by what it reads. A syntax
/// error is bounded: compiling it fails with minijinja's own message.
pub(crate) fn is_bounded(mode: Mode, source: &str) -> bool {
    let mut walk = Walk { concatenations: 0 };
    match mode {
        Mode::Expression | Mode::Condition => match minijinja::machinery::parse_expr(source) {
            Ok(expr) => walk.expr(&expr),
            Err(_) => true,
        },
        Mode::Text => match minijinja::machinery::parse(source, "<template>", Default::default()) {
            Ok(stmt) => walk.stmt(&stmt),
            Err(_) => true,
        },
    }
}

struct Walk {
    concatenations: usize,
}

impl Walk {
    fn stmt(&mut self, stmt: &Stmt<'_>) -> bool {
        match stmt {
            Stmt::Template(template) => template.children.iter().all(|child| self.stmt(child)),
            Stmt::EmitRaw(_) => true,
            Stmt::EmitExpr(emit) => self.expr(&emit.expr),
            // Loops, assignments, macros and the rest can repeat work.
            _ => false,
        }
    }

    /// Recursion is bounded by minijinja's parser, which refuses nesting
    /// past its own limit.
    fn expr(&mut self, expr: &Expr<'_>) -> bool {
        match expr {
            Expr::Var(_) | Expr::Const(_) => true,
            Expr::GetAttr(get) => self.expr(&get.expr),
            Expr::GetItem(get) => self.expr(&get.expr) && self.expr(&get.subscript_expr),
            Expr::Slice(slice) => {
                self.expr(&slice.expr)
                    && [&slice.start, &slice.stop, &slice.step].into_iter().flatten().all(|e| self.expr(e))
            }
            Expr::UnaryOp(op) => self.expr(&op.expr),
            Expr::BinOp(op) => {
                let operator_bounded = match op.op {
                    // Repeats a string or a list.
                    BinOpKind::Mul => false,
                    BinOpKind::Add | BinOpKind::Concat => {
                        self.concatenations += 1;
                        self.concatenations <= MAX_CONCATENATIONS
                    }
                    _ => true,
                };
                operator_bounded && self.expr(&op.left) && self.expr(&op.right)
            }
            Expr::Compare(compare) => self.expr(&compare.expr) && compare.ops.iter().all(|op| self.expr(&op.expr)),
            Expr::IfExpr(if_expr) => {
                self.expr(&if_expr.test_expr)
                    && self.expr(&if_expr.true_expr)
                    && if_expr.false_expr.as_ref().is_none_or(|e| self.expr(e))
            }
            Expr::Test(test) => self.expr(&test.expr) && self.args(&test.args),
            Expr::Filter(filter) => {
                let name_bounded = match filter.name {
                    // `map` can apply any filter by name; reading an
                    // attribute is linear.
                    "map" => filter.args.iter().all(|arg| matches!(arg, CallArg::Kwarg("attribute" | "default", _))),
                    "join" => match filter.args.as_slice() {
                        [] => true,
                        [CallArg::Pos(Expr::Const(sep))] => {
                            sep.value.as_str().is_some_and(|s| s.len() <= MAX_JOIN_SEPARATOR)
                        }
                        _ => false,
                    },
                    // `tojson(indent=n)` indents by n spaces per level.
                    "tojson" => filter.args.is_empty(),
                    name => LINEAR_FILTERS.contains(&name),
                };
                name_bounded && filter.expr.as_ref().is_none_or(|e| self.expr(e)) && self.args(&filter.args)
            }
            Expr::List(list) => list.items.iter().all(|e| self.expr(e)),
            Expr::Tuple(tuple) => tuple.items.iter().all(|e| self.expr(e)),
            Expr::Map(map) => map.keys.iter().chain(&map.values).all(|e| self.expr(e)),
            // `range`, `dict`, `namespace` and methods such as `replace`.
            Expr::Call(_) => false,
        }
    }

    fn args(&mut self, args: &[CallArg<'_>]) -> bool {
        args.iter().all(|arg| match arg {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => self.expr(e),
        })
    }
}

/// The names a template reads, found from its syntax tree (a superset: a
/// name the template assigns itself is counted too), so that the sandbox is
/// sent only those, and of `steps` only the steps named.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reads {
    /// Top-level names.
    pub(crate) names: BTreeSet<String>,
    /// The step ids read as `steps.<id>`, or `None` when `steps` is read in
    /// any other way (`steps[name]`, `steps | length`).
    pub(crate) steps: Option<BTreeSet<String>>,
}

/// What `source` reads; `None` when it does not parse (compiling it then
/// fails with minijinja's message).
pub(crate) fn reads(mode: Mode, source: &str) -> Option<Reads> {
    let mut found = Found::default();
    match mode {
        Mode::Expression | Mode::Condition => found.expr(&minijinja::machinery::parse_expr(source).ok()?),
        Mode::Text => found.stmt(&minijinja::machinery::parse(source, "<template>", Default::default()).ok()?),
    }
    let steps = (found.bare_steps == 0).then_some(found.steps);
    Some(Reads { names: found.names, steps })
}

#[derive(Default)]
struct Found {
    names: BTreeSet<String>,
    steps: BTreeSet<String>,
    /// `steps` read other than as `steps.<id>`.
    bare_steps: usize,
}

impl Found {
    fn stmts(&mut self, stmts: &[Stmt<'_>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                f.filter_expr.iter().for_each(|e| self.expr(e));
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                w.assignments.iter().for_each(|(_, value)| self.expr(value));
                self.stmts(&w.body);
            }
            Stmt::Set(s) => {
                self.expr(&s.target);
                self.expr(&s.expr);
            }
            Stmt::SetBlock(s) => {
                s.filter.iter().for_each(|e| self.expr(e));
                self.stmts(&s.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.stmts(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.stmts(&f.body);
            }
            Stmt::Block(b) => self.stmts(&b.body),
            Stmt::Import(i) => self.expr(&i.expr),
            Stmt::FromImport(i) => self.expr(&i.expr),
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.expr(&i.name),
            Stmt::Macro(m) => {
                m.defaults.iter().for_each(|e| self.expr(e));
                self.stmts(&m.body);
            }
            Stmt::CallBlock(c) => {
                self.expr(&c.call.expr);
                self.args(&c.call.args);
                c.macro_decl.defaults.iter().for_each(|e| self.expr(e));
                self.stmts(&c.macro_decl.body);
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                self.args(&d.call.args);
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'_>) {
        match expr {
            Expr::Var(v) => {
                if v.id == "steps" {
                    self.bare_steps += 1;
                }
                self.names.insert(v.id.to_string());
            }
            Expr::Const(_) => {}
            Expr::GetAttr(get) => match &get.expr {
                Expr::Var(v) if v.id == "steps" => {
                    self.names.insert("steps".to_string());
                    self.steps.insert(get.name.to_string());
                }
                inner => self.expr(inner),
            },
            Expr::GetItem(get) => {
                self.expr(&get.expr);
                self.expr(&get.subscript_expr);
            }
            Expr::Slice(slice) => {
                self.expr(&slice.expr);
                [&slice.start, &slice.stop, &slice.step].into_iter().flatten().for_each(|e| self.expr(e));
            }
            Expr::UnaryOp(op) => self.expr(&op.expr),
            Expr::BinOp(op) => {
                self.expr(&op.left);
                self.expr(&op.right);
            }
            Expr::Compare(compare) => {
                self.expr(&compare.expr);
                compare.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(if_expr) => {
                self.expr(&if_expr.test_expr);
                self.expr(&if_expr.true_expr);
                if_expr.false_expr.iter().for_each(|e| self.expr(e));
            }
            Expr::Test(test) => {
                self.expr(&test.expr);
                self.args(&test.args);
            }
            Expr::Filter(filter) => {
                filter.expr.iter().for_each(|e| self.expr(e));
                self.args(&filter.args);
            }
            Expr::Call(call) => {
                self.expr(&call.expr);
                self.args(&call.args);
            }
            Expr::List(list) => list.items.iter().for_each(|e| self.expr(e)),
            Expr::Tuple(tuple) => tuple.items.iter().for_each(|e| self.expr(e)),
            Expr::Map(map) => map.keys.iter().chain(&map.values).for_each(|e| self.expr(e)),
        }
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_and_comparing_is_bounded() {
        for source in [
            "steps.fetch.output.body",
            "input.name | default('world')",
            "input.n > 3 and not input.dry_run",
            "input['a-b'][0].c",
            "steps.a.output | map(attribute='value') | list",
            "input.tags | join(', ')",
            "index + 1",
            "'Hello ' ~ input.name",
            "input.x if input.y is defined else none",
            "[input.a, {'k': input.b}]",
        ] {
            assert!(is_bounded(Mode::Expression, source), "{source}");
        }
        assert!(is_bounded(Mode::Text, "Hello, {{ input.name }}! You are {{ input.age | int }}."));
    }

    #[test]
    fn reads_names_the_steps_read() {
        let reads =
            reads(Mode::Text, "{% for x in steps.a.output %}{{ x * input.n }}{{ steps.b }}{% endfor %}").unwrap();
        assert_eq!(reads.names, ["input", "steps", "x"].map(String::from).into());
        assert_eq!(reads.steps, Some(["a", "b"].map(String::from).into()));
        let dynamic = super::reads(Mode::Expression, "steps[input.k].output * 2").unwrap();
        assert_eq!(dynamic.steps, None);
    }

    #[test]
    fn what_can_repeat_or_multiply_is_not() {
        for source in [
            "input.n * 2",
            "(1,) * 100000000",
            "range(10)",
            "input.s.replace('a', input.s)",
            "input.s | center(1000000000)",
            "input.s | indent(1000000)",
            "input.v | tojson(indent=1000000)",
            "input.v | map('center', 1000000)",
            "input.tags | join(input.sep)",
            "a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a",
        ] {
            assert!(!is_bounded(Mode::Expression, source), "{source}");
        }
        for source in ["{% for i in input.list %}{{ i }}{% endfor %}", "{% set x = 1 %}", "{{ input.s * 3 }}"] {
            assert!(!is_bounded(Mode::Text, source), "{source}");
        }
    }
}
