//! The built-in `zoho_crm` connector: create a lead through Zoho CRM's REST
//! API v6 (`POST /crm/v6/Leads`) in the account's data centre.
//!
//! Auth: the secret `access_token` when set, else an OAuth token for the
//! provider `zoho`; either is sent as `Authorization: Zoho-oauthtoken …`.
//! Zoho takes no idempotency key, so `create_lead` is not idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// Zoho's data centres, each with its own API host.
const DATA_CENTRES: &[(&str, &str)] = &[
    ("us", "www.zohoapis.com"),
    ("eu", "www.zohoapis.eu"),
    ("in", "www.zohoapis.in"),
    ("au", "www.zohoapis.com.au"),
    ("jp", "www.zohoapis.jp"),
    ("ca", "www.zohoapis.ca"),
    ("cn", "www.zohoapis.com.cn"),
    ("sa", "www.zohoapis.sa"),
];

/// A lead to create.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewLead {
    /// Last name (Zoho requires it).
    last_name: String,
    /// First name.
    #[serde(default)]
    first_name: Option<String>,
    /// Email address.
    #[serde(default)]
    email: Option<String>,
    /// Company.
    #[serde(default)]
    company: Option<String>,
    /// Phone number.
    #[serde(default)]
    phone: Option<String>,
    /// Lead source, one of the picklist's values (e.g. `Web Download`).
    #[serde(default)]
    lead_source: Option<String>,
    /// Description.
    #[serde(default)]
    description: Option<String>,
    /// More fields by API name (e.g. `{"Industry": "ASP"}`).
    #[serde(default)]
    fields: BTreeMap<String, Value>,
    /// The account's data centre: `us` (zohoapis.com), `eu`, `in`, `au`,
    /// `jp`, `ca`, `cn` or `sa`.
    #[serde(default = "us")]
    #[schemars(default = "us")]
    data_centre: String,
    /// Automations to run on insert: any of `approval`, `workflow`,
    /// `blueprint`. Absent: Zoho's default (workflow rules run).
    #[serde(default)]
    trigger: Option<Vec<String>>,
}

fn us() -> String {
    "us".into()
}

/// The created lead.
#[derive(Serialize, JsonSchema)]
struct Lead {
    /// The record id.
    id: String,
    /// When it was created (ISO 8601).
    created_time: String,
}

fn create_lead(cx: &Context, input: NewLead) -> Result<Lead, Error> {
    let Some((_, host)) = DATA_CENTRES.iter().find(|(code, _)| *code == input.data_centre) else {
        let codes: Vec<&str> = DATA_CENTRES.iter().map(|(c, _)| *c).collect();
        return Err(Error::invalid_input(format!(
            "`data_centre` is {:?}; use one of {}",
            input.data_centre,
            codes.join(", ")
        )));
    };
    if input.last_name.trim().is_empty() {
        return Err(Error::invalid_input("`last_name` is empty; Zoho requires it"));
    }
    let mut record: serde_json::Map<String, Value> = input.fields.into_iter().collect();
    record.insert("Last_Name".into(), Value::String(input.last_name));
    for (field, value) in [
        ("First_Name", input.first_name),
        ("Email", input.email),
        ("Company", input.company),
        ("Phone", input.phone),
        ("Lead_Source", input.lead_source),
        ("Description", input.description),
    ] {
        if let Some(value) = value {
            record.insert(field.into(), Value::String(value));
        }
    }
    let mut body = json!({ "data": [record] });
    if let Some(trigger) = input.trigger {
        body["trigger"] = json!(trigger);
    }

    let token = cx.secret_or_oauth("access_token", "zoho")?;
    let response = Request::post(format!("https://{host}/crm/v6/Leads"))
        .header("authorization", format!("Zoho-oauthtoken {token}"))
        .json(&body)
        .send()?;
    let answer: Value = response.json().unwrap_or_default();
    // Per record: {"data": [{"code", "details", "message", "status"}]};
    // for the whole request: {"code", "details", "message", "status"}.
    let outcome = if answer["data"].is_array() { &answer["data"][0] } else { &answer };
    if response.is_success() && outcome["status"] == "success" {
        let details = &outcome["details"];
        return Ok(Lead {
            id: details["id"].as_str().unwrap_or_default().to_string(),
            created_time: details["Created_Time"].as_str().unwrap_or_default().to_string(),
        });
    }
    let code = outcome["code"].as_str().unwrap_or("error");
    let mut message = format!(
        "Zoho CRM answered HTTP {} ({code}): {}",
        response.status,
        outcome["message"].as_str().unwrap_or("no message")
    );
    if let Some(field) = outcome["details"]["api_name"].as_str() {
        message.push_str(&format!(" (field {field})"));
    }
    Err(match code {
        "INVALID_TOKEN" | "AUTHENTICATION_FAILURE" | "OAUTH_SCOPE_MISMATCH" | "NO_PERMISSION" => {
            Error::unauthorized(message)
        }
        "MANDATORY_NOT_FOUND" | "INVALID_DATA" | "INVALID_MODULE" | "LIMIT_EXCEEDED" => Error::invalid_input(message),
        "DUPLICATE_DATA" => Error::fatal(message),
        "TOO_MANY_REQUESTS" => Error::from_status(429, response.header("retry-after"), message),
        _ if response.is_success() => Error::fatal(message),
        _ => Error::from_status(response.status, response.header("retry-after"), message),
    })
}

struct ZohoCrm;

impl Connector for ZohoCrm {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("zoho_crm", env!("CARGO_PKG_VERSION"), "Create leads in Zoho CRM.")
            .action(Action::new("create_lead", "Create a lead (POST /crm/v6/Leads).", create_lead))
            .secret("access_token")
            .oauth("zoho", &["ZohoCRM.modules.leads.CREATE"]);
        for (_, host) in DATA_CENTRES {
            manifest = manifest.egress(*host);
        }
        manifest
    }
}

weft_sdk::export!(ZohoCrm);
