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

use serde_json::Value;

use super::config::{SOURCE, SuperOfficeAuth};
use super::read::SuperOffice;
use super::system_user::{SystemUserError, TenantState, Ticket};
use crate::engine::SourceError;
use crate::http::{HttpError, Response};

/// The request header that chooses the zone of every date in a request and its answer.
pub const TIMEZONE_HEADER: &str = "SO-TimeZone";
/// UTC (SuperOffice's zone id 1), with the offset written on every date.
pub const TIMEZONE_ASKED: &str = "UTC, includeTZOffset";

/// What a request is refused with that means "the credential is not (or no longer) good": a
/// 401, a redirect (to a login page), or an HTML page where JSON was asked for.
fn refused_credential(status: Option<u16>) -> bool {
    matches!(status, Some(401 | 300..=399))
}

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

impl SuperOffice {
    /// Sends the request `build` makes for `url` (the tenant's root joined with `rel`, a path
    /// and query such as `/api/v1/ChatSession/7`), authenticated, and returns its 2xx answer.
    pub(super) async fn send(
        &self,
        endpoint: &'static str,
        rel: &str,
        build: impl Fn(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<Response, SourceError> {
        let http = &self.cx.http;
        let Some(su) = &self.system_user else {
            let base = self
                .settings
                .base_url
                .as_ref()
                .expect("on-site accounts have base_url");
            let url = crate::http::endpoint_url(base, rel);
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
        };
        let mut state = su.tenant(http).await.map_err(|e| self.su_error(e))?;
        let (mut renewed, mut moved, mut rechecked) = (false, false, false);
        loop {
            if !state.running {
                return Err(self.unavailable(&state));
            }
            let ticket = su.ticket(http).await.map_err(|e| self.su_error(e))?;
            let root = self.root(&state, &ticket)?;
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
                Ok(r) if !html_page(r) => return answer.map_err(|e| self.http_error(e)),
                Ok(_) => (None, true),
                Err(e) => (e.status(), false),
            };
            if (login_page || refused_credential(status)) && !renewed {
                renewed = true;
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
            Ok(r) => super::read::parse_json(&r.body)
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

    /// The tenant's root now: the state API's `Endpoint`, else the JWT's `webapi_url`.
    fn root(&self, state: &TenantState, ticket: &Ticket) -> Result<reqwest::Url, SourceError> {
        if let Some(e) = &state.endpoint {
            return Ok(e.clone());
        }
        ticket
            .webapi_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').trim_end_matches("/api"))
            .and_then(|u| reqwest::Url::parse(u).ok())
            .ok_or_else(|| {
                self.vendor(
                    "neither the state API nor the JWT names the tenant's host (no `Endpoint`, no `webapi_url`); check `context_identifier`".into(),
                )
            })
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
        match (&self.settings.auth, ticket) {
            (_, Some(t)) => {
                let app = self
                    .system_user
                    .as_ref()
                    .map_or("", |su| su.config().app_token.expose());
                rb.header("Authorization", format!("SOTICKET {}", t.value.expose()))
                    .header("SO-AppToken", app)
            }
            (SuperOfficeAuth::Ticket { ticket, app_token }, None) => rb
                .header("Authorization", format!("SOTICKET {}", ticket.expose()))
                .header("SO-AppToken", app_token.expose()),
            (SuperOfficeAuth::Bearer { token, app_token }, None) => {
                let rb = rb.bearer_auth(token.expose());
                match app_token {
                    Some(a) => rb.header("SO-AppToken", a.expose()),
                    None => rb,
                }
            }
            (SuperOfficeAuth::SystemUser(_), None) => rb,
        }
    }

    pub(super) fn body_error(&self, endpoint: &'static str, detail: String) -> SourceError {
        SourceError::Body {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            endpoint,
            detail,
        }
    }

    fn vendor(&self, message: String) -> SourceError {
        SourceError::Vendor {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            message,
        }
    }

    /// The credential was refused (a 401, a redirect, a login page): say what to do.
    fn credential_refused(&self, what: &str) -> SourceError {
        let todo = match self.settings.auth {
            SuperOfficeAuth::Ticket { .. } => {
                "the ticket expired or was revoked; sign in again and update `ticket` (and check `app_token`)"
            }
            SuperOfficeAuth::Bearer { .. } => {
                "the bearer token expired or was revoked; issue a new one and update `bearer`"
            }
            SuperOfficeAuth::SystemUser(_) => {
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
            return self.vendor(match self.system_user {
                Some(_) => "the tenant's host answered 421 Misdirected Request, also after the state API was read again; the tenant is moving: the next run tries again".into(),
                None => "answered 421 Misdirected Request: `base_url` is not the tenant's host (SuperOffice Online moves tenants between hosts): use `environment` and `context_identifier` with the system user flow".into(),
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
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            state: state.state.clone(),
            until: state.valid_until,
        }
    }
}
