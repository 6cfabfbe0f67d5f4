//! Workflow versions and the append-only event journal.

use sqlx::{AssertSqlSafe, Row};
use weft_core::Event;

use crate::{Error, Result, Store, now_ms};

/// An event as stored: its place in the journal and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// 1-based position in the run's journal.
    pub seq: i64,
    /// Milliseconds since the epoch when it was committed.
    pub at: i64,
    /// The event.
    pub event: Event,
}

impl Store {
    /// Stores a workflow version under its content hash (a no-op if present).
    pub async fn put_workflow(&self, tenant: &str, hash: &str, name: &str, definition: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, hash) DO NOTHING",
        )
        .bind(tenant)
        .bind(hash)
        .bind(name)
        .bind(definition)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The definition (JSON text) of a stored workflow version.
    pub async fn get_workflow(&self, tenant: &str, hash: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT definition FROM workflows WHERE tenant_id = $1 AND hash = $2")
            .bind(tenant)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Appends events to a run's journal in one transaction and updates the
    /// run's summary. Returns the seq of the first appended event; when it is
    /// not `known + 1`, someone else (a signal, a cancel) wrote in between.
    pub async fn append(&self, run_id: &str, events: &[Event]) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT tenant_id, last_seq FROM runs WHERE id = $1{}", self.for_update());
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        let tenant: String = row.get(0);
        let last: i64 = row.get(1);
        let now = now_ms();
        insert_events(&mut tx, &tenant, run_id, last, events, now).await?;
        update_summary(&mut tx, run_id, last + events.len() as i64, events, now).await?;
        tx.commit().await?;
        Ok(last + 1)
    }

    /// The run's events with seq greater than `after`, in order.
    pub async fn load_events(&self, run_id: &str, after: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT seq, at, body FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id)
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let seq: i64 = row.get(0);
                let body: String = row.get(2);
                let event = serde_json::from_str(&body).map_err(|e| Error::Corrupt {
                    what: format!("event {seq} of run {run_id}"),
                    message: e.to_string(),
                })?;
                Ok(StoredEvent { seq, at: row.get(1), event })
            })
            .collect()
    }
}

pub(crate) async fn insert_events(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    run_id: &str,
    last: i64,
    events: &[Event],
    now: i64,
) -> Result<()> {
    for (n, event) in events.iter().enumerate() {
        let body = serde_json::to_string(event).expect("events serialize");
        sqlx::query(
            "INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(run_id)
        .bind(last + 1 + n as i64)
        .bind(tenant)
        .bind(event.kind())
        .bind(event.step())
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Keeps the run row's status, output and error in step with its journal.
pub(crate) async fn update_summary(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: &str,
    last_seq: i64,
    events: &[Event],
    now: i64,
) -> Result<()> {
    let terminal = events.iter().rev().find_map(|event| match event {
        Event::RunCompleted { output } => Some(("completed", Some(output.to_string()), None)),
        Event::RunFailed { error } => {
            Some(("failed", None, Some(serde_json::to_string(error).expect("errors serialize"))))
        }
        Event::RunCancelled { reason } => {
            Some(("cancelled", None, Some(serde_json::json!({ "kind": "cancelled", "message": reason }).to_string())))
        }
        _ => None,
    });
    match terminal {
        Some((status, output, error)) => {
            sqlx::query(
                "UPDATE runs SET last_seq = $1, updated_at = $2, status = $3, output = $4, error = $5, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $6",
            )
            .bind(last_seq)
            .bind(now)
            .bind(status)
            .bind(output)
            .bind(error)
            .bind(run_id)
            .execute(&mut **tx)
            .await?
        }
        None => {
            sqlx::query("UPDATE runs SET last_seq = $1, updated_at = $2 WHERE id = $3")
                .bind(last_seq)
                .bind(now)
                .bind(run_id)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(())
}
