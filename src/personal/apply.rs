//! `sessionsync privacy check` and `privacy apply` (docs/privacy.md section 2): rows written under
//! another policy than the configured one are found by their `privacy_policy`, and brought under
//! the current one in batches, each its own short transaction (the batch's session rows locked
//! for its duration only), resumable because a converted row carries the new policy.
//!
//! Only what is stricter now can be applied: a value stored in clear can be hashed or dropped, a
//! hashed one dropped; nothing hashed or dropped comes back (such rows are rewritten as the new
//! policy says when their source is read again).

use std::collections::BTreeMap;

use futures::future::try_join_all;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::privacy::fields::{Kind, Scrub};
use crate::privacy::{Class, Column, Inventory, Policies, Policy, Privacy};
use crate::warehouse::WarehouseError;

/// Sessions converted per transaction.
pub const BATCH: i64 = 2_000;

/// The policies a stored `privacy_policy` names (NULL: written before policies existed, so
/// everything kept), and the fingerprint of the key it hashed with.
pub fn parse_tag(tag: Option<&str>) -> (Policies, Option<&str>) {
    match tag {
        None => (Policies::default(), None),
        Some(t) => {
            let (letters, key) = match t.split_once(':') {
                Some((l, k)) => (l, Some(k)),
                None => (t, None),
            };
            (Policies::from_letters(letters).unwrap_or_default(), key)
        }
    }
}

/// Rows stored under another policy, per source and account: (stored policy or "none", rows).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drift {
    pub rows: BTreeMap<(String, String), Vec<(String, i64)>>,
}

impl Drift {
    pub fn total(&self) -> i64 {
        self.rows.values().flatten().map(|(_, n)| n).sum()
    }
}

/// The policy each account's rows should carry: its source entry's, or `[privacy]`'s for an
/// account no longer configured.
pub struct Expected<'a> {
    pub default: &'a Privacy,
    pub accounts: &'a [(String, String, Privacy)],
}

impl Expected<'_> {
    pub fn of(&self, source: &str, account: &str) -> &Privacy {
        self.accounts
            .iter()
            .find(|(s, a, _)| s == source && a == account)
            .map_or(self.default, |(_, _, p)| p)
    }
}

/// `privacy check`: counts, per source and account, the session rows whose policy differs.
pub async fn check(
    c: &impl tokio_postgres::GenericClient,
    expected: &Expected<'_>,
) -> Result<Drift, WarehouseError> {
    let mut drift = Drift::default();
    for inv in super::inventories() {
        let rows = c
            .query(
                &format!(
                    "SELECT account, privacy_policy, count(*) FROM {} GROUP BY 1, 2 ORDER BY 1, 2",
                    inv.sessions
                ),
                &[],
            )
            .await
            .map_err(WarehouseError::query("counting rows by privacy policy"))?;
        for r in rows {
            let (account, tag, n): (String, Option<String>, i64) = (r.get(0), r.get(1), r.get(2));
            let want = expected.of(inv.source, &account).tag();
            if !same(tag.as_deref(), &want) {
                drift
                    .rows
                    .entry((inv.source.to_string(), account))
                    .or_default()
                    .push((tag.unwrap_or_else(|| "none (before policies)".into()), n));
            }
        }
    }
    Ok(drift)
}

/// A stored tag equals the wanted one (no tag means "everything kept").
fn same(stored: Option<&str>, want: &str) -> bool {
    match stored {
        Some(s) => s == want,
        None => want == Policies::default().letters(),
    }
}

/// What `privacy apply` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Sessions converted, per source.
    pub sessions: BTreeMap<String, u64>,
    /// Child rows changed, per table.
    pub children: BTreeMap<String, u64>,
    /// Sessions whose stored data could not be made to match (a class kept now that was hashed
    /// or dropped then): their tag is updated, their values stay as strict as they are.
    pub stricter_kept: u64,
}

/// `privacy apply`: every account of every source, batch by batch, until no row differs.
pub async fn apply(
    c: &mut tokio_postgres::Client,
    expected: &Expected<'_>,
    mut progress: impl FnMut(&Applied),
) -> Result<Applied, WarehouseError> {
    let mut out = Applied::default();
    for inv in super::inventories() {
        let accounts: Vec<String> = c
            .query(
                &format!("SELECT DISTINCT account FROM {} ORDER BY 1", inv.sessions),
                &[],
            )
            .await
            .map_err(WarehouseError::query("listing accounts"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for account in accounts {
            let privacy = expected.of(inv.source, &account);
            let mut after = i64::MIN;
            while let Some(last) = batch(c, inv, &account, privacy, after, &mut out).await? {
                after = last;
                progress(&out);
            }
        }
    }
    Ok(out)
}

/// One batch of `account`'s sessions after id `after` stored under another policy, converted in
/// one transaction; the last id looked at, or `None` when there were none.
async fn batch(
    c: &mut tokio_postgres::Client,
    inv: &Inventory,
    account: &str,
    privacy: &Privacy,
    after: i64,
    out: &mut Applied,
) -> Result<Option<i64>, WarehouseError> {
    let tag = privacy.tag();
    let session_cols: Vec<&Column> = inv
        .columns
        .iter()
        .filter(|c| c.table == inv.sessions)
        .collect();
    let docs: Vec<&str> = inv.documents.iter().map(|(d, _)| *d).collect();
    let tx = c
        .transaction()
        .await
        .map_err(WarehouseError::query("starting a privacy batch"))?;
    let select = format!(
        "SELECT ctid::text, {id}::bigint, privacy_policy, {docs}{cols} FROM {s}
         WHERE account = $1 AND {id} > $2::bigint AND privacy_policy IS DISTINCT FROM $3
         ORDER BY {id} LIMIT {BATCH} FOR UPDATE",
        s = inv.sessions,
        id = inv.id_column,
        docs = docs.join(", "),
        cols = session_cols
            .iter()
            .map(|c| format!(", {}::text", c.column))
            .collect::<String>(),
    );
    let rows =
        tx.query(&select, &[&account, &after, &tag])
            .await
            .map_err(WarehouseError::query(
                "reading sessions to bring under the policy",
            ))?;
    let Some(last) = rows.last().map(|r| r.get::<_, i64>(1)) else {
        return Ok(None);
    };
    let sets: Vec<String> = std::iter::once("privacy_policy = $2".to_string())
        .chain(
            docs.iter()
                .enumerate()
                .map(|(i, d)| format!("{d} = ${}", i + 3)),
        )
        .chain(session_cols.iter().enumerate().map(|(i, c)| {
            let cast = if c.kind == Kind::Whole {
                "::text::jsonb"
            } else {
                ""
            };
            format!("{} = ${}{cast}", c.column, i + 3 + docs.len())
        }))
        .collect();
    let update = tx
        .prepare(&format!(
            "UPDATE {} SET {} WHERE ctid = $1::text::tid",
            inv.sessions,
            sets.join(", ")
        ))
        .await
        .map_err(WarehouseError::query("preparing the privacy update"))?;
    // Each session's stored policy, for its children.
    let mut since_of: BTreeMap<i64, Policies> = BTreeMap::new();
    let mut values: Vec<(String, Vec<Value>, Vec<Option<String>>)> = Vec::with_capacity(rows.len());
    for r in &rows {
        let (before, key) = parse_tag(r.get::<_, Option<&str>>(2));
        let scrub = Scrub {
            policies: privacy.policies,
            hasher: privacy.hasher(),
            since: Some(before),
        };
        let looser_now = Class::ALL
            .iter()
            .any(|c| before.of(*c) > privacy.policies.of(*c));
        let other_key = before.needs_key() && key.is_some_and(|k| !tag.ends_with(k));
        if looser_now || other_key {
            // What was stored stricter (or hashed under another key) stays as it is.
            out.stricter_kept += 1;
        }
        let mut docs_after = Vec::with_capacity(docs.len());
        for (i, (_, fields)) in inv.documents.iter().enumerate() {
            let mut d: Value = r.get(3 + i);
            scrub.document(&mut d, fields);
            docs_after.push(d);
        }
        let cols_after: Vec<Option<String>> = session_cols
            .iter()
            .enumerate()
            .map(|(i, col)| {
                let v: Option<String> = r.get(3 + docs.len() + i);
                match col.kind {
                    Kind::Whole => whole(&scrub, col.classes, v),
                    k => scrub.text(col.classes, k, v),
                }
            })
            .collect();
        since_of.insert(r.get(1), before);
        values.push((r.get(0), docs_after, cols_after));
    }
    let updates = values.iter().map(|(ctid, d, cols)| {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![ctid, &tag];
        for v in d {
            params.push(v);
        }
        for v in cols {
            params.push(v);
        }
        let update = &update;
        let tx = &tx;
        async move { tx.execute(update, &params).await }
    });
    try_join_all(updates)
        .await
        .map_err(WarehouseError::query("bringing sessions under the policy"))?;
    // Children: their personal columns, by the stored policy of their session.
    let ids: Vec<i64> = since_of.keys().copied().collect();
    let mut tables: Vec<&str> = inv
        .columns
        .iter()
        .filter(|c| c.table != inv.sessions)
        .map(|c| c.table)
        .collect();
    tables.dedup();
    for table in tables {
        let cols: Vec<&Column> = inv.columns.iter().filter(|c| c.table == table).collect();
        let key = inv
            .children
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(inv.id_column, |(_, k)| *k);
        let rows = tx
            .query(
                &format!(
                    "SELECT t.* FROM unnest($2::bigint[]) AS u(id)
                     CROSS JOIN LATERAL (SELECT t0.ctid::text, t0.{key}::bigint{} FROM {table} t0
                         WHERE t0.account = $1 AND t0.{key} = u.id OFFSET 0) AS t",
                    cols.iter()
                        .map(|c| format!(", t0.{}::text", c.column))
                        .collect::<String>()
                ),
                &[&account, &ids],
            )
            .await
            .map_err(WarehouseError::query(
                "reading child rows to bring under the policy",
            ))?;
        let update = tx
            .prepare(&format!(
                "UPDATE {table} SET {} WHERE ctid = $1::text::tid",
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} = ${}", c.column, i + 2))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await
            .map_err(WarehouseError::query(
                "preparing the privacy update of a child table",
            ))?;
        let mut changed: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for r in &rows {
            let session: i64 = r.get(1);
            let scrub = Scrub {
                policies: privacy.policies,
                hasher: privacy.hasher(),
                since: since_of.get(&session).copied(),
            };
            let before: Vec<Option<String>> = (0..cols.len()).map(|i| r.get(2 + i)).collect();
            let after: Vec<Option<String>> = cols
                .iter()
                .zip(&before)
                .map(|(c, v)| scrub.text(c.classes, c.kind, v.clone()))
                .collect();
            if after != before {
                changed.push((r.get(0), after));
            }
        }
        *out.children.entry(table.to_string()).or_default() += changed.len() as u64;
        let updates = changed.iter().map(|(ctid, vals)| {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![ctid];
            for v in vals {
                params.push(v);
            }
            let update = &update;
            let tx = &tx;
            async move { tx.execute(update, &params).await }
        });
        try_join_all(updates).await.map_err(WarehouseError::query(
            "bringing child rows under the policy",
        ))?;
    }
    tx.commit()
        .await
        .map_err(WarehouseError::query("committing a privacy batch"))?;
    *out.sessions.entry(inv.source.to_string()).or_default() += rows.len() as u64;
    Ok(Some(last))
}

/// A jsonb column of one class (Take Control's custom fields): its values hashed, or dropped.
fn whole(scrub: &Scrub<'_>, classes: &[Class], v: Option<String>) -> Option<String> {
    let text = v?;
    match scrub.effective(classes) {
        Policy::Keep => Some(text),
        Policy::Drop => None,
        Policy::Hash => {
            let mut doc: Value = serde_json::from_str(&text).ok()?;
            if let Value::Object(o) = &mut doc {
                for val in o.values_mut() {
                    if let (Some(s), Some(h)) =
                        (crate::privacy::fields::scalar_text(val), scrub.hasher)
                    {
                        *val = Value::String(h.value(Kind::Text, &s));
                    }
                }
            }
            Some(doc.to_string())
        }
    }
}
