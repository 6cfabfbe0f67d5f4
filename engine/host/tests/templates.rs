//! Templates that are not bounded by what they read run in the template
//! sandbox: one operation that builds a gigabyte, or a loop of them, fails
//! with a named limit while the process stays small, and every other
//! template gives the same result as in the process.

use serde_json::json;
use weft_host::{Host, HostConfig, TEMPLATE_MEMORY_BYTES};
use weft_workflows::expr;

fn sandboxed() {
    // The first host of the process installs the sandbox.
    Host::new(HostConfig::default()).unwrap();
}

/// The most memory this process has held, from the kernel.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn one_operation_or_a_loop_of_them_stops_at_a_named_limit() {
    sandboxed();
    let scope = json!({ "input": { "n": 100_000_000, "s": "abc" } });
    let memory = format!("memory limit of {} MiB", TEMPLATE_MEMORY_BYTES >> 20);
    let named = [memory.as_str(), "budget of", "size limit of"];
    let cases = [
        // One operation: 100 million list items, or a string replaced
        // into a gigabyte.
        "{{ (1,) * 100000000 }}",
        "x{{ ([1] * input.n) | list | length }}",
        "{{ (input.s * 10000000) | replace('a', input.s * 30) }}",
        // Doubling a string 40 times.
        "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x | length }}",
        // A long loop of operations that each build 90 MB.
        "{% for i in range(100000) %}{% set x = input.s * 30000000 %}{% endfor %}done",
        // ... or 30 MB, which fits the memory limit: fuel stops it.
        "{% for i in range(100000) %}{% for j in range(100) %}{% set x = (input.s * 10000000) | length %}{% endfor %}{% endfor %}done",
        "{% for i in range(100000) %}{% for j in range(100) %}{% set x = (input.s * 30000000) | length %}{% endfor %}{% endfor %}done",
        // Few operations, each reading 100,000 items: fuel stops it.
        "{% set r = range(100000) | list %}{% for i in range(100000) %}{% set x = r | sort %}{% endfor %}done",
        "{% for i in range(100000) %}{% set s = 'a' * (40000000 - i) %}{% endfor %}done",
    ];
    for template in cases {
        let started = std::time::Instant::now();
        let error = expr::render(&json!(template), &scope).unwrap_err();
        eprintln!("{template}: {error} ({:?})", started.elapsed());
        assert!(named.iter().any(|limit| error.message.contains(limit)), "{template}: {error}");
    }
    // Compiling folds constants: this one is folded in the sandbox.
    let _ = expr::references("{{ 'a' * 100000000 }}{{ 'b' * 100000000 }}", false);
    let peak = peak_rss_bytes();
    assert!(peak < 1 << 30, "the process grew to {} MiB", peak >> 20);
}

#[test]
fn sandboxed_templates_give_the_results_they_give_in_the_process() {
    sandboxed();
    let scope = json!({
        "input": { "n": 21, "names": ["ada", "grace"] },
        "steps": { "a": { "output": { "value": 2 } }, "b": { "output": { "big": "not read" } } },
        "item": 3,
    });
    assert_eq!(expr::render(&json!("{{ item * steps.a.output.value }}"), &scope).unwrap(), json!(6));
    assert_eq!(
        expr::render(&json!("{% for n in input.names %}{{ n | upper }};{% endfor %}"), &scope).unwrap(),
        json!("ADA;GRACE;")
    );
    assert_eq!(expr::render(&json!("{{ range(3) | list }}"), &scope).unwrap(), json!([0, 1, 2]));
    assert_eq!(expr::eval("input.n * 2 > 40", &scope).unwrap(), json!(true));
    assert!(expr::eval_condition("input.names | select('equalto', 'ada') | list", &scope).unwrap());
    assert_eq!(expr::eval("steps[input.names[0][0] ~ ''].output.value * 1", &scope).unwrap(), json!(2));
    // Undefined names are errors in the sandbox too.
    let error = expr::render(&json!("{{ input.missing * 2 }}"), &scope).unwrap_err();
    assert!(error.message.contains("undefined"), "{error}");
    // The size limit holds for what the sandbox returns.
    let error = expr::render(&json!("{{ 'a' * 5000000 }}"), &scope).unwrap_err();
    assert!(error.message.contains("over the size limit of 4194304 bytes"), "{error}");
    // References of a template that is not bounded come from the sandbox.
    assert!(
        expr::references("{% for x in steps.a.output %}{{ x * 2 }}{% endfor %}", false)
            .unwrap()
            .iter()
            .any(|r| r.starts_with("steps.a"))
    );
}
