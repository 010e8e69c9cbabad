//! Every request to a SuperOffice tenant: where it goes, how it authenticates, and what a refusal
//! means (sources.md §2).
//!
//! - On-site (`base_url` with `ticket`/`bearer`): the fixed root, the configured credential; a
//!   401, a redirect or a login page is a clear error (the credential expired or was refused).
//! - SuperOffice Online (`environment`, the system user flow, `system_user.rs`): the root the
//!   state API names now, the account's one ticket. A 401, a redirect or an HTML page renews the
//!   ticket once (one renewal for every request in flight) and repeats the request; a 421 reads
//!   the state again and repeats the request on the new host once; a 503 reads the state: a
//!   tenant that is not running ends the run as *unavailable* (no more requests to it until its
//!   state says it runs), one that runs has the request repeated with the usual retries.
//!
//! Redirects are never followed (the shared HTTP client follows none): credentials do not
//! travel to a login page.
//!
//! **Where requests go** (`client.rs`): on-site, to `base_url` with its ticket or bearer token;
//! SuperOffice Online (`environment`), to the host the state API names now (`tenant.rs`), with the
//! ticket of the system user flow (`system_user.rs`; the key and the signed token in
//! `signing.rs`), renewed once on a 401 and waited out while the tenant is down (sources.md §2).
//!
//! **Time zones.** Every request asks for UTC with offsets (`SO-TimeZone: UTC, includeTZOffset`),
//! and filter values are sent so that they are right in that zone. A tenant with time-zone
//! support switched off ignores the header and writes its base zone's wall clock without an
//! offset: the account's `timezone` names that zone (`sessionsync check` tells which case a
//! tenant is).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::config::{OnSiteCredentials, SuperOfficeAuth, SuperOfficeSettings};
use super::system_user::{SystemUser, SystemUserError, TenantState, Ticket};
use crate::engine::{SourceContext, SourceError};
use crate::http::{HttpError, Response};
use crate::lenient::{self, Fields};

/// The request header that chooses the zone of every date in a request and its answer.
pub const TIMEZONE_HEADER: &str = "SO-TimeZone";
/// UTC (SuperOffice's zone id 1), with the offset written on every date.
pub const TIMEZONE_ASKED: &str = "UTC, includeTZOffset";

/// What a request is refused with that means "the credential is not (or no longer) good": a
/// 401, a redirect (to a login page), or an HTML page where JSON was asked for.
fn refused_credential(status: Option<u16>) -> bool {
    matches!(status, Some(401 | 300..=399))
}

/// The most renewals one request makes for tickets that expired while it waited its turn.
const MAX_RENEWALS: u32 = 4;

/// Whether a 2xx answer is an HTML page (a login or proxy page) instead of JSON.
fn html_page(r: &Response) -> bool {
    let html_type = r
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("html"));
    let text = String::from_utf8_lossy(&r.body[..r.body.len().min(256)]).to_ascii_lowercase();
    let t = text.trim_start_matches('\u{feff}').trim_start();
    html_type || t.starts_with("<!doctype html") || t.starts_with("<html")
}

pub const LIST_PATH: &str = "/api/v1/ChatSession";
pub const ENTITY_PATH: &str = "/api/v1/ChatSession/{id}";
pub const MESSAGES_PATH: &str = "/api/v1/ChatSession/{id}/Messages";
pub const FOR_USER_PATH: &str = "/api/v1/Agents/Chat/ChatSessionsForUser";
/// The chat topics (`ChatTopicEntity[]`), as SuperOffice's official client reads them
/// (`ChatAgent.ChatTopicsForUser`, a POST under `v1/Agents/Chat/`).
pub const TOPICS_PATH: &str = "/api/v1/Agents/Chat/ChatTopicsForUser";
/// The archive columns a listed row carries: those that show a change of the chat.
pub const LIST_COLUMNS: &str =
    "chatSessionId,status,whenRequested,whenStarted,whenEnded,lastMessage,rating,updatedDate";

/// The account's client: where its requests go and how they authenticate.
pub struct Client {
    cx: Arc<SourceContext>,
    settings: SuperOfficeSettings,
    tenant: Tenant,
}

/// Where the tenant is: a root given (on-site), or what the system user flow finds.
enum Tenant {
    OnSite {
        base_url: reqwest::Url,
        credentials: OnSiteCredentials,
    },
    /// The system user flow's ticket, JWKS and tenant state (SuperOffice Online).
    Online(Box<SystemUser>),
}

impl Client {
    pub(super) fn new(cx: Arc<SourceContext>, settings: SuperOfficeSettings) -> Self {
        let tenant = match &settings.auth {
            SuperOfficeAuth::OnSite {
                base_url,
                credentials,
            } => Tenant::OnSite {
                base_url: base_url.clone(),
                credentials: credentials.clone(),
            },
            SuperOfficeAuth::SystemUser(c) => Tenant::Online(Box::new(SystemUser::new(c.clone()))),
        };
        Client {
            cx,
            settings,
            tenant,
        }
    }

    /// The system user flow, for a SuperOffice Online account.
    pub(super) fn system_user(&self) -> Option<&SystemUser> {
        match &self.tenant {
            Tenant::Online(su) => Some(su),
            Tenant::OnSite { .. } => None,
        }
    }
    /// Sends the request `build` makes for `url` (the tenant's root joined with `rel`, a path
    /// and query such as `/api/v1/ChatSession/7`), authenticated, and returns its 2xx answer.
    pub(super) async fn send(
        &self,
        endpoint: &'static str,
        rel: &str,
        build: impl Fn(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<Response, SourceError> {
        let http = &self.cx.http;
        let su = match &self.tenant {
            Tenant::Online(su) => su,
            Tenant::OnSite { base_url, .. } => {
                let url = crate::http::endpoint_url(base_url, rel);
                let r = http
                    .send(endpoint, |c| self.headers(build(c, url.clone()), None))
                    .await
                    .map_err(|e| self.http_error(e))?;
                if html_page(&r) {
                    return Err(self.credential_refused(
                        "answered with an HTML page (a login page?) instead of JSON",
                    ));
                }
                return Ok(r);
            }
        };
        let mut state = su.tenant(http).await.map_err(|e| self.su_error(e))?;
        let (mut renewals, mut moved, mut rechecked) = (0u32, false, false);
        loop {
            match state.outlook() {
                super::tenant::Outlook::Runs => {}
                super::tenant::Outlook::Wait => return Err(self.unavailable(&state)),
                super::tenant::Outlook::Fail(todo) => {
                    return Err(self.vendor(format!(
                        "the state API says tenant `{}` is {}: {todo}",
                        su.config().context_identifier,
                        state.state
                    )));
                }
            }
            let ticket = su.ticket(http).await.map_err(|e| self.su_error(e))?;
            let root = self.root(su, &state, &ticket)?;
            let url = crate::http::endpoint_url(&root, rel);
            // A 503 is first asked of the state API (maintenance?), not retried blindly.
            let is_final: fn(u16) -> bool = if rechecked { |_| false } else { |s| s == 503 };
            let answer = http
                .send_with(endpoint, is_final, |c| {
                    self.headers(build(c, url.clone()), Some(&ticket))
                })
                .await;
            // What the answer means: a login page counts as a refused credential too.
            let (status, login_page) = match &answer {
                Ok(r) if !html_page(r) => {
                    ticket
                        .served
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return answer.map_err(|e| self.http_error(e));
                }
                Ok(_) => (None, true),
                Err(e) => (e.status(), false),
            };
            // A refused ticket is renewed (one renewal for every request that saw it refused).
            // One that had served requests expired, or was used up while this request waited its
            // turn: renewed again as often as that happens (a few times). One refused before it
            // ever served a request, right after this request's own renewal, was refused outright.
            let expired = ticket.served.load(std::sync::atomic::Ordering::Relaxed);
            if (login_page || refused_credential(status))
                && renewals < MAX_RENEWALS
                && (renewals == 0 || expired)
            {
                renewals += 1;
                su.renew(http, ticket.generation)
                    .await
                    .map_err(|e| self.su_error(e))?;
                continue;
            }
            // Misdirected (the tenant moved), or unavailable (maintenance?): the state API says
            // where it is and whether it runs, once each.
            let mut other = true;
            let asked = match status {
                Some(421) => &mut moved,
                Some(503) => &mut rechecked,
                _ => &mut other,
            };
            if !*asked {
                *asked = true;
                state = su
                    .tenant_again(http, state.read_at)
                    .await
                    .map_err(|e| self.su_error(e))?;
                continue;
            }
            return Err(match answer {
                Ok(_) => self.credential_refused(
                    "answered with an HTML page (a login page?) instead of JSON, also with a fresh ticket",
                ),
                Err(e) => self.http_error(e),
            });
        }
    }

    /// A GET whose answer is JSON; `None` for a 404.
    pub(super) async fn get_json(
        &self,
        endpoint: &'static str,
        rel: &str,
    ) -> Result<Option<Value>, SourceError> {
        match self.send(endpoint, rel, |c, url| c.get(url)).await {
            Ok(r) => parse_json(&r.body)
                .map(Some)
                .map_err(|d| self.body_error(endpoint, d)),
            Err(SourceError::Http(e)) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A POST (or PUT) of a JSON body.
    pub(super) async fn send_json(
        &self,
        endpoint: &'static str,
        method: reqwest::Method,
        rel: &str,
        body: String,
    ) -> Result<Response, SourceError> {
        self.send(endpoint, rel, |c, url| {
            c.request(method.clone(), url)
                .header("Content-Type", "application/json")
                .body(body.clone())
        })
        .await
    }

    /// The tenant's root now: the state API's `Endpoint`, else the JWT's `webapi_url`, and only
    /// where the ticket may go (`tenant::allowed_root`: https, under the environment's domain).
    fn root(
        &self,
        su: &SystemUser,
        state: &TenantState,
        ticket: &Ticket,
    ) -> Result<reqwest::Url, SourceError> {
        let (root, named_by) = match &state.endpoint {
            Some(e) => (e.clone(), "the state API's `Endpoint`"),
            None => (
                ticket
                    .webapi_url
                    .as_deref()
                    .map(|u| u.trim_end_matches('/').trim_end_matches("/api"))
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .ok_or_else(|| {
                        self.vendor(
                            "neither the state API nor the JWT names the tenant's host (no `Endpoint`, no `webapi_url`); check `context_identifier`".into(),
                        )
                    })?,
                "the JWT's `webapi_url`",
            ),
        };
        super::tenant::allowed_root(&su.config().environment, &root).map_err(|why| {
            self.vendor(format!(
                "{named_by} names the tenant's host as {why}. Nothing was sent there; if the host is right, give its environment as a URL that covers it"
            ))
        })?;
        Ok(root)
    }

    /// The headers every request carries: JSON, dates in UTC with offsets, the credential.
    fn headers(
        &self,
        rb: reqwest::RequestBuilder,
        ticket: Option<&Ticket>,
    ) -> reqwest::RequestBuilder {
        let rb = rb
            .header("Accept", "application/json")
            .header(TIMEZONE_HEADER, TIMEZONE_ASKED);
        match (&self.tenant, ticket) {
            (Tenant::Online(su), Some(t)) => rb
                .header("Authorization", format!("SOTICKET {}", t.value.expose()))
                .header("SO-AppToken", su.config().app_token.expose()),
            (Tenant::Online(_), None) => rb,
            (Tenant::OnSite { credentials, .. }, _) => match credentials {
                OnSiteCredentials::Ticket { ticket, app_token } => rb
                    .header("Authorization", format!("SOTICKET {}", ticket.expose()))
                    .header("SO-AppToken", app_token.expose()),
                OnSiteCredentials::Bearer { token, app_token } => {
                    let rb = rb.bearer_auth(token.expose());
                    match app_token {
                        Some(a) => rb.header("SO-AppToken", a.expose()),
                        None => rb,
                    }
                }
            },
        }
    }

    pub(super) fn body_error(&self, endpoint: &'static str, detail: String) -> SourceError {
        SourceError::Body { endpoint, detail }
    }

    fn vendor(&self, message: String) -> SourceError {
        SourceError::Vendor { message }
    }

    /// The credential was refused (a 401, a redirect, a login page): say what to do.
    fn credential_refused(&self, what: &str) -> SourceError {
        let todo = match &self.tenant {
            Tenant::OnSite {
                credentials: OnSiteCredentials::Ticket { .. },
                ..
            } => {
                "the ticket expired or was revoked; sign in again and update `ticket` (and check `app_token`)"
            }
            Tenant::OnSite {
                credentials: OnSiteCredentials::Bearer { .. },
                ..
            } => "the bearer token expired or was revoked; issue a new one and update `bearer`",
            Tenant::Online(_) => {
                "the tenant refused a ticket just issued by the system user flow; check that the application is still consented to by the tenant (its system user token) and that `app_token` is its client secret"
            }
        };
        self.vendor(format!("the tenant {what}: {todo}"))
    }

    /// A final HTTP failure: a refused credential explained, everything else as it is.
    pub(super) fn http_error(&self, e: HttpError) -> SourceError {
        if refused_credential(e.status()) {
            let what = match e.status() {
                Some(401) => "answered HTTP 401".to_string(),
                Some(s) => {
                    format!("answered with a redirect (HTTP {s}, not followed: a login page?)")
                }
                None => "refused the credential".to_string(),
            };
            return self.credential_refused(&what);
        }
        if e.status() == Some(421) {
            return self.vendor(match self.tenant {
                Tenant::Online(_) => "the tenant's host answered 421 Misdirected Request, also after the state API was read again; the tenant is moving: the next run tries again".into(),
                Tenant::OnSite { .. } => "answered 421 Misdirected Request: `base_url` is not the tenant's host (SuperOffice Online moves tenants between hosts): use `environment` and `context_identifier` with the system user flow".into(),
            });
        }
        SourceError::Http(e)
    }

    pub(super) fn su_error(&self, e: SystemUserError) -> SourceError {
        match e {
            SystemUserError::Http(e) => SourceError::Http(e),
            e => self.vendor(e.to_string()),
        }
    }

    fn unavailable(&self, state: &TenantState) -> SourceError {
        SourceError::Unavailable {
            state: state.state.clone(),
            until: state.valid_until,
        }
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

/// A filter value for the end of a range on a datetime column (`beforeTime`): of the UTC and the
/// base zone's wall clock the later, so that read either way the range ends at `t` or a little
/// after (a few rows more, never one fewer).
pub(super) fn filter_time_end(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let utc = t.naive_utc();
    let local = t.with_timezone(&tz).naive_local();
    utc.max(local).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The fingerprint of an archive row's columns ([`LIST_COLUMNS`]): equal means no column that
/// shows a change did change.
pub(super) fn row_fingerprint(row: &Value) -> String {
    lenient::fingerprint(&row.to_string())
}

#[path = "client_endpoints.rs"]
mod endpoints;
