//! SuperOffice CRM chat sessions and messages (sources.md §2), in two modes:
//!
//! - `archive` (default): one window per run, `[watermark − lookback, now)`, starting at T. Each
//!   archive column takes only the operators of its restriction type (sources.md §2), so the
//!   ChatSession archive is asked two lists, merged by id: new chats to the second
//!   (`whenRequested afterTime T`, a datetime column) and changed ones by whole UTC days
//!   (`updatedDate after '<the day before T>'`, a date column). Both are ordered by
//!   `chatSessionId` with keyset paging (`chatSessionId gt LAST`; an `odata.nextLink` is followed
//!   when the server gives one) and `$select` the columns that show a change ([`LIST_COLUMNS`]).
//!   The stream keeps a fingerprint of each listed row; only rows that are new or whose columns
//!   changed are read by id, `concurrency` at a time. Chats not yet final are re-read by id at
//!   every run until they are (for [`OPEN_CHAT_AGE`]), so nothing depends on when SuperOffice
//!   bumps `updatedDate`.
//! - `for_user`: `ChatSessionsForUser` returns every session of the API user at once, with no
//!   filter. A fingerprint per session (kept in `sync_state.state`) tells which changed; only
//!   those are written and have their messages read, so an unchanged list costs one request.
//!   It is the same fingerprint the row stores as `content_hash` (the one "unchanged" check of
//!   every source); the copy in the state is there because it saves the message requests of
//!   unchanged sessions, which a check at write time would come too late for.
//!
//! Messages (`messages = true`) are read for changed sessions only, `after` the last message
//! id already stored. `SessionKey` is removed from every entity as soon as it is parsed.
//!
//! **Time zones.** Every request asks for UTC with offsets (`SO-TimeZone: UTC, includeTZOffset`),
//! and filter values are sent so that they are right in that zone. A tenant with time-zone
//! support switched off ignores the header and writes its base zone's wall clock without an
//! offset: the account's `timezone` names that zone (`sessionsync check` tells which case a
//! tenant is).

pub mod config;
pub mod normalize;
pub mod personal;
mod store;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::engine::{
    Batch, Rejected, RunInfo, Source, SourceContext, SourceError, StreamState, Window,
};
use crate::http::HttpError;
use crate::privacy::Kind;
use crate::sources::lenient::{self, Fields};
pub use config::{SOURCE, SuperOfficeAuth, SuperOfficeMode, SuperOfficeSettings};
use normalize::Normalized;

pub const LIST_PATH: &str = "/api/v1/ChatSession";
pub const ENTITY_PATH: &str = "/api/v1/ChatSession/{id}";
pub const MESSAGES_PATH: &str = "/api/v1/ChatSession/{id}/Messages";
pub const FOR_USER_PATH: &str = "/api/v1/Agents/Chat/ChatSessionsForUser";
/// The request header that chooses the zone of every date in a request and its answer.
pub const TIMEZONE_HEADER: &str = "SO-TimeZone";
/// UTC (SuperOffice's zone id 1), with the offset written on every date.
pub const TIMEZONE_ASKED: &str = "UTC, includeTZOffset";
/// The archive columns a listed row carries: those that show a change of the chat.
pub const LIST_COLUMNS: &str =
    "chatSessionId,status,whenRequested,whenStarted,whenEnded,lastMessage,rating,updatedDate";
/// How long after it was requested a chat that is not final is still re-read by id at every
/// run; an older one is read again only when the archive lists it changed.
pub const OPEN_CHAT_AGE: TimeDelta = TimeDelta::days(7);

pub struct SuperOffice {
    cx: Arc<SourceContext>,
    settings: SuperOfficeSettings,
}

crate::config::impl_account_settings!(SuperOfficeSettings, SOURCE, SuperOffice::new);

/// What the stream remembers of one session between runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Seen {
    /// Fingerprint of the entity (without SessionKey).
    h: String,
    /// Last message id stored.
    #[serde(default)]
    m: i64,
    /// Terminal status (no more messages expected).
    #[serde(default)]
    t: bool,
    /// When it was last seen (RFC 3339).
    #[serde(default)]
    s: String,
    /// Fingerprint of its archive row as last listed (archive mode; empty when never listed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    l: String,
    /// When it was requested (RFC 3339; when first seen if unknown): a chat not final is
    /// re-read by id while this is within [`OPEN_CHAT_AGE`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    o: String,
    /// The privacy policy (its tag) it was written under: under another one now, it is read and
    /// written again, messages included, so that its rows' labels tell the truth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    p: String,
}

/// The version of [`Remembered`] as stored; a change to its shape that an older reader would
/// misread raises it (and `read_state` refuses states newer than it knows).
const STATE_VERSION: u64 = 1;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Remembered {
    #[serde(default)]
    sessions: BTreeMap<i64, Seen>,
}

impl SuperOffice {
    pub fn new(settings: SuperOfficeSettings, cx: Arc<SourceContext>) -> Self {
        SuperOffice { cx, settings }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let rb = rb
            .header("Accept", "application/json")
            .header(TIMEZONE_HEADER, TIMEZONE_ASKED);
        match &self.settings.auth {
            SuperOfficeAuth::Ticket { ticket, app_token } => rb
                .header("Authorization", format!("SOTICKET {}", ticket.expose()))
                .header("SO-AppToken", app_token.expose()),
            SuperOfficeAuth::Bearer { token, app_token } => {
                let rb = rb.bearer_auth(token.expose());
                match app_token {
                    Some(a) => rb.header("SO-AppToken", a.expose()),
                    None => rb,
                }
            }
        }
    }

    fn body_error(&self, endpoint: &'static str, detail: String) -> SourceError {
        SourceError::Body {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            endpoint,
            detail,
        }
    }

    /// A 401 is final and explained; everything else passes through.
    fn http_error(&self, e: HttpError) -> SourceError {
        if e.status() == Some(401) {
            let what = match self.settings.auth {
                SuperOfficeAuth::Ticket { .. } => {
                    "the ticket expired or was revoked (HTTP 401); sign in again and update `ticket` (and check `app_token`)"
                }
                SuperOfficeAuth::Bearer { .. } => {
                    "the bearer token expired or was revoked (HTTP 401); issue a new one and update `bearer`"
                }
            };
            return SourceError::Vendor {
                source_name: SOURCE,
                account: self.cx.key.account.clone(),
                message: what.into(),
            };
        }
        SourceError::Http(e)
    }

    async fn get_json(
        &self,
        endpoint: &'static str,
        url: reqwest::Url,
    ) -> Result<Option<Value>, SourceError> {
        match self
            .cx
            .http
            .send(endpoint, |c| self.authed(c.get(url.clone())))
            .await
        {
            Ok(r) => parse_json(&r.body)
                .map(Some)
                .map_err(|d| self.body_error(endpoint, d)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(self.http_error(e)),
        }
    }

    /// The archive rows that may have changed since `since` (archive mode), by id, each with the
    /// fingerprint of its columns: chats requested since then (to the second) and chats
    /// updated on `since`'s UTC date or later (the archive's `updatedDate` is a date column).
    async fn list_candidates(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<i64, String>, SourceError> {
        // Never write a date SuperOffice reads as "not set" into the filter (a `start` before
        // 1900 would be one): from 1900 on is everything.
        let first: DateTime<Utc> = lenient::FIRST_REAL_DATE.parse().expect("constant");
        let since = since.max(first);
        let new = format!(
            "whenRequested afterTime '{}'",
            filter_time(since, self.settings.timezone)
        );
        let day_before = (since - TimeDelta::days(1)).format("%Y-%m-%d");
        let changed = format!("updatedDate after '{day_before}'");
        let mut rows = self.list_rows(&new, None).await?;
        rows.extend(self.list_rows(&changed, None).await?);
        Ok(rows)
    }

    /// Every archive row that `filter` selects, by id with its fingerprint, paged by keyset
    /// (at most `limit` rows when given: one page).
    async fn list_rows(
        &self,
        filter: &str,
        limit: Option<usize>,
    ) -> Result<BTreeMap<i64, String>, SourceError> {
        let top = limit.unwrap_or(self.settings.page_size);
        let mut rows = BTreeMap::new();
        let mut last: Option<i64> = None;
        let mut next: Option<reqwest::Url> = None;
        for _page in 0..1_000_000 {
            let url = match next.take() {
                Some(u) => u,
                None => {
                    let mut f = filter.to_string();
                    if let Some(l) = last {
                        f.push_str(&format!(" and chatSessionId gt {l}"));
                    }
                    let mut u = self.url(LIST_PATH);
                    u.query_pairs_mut()
                        .append_pair("$select", LIST_COLUMNS)
                        .append_pair("$filter", &f)
                        .append_pair("$orderBy", "chatSessionId")
                        .append_pair("$top", &top.to_string());
                    u
                }
            };
            let body = self
                .get_json(LIST_PATH, url)
                .await?
                .ok_or_else(|| self.body_error(LIST_PATH, "the archive answered 404".into()))?;
            let (items, next_link) = list_page(&body).map_err(|d| self.body_error(LIST_PATH, d))?;
            let before = rows.len();
            for item in &items {
                match item_id(item) {
                    Some(id) => {
                        rows.insert(id, row_fingerprint(item));
                        last = Some(last.map_or(id, |l| l.max(id)));
                    }
                    None => {
                        return Err(self.body_error(
                            LIST_PATH,
                            format!("a row without chatSessionId: {}", lenient::short(item)),
                        ));
                    }
                }
            }
            if limit.is_some() {
                break;
            }
            let progressed = rows.len() > before;
            if let Some(link) = next_link.filter(|_| progressed) {
                next = Some(self.same_origin(&link)?);
                continue;
            }
            if items.len() < top || !progressed {
                break;
            }
        }
        Ok(rows)
    }

    /// An `odata.nextLink`, resolved against the base URL; refused if it leaves the tenant's
    /// host (the credentials would go with it).
    fn same_origin(&self, link: &str) -> Result<reqwest::Url, SourceError> {
        let base = &self.settings.base_url;
        let url = base.join(link).map_err(|e| {
            self.body_error(LIST_PATH, format!("odata.nextLink is not a URL ({e})"))
        })?;
        if url.origin() != base.origin() {
            return Err(self.body_error(
                LIST_PATH,
                format!(
                    "odata.nextLink points to another host ({}); not followed",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        Ok(url)
    }

    async fn entities_for_user(&self) -> Result<Vec<Value>, SourceError> {
        let url = self.url(FOR_USER_PATH);
        let r = self
            .cx
            .http
            .send(FOR_USER_PATH, |c| {
                self.authed(c.post(url.clone()))
                    .header("Content-Type", "application/json")
                    .body("{}")
            })
            .await
            .map_err(|e| self.http_error(e))?;
        let body = parse_json(&r.body).map_err(|d| self.body_error(FOR_USER_PATH, d))?;
        list_page(&body)
            .map(|(items, _)| items)
            .map_err(|d| self.body_error(FOR_USER_PATH, d))
    }

    async fn messages(&self, id: i32, after: i64) -> Result<Vec<Value>, SourceError> {
        let mut url = self.url(&format!("{LIST_PATH}/{id}/Messages"));
        url.query_pairs_mut()
            .append_pair("after", &after.to_string());
        match self.get_json(MESSAGES_PATH, url).await? {
            None => Ok(Vec::new()),
            Some(v) => list_page(&v)
                .map(|(items, _)| items)
                .map_err(|d| self.body_error(MESSAGES_PATH, d)),
        }
    }
}

/// What reading a set of entities gave: the sessions to write (changed ones, or all when
/// forced), their new messages, and what to remember of each session seen.
struct Read {
    sessions: Vec<normalize::Session>,
    messages: Vec<normalize::Message>,
    rejected: Vec<Rejected>,
    nulled: Vec<Rejected>,
    current: BTreeMap<i64, Seen>,
    /// Sessions written erased (a recorded erasure matches them, or SuperOffice deleted them).
    erased: std::collections::HashSet<i32>,
    /// Sessions whose status is `Deleted`: kept with `source_deleted_at`, their personal data
    /// erased (docs/privacy.md section 4).
    gone: Vec<String>,
    /// Entities read whose fingerprint had not changed (not written).
    unchanged: u64,
}

impl SuperOffice {
    /// Reads entities by id, `concurrency` at a time, SessionKey removed; an id answering 404
    /// is set aside with `missing` as its reason.
    async fn entities(
        &self,
        ids: Vec<i64>,
        missing: &str,
    ) -> Result<(Vec<(i64, Value)>, Vec<Rejected>, Vec<String>), SourceError> {
        let got: Vec<(i64, Option<Value>)> =
            futures::stream::iter(ids.into_iter().map(|id| async move {
                let url = self.url(&format!("{LIST_PATH}/{id}"));
                self.get_json(ENTITY_PATH, url).await.map(|v| (id, v))
            }))
            .buffer_unordered(self.settings.concurrency)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(got.len());
        let mut rejected = Vec::new();
        let mut gone = Vec::new();
        for (id, v) in got {
            match v {
                Some(mut v) => {
                    normalize::strip_secrets(&mut v);
                    out.push((id, v));
                }
                None => {
                    rejected.push(Rejected {
                        record_key: id.to_string(),
                        reason: missing.into(),
                        payload: json!({ "ChatSessionId": id }),
                    });
                    gone.push(id.to_string());
                }
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok((out, rejected, gone))
    }

    /// Normalizes the entities whose fingerprint changed (all of them when `force`: a webhook
    /// said they changed) and reads their messages after the last one stored.
    async fn read_changed(
        &self,
        entities: Vec<(i64, Value)>,
        mem: &Remembered,
        force: bool,
    ) -> Result<Read, SourceError> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let tag = self.cx.privacy.tag();
        let mut read = Read {
            sessions: Vec::new(),
            messages: Vec::new(),
            rejected: Vec::new(),
            nulled: Vec::new(),
            current: BTreeMap::new(),
            erased: Default::default(),
            gone: Vec::new(),
            unchanged: 0,
        };
        let mut changed: Vec<(i32, i64)> = Vec::new();
        for (i, (id, mut raw)) in entities.into_iter().enumerate() {
            lenient::clean_json(&mut raw);
            // Personal data (personal.rs): an erasure is matched on the values as received;
            // then the policy (or the erasure) applies to the entity before anything reads it.
            let deleted = normalize::is_deleted(&raw);
            let erased = deleted
                || self.cx.privacy.is_erased(
                    SOURCE,
                    &self.cx.key.account,
                    &id.to_string(),
                    &[(&raw, personal::ENTITY)],
                );
            self.cx
                .privacy
                .for_record(erased)
                .document(&mut raw, personal::ENTITY);
            let h = normalize::fingerprint(&raw);
            let before = mem.sessions.get(&id).cloned();
            if let Some(mut b) = before.clone().filter(|b| b.h == h && b.p == tag && !force) {
                b.s = now.clone();
                read.current.insert(id, b);
                read.unchanged += 1;
                continue;
            }
            match normalize::normalize(
                raw,
                &format!("{}#{i}", self.settings.mode_name()),
                self.settings.timezone,
            ) {
                Normalized::Session(mut s, n) => {
                    s.content_hash = h.clone();
                    if erased {
                        read.erased.insert(s.chat_session_id);
                    }
                    if deleted {
                        read.gone.push(s.chat_session_id.to_string());
                    }
                    read.nulled.extend(n);
                    // Under another policy than its stored rows: every message again.
                    let last = before.as_ref().filter(|b| b.p == tag).map_or(0, |b| b.m);
                    let requested = s
                        .requested_at
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
                    read.current.insert(
                        id,
                        Seen {
                            h,
                            m: last,
                            t: normalize::is_terminal(s.status.as_deref()),
                            s: now.clone(),
                            l: before.as_ref().map(|b| b.l.clone()).unwrap_or_default(),
                            p: tag.clone(),
                            o: requested
                                .or_else(|| before.map(|b| b.o).filter(|o| !o.is_empty()))
                                .unwrap_or_else(|| now.clone()),
                        },
                    );
                    changed.push((s.chat_session_id, last));
                    read.sessions.push(*s);
                }
                Normalized::Rejected(r) => read.rejected.push(r),
            }
        }
        if self.settings.messages && !changed.is_empty() {
            read.messages = self.new_messages(changed, &mut read).await?;
        }
        Ok(read)
    }

    /// The messages of `sessions` (id, last stored message id) after the last stored one;
    /// remembers the newest id of each.
    async fn new_messages(
        &self,
        sessions: Vec<(i32, i64)>,
        read: &mut Read,
    ) -> Result<Vec<normalize::Message>, SourceError> {
        let fetched: Vec<(i32, Vec<Value>)> = futures::stream::iter(
            sessions
                .into_iter()
                .map(|(id, after)| async move { self.messages(id, after).await.map(|m| (id, m)) }),
        )
        .buffer_unordered(self.settings.concurrency)
        .try_collect()
        .await?;
        let mut by_id: HashMap<i32, normalize::Message> = HashMap::new();
        for (session, list) in fetched {
            let scrub = self.cx.privacy.for_record(read.erased.contains(&session));
            for v in list {
                match normalize::message(&v, session, self.settings.timezone) {
                    Ok((mut m, unset)) => {
                        read.nulled.extend(unset.into_iter().map(|reason| Rejected {
                            record_key: format!(
                                "message {} of session {session}",
                                m.chat_message_id
                            ),
                            reason,
                            payload: Value::Null,
                        }));
                        if let Some(seen) = read.current.get_mut(&i64::from(session)) {
                            seen.m = seen.m.max(i64::from(m.chat_message_id));
                        }
                        m.message = m.message.map(|t| lenient::clean(&t));
                        let class = personal::author_class(m.kind.as_deref());
                        m.author = scrub.text(class, Kind::Text, m.author.take());
                        m.message = scrub.text(
                            &[crate::privacy::Class::Transcripts],
                            Kind::Text,
                            m.message.take(),
                        );
                        by_id.insert(m.chat_message_id, m);
                    }
                    Err(reason) => {
                        let mut payload = v.clone();
                        normalize::strip_secrets(&mut payload);
                        lenient::clean_json(&mut payload);
                        scrub.document(&mut payload, personal::MESSAGE);
                        read.rejected.push(Rejected {
                            record_key: format!("message of session {session}"),
                            reason,
                            payload,
                        });
                    }
                }
            }
        }
        let mut list: Vec<normalize::Message> = by_id.into_values().collect();
        list.sort_by_key(|m| m.chat_message_id);
        Ok(list)
    }
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim_start_matches('\u{feff}').trim();
    if t.starts_with('<') {
        return Err("an HTML or XML page instead of JSON (a proxy or login page?)".into());
    }
    serde_json::from_str(t)
        .map_err(|e| format!("not valid JSON ({e}); the body may have been cut off"))
}

/// A list body: a bare array, or `{"value": [...], "odata.nextLink": "..."}`.
fn list_page(v: &Value) -> Result<(Vec<Value>, Option<String>), String> {
    match v {
        Value::Array(a) => Ok((a.clone(), None)),
        Value::Object(o) => {
            let f = Fields::new(o);
            let next = f
                .text("odata.nextlink")
                .or_else(|| f.text("@odata.nextlink"));
            match f.get("value") {
                Some(Value::Array(a)) => Ok((a.clone(), next)),
                _ => Err(format!("expected a list, got {}", lenient::short(v))),
            }
        }
        _ => Err(format!("expected a list, got {}", lenient::short(v))),
    }
}

fn item_id(item: &Value) -> Option<i64> {
    let Value::Object(o) = item else {
        return lenient::int(item);
    };
    let f = Fields::new(o);
    f.get("chatsessionid")
        .or_else(|| f.get("primarykey"))
        .and_then(lenient::int)
}

#[async_trait]
impl Source for SuperOffice {
    fn webhook(&self) -> Option<&dyn crate::engine::Webhook> {
        self.settings
            .webhook_secret
            .as_ref()
            .map(|_| self as &dyn crate::engine::Webhook)
    }

    /// One window per run (a backfill too): both modes ask "what changed since", not "what
    /// happened between".
    fn windowing(&self) -> crate::engine::Windowing {
        crate::engine::Windowing::Single
    }

    /// Lists (or reads) one chat, and tells whether the tenant's dates carry an offset: if not,
    /// it ignores `SO-TimeZone` and they are read in the account's `timezone`.
    async fn check(&self) -> Result<String, SourceError> {
        let (what, sample) = match self.settings.mode {
            SuperOfficeMode::ForUser => {
                let list = self.entities_for_user().await?;
                (
                    format!("{} chat sessions for the API user", list.len()),
                    list.into_iter().next(),
                )
            }
            SuperOfficeMode::Archive => {
                let rows = self.list_rows("chatSessionId gt 0", Some(1)).await?;
                let sample = match rows.keys().next() {
                    Some(id) => {
                        self.get_json(ENTITY_PATH, self.url(&format!("{LIST_PATH}/{id}")))
                            .await?
                    }
                    None => None,
                };
                ("the ChatSession archive lists chats".to_string(), sample)
            }
        };
        Ok(format!(
            "answered ({what}); {}",
            dates_verdict(sample.as_ref(), self.settings.timezone)
        ))
    }

    async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
        _run: RunInfo,
    ) -> Result<Batch, SourceError> {
        let mut mem: Remembered =
            crate::engine::read_state(&self.cx.key, &state.state, STATE_VERSION)?;
        let mut rejected = Vec::new();
        let mut gone = Vec::new();
        let now = Utc::now();
        let now_s = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let open_from = now - OPEN_CHAT_AGE;
        let tag = self.cx.privacy.tag();
        // A state written before open chats carried their age: from now.
        for seen in mem.sessions.values_mut().filter(|s| !s.t && s.o.is_empty()) {
            seen.o = now_s.clone();
        }
        let mut listed: BTreeMap<i64, String> = BTreeMap::new();
        // Listed again with the same row, and final: unchanged without a request.
        let mut unchanged_listed = 0u64;

        // The entities to look at, SessionKey removed.
        let entities: Vec<(i64, Value)> = match self.settings.mode {
            SuperOfficeMode::ForUser => self
                .entities_for_user()
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, mut v)| {
                    normalize::strip_secrets(&mut v);
                    (item_id(&v).unwrap_or(-(i as i64) - 1), v)
                })
                .collect(),
            SuperOfficeMode::Archive => {
                listed = self
                    .list_candidates(window.start - TimeDelta::seconds(1))
                    .await?;
                // Read by id: rows new or changed since listed last, and chats not final yet.
                let mut ids = BTreeSet::new();
                for (id, fp) in &listed {
                    match mem.sessions.get_mut(id) {
                        Some(seen) if seen.t && seen.l == *fp && seen.p == tag => {
                            seen.s = now_s.clone();
                            unchanged_listed += 1;
                        }
                        _ => {
                            ids.insert(*id);
                        }
                    }
                }
                ids.extend(
                    mem.sessions
                        .iter()
                        .filter(|(_, s)| !s.t && since(&s.o, open_from))
                        .map(|(id, _)| *id),
                );
                let (entities, missing, vanished) = self
                    .entities(
                        ids.into_iter().collect(),
                        "not_found: listed as changed or still open, but reading it answered 404",
                    )
                    .await?;
                rejected.extend(missing);
                // Gone: not read again while the archive lists the same row.
                for id in vanished.iter().filter_map(|id| id.parse::<i64>().ok()) {
                    mem.sessions.insert(
                        id,
                        Seen {
                            t: true,
                            s: now_s.clone(),
                            l: listed.get(&id).cloned().unwrap_or_default(),
                            p: tag.clone(),
                            ..Seen::default()
                        },
                    );
                }
                gone.extend(vanished);
                entities
            }
        };

        let read = self.read_changed(entities, &mem, false).await?;
        rejected.extend(read.rejected);
        gone.extend(read.gone);
        let unchanged = read.unchanged + unchanged_listed;
        let (sessions, messages, nulled, mut current) =
            (read.sessions, read.messages, read.nulled, read.current);
        for (id, seen) in current.iter_mut() {
            if let Some(fp) = listed.get(id) {
                seen.l = fp.clone();
            }
        }

        // What to remember: for_user keeps exactly the current list; archive keeps chats not
        // final yet (while young enough to be re-read), and every chat while the archive may
        // list its row again: the `updatedDate` list starts a day before the window, which
        // starts `lookback` before the watermark.
        match self.settings.mode {
            SuperOfficeMode::ForUser => mem.sessions = current,
            SuperOfficeMode::Archive => {
                mem.sessions.extend(current);
                let horizon = now
                    - TimeDelta::from_std(self.settings.stream.lookback)
                        .unwrap_or(TimeDelta::zero())
                    - TimeDelta::days(2)
                    - TimeDelta::hours(1);
                mem.sessions
                    .retain(|_, s| (!s.t && since(&s.o, open_from)) || since(&s.s, horizon));
            }
        }
        Ok(Batch {
            record_keys: sessions
                .iter()
                .map(|s| s.chat_session_id.to_string())
                .collect(),
            rows: Box::new(store::ChatRows {
                sessions,
                messages,
                unchanged,
            }),
            rejected,
            nulled,
            state: Some(crate::engine::write_state(&mem, STATE_VERSION)),
            gone,
        })
    }
}

/// Whether an RFC 3339 instant is at or after `from` (an unreadable one is not).
fn since(t: &str, from: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(t).is_ok_and(|t| t.with_timezone(&Utc) >= from)
}

/// A filter value for a datetime column (`afterTime`), for instant `t`. Sent with
/// `SO-TimeZone: UTC`, a tenant reads it in UTC; one with time-zone support off reads it in its
/// base zone (`tz`). Of the two wall clocks the earlier is sent: read either way, it means `t`
/// or a little before (a few rows listed again, never one missed).
fn filter_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let utc = t.naive_utc();
    let local = t.with_timezone(&tz).naive_local();
    utc.min(local).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The fingerprint of an archive row's columns ([`LIST_COLUMNS`]): equal means no column that
/// shows a change did change.
fn row_fingerprint(row: &Value) -> String {
    lenient::fingerprint(&row.to_string())
}

/// Whether a date string carries its offset (`Z`, `+01:00`, `+0100`).
fn has_offset(s: &str) -> bool {
    s.find('T')
        .is_some_and(|i| s[i..].contains(['+', '-', 'Z', 'z']))
}

/// What `check` says of the dates of one chat: with an offset or without, and then in which
/// zone they are read.
fn dates_verdict(sample: Option<&Value>, tz: chrono_tz::Tz) -> String {
    let dates: Vec<String> = sample
        .and_then(Value::as_object)
        .map(|o| {
            let f = Fields::new(o);
            [
                "whenrequested",
                "whenstarted",
                "whenended",
                "whenidle",
                "whenfetched",
            ]
            .iter()
            .filter_map(|n| f.text(n))
            .filter(|s| {
                matches!(
                    lenient::read_date(s, chrono_tz::UTC),
                    Some(lenient::DateValue::Set(_))
                )
            })
            .collect()
        })
        .unwrap_or_default();
    match dates.first() {
        None => format!(
            "no chat with a date to read yet: whether its dates carry an offset is not known (offset-less dates would be read in {tz})"
        ),
        Some(d) if has_offset(d) => {
            "its dates carry an offset (SO-TimeZone honoured): `timezone` is not needed".into()
        }
        Some(_) => format!(
            "its dates come WITHOUT an offset (the tenant ignores SO-TimeZone: its time-zone support is off), and are read in {tz}; if that is not the tenant's base time zone, set `timezone` (e.g. \"Europe/Oslo\")"
        ),
    }
}

impl SuperOfficeSettings {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            SuperOfficeMode::Archive => "archive",
            SuperOfficeMode::ForUser => "for_user",
        }
    }
}
