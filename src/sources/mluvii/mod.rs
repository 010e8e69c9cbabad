//! mluvii sessions with their operators, routing history and state durations (sources.md §3).
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

mod auth;
pub mod config;
pub mod durations;
pub mod normalize;
pub mod personal;
pub mod store;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::engine::{
    Batch, Rejected, RunInfo, Source, SourceContext, SourceError, StreamState, Window,
};
use crate::engine::{MIN_WINDOW, TARGET_RECORDS};
use crate::http::HttpError;
use crate::sources::lenient;
pub use auth::{AuthError, TOKEN_PATH};
pub use config::{MluviiSettings, SOURCE};
use normalize::Normalized;

pub const LIST_PATH: &str = "/api/v1/Sessions";
pub const DETAIL_PATH: &str = "/api/v1/Sessions/{id}";
pub const ROUTING_PATH: &str = "/api/v1/Sessions/{id}/routingHistory";

pub struct Mluvii {
    cx: Arc<SourceContext>,
    settings: MluviiSettings,
    tokens: auth::TokenCache,
}

crate::config::impl_account_settings!(MluviiSettings, SOURCE, Mluvii::new);

/// What the stream remembers between runs: open session id → when it was first seen open;
/// closed session id → its `created` (RFC 3339, empty when unknown).
/// The version of [`Remembered`] as stored; a change to its shape that an older reader would
/// misread raises it (and `read_state` refuses states newer than it knows).
const STATE_VERSION: u64 = 1;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Remembered {
    #[serde(default)]
    open: BTreeMap<i64, String>,
    #[serde(default)]
    closed: BTreeMap<i64, String>,
    /// Sessions anonymised by mluvii since this instant (RFC 3339) are still to be read: the
    /// watermark of `Anonymized.Min` (docs/privacy.md section 4). Empty: from the stream's start.
    #[serde(default)]
    anonymized: String,
    /// Final session id → the fingerprint of its list row when it was read: the same row
    /// listed again costs no request.
    #[serde(default)]
    listed: BTreeMap<i64, String>,
}

/// What a read of one session tells the open/closed bookkeeping.
#[derive(Debug, Clone)]
enum Mark {
    /// CLOSED (final), with its `created` (RFC 3339, empty when unknown).
    Closed(String),
    /// Not final yet: re-poll it until it is.
    Open,
    /// Gone (404) or unreadable: stop re-polling it.
    Forget,
}

impl Remembered {
    fn mark(&mut self, id: i64, mark: Mark) {
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
struct Target {
    id: i64,
    named: bool,
    row: Option<Value>,
}

/// A session as the list showed it: its id and the row.
struct Listed {
    id: i64,
    row: Value,
}

/// Sessions read by id, normalized, with what to remember of each.
struct Read {
    sessions: Vec<normalize::Session>,
    rejected: Vec<Rejected>,
    nulled: Vec<Rejected>,
    marks: Vec<(i64, Mark)>,
    /// Sessions that answered 404: kept with `source_deleted_at`, personal data erased.
    gone: Vec<String>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Mluvii {
    pub fn new(settings: MluviiSettings, cx: Arc<SourceContext>) -> Self {
        let tokens = auth::TokenCache::new(
            crate::http::endpoint_url(&settings.base_url, TOKEN_PATH),
            &settings.stream.account,
            &settings.client_id,
            settings.client_secret.clone(),
        );
        Mluvii {
            cx,
            settings,
            tokens,
        }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    /// Tokens fetched so far (tests check that an expiry costs exactly one renewal).
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    fn vendor(&self, message: String) -> SourceError {
        SourceError::Vendor {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            message,
        }
    }

    fn auth_error(&self, e: AuthError) -> SourceError {
        match e {
            AuthError::Http(h) => SourceError::Http(h),
            other => self.vendor(other.to_string()),
        }
    }

    /// GET with the account's token; on 401 the token is renewed once and the request repeated.
    async fn get(
        &self,
        endpoint: &'static str,
        url: reqwest::Url,
        query: &[(&str, String)],
    ) -> Result<bytes::Bytes, SourceError> {
        let token = self
            .tokens
            .get(&self.cx.http)
            .await
            .map_err(|e| self.auth_error(e))?;
        let send = |token: &auth::Token| {
            let url = url.clone();
            let value = token.value.clone();
            self.cx.http.send(endpoint, move |c| {
                c.get(url.clone())
                    .query(query)
                    .bearer_auth(value.expose())
                    .header("Accept", "application/json")
            })
        };
        match send(&token).await {
            Ok(r) => Ok(r.body),
            Err(HttpError::Status { status: 401, .. }) => {
                let fresh = self
                    .tokens
                    .renew(&self.cx.http, &token)
                    .await
                    .map_err(|e| self.auth_error(e))?;
                match send(&fresh).await {
                    Ok(r) => Ok(r.body),
                    Err(HttpError::Status { status: 401, .. }) => Err(self.vendor(format!(
                        "{endpoint} answered 401 even with a freshly issued token; check that API user `{}` may read sessions",
                        self.settings.client_id
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One page of the `Sessions` list for `query`.
    async fn list_page(&self, query: &[(&str, String)]) -> Result<Vec<Value>, SourceError> {
        let body = self.get(LIST_PATH, self.url(LIST_PATH), query).await?;
        normalize::list_items(&String::from_utf8_lossy(&body)).map_err(|detail| SourceError::Body {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            endpoint: LIST_PATH,
            detail,
        })
    }

    /// The ids of the sessions mluvii anonymised since `since` (`Anonymized.Min`, paged as the
    /// window list is).
    async fn list_anonymized(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, Value)>, SourceError> {
        let limit = self.settings.page_size;
        let mut found = BTreeMap::new();
        let mut offset = 0usize;
        for _page in 0..100_000 {
            let query = [
                ("Anonymized.Min", ts(since)),
                ("limit", limit.to_string()),
                ("offset", offset.to_string()),
            ];
            let items = self.list_page(&query).await?;
            let before = found.len();
            let n = items.len();
            for item in items {
                if let Ok(id) = normalize::listed(&item).id {
                    found.insert(id, item);
                }
            }
            if n < limit || found.len() == before {
                break;
            }
            offset += n;
        }
        Ok(found.into_iter().collect())
    }

    /// Every session the list shows for the window, in id order, with its row. A window that
    /// holds more than [`TARGET_RECORDS`] sessions is not listed further: the engine splits it
    /// (unless it is already the smallest window).
    async fn list(&self, window: &Window) -> Result<(Vec<Listed>, Vec<Rejected>), SourceError> {
        let limit = self.settings.page_size;
        let lo = ts(window.start - TimeDelta::seconds(1));
        let hi = ts(window.end + TimeDelta::seconds(1));
        let splittable = window.end - window.start > MIN_WINDOW;
        let mut found: BTreeMap<i64, Listed> = BTreeMap::new();
        let mut rejected = Vec::new();
        let mut offset = 0usize;
        let mut previous_first: Option<Value> = None;
        loop {
            let query = [
                ("Created.Min", lo.clone()),
                ("Created.Max", hi.clone()),
                ("limit", limit.to_string()),
                ("offset", offset.to_string()),
            ];
            let items = self.list_page(&query).await?;
            let n = items.len();
            if n > 0 && offset > 0 && previous_first.as_ref() == items.first() {
                return Err(self.vendor(format!(
                    "{LIST_PATH} returned the same page for offset {offset} as before: it ignores `offset`, so paging cannot go on"
                )));
            }
            previous_first = items.first().cloned();
            for (i, item) in items.into_iter().enumerate() {
                let l = normalize::listed(&item);
                match l.id {
                    Ok(id) => {
                        let inside = l
                            .created
                            .is_none_or(|c| c >= window.start && c < window.end);
                        if inside {
                            found.insert(id, Listed { id, row: item });
                        }
                    }
                    Err(e) => {
                        // A record without an id matches no erasure: under the policy.
                        let mut payload = item;
                        self.cx
                            .privacy
                            .scrub()
                            .document(&mut payload, personal::SESSION);
                        rejected.push(Rejected {
                            record_key: format!("{}#list{}", ts(window.start), offset + i),
                            reason: format!("missing_id: a listed session has no usable id ({e})"),
                            payload,
                        })
                    }
                }
            }
            if n < limit {
                break;
            }
            if splittable && found.len() > TARGET_RECORDS {
                return Err(SourceError::WindowTooFull {
                    source_name: SOURCE,
                    account: self.cx.key.account.clone(),
                    from: window.start,
                    held: found.len(),
                });
            }
            offset += n;
        }
        Ok((found.into_values().collect(), rejected))
    }

    /// Detail (unless the listed row is the session) and routing of one session; `None` when
    /// the API no longer knows it (404).
    async fn session(
        &self,
        id: i64,
        row: Option<Value>,
    ) -> Result<Option<(Value, Value)>, SourceError> {
        let detail = match row {
            Some(row) => row,
            None => {
                let detail_url = self.url(&format!("{LIST_PATH}/{id}"));
                let b = match self.get(DETAIL_PATH, detail_url, &[]).await {
                    Ok(b) => b,
                    Err(SourceError::Http(e)) if e.status() == Some(404) => return Ok(None),
                    Err(e) => return Err(e),
                };
                self.parse(DETAIL_PATH, &b)?
            }
        };
        let routing_url = self.url(&format!("{LIST_PATH}/{id}/routingHistory"));
        let routing = match self.get(ROUTING_PATH, routing_url, &[]).await {
            Ok(b) => b,
            Err(SourceError::Http(e)) if e.status() == Some(404) => bytes::Bytes::new(),
            Err(e) => return Err(e),
        };
        Ok(Some((detail, self.parse(ROUTING_PATH, &routing)?)))
    }

    fn parse(&self, endpoint: &'static str, b: &[u8]) -> Result<Value, SourceError> {
        if b.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(b).map_err(|e| SourceError::Body {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            endpoint,
            detail: format!("not valid JSON ({e}); the body may have been cut off"),
        })
    }
}

impl Mluvii {
    /// Normalizes sessions read by id: `(id, asked for by name, detail and routing)`; a named
    /// session that answered 404 is set aside with `missing` as its reason (one only re-polled
    /// is forgotten quietly).
    fn absorb(&self, fetched: Vec<Fetched>, missing: &str) -> Read {
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
                read.gone.push(id.to_string());
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
            // Personal data (personal.rs): an erasure is matched on the values as received;
            // then the policy (or the erasure) applies to both documents before anything
            // reads a column from them.
            let erased = self.cx.privacy.is_erased(
                SOURCE,
                &self.cx.key.account,
                &id.to_string(),
                &[(&detail, personal::SESSION), (&routing, personal::ROUTING)],
            );
            let scrub = self.cx.privacy.for_record(erased);
            scrub.document(&mut detail, personal::SESSION);
            scrub.document(&mut routing, personal::ROUTING);
            match normalize::normalize(detail, routing, &id.to_string()) {
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
    async fn read_sessions(&self, targets: Vec<Target>) -> Result<Vec<Fetched>, SourceError> {
        let mut fetched: Vec<Fetched> = futures::stream::iter(targets.into_iter().map(
            |Target { id, named, row }| async move {
                self.session(id, row).await.map(|r| (id, named, r))
            },
        ))
        .buffer_unordered(self.settings.concurrency)
        .try_collect()
        .await?;
        fetched.sort_by_key(|(id, _, _)| *id);
        Ok(fetched)
    }
}

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
                source: SOURCE,
                account: &self.cx.key.account,
                sessions: anonymized.len() as u64,
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
