//! The inbox table (`webhook_events`, migration 0011): what the listener commits before it
//! answers 200, and what the worker claims, acts on and deletes.
//!
//! Every statement names its index: an account's rows through `(source, account, id)` or the
//! event key, and rows already claimed by their row addresses, so that no plan reads the
//! queue's history (with autovacuum off, deleted rows stay in the heap until a VACUUM; the
//! worker runs one after every [`VACUUM_EVERY`] deletions).

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// Events claimed at once per account (their sessions are read in one batch).
pub const CLAIM_LIMIT: i64 = 500;

/// Deleted rows after which the worker vacuums the inbox.
pub const VACUUM_EVERY: u64 = 20_000;

/// Records an authenticated event; `false` when the same event (same key) is already waiting.
pub async fn record(
    c: &impl GenericClient,
    source: &str,
    account: &str,
    session_id: i64,
    event_type: &str,
    key: &str,
    received_at: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO webhook_events (source, account, session_id, event_type, event_key, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (source, account, event_key) DO NOTHING",
            &[&source, &account, &session_id, &event_type, &key, &received_at],
        )
        .await?;
    Ok(n == 1)
}

/// One claimed event.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its row address (valid while the claiming transaction holds the row lock).
    pub ctid: String,
    pub session_id: i64,
    pub received_at: DateTime<Utc>,
    pub attempts: i32,
}

/// The account's oldest due events, locked for this transaction; rows another worker holds
/// are skipped. The order is the claim index's own, so the plan walks `(source, account, id)`
/// and stops at the limit (the plan test holds it to that).
pub const CLAIM: &str = "
SELECT e.ctid::text, e.session_id, e.received_at, e.attempts
  FROM webhook_events e
 WHERE e.source = $1 AND e.account = $2 AND (e.retry_after IS NULL OR e.retry_after <= now())
 ORDER BY e.source, e.account, e.id
 LIMIT $3
   FOR UPDATE SKIP LOCKED";

pub async fn claim(
    c: &impl GenericClient,
    source: &str,
    account: &str,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    Ok(c.query(CLAIM, &[&source, &account, &CLAIM_LIMIT])
        .await?
        .iter()
        .map(|r| Claimed {
            ctid: r.get(0),
            session_id: r.get(1),
            received_at: r.get(2),
            attempts: r.get(3),
        })
        .collect())
}

/// Deletes claimed rows by their row addresses (a TID scan: no index, no statistics).
pub const DELETE: &str = "DELETE FROM webhook_events WHERE ctid = ANY($1::text[]::tid[])";

pub async fn delete(
    c: &impl GenericClient,
    claimed: &[Claimed],
) -> Result<u64, tokio_postgres::Error> {
    let ctids: Vec<&str> = claimed.iter().map(|c| c.ctid.as_str()).collect();
    c.execute(DELETE, &[&ctids]).await
}

/// Marks claimed rows as failed once more: not tried again before `retry_after`.
pub const FAILED: &str = "
UPDATE webhook_events SET attempts = attempts + 1, retry_after = $2, last_error = $3
 WHERE ctid = ANY($1::text[]::tid[])";

pub async fn failed(
    c: &impl GenericClient,
    claimed: &[Claimed],
    retry_after: DateTime<Utc>,
    error: &str,
) -> Result<u64, tokio_postgres::Error> {
    let ctids: Vec<&str> = claimed.iter().map(|c| c.ctid.as_str()).collect();
    c.execute(FAILED, &[&ctids, &retry_after, &error]).await
}
