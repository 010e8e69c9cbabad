//! The SQL of personal data (docs/privacy.md): the erasure lock every write takes, the erasure
//! of sessions in every table of a source's inventory, sessions deleted at the source, and the
//! storage limit applied to what a write just wrote.
//!
//! Consistency with writers: every window (and webhook batch) transaction takes the erasure lock
//! shared and checks that no erasure newer than the set it read its records with was recorded
//! ([`prepare_write`]); `sessionsync erase` takes it exclusively. So an erase waits for the
//! writes already under way (and then erases what they wrote), and a write that read its records
//! before the erase committed reads them again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::model::SessionId;
use crate::privacy::{Inventory, Privacy};
use crate::warehouse::WarehouseError;

/// The advisory lock of erasures, per schema.
pub const LOCK_KEY: &str = "hashtext(current_schema() || '.erasures')";

/// Inside a write transaction: stamps the rows it writes with the policy (`privacy_policy`) and
/// takes the erasure lock shared; `false` when an erasure newer than `seen` (the version the
/// records were read with) was recorded, so the records must be read again.
pub async fn prepare_write(
    tx: &impl GenericClient,
    privacy: &Privacy,
    seen: i64,
) -> Result<bool, WarehouseError> {
    let tag = privacy.tag();
    tx.execute(
        "SELECT set_config('sessionsync.privacy_policy', $1, true)",
        &[&tag],
    )
    .await
    .map_err(WarehouseError::query(
        "setting the privacy policy of a write",
    ))?;
    record_key(tx, &tag).await?;
    let now = crate::privacy::current_version(tx)
        .await
        .map_err(WarehouseError::query("checking the recorded erasures"))?;
    Ok(now <= seen)
}

/// Notes the key a label names (`hash_keys`, one primary-key probe), so that the check at start
/// knows every key stored rows depend on without reading them.
pub async fn record_key(tx: &impl GenericClient, tag: &str) -> Result<(), WarehouseError> {
    if let Some((_, key_id)) = tag.split_once(':') {
        tx.execute(
            "INSERT INTO hash_keys (key_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&key_id],
        )
        .await
        .map_err(WarehouseError::query("noting the hash key of a write"))?;
    }
    Ok(())
}

/// The addresses of the rows of `table` whose `column` is one of `$2` (bigint[]) for account
/// `$1`: one probe of the key per id, whatever the planner's statistics say (as
/// `warehouse::delete_children`).
pub fn rows_of(table: &str, column: &str) -> String {
    format!(
        "ARRAY(SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
               CROSS JOIN LATERAL (SELECT t.ctid FROM {table} t
                                   WHERE t.account = $1 AND t.{column} = u.id OFFSET 0) AS x)"
    )
}

/// Removes every personal class from sessions `ids` of `account`: their personal columns (in
/// the session table and its children) become NULL, their documents lose every personal field,
/// and their records set aside keep only their key. Counts the rows changed per table; with
/// `dry_run`, only counts.
pub async fn erase_sessions(
    c: &impl GenericClient,
    inv: &Inventory,
    account: &str,
    ids: &[SessionId],
    dry_run: bool,
) -> Result<BTreeMap<String, u64>, WarehouseError> {
    let mut counts = BTreeMap::new();
    if ids.is_empty() {
        return Ok(counts);
    }
    let mut tables: Vec<&str> = inv.columns.iter().map(|c| c.table).collect();
    tables.dedup();
    for table in tables {
        let cols: Vec<&str> = inv
            .columns
            .iter()
            .filter(|c| c.table == table)
            .map(|c| c.column)
            .collect();
        let key = inv.session_column(table);
        let any_set = cols
            .iter()
            .map(|c| format!("{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = if dry_run {
            format!(
                "SELECT count(*) FROM {table} WHERE ctid = ANY({}) AND ({any_set})",
                rows_of(table, key)
            )
        } else {
            format!(
                "WITH e AS (UPDATE {table} SET {} WHERE ctid = ANY({}) AND ({any_set}) RETURNING 1)
                 SELECT count(*) FROM e",
                cols.iter()
                    .map(|c| format!("{c} = NULL"))
                    .collect::<Vec<_>>()
                    .join(", "),
                rows_of(table, key)
            )
        };
        let n: i64 = c
            .query_one(&sql, &[&account, &ids])
            .await
            .map_err(WarehouseError::query("erasing personal columns"))?
            .get(0);
        *counts.entry(table.to_string()).or_default() += n as u64;
    }
    // The documents (raw, routing_raw): every personal field removed, in Rust, one key probe
    // per session.
    // (A source that stores no document has none to read.)
    let docs: Vec<&str> = inv.documents.iter().map(|(d, _)| *d).collect();
    let rows = match docs.is_empty() {
        true => Vec::new(),
        false => c
            .query(
                &format!(
                    "SELECT {}, {} FROM {} WHERE ctid = ANY({})",
                    inv.id_column,
                    docs.join(", "),
                    inv.sessions,
                    rows_of(inv.sessions, inv.id_column)
                ),
                &[&account, &ids],
            )
            .await
            .map_err(WarehouseError::query("reading documents to erase"))?,
    };
    let mut changed = 0u64;
    for r in rows {
        let id: i64 = match r.try_get::<_, i64>(0) {
            Ok(v) => v,
            Err(_) => i64::from(r.get::<_, i32>(0)),
        };
        let mut new = Vec::with_capacity(docs.len());
        let mut differs = false;
        for (i, (_, fields)) in inv.documents.iter().enumerate() {
            let before: serde_json::Value = r.get(i + 1);
            let mut after = before.clone();
            crate::privacy::Scrub::erasing().document(&mut after, fields);
            differs |= after != before;
            new.push(after);
        }
        if !differs {
            continue;
        }
        changed += 1;
        if dry_run {
            continue;
        }
        let sets: Vec<String> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| format!("{d} = ${}", i + 3))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE account = $1 AND {} = $2::bigint",
            inv.sessions,
            sets.join(", "),
            inv.id_column
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&account, &id];
        for v in &new {
            params.push(v);
        }
        c.execute(&sql, &params)
            .await
            .map_err(WarehouseError::query("erasing a session's documents"))?;
    }
    if !docs.is_empty() {
        *counts.entry(format!("{} (raw)", inv.sessions)).or_default() += changed;
    }
    // What was set aside keeps its key and reason, not its content.
    let keys: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let sql = if dry_run {
        "SELECT count(*) FROM rejected_records WHERE source = $1 AND account = $2 AND stream = $3
           AND record_key = ANY($4::text[]) AND payload <> '{\"erased\": true}'::jsonb"
    } else {
        "WITH e AS (UPDATE rejected_records SET payload = '{\"erased\": true}'::jsonb
                     WHERE source = $1 AND account = $2 AND stream = $3
                       AND record_key = ANY($4::text[]) AND payload <> '{\"erased\": true}'::jsonb
                     RETURNING 1)
         SELECT count(*) FROM e"
    };
    let n: i64 = c
        .query_one(sql, &[&inv.source, &account, &inv.stream, &keys])
        .await
        .map_err(WarehouseError::query("erasing records set aside"))?
        .get(0);
    *counts.entry("rejected_records".into()).or_default() += n as u64;
    Ok(counts)
}

/// Sessions the vendor no longer knows (`ids`, as record keys): `source_deleted_at` is set,
/// their personal data erased, and the erasure recorded (by session) so that a later read
/// writes them erased too. Returns how many stored sessions it marked.
pub async fn source_deleted(
    tx: &impl GenericClient,
    privacy: &Privacy,
    inv: &Inventory,
    account: &str,
    gone: &[SessionId],
) -> Result<u64, WarehouseError> {
    let ids = gone;
    let rows = tx
        .query(
            &format!(
                "UPDATE {} SET source_deleted_at = coalesce(source_deleted_at, now())
                 WHERE ctid = ANY({}) RETURNING {}::bigint",
                inv.sessions,
                rows_of(inv.sessions, inv.id_column),
                inv.id_column
            ),
            &[&account, &ids],
        )
        .await
        .map_err(WarehouseError::query(
            "marking sessions deleted at the source",
        ))?;
    let found: Vec<SessionId> = rows.iter().map(|r| r.get(0)).collect();
    erase_sessions(tx, inv, account, &found, false).await?;
    if let Some(h) = privacy.hasher() {
        let key_id = crate::privacy::key_fingerprint(h);
        for id in &found {
            let selector = h.selector(&crate::privacy::session_selector(
                inv.source,
                account,
                &id.to_string(),
            ));
            record(
                tx,
                "session",
                (&selector, &key_id),
                1,
                Some("source_deleted"),
            )
            .await?;
        }
    }
    Ok(found.len() as u64)
}

/// Brings the erasures recorded before migration 0017 (`derivation = 'hmac'`: their hash is the
/// one a `hash` policy stores, a join key) to the selector derivation, with the configured key,
/// under the erasure lock; how many were converted. Idempotent, and safe beside other processes.
pub async fn separate_selectors(
    c: &mut tokio_postgres::Client,
    h: &crate::privacy::Hasher,
) -> Result<u64, WarehouseError> {
    let tx = c
        .transaction()
        .await
        .map_err(WarehouseError::query("starting the erasure conversion"))?;
    let old = tx
        .query(
            "SELECT id, selector_hash FROM erasures WHERE derivation = 'hmac'",
            &[],
        )
        .await
        .map_err(WarehouseError::query("reading erasures to convert"))?;
    if old.is_empty() {
        return Ok(0);
    }
    tx.execute(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"), &[])
        .await
        .map_err(WarehouseError::query("taking the erasure lock"))?;
    let mut n = 0;
    for r in old {
        let (id, hash): (i64, String) = (r.get(0), r.get(1));
        n += tx
            .execute(
                "UPDATE erasures SET selector_hash = $2, derivation = 'selector', key_id = $3 WHERE id = $1 AND derivation = 'hmac'",
                &[&id, &h.selector_of(&hash), &crate::privacy::key_fingerprint(h)],
            )
            .await
            .map_err(WarehouseError::query("converting an erasure"))?;
    }
    tx.commit()
        .await
        .map_err(WarehouseError::query("committing the erasure conversion"))?;
    Ok(n)
}

/// Records one erased selector, once, with the fingerprint of the key it was derived under.
pub async fn record(
    c: &impl GenericClient,
    kind: &str,
    (hash, key_id): (&str, &str),
    sessions: i64,
    reason: Option<&str>,
) -> Result<(), WarehouseError> {
    c.execute(
        "INSERT INTO erasures (selector_kind, selector_hash, sessions, reason, key_id)
         SELECT $1, $2, $3::bigint::int, $4, $5
         WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE selector_hash = $2)",
        &[&kind, &hash, &sessions, &reason, &key_id],
    )
    .await
    .map_err(WarehouseError::query("recording an erasure"))?;
    Ok(())
}

/// After a write: deletes the sessions of `keys` just written whose start is before `cut` (a
/// backfill, a webhook or a lookback must not bring back what the limit removed).
pub async fn drop_written(
    tx: &impl GenericClient,
    inv: &Inventory,
    account: &str,
    keys: &[SessionId],
    cut: DateTime<Utc>,
) -> Result<u64, WarehouseError> {
    let ids = keys;
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = tx
        .query(
            &format!(
                "DELETE FROM {s} WHERE ctid = ANY(ARRAY(
                     SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
                     CROSS JOIN LATERAL (SELECT t.ctid FROM {s} t
                         WHERE t.account = $1 AND t.{id} = u.id AND t.{start} < $3 OFFSET 0) AS x))
                 RETURNING {id}::bigint",
                s = inv.sessions,
                id = inv.id_column,
                start = inv.start_column,
            ),
            &[&account, &ids, &cut],
        )
        .await
        .map_err(WarehouseError::query(
            "removing sessions written past the storage limit",
        ))?;
    let old: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Children the delete triggers do not reach (SuperOffice's messages).
    for (child, key) in inv.children {
        tx.execute(&delete_rows_of(child, key), &[&account, &old])
            .await
            .map_err(WarehouseError::query(
                "removing children past the storage limit",
            ))?;
    }
    Ok(old.len() as u64)
}

/// After a write: removes the transcripts (the rows of `inv.transcripts` and the transcript keys
/// of `raw`) of the sessions of `keys` just written whose start is before `cut`, so that no path
/// writes a transcript past `retain_transcripts` (docs/privacy.md section 5). Each statement
/// probes the written sessions by key. Returns the sessions stripped.
pub async fn strip_written(
    tx: &impl GenericClient,
    inv: &Inventory,
    account: &str,
    keys: &[SessionId],
    cut: DateTime<Utc>,
) -> Result<u64, WarehouseError> {
    let ids = keys;
    if ids.is_empty() || (inv.transcripts.is_empty() && inv.transcript_keys.is_empty()) {
        return Ok(0);
    }
    let (find, deletes, strip) = strip_statements(inv);
    let rows = tx
        .query(&find, &[&account, &ids, &cut])
        .await
        .map_err(WarehouseError::query(
            "finding sessions written past the transcript limit",
        ))?;
    let old: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    if old.is_empty() {
        return Ok(0);
    }
    for sql in deletes.iter().chain(&strip) {
        tx.execute(sql, &[&account, &old])
            .await
            .map_err(WarehouseError::query(
                "removing transcripts written past the storage limit",
            ))?;
    }
    Ok(old.len() as u64)
}

/// Deletes the rows of `child` (keyed to their session by `key`) of the sessions `$2` (bigint[])
/// of account `$1`, each found by a fenced probe of the session's key, by their row addresses.
pub fn delete_rows_of(child: &str, key: &str) -> String {
    format!(
        "DELETE FROM {child} WHERE ctid = ANY(ARRAY(
             SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
             CROSS JOIN LATERAL (SELECT t.ctid FROM {child} t
                 WHERE t.account = $1 AND t.{key} = u.id OFFSET 0) AS x))"
    )
}

/// For the transcript keys of `raw` (`inv.transcript_keys`): the condition that a row holds one
/// (`raw ? 'k' OR …`) and the expression that removes them (` - 'k' - …`).
pub fn transcript_keys_sql(inv: &Inventory) -> (String, String) {
    let has = inv
        .transcript_keys
        .iter()
        .map(|k| format!("raw ? '{k}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let minus = inv
        .transcript_keys
        .iter()
        .map(|k| format!(" - '{k}'"))
        .collect::<String>();
    (has, minus)
}

/// The statements of [`strip_written`] for `inv`: the written sessions (`$1` account, `$2` ids)
/// started before `$3`; the deletes of their transcript rows; the update that removes the
/// transcript keys of their `raw`. Each reaches rows only by probing the session keys (the plan
/// tests hold them to it).
pub fn strip_statements(inv: &Inventory) -> (String, Vec<String>, Option<String>) {
    let find = format!(
        "SELECT x.id FROM unnest($2::bigint[]) AS u(id)
         CROSS JOIN LATERAL (SELECT t.{id}::bigint AS id FROM {s} t
             WHERE t.account = $1 AND t.{id} = u.id AND t.{start} < $3 OFFSET 0) AS x",
        s = inv.sessions,
        id = inv.id_column,
        start = inv.start_column,
    );
    let deletes = inv
        .transcripts
        .iter()
        .map(|(child, key)| delete_rows_of(child, key))
        .collect();
    let strip = (!inv.transcript_keys.is_empty()).then(|| {
        let (has, minus) = transcript_keys_sql(inv);
        format!(
            "UPDATE {s} SET raw = raw{minus}
             WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
                 CROSS JOIN LATERAL (SELECT t.ctid FROM {s} t
                     WHERE t.account = $1 AND t.{id} = u.id OFFSET 0) AS x))
               AND ({has})",
            s = inv.sessions,
            id = inv.id_column,
        )
    });
    (find, deletes, strip)
}

/// After a source's rows are written in `tx`: sessions the source no longer knows are marked and
/// erased, sessions past `retain_sessions` removed again and the transcripts of those past
/// `retain_transcripts` removed (a backfill, a webhook, a lookback or a new account's first sync
/// never brings back what a storage limit removed). Returns (sessions marked deleted at the
/// source, sessions removed as too old).
pub async fn after_write(
    tx: &impl GenericClient,
    privacy: &Privacy,
    inv: &Inventory,
    account: &str,
    written: &[SessionId],
    gone: &[SessionId],
) -> Result<(u64, u64), WarehouseError> {
    let deleted = if gone.is_empty() {
        0
    } else {
        source_deleted(tx, privacy, inv, account, gone).await?
    };
    let old = match privacy.retain_sessions {
        Some(d) if !written.is_empty() => {
            drop_written(
                tx,
                inv,
                account,
                written,
                crate::privacy::cutoff(d, Utc::now()),
            )
            .await?
        }
        _ => 0,
    };
    if let Some(d) = privacy.retain_transcripts.filter(|_| !written.is_empty()) {
        strip_written(
            tx,
            inv,
            account,
            written,
            crate::privacy::cutoff(d, Utc::now()),
        )
        .await?;
    }
    Ok((deleted, old))
}
