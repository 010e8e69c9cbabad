//! How a run is cut into windows: what a source asks for ([`Windowing`]), the regular range
//! `[watermark − lookback, now)` and a backfill's ([`plan_windows`]), and windows sized as the
//! run goes ([`AdaptiveWindows`]). The plan of one run is `plan.rs`.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::model::Window;
use crate::settings::StreamSettings;

/// How a source's runs are cut into windows. A regular run covers `[watermark − lookback, now)`
/// (from `start` the first time); a backfill covers `[from, to)` with no lookback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windowing {
    /// Pieces of the stream's `window` size.
    Fixed,
    /// Sized by the engine as the run goes: start small, grow while a window holds fewer than
    /// [`TARGET_RECORDS`] records (up to `window`), shrink when it holds more or its response is
    /// too large. For sources whose windows are plain time ranges.
    Adaptive,
    /// The whole range as one window: the source can only ask "what changed since".
    Single,
    /// Sized by what they hold, starting as wide as `window` allows (the whole range, usually):
    /// for a source whose list is paged, so that an empty or sparse stretch costs no request
    /// of its own. The source answers `SourceError::WindowTooFull` for a
    /// window that holds more than [`TARGET_RECORDS`]; the engine halves it and goes on, and
    /// later windows follow the density as [`Windowing::Adaptive`]'s do.
    Paged,
}

impl Windowing {
    /// The windows of a regular run at `now`, for a stream at `watermark`.
    pub fn plan(
        self,
        s: &StreamSettings,
        watermark: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<Window> {
        self.shape(plan_windows(s, watermark, now))
    }

    /// The windows of a backfill of `[from, to)`.
    pub fn plan_range(
        self,
        s: &StreamSettings,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Window> {
        let bounded = StreamSettings {
            start: from,
            lookback: Duration::ZERO,
            ..s.clone()
        };
        self.shape(plan_windows(&bounded, None, to))
    }

    /// `Single` joins the pieces into one window (Fixed and Adaptive keep them: an adaptive run
    /// re-cuts their span as it goes).
    fn shape(self, pieces: Vec<Window>) -> Vec<Window> {
        match (self, pieces.first(), pieces.last()) {
            (Windowing::Single, Some(first), Some(last)) => vec![Window {
                start: first.start,
                end: last.end,
            }],
            _ => pieces,
        }
    }
}

/// Records per window the adaptive sizing aims at: enough to amortize a request and a
/// transaction, few enough that memory does not depend on how dense the data is.
pub const TARGET_RECORDS: usize = 4000;

/// The first window of an adaptive run; each next one doubles while it holds few records.
pub const FIRST_WINDOW: TimeDelta = TimeDelta::minutes(5);

/// The smallest window the adaptive sizing makes.
pub const MIN_WINDOW: TimeDelta = TimeDelta::seconds(60);

/// Windows made as a run goes: `[start, end)` covered without gaps, each window's size chosen
/// from how many records the previous one held (double below half the target, halve above it).
#[derive(Debug, Clone)]
pub struct AdaptiveWindows {
    cursor: DateTime<Utc>,
    end: DateTime<Utc>,
    step: TimeDelta,
    max_step: TimeDelta,
}

impl AdaptiveWindows {
    /// Starts small ([`FIRST_WINDOW`], or `max_step` if smaller): the first window must not be
    /// the one that holds a day of a dense account.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, max_step: TimeDelta) -> Self {
        let max_step = max_step.max(MIN_WINDOW);
        AdaptiveWindows {
            cursor: start,
            end,
            step: FIRST_WINDOW.min(max_step),
            max_step,
        }
    }

    /// Starts from a known good size (capped to `[MIN_WINDOW, window]`).
    pub fn set_step(&mut self, step: TimeDelta) {
        self.step = step.clamp(MIN_WINDOW, self.max_step);
    }

    /// The current window size.
    pub fn step(&self) -> TimeDelta {
        self.step
    }

    /// The next window, or `None` when the range is covered.
    pub fn next_window(&mut self) -> Option<Window> {
        if self.cursor >= self.end {
            return None;
        }
        let end = (self.cursor + self.step).min(self.end);
        let w = Window {
            start: self.cursor,
            end,
        };
        self.cursor = end;
        Some(w)
    }

    /// How many records the last window held: the next window is scaled towards the target
    /// (by target / records, at most doubled or halved at once), so windows settle at about
    /// [`TARGET_RECORDS`] records whatever the account's density, and memory with them.
    pub fn feedback(&mut self, records: usize) {
        let factor = if records == 0 {
            2.0
        } else {
            (TARGET_RECORDS as f64 / records as f64).clamp(0.5, 2.0)
        };
        // Whole seconds: windows are whole-second ranges.
        let secs = (self.step.num_seconds() as f64 * factor).round() as i64;
        self.step = TimeDelta::seconds(secs).clamp(MIN_WINDOW, self.max_step);
    }

    /// `w` was too large to fetch: go back to its start with half its size. False when it is
    /// already the smallest window.
    pub fn retry_smaller(&mut self, w: &Window) -> bool {
        let size = w.end - w.start;
        if size <= MIN_WINDOW {
            return false;
        }
        self.step = (size / 2).max(MIN_WINDOW);
        self.cursor = w.start;
        true
    }

    /// Windows left at the current step (for progress).
    pub fn remaining(&self) -> usize {
        let left = (self.end - self.cursor).num_seconds().max(0);
        let step = self.step.num_seconds().max(1);
        ((left + step - 1) / step) as usize
    }
}

/// `[max(start, watermark − lookback), now)` in whole seconds, split into `window`-sized pieces.
pub fn plan_windows(
    s: &StreamSettings,
    watermark: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Window> {
    let second = TimeDelta::seconds(1);
    let until = now.duration_trunc(second).unwrap_or(now);
    let lookback = TimeDelta::from_std(s.lookback).unwrap_or(TimeDelta::MAX);
    let from = match watermark {
        Some(w) => w
            .checked_sub_signed(lookback)
            .unwrap_or(s.start)
            .max(s.start),
        None => s.start,
    };
    let mut from = from.duration_trunc(second).unwrap_or(from);
    let step =
        TimeDelta::from_std(s.window.max(Duration::from_secs(1))).unwrap_or(TimeDelta::days(1));
    let mut out = Vec::new();
    while from < until {
        let end = (from + step).min(until);
        out.push(Window { start: from, end });
        from = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Schedule;

    fn settings(lookback: u64, window: u64) -> StreamSettings {
        StreamSettings {
            account: "a".into(),
            enabled: true,
            schedule: Schedule::parse("* * * * *").unwrap(),
            start: "2024-01-01T00:00:00Z".parse().unwrap(),
            lookback: Duration::from_secs(lookback),
            window: Duration::from_secs(window),
            privacy: Default::default(),
            expect_data_within: None,
            audit: true,
        }
    }

    #[test]
    fn adaptive_windows_cover_the_range_and_follow_the_density() {
        let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let end = start + TimeDelta::days(2);
        let mut a = AdaptiveWindows::new(start, end, TimeDelta::days(1));
        let mut covered = start;
        let mut sizes = Vec::new();
        let mut retried = false;
        while let Some(w) = a.next_window() {
            assert_eq!(w.start, covered, "no gap, no overlap");
            if !retried && w.end - w.start >= TimeDelta::hours(1) {
                // A response too large: the same start comes back, smaller.
                assert!(a.retry_smaller(&w));
                retried = true;
                continue;
            }
            covered = w.end;
            sizes.push((w.end - w.start).num_minutes());
            // 1,000 records per hour.
            a.feedback(((w.end - w.start).num_minutes() * 1000 / 60) as usize);
        }
        assert_eq!(covered, end);
        assert!(retried);
        // Settles at the target: 4,000 records at 1,000 an hour is four hours.
        let settled = &sizes[7..sizes.len() - 1]; // the last one is what remains of the range
        assert!(
            settled.iter().all(|&m| (228..=252).contains(&m)),
            "{sizes:?}"
        );
        let mut tiny = AdaptiveWindows::new(start, end, TimeDelta::minutes(1));
        let w = tiny.next_window().unwrap();
        assert!(!tiny.retry_smaller(&w), "one minute is the floor");
    }

    #[test]
    fn windowing_is_data_the_engine_plans_from() {
        let now: DateTime<Utc> = "2024-01-03T12:00:00.750Z".parse().unwrap();
        let s = settings(3600, 86400);
        let fixed = Windowing::Fixed.plan(&s, None, now);
        assert_eq!(fixed.len(), 3);
        assert_eq!(Windowing::Adaptive.plan(&s, None, now), fixed);
        let single = Windowing::Single.plan(&s, None, now);
        assert_eq!(
            single,
            vec![Window {
                start: fixed[0].start,
                end: fixed[2].end
            }]
        );
        let from: DateTime<Utc> = "2023-06-01T00:00:00Z".parse().unwrap();
        let to: DateTime<Utc> = "2023-06-03T06:00:00Z".parse().unwrap();
        assert_eq!(Windowing::Fixed.plan_range(&s, from, to).len(), 3);
        assert_eq!(
            Windowing::Single.plan_range(&s, from, to),
            vec![Window {
                start: from,
                end: to
            }],
            "a backfill has no lookback"
        );
        assert!(Windowing::Single.plan_range(&s, to, from).is_empty());
    }

    #[test]
    fn windows_cover_the_range_without_gaps() {
        let now: DateTime<Utc> = "2024-01-03T12:00:00.750Z".parse().unwrap();
        let w = plan_windows(&settings(3600, 86400), None, now);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].start.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(w[2].end.to_rfc3339(), "2024-01-03T12:00:00+00:00");
        for pair in w.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }

    #[test]
    fn lookback_rereads_below_the_watermark_but_not_before_start() {
        let now: DateTime<Utc> = "2024-01-03T12:00:00Z".parse().unwrap();
        let wm: DateTime<Utc> = "2024-01-03T11:00:00Z".parse().unwrap();
        let w = plan_windows(&settings(7200, 86400), Some(wm), now);
        assert_eq!(
            w,
            vec![Window {
                start: "2024-01-03T09:00:00Z".parse().unwrap(),
                end: now
            }]
        );
        let w = plan_windows(&settings(86400 * 30, 86400 * 100), Some(wm), now);
        assert_eq!(w[0].start, settings(0, 60).start);
    }
}
