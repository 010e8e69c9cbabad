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
mod windows;
pub mod write;

use async_trait::async_trait;
use chrono::{DurationRound, TimeDelta, Utc};

use crate::config::StreamSettings;
use crate::http::HttpError;

pub use crate::model::{
    Outcome, Rejected, RequestCounts, RunTotals, StreamKey, StreamState, Window, WriteCounts,
};
#[cfg(feature = "fault-points")]
pub use run::FaultPoints;
pub use run::{Engine, Progress, Range, RunReport};
pub use scheduler::{Freshness, Slot, Slots, freshness, run_scheduler};
pub use webhook::{Pushed, Verdict, Webhook, WebhookState};
pub use windows::{
    AdaptiveWindows, FIRST_WINDOW, MIN_WINDOW, TARGET_RECORDS, Windowing, plan_windows,
};

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
    /// A window holds more records than one batch should (a [`Windowing::Paged`] source stops
    /// listing it); the engine splits it.
    #[error(
        "{source_name} account `{account}`: the window from {from} holds more than {held} records; it is read again in smaller windows"
    )]
    WindowTooFull {
        source_name: &'static str,
        account: String,
        from: chrono::DateTime<chrono::Utc>,
        held: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
