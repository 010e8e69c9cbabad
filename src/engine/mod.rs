//! The engine: schedules, windows, locks, transactions, run records. It knows nothing of any
//! vendor; a source is anything implementing [`Source`].
//!
//! One run of a stream:
//! 1. claim the stream: its advisory lock, held by the process's one lock-keeping connection
//!    (a stream never runs twice at once, even across daemons), fenced by a token
//!    ([`claims`]);
//! 2. read its state (`sync_state`), plan windows from `watermark − lookback` (or `start`) to now;
//! 3. for each window: fetch and parse (the source) holding no warehouse connection, then take
//!    one for **one transaction** that writes the rows, sets aside rejected records, checks the
//!    claim and moves the watermark to the window's end;
//! 4. record the run in `sync_runs`; release the lock.
//!
//! A window that fails stops the run: what was committed before it stays (`partial`), nothing of
//! it is written, and the next run starts again from the committed watermark.

pub mod claims;
mod run;
mod scheduler;
pub mod webhook;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::config::StreamSettings;
use crate::http::HttpError;

pub use crate::model::{
    Outcome, Rejected, RequestCounts, RunTotals, StreamKey, StreamState, Window, WriteCounts,
};
pub use run::{Engine, Hooks, Progress, Range, RunReport};
pub use scheduler::{
    Freshness, Slot, Slots, backoff, freshness, instants_between, period, run_scheduler,
};
pub use webhook::{Pushed, Verdict, Webhook, WebhookState};

/// A source's privacy: the policies its records are written under and where its tables hold
/// personal data (the engine records source deletions and checks erasures with them).
#[derive(Clone, Copy)]
pub struct PrivacyOf<'a> {
    pub privacy: &'a crate::privacy::Privacy,
    pub inventory: &'static crate::privacy::Inventory,
}

/// Parsed rows of one window, ready to be written by the source's own SQL.
#[async_trait]
pub trait Rows: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Upserts the rows (and replaces child rows of changed records) inside `tx`, rewriting
    /// only records whose content changed.
    async fn write(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error>;
}

/// What a source hands the engine for one window.
pub struct Batch {
    pub rows: Box<dyn Rows>,
    /// Keys of records that parsed; earlier rejections of the same keys are cleared.
    pub record_keys: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// Values nulled in records that landed (e.g. a negative duration): counted, not set aside.
    pub nulled: Vec<Rejected>,
    /// Replaces the stream's `sync_state.state` when the window commits, if set.
    pub state: Option<serde_json::Value>,
    /// Ids of sessions the vendor no longer knows (404 when read by id, or SuperOffice's
    /// `Deleted`): kept with `source_deleted_at` and their personal data erased.
    pub gone: Vec<String>,
}

/// A failure to get a window's data.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{stream}: its saved state (sync_state.state) cannot be read: {detail}. Nothing was fetched or written. It was edited by hand or written by another version of sessionsync: run the version that wrote it, or reset the state with `UPDATE sessionsync.sync_state SET state = '{{}}' WHERE source = '{source_name}' AND account = '{account}'` (the stream then forgets what it remembered between runs, e.g. which mluvii sessions were still open)"
    )]
    State {
        stream: String,
        source_name: &'static str,
        account: String,
        detail: String,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{source_name} account `{account}`: the API answered with an error: {message}")]
    Vendor {
        source_name: &'static str,
        account: String,
        message: String,
    },
    #[error(
        "{source_name} account `{account}`: {endpoint} returned a body that could not be read ({detail}); nothing of this window was written, it is retried at the next cycle"
    )]
    Body {
        source_name: &'static str,
        account: String,
        endpoint: &'static str,
        detail: String,
    },
}

/// What a fetch knows of the run it belongs to (given, not inferred from call order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// This window starts where the run starts (a window split for size keeps its start).
    pub first: bool,
    /// The run is a backfill of a past range, not the regular cycle.
    pub backfill: bool,
}

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

/// One stream of one account of one source system.
#[async_trait]
pub trait Source: Send + Sync {
    fn key(&self) -> &StreamKey;
    fn settings(&self) -> &StreamSettings;
    /// Requests sent to the account's API so far, and retries (a run's share goes into
    /// `sync_runs`).
    fn requests(&self) -> RequestCounts;
    /// How a run is cut into windows (data, not code: the engine plans from it).
    fn windowing(&self) -> Windowing {
        Windowing::Fixed
    }

    /// Whether the next window may be fetched while the current one is written: true only
    /// for a source whose `fetch` does not read the state the previous window leaves.
    fn pipelined(&self) -> bool {
        false
    }

    /// One cheap call with the account's credentials, for `sessionsync check`. The default reads
    /// the last minute.
    async fn check(&self) -> Result<String, SourceError> {
        let now = Utc::now()
            .duration_trunc(TimeDelta::seconds(1))
            .unwrap_or(Utc::now());
        let window = Window {
            start: now - TimeDelta::minutes(1),
            end: now,
        };
        let batch = self
            .fetch(&window, &StreamState::default(), RunInfo::default())
            .await?;
        Ok(format!(
            "answered ({} records in the last minute)",
            batch.rows.len()
        ))
    }

    /// Its privacy (policies, erasures, inventory); `None` for a source that stores no
    /// personal data.
    fn privacy(&self) -> Option<PrivacyOf<'_>> {
        None
    }

    /// The account's webhook, when the source accepts them and the account is configured for
    /// them (sources.md section 4).
    fn webhook(&self) -> Option<&dyn Webhook> {
        None
    }

    /// Fetches and parses one window of the run `run` describes.
    async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
        run: RunInfo,
    ) -> Result<Batch, SourceError>;
}

/// The field of `sync_state.state` that says which version of a source's state it is.
const STATE_VERSION_FIELD: &str = "v";

/// Reads a source's own state from `sync_state.state`: an empty state is `T::default()`; a state
/// that does not parse as `T`, or that a newer version wrote (`v` above `version`), is an error
/// that names the stream, never silently forgotten. States written before versioning (no `v`)
/// are version 1.
pub fn read_state<T: serde::de::DeserializeOwned + Default>(
    key: &StreamKey,
    state: &serde_json::Value,
    version: u64,
) -> Result<T, SourceError> {
    let fail = |detail: String| SourceError::State {
        stream: key.to_string(),
        source_name: key.source,
        account: key.account.clone(),
        detail,
    };
    let object = match state {
        serde_json::Value::Null => return Ok(T::default()),
        serde_json::Value::Object(o) if o.is_empty() => return Ok(T::default()),
        serde_json::Value::Object(o) => o,
        other => return Err(fail(format!("expected an object, found `{other}`"))),
    };
    let found = match object.get(STATE_VERSION_FIELD) {
        None => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| fail(format!("its version `{v}` is not a number")))?,
    };
    if found > version {
        return Err(fail(format!(
            "it is version {found}, written by a newer sessionsync; this one reads up to {version}"
        )));
    }
    let mut body = object.clone();
    body.remove(STATE_VERSION_FIELD);
    serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| fail(e.to_string()))
}

/// The value to store in `sync_state.state` for a source's `state` at `version`.
pub fn write_state<T: serde::Serialize>(state: &T, version: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(state).unwrap_or_else(|_| serde_json::json!({}));
    if let serde_json::Value::Object(o) = &mut v {
        o.insert(STATE_VERSION_FIELD.into(), version.into());
    }
    v
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
    use crate::config::Schedule;

    fn settings(lookback: u64, window: u64) -> StreamSettings {
        StreamSettings {
            account: "a".into(),
            enabled: true,
            schedule: Schedule::parse("* * * * *").unwrap(),
            start: "2024-01-01T00:00:00Z".parse().unwrap(),
            lookback: Duration::from_secs(lookback),
            window: Duration::from_secs(window),
            privacy: Default::default(),
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
    fn a_state_that_cannot_be_read_is_an_error_naming_the_stream_never_forgotten() {
        #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Mem {
            #[serde(default)]
            open: Vec<i64>,
        }
        let key = StreamKey {
            source: "mluvii",
            account: "main".into(),
            stream: "sessions",
        };
        let read = |v: serde_json::Value| read_state::<Mem>(&key, &v, 1);
        assert_eq!(read(serde_json::json!({})).unwrap(), Mem::default());
        assert_eq!(read(serde_json::Value::Null).unwrap(), Mem::default());
        // Written before versioning: version 1.
        assert_eq!(read(serde_json::json!({"open": [7]})).unwrap().open, [7]);
        let stored = write_state(&Mem { open: vec![8] }, 1);
        assert_eq!(stored["v"], 1);
        assert_eq!(read(stored).unwrap().open, [8]);
        for bad in [
            serde_json::json!({"open": "not a list"}),
            serde_json::json!({"v": 2, "open": []}),
            serde_json::json!([1, 2]),
        ] {
            let e = read(bad.clone()).unwrap_err().to_string();
            assert!(e.contains("mluvii/main/sessions"), "{e}");
            assert!(e.contains("UPDATE sessionsync.sync_state"), "{e}");
        }
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
