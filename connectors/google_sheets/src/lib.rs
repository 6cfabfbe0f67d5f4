//! The built-in `google_sheets` connector, over the Google Sheets API v4.
//!
//! - `append_row`: `POST /v4/spreadsheets/{id}/values/{range}:append`.
//! - `read_range`: `GET /v4/spreadsheets/{id}/values/{range}`.
//!
//! Auth: the secret `access_token` when set, else an OAuth token for the
//! provider `google`. The Sheets API takes no idempotency key, so
//! `append_row` is not idempotent: a retried step may append twice.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::{Request, Response, path_segment};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://sheets.googleapis.com/v4/spreadsheets";

/// A row to append after the last row of a table.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AppendRow {
    /// The spreadsheet id, from its URL: `/spreadsheets/d/{id}/edit`.
    spreadsheet_id: String,
    /// A1 notation of the table to append to, e.g. `Sheet1` or `'Q3 leads'!A:D`.
    range: String,
    /// The cells, left to right.
    values: Vec<Value>,
    /// `USER_ENTERED` parses values as if typed (formulas, dates);
    /// `RAW` stores them as they are.
    #[serde(default = "user_entered")]
    #[schemars(default = "user_entered")]
    value_input_option: InputOption,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum InputOption {
    /// Parsed as if typed into the UI.
    UserEntered,
    /// Stored as given.
    Raw,
}

fn user_entered() -> InputOption {
    InputOption::UserEntered
}

/// Where the row went.
#[derive(Serialize, JsonSchema)]
struct Appended {
    /// The A1 range the row was written to, e.g. `Sheet1!A5:C5`.
    updated_range: String,
    /// How many rows were written (1).
    updated_rows: u64,
    /// How many cells were written.
    updated_cells: u64,
}

/// A range to read.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadRange {
    /// The spreadsheet id.
    spreadsheet_id: String,
    /// A1 notation, e.g. `Sheet1!A1:D20`.
    range: String,
    /// `FORMATTED_VALUE` (as shown), `UNFORMATTED_VALUE` or `FORMULA`.
    #[serde(default = "formatted")]
    #[schemars(default = "formatted")]
    value_render_option: RenderOption,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum RenderOption {
    /// As displayed, formatted.
    FormattedValue,
    /// Numbers as numbers, not formatted.
    UnformattedValue,
    /// Formulas rather than their results.
    Formula,
}

fn formatted() -> RenderOption {
    RenderOption::FormattedValue
}

/// The cells of a range.
#[derive(Serialize, JsonSchema)]
struct Rows {
    /// The range actually read (Google trims trailing empty rows and columns).
    range: String,
    /// Row by row; empty when the range holds nothing.
    values: Vec<Vec<Value>>,
}

fn option_name<T: Serialize>(option: T) -> String {
    serde_json::to_value(option).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::invalid_input(format!(
            "`spreadsheet_id` must be the id from the sheet's URL (letters, digits, - and _), got {id:?}"
        )));
    }
    Ok(())
}

fn values_url(id: &str, range: &str) -> Result<String, Error> {
    check_id(id)?;
    if range.trim().is_empty() {
        return Err(Error::invalid_input("`range` is empty; give A1 notation such as `Sheet1!A1:D20`"));
    }
    Ok(format!("{API}/{id}/values/{}", path_segment(range)))
}

/// Google's error envelope: `{"error": {"code", "message", "status"}}`.
fn google(cx: &Context, request: Request) -> Result<Response, Error> {
    let token = cx.secret_or_oauth("access_token", "google")?;
    let response = request.bearer(&token).send()?;
    if response.is_success() {
        return Ok(response);
    }
    let body: Value = response.json().unwrap_or_default();
    let error = &body["error"];
    let status = error["status"].as_str().unwrap_or("");
    let message = format!(
        "Google Sheets answered HTTP {} ({}): {}",
        response.status,
        if status.is_empty() { "error" } else { status },
        error["message"].as_str().unwrap_or("no message")
    );
    Err(match status {
        "RESOURCE_EXHAUSTED" => Error::RateLimited { retry_after: None, message },
        _ => Error::from_status(response.status, response.header("retry-after"), message),
    })
}

fn append_row(cx: &Context, input: AppendRow) -> Result<Appended, Error> {
    if input.values.is_empty() {
        return Err(Error::invalid_input("`values` is empty; give at least one cell"));
    }
    let url = values_url(&input.spreadsheet_id, &input.range)?;
    let option = option_name(input.value_input_option);
    let request = Request::post(format!("{url}:append"))
        .query(&[("valueInputOption", option.as_str()), ("insertDataOption", "INSERT_ROWS")])
        .json(&json!({ "range": input.range, "majorDimension": "ROWS", "values": [input.values] }));
    let answer: Value = google(cx, request)?.json()?;
    let updates = &answer["updates"];
    Ok(Appended {
        updated_range: updates["updatedRange"].as_str().unwrap_or_default().to_string(),
        updated_rows: updates["updatedRows"].as_u64().unwrap_or(0),
        updated_cells: updates["updatedCells"].as_u64().unwrap_or(0),
    })
}

fn read_range(cx: &Context, input: ReadRange) -> Result<Rows, Error> {
    let url = values_url(&input.spreadsheet_id, &input.range)?;
    let render = option_name(input.value_render_option);
    let request = Request::get(url).query(&[("majorDimension", "ROWS"), ("valueRenderOption", render.as_str())]);
    #[derive(Deserialize)]
    struct ValueRange {
        range: String,
        #[serde(default)]
        values: Vec<Vec<Value>>,
    }
    let answer: ValueRange = google(cx, request)?.json()?;
    Ok(Rows { range: answer.range, values: answer.values })
}

struct GoogleSheets;

impl Connector for GoogleSheets {
    fn manifest() -> Manifest {
        Manifest::new("google_sheets", env!("CARGO_PKG_VERSION"), "Append rows to and read ranges of Google Sheets.")
            .action(Action::new("append_row", "Append one row after a table (values.append).", append_row))
            .action(Action::new("read_range", "Read the cells of a range (values.get).", read_range).idempotent())
            .secret("access_token")
            .oauth("google", &["https://www.googleapis.com/auth/spreadsheets"])
            .egress("sheets.googleapis.com")
    }
}

weft_sdk::export!(GoogleSheets);
