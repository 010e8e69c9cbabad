//! mluvii's completeness audit (sources.md section 5): the `Sessions` list of the audited days by
//! `Created.Min`/`Created.Max`, in one query paged at `page_size`. Its rows are SessionModels, so
//! a missing session costs only its routing history (the detail too where a row is not whole).
//! A stored session the list no longer shows is read by id: a 404 is gone, a 200 means the list
//! missed it (offset paging while sessions arrive can), and it is stored again.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::client::{DETAIL_PATH, LIST_PATH};
use super::list;
use super::source::{Mluvii, Remembered, STATE_VERSION, Target};
use crate::engine::{
    Audit, Batch, KeepRow, Listed, Listing, Pushed, SessionTable, SourceError, StreamState, Window,
};
use crate::model::SessionId;

#[async_trait]
impl Audit for Mluvii {
    fn table(&self) -> SessionTable {
        super::personal::INVENTORY.table()
    }

    async fn list(&self, range: &Window, keep_row: &KeepRow<'_>) -> Result<Listing, SourceError> {
        let (rows, unusable) = self.client.list_all(range, keep_row).await?;
        if !unusable.is_empty() {
            // Never taken for gone: a stored session the list does not show is read by id.
            tracing::info!(account = %self.cx.key.account, rows = unusable.len(), "listed rows without a usable id are left out of the audit");
        }
        let mut listing = Listing::default();
        for l in rows {
            listing.sessions.insert(
                l.id.into(),
                Listed {
                    start: l.created,
                    deleted: false,
                    row: (!l.row.is_null()).then_some(l.row),
                },
            );
        }
        Ok(listing)
    }

    async fn still_there(
        &self,
        ids: &[SessionId],
    ) -> Result<Option<BTreeSet<SessionId>>, SourceError> {
        let found: Vec<Option<SessionId>> =
            futures::stream::iter(ids.iter().copied().map(|id| async move {
                let url = self.client.url(&format!("{LIST_PATH}/{id}"));
                match self.client.get(DETAIL_PATH, url, &[]).await {
                    Ok(_) => Ok(Some(id)),
                    Err(SourceError::Http(e)) if e.status() == Some(404) => Ok(None),
                    Err(e) => Err(e),
                }
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
        _state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let targets = ids
            .iter()
            .map(|id| {
                let row = listing
                    .sessions
                    .get(id)
                    .and_then(|l| l.row.clone())
                    .filter(list::is_whole_session);
                Target {
                    id: id.0,
                    named: false,
                    row,
                }
            })
            .collect();
        let fetched = self.read_sessions(targets).await?;
        let read = self.absorb(fetched, "listed by the audit, but its detail answered 404");
        let key = self.cx.key.clone();
        let marks = read.marks;
        Ok(Pushed {
            batch: Batch::new(super::store::SessionRows(read.sessions))
                .with_rejected(read.rejected)
                .with_nulled(read.nulled)
                .with_gone(read.gone),
            // As a poll: a session not final yet is re-polled by the stream until it is.
            update_state: Box::new(move |committed| {
                let mut mem: Remembered =
                    crate::engine::read_state(&key, committed, STATE_VERSION)?;
                for (id, mark) in marks {
                    mem.mark(id, mark);
                }
                Ok(crate::engine::write_state(&mem, STATE_VERSION))
            }),
        })
    }
}
