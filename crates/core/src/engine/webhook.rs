//! Webhooks as the engine sees them. A vendor event is a hint that names a record; a source
//! that accepts webhooks ([`Webhook`]) re-reads the named records by id and hands back a
//! [`Pushed`] batch, which is written exactly as a window's batch is (the same `Rows::write`,
//! the same `rejected_records` handling, in one transaction), with two differences: the
//! watermark does not move, and the source's state is *updated* on the state as committed
//! (under its row lock) rather than replaced, so a poll running at the same time keeps what it
//! committed.

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use sha2::Digest;
use tokio_postgres::Transaction;

use super::batch::{Batch, SourceError};
use super::write::{Written, write_rows};
use crate::model::{StreamKey, StreamState};
use crate::warehouse::WarehouseError;

/// What a source read for webhook events.
pub struct Pushed {
    /// The rows, as a window's (its `state` is not used).
    pub batch: Batch,
    /// Applied to `sync_state.state` as committed, in the same transaction as the rows.
    pub update_state: StateUpdate,
}

/// What an authenticated webhook body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A listed event type naming a record.
    Record {
        id: crate::model::SessionId,
        event_type: String,
        /// The vendor's event id, or [`body_key`] when it sends none: the same delivery twice
        /// has the same key.
        key: String,
    },
    /// An event type the contract does not list (a registration test, a new type).
    Ignored { event_type: String },
    /// Not JSON, or a listed type without a usable record id.
    Malformed(String),
}

/// How a vendor reports the webhook registered for an account (`sessionsync check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookState {
    /// Registered and active, as described.
    Active(String),
    /// Missing, stopped or pointing elsewhere: what is wrong and what to do.
    Problem(String),
    /// The vendor API does not say.
    Unknown(String),
}

/// A source that accepts vendor webhooks (sources.md section 4).
#[async_trait]
pub trait Webhook: Send + Sync {
    /// True when the request carries the account's signature or credentials (compared in
    /// constant time). Nothing of a request that fails this is kept.
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> bool;
    /// What the (authenticated) body says.
    fn parse(&self, body: &[u8]) -> Verdict;
    /// Re-reads the records `ids` (distinct, ascending) by id. A record the vendor no longer
    /// has, or that does not parse, goes to the batch's `rejected`.
    async fn fetch_ids(
        &self,
        ids: &[crate::model::SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError>;
    /// Registers (or updates) the account's webhook with the vendor, delivering to
    /// `target` (the listener's public URL for this account); says what it did.
    async fn register(&self, target: &reqwest::Url) -> Result<String, SourceError>;
    /// What the vendor says of the account's webhook.
    async fn state(&self) -> Result<WebhookState, SourceError>;
}

/// A webhook body as a JSON object, or the [`Verdict::Malformed`] that says why it is not one.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Verdict> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(_) => Err(Verdict::Malformed("not a JSON object".into())),
        Err(e) => Err(Verdict::Malformed(format!("not JSON ({e})"))),
    }
}

/// The key of a delivery that carries no event id: the SHA-256 of its body.
pub fn body_key(body: &[u8]) -> String {
    let digest = sha2::Sha256::digest(body);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns the stream's committed state into the state after the pushed records.
pub type StateUpdate =
    Box<dyn FnOnce(&serde_json::Value) -> Result<serde_json::Value, SourceError> + Send>;

/// Pushed records could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The stream's committed state could not be read to be updated (`StateUpdate`).
    #[error(transparent)]
    State(SourceError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// Writes `pushed` for stream `key` inside `tx` (which the caller commits): the one write path
/// of a batch ([`super::write::write_rows`]); the watermark stays where it is and the state is
/// updated on the state as committed, under its row lock (after the rows, as every writer).
pub async fn write_pushed(
    tx: &Transaction<'_>,
    key: &StreamKey,
    pushed: Pushed,
    privacy: Option<super::batch::PrivacyOf<'_>>,
) -> Result<Written, PushError> {
    let Pushed {
        batch,
        update_state,
    } = pushed;
    let rows = write_rows(tx, key, batch, privacy).await?;
    let committed = crate::warehouse::lock_state(tx, key).await?;
    let next = update_state(&committed).map_err(PushError::State)?;
    Ok(rows.save_pushed(tx, key, &next).await?)
}
