//! The seam of `sessionsync renormalize` a source implements ([`Rebuild`]): which stored
//! documents it reads and the rows they make, with no request. The engine's part, paging,
//! batches, claim and checkpoint, is `renormalize.rs`.

use super::batch::Batch;
use crate::model::SessionTable;

/// A stored session as the rebuild reads it: its id and its documents, in the order of
/// [`Rebuild::documents`].
pub struct StoredRecord {
    pub id: i64,
    pub documents: Vec<serde_json::Value>,
    /// Stored as the policy of its row left it: through the privacy seam already.
    pub vetted: super::vetted::Vetted,
}

/// A source whose stored documents are enough to rebuild its rows.
pub trait Rebuild: Send + Sync {
    fn table(&self) -> SessionTable;
    /// The documents to read per stored session: columns of its session table (`raw`,
    /// `routing_raw`) or expressions over it as `t` (a source's stored child rows as JSON, each
    /// found through its session's key).
    fn documents(&self) -> Vec<String>;
    /// The rows of `records` (CPU only: no request, no query); their write derives what comes
    /// from the source's other stored tables too (SuperOffice's `closed_by`, from its stored
    /// messages). A record that no longer makes a row is set aside with its reason, as a sync's;
    /// one whose row would not change may be left out of the batch (counted unchanged).
    fn rebuild(&self, records: Vec<StoredRecord>) -> Batch;
}
