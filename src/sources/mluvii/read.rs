//! Reading mluvii: the stream's type, what it remembers between runs, the requests (session
//! lists, details, routing history, anonymised sessions) and what they answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::auth::{self, AuthError, TOKEN_PATH};
use super::config::{MluviiSettings, SOURCE};
use super::normalize::{self, Normalized};
use super::personal;
use crate::engine::{MIN_WINDOW, TARGET_RECORDS};
use crate::engine::{Rejected, SourceContext, SourceError, Window};
use crate::http::HttpError;

pub const LIST_PATH: &str = "/api/v1/Sessions";
pub const DETAIL_PATH: &str = "/api/v1/Sessions/{id}";
pub const ROUTING_PATH: &str = "/api/v1/Sessions/{id}/routingHistory";

pub struct Mluvii {
    pub(super) cx: Arc<SourceContext>,
    pub(super) settings: MluviiSettings,
    pub(super) tokens: auth::TokenCache,
}

crate::config::impl_account_settings!(MluviiSettings, SOURCE, Mluvii::new);

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

/// A session as the list showed it: its id and the row.
pub(super) struct Listed {
    pub(super) id: i64,
    pub(super) row: Value,
}

/// Sessions read by id, normalized, with what to remember of each.
pub(super) struct Read {
    pub(super) sessions: Vec<normalize::Session>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) nulled: Vec<Rejected>,
    pub(super) marks: Vec<(i64, Mark)>,
    /// Sessions that answered 404: kept with `source_deleted_at`, personal data erased.
    pub(super) gone: Vec<String>,
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
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

    pub(super) fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    /// Tokens fetched so far (tests check that an expiry costs exactly one renewal).
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    pub(super) fn vendor(&self, message: String) -> SourceError {
        SourceError::Vendor {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            message,
        }
    }

    pub(super) fn auth_error(&self, e: AuthError) -> SourceError {
        match e {
            AuthError::Http(h) => SourceError::Http(h),
            other => self.vendor(other.to_string()),
        }
    }

    /// GET with the account's token; on 401 the token is renewed once and the request repeated.
    pub(super) async fn get(
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
    pub(super) async fn list_page(
        &self,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, SourceError> {
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
    pub(super) async fn list_anonymized(
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
    pub(super) async fn list(
        &self,
        window: &Window,
    ) -> Result<(Vec<Listed>, Vec<Rejected>), SourceError> {
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
    pub(super) async fn session(
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

    pub(super) fn parse(&self, endpoint: &'static str, b: &[u8]) -> Result<Value, SourceError> {
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
    pub(super) async fn read_sessions(
        &self,
        targets: Vec<Target>,
    ) -> Result<Vec<Fetched>, SourceError> {
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
