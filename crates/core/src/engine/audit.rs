//! The completeness audit as a source sees it (sources.md section 5): the vendor's own list of a
//! range of days is the reference, and the warehouse is compared with it day by day.
//!
//! A source that can be audited implements [`Audit`] (`Source::audit`): it lists what the vendor
//! holds for a range of UTC days ([`Audit::list`], every page or an error), says which sessions
//! the vendor still has when read by id ([`Audit::still_there`]; `None` for a vendor without a
//! read by id, Take Control), and reads the sessions to store ([`Audit::read`]), as a webhook
//! re-read does: a [`Pushed`] batch written through the one write path. The engine's part
//! (comparing, the claim, the transaction, the `audits` rows) is `auditor.rs`; it knows nothing
//! of any vendor.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::batch::SourceError;
use super::webhook::Pushed;
pub use crate::model::SessionTable;
use crate::model::{SessionId, StreamState, Window};

/// One session as the vendor's list shows it.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// When it started by the vendor's own field (its UTC day is the day it is counted in);
    /// `None` when the row holds no date that can be read (it is then counted in no day, and
    /// never taken for gone).
    pub start: Option<DateTime<Utc>>,
    /// The vendor lists it but marks it deleted itself (SuperOffice `Status` `Deleted`): gone,
    /// not listed.
    pub deleted: bool,
    /// The row as listed, where it is the whole record (Take Control, mluvii, SuperOffice's
    /// `for_user` entities): a missing session is stored from it without another request.
    pub row: Option<serde_json::Value>,
}

/// What the vendor listed for a range: every session by id.
#[derive(Debug, Default)]
pub struct Listing {
    pub sessions: BTreeMap<SessionId, Listed>,
}

impl Listing {
    /// Adds `other`'s sessions (a range listed in parts).
    pub fn extend(&mut self, other: Listing) {
        self.sessions.extend(other.sessions);
    }

    /// The ids listed as live (not marked deleted).
    pub fn live(&self) -> impl Iterator<Item = (&SessionId, &Listed)> {
        self.sessions.iter().filter(|(_, l)| !l.deleted)
    }
}

/// Whether a listed session's row is worth keeping (the warehouse lacks it).
pub type KeepRow<'a> = dyn Fn(SessionId) -> bool + Send + Sync + 'a;

/// The audit's part of a source (sources.md section 5).
#[async_trait]
pub trait Audit: Send + Sync {
    /// Where the stream's sessions are stored.
    fn table(&self) -> SessionTable;

    /// Every session the vendor lists as started in `range` (whole UTC days), with the list
    /// endpoint the stream already uses, at its largest page, with the fewest columns it takes,
    /// in one paged query where the endpoint allows it; an error when any page failed (then
    /// nothing of the range counts as listed). Rows a little outside the range may come too
    /// (a zone the tenant reads its filters in): they count for the day of their start.
    ///
    /// A listed row is kept ([`Listed::row`]) only where `keep_row(id)` says so (sessions the
    /// warehouse does not hold yet): what a day holds is not kept in memory to be thrown away.
    async fn list(&self, range: &Window, keep_row: &KeepRow<'_>) -> Result<Listing, SourceError>;

    /// Of `ids` (stored sessions the list did not show), those the vendor still has when each
    /// is read by id: a 404, or a session the vendor marks deleted, is not there. `None` for a
    /// vendor that has no read by id (Take Control): the list is the only reference.
    async fn still_there(
        &self,
        ids: &[SessionId],
    ) -> Result<Option<BTreeSet<SessionId>>, SourceError>;

    /// The sessions `ids` to store (listed but missing, or still there though not listed),
    /// from their listed row where it is the whole record, else read by id, with whatever a new
    /// session of the stream needs (children, messages, routing), every record through the
    /// privacy seam; written as a webhook's batch is (the watermark stays, `update_state`
    /// applies to the state as committed). `listing` holds their rows; `state` is the stream's.
    async fn read(
        &self,
        listing: &Listing,
        ids: &[SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError>;
}

/// The closed UTC days an audit compares: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Days {
    /// The last `days` closed UTC days before `now`'s day.
    pub fn last(days: u32, now: DateTime<Utc>) -> Self {
        let to = now.date_naive();
        Days {
            from: to - TimeDelta::days(i64::from(days)),
            to,
        }
    }

    /// Whole days from `from`, moved up to the first whole day at or after `not_before` (a
    /// stream's `start`, the storage limit); `None` when nothing is left.
    pub fn not_before(self, not_before: DateTime<Utc>) -> Option<Self> {
        let midnight = not_before.date_naive();
        let first = if not_before == day_start(midnight) {
            midnight
        } else {
            midnight + TimeDelta::days(1)
        };
        let from = self.from.max(first);
        (from < self.to).then_some(Days { from, ..self })
    }

    /// The range as instants.
    pub fn window(&self) -> Window {
        Window {
            start: day_start(self.from),
            end: day_start(self.to),
        }
    }

    /// Each day in order.
    pub fn each(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let (from, to) = (self.from, self.to);
        from.iter_days().take_while(move |d| *d < to)
    }

    pub fn len(&self) -> usize {
        (self.to - self.from).num_days().max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Days {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.to - TimeDelta::days(1);
        if self.from == last {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}..{}", self.from, last)
        }
    }
}

/// Midnight UTC of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_days_end_before_today_and_move_up_to_whole_days() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let d = Days::last(7, now);
        assert_eq!(d.from.to_string(), "2026-11-30");
        assert_eq!(d.to.to_string(), "2026-12-07");
        assert_eq!(d.len(), 7);
        assert_eq!(d.each().count(), 7);
        assert_eq!(d.to_string(), "2026-11-30..2026-12-06");
        // A start inside a day: that day is not whole, the next one is the first.
        let moved = d
            .not_before("2026-12-03T08:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(moved.from.to_string(), "2026-12-04");
        let at_midnight = d
            .not_before("2026-12-03T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(at_midnight.from.to_string(), "2026-12-03");
        assert!(
            d.not_before("2026-12-06T00:00:01Z".parse().unwrap())
                .is_none()
        );
        assert_eq!(
            d.window().start,
            "2026-11-30T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
