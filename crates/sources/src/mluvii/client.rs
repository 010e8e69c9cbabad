//! mluvii's HTTP: the OAuth token (client credentials, cached and renewed once on a 401), and
//! the requests of a window (session lists, details, routing history, anonymised sessions) with
//! what they answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Secret;
use crate::http::{HttpClient, HttpError};

use super::config::MluviiSettings;
use super::list;
use crate::engine::{MIN_WINDOW, TARGET_RECORDS};
use crate::engine::{Rejected, SourceContext, SourceError, Window};

pub const LIST_PATH: &str = "/api/v1/Sessions";
pub const DETAIL_PATH: &str = "/api/v1/Sessions/{id}";
pub const ROUTING_PATH: &str = "/api/v1/Sessions/{id}/routingHistory";

/// A session as the list showed it: its id and the row.
pub(super) struct Listed {
    pub(super) id: i64,
    /// Its `created`, as the row says.
    pub(super) created: Option<DateTime<Utc>>,
    pub(super) row: Value,
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The account's client: its requests go through the account's HTTP client (`cx.http`) with
/// its OAuth token.
pub struct Client {
    cx: Arc<SourceContext>,
    settings: MluviiSettings,
    tokens: TokenCache,
}

impl Client {
    pub(super) fn new(cx: Arc<SourceContext>, settings: MluviiSettings) -> Self {
        let tokens = TokenCache::new(
            crate::http::endpoint_url(&settings.base_url, TOKEN_PATH),
            &cx.key.account,
            &settings.client_id,
            settings.client_secret.clone(),
        );
        Client {
            cx,
            settings,
            tokens,
        }
    }

    pub(super) fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    pub(super) fn vendor(&self, message: String) -> SourceError {
        SourceError::Vendor { message }
    }

    pub(super) fn auth_error(&self, e: AuthError) -> SourceError {
        match e {
            AuthError::Http(h) => SourceError::Http(h),
            other => self.vendor(other.to_string()),
        }
    }

    /// Tokens fetched so far.
    pub(super) fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    /// A JSON request with the account's token (webhook registration); the statuses
    /// `is_final` picks are answered at once, not retried.
    pub(super) async fn send_json(
        &self,
        endpoint: &'static str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<String>,
        is_final: fn(u16) -> bool,
    ) -> Result<crate::http::Response, SourceError> {
        let token = self
            .tokens
            .get(&self.cx.http)
            .await
            .map_err(|e| self.auth_error(e))?;
        self.cx
            .http
            .send_with(endpoint, is_final, |c| {
                let rb = c
                    .request(method.clone(), url.clone())
                    .bearer_auth(token.value.expose())
                    .header("Accept", "application/json");
                match &body {
                    Some(b) => rb
                        .header("Content-Type", "application/json")
                        .body(b.clone()),
                    None => rb,
                }
            })
            .await
            .map_err(SourceError::Http)
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
        let send = |token: &Token| {
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
        list::list_items(&String::from_utf8_lossy(&body)).map_err(|detail| SourceError::Body {
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
                if let Ok(id) = list::listed(&item).id {
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
    /// (unless it is already the smallest window). Rows without a usable id come back set aside,
    /// as received (the source puts them under the privacy seam).
    pub(super) async fn list(
        &self,
        window: &Window,
    ) -> Result<(Vec<Listed>, Vec<Rejected>), SourceError> {
        self.list_created(window, true, &|_| true).await
    }

    /// Every session the list shows as created in `window` (the completeness audit: a range of
    /// days in one paged query, never split), in id order, with its row.
    /// A row is kept only where `keep_row(id)` says so (`Value::Null` otherwise).
    pub(super) async fn list_all(
        &self,
        window: &Window,
        keep_row: &crate::engine::KeepRow<'_>,
    ) -> Result<(Vec<Listed>, Vec<Rejected>), SourceError> {
        self.list_created(window, false, keep_row).await
    }

    /// [`Client::list`], and, with `split` false, the whole window whatever it holds.
    async fn list_created(
        &self,
        window: &Window,
        split: bool,
        keep_row: &crate::engine::KeepRow<'_>,
    ) -> Result<(Vec<Listed>, Vec<Rejected>), SourceError> {
        let limit = self.settings.page_size;
        let lo = ts(window.start - TimeDelta::seconds(1));
        let hi = ts(window.end + TimeDelta::seconds(1));
        let splittable = split && window.end - window.start > MIN_WINDOW;
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
                let l = list::listed(&item);
                match l.id {
                    Ok(id) => {
                        let inside = l
                            .created
                            .is_none_or(|c| c >= window.start && c < window.end);
                        if inside {
                            let row = if keep_row(id.into()) {
                                item
                            } else {
                                Value::Null
                            };
                            let created = l.created;
                            found.insert(id, Listed { id, created, row });
                        }
                    }
                    // Set aside as received: the source puts it under the privacy seam.
                    Err(e) => rejected.push(Rejected {
                        record_key: format!("{}#list{}", ts(window.start), offset + i),
                        reason: format!("missing_id: a listed session has no usable id ({e})"),
                        payload: item,
                    }),
                }
            }
            if n < limit {
                break;
            }
            if splittable && found.len() > TARGET_RECORDS {
                return Err(SourceError::WindowTooFull {
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
            endpoint,
            detail: format!("not valid JSON ({e}); the body may have been cut off"),
        })
    }
}

pub const TOKEN_PATH: &str = "/login/connect/token";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the token endpoint refused client_id `{client_id}` (HTTP {status}{code}); check client_id and client_secret"
    )]
    Refused {
        account: String,
        client_id: String,
        status: u16,
        code: String,
    },
    #[error("the token endpoint answered without a usable access_token ({detail})")]
    BadAnswer { account: String, detail: String },
    #[error(transparent)]
    Http(HttpError),
}

#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub generation: u64,
    renew_at: Instant,
}

pub struct TokenCache {
    url: reqwest::Url,
    account: String,
    client_id: String,
    client_secret: Secret,
    current: Mutex<Option<Token>>,
    fetched: AtomicU64,
}

impl TokenCache {
    pub fn new(url: reqwest::Url, account: &str, client_id: &str, client_secret: Secret) -> Self {
        TokenCache {
            url,
            account: account.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            current: Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A token that is not about to expire.
    pub async fn get(&self, http: &HttpClient) -> Result<Token, AuthError> {
        let mut cur = self.current.lock().await;
        match &*cur {
            Some(t) if Instant::now() < t.renew_at => Ok(t.clone()),
            _ => {
                let t = self
                    .fetch(http, cur.as_ref().map_or(0, |t| t.generation + 1))
                    .await?;
                *cur = Some(t.clone());
                Ok(t)
            }
        }
    }

    /// A token other than `rejected` (which the API answered 401 to): renewed unless another
    /// request already did so.
    pub async fn renew(&self, http: &HttpClient, rejected: &Token) -> Result<Token, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = &*cur
            && t.generation != rejected.generation
        {
            return Ok(t.clone());
        }
        let t = self.fetch(http, rejected.generation + 1).await?;
        *cur = Some(t.clone());
        Ok(t)
    }

    async fn fetch(&self, http: &HttpClient, generation: u64) -> Result<Token, AuthError> {
        let form = [
            ("response_type", "token"),
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let resp = http
            .send(TOKEN_PATH, |c| c.post(self.url.clone()).form(&form))
            .await
            .map_err(|e| match e {
                HttpError::Status { status, body, .. } if (400..500).contains(&status) => {
                    let code = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                        .filter(|c| c.len() < 64 && !c.contains(self.client_secret.expose()))
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default();
                    AuthError::Refused {
                        account: self.account.clone(),
                        client_id: self.client_id.clone(),
                        status,
                        code,
                    }
                }
                other => AuthError::Http(other),
            })?;
        let bad = |detail: &str| AuthError::BadAnswer {
            account: self.account.clone(),
            detail: detail.to_string(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|_| bad("the body is not JSON"))?;
        let value = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("no access_token field"))?;
        let expires_in = v
            .get("expires_in")
            .and_then(crate::lenient::int)
            .unwrap_or(3600)
            .max(1) as u64;
        // Renew a little early: 10% of the lifetime, at most a minute.
        let margin = (expires_in / 10).min(60);
        self.fetched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(account = %self.account, expires_in, "mluvii token obtained");
        Ok(Token {
            value: Secret::new(value.to_string()),
            generation,
            renew_at: Instant::now() + Duration::from_secs(expires_in - margin),
        })
    }
}
