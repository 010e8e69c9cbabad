//! mluvii as a [`Source`]: a run's window (listed, read, absorbed) and what it remembers.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::normalize::{self};
use super::store;
use crate::engine::{Batch, RunInfo, Source, SourceError, StreamState, Window};
use crate::sources::lenient;

use super::read::{Mark, Mluvii, Remembered, STATE_VERSION, Target, ts};

#[async_trait]
impl Source for Mluvii {
    /// Sized by what they hold: the list is paged, so an empty stretch costs nothing.
    fn windowing(&self) -> crate::engine::Windowing {
        crate::engine::Windowing::Paged
    }

    fn webhook(&self) -> Option<&dyn crate::engine::Webhook> {
        self.settings
            .webhook
            .as_ref()
            .map(|_| self as &dyn crate::engine::Webhook)
    }

    /// One call to the Sessions list for the last 30 days: it answers, and it shows sessions
    /// (none: a warning naming the right the API user needs).
    async fn check(&self) -> Result<String, SourceError> {
        let since = Utc::now() - crate::engine::SILENCE_CHECK;
        let items = self
            .list_page(&[("Created.Min", ts(since)), ("limit", "1".to_string())])
            .await?;
        let mut text = "answered (the Sessions list)".to_string();
        if items.is_empty() {
            text.push_str("\nWARN: no session created in the last 30 days is visible with these credentials: the API user needs the right to read sessions (in mluvii: Settings → API → the user's permissions, sessions), and sees only its tenant's");
        } else {
            text.push_str("; sessions of the last 30 days are visible");
        }
        Ok(text)
    }

    /// The first window of a regular run also re-reads the sessions still open; a backfill
    /// re-reads its range only (open sessions wait for the regular cycle).
    async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
        run: RunInfo,
    ) -> Result<Batch, SourceError> {
        let mut mem: Remembered =
            crate::engine::read_state(&self.cx.key, &state.state, STATE_VERSION)?;
        let (listed, mut rejected) = self.list(window).await?;
        let listed_ids: BTreeSet<i64> = listed.iter().map(|l| l.id).collect();
        // The fingerprint of each whole listed row: a final session stored from the same row
        // costs no request.
        let mut row_prints: BTreeMap<i64, String> = BTreeMap::new();
        let mut targets: Vec<Target> = Vec::new();
        // With the policy's tag: under another policy, a stored row is read and written again.
        let tag = self.cx.privacy.tag();
        for l in listed {
            let whole = normalize::is_whole_session(&l.row);
            let print = whole.then(|| lenient::fingerprint_parts(&[&tag, "|", &l.row.to_string()]));
            if mem.closed.contains_key(&l.id) {
                let unchanged = match (&print, mem.listed.get(&l.id)) {
                    (Some(now), Some(then)) => now == then,
                    // Stored final, and nothing to tell a change by (an abridged row, or one
                    // closed by a webhook): as it was.
                    _ => true,
                };
                // A backfill reads its range again whatever is remembered (it is how rows
                // stored under another policy are rewritten).
                if unchanged && !run.backfill {
                    continue;
                }
            }
            if let Some(p) = print {
                row_prints.insert(l.id, p);
            }
            targets.push(Target {
                id: l.id,
                named: true,
                row: whole.then_some(l.row),
            });
        }
        let first = run.first && !run.backfill;
        if first {
            targets.extend(
                mem.open
                    .keys()
                    .filter(|id| !listed_ids.contains(id))
                    .map(|id| Target {
                        id: *id,
                        named: false,
                        row: None,
                    }),
            );
        }
        // A listed row that is not a whole session costs a read of the detail: counted.
        let fallbacks = targets
            .iter()
            .filter(|t| t.named && t.row.is_none())
            .count();
        let mut fetched = self.read_sessions(targets).await?;
        self.cx
            .fallbacks
            .fetch_add(fallbacks as u64, std::sync::atomic::Ordering::Relaxed);
        // Sessions mluvii anonymised since the last look are read again however old they are
        // (their emptied fields overwrite what is stored), once per regular run. The watermark
        // is taken a minute before the request: a re-listed session costs two requests and is
        // not rewritten when unchanged.
        let mut anonymized_next = None;
        let mut anonymized = Vec::new();
        if first {
            let since = DateTime::parse_from_rfc3339(&mem.anonymized)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(self.settings.stream.start);
            anonymized_next = Some(ts(Utc::now() - TimeDelta::minutes(1)));
            let rows = self.list_anonymized(since).await?;
            let read: BTreeSet<i64> = fetched.iter().map(|(id, _, _)| *id).collect();
            anonymized = rows.iter().map(|(id, _)| *id).collect();
            let more: Vec<Target> = rows
                .into_iter()
                .filter(|(id, _)| !read.contains(id))
                .map(|(id, row)| Target {
                    id,
                    named: false,
                    row: normalize::is_whole_session(&row).then_some(row),
                })
                .collect();
            if !more.is_empty() {
                fetched.extend(self.read_sessions(more).await?);
                fetched.sort_by_key(|(id, _, _)| *id);
            }
        }

        let read = self.absorb(fetched, "listed, but its detail answered 404");
        rejected.extend(read.rejected);
        let gone = read.gone;
        if let Some(next) = anonymized_next {
            mem.anonymized = next;
        }
        if !anonymized.is_empty() {
            crate::events::SessionsErasedAtSource {
                key: &self.cx.key,
                sessions: anonymized.len() as u64,
                cause: "anonymised",
            }
            .emit(&self.cx.metrics);
        }
        for (id, mark) in read.marks {
            match (&mark, row_prints.remove(&id)) {
                (Mark::Closed(_), Some(p)) => {
                    mem.listed.insert(id, p);
                }
                (Mark::Closed(_), None) => {}
                _ => {
                    mem.listed.remove(&id);
                }
            }
            mem.mark(id, mark);
        }
        let (sessions, nulled) = (read.sessions, read.nulled);

        // Forget what no later run needs: closed sessions below the next lookback, and open
        // sessions that have been waited for longer than `max_open_age`.
        let horizon = window.end
            - TimeDelta::from_std(self.settings.stream.lookback).unwrap_or(TimeDelta::zero());
        mem.closed.retain(|_, c| {
            DateTime::parse_from_rfc3339(c).is_ok_and(|c| c.with_timezone(&Utc) >= horizon)
        });
        let closed = &mem.closed;
        mem.listed.retain(|id, _| closed.contains_key(id));
        let too_old = Utc::now()
            - TimeDelta::from_std(self.settings.max_open_age).unwrap_or(TimeDelta::days(7));
        mem.open.retain(|id, c| {
            let keep = DateTime::parse_from_rfc3339(c)
                .map_or(true, |c| c.with_timezone(&Utc) >= too_old);
            if !keep {
                tracing::warn!(account = %self.cx.key.account, session = id, "mluvii session still not CLOSED after max_open_age; no longer re-polled");
            }
            keep
        });

        Ok(Batch {
            record_keys: sessions.iter().map(|s| s.session_id.to_string()).collect(),
            rows: Box::new(store::SessionRows(sessions)),
            rejected,
            nulled,
            state: Some(crate::engine::write_state(&mem, STATE_VERSION)),
            gone,
        })
    }
}
