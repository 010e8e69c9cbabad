//! Writes Take Control sessions. Per window: the stored fingerprints of its sessions are looked
//! up (one key probe each); sessions new to the warehouse go in by binary COPY with their chat
//! messages and video links; sessions whose fingerprint changed go through one set-based upsert,
//! and the child rows of exactly those are replaced; unchanged sessions are not sent at all.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use super::normalize::Session;
use crate::engine::{Rows, WriteCounts};
use crate::warehouse::{JsonText, delete_children};

pub struct SessionRows(pub Vec<Session>);

/// The stored fingerprints of a window's sessions (`$1` account, `$2` ids). One index probe per
/// key, whatever the planner knows: `LIMIT 1` keeps the subquery from being turned into a hash
/// or merge join, which a table not yet analyzed (during a backfill) would get, reading the
/// whole account each window; and the only index `account` can enter is the primary key
/// (migration 0009), so each probe's condition is the whole key.
/// A row stored under another privacy policy than this transaction's answers no fingerprint it
/// could match (`relabel`): a re-read rewrites it even when the vendor's record is unchanged, so
/// that its `privacy_policy` tells the truth about its values.
const LOOKUP: &str = "SELECT u.id, h.content_hash FROM unnest($2::bigint[]) AS u(id)
     CROSS JOIN LATERAL (
         SELECT CASE WHEN t.privacy_policy IS NOT DISTINCT FROM current_setting('sessionsync.privacy_policy', true)
                     THEN t.content_hash ELSE 'relabel' END AS content_hash
           FROM takecontrol_sessions t
         WHERE t.account = $1 AND t.session_id = u.id LIMIT 1) AS h
     WHERE h.content_hash IS NOT NULL";

/// The child tables replaced with their session.
const CHILD_TABLES: [&str; 2] = ["takecontrol_chat_messages", "takecontrol_video_links"];

/// Every statement of a window's write that reads stored rows, each taking `$1` (account) and
/// `$2` (ids, bigint[]): the plan tests hold each to probing the whole key.
pub fn reading_statements() -> Vec<String> {
    let mut out = vec![LOOKUP.to_string()];
    out.extend(CHILD_TABLES.iter().map(|t| delete_children(t)));
    out
}

/// A stored session is rewritten only when its content fingerprint differs (the fingerprint
/// covers the record as received, the time zone it is read in, and the normalization version,
/// of which every column and child row is a function).
const UPSERT: &str = "
INSERT INTO takecontrol_sessions AS t (
    account, session_id, computer_name, computer_domain, computer_os, tech_username, tech_name,
    customer_name, customer_email, customer_number, problem_description, notes, has_videos,
    started_at, ended_at, duration_seconds, custom_fields, raw, content_hash)
SELECT $1, u.* FROM unnest(
    $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
    $10::text[], $11::text[], $12::text[], $13::boolean[], $14::timestamptz[], $15::timestamptz[],
    $16::float8[], $17::jsonb[], $18::jsonb[], $19::text[]) AS u
ON CONFLICT (account, session_id) DO UPDATE SET
    computer_name = EXCLUDED.computer_name, computer_domain = EXCLUDED.computer_domain,
    computer_os = EXCLUDED.computer_os, tech_username = EXCLUDED.tech_username,
    tech_name = EXCLUDED.tech_name, customer_name = EXCLUDED.customer_name,
    customer_email = EXCLUDED.customer_email, customer_number = EXCLUDED.customer_number,
    problem_description = EXCLUDED.problem_description, notes = EXCLUDED.notes,
    has_videos = EXCLUDED.has_videos, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,
    duration_seconds = EXCLUDED.duration_seconds, custom_fields = EXCLUDED.custom_fields,
    raw = EXCLUDED.raw, content_hash = EXCLUDED.content_hash, last_synced_at = now(),
    privacy_policy = DEFAULT
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
   OR t.privacy_policy IS DISTINCT FROM EXCLUDED.privacy_policy
RETURNING session_id";

#[async_trait]
impl Rows for SessionRows {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> Vec<crate::model::SessionId> {
        self.0.iter().map(|s| s.session_id.into()).collect()
    }

    fn newest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.iter().filter_map(|s| s.started_at).max()
    }

    async fn write(
        &self,
        tx: &Transaction<'_>,
        account: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        if self.0.is_empty() {
            return Ok(WriteCounts::default());
        }
        // Sessions stored with the same fingerprint are not even sent: a lookback re-read
        // costs one index lookup per session instead of a jsonb parse and an upsert.
        let t0 = std::time::Instant::now(); // for the debug line on where the time goes
        let ids: Vec<i64> = self.0.iter().map(|x| x.session_id).collect();
        let stored: HashMap<i64, String> = tx
            .query(LOOKUP, &[&account, &ids])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let s: &[&Session] = &self
            .0
            .iter()
            .filter(|x| stored.get(&x.session_id) != Some(&x.content_hash))
            .collect::<Vec<_>>();
        if s.is_empty() {
            return Ok(WriteCounts {
                written: 0,
                unchanged: self.0.len() as u64,
                children: Default::default(),
            });
        }
        let t1 = t0.elapsed();
        // Sessions new to the warehouse (all of a first backfill) go in by binary COPY, with
        // their children; the stream's lock guarantees no other writer adds the same keys
        // between the lookup and the COPY. Changed sessions go through the upsert.
        let (new, changed): (Vec<&Session>, Vec<&Session>) = s
            .iter()
            .copied()
            .partition(|x| !stored.contains_key(&x.session_id));
        let mut children = std::collections::BTreeMap::new();
        let mut add = |c: std::collections::BTreeMap<&'static str, u64>| {
            for (t, n) in c {
                *children.entry(t).or_insert(0) += n;
            }
        };
        if !new.is_empty() {
            copy_sessions(tx, account, &new).await?;
            add(copy_children(tx, account, &new).await?);
        }
        let t2 = t0.elapsed();
        let mut rewritten = 0;
        if !changed.is_empty() {
            let ids = upsert_changed(tx, account, &changed).await?;
            rewritten = ids.len();
            if !ids.is_empty() {
                for table in CHILD_TABLES {
                    tx.execute(&delete_children(table), &[&account, &ids])
                        .await?;
                }
                let ids: HashSet<i64> = ids.into_iter().collect();
                let replaced: Vec<&Session> = changed
                    .iter()
                    .copied()
                    .filter(|x| ids.contains(&x.session_id))
                    .collect();
                add(copy_children(tx, account, &replaced).await?);
            }
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            lookup_ms = ms(t1),
            copy_new_ms = ms(t2 - t1),
            upsert_changed_ms = ms(t0.elapsed() - t2),
            new = new.len(),
            changed = changed.len(),
            "sessions written"
        );
        let written = new.len() + rewritten;
        Ok(WriteCounts {
            written: written as u64,
            unchanged: (self.0.len() - written) as u64,
            children,
        })
    }
}

const SESSION_COLUMNS: &str = "account, session_id, computer_name, computer_domain, computer_os, \
    tech_username, tech_name, customer_name, customer_email, customer_number, \
    problem_description, notes, has_videos, started_at, ended_at, duration_seconds, \
    custom_fields, raw, content_hash";

/// Binary COPY of sessions not yet stored.
async fn copy_sessions(
    tx: &Transaction<'_>,
    account: &str,
    sessions: &[&Session],
) -> Result<(), tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in(&format!(
            "COPY takecontrol_sessions ({SESSION_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut types = vec![Type::TEXT, Type::INT8];
    types.extend([Type::TEXT; 10]);
    types.extend([
        Type::BOOL,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::JSONB,
        Type::JSONB,
        Type::TEXT,
    ]);
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for x in sessions {
        let raw = JsonText(&x.raw);
        writer
            .as_mut()
            .write(&[
                &account,
                &x.session_id,
                &x.computer_name,
                &x.computer_domain,
                &x.computer_os,
                &x.tech_username,
                &x.tech_name,
                &x.customer_name,
                &x.customer_email,
                &x.customer_number,
                &x.problem_description,
                &x.notes,
                &x.has_videos,
                &x.started_at,
                &x.ended_at,
                &x.duration_seconds,
                &x.custom_fields,
                &raw,
                &x.content_hash,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Binary COPY of the chat messages and video links of `sessions` (none stored for them).
async fn copy_children(
    tx: &Transaction<'_>,
    account: &str,
    sessions: &[&Session],
) -> Result<std::collections::BTreeMap<&'static str, u64>, tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    let mut written = std::collections::BTreeMap::new();
    if sessions.iter().any(|s| !s.messages.is_empty()) {
        let sink = tx
            .copy_in(
                "COPY takecontrol_chat_messages (account, session_id, seq, sent_at, author, author_type, message) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT8,
                Type::INT4,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
        );
        futures::pin_mut!(writer);
        for s in sessions {
            for (i, m) in s.messages.iter().enumerate() {
                writer
                    .as_mut()
                    .write(&[
                        &account,
                        &s.session_id,
                        &(i as i32),
                        &m.sent_at,
                        &m.author,
                        &m.author_type,
                        &m.message,
                    ])
                    .await?;
            }
        }
        written.insert("takecontrol_chat_messages", writer.finish().await?);
    }
    if sessions.iter().any(|s| !s.videos.is_empty()) {
        let sink = tx
            .copy_in(
                "COPY takecontrol_video_links (account, session_id, seq, url) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8, Type::INT4, Type::TEXT]);
        futures::pin_mut!(writer);
        for s in sessions {
            for (i, url) in s.videos.iter().enumerate() {
                writer
                    .as_mut()
                    .write(&[&account, &s.session_id, &(i as i32), url])
                    .await?;
            }
        }
        written.insert("takecontrol_video_links", writer.finish().await?);
    }
    Ok(written)
}

/// The upsert of sessions already stored whose fingerprint differs; returns the ids rewritten.
async fn upsert_changed(
    tx: &Transaction<'_>,
    account: &str,
    s: &[&Session],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let hash_col: Vec<&str> = s.iter().map(|x| x.content_hash.as_str()).collect();
    fn col<T: Clone>(s: &[&Session], f: impl Fn(&Session) -> T) -> Vec<T> {
        s.iter().map(|x| f(x)).collect()
    }
    let ids = col(s, |x| x.session_id);
    let text = |f: fn(&Session) -> &Option<String>| col(s, |x| f(x).clone());
    let computer_name = text(|x| &x.computer_name);
    let computer_domain = text(|x| &x.computer_domain);
    let computer_os = text(|x| &x.computer_os);
    let tech_username = text(|x| &x.tech_username);
    let tech_name = text(|x| &x.tech_name);
    let customer_name = text(|x| &x.customer_name);
    let customer_email = text(|x| &x.customer_email);
    let customer_number = text(|x| &x.customer_number);
    let problem = text(|x| &x.problem_description);
    let notes = text(|x| &x.notes);
    let has_videos = col(s, |x| x.has_videos);
    let started: Vec<Option<DateTime<Utc>>> = col(s, |x| x.started_at);
    let ended: Vec<Option<DateTime<Utc>>> = col(s, |x| x.ended_at);
    let duration = col(s, |x| x.duration_seconds);
    let custom: Vec<Option<Value>> = col(s, |x| x.custom_fields.clone());
    let raw: Vec<JsonText> = s.iter().map(|x| JsonText(&x.raw)).collect();
    let returned: Vec<i64> = tx
        .query(
            UPSERT,
            &[
                &account,
                &ids,
                &computer_name,
                &computer_domain,
                &computer_os,
                &tech_username,
                &tech_name,
                &customer_name,
                &customer_email,
                &customer_number,
                &problem,
                &notes,
                &has_videos,
                &started,
                &ended,
                &duration,
                &custom,
                &raw,
                &hash_col,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(returned)
}
