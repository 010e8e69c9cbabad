//! mluvii as a [`Source`]: the stream's type, what it remembers between runs, and a run's
//! window (listed, read, absorbed).
//!
//! A window `[start, end)` lists sessions by `created` (asked one second wider on each side,
//! then cut exactly, so the API's unknown inclusiveness cannot lose or double a boundary
//! session), page by page. **The list rows are SessionModels** (mluvii's own sample client reads
//! them as such): a row that carries what the normalizer needs is the session, and only its
//! routing history is read; a row that lacks it (an abridged list) costs a read of the detail
//! too, counted as a fallback read. A listed session already stored final with the same row
//! costs no request. Requests go `concurrency` at a time under the account's rate ceiling.
//!
//! **Windows sized by what they hold** ([`Windowing::Paged`](crate::engine::Windowing)): the
//! first window is as wide as `window` (a year unless set), so an empty stretch costs nothing;
//! one that holds more than [`TARGET_RECORDS`](crate::engine::TARGET_RECORDS) sessions is
//! split, and memory stays bounded by that, not by the range.
//!
//! **Final values.** A session keeps changing after it ends: ACW lasts until every operator
//! concluded. The stream remembers, in `sync_state.state`, the ids of sessions it wrote that
//! were not yet final (`open`), and re-polls them by id in the first window of every run until
//! they are CLOSED or BLACKLISTED (or have been waited for longer than `max_open_age`). It also
//! remembers the final sessions within the lookback (`closed`, with the fingerprint of their
//! list row in `listed`), so the lookback re-lists them without reading them again. Both sets
//! commit in the same transaction as the rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::client::{Client, ts};
use super::config::MluviiSettings;
use super::normalize::{self, Normalized};
use super::{list, personal, store};
use crate::config::{KeyProblem, SourceSettings};
use crate::engine::{
    Batch, Rejected, RunInfo, Source, SourceContext, SourceError, StreamState, Window,
};
use crate::lenient;

pub struct Mluvii {
    pub(super) cx: Arc<SourceContext>,
    pub(super) settings: MluviiSettings,
    /// The account's requests and its token.
    pub(super) client: Client,
}

impl Mluvii {
    pub fn new(settings: MluviiSettings, cx: Arc<SourceContext>) -> Self {
        Mluvii {
            client: Client::new(cx.clone(), settings.clone()),
            cx,
            settings,
        }
    }

    /// Tokens fetched so far (tests check that an expiry costs exactly one renewal).
    pub fn tokens_fetched(&self) -> u64 {
        self.client.tokens_fetched()
    }
}

/// What the stream remembers between runs: open session id → when it was first seen open;
/// closed session id → its `created` (RFC 3339, empty when unknown).
/// The version of [`Remembered`] as stored; a change to its shape that an older reader would
/// misread raises it (and `read_state` refuses states newer than it knows).
pub(super) const STATE_VERSION: u64 = 1;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Remembered {
    #[serde(default)]
    pub(super) open: BTreeMap<i64, String>,
    #[serde(default)]
    pub(super) closed: BTreeMap<i64, String>,
    /// Sessions anonymised by mluvii since this instant (RFC 3339) are still to be read: the
    /// watermark of `Anonymized.Min` (docs/privacy.md section 4). Empty: from the stream's start.
    #[serde(default)]
    pub(super) anonymized: String,
    /// Final session id → the fingerprint of its list row when it was read: the same row
    /// listed again costs no request.
    #[serde(default)]
    pub(super) listed: BTreeMap<i64, String>,
}

/// What a read of one session tells the open/closed bookkeeping.
#[derive(Debug, Clone)]
pub(super) enum Mark {
    /// CLOSED (final), with its `created` (RFC 3339, empty when unknown).
    Closed(String),
    /// Not final yet: re-poll it until it is.
    Open,
    /// Gone (404) or unreadable: stop re-polling it.
    Forget,
}

impl Remembered {
    pub(super) fn mark(&mut self, id: i64, mark: Mark) {
        match mark {
            Mark::Closed(created) => {
                self.open.remove(&id);
                self.closed.insert(id, created);
            }
            Mark::Open => {
                self.open.entry(id).or_insert_with(|| ts(Utc::now()));
            }
            Mark::Forget => {
                self.open.remove(&id);
            }
        }
    }
}

/// A session read by id: `(id, asked for by name, detail and routing)`; `None` when it
/// answered 404.
type Fetched = (i64, bool, Option<(Value, Value)>);

/// A session to read: its id, whether it was asked for by name (listed, or named by an event),
/// and its listed row when that is a whole session (then only its routing history is read).
pub(super) struct Target {
    pub(super) id: i64,
    pub(super) named: bool,
    pub(super) row: Option<Value>,
}

/// Sessions read by id, normalized, with what to remember of each.
pub(super) struct Read {
    pub(super) sessions: Vec<normalize::Session>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) nulled: Vec<Rejected>,
    pub(super) marks: Vec<(i64, Mark)>,
    /// Sessions that answered 404: kept with `source_deleted_at`, personal data erased.
    pub(super) gone: Vec<crate::model::SessionId>,
}

impl Mluvii {
    /// Normalizes sessions read by id: `(id, asked for by name, detail and routing)`; a named
    /// session that answered 404 is set aside with `missing` as its reason (one only re-polled
    /// is forgotten quietly).
    pub(super) fn absorb(&self, fetched: Vec<Fetched>, missing: &str) -> Read {
        let mut read = Read {
            sessions: Vec::with_capacity(fetched.len()),
            rejected: Vec::new(),
            nulled: Vec::new(),
            marks: Vec::new(),
            gone: Vec::new(),
        };
        for (id, named, data) in fetched {
            let Some((mut detail, mut routing)) = data else {
                read.marks.push((id, Mark::Forget));
                read.gone.push(id.into());
                if named {
                    read.rejected.push(Rejected {
                        record_key: id.to_string(),
                        reason: format!("not_found: {missing}"),
                        payload: json!({ "id": id }),
                    });
                } else {
                    tracing::info!(account = %self.cx.key.account, session = id, "mluvii session no longer exists (404); no longer re-polled");
                }
                continue;
            };
            // Personal data (personal.rs): both documents pass the privacy seam before anything
            // reads a column from them.
            let vetted = self
                .cx
                .personal(
                    &id.to_string(),
                    false,
                    &mut [
                        (&mut detail, personal::SESSION),
                        (&mut routing, personal::ROUTING),
                    ],
                )
                .vetted;
            match normalize::normalize(detail, routing, vetted, &id.to_string()) {
                Normalized::Session(s, n) => {
                    read.nulled.extend(n);
                    let mark = if s.is_final() {
                        Mark::Closed(s.created_at.map(ts).unwrap_or_default())
                    } else {
                        Mark::Open
                    };
                    read.marks.push((s.session_id, mark));
                    read.sessions.push(*s);
                }
                Normalized::Rejected(r) => {
                    read.marks.push((id, Mark::Forget));
                    read.rejected.push(r);
                }
            }
        }
        read
    }

    /// Routing history (and the detail, where no whole listed row stands for it) of `targets`,
    /// `concurrency` at a time.
    pub(super) async fn read_sessions(
        &self,
        targets: Vec<Target>,
    ) -> Result<Vec<Fetched>, SourceError> {
        let mut fetched: Vec<Fetched> = futures::stream::iter(targets.into_iter().map(
            |Target { id, named, row }| async move {
                self.client.session(id, row).await.map(|r| (id, named, r))
            },
        ))
        .buffer_unordered(self.settings.concurrency)
        .try_collect()
        .await?;
        fetched.sort_by_key(|(id, _, _)| *id);
        Ok(fetched)
    }
}

impl SourceSettings for MluviiSettings {
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem> {
        super::config::read(entry, prefix)
    }

    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        Box::new(Mluvii::new(self.clone(), cx))
    }
}

#[async_trait]
impl Source for Mluvii {
    /// Rows rebuilt from what the warehouse stores (`rebuild.rs`).
    fn rebuild(&self) -> Option<&dyn crate::engine::Rebuild> {
        Some(self)
    }

    /// Sized by what they hold: the list is paged, so an empty stretch costs nothing.
    fn windowing(&self) -> crate::engine::Windowing {
        crate::engine::Windowing::Paged
    }

    /// The list of whole days, compared with the warehouse (`audit.rs`).
    fn audit(&self) -> Option<&dyn crate::engine::Audit> {
        Some(self)
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
            .client
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
        let (listed, mut rejected) = self.client.list(window).await?;
        for r in &mut rejected {
            // No usable id: it can match an erasure by its values only.
            self.cx
                .personal("", false, &mut [(&mut r.payload, personal::SESSION)]);
        }
        let listed_ids: BTreeSet<i64> = listed.iter().map(|l| l.id).collect();
        // The fingerprint of each whole listed row: a final session stored from the same row
        // costs no request.
        let mut row_prints: BTreeMap<i64, String> = BTreeMap::new();
        let mut targets: Vec<Target> = Vec::new();
        // With the policy's tag: under another policy, a stored row is read and written again.
        let tag = self.cx.privacy.tag();
        for l in listed {
            let whole = list::is_whole_session(&l.row);
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
                .unwrap_or(self.cx.settings.start);
            anonymized_next = Some(ts(Utc::now() - TimeDelta::minutes(1)));
            let rows = self.client.list_anonymized(since).await?;
            let read: BTreeSet<i64> = fetched.iter().map(|(id, _, _)| *id).collect();
            anonymized = rows.iter().map(|(id, _)| *id).collect();
            let more: Vec<Target> = rows
                .into_iter()
                .filter(|(id, _)| !read.contains(id))
                .map(|(id, row)| Target {
                    id,
                    named: false,
                    row: list::is_whole_session(&row).then_some(row),
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
            - TimeDelta::from_std(self.cx.settings.lookback).unwrap_or(TimeDelta::zero());
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

        Ok(Batch::new(store::SessionRows(sessions))
            .with_rejected(rejected)
            .with_nulled(nulled)
            .with_state(crate::engine::write_state(&mem, STATE_VERSION))
            .with_gone(gone))
    }
}
