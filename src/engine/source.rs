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
use crate::privacy::{Inventory, Privacy};
use crate::settings::{HttpSettings, StreamSettings};
use crate::telemetry::Metrics;

use super::batch::{Batch, PrivacyOf, RunInfo, SourceError};
use super::webhook::Webhook;
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

    pub async fn check(&self) -> Result<String, SourceError> {
        self.source.check().await
    }

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
