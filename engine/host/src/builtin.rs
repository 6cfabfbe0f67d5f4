//! The built-in connectors, compiled by this crate's build script from
//! `connectors/` and embedded in the binary.

/// Built-in connectors: (name, component bytes).
pub const BUILTINS: &[(&str, &[u8])] = &[
    ("transform", include_bytes!(env!("WEFT_GUEST_TRANSFORM"))),
    ("http", include_bytes!(env!("WEFT_GUEST_HTTP"))),
    ("slack", include_bytes!(env!("WEFT_GUEST_SLACK"))),
    ("github", include_bytes!(env!("WEFT_GUEST_GITHUB"))),
    ("stripe", include_bytes!(env!("WEFT_GUEST_STRIPE"))),
    ("discord", include_bytes!(env!("WEFT_GUEST_DISCORD"))),
    ("google_sheets", include_bytes!(env!("WEFT_GUEST_GOOGLE_SHEETS"))),
    ("sendgrid", include_bytes!(env!("WEFT_GUEST_SENDGRID"))),
    ("notion", include_bytes!(env!("WEFT_GUEST_NOTION"))),
    ("hubspot", include_bytes!(env!("WEFT_GUEST_HUBSPOT"))),
    ("wordpress", include_bytes!(env!("WEFT_GUEST_WORDPRESS"))),
    ("zoho_crm", include_bytes!(env!("WEFT_GUEST_ZOHO_CRM"))),
];

/// The path of a guest component built alongside the engine, including
/// test-only guests such as `testkit` that are not built in.
pub fn guest_component(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("WEFT_GUEST_DIR")).join(format!("weft_connector_{name}.wasm"))
}
