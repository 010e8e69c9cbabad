//! Take Control's HTTP: the session history endpoint of each flavour, its key, and what a
//! refusal means.
//!
//! A window `[start, end)` is asked for as `FILTER_DATE_START_INI = start − 1 s` and
//! `FILTER_DATE_START_END = end`: the API's filters are strict (`>` and `<`) on whole seconds, so
//! this covers exactly the seconds `start ..= end − 1 s`, and consecutive windows neither overlap
//! nor leave the boundary second out.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::config::{OutputFormat, TakeControlApi, TakeControlSettings};
use crate::engine::{SourceContext, SourceError, Window};

pub const REST_PATH: &str = "/rest/session/history";
pub const LEGACY_PATH: &str = "/integration/get_history_api.php";

/// Every variable the connector asks for.
pub const VARS: [&str; 18] = [
    "ID",
    "COMPUTER_NAME",
    "COMPUTER_DOMAIN",
    "COMPUTER_OS",
    "TECH_USERNAME",
    "TECH_NAME",
    "CUSTOMER_NAME",
    "CUSTOMER_EMAIL",
    "CUSTOMER_NUMBER",
    "PROBLEM_DESCRIPTION",
    "NOTES",
    "HAS_VIDEOS",
    "DATE_START",
    "DATE_END",
    "CHAT_INFO",
    "VIDEO_LINKS",
    "CUSTOM_FIELD_NAME",
    "CUSTOM_FIELD_VALUE",
];

/// The account's client: the history endpoint of its flavour, with its key.
pub struct Client {
    cx: Arc<SourceContext>,
    settings: TakeControlSettings,
}

impl Client {
    pub(super) fn new(cx: Arc<SourceContext>, settings: TakeControlSettings) -> Self {
        Client { cx, settings }
    }

    /// A 403, explained with what Take Control's key documentation says can cause it; other
    /// failures pass through.
    fn http_error(&self, e: crate::http::HttpError) -> SourceError {
        match e {
            crate::http::HttpError::Status {
                status: 403, body, ..
            } => SourceError::Vendor {
                message: format!(
                    "HTTP 403 ({body}). Take Control refuses a key for the reasons its API key documentation (\"Manage API keys\") names: session history needs a private key (a public key cannot read it); a key carries the endpoints it may call, and this one may lack the Session History permission (edit the key in the Admin Area and allow it); keys expire (at most one year after they were made: make a new one and update `api_key`); and a key with an IP allowlist refuses hosts outside it (add this host's public address)"
                ),
            },
            e => SourceError::Http(e),
        }
    }

    /// The body answered for `window`, and the endpoint that answered it.
    pub(super) async fn fetch_body(
        &self,
        window: &Window,
    ) -> Result<(String, &'static str), SourceError> {
        let ini = self.format_filter(window.start - TimeDelta::seconds(1));
        let end = self.format_filter(window.end);
        let key = &self.settings.api_key;
        match self.settings.api {
            TakeControlApi::Rest => {
                let url = self.url(REST_PATH);
                let body = serde_json::json!({
                    "vars": VARS,
                    "filters": { "FILTER_DATE_START_INI": ini, "FILTER_DATE_START_END": end },
                });
                let resp = self
                    .cx
                    .http
                    .send(REST_PATH, |c| {
                        c.get(url.clone())
                            .header("INTEGRATION-KEY", key.expose())
                            .header("Accept", "application/json")
                            .json(&body)
                    })
                    .await
                    .map_err(|e| self.http_error(e))?;
                Ok((resp.text().into_owned(), REST_PATH))
            }
            TakeControlApi::Legacy => {
                let url = self.url(LEGACY_PATH);
                let format = match self.settings.output_format {
                    OutputFormat::Xml => "XML",
                    OutputFormat::Json => "JSON",
                };
                let vars = VARS.join(" ");
                let resp = self
                    .cx
                    .http
                    .send(LEGACY_PATH, |c| {
                        c.get(url.clone()).query(&[
                            ("KEY", key.expose()),
                            ("VARS", vars.as_str()),
                            ("FILTER_DATE_START_INI", ini.as_str()),
                            ("FILTER_DATE_START_END", end.as_str()),
                            ("OUTPUT_FORMAT", format),
                        ])
                    })
                    .await
                    .map_err(|e| self.http_error(e))?;
                Ok((resp.text().into_owned(), LEGACY_PATH))
            }
        }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    /// An instant as the API's zone-less `YYYY-MM-DD HH:MM:SS` in the account's zone.
    fn format_filter(&self, t: DateTime<Utc>) -> String {
        format_in_zone(t, self.settings.timezone)
    }
}

pub fn format_in_zone(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}
