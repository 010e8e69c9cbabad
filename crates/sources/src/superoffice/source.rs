//! SuperOffice as a [`Source`]: the stream's type, what it remembers between runs, and a run's
//! window (archive lists merged and its chats read, or the agent's whole list).
//!
//! Two modes (sources.md §2):
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::client::{Client, ENTITY_PATH, LIST_PATH, item_id};
use super::config::{SuperOfficeMode, SuperOfficeSettings};
use super::normalize::{self, Normalized};
use super::{personal, store};
use crate::config::{KeyProblem, SourceSettings};
use crate::engine::{
    Batch, Rejected, RunInfo, Source, SourceContext, SourceError, StreamState, Window,
};
use crate::lenient;
use crate::model::SessionId;
use crate::privacy::Kind;

/// How long after it was requested a chat that is not final is still re-read by id at every
/// run; an older one is read again only when the archive lists it changed.
pub const OPEN_CHAT_AGE: TimeDelta = TimeDelta::days(7);

pub struct SuperOffice {
    pub(super) cx: Arc<SourceContext>,
    pub(super) settings: SuperOfficeSettings,
    /// Every request to the tenant (and, for SuperOffice Online, the system user flow).
    pub(super) client: Client,
}

impl SuperOffice {
    pub fn new(settings: SuperOfficeSettings, cx: Arc<SourceContext>) -> Self {
        SuperOffice {
            client: Client::new(cx.clone(), settings.clone()),
            cx,
            settings,
        }
    }
}

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
    /// When the account's chat topics were last read (RFC 3339): once a day.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) topics_at: String,
}

/// How often the chat topics (their names) are read again.
pub const TOPICS_EVERY: TimeDelta = TimeDelta::days(1);

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
    pub(super) gone: Vec<SessionId>,
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
    ) -> Result<(Vec<(i64, Value)>, Vec<Rejected>, Vec<SessionId>), SourceError> {
        let got: Vec<(i64, Option<Value>)> =
            futures::stream::iter(ids.into_iter().map(|id| async move {
                let rel = format!("{LIST_PATH}/{id}");
                self.client
                    .get_json(ENTITY_PATH, &rel)
                    .await
                    .map(|v| (id, v))
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
                    gone.push(id.into());
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
            // Personal data (personal.rs): the entity passes the privacy seam before anything
            // reads it; a chat SuperOffice deleted is erased.
            let deleted = normalize::is_deleted(&raw);
            let p = self.cx.personal(
                &id.to_string(),
                deleted,
                &mut [(&mut raw, personal::ENTITY)],
            );
            let (erased, vetted) = (p.erased, p.vetted);
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
                vetted,
                &format!("{}#{i}", self.settings.mode_name()),
                self.settings.timezone,
            ) {
                Normalized::Session(mut s, n) => {
                    s.content_hash = h.clone();
                    if erased {
                        read.erased.insert(s.chat_session_id);
                    }
                    if deleted {
                        read.gone.push(s.chat_session_id.into());
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
        let fetched: Vec<(i32, Vec<Value>)> =
            futures::stream::iter(sessions.into_iter().map(|(id, after)| async move {
                self.client.messages(id, after).await.map(|m| (id, m))
            }))
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

impl SuperOffice {
    /// Entities read by id (a webhook's, the audit's), as a batch written as a window's is: every
    /// one normalized (`force`: the caller says they changed), its new messages read; what the
    /// stream remembers of these sessions (fingerprint, last message) replaced on the state as
    /// committed, the rest of its state kept.
    pub(super) async fn pushed(
        &self,
        entities: Vec<(i64, Value)>,
        mut rejected: Vec<Rejected>,
        mut gone: Vec<SessionId>,
        state: &StreamState,
    ) -> Result<crate::engine::Pushed, SourceError> {
        let mem: Remembered = crate::engine::read_state(&self.cx.key, &state.state, STATE_VERSION)?;
        let read = self.read_changed(entities, &mem, true).await?;
        rejected.extend(read.rejected);
        gone.extend(read.gone);
        let current: BTreeMap<i64, Seen> = read.current;
        let key = self.cx.key.clone();
        Ok(crate::engine::Pushed {
            batch: Batch::new(store::ChatRows {
                sessions: read.sessions,
                messages: read.messages,
                unchanged: read.unchanged,
                topics: Vec::new(),
            })
            .with_rejected(rejected)
            .with_nulled(read.nulled)
            .with_gone(gone),
            update_state: Box::new(move |committed| {
                let mut mem: Remembered =
                    crate::engine::read_state(&key, committed, STATE_VERSION)?;
                for (id, seen) in current {
                    let m = mem.sessions.get(&id).map_or(0, |s| s.m);
                    mem.sessions.insert(
                        id,
                        Seen {
                            m: seen.m.max(m),
                            ..seen
                        },
                    );
                }
                Ok(crate::engine::write_state(&mem, STATE_VERSION))
            }),
        })
    }
}

impl SuperOffice {
    /// The account's chat topics when a day has passed since they were last read (then
    /// remembered as read now), else none. A tenant that does not answer the call (404, 405:
    /// an older one) is asked again the next day; another failure is logged and asked again at
    /// the next run: topic names never fail a run.
    async fn topics_due(&self, mem: &mut Remembered, now: DateTime<Utc>) -> Vec<store::Topic> {
        if since(&mem.topics_at, now - TOPICS_EVERY) {
            return Vec::new();
        }
        match self.client.topics().await {
            Ok(list) => {
                mem.topics_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
                let mut by_id: BTreeMap<i32, store::Topic> = BTreeMap::new();
                for v in list {
                    let Value::Object(o) = &v else { continue };
                    let f = lenient::Fields::new(o);
                    let Some(id) = f
                        .int("chattopicid")
                        .ok()
                        .flatten()
                        .or_else(|| f.int("id").ok().flatten())
                        .and_then(|n| i32::try_from(n).ok())
                    else {
                        continue;
                    };
                    by_id.insert(
                        id,
                        store::Topic {
                            topic_id: id,
                            name: f.text("name"),
                        },
                    );
                }
                by_id.into_values().collect()
            }
            Err(SourceError::Http(e)) if matches!(e.status(), Some(404 | 405)) => {
                mem.topics_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
                tracing::info!(account = %self.cx.key.account, "the tenant does not list chat topics (ChatTopicsForUser answered {}); asked again tomorrow", e.status().unwrap_or(0));
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(account = %self.cx.key.account, error = %e, "could not read the chat topics; asked again at the next run");
                Vec::new()
            }
        }
    }
}

/// Whether an RFC 3339 instant is at or after `from` (an unreadable one is not).
pub(super) fn since(t: &str, from: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(t).is_ok_and(|t| t.with_timezone(&Utc) >= from)
}

impl SourceSettings for SuperOfficeSettings {
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem> {
        super::config::read(entry, prefix)
    }

    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        Box::new(SuperOffice::new(self.clone(), cx))
    }
}

#[async_trait]
impl Source for SuperOffice {
    /// Rows rebuilt from what the warehouse stores (`rebuild.rs`).
    fn rebuild(&self) -> Option<&dyn crate::engine::Rebuild> {
        Some(self)
    }

    /// The archive (or the agent's list) of whole days, compared with the warehouse (`audit.rs`).
    fn audit(&self) -> Option<&dyn crate::engine::Audit> {
        Some(self)
    }

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

    async fn check(&self) -> Result<String, SourceError> {
        self.check_account().await
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
                .client
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
                    .client
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
                for id in vanished.iter().map(|id| id.0) {
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
                    - TimeDelta::from_std(self.cx.settings.lookback).unwrap_or(TimeDelta::zero())
                    - TimeDelta::days(2)
                    - TimeDelta::hours(1);
                mem.sessions
                    .retain(|_, s| (!s.t && since(&s.o, open_from)) || since(&s.s, horizon));
            }
        }
        let topics = self.topics_due(&mut mem, now).await;
        Ok(Batch::new(store::ChatRows {
            sessions,
            messages,
            unchanged,
            topics,
        })
        .with_rejected(rejected)
        .with_nulled(nulled)
        .with_state(crate::engine::write_state(&mem, STATE_VERSION))
        .with_gone(gone))
    }
}
