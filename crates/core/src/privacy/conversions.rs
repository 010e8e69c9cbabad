//! Conversions of stored rows that need the hash keys, done at start (each declared by its source's
//! inventory, [`Conversion`], and recorded as pending by its migration: SuperOffice's company
//! name, migration 0018): when a field that had no class is given one, rows already labelled with a policy
//! that hashes or drops that class hold it in clear, and their labels would no longer tell the
//! truth. Each conversion walks its table once by primary key, in batches of [`BATCH`] rows, each
//! its own transaction under the conversion's lock, and is marked done at the end; a conversion
//! stopped half-way goes on at the next start (a converted value looks hashed, or is gone).

use serde_json::Value;
use tokio_postgres::Client;

use crate::privacy::fields::{Kind, looks_hashed};
use crate::privacy::{Hasher, Inventory, PrivacySettings};
use crate::warehouse::WarehouseError;

/// Rows looked at per transaction.
pub const BATCH: i64 = 5_000;

/// A field of a session table given a class after rows were stored: its column and its key in
/// `raw` are brought under each row's recorded policy once. A source declares it in its
/// inventory ([`Inventory::conversions`](super::Inventory)); its migration records `name` in
/// `conversions` as pending.
#[derive(Debug)]
pub struct Conversion {
    /// Its row in `conversions`.
    pub name: &'static str,
    /// The session table, its id column (a number) and the text column converted.
    pub table: &'static str,
    pub id_column: &'static str,
    pub column: &'static str,
    /// The key of `raw` holding the same value (matched without regard to case).
    pub raw_key: &'static str,
}

/// Runs every pending conversion the sources declare; rows changed.
pub async fn run_pending(
    c: &mut Client,
    settings: &PrivacySettings,
    inventories: &[&'static Inventory],
) -> Result<u64, WarehouseError> {
    let mut changed = 0;
    for conversion in inventories.iter().flat_map(|i| i.conversions) {
        changed += run_one(c, settings, conversion).await?;
    }
    Ok(changed)
}

async fn run_one(
    c: &mut Client,
    settings: &PrivacySettings,
    conversion: &Conversion,
) -> Result<u64, WarehouseError> {
    let Conversion {
        name,
        table,
        id_column,
        column,
        raw_key,
    } = *conversion;
    let pending = c
        .query_opt(
            "SELECT 1 FROM conversions WHERE name = $1 AND done_at IS NULL",
            &[&name],
        )
        .await
        .map_err(WarehouseError::query("reading the pending conversions"))?;
    if pending.is_none() {
        return Ok(0);
    }
    let keys: Vec<(String, Hasher)> = crate::privacy::hashers(settings)
        .into_iter()
        .map(|h| (crate::privacy::key_fingerprint(&h), h))
        .collect();
    let mut after = (String::new(), i64::MIN);
    let mut changed = 0u64;
    loop {
        let tx = c
            .transaction()
            .await
            .map_err(WarehouseError::query("starting a conversion batch"))?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.conversions')); {}",
            super::apply::ORDERED_SCANS_ONLY
        ))
        .await
        .map_err(WarehouseError::query("taking the conversion lock"))?;
        let rows = tx
            .query(
                &format!(
                    "SELECT ctid::text, account, {id_column}::bigint, privacy_policy,
                            {column}, raw
                       FROM {table}
                      WHERE (account, {id_column}) > ($1, $2::bigint)
                      ORDER BY account, {id_column} LIMIT {BATCH}"
                ),
                &[&after.0, &after.1],
            )
            .await
            .map_err(WarehouseError::query("reading rows to convert"))?;
        let Some(last) = rows.last() else {
            tx.execute(
                "UPDATE conversions SET done_at = now() WHERE name = $1 AND done_at IS NULL",
                &[&name],
            )
            .await
            .map_err(WarehouseError::query("marking a conversion done"))?;
            tx.commit()
                .await
                .map_err(WarehouseError::query("committing a conversion"))?;
            return Ok(changed);
        };
        after = (last.get(1), last.get(2));
        let mut tids = Vec::new();
        let mut names: Vec<Option<String>> = Vec::new();
        let mut raws: Vec<Value> = Vec::new();
        for r in &rows {
            let label: Option<String> = r.get(3);
            let Some(label) = label else { continue };
            let how = match label.chars().next() {
                Some('h') => {
                    let key = label.split_once(':').map(|(_, k)| k);
                    match keys.iter().find(|(fp, _)| Some(fp.as_str()) == key) {
                        Some((_, h)) => Some(h),
                        // The check at start guarantees every key in use is configured.
                        None => continue,
                    }
                }
                Some('d') => None,
                _ => continue,
            };
            let name: Option<String> = r.get(4);
            let mut raw: Value = r.get(5);
            let convert = |v: &str| {
                how.map(|h| {
                    if looks_hashed(v) {
                        v.to_string()
                    } else {
                        h.value(Kind::Text, v)
                    }
                })
            };
            let new_name = name.as_deref().and_then(convert);
            let mut raw_changed = false;
            if let Value::Object(o) = &mut raw {
                let keys_here: Vec<String> = o
                    .keys()
                    .filter(|k| k.eq_ignore_ascii_case(raw_key))
                    .cloned()
                    .collect();
                for k in keys_here {
                    match (how, o.get(&k).and_then(Value::as_str).map(str::to_string)) {
                        (None, _) => {
                            o.remove(&k);
                            raw_changed = true;
                        }
                        (Some(_), Some(v)) if !looks_hashed(&v) => {
                            o.insert(k, Value::String(convert(&v).unwrap_or_default()));
                            raw_changed = true;
                        }
                        _ => {}
                    }
                }
            }
            if new_name == name && !raw_changed {
                continue;
            }
            tids.push(r.get::<_, String>(0));
            names.push(new_name);
            raws.push(raw);
        }
        if !tids.is_empty() {
            changed += tx
                .execute(
                    &format!(
                        "UPDATE {table} t
                            SET {column} = u.name, raw = u.raw
                           FROM unnest($1::text[]::tid[], $2::text[], $3::jsonb[]) AS u(tid, name, raw)
                          WHERE t.ctid = u.tid"
                    ),
                    &[&tids, &names, &raws],
                )
                .await
                .map_err(WarehouseError::query("converting stored rows"))?;
        }
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing a conversion batch"))?;
    }
}
