//! The comparison at the heart of an audit: the vendor's listing of some days against the
//! sessions stored for them (what to store, what to flag, each day's figures). Pure: tested
//! without a warehouse.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::audit::{Days, Listing};
use crate::model::SessionId;
use crate::warehouse::audits::StoredSession;

/// The comparison of one audit: what to store, what to flag, and each day's figures.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    /// Listed and absent (or flagged deleted: `restored`), by their listed day.
    pub(super) missing: BTreeMap<SessionId, NaiveDate>,
    /// Of `missing`, those stored flagged deleted: the vendor lists them again.
    pub(super) restored: Vec<SessionId>,
    /// Stored, not flagged, first written before the listing, not listed: by stored day.
    pub(super) unlisted: BTreeMap<SessionId, NaiveDate>,
    /// Stored, not flagged, and listed as deleted by the vendor itself: by stored day.
    pub(super) deleted: BTreeMap<SessionId, NaiveDate>,
    /// Live sessions listed, per day.
    pub(super) listed: BTreeMap<NaiveDate, u64>,
}

/// Compares the listing of `days` with the sessions stored for them; days in `failed` are left
/// alone.
pub(super) fn compare(
    listing: &Listing,
    stored: &[StoredSession],
    days: Days,
    failed: &BTreeMap<NaiveDate, (String, bool)>,
    began: DateTime<Utc>,
) -> Comparison {
    let mut cmp = Comparison::default();
    let in_days = |d: NaiveDate| d >= days.from && d < days.to && !failed.contains_key(&d);
    let stored_by_id: BTreeMap<SessionId, &StoredSession> =
        stored.iter().map(|s| (s.id, s)).collect();
    for (id, l) in listing.live() {
        let Some(day) = l.start.map(|t| t.date_naive()).filter(|d| in_days(*d)) else {
            continue;
        };
        *cmp.listed.entry(day).or_default() += 1;
        match stored_by_id.get(id) {
            None => {
                cmp.missing.insert(*id, day);
            }
            Some(s) if s.deleted => {
                cmp.missing.insert(*id, day);
                cmp.restored.push(*id);
            }
            Some(_) => {}
        }
    }
    for s in stored.iter().filter(|s| !s.deleted) {
        let day = s.start.date_naive();
        if !in_days(day) {
            continue;
        }
        match listing.sessions.get(&s.id) {
            Some(l) if l.deleted => {
                cmp.deleted.insert(s.id, day);
            }
            Some(_) => {}
            // Written after the listing began: the list may predate it.
            None if s.first_synced_at >= began => {}
            None => {
                cmp.unlisted.insert(s.id, day);
            }
        }
    }
    cmp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::audit::Listed;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_comparison_flags_only_what_a_complete_day_no_longer_lists() {
        let days = Days {
            from: "2026-12-01".parse().unwrap(),
            to: "2026-12-04".parse().unwrap(),
        };
        let began = at("2026-12-07T03:17:00Z");
        let listed = |day: &str, deleted: bool| Listed {
            start: Some(at(&format!("{day}T10:00:00Z"))),
            deleted,
            row: None,
        };
        let mut listing = Listing::default();
        listing
            .sessions
            .insert(SessionId(1), listed("2026-12-01", false));
        listing
            .sessions
            .insert(SessionId(2), listed("2026-12-01", false)); // missing
        listing
            .sessions
            .insert(SessionId(3), listed("2026-12-02", true)); // the vendor deleted it
        listing
            .sessions
            .insert(SessionId(7), listed("2026-12-03", false)); // restored
        let stored = |id: i64, day: &str, deleted, first: &str| StoredSession {
            id: SessionId(id),
            start: at(&format!("{day}T10:00:00Z")),
            deleted,
            first_synced_at: at(first),
        };
        let rows = vec![
            stored(1, "2026-12-01", false, "2026-12-01T11:00:00Z"),
            stored(3, "2026-12-02", false, "2026-12-02T11:00:00Z"),
            stored(4, "2026-12-02", false, "2026-12-02T11:00:00Z"), // unlisted
            stored(5, "2026-12-02", false, "2026-12-07T03:17:30Z"), // written after the listing
            stored(6, "2026-12-03", false, "2026-12-03T11:00:00Z"), // a failed day
            stored(7, "2026-12-03", true, "2026-12-03T11:00:00Z"),
        ];
        let mut failed = BTreeMap::new();
        let cmp = compare(&listing, &rows, days, &failed, began);
        assert_eq!(cmp.missing.keys().map(|k| k.0).collect::<Vec<_>>(), [2, 7]);
        assert_eq!(cmp.restored, [SessionId(7)]);
        assert_eq!(cmp.deleted.keys().map(|k| k.0).collect::<Vec<_>>(), [3]);
        assert_eq!(cmp.unlisted.keys().map(|k| k.0).collect::<Vec<_>>(), [4, 6]);
        failed.insert("2026-12-03".parse().unwrap(), ("down".to_string(), false));
        let cmp = compare(&listing, &rows, days, &failed, began);
        assert_eq!(cmp.unlisted.keys().map(|k| k.0).collect::<Vec<_>>(), [4]);
        assert_eq!(cmp.missing.keys().map(|k| k.0).collect::<Vec<_>>(), [2]);
        assert_eq!(cmp.listed.values().sum::<u64>(), 2);
    }
}
