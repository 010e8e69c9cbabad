//! SuperOffice's completeness audit (sources.md section 5). In `archive` mode the ChatSession
//! archive is asked for the audited days by `whenRequested` (a datetime column: `afterTime` and
//! `beforeTime`) in one keyset-paged query, with only the columns the comparison needs
//! ([`AUDIT_COLUMNS`]); a missing chat is then read by id with its messages. In `for_user` mode
//! `ChatSessionsForUser` is the list (whole entities: a missing chat needs only its messages).
//! A chat whose `Status` is `Deleted` counts as gone, not listed. A stored chat the list no
//! longer shows is read by id: a 404 (or `Deleted`) is gone, anything else is stored again.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::client::{ENTITY_PATH, LIST_PATH, filter_time, filter_time_end, item_id};
use super::config::SuperOfficeMode;
use super::normalize;
use super::source::SuperOffice;
use crate::engine::{
    Audit, KeepRow, Listed, Listing, Pushed, SessionTable, SourceError, StreamState, Window,
};
use crate::lenient::Fields;
use crate::model::SessionId;

/// The archive columns the audit asks for: the id, the day, and whether SuperOffice deleted it.
pub const AUDIT_COLUMNS: &str = "chatSessionId,whenRequested,status";

impl SuperOffice {
    /// What a listed row or entity says: its start (`WhenRequested`, in the account's zone when
    /// it has no offset) and whether SuperOffice deleted it.
    fn listed(&self, row: &Value, whole: bool) -> Listed {
        let start = match row {
            Value::Object(o) => Fields::new(o)
                .date_in("whenrequested", self.settings.timezone)
                .ok()
                .flatten(),
            _ => None,
        };
        Listed {
            start,
            deleted: normalize::is_deleted(row),
            row: whole.then(|| row.clone()),
        }
    }
}

#[async_trait]
impl Audit for SuperOffice {
    fn table(&self) -> SessionTable {
        super::personal::INVENTORY.table()
    }

    async fn list(&self, range: &Window, keep_row: &KeepRow<'_>) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        match self.settings.mode {
            SuperOfficeMode::Archive => {
                let tz = self.settings.timezone;
                let filter = format!(
                    "whenRequested afterTime '{}' and whenRequested beforeTime '{}'",
                    filter_time(range.start, tz),
                    filter_time_end(range.end, tz)
                );
                for (id, row) in self
                    .client
                    .archive_rows(&filter, AUDIT_COLUMNS, None)
                    .await?
                {
                    listing.sessions.insert(id.into(), self.listed(&row, false));
                }
            }
            SuperOfficeMode::ForUser => {
                for mut entity in self.client.entities_for_user().await? {
                    normalize::strip_secrets(&mut entity);
                    if let Some(id) = item_id(&entity).map(SessionId::from) {
                        listing
                            .sessions
                            .insert(id, self.listed(&entity, keep_row(id)));
                    }
                }
            }
        }
        Ok(listing)
    }

    async fn still_there(
        &self,
        ids: &[SessionId],
    ) -> Result<Option<BTreeSet<SessionId>>, SourceError> {
        let found: Vec<Option<SessionId>> =
            futures::stream::iter(ids.iter().copied().map(|id| async move {
                let rel = format!("{LIST_PATH}/{id}");
                Ok::<_, SourceError>(match self.client.get_json(ENTITY_PATH, &rel).await? {
                    Some(entity) if !normalize::is_deleted(&entity) => Some(id),
                    _ => None,
                })
            }))
            .buffer_unordered(self.settings.concurrency)
            .try_collect()
            .await?;
        Ok(Some(found.into_iter().flatten().collect()))
    }

    async fn read(
        &self,
        listing: &Listing,
        ids: &[SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        // Whole entities from the list (for_user); the others read by id.
        let mut entities: Vec<(i64, Value)> = Vec::new();
        let mut by_id: Vec<i64> = Vec::new();
        for id in ids {
            match listing.sessions.get(id).and_then(|l| l.row.clone()) {
                Some(entity) => entities.push((id.0, entity)),
                None => by_id.push(id.0),
            }
        }
        let (read, _, gone) = self
            .entities(
                by_id,
                "not_found: listed by the audit, but reading it answered 404",
            )
            .await?;
        entities.extend(read);
        entities.sort_by_key(|(id, _)| *id);
        // A chat that vanished between the list and the read is gone, not a bad record.
        self.pushed(entities, Vec::new(), gone, state).await
    }
}
