//! Reading SuperOffice: the stream's type, what it remembers between runs, the requests (lists,
//! entities, messages, agent endpoints) and their answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::config::{SOURCE, SuperOfficeAuth, SuperOfficeSettings};
use super::normalize::{self, Normalized};
use super::personal;
use super::system_user::SystemUser;
use crate::engine::{Rejected, SourceContext, SourceError};
use crate::privacy::Kind;
use crate::sources::lenient::{self, Fields};

pub const LIST_PATH: &str = "/api/v1/ChatSession";
pub const ENTITY_PATH: &str = "/api/v1/ChatSession/{id}";
pub const MESSAGES_PATH: &str = "/api/v1/ChatSession/{id}/Messages";
pub const FOR_USER_PATH: &str = "/api/v1/Agents/Chat/ChatSessionsForUser";
/// The archive columns a listed row carries: those that show a change of the chat.
pub const LIST_COLUMNS: &str =
    "chatSessionId,status,whenRequested,whenStarted,whenEnded,lastMessage,rating,updatedDate";
/// How long after it was requested a chat that is not final is still re-read by id at every
/// run; an older one is read again only when the archive lists it changed.
pub const OPEN_CHAT_AGE: TimeDelta = TimeDelta::days(7);

pub struct SuperOffice {
    pub(super) cx: Arc<SourceContext>,
    pub(super) settings: SuperOfficeSettings,
    /// The system user flow's ticket, JWKS and tenant state (SuperOffice Online).
    pub(super) system_user: Option<SystemUser>,
}

crate::config::impl_account_settings!(SuperOfficeSettings, SOURCE, SuperOffice::new);

/// What the stream remembers of one session between runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Seen {
    /// Fingerprint of the entity (without SessionKey).
    pub(super) h: String,
    /// Last message id stored.
    #[serde(default)]
    pub(super) m: i64,
    /// Terminal status (no more messages expected).
    #[serde(default)]
    pub(super) t: bool,
    /// When it was last seen (RFC 3339).
    #[serde(default)]
    pub(super) s: String,
    /// Fingerprint of its archive row as last listed (archive mode; empty when never listed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) l: String,
    /// When it was requested (RFC 3339; when first seen if unknown): a chat not final is
    /// re-read by id while this is within [`OPEN_CHAT_AGE`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) o: String,
    /// The privacy policy (its tag) it was written under: under another one now, it is read and
    /// written again, messages included, so that its rows' labels tell the truth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) p: String,
}

/// The version of [`Remembered`] as stored; a change to its shape that an older reader would
/// misread raises it (and `read_state` refuses states newer than it knows).
pub(super) const STATE_VERSION: u64 = 1;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Remembered {
    #[serde(default)]
    pub(super) sessions: BTreeMap<i64, Seen>,
}

impl SuperOffice {
    pub fn new(settings: SuperOfficeSettings, cx: Arc<SourceContext>) -> Self {
        let system_user = match &settings.auth {
            SuperOfficeAuth::SystemUser(c) => Some(SystemUser::new(c.clone())),
            _ => None,
        };
        SuperOffice {
            cx,
            settings,
            system_user,
        }
    }

    /// The archive rows that may have changed since `since` (archive mode), by id, each with the
    /// fingerprint of its columns: chats requested since then (to the second) and chats
    /// updated on `since`'s UTC date or later (the archive's `updatedDate` is a date column).
    pub(super) async fn list_candidates(
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
    pub(super) async fn list_rows(
        &self,
        filter: &str,
        limit: Option<usize>,
    ) -> Result<BTreeMap<i64, String>, SourceError> {
        let top = limit.unwrap_or(self.settings.page_size);
        let mut rows = BTreeMap::new();
        let mut last: Option<i64> = None;
        let mut next: Option<String> = None;
        for _page in 0..1_000_000 {
            let url = match next.take() {
                Some(u) => u,
                None => {
                    let mut f = filter.to_string();
                    if let Some(l) = last {
                        f.push_str(&format!(" and chatSessionId gt {l}"));
                    }
                    let mut u = reqwest::Url::parse("http://tenant.invalid/").expect("constant");
                    u.query_pairs_mut()
                        .append_pair("$select", LIST_COLUMNS)
                        .append_pair("$filter", &f)
                        .append_pair("$orderBy", "chatSessionId")
                        .append_pair("$top", &top.to_string());
                    format!("{LIST_PATH}?{}", u.query().unwrap_or_default())
                }
            };
            let body = self
                .get_json(LIST_PATH, &url)
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
                next = Some(self.next_link(&link)?);
                continue;
            }
            if items.len() < top || !progressed {
                break;
            }
        }
        Ok(rows)
    }

    /// An `odata.nextLink` as a path and query under the tenant's root, where it is sent (the
    /// root in use then: a tenant that moved meanwhile is followed). On-site, a link to another
    /// host is refused.
    pub(super) fn next_link(&self, link: &str) -> Result<String, SourceError> {
        let base =
            self.settings.base_url.clone().unwrap_or_else(|| {
                reqwest::Url::parse("https://tenant.invalid/").expect("constant")
            });
        let url = base.join(link).map_err(|e| {
            self.body_error(LIST_PATH, format!("odata.nextLink is not a URL ({e})"))
        })?;
        if self.settings.base_url.is_some() && url.origin() != base.origin() {
            return Err(self.body_error(
                LIST_PATH,
                format!(
                    "odata.nextLink points to another host ({}); not followed",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        let path = url.path();
        let at = path.find("/api/").ok_or_else(|| {
            self.body_error(LIST_PATH, "odata.nextLink is not under /api/".into())
        })?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", &path[at..]),
            None => path[at..].to_string(),
        })
    }

    pub(super) async fn entities_for_user(&self) -> Result<Vec<Value>, SourceError> {
        let r = self
            .send_json(
                FOR_USER_PATH,
                reqwest::Method::POST,
                FOR_USER_PATH,
                "{}".into(),
            )
            .await?;
        let body = parse_json(&r.body).map_err(|d| self.body_error(FOR_USER_PATH, d))?;
        list_page(&body)
            .map(|(items, _)| items)
            .map_err(|d| self.body_error(FOR_USER_PATH, d))
    }

    pub(super) async fn messages(&self, id: i32, after: i64) -> Result<Vec<Value>, SourceError> {
        let rel = format!("{LIST_PATH}/{id}/Messages?after={after}");
        match self.get_json(MESSAGES_PATH, &rel).await? {
            None => Ok(Vec::new()),
            Some(v) => list_page(&v)
                .map(|(items, _)| items)
                .map_err(|d| self.body_error(MESSAGES_PATH, d)),
        }
    }
}

/// What reading a set of entities gave: the sessions to write (changed ones, or all when
/// forced), their new messages, and what to remember of each session seen.
pub(super) struct Read {
    pub(super) sessions: Vec<normalize::Session>,
    pub(super) messages: Vec<normalize::Message>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) nulled: Vec<Rejected>,
    pub(super) current: BTreeMap<i64, Seen>,
    /// Sessions written erased (a recorded erasure matches them, or SuperOffice deleted them).
    pub(super) erased: std::collections::HashSet<i32>,
    /// Sessions whose status is `Deleted`: kept with `source_deleted_at`, their personal data
    /// erased (docs/privacy.md section 4).
    pub(super) gone: Vec<String>,
    /// Entities read whose fingerprint had not changed (not written).
    pub(super) unchanged: u64,
}

impl SuperOffice {
    /// Reads entities by id, `concurrency` at a time, SessionKey removed; an id answering 404
    /// is set aside with `missing` as its reason.
    pub(super) async fn entities(
        &self,
        ids: Vec<i64>,
        missing: &str,
    ) -> Result<(Vec<(i64, Value)>, Vec<Rejected>, Vec<String>), SourceError> {
        let got: Vec<(i64, Option<Value>)> =
            futures::stream::iter(ids.into_iter().map(|id| async move {
                let rel = format!("{LIST_PATH}/{id}");
                self.get_json(ENTITY_PATH, &rel).await.map(|v| (id, v))
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
    pub(super) async fn read_changed(
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
    pub(super) async fn new_messages(
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

pub(super) fn parse_json(body: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim_start_matches('\u{feff}').trim();
    if t.starts_with('<') {
        return Err("an HTML or XML page instead of JSON (a proxy or login page?)".into());
    }
    serde_json::from_str(t)
        .map_err(|e| format!("not valid JSON ({e}); the body may have been cut off"))
}

/// A list body: a bare array, or `{"value": [...], "odata.nextLink": "..."}`.
pub(super) fn list_page(v: &Value) -> Result<(Vec<Value>, Option<String>), String> {
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

pub(super) fn item_id(item: &Value) -> Option<i64> {
    let Value::Object(o) = item else {
        return lenient::int(item);
    };
    let f = Fields::new(o);
    f.get("chatsessionid")
        .or_else(|| f.get("primarykey"))
        .and_then(lenient::int)
}

/// A filter value for a datetime column (`afterTime`), for instant `t`. Sent with
/// `SO-TimeZone: UTC`, a tenant reads it in UTC; one with time-zone support off reads it in its
/// base zone (`tz`). Of the two wall clocks the earlier is sent: read either way, it means `t`
/// or a little before (a few rows listed again, never one missed).
pub(super) fn filter_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let utc = t.naive_utc();
    let local = t.with_timezone(&tz).naive_local();
    utc.min(local).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The fingerprint of an archive row's columns ([`LIST_COLUMNS`]): equal means no column that
/// shows a change did change.
pub(super) fn row_fingerprint(row: &Value) -> String {
    lenient::fingerprint(&row.to_string())
}

/// Whether an RFC 3339 instant is at or after `from` (an unreadable one is not).
pub(super) fn since(t: &str, from: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(t).is_ok_and(|t| t.with_timezone(&Utc) >= from)
}
