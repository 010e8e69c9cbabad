//! The seam between the engine and a source system.
//!
//! The engine owns what every stream has ([`SourceContext`]: its key, settings, HTTP client with
//! its rate limit and request counts, privacy policy) and builds it from the account's settings;
//! a source implements only what is its own ([`Source`]: reading a window, and optionally its
//! windowing, webhook and check). [`Stream`] is the two together, what the engine runs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DurationRound, TimeDelta, Utc};

use crate::http::HttpClient;
use crate::model::{RequestCounts, StreamKey, StreamState, Window};
use crate::privacy::{Field, Inventory, Privacy, Scrub};
use crate::settings::{HttpSettings, StreamSettings};
use crate::telemetry::Metrics;

use super::audit::{Audit, Listing};
use super::batch::{Batch, PrivacyOf, RunInfo, SourceError};
pub use super::vetted::Vetted;
use super::webhook::{Pushed, Webhook};
use super::windows::Windowing;

/// How far back a source's `check` looks for a session the account's credentials can see: none
/// in this long is worth a warning (credentials that see nothing look like a quiet account).
pub const SILENCE_CHECK: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// What the engine gives every stream's source: built once per account from its settings.
pub struct SourceContext {
    pub key: StreamKey,
    pub settings: StreamSettings,
    /// The account's HTTP client: its rate limit, retries and request counts.
    pub http: HttpClient,
    /// The policies its records are written under, and the recorded erasures.
    pub privacy: Privacy,
    /// For the source's own events (`crate::events`).
    pub metrics: Arc<Metrics>,
    /// Records read by id because a listed row lacked what the source needs
    /// (`RequestCounts::fallbacks`): a source adds to it.
    pub fallbacks: std::sync::atomic::AtomicU64,
    /// Where its records and tables hold personal data; `None` for a source that stores none.
    pub inventory: Option<&'static Inventory>,
}

/// What privacy made of one record ([`SourceContext::personal`]).
pub struct Personal<'a> {
    /// The record's proof, for the row built from it.
    pub vetted: Vetted,
    /// A recorded erasure matches it, or the vendor said it is gone: every class was dropped.
    pub erased: bool,
    /// Anything may have been changed (erased, or a policy other than keep for some class):
    /// what the source derived from the record as received must be scrubbed with `scrub`.
    pub scrubbed: bool,
    /// The scrubber the record's documents went through, for what the source derives from it
    /// (its children: chat lines, links).
    pub scrub: Scrub<'a>,
}

impl SourceContext {
    /// The context of the stream `key`, with its settings.
    pub fn new(
        key: StreamKey,
        settings: StreamSettings,
        http: &HttpSettings,
        metrics: Arc<Metrics>,
        privacy: Privacy,
        inventory: Option<&'static Inventory>,
    ) -> Self {
        SourceContext {
            http: HttpClient::new(key.source, &key.account, http, metrics.clone()),
            key,
            settings,
            privacy,
            metrics,
            fallbacks: Default::default(),
            inventory,
        }
    }

    /// A context that sends no request, for a normalizer run on its own (benchmarks, tests):
    /// stream `sessions` of `source`/`account`, default settings, the policies of `privacy`.
    pub fn offline(source: &'static str, account: &str, privacy: Privacy) -> Self {
        let settings = StreamSettings {
            account: account.to_string(),
            enabled: true,
            schedule: crate::settings::Schedule::parse("0 0 * * *").expect("a constant schedule"),
            start: chrono::DateTime::UNIX_EPOCH,
            lookback: std::time::Duration::ZERO,
            window: std::time::Duration::from_secs(86400),
            privacy: Default::default(),
            expect_data_within: None,
            audit: true,
        };
        let http = HttpSettings {
            timeout: std::time::Duration::from_secs(1),
            max_retries: 0,
            max_retry_wait: std::time::Duration::ZERO,
            requests_per_second: 1.0,
            max_response_mb: 1,
        };
        let key = StreamKey {
            source,
            account: account.to_string(),
            stream: "sessions",
        };
        SourceContext::new(
            key,
            settings,
            &http,
            Arc::new(Metrics::new()),
            privacy,
            None,
        )
    }

    /// **The one call every record passes before it becomes a row** (docs/privacy.md): whether
    /// session `id` matches a recorded erasure (by its id, or by a value of `documents` as
    /// received, under the hash key and every previous one), or the vendor said it is `gone`;
    /// then each document scrubbed by the classes of its fields, every class dropped when
    /// erased. A column is read from the documents only afterwards. What it returns holds the
    /// record's [`Vetted`], which the source's row requires: a source cannot forget it.
    pub fn personal(
        &self,
        id: &str,
        gone: bool,
        documents: &mut [(&mut serde_json::Value, &'static [Field])],
    ) -> Personal<'_> {
        let erased = gone
            || (self.privacy.erasures.version() != 0 && {
                let received: Vec<(&serde_json::Value, &[Field])> =
                    documents.iter().map(|(d, f)| (&**d, *f)).collect();
                self.privacy
                    .is_erased(self.key.source, &self.key.account, id, &received)
            });
        let scrub = self.privacy.for_record(erased);
        for (document, fields) in documents.iter_mut() {
            scrub.document(document, fields);
        }
        Personal {
            vetted: Vetted::passed(),
            erased,
            scrubbed: erased || !self.privacy.policies.keeps_everything(),
            scrub,
        }
    }
}

/// One stream of one account: the engine's part ([`SourceContext`]) and the source's
/// ([`Source`]).
pub struct Stream {
    cx: Arc<SourceContext>,
    source: Box<dyn Source>,
}

impl Stream {
    pub fn new(cx: Arc<SourceContext>, source: Box<dyn Source>) -> Self {
        Stream { cx, source }
    }

    pub fn key(&self) -> &StreamKey {
        &self.cx.key
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.cx.settings
    }

    /// Requests sent to the account's API so far, and retries (a run's share goes into
    /// `sync_runs`).
    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            fallbacks: self.cx.fallbacks.load(std::sync::atomic::Ordering::Relaxed),
            ..self.cx.http.counts()
        }
    }

    /// Its privacy (policies, erasures, inventory); `None` for a source that stores no
    /// personal data.
    pub fn privacy(&self) -> Option<PrivacyOf<'_>> {
        self.cx.inventory.map(|inventory| PrivacyOf {
            privacy: &self.cx.privacy,
            inventory,
        })
    }

    pub fn windowing(&self) -> Windowing {
        self.source.windowing()
    }

    pub fn pipelined(&self) -> bool {
        self.source.pipelined()
    }

    pub fn webhook(&self) -> Option<&dyn Webhook> {
        self.source.webhook()
    }

    /// The completeness audit's part of its source, when it has one.
    pub fn audit(&self) -> Option<&dyn Audit> {
        self.source.audit()
    }

    /// How its source rebuilds rows from what the warehouse stores, when it can.
    pub fn rebuild(&self) -> Option<&dyn super::rebuild::Rebuild> {
        self.source.rebuild()
    }

    /// The audit's read of `ids` (sessions to store).
    pub async fn audit_read(
        &self,
        listing: &Listing,
        ids: &[crate::model::SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let Some(audit) = self.source.audit() else {
            return Err(SourceError::Vendor {
                message: "this source has no completeness audit".into(),
            });
        };
        audit.read(listing, ids, state).await
    }

    pub async fn check(&self) -> Result<String, SourceError> {
        self.source.check().await
    }

    /// The webhook's re-read of `ids`.
    pub async fn fetch_ids(
        &self,
        ids: &[crate::model::SessionId],
        state: &StreamState,
    ) -> Result<Pushed, SourceError> {
        let Some(hook) = self.source.webhook() else {
            return Err(SourceError::Vendor {
                message: "this account takes no webhooks".into(),
            });
        };
        hook.fetch_ids(ids, state).await
    }

    /// The source's fetch of `window`.
    pub async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
        run: RunInfo,
    ) -> Result<Batch, SourceError> {
        self.source.fetch(window, state, run).await
    }
}

/// What a source system implements for one account (built by its settings,
/// `config::SourceSettings::build`, with the account's [`SourceContext`]).
#[async_trait]
pub trait Source: Send + Sync {
    /// Fetches and parses one window of the run `run` describes.
    async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
        run: RunInfo,
    ) -> Result<Batch, SourceError>;

    /// How a run is cut into windows (data, not code: the engine plans from it).
    fn windowing(&self) -> Windowing {
        Windowing::Fixed
    }

    /// Whether the next window may be fetched while the current one is written: true only
    /// for a source whose `fetch` does not read the state the previous window leaves.
    fn pipelined(&self) -> bool {
        false
    }

    /// The account's webhook, when the source accepts them and the account is configured for
    /// them (sources.md section 4).
    fn webhook(&self) -> Option<&dyn Webhook> {
        None
    }

    /// The completeness audit (sources.md section 5), when the source can list a range of days
    /// of what its vendor holds.
    fn audit(&self) -> Option<&dyn Audit> {
        None
    }

    /// Rows rebuilt from the stored documents (`sessionsync renormalize`), when the source can.
    fn rebuild(&self) -> Option<&dyn super::rebuild::Rebuild> {
        None
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
            batch.rows()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_the_vendor_says_is_gone_is_erased_and_every_record_is_vetted() {
        let cx = SourceContext::offline("fake", "a", Privacy::keep_all());
        let mut doc = serde_json::json!({ "email": "ann@example.com" });
        let p = cx.personal("1", false, &mut [(&mut doc, &[])]);
        assert!(!p.erased && !p.scrubbed);
        assert_eq!(p.vetted, Vetted::stored());
        let p = cx.personal("2", true, &mut [(&mut doc, &[])]);
        assert!(
            p.erased && p.scrubbed,
            "a record the vendor says is gone is erased"
        );
    }
}
