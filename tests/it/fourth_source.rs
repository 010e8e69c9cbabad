//! Adding a source, proved with a fourth, fake one defined entirely in this file: its config
//! entry (`config::SourceConfig`), how an account becomes a stream (`sources::SourceKind`), the
//! stream itself (`engine::Source` and its `Rows`), its table (the one migration it would ship)
//! and one line in a registry. Nothing else in the crate is touched: the config reader, the
//! engine, the watermark and the run records take it as they take the real three.

use std::sync::Arc;

use crate::helpers::*;
use async_trait::async_trait;
use chrono::TimeDelta;
use sessionsync::config::{
    self, AccountSettings, HttpSettings, KeyProblem, Settings, SourceConfig, StreamFields,
    StreamSettings,
};
use sessionsync::engine::{
    Batch, Outcome, RequestCounts, Rows, RunInfo, Source, SourceError, StreamKey, StreamState,
    Window, WriteCounts,
};
use sessionsync::sources::SourceKind;
use sessionsync::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

// --- the folder: sources/fake/config.rs ---------------------------------------------------------

#[derive(Debug, Clone)]
struct FakeSettings {
    stream: StreamSettings,
    http: HttpSettings,
    greeting: String,
}
sessionsync::impl_account_settings!(FakeSettings, "fake");

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFake {
    account: String,
    start: String,
    greeting: Option<String>,
}

struct FakeKind;

impl SourceConfig for FakeKind {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn account(
        &self,
        entry: toml::Value,
        prefix: &str,
    ) -> Result<Box<dyn AccountSettings>, KeyProblem> {
        let raw: RawFake = config::entry(entry, prefix)?;
        let k = |name: &str| format!("{prefix}.{name}");
        let stream = config::stream_settings(
            &k,
            StreamFields {
                account: &raw.account,
                enabled: None,
                schedule: None,
                start: &raw.start,
                lookback: None,
                window: None,
                privacy: None,
            },
            "1h",
        )?;
        let http = config::http_settings(&k, None, None, None, None, None)?;
        Ok(Box::new(FakeSettings {
            stream,
            http,
            greeting: raw.greeting.unwrap_or_else(|| "hello".into()),
        }))
    }
}

impl SourceKind for FakeKind {
    fn build(
        &self,
        account: &dyn AccountSettings,
        _metrics: &Arc<Metrics>,
        _privacy: sessionsync::privacy::Privacy,
    ) -> Option<Arc<dyn Source>> {
        sessionsync::sources::build_as(account, |s: FakeSettings| Fake {
            key: StreamKey {
                source: "fake",
                account: s.stream.account.clone(),
                stream: "hours",
            },
            settings: s,
        })
    }
}

// --- the folder: sources/fake/mod.rs and store.rs -------------------------------------------------

/// One record per hour of every window.
struct Fake {
    key: StreamKey,
    settings: FakeSettings,
}

#[async_trait]
impl Source for Fake {
    fn key(&self) -> &StreamKey {
        &self.key
    }

    fn settings(&self) -> &StreamSettings {
        &self.settings.stream
    }

    fn requests(&self) -> RequestCounts {
        RequestCounts::default()
    }

    async fn fetch(
        &self,
        window: &Window,
        _state: &StreamState,
        _run: RunInfo,
    ) -> Result<Batch, SourceError> {
        let mut records = Vec::new();
        let mut t = window.start;
        while t < window.end {
            records.push((t.timestamp(), self.settings.greeting.clone()));
            t += TimeDelta::hours(1);
        }
        Ok(Batch {
            record_keys: records.iter().map(|r| r.0.to_string()).collect(),
            rows: Box::new(FakeRows(records)),
            rejected: Vec::new(),
            nulled: Vec::new(),
            state: None,
            gone: Vec::new(),
        })
    }
}

struct FakeRows(Vec<(i64, String)>);

#[async_trait]
impl Rows for FakeRows {
    fn len(&self) -> usize {
        self.0.len()
    }

    async fn write(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        let ids: Vec<i64> = self.0.iter().map(|r| r.0).collect();
        let greetings: Vec<&str> = self.0.iter().map(|r| r.1.as_str()).collect();
        let written = tx
            .execute(
                "INSERT INTO fake_records (account, id, greeting)
                 SELECT $1, u.* FROM unnest($2::bigint[], $3::text[]) AS u
                 ON CONFLICT (account, id) DO NOTHING",
                &[&account, &ids, &greetings],
            )
            .await?;
        Ok(WriteCounts {
            written,
            unchanged: self.0.len() as u64 - written,
        })
    }
}

// --- its migration, sql/NNNN_fake.sql --------------------------------------------------------------

const MIGRATION: &str = "CREATE TABLE fake_records (
    account text NOT NULL, id bigint NOT NULL, greeting text,
    PRIMARY KEY (account, id))";

// --- the test -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_fourth_source_needs_its_folder_its_migration_and_one_line_of_registration() {
    let db = TestDb::new().await;
    // The one line: the registry, with the fake next to the real ones.
    let kinds: Vec<&dyn SourceKind> = vec![&FakeKind];
    let mut readers = sessionsync::sources::configs();
    readers.push(&FakeKind);

    let start = chrono::Utc::now() - TimeDelta::hours(6);
    let url = db.url.clone();
    let text = format!(
        "[[fake]]\naccount = \"f1\"\nstart = \"{}\"\ngreeting = \"hi\"\n",
        start.to_rfc3339()
    );
    let env = move |name: &str| (name == "DATABASE_URL").then(|| url.clone());
    let settings =
        Settings::from_toml(std::path::Path::new("fake.toml"), &text, &env, &readers).unwrap();

    // The config reader names the fake's keys as it names everyone's.
    let bad = Settings::from_toml(
        std::path::Path::new("fake.toml"),
        &text.replace("greeting", "colour"),
        &env,
        &readers,
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("fake[0]") && bad.contains("colour"), "{bad}");

    let metrics = Arc::new(Metrics::new());
    let sources = sessionsync::sources::build_with(&kinds, &settings, &metrics, None, None);
    assert_eq!(sources.len(), 1);
    let p = sessionsync::startup::start(&settings, metrics, sources)
        .await
        .unwrap();
    let c = db.client().await;
    c.batch_execute(MIGRATION).await.unwrap();

    let r = p
        .engine
        .run_once(&*p.sources[0], &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.totals.written >= 6, "{r:?}");
    assert_eq!(
        count(&c, "fake_records WHERE greeting = 'hi'").await,
        r.totals.written as i64
    );
    let watermark: Option<chrono::DateTime<chrono::Utc>> = c
        .query_one(
            "SELECT watermark FROM sync_state WHERE source = 'fake' AND account = 'f1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(watermark.is_some(), "the watermark moved with the rows");
    assert_eq!(
        count(
            &c,
            "sync_runs WHERE source = 'fake' AND status = 'succeeded'"
        )
        .await,
        1
    );
}
