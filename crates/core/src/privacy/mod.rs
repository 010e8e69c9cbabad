//! Personal data (docs/privacy.md), in one place: the classes and policies, what a policy does
//! to a record before anything is written, the inventory types each source fills in
//! (`personal.rs` of its folder), the recorded erasures every write consults, and what the
//! commands and the daemon do to a stored warehouse.
//!
//! Layout:
//! - `policy`: the classes, the policies and a source entry's overrides;
//! - `fields`: where personal data sits in a record, and scrubbing;
//! - `hashing`: the keyed hashes of values and of erasure selectors;
//! - `inventory`: docs/privacy.md's inventory, generated from the sources' field lists;
//! - `warehouse`: the SQL every write shares (erasures checked and recorded, transcripts
//!   stripped past the limit);
//! - `erase`: `sessionsync erase`;
//! - `apply`: `privacy check` and `privacy apply` (stored rows brought under the policy);
//! - `retention`: the storage limits, by command and daily in the daemon;
//! - `keys`: the hash keys the warehouse depends on, checked at start;
//! - `conversions`: stored rows converted once after an upgrade.
//!
//! The operations over stored rows take the sources' inventories as an argument
//! (`sources::inventories()`), so that this folder depends on no source.

pub mod apply;
pub mod conversions;
pub mod erase;
pub mod fields;
mod hashing;
pub mod inventory;
pub mod keys;
pub mod policy;
pub mod retention;
pub mod warehouse;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::secret::Secret;
pub use fields::{Column, Field, Hasher, Kind, Scrub, Selector};
pub use policy::{Class, Overrides, Policies, Policy};

/// The shortest `hash_key` accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// `[privacy]`, validated.
#[derive(Debug, Clone, Default)]
pub struct PrivacySettings {
    pub policies: Policies,
    pub hash_key: Option<Secret>,
    /// Keys used before `hash_key` (key rotation): erasures recorded under them stay in force,
    /// `erase` finds values hashed under them, and rows labelled with them are not an error.
    pub previous_hash_keys: Vec<Secret>,
    pub retain_sessions: Option<Duration>,
    pub retain_transcripts: Option<Duration>,
}

/// See [`Inventory::classed_by`].
pub type ClassedBy = (
    &'static str,
    &'static str,
    &'static str,
    fn(Option<&str>) -> &'static [Class],
);

/// A personal-data source: the field lists of its records and the tables and columns that
/// hold personal data (each source's `personal.rs`).
pub struct Inventory {
    pub source: &'static str,
    /// Its stream's name (`rejected_records.stream`).
    pub stream: &'static str,
    /// The session table and its id column.
    pub sessions: &'static str,
    pub id_column: &'static str,
    /// The column a session's age is measured by (its start, docs/privacy.md section 5).
    pub start_column: &'static str,
    /// The fields of each stored document column of the session table (`raw`, …), as received.
    pub documents: &'static [(&'static str, &'static [Field])],
    /// Every personal column of every table of the source.
    pub columns: &'static [Column],
    /// The text and jsonb columns (`table.column`) of its tables that hold no personal data;
    /// with `columns` and `documents` they cover every such column (a test holds the schema to
    /// it, so a new column cannot escape its class).
    pub non_personal: &'static [&'static str],
    /// Values `erase` also matches on that have no column of their own: (selector, an
    /// expression over the session table, indexed through `sessionsync_norm_text`).
    pub lookups: &'static [(Selector, &'static str)],
    /// Values `erase` also matches on that sit several to a session (mluvii's call parameters):
    /// (selector, an expression over the session table giving the normalized values as `text[]`,
    /// with a GIN index).
    pub set_lookups: &'static [(Selector, &'static str)],
    /// Columns whose class depends on another column of their row: (table, column, the
    /// column it depends on, its classes by that column's value): a chat line's author is the
    /// customer's or an agent's name by who wrote it.
    pub classed_by: &'static [ClassedBy],
    /// Child tables and the column that names their session (`(table, session column)`).
    pub children: &'static [(&'static str, &'static str)],
    /// Child tables holding transcripts, for `retain_transcripts`: (table, session column); their
    /// rows are deleted.
    pub transcripts: &'static [(&'static str, &'static str)],
    /// Keys of `raw` holding transcripts (as the vendor spells them), removed by
    /// `retain_transcripts`.
    pub transcript_keys: &'static [&'static str],
    /// One-off conversions of rows stored before a field of its was given a class (each
    /// recorded as pending by its migration, run at start: `privacy::conversions`).
    pub conversions: &'static [conversions::Conversion],
}

impl Inventory {
    /// Where the source's sessions are stored, as the completeness audit counts them.
    pub const fn table(&self) -> crate::model::SessionTable {
        crate::model::SessionTable {
            table: self.sessions,
            id: self.id_column,
            start: self.start_column,
        }
    }

    /// Every table of the source: the session table, its children, then any other table a
    /// column of the inventory names (a lookup such as SuperOffice's chat topics).
    pub fn tables(&self) -> Vec<&'static str> {
        let mut tables = vec![self.sessions];
        let named = self.children.iter().map(|(t, _)| *t).chain(
            self.columns.iter().map(|c| c.table).chain(
                self.non_personal
                    .iter()
                    .filter_map(|c| c.split_once('.').map(|(t, _)| t)),
            ),
        );
        for t in named {
            if !t.is_empty() && !tables.contains(&t) {
                tables.push(t);
            }
        }
        tables
    }

    /// Nothing personal anywhere: the rest of a source's inventory when it names its own
    /// fields (`Inventory { source: …, columns: …, ..Inventory::NONE }`).
    pub const NONE: Inventory = Inventory {
        source: "",
        stream: "sessions",
        sessions: "",
        id_column: "session_id",
        start_column: "started_at",
        documents: &[],
        columns: &[],
        non_personal: &[],
        lookups: &[],
        set_lookups: &[],
        classed_by: &[],
        children: &[],
        transcripts: &[],
        transcript_keys: &[],
        conversions: &[],
    };

    /// The column of `table` (the session table or one of its children) that holds the
    /// session's id.
    pub fn session_column(&self, table: &str) -> &'static str {
        self.children
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(self.id_column, |(_, k)| *k)
    }
}

/// The erasures recorded in the warehouse (their selector hashes), as this process last read
/// them. The set only grows; `version` is the largest erasure id read.
#[derive(Default)]
pub struct Erasures {
    inner: RwLock<(i64, HashSet<String>)>,
    /// The hash keys' hashers (current, then previous), to read rows recorded before migration
    /// 0017 (`derivation = 'hmac'`) as the selectors they stand for under any of them.
    keys: Vec<Hasher>,
}

impl std::fmt::Debug for Erasures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Erasures(version {})", self.version())
    }
}

impl Erasures {
    /// The erasures of a process whose hash key is `settings.hash_key`.
    pub fn new(settings: &PrivacySettings) -> Self {
        Erasures {
            inner: RwLock::default(),
            keys: hashers(settings),
        }
    }

    pub fn version(&self) -> i64 {
        self.inner.read().expect("erasures").0
    }

    pub fn contains_any(&self, hashes: &[String]) -> bool {
        let g = self.inner.read().expect("erasures");
        !g.1.is_empty() && hashes.iter().any(|h| g.1.contains(h))
    }

    /// Reads the erasures recorded since the last read (by id, through the primary key);
    /// returns the version now known.
    pub async fn refresh(
        &self,
        c: &impl tokio_postgres::GenericClient,
    ) -> Result<i64, tokio_postgres::Error> {
        let since = self.version();
        let rows = c
            .query(
                "SELECT id, selector_hash, derivation = 'hmac' FROM erasures WHERE id > $1 ORDER BY id",
                &[&since],
            )
            .await?;
        if rows.is_empty() {
            return Ok(since);
        }
        let mut g = self.inner.write().expect("erasures");
        for r in rows {
            let id: i64 = r.get(0);
            let hash: String = r.get(1);
            let old: bool = r.get(2);
            if old {
                // Whichever key recorded it (without a key no record is matched anyway).
                for k in &self.keys {
                    g.1.insert(k.selector_of(&hash));
                }
            } else {
                g.1.insert(hash);
            }
            g.0 = g.0.max(id);
        }
        Ok(g.0)
    }
}

/// The newest erasure id in the warehouse, read under the shared erasure lock: a window (or
/// webhook batch) read with an older set is read again (`privacy::warehouse::prepare_write`).
pub async fn current_version(
    c: &impl tokio_postgres::GenericClient,
) -> Result<i64, tokio_postgres::Error> {
    c.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtext(current_schema() || '.erasures'))",
        &[],
    )
    .await?;
    Ok(
        c.query_one("SELECT coalesce(max(id), 0) FROM erasures", &[])
            .await?
            .get(0),
    )
}

/// What a source applies to every record it reads: its policies (the `[privacy]` section with
/// its entry's overrides), the key, and the erasures.
#[derive(Clone)]
pub struct Privacy {
    pub policies: Policies,
    hasher: Option<Hasher>,
    /// The previous keys': erasures recorded under them stay in force.
    previous: Vec<Hasher>,
    key_id: Option<String>,
    pub erasures: Arc<Erasures>,
    /// `retain_sessions`: no write keeps a session that started longer ago.
    pub retain_sessions: Option<Duration>,
    /// `retain_transcripts`: no write keeps the transcript of a session that started longer ago.
    pub retain_transcripts: Option<Duration>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Privacy({})", self.policies.describe())
    }
}

impl Privacy {
    pub fn new(settings: &PrivacySettings, overrides: &Overrides, erasures: Arc<Erasures>) -> Self {
        // The current key first, then the previous ones (previous keys need a current one).
        let mut keys = hashers(settings).into_iter();
        let hasher = settings.hash_key.as_ref().and_then(|_| keys.next());
        let key_id = hasher.as_ref().map(key_fingerprint);
        let previous = keys.collect();
        Privacy {
            previous,
            policies: settings.policies.with(overrides),
            hasher,
            key_id,
            erasures,
            retain_sessions: settings.retain_sessions,
            retain_transcripts: settings.retain_transcripts,
        }
    }

    /// Everything kept, no key: what a source without `[privacy]` does.
    pub fn keep_all() -> Self {
        Privacy::new(
            &PrivacySettings::default(),
            &Overrides::default(),
            Arc::new(Erasures::default()),
        )
    }

    pub fn hasher(&self) -> Option<&Hasher> {
        self.hasher.as_ref()
    }

    /// The fingerprint of the hash key (8 hex digits), when one is set.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The policy as stored with each row (`privacy_policy`): its letters, and the key's
    /// fingerprint when one is set (a hash under another key is not this policy's hash).
    pub fn tag(&self) -> String {
        tag(&self.policies, self.key_id.as_deref())
    }

    /// The scrubber of the configured policies.
    pub fn scrub(&self) -> Scrub<'_> {
        Scrub {
            policies: self.policies,
            hasher: self.hasher.as_ref(),
            since: None,
        }
    }

    /// The scrubber of an erased session: every class dropped.
    pub fn erase(&self) -> Scrub<'_> {
        Scrub::erasing()
    }

    /// The selector hash of one session (`erase --session`).
    pub fn session_hash(&self, source: &str, account: &str, id: &str) -> Option<String> {
        self.hasher
            .as_ref()
            .map(|h| h.selector(&session_selector(source, account, id)))
    }

    /// Whether the record `doc` (as received) of session `id` matches a recorded erasure.
    pub fn is_erased(
        &self,
        source: &str,
        account: &str,
        id: &str,
        docs: &[(&Value, &[Field])],
    ) -> bool {
        let Some(h) = &self.hasher else {
            return false;
        };
        if self.erasures.version() == 0 {
            return false;
        }
        // Under the key and every previous one: an erasure recorded before a rotation holds.
        let mut hashes = Vec::new();
        for h in std::iter::once(h).chain(&self.previous) {
            hashes.push(h.selector(&session_selector(source, account, id)));
            for (doc, fields) in docs {
                fields::selector_hashes(h, doc, fields, &mut hashes);
            }
        }
        self.erasures.contains_any(&hashes)
    }

    /// Whether reading a record under it can change anything: nothing is scrubbed and no
    /// erasure is recorded (the default configuration's fast path).
    pub fn is_inert(&self) -> bool {
        self.policies.keeps_everything() && self.erasures.version() == 0
    }

    /// The scrubber for one record: the policies, or erasure when it matches one.
    pub fn for_record(&self, erased: bool) -> Scrub<'_> {
        if erased { self.erase() } else { self.scrub() }
    }
}

/// The fingerprint of a key (8 hex digits): what row labels and `erasures.key_id` name it by.
pub fn key_fingerprint(h: &Hasher) -> String {
    h.hex("sessionsync key id")[..8].to_string()
}

/// The hashers of `settings`: the current key first, then the previous ones.
pub fn hashers(settings: &PrivacySettings) -> Vec<Hasher> {
    settings
        .hash_key
        .iter()
        .chain(&settings.previous_hash_keys)
        .map(|k| Hasher::new(k.expose().as_bytes()))
        .collect()
}

/// What `erase --session SOURCE/ACCOUNT/ID` hashes.
pub fn session_selector(source: &str, account: &str, id: &str) -> String {
    format!("session:{source}/{account}/{id}")
}

/// See [`Privacy::tag`].
pub fn tag(policies: &Policies, key_id: Option<&str>) -> String {
    match key_id {
        Some(k) if policies.needs_key() => format!("{}:{k}", policies.letters()),
        _ => policies.letters(),
    }
}

/// The instant before which a storage limit of `d` removes sessions, at `now`.
pub fn cutoff(d: Duration, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    now - chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}
