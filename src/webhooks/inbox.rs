//! The inbox table (`webhook_events`, migration 0011): what the listener commits before it
//! answers 200, and what the worker claims, acts on and deletes.
//!
//! Every statement names its index: an account's rows through `(source, account, id)` or the
//! event key, and rows already claimed by their row addresses, so that no plan reads the
//! queue's history (with autovacuum off, deleted rows stay in the heap until a VACUUM; the
//! worker runs one after every [`VACUUM_EVERY`] deletions).

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::model::SessionId;

/// Events claimed at once per account (their sessions are read in one batch).
pub const CLAIM_LIMIT: i64 = 500;

/// Deleted rows after which the worker vacuums the inbox.
pub const VACUUM_EVERY: u64 = 20_000;

/// Records an authenticated event; `false` when the same event (same key) is already waiting.
pub async fn record(
    c: &impl GenericClient,
    source: &str,
    account: &str,
    session_id: SessionId,
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
    /// Its row address as of its lease (with `id`, which is never reused, it names the row
    /// while nobody else has leased it since).
    pub ctid: String,
    pub id: i64,
    pub session_id: SessionId,
    pub received_at: DateTime<Utc>,
    pub attempts: i32,
}

/// The account's oldest due events, locked for this transaction; rows another worker holds
/// are skipped. The order is the claim index's own, so the plan walks `(source, account, id)`
/// and stops at the limit (the plan test holds it to that).
pub const CLAIM: &str = "
SELECT e.ctid::text, e.id, e.session_id, e.received_at, e.attempts
  FROM webhook_events e
 WHERE e.source = $1 AND e.account = $2 AND (e.retry_after IS NULL OR e.retry_after <= now())
 ORDER BY e.source, e.account, e.id
 LIMIT $3
   FOR UPDATE SKIP LOCKED";

/// Leases rows by their addresses until `$3` (`NULL` gives them back): not due for anyone
/// else meanwhile. Returns their new addresses (an update moves a row).
pub const LEASE: &str = "
UPDATE webhook_events SET retry_after = $3
 WHERE ctid = ANY($1::text[]::tid[]) AND id = ANY($2::bigint[])
 RETURNING ctid::text, id";

/// Claims the account's due events for `until`, in one short transaction of the caller's:
/// the worker reads their sessions from the vendor with no transaction or connection held,
/// and nobody else takes them before `until` (a process that dies leaves them due again then).
pub async fn claim(
    c: &impl GenericClient,
    source: &str,
    account: &str,
    until: DateTime<Utc>,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let mut claimed: Vec<Claimed> = c
        .query(CLAIM, &[&source, &account, &CLAIM_LIMIT])
        .await?
        .iter()
        .map(|r| Claimed {
            ctid: r.get(0),
            id: r.get(1),
            session_id: r.get(2),
            received_at: r.get(3),
            attempts: r.get(4),
        })
        .collect();
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let (ctids, ids) = addresses(&claimed);
    let moved = c.query(LEASE, &[&ctids, &ids, &Some(until)]).await?;
    follow(&mut claimed, &moved);
    Ok(claimed)
}

/// Extends the lease of `claimed` to `until`, following the rows to their new addresses (a row
/// another worker leased since its lease ran out is dropped from `claimed`).
pub async fn renew(
    c: &impl GenericClient,
    claimed: &mut Vec<Claimed>,
    until: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let (ctids, ids) = addresses(claimed);
    let moved = c.query(LEASE, &[&ctids, &ids, &Some(until)]).await?;
    follow(claimed, &moved);
    Ok(())
}

/// Keeps the rows of `claimed` that `moved` (`RETURNING ctid, id`) names, at their new addresses.
fn follow(claimed: &mut Vec<Claimed>, moved: &[tokio_postgres::Row]) {
    let moved: std::collections::HashMap<i64, String> =
        moved.iter().map(|r| (r.get(1), r.get(0))).collect();
    claimed.retain_mut(|e| match moved.get(&e.id) {
        Some(ctid) => {
            e.ctid.clone_from(ctid);
            true
        }
        None => false,
    });
}

/// Gives leased rows back (due again at once), e.g. at shutdown.
pub async fn unlease(
    c: &impl GenericClient,
    claimed: &[Claimed],
) -> Result<u64, tokio_postgres::Error> {
    let (ctids, ids) = addresses(claimed);
    let none: Option<DateTime<Utc>> = None;
    c.execute(LEASE, &[&ctids, &ids, &none]).await
}

fn addresses(claimed: &[Claimed]) -> (Vec<&str>, Vec<i64>) {
    claimed.iter().map(|c| (c.ctid.as_str(), c.id)).unzip()
}

/// Deletes claimed rows by their row addresses (a TID scan: no index, no statistics); a row
/// another worker leased since (it moved) is left to it.
pub const DELETE: &str =
    "DELETE FROM webhook_events WHERE ctid = ANY($1::text[]::tid[]) AND id = ANY($2::bigint[])";

pub async fn delete(
    c: &impl GenericClient,
    claimed: &[Claimed],
) -> Result<u64, tokio_postgres::Error> {
    let (ctids, ids) = addresses(claimed);
    c.execute(DELETE, &[&ctids, &ids]).await
}

/// Marks claimed rows as failed once more: not tried again before `retry_after`.
pub const FAILED: &str = "
UPDATE webhook_events SET attempts = attempts + 1, retry_after = $3, last_error = $4
 WHERE ctid = ANY($1::text[]::tid[]) AND id = ANY($2::bigint[])";

pub async fn failed(
    c: &impl GenericClient,
    claimed: &[Claimed],
    retry_after: DateTime<Utc>,
    error: &str,
) -> Result<u64, tokio_postgres::Error> {
    let (ctids, ids) = addresses(claimed);
    c.execute(FAILED, &[&ctids, &ids, &retry_after, &error])
        .await
}
