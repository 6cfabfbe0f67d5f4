//! The built-in `hubspot` connector: create or update a contact by email
//! through HubSpot's CRM API (`POST /crm/v3/objects/contacts/batch/upsert`,
//! with `idProperty: email`).
//!
//! An upsert keyed by email is idempotent by nature: a retried step updates
//! the contact the first attempt made. The step's idempotency key also goes
//! out as the write's `objectWriteTraceId`, which HubSpot echoes in errors.
//!
//! Auth: the secret `access_token` (a private app's `pat-…` token) when set,
//! else an OAuth token for the provider `hubspot`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://api.hubapi.com/crm/v3";

/// A contact, found by email.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ContactInput {
    /// The contact's email address; finds the contact to update.
    email: String,
    /// First name.
    #[serde(default)]
    firstname: Option<String>,
    /// Last name.
    #[serde(default)]
    lastname: Option<String>,
    /// Phone number.
    #[serde(default)]
    phone: Option<String>,
    /// Company name.
    #[serde(default)]
    company: Option<String>,
    /// More contact properties by internal name (e.g. `lifecyclestage`).
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

/// The contact as HubSpot now has it.
#[derive(Serialize, JsonSchema)]
struct Contact {
    /// HubSpot's record id.
    id: String,
    /// Whether this call created it (false: it updated an existing one).
    created: bool,
    /// The properties HubSpot returned.
    properties: BTreeMap<String, Value>,
    /// When it was last updated (ISO 8601).
    updated_at: String,
}

fn upsert_contact(cx: &Context, input: ContactInput) -> Result<Contact, Error> {
    let email = input.email.trim().to_ascii_lowercase();
    if !email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')) {
        return Err(Error::invalid_input(format!("`email` is not an email address: {:?}", input.email)));
    }
    let mut properties = input.properties;
    for (name, value) in [
        ("firstname", input.firstname),
        ("lastname", input.lastname),
        ("phone", input.phone),
        ("company", input.company),
    ] {
        if let Some(value) = value {
            properties.insert(name.into(), value);
        }
    }
    properties.insert("email".into(), email.clone());
    let body = json!({ "inputs": [{
        "idProperty": "email",
        "id": email,
        "properties": properties,
        "objectWriteTraceId": cx.idempotency_key,
    }] });

    let token = cx.secret_or_oauth("access_token", "hubspot")?;
    let response = Request::post(format!("{API}/objects/contacts/batch/upsert")).bearer(&token).json(&body).send()?;
    let answer: Value = response.json().unwrap_or_default();
    // 207 Multi-Status carries per-input errors next to (no) results.
    let batch_error = answer["errors"].as_array().and_then(|e| e.first()).cloned();
    if response.status == 200 || (response.is_success() && batch_error.is_none()) {
        let result = &answer["results"][0];
        let id = result["id"].as_str().unwrap_or_default();
        if id.is_empty() {
            return Err(Error::fatal("HubSpot answered the upsert without a result"));
        }
        return Ok(Contact {
            id: id.to_string(),
            created: result["new"].as_bool().unwrap_or(false),
            properties: serde_json::from_value(result["properties"].clone()).unwrap_or_default(),
            updated_at: result["updatedAt"].as_str().unwrap_or_default().to_string(),
        });
    }
    // {"status": "error", "message", "correlationId", "category"}
    let error = batch_error.unwrap_or(answer);
    let category = error["category"].as_str().unwrap_or("error");
    let message = format!(
        "HubSpot answered HTTP {} ({category}): {}",
        response.status,
        error["message"].as_str().unwrap_or("no message")
    );
    Err(match category {
        "VALIDATION_ERROR" | "PROPERTY_DOESNT_EXIST" | "INVALID_EMAIL" => Error::invalid_input(message),
        "MISSING_SCOPES" | "INVALID_AUTHENTICATION" | "EXPIRED_AUTHENTICATION" => Error::unauthorized(message),
        "RATE_LIMITS" => Error::from_status(429, response.header("retry-after"), message),
        _ if response.is_success() => Error::fatal(message),
        _ => Error::from_status(response.status, response.header("retry-after"), message),
    })
}

struct HubSpot;

impl Connector for HubSpot {
    fn manifest() -> Manifest {
        Manifest::new("hubspot", env!("CARGO_PKG_VERSION"), "Create or update contacts in HubSpot CRM.")
            .action(
                Action::new("upsert_contact", "Create a contact, or update the one with this email.", upsert_contact)
                    .idempotent(),
            )
            .secret("access_token")
            .oauth("hubspot", &["crm.objects.contacts.write", "crm.objects.contacts.read"])
            .egress("api.hubapi.com")
    }
}

weft_sdk::export!(HubSpot);
