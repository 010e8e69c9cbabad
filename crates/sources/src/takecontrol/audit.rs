//! Take Control's completeness audit (sources.md section 5): the session history of the audited
//! days by the same start filters as a sync (`FILTER_DATE_START_INI`/`_END`), one request for the
//! range, split in halves only when an answer is too large (the history has no paging). Its rows
//! come whole, so a missing session is stored from its row with no second request. Take Control
//! has no read by id: a session the history no longer lists is gone.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::TimeDelta;
use serde_json::{Map, Value};

use super::config::{OutputFormat, TakeControlApi};
use super::normalize::{self, BodyProblem, MALFORMED};
use super::source::{TakeControl, into_batch};
use crate::engine::{
    Audit, KeepRow, Listed, Listing, Pushed, SessionTable, SourceError, StreamState, Window,
};
use crate::lenient::{self, Fields};
use crate::model::SessionId;

/// The smallest window a too-large answer is split into.
const SMALLEST: TimeDelta = TimeDelta::minutes(1);

impl TakeControl {
    /// The records the history answers for `window`, parsed on the blocking pool.
    async fn records(&self, window: &Window) -> Result<Vec<Map<String, Value>>, SourceError> {
        let (body, endpoint) = self.client.fetch_body(window).await?;
        let xml = matches!(
            (self.settings.api, self.settings.output_format),
            (TakeControlApi::Legacy, OutputFormat::Xml)
        );
        let parsed = tokio::task::spawn_blocking(move || {
            if xml && !body.trim_start().starts_with('{') {
                normalize::records_from_xml(&body)
            } else {
                normalize::records_from_json(&body)
            }
        })
        .await
        .map_err(|e| SourceError::Body {
            endpoint,
            detail: format!("the parser stopped unexpectedly: {e}"),
        })?;
        parsed.map_err(|p| match p {
            BodyProblem::Vendor(message) => SourceError::Vendor { message },
            BodyProblem::Unreadable(detail) => SourceError::Body { endpoint, detail },
        })
    }
}

/// A listed record's id and start; a record whose id cannot be read at all makes the listing
/// unusable (a stored session could hide behind it and be taken for gone).
fn listed(record: Map<String, Value>, tz: chrono_tz::Tz) -> Result<(i64, Listed), String> {
    let f = Fields::new(&record);
    let id = match f.int("id") {
        Ok(Some(id)) => Some(id),
        _ => f.text(MALFORMED).and_then(|text| {
            text.split("<ID>")
                .nth(1)
                .and_then(|r| r.split('<').next())
                .and_then(|v| v.trim().parse::<i64>().ok())
        }),
    };
    let Some(id) = id else {
        return Err(format!(
            "a listed record has no readable ID ({}); the days it lies in cannot be compared",
            lenient::short(&Value::Object(record.clone()))
        ));
    };
    let start = match f.text("date_start").map(|s| lenient::read_date(&s, tz)) {
        Some(Some(lenient::DateValue::Set(t))) => Some(t),
        _ => None,
    };
    Ok((
        id,
        Listed {
            start,
            deleted: false,
            row: Some(Value::Object(record)),
        },
    ))
}

#[async_trait]
impl Audit for TakeControl {
    fn table(&self) -> SessionTable {
        super::personal::INVENTORY.table()
    }

    async fn list(&self, range: &Window, keep_row: &KeepRow<'_>) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        let mut todo = vec![*range];
        while let Some(window) = todo.pop() {
            let records = match self.records(&window).await {
                Err(SourceError::Http(e))
                    if crate::http::is_too_large(&e) && window.end - window.start > SMALLEST =>
                {
                    let mid = window.start + (window.end - window.start) / 2;
                    let mid = mid - TimeDelta::nanoseconds(i64::from(mid.timestamp_subsec_nanos()));
                    todo.push(Window {
                        start: mid,
                        end: window.end,
                    });
                    todo.push(Window {
                        start: window.start,
                        end: mid,
                    });
                    continue;
                }
                r => r?,
            };
            for record in records {
                let (id, mut l) = listed(record, self.settings.timezone)
                    .map_err(|message| SourceError::Vendor { message })?;
                let id = SessionId::from(id);
                if !keep_row(id) {
                    l.row = None;
                }
                listing.sessions.insert(id, l);
            }
        }
        Ok(listing)
    }

    /// Take Control reads no session by id.
    async fn still_there(
        &self,
        _ids: &[SessionId],
    ) -> Result<Option<BTreeSet<SessionId>>, SourceError> {
        Ok(None)
    }

    /// From the listed rows: no request.
    async fn read(
        &self,
        listing: &Listing,
        ids: &[SessionId],
        _state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let records: Vec<Map<String, Value>> = ids
            .iter()
            .filter_map(|id| listing.sessions.get(id))
            .filter_map(|l| match &l.row {
                Some(Value::Object(o)) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let window = Window {
            start: chrono::DateTime::UNIX_EPOCH,
            end: chrono::DateTime::UNIX_EPOCH,
        };
        let (tz, cx) = (self.settings.timezone, self.cx.clone());
        let batch = tokio::task::spawn_blocking(move || into_batch(records, &window, tz, &cx))
            .await
            .map_err(|e| SourceError::Body {
                endpoint: super::client::REST_PATH,
                detail: format!("the normalizer stopped unexpectedly: {e}"),
            })?;
        Ok(Pushed {
            batch,
            update_state: Box::new(|committed| Ok(committed.clone())),
        })
    }
}
