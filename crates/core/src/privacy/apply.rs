//! `sessionsync privacy check` and `privacy apply` (docs/privacy.md section 2): rows written under
//! another policy than the configured one are found by their `privacy_policy`, and brought under
//! the current one in batches, each its own short transaction that locks nothing before it
//! writes: each row is updated by its address, so a row a concurrent sync rewrote meanwhile is
//! left to that sync (whose write carries its own policy). Resumable, because a converted row
//! carries the new policy.
//!
//! Only what is stricter now can be applied: a value stored in clear can be hashed or dropped, a
//! hashed one dropped (under the same key); nothing hashed or dropped comes back. **A label tells
//! the truth**: a row is labelled with what its values now are, class by class, never with a
//! policy it was not brought under; a row hashed under another key is left as it is. Such rows
//! are counted (`Applied::need_reread`): only reading them again from the source (`backfill`)
//! brings them under the policy, and the command says so.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::privacy::fields::{Kind, Scrub};
use crate::privacy::{Class, Column, Inventory, Policies, Policy, Privacy};
use crate::warehouse::WarehouseError;

/// Sessions converted per transaction.
pub const BATCH: i64 = 5_000;

/// For the transaction of a batch that walks an index in order: no plan that reads the rest of
/// the table (and sorts it) is allowed.
pub const ORDERED_SCANS_ONLY: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off";

/// The statement that reads a batch of `inv`'s sessions stored under another policy (for the
/// plan test): `$1` account, `$2` the last id of the previous batch, `$3` the policy, `$4` the
/// last id of the part of the account this worker walks.
pub fn batch_statement(inv: &Inventory) -> String {
    let docs: Vec<&str> = inv.documents.iter().map(|(d, _)| *d).collect();
    let cols: String = inv
        .columns
        .iter()
        .filter(|c| c.table == inv.sessions)
        .map(|c| format!(", {}::text", c.column))
        .collect();
    format!(
        "SELECT ctid::text, {id}::bigint, privacy_policy, {docs}{cols} FROM {s}
         WHERE account = $1 AND {id} > $2::bigint AND {id} <= $4::bigint
           AND privacy_policy IS DISTINCT FROM $3
         ORDER BY {id} LIMIT {BATCH}",
        s = inv.sessions,
        id = inv.id_column,
        docs = docs.join(", "),
    )
}

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
pub struct Expected {
    pub default: Privacy,
    pub accounts: Vec<(String, String, Privacy)>,
    /// Where the sources hold personal data (`sources::inventories()`).
    pub inventories: Vec<&'static Inventory>,
}

impl Expected {
    /// `[privacy]` with each account's overrides (`(source, account, overrides)`), over the
    /// sources' `inventories` (`sources::expected_privacy` builds it from the settings).
    pub fn new(
        settings: &crate::privacy::PrivacySettings,
        accounts: impl IntoIterator<Item = (String, String, crate::privacy::Overrides)>,
        inventories: Vec<&'static Inventory>,
    ) -> Expected {
        let erasures = std::sync::Arc::new(crate::privacy::Erasures::new(settings));
        let default = Privacy::new(
            settings,
            &crate::privacy::Overrides::default(),
            erasures.clone(),
        );
        let accounts = accounts
            .into_iter()
            .map(|(source, account, overrides)| {
                let p = Privacy::new(settings, &overrides, erasures.clone());
                (source, account, p)
            })
            .collect();
        Expected {
            default,
            accounts,
            inventories,
        }
    }

    pub fn of(&self, source: &str, account: &str) -> &Privacy {
        self.accounts
            .iter()
            .find(|(s, a, _)| s == source && a == account)
            .map_or(&self.default, |(_, _, p)| p)
    }
}

/// `privacy check`: counts, per source and account, the session rows whose policy differs.
pub async fn check(
    c: &impl tokio_postgres::GenericClient,
    expected: &Expected,
) -> Result<Drift, WarehouseError> {
    let mut drift = Drift::default();
    for inv in expected.inventories.iter().copied() {
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
    /// Sessions that could not be brought fully under the policy (a class kept now that was
    /// hashed or dropped then, or hashed under another key), per (source, account): labelled
    /// with what they hold, left for a re-read (`backfill`).
    pub need_reread: BTreeMap<(String, String), u64>,
}

impl Applied {
    pub fn need_reread_total(&self) -> u64 {
        self.need_reread.values().sum()
    }
}

/// What `stored` (with the key fingerprint it hashed under) can become under `want` (hashing
/// under `key`) from its stored values alone: class by class, the stricter of the two; `None`
/// when hashes under another key would stay beside new ones (nothing can be converted).
pub fn convertible(
    stored: Policies,
    stored_key: Option<&str>,
    want: Policies,
    key: Option<&str>,
) -> Option<Policies> {
    let mut result = want;
    for c in Class::ALL {
        if stored.of(c) > want.of(c) {
            result.set(c, stored.of(c));
        }
    }
    let other_key = stored.needs_key() && stored_key != key;
    let keeps_old_hashes = Class::ALL
        .iter()
        .any(|c| stored.of(*c) == Policy::Hash && result.of(*c) == Policy::Hash);
    if other_key && (keeps_old_hashes || result != stored && result.needs_key()) {
        return None;
    }
    Some(result)
}

/// `privacy apply`: every account of every source, batch by batch, until no row differs.
pub async fn apply(
    mut clients: Vec<&mut tokio_postgres::Client>,
    expected: &Expected,
    progress: impl FnMut(&Applied) + Send,
) -> Result<Applied, WarehouseError> {
    assert!(!clients.is_empty(), "apply needs a connection");
    let shared = std::sync::Mutex::new((Applied::default(), progress));
    for inv in expected.inventories.iter().copied() {
        let accounts = clients[0]
            .query(
                &format!(
                    "SELECT account, min({id})::bigint, max({id})::bigint FROM {s} GROUP BY 1 ORDER BY 1",
                    s = inv.sessions,
                    id = inv.id_column
                ),
                &[],
            )
            .await
            .map_err(WarehouseError::query("listing accounts"))?;
        for r in accounts {
            let (account, lo, hi): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
            let privacy = expected.of(inv.source, &account);
            // Each connection walks its own part of the account's ids (a backend each: the
            // machine's cores work at once).
            let n = clients.len() as i64;
            let step = ((hi - lo) / n).max(1);
            let workers = clients.iter_mut().enumerate().map(|(i, c)| {
                let from = lo + step * i as i64 - 1;
                let to = if i as i64 == n - 1 {
                    hi
                } else {
                    lo + step * (i as i64 + 1) - 1
                };
                let (account, shared) = (&account, &shared);
                async move {
                    let mut after = from;
                    while after < to {
                        let mut mine = Applied::default();
                        match batch(c, inv, account, privacy, (after, to), &mut mine).await? {
                            Some(last) => {
                                after = last;
                                let mut g = shared.lock().expect("progress");
                                let (total, progress) = &mut *g;
                                total.add(&mine);
                                progress(total);
                            }
                            None => break,
                        }
                    }
                    Ok::<_, WarehouseError>(())
                }
            });
            futures::future::try_join_all(workers).await?;
        }
    }
    Ok(shared.into_inner().expect("progress").0)
}

impl Applied {
    fn add(&mut self, o: &Applied) {
        for (k, v) in &o.sessions {
            *self.sessions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.children {
            *self.children.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.need_reread {
            *self.need_reread.entry(k.clone()).or_default() += v;
        }
    }
}

/// One batch of `account`'s sessions after id `after` stored under another policy, converted in
/// one transaction; the last id looked at, or `None` when there were none.
async fn batch(
    c: &mut tokio_postgres::Client,
    inv: &Inventory,
    account: &str,
    privacy: &Privacy,
    (after, to): (i64, i64),
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
    // The batch walks the primary key in order from `after`: with statistics that say the
    // table is small (autovacuum off), the planner would rather fetch every remaining row and
    // sort it, once per batch. Ordered index scans are the only plans left to it here.
    tx.batch_execute(ORDERED_SCANS_ONLY)
        .await
        .map_err(WarehouseError::query("planning a privacy batch"))?;
    let select = batch_statement(inv);
    let rows = tx
        .query(&select, &[&account, &after, &tag, &to])
        .await
        .map_err(WarehouseError::query(
            "reading sessions to bring under the policy",
        ))?;
    let Some(last) = rows.last().map(|r| r.get::<_, i64>(1)) else {
        return Ok(None);
    };
    // Each converted session's stored policy, for its children.
    let mut since_of: BTreeMap<i64, Policies> = BTreeMap::new();
    let mut values: Vec<(String, Vec<Value>, Vec<Option<String>>)> = Vec::with_capacity(rows.len());
    let mut labels: Vec<String> = Vec::with_capacity(rows.len());
    let key_id = privacy.key_id();
    for r in &rows {
        let (before, key) = parse_tag(r.get::<_, Option<&str>>(2));
        let Some(result) = convertible(before, key, privacy.policies, key_id) else {
            // Hashed under another key: left as it is, labelled as it is.
            *out.need_reread
                .entry((inv.source.to_string(), account.to_string()))
                .or_default() += 1;
            continue;
        };
        if result != privacy.policies {
            *out.need_reread
                .entry((inv.source.to_string(), account.to_string()))
                .or_default() += 1;
            if result == before && key == key_id.filter(|_| before.needs_key()) {
                // Nothing it holds can change: its label already tells the truth.
                continue;
            }
        }
        labels.push(crate::privacy::tag(&result, key_id));
        let scrub = Scrub {
            policies: privacy.policies,
            hasher: privacy.hasher(),
            since: Some(before),
        };
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
    for label in labels.iter().collect::<std::collections::BTreeSet<_>>() {
        crate::privacy::warehouse::record_key(&tx, label).await?;
    }
    if values.is_empty() {
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing a privacy batch"))?;
        return Ok(Some(last));
    }
    // One statement for the batch: each row found by its address (a parameterized TID scan),
    // labelled with what it now holds.
    let mut sets = vec!["privacy_policy = u.label".to_string()];
    let mut unnest = vec!["$2::text[]::tid[]".to_string(), "$1::text[]".to_string()];
    let mut names = vec!["tid".to_string(), "label".to_string()];
    for (i, d) in docs.iter().enumerate() {
        sets.push(format!("{d} = u.d{i}"));
        unnest.push(format!("${}::jsonb[]", i + 3));
        names.push(format!("d{i}"));
    }
    for (i, c) in session_cols.iter().enumerate() {
        let cast = if c.kind == Kind::Whole { "::jsonb" } else { "" };
        sets.push(format!("{} = u.c{i}{cast}", c.column));
        unnest.push(format!("${}::text[]", i + 3 + docs.len()));
        names.push(format!("c{i}"));
    }
    let sql = format!(
        "UPDATE {} t SET {} FROM unnest({}) AS u({}) WHERE t.ctid = u.tid",
        inv.sessions,
        sets.join(", "),
        unnest.join(", "),
        names.join(", ")
    );
    let tids: Vec<&str> = values.iter().map(|v| v.0.as_str()).collect();
    let doc_cols: Vec<Vec<&Value>> = (0..docs.len())
        .map(|i| values.iter().map(|v| &v.1[i]).collect())
        .collect();
    let text_cols: Vec<Vec<Option<&str>>> = (0..session_cols.len())
        .map(|i| values.iter().map(|v| v.2[i].as_deref()).collect())
        .collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&labels, &tids];
    for d in &doc_cols {
        params.push(d);
    }
    for c in &text_cols {
        params.push(c);
    }
    tx.execute(&sql, &params)
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
        // A column whose class depends on another (a chat line's author on who wrote it).
        let by = inv.classed_by.iter().find(|b| b.0 == table);
        let key = inv.session_column(table);
        let rows = tx
            .query(
                &format!(
                    "SELECT t.* FROM unnest($2::bigint[]) AS u(id)
                     CROSS JOIN LATERAL (SELECT t0.ctid::text, t0.{key}::bigint, {}::text{} FROM {table} t0
                         WHERE t0.account = $1 AND t0.{key} = u.id OFFSET 0) AS t",
                    by.map_or("NULL".to_string(), |b| format!("t0.{}", b.2)),
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
        let mut changed: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for r in &rows {
            let session: i64 = r.get(1);
            let scrub = Scrub {
                policies: privacy.policies,
                hasher: privacy.hasher(),
                since: since_of.get(&session).copied(),
            };
            let kind_of_row: Option<String> = r.get(2);
            let before: Vec<Option<String>> = (0..cols.len()).map(|i| r.get(3 + i)).collect();
            let after: Vec<Option<String>> = cols
                .iter()
                .zip(&before)
                .map(|(c, v)| {
                    let classes = match by {
                        Some((_, col, _, f)) if *col == c.column => f(kind_of_row.as_deref()),
                        _ => c.classes,
                    };
                    scrub.text(classes, c.kind, v.clone())
                })
                .collect();
            if after != before {
                changed.push((r.get(0), after));
            }
        }
        *out.children.entry(table.to_string()).or_default() += changed.len() as u64;
        if !changed.is_empty() {
            let sets: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = u.c{i}", c.column))
                .collect();
            let unnest: Vec<String> = std::iter::once("$1::text[]::tid[]".to_string())
                .chain((0..cols.len()).map(|i| format!("${}::text[]", i + 2)))
                .collect();
            let names: Vec<String> = std::iter::once("tid".to_string())
                .chain((0..cols.len()).map(|i| format!("c{i}")))
                .collect();
            let sql = format!(
                "UPDATE {table} t SET {} FROM unnest({}) AS u({}) WHERE t.ctid = u.tid",
                sets.join(", "),
                unnest.join(", "),
                names.join(", ")
            );
            let tids: Vec<&str> = changed.iter().map(|c| c.0.as_str()).collect();
            let vals: Vec<Vec<Option<&str>>> = (0..cols.len())
                .map(|i| changed.iter().map(|c| c.1[i].as_deref()).collect())
                .collect();
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tids];
            for v in &vals {
                params.push(v);
            }
            tx.execute(&sql, &params)
                .await
                .map_err(WarehouseError::query(
                    "bringing child rows under the policy",
                ))?;
        }
    }
    tx.commit()
        .await
        .map_err(WarehouseError::query("committing a privacy batch"))?;
    *out.sessions.entry(inv.source.to_string()).or_default() += values.len() as u64;
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

#[cfg(test)]
mod label_tests {
    use super::*;

    fn p(letters: &str) -> Policies {
        Policies::from_letters(letters).unwrap()
    }

    #[test]
    fn only_what_is_stored_can_be_converted_and_the_label_says_what_it_holds() {
        // Kept → hashed or dropped, hashed → dropped: converted fully.
        assert_eq!(
            convertible(p("kkkkk"), None, p("hdkkk"), Some("K1")),
            Some(p("hdkkk"))
        );
        assert_eq!(
            convertible(p("hkkkk"), Some("K1"), p("dkkkk"), Some("K1")),
            Some(p("dkkkk"))
        );
        // Hashed, and `keep` now: it stays hashed (and labelled so), the rest converts.
        assert_eq!(
            convertible(p("hkkkk"), Some("K1"), p("kdkkk"), Some("K1")),
            Some(p("hdkkk"))
        );
        assert_eq!(
            convertible(p("hkkkk"), Some("K1"), p("kkkkk"), Some("K1")),
            Some(p("hkkkk"))
        );
        // The key gone altogether: left as it is.
        assert_eq!(convertible(p("hkkkk"), Some("K1"), p("kkkkk"), None), None);
        // Hashed under another key: hashes of two keys would sit side by side: nothing.
        assert_eq!(
            convertible(p("hkkkk"), Some("K0"), p("hkkkk"), Some("K1")),
            None
        );
        assert_eq!(
            convertible(p("hkkkk"), Some("K0"), p("hhkkk"), Some("K1")),
            None
        );
        // ... unless what was hashed is now dropped.
        assert_eq!(
            convertible(p("hkkkk"), Some("K0"), p("dkkkk"), Some("K1")),
            Some(p("dkkkk"))
        );
    }
}
