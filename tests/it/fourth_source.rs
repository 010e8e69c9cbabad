//! Adding a source, proved with a fourth, fake one defined entirely in this file: its folder
//! (`mod.rs` declaring the source, `config.rs` its own keys, `source.rs` its fetch, `store.rs`
//! its rows, `personal.rs` its personal field), the one migration it would ship, and one line
//! in the list of sources. The config reader, the engine, the watermark, the run records and
//! privacy take it as they take the real three.

use std::sync::Arc;

use crate::helpers::*;
use async_trait::async_trait;
use chrono::TimeDelta;
use sessionsync::config::{self, KeyProblem, Settings, SourceKind, SourceSettings};
use sessionsync::engine::{Batch, Rows, RunInfo, Source, SourceContext, SourceError, Vetted};
use sessionsync::engine::{Outcome, StreamState, Window, WriteCounts};
use sessionsync::privacy::{Class, Field, Inventory, Kind, Selector, erase};
use sessionsync::warehouse::Unnest;
use tokio_util::sync::CancellationToken;

// --- mod.rs: the source, as the list of sources holds it --------------------------------------
static FAKE: SourceKind = SourceKind::new::<FakeSettings>("fake")
    .stream("people")
    .inventory(&INVENTORY);

// --- personal.rs: its one personal field, and the column it feeds -----------------------------
pub(crate) const EMAIL: &[Field] = &[Field {
    path: "email",
    classes: &[Class::CustomerIdentity],
    kind: Kind::Text,
    selectors: &[Selector::Email],
    feeds: "fake_records.email",
}];
pub(crate) static INVENTORY: Inventory = Inventory {
    source: "fake",
    stream: "people",
    sessions: "fake_records",
    id_column: "id",
    columns: &[sessionsync::privacy::Column {
        table: "fake_records",
        column: "email",
        classes: &[Class::CustomerIdentity],
        kind: Kind::Text,
        selectors: &[Selector::Email],
    }],
    ..Inventory::NONE
};

// --- config.rs: its own keys; the parsed settings build the source ----------------------------
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeSettings {
    people: Vec<String>,
}

impl SourceSettings for FakeSettings {
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem> {
        config::entry(entry, prefix)
    }

    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        Box::new(Fake {
            cx,
            people: self.people.clone(),
        })
    }
}

// --- source.rs: person i signed up i + 1 hours after the stream's start -----------------------
struct Fake {
    cx: Arc<SourceContext>,
    people: Vec<String>,
}

#[async_trait]
impl Source for Fake {
    async fn fetch(&self, w: &Window, _: &StreamState, _: RunInfo) -> Result<Batch, SourceError> {
        let mut rows = Vec::new();
        for (i, email) in (1i64..).zip(&self.people) {
            if (w.start..w.end).contains(&(self.cx.settings.start + TimeDelta::hours(i))) {
                let mut record = serde_json::json!({ "id": i, "email": email });
                // The seam: erased? then scrubbed by class. Only then are columns read; the row
                // holds the record's proof (a row without one does not compile).
                let vetted = self
                    .cx
                    .personal(&i.to_string(), false, &mut [(&mut record, EMAIL)])
                    .vetted;
                rows.push(FakeRow {
                    id: i,
                    email: record["email"].as_str().map(str::to_string),
                    _vetted: vetted,
                });
            }
        }
        Ok(Batch::new(FakeRows(rows)))
    }
}

// --- store.rs: an upsert that rewrites only what changed ---------------------------------------
pub(crate) struct FakeRow {
    pub(crate) id: i64,
    pub(crate) email: Option<String>,
    pub(crate) _vetted: Vetted,
}

pub(crate) struct FakeRows(pub(crate) Vec<FakeRow>);

#[async_trait]
impl Rows for FakeRows {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> Vec<sessionsync::model::SessionId> {
        self.0.iter().map(|r| r.id.into()).collect()
    }

    async fn write(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        let rows = Unnest::new()
            .column("id", "bigint", self.0.iter().map(|r| r.id).collect())
            .column(
                "email",
                "text",
                self.0.iter().map(|r| r.email.as_deref()).collect(),
            );
        let upsert = rows.insert(
            "fake_records",
            &format!(
                "ON CONFLICT (account, id) DO UPDATE SET {}, privacy_policy = DEFAULT
                 WHERE (t.email, t.privacy_policy) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.privacy_policy)",
                rows.set_excluded(&["id"])
            ),
        );
        let written = tx.execute(&upsert, &rows.params(&account)).await?;
        Ok(WriteCounts {
            written,
            unchanged: self.0.len() as u64 - written,
            children: Default::default(),
        })
    }
}

// --- its migration, sql/NNNN_fake.sql ------------------------------------------------------------
pub(crate) const MIGRATION: &str =
    "CREATE TABLE fake_records (account text NOT NULL, id bigint NOT NULL,
    email text, privacy_policy text DEFAULT current_setting('sessionsync.privacy_policy', true),
    source_deleted_at timestamptz, PRIMARY KEY (account, id))";

#[tokio::test]
async fn a_fourth_source_needs_its_folder_its_migration_and_one_line_of_registration() {
    let db = TestDb::new().await;
    // The one line: the list of sources, with the fake next to the real ones.
    let mut sources = sessionsync::sources::configs();
    sources.push(&FAKE);
    let start = chrono::Utc::now() - TimeDelta::hours(6);
    let text = format!(
        "[privacy]\ncustomer_identity = \"hash\"\nhash_key = \"{}\"\n[[fake]]\naccount = \"f1\"\nstart = \"{}\"\nlookback = \"24h\"\npeople = [\"ann@example.com\", \"bob@example.com\"]\n",
        "k".repeat(32),
        start.to_rfc3339()
    );
    let url = db.url.clone();
    let env = move |name: &str| (name == "DATABASE_URL").then(|| url.clone());
    let read = |text: &str| Settings::from_toml("fake.toml".as_ref(), text, &env, &sources);
    let settings = read(&text).unwrap();
    // The config reader names the fake's keys as it names everyone's.
    let e = read(&text.replace("people", "colour")).err().unwrap();
    assert!(e.to_string().contains("fake[0].colour") && e.to_string().ends_with("`people`"));

    let metrics = Arc::new(sessionsync::telemetry::Metrics::new());
    let streams = sessionsync::sources::build(&settings, &metrics, Some("fake"), None);
    let p = sessionsync::startup::start(&settings, metrics, streams);
    let p = p.await.unwrap();
    let mut c = db.client().await;
    c.batch_execute(MIGRATION).await.unwrap();
    let cancel = CancellationToken::new();
    let run = || p.engine.run_once(&p.sources[0], &cancel);
    let r = run().await.unwrap();
    assert_eq!((r.outcome, r.totals.written), (Outcome::Succeeded, 2));
    // Hashed under the policy: neither address is stored as written.
    let stored = emails(&c).await;
    let hashed = |e: &Option<String>| e.as_ref().is_some_and(|e| !e.contains('@'));
    assert!(stored.iter().all(hashed), "{stored:?}");
    // The second run reads the same people again (lookback) and writes nothing.
    let r = run().await.unwrap();
    assert_eq!((r.totals.written, r.totals.unchanged), (0, 2), "{r:?}");
    assert!(r.watermark.is_some(), "the watermark moved with the rows");

    // Ann is erased; the source still lists her, and she stays erased.
    let ann = [erase::Target::Value(
        Selector::Email,
        "ann@example.com".into(),
    )];
    let (privacy, inventories) = (&settings.privacy, [&INVENTORY]);
    let erased = erase::erase(&mut c, privacy, &inventories, &ann, false, None);
    assert_eq!(erased.await.unwrap().total_sessions(), 1);
    assert_eq!(emails(&c).await[0], None);
    let r = run().await.unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let after = emails(&c).await;
    assert_eq!(
        (&after[0], &after[1]),
        (&None, &stored[1]),
        "Ann stays erased"
    );
    let runs = "sync_runs WHERE source = 'fake' AND status = 'succeeded'";
    assert_eq!(count(&c, runs).await, 3);
}

/// The stored addresses, by id.
async fn emails(c: &tokio_postgres::Client) -> Vec<Option<String>> {
    let rows = c.query("SELECT email FROM fake_records ORDER BY id", &[]);
    rows.await.unwrap().iter().map(|r| r.get(0)).collect()
}
