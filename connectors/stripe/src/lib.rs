//! The built-in `stripe` connector, over Stripe's API (`/v1`, form-encoded).
//!
//! - `create_customer`: `POST /v1/customers`, with the step's idempotency key
//!   in `Idempotency-Key`, so a retried step creates one customer.
//! - `get_payment`: `GET /v1/payment_intents/{id}`.
//!
//! Auth: the secret `api_key` (`sk_…` or a restricted `rk_…` key).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_sdk::http::{Request, Response};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://api.stripe.com/v1";

/// A customer to create.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    /// Email address.
    #[serde(default)]
    email: Option<String>,
    /// Full name or business name.
    #[serde(default)]
    name: Option<String>,
    /// A note for your team.
    #[serde(default)]
    description: Option<String>,
    /// Key-value pairs stored on the customer.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The created customer.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Customer {
    /// `cus_…`.
    id: String,
    /// Email address.
    email: Option<String>,
    /// Name.
    name: Option<String>,
    /// Seconds since the epoch.
    created: i64,
    /// Whether it was made with a live key.
    livemode: bool,
}

/// Which payment to look up.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PaymentRef {
    /// A PaymentIntent id, `pi_…`.
    id: String,
}

/// A PaymentIntent, as Stripe describes it.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Payment {
    /// `pi_…`.
    id: String,
    /// In the currency's smallest unit.
    amount: i64,
    /// Of it, what was received.
    #[serde(default)]
    amount_received: i64,
    /// Three-letter ISO code, lower case.
    currency: String,
    /// `requires_payment_method`, `processing`, `succeeded`, `canceled`, …
    status: String,
    /// The customer id, if any.
    customer: Option<String>,
    /// Seconds since the epoch.
    created: i64,
}

fn stripe(cx: &Context, request: Request) -> Result<Response, Error> {
    let key = cx.secret("api_key")?.reveal()?;
    let response = request.bearer(&key).header("stripe-version", "2024-06-20").send()?;
    if response.is_success() {
        return Ok(response);
    }
    // {"error": {"type", "code", "message"}}
    let body: Value = response.json().unwrap_or_default();
    let error = &body["error"];
    let message = format!(
        "Stripe answered HTTP {} ({}): {}",
        response.status,
        error["code"].as_str().or(error["type"].as_str()).unwrap_or("error"),
        error["message"].as_str().unwrap_or("no message")
    );
    Err(match (response.status, error["type"].as_str()) {
        (409, _) => Error::transient(message), // an idempotent request still in flight
        (402, _) | (_, Some("card_error")) => Error::fatal(message),
        (status, _) => Error::from_status(status, response.header("retry-after"), message),
    })
}

fn create_customer(cx: &Context, input: NewCustomer) -> Result<Customer, Error> {
    let mut form: Vec<(String, String)> = Vec::new();
    for (field, value) in [("email", input.email), ("name", input.name), ("description", input.description)] {
        if let Some(value) = value {
            form.push((field.into(), value));
        }
    }
    for (key, value) in input.metadata {
        form.push((format!("metadata[{key}]"), value));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let request = Request::post(format!("{API}/customers")).idempotency_key(cx).form(&pairs);
    stripe(cx, request)?.json()
}

fn get_payment(cx: &Context, input: PaymentRef) -> Result<Payment, Error> {
    if !input.id.starts_with("pi_") || !input.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid_input(format!("`id` must be a PaymentIntent id (pi_…), got {:?}", input.id)));
    }
    stripe(cx, Request::get(format!("{API}/payment_intents/{}", input.id)))?.json()
}

struct Stripe;

impl Connector for Stripe {
    fn manifest() -> Manifest {
        Manifest::new("stripe", env!("CARGO_PKG_VERSION"), "Create customers and look up payments in Stripe.")
            .action(
                Action::new(
                    "create_customer",
                    "Create a customer (once per step, by idempotency key).",
                    create_customer,
                )
                .idempotent(),
            )
            .action(Action::new("get_payment", "Look up a PaymentIntent.", get_payment).idempotent())
            .secret("api_key")
            .egress("api.stripe.com")
    }
}

weft_sdk::export!(Stripe);
