//! Adding a source, proved with a fourth, fake one defined entirely in this file: its config
//! entry (`config::SourceConfig`: only its own keys; the parsed account builds the source), the
//! source itself (`engine::Source`: one method, and its `Rows`), its table (the one migration it
//! would ship) and one line in the list of sources. Nothing else in the crate is touched: the
//! config reader, the engine, the watermark and the run records take it as they take the real
//! three.

use std::sync::Arc;

use crate::helpers::*;
use async_trait::async_trait;
use chrono::TimeDelta;
use sessionsync::config::{
    self, AccountSettings, Common, HttpSettings, KeyProblem, Settings, SourceConfig, StreamSettings,
};
use sessionsync::engine::{
    Batch, Outcome, Rows, RunInfo, Source, SourceError, StreamState, Window, WriteCounts,
};
use sessionsync::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

// --- the folder: sources/fake/config.rs ---------------------------------------------------------

#[derive(Debug, Clone)]
struct FakeSettings {
    stream: StreamSettings,
    http: HttpSettings,
    greeting: String,
}
sessionsync::impl_account_settings!(FakeSettings, "fake", |s: FakeSettings, _cx| Fake {
    greeting: s.greeting
});

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFake {
    greeting: Option<String>,
}

struct FakeKind;

impl SourceConfig for FakeKind {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn stream(&self) -> &'static str {
        "hours"
    }

    fn account(
        &self,
        entry: toml::Value,
        prefix: &str,
        Common { stream, http }: Common,
    ) -> Result<Box<dyn AccountSettings>, KeyProblem> {
        let raw: RawFake = config::entry(entry, prefix)?;
        let greeting = raw.greeting.unwrap_or_else(|| "hello".into());
        Ok(Box::new(FakeSettings {
            stream,
            http,
            greeting,
        }))
    }
}

// --- the folder: sources/fake/mod.rs and store.rs -------------------------------------------------

/// One record per hour of every window.
struct Fake {
    greeting: String,
}

#[async_trait]
impl Source for Fake {
    async fn fetch(
        &self,
        window: &Window,
        _state: &StreamState,
        _run: RunInfo,
    ) -> Result<Batch, SourceError> {
        let mut records = Vec::new();
        let mut t = window.start;
        while t < window.end {
            records.push((t.timestamp(), self.greeting.clone()));
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
    // The one line: the list of sources, with the fake next to the real ones.
    let mut sources = sessionsync::sources::configs();
    sources.push(&FakeKind);

    let start = chrono::Utc::now() - TimeDelta::hours(6);
    let url = db.url.clone();
    let text = format!(
        "[[fake]]\naccount = \"f1\"\nstart = \"{}\"\ngreeting = \"hi\"\n",
        start.to_rfc3339()
    );
    let env = move |name: &str| (name == "DATABASE_URL").then(|| url.clone());
    let settings =
        Settings::from_toml(std::path::Path::new("fake.toml"), &text, &env, &sources).unwrap();

    // The config reader names the fake's keys as it names everyone's.
    let bad = Settings::from_toml(
        std::path::Path::new("fake.toml"),
        &text.replace("greeting", "colour"),
        &env,
        &sources,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("fake[0].colour") && bad.contains("`greeting`"),
        "{bad}"
    );

    let metrics = Arc::new(Metrics::new());
    let streams = sessionsync::sources::build_with(&sources, &settings, &metrics, None, None);
    assert_eq!(streams.len(), 1);
    let p = sessionsync::startup::start(&settings, metrics, streams)
        .await
        .unwrap();
    let c = db.client().await;
    c.batch_execute(MIGRATION).await.unwrap();

    let r = p
        .engine
        .run_once(&p.sources[0], &CancellationToken::new())
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
