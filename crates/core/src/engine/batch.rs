//! What a source hands the engine: the parsed rows of one window ([`Batch`], [`Rows`]), the
//! failures of a fetch ([`SourceError`]), what a fetch knows of its run ([`RunInfo`]), and a
//! source's own state between runs ([`read_state`], [`write_state`]).

use async_trait::async_trait;

use crate::http::HttpError;
use crate::model::{Rejected, StreamKey, WriteCounts};
use crate::privacy::{Inventory, Privacy};

/// A source's privacy: the policies its records are written under and where its tables hold
/// personal data (the engine records source deletions and checks erasures with them).
#[derive(Clone, Copy)]
pub struct PrivacyOf<'a> {
    pub privacy: &'a Privacy,
    pub inventory: &'static Inventory,
}

/// Parsed rows of one window, ready to be written by the source's own SQL.
#[async_trait]
pub trait Rows: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The id of each session the rows hold: earlier rejections of these ids
    /// (`rejected_records.record_key`) are cleared when the rows commit, and the storage limits
    /// apply to them.
    fn keys(&self) -> Vec<crate::model::SessionId>;
    /// The newest session time among the rows (start, request or creation): kept per stream,
    /// so that a stream that stays silent shows (`sessionsync_newest_record_timestamp_seconds`).
    fn newest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
    /// Upserts the rows (and replaces child rows of changed records) inside `tx`, rewriting
    /// only records whose content changed.
    async fn write(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error>;
}

/// What a source hands the engine for one window: its rows, and what else the window's
/// transaction records. Built with [`Batch::new`] and the `with_*` methods.
pub struct Batch {
    pub(crate) rows: Box<dyn Rows>,
    pub(crate) rejected: Vec<Rejected>,
    /// Values nulled in records that landed (e.g. a negative duration): counted, not set aside.
    pub(crate) nulled: Vec<Rejected>,
    /// Replaces the stream's `sync_state.state` when the window commits, if set.
    pub(crate) state: Option<serde_json::Value>,
    /// Ids of sessions the vendor no longer knows (404 when read by id, or SuperOffice's
    /// `Deleted`): kept with `source_deleted_at` and their personal data erased.
    pub(crate) gone: Vec<crate::model::SessionId>,
}

impl Batch {
    /// A batch of `rows`, nothing set aside.
    pub fn new(rows: impl Rows + 'static) -> Self {
        Batch {
            rows: Box::new(rows),
            rejected: Vec::new(),
            nulled: Vec::new(),
            state: None,
            gone: Vec::new(),
        }
    }

    /// Records that could not become rows, each with its reason (`rejected_records`).
    pub fn with_rejected(mut self, rejected: Vec<Rejected>) -> Self {
        self.rejected = rejected;
        self
    }

    /// Values nulled in records that landed: counted, not set aside.
    pub fn with_nulled(mut self, nulled: Vec<Rejected>) -> Self {
        self.nulled = nulled;
        self
    }

    /// The source's own state (`write_state`), stored with the window.
    pub fn with_state(mut self, state: serde_json::Value) -> Self {
        self.state = Some(state);
        self
    }

    /// Ids of sessions the vendor no longer knows.
    pub fn with_gone(mut self, gone: Vec<crate::model::SessionId>) -> Self {
        self.gone = gone;
        self
    }

    /// The rows it holds.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The records it holds: rows and records set aside (what a window is sized by).
    pub fn records(&self) -> usize {
        self.rows.len() + self.rejected.len()
    }
}

/// A failure to get a window's data.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "its saved state (sync_state.state of {stream}) cannot be read: {detail}. Nothing was fetched or written. It was edited by hand or written by another version of sessionsync: run the version that wrote it, or reset the state with `UPDATE sessionsync.sync_state SET state = '{{}}' WHERE source = '{source_name}' AND account = '{account}'` (the stream then forgets what it remembered between runs, e.g. which mluvii sessions were still open)"
    )]
    State {
        stream: String,
        source_name: &'static str,
        account: String,
        detail: String,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The vendor says the tenant is not running (SuperOffice's state API: maintenance, an
    /// upgrade): the run ends at once with outcome `unavailable`, nothing lost, no failure.
    #[error(
        "tenant offline: {state}{}; the run ends here and nothing is lost (the watermark stays); no request goes to the tenant until its state says it runs again",
        until.map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M:%SZ"))).unwrap_or_default()
    )]
    Unavailable {
        /// The vendor's name of the state (`OfflineMaintenance`, …).
        state: String,
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    #[error("the API answered with an error: {message}")]
    Vendor { message: String },
    /// A window holds more records than one batch should (a [`Windowing::Paged`](super::Windowing::Paged) source stops
    /// listing it); the engine splits it.
    #[error(
        "the window from {from} holds more than {held} records; it is read again in smaller windows"
    )]
    WindowTooFull {
        from: chrono::DateTime<chrono::Utc>,
        held: usize,
    },
    #[error("{endpoint} returned a body that could not be read ({detail})")]
    Body {
        endpoint: &'static str,
        detail: String,
    },
}

impl SourceError {
    /// The error as said to a person, with the stream it belongs to named once (a run's
    /// `sync_runs.error`, a webhook attempt's, a command's).
    pub fn of(&self, key: &StreamKey) -> String {
        format!("{} account `{}`: {self}", key.source, key.account)
    }

    /// Whether a run that stopped on it reads the failed window again at its next run (the
    /// vendor failed or answered what could not be read), as its report says; a `check` or a
    /// command that is not a run says nothing of the kind.
    pub fn read_again(&self) -> bool {
        matches!(
            self,
            SourceError::Http(_) | SourceError::Body { .. } | SourceError::Vendor { .. }
        )
    }
}

/// What a fetch knows of the run it belongs to (given, not inferred from call order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// This window starts where the run starts (a window split for size keeps its start).
    pub first: bool,
    /// The run is a backfill of a past range, not the regular cycle.
    pub backfill: bool,
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
            let e = read(bad.clone()).unwrap_err().of(&key);
            assert!(
                e.starts_with("mluvii account `main`: its saved state"),
                "{e}"
            );
            assert!(e.contains("source = 'mluvii' AND account = 'main'"), "{e}");
            assert!(e.contains("UPDATE sessionsync.sync_state"), "{e}");
        }
    }
}
