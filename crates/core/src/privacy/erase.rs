//! `sessionsync erase` (docs/privacy.md section 3): every session of every source and account
//! that matches a selector, on values stored in clear or hashed, is erased in one transaction
//! under the exclusive erasure lock, and the selectors are recorded as keyed hashes
//! (`privacy::warehouse` holds the SQL every write shares).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::model::SessionId;
use crate::privacy::fields::{self, Hasher, Kind, Selector};
use crate::privacy::warehouse::{LOCK_KEY, erase_sessions, record};
use crate::privacy::{Inventory, PrivacySettings};
use crate::warehouse::WarehouseError;

/// One selector of `sessionsync erase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A value matched on the columns of this selector (normalized first).
    Value(Selector, String),
    /// `SOURCE/ACCOUNT/ID`.
    Session {
        source: String,
        account: String,
        id: SessionId,
    },
}

impl Target {
    /// `SOURCE/ACCOUNT/ID`, as `--session` takes it.
    pub fn session(
        s: &str,
        inventories: &[&'static crate::privacy::Inventory],
    ) -> Result<Target, EraseError> {
        let parts: Vec<&str> = s.splitn(3, '/').collect();
        // An example with a source this build has.
        let example = inventories.first().map_or("source", |i| i.source);
        match parts.as_slice() {
            [source, account, id] if !source.is_empty() && !account.is_empty() => {
                let id = id.parse().map_err(|_| EraseError::Usage(format!(
                    "--session `{s}`: the id `{id}` is not a number; write SOURCE/ACCOUNT/ID, e.g. {example}/cust1/195"
                )))?;
                if !inventories.iter().any(|i| i.source == *source) {
                    return Err(EraseError::Usage(format!(
                        "--session `{s}`: unknown source `{source}`; the sources are {}",
                        inventories
                            .iter()
                            .map(|i| i.source)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Ok(Target::Session {
                    source: source.to_string(),
                    account: account.to_string(),
                    id,
                })
            }
            _ => Err(EraseError::Usage(format!(
                "--session `{s}`: write SOURCE/ACCOUNT/ID, e.g. {example}/cust1/195"
            ))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Value(s, _) => s.name(),
            Target::Session { .. } => "session",
        }
    }

    /// The keyed hash recorded in `erasures` (never the value).
    fn hash(&self, h: &Hasher) -> String {
        match self {
            Target::Value(s, v) => h.selector(&fields::normalize(s.kind(), v)),
            Target::Session {
                source,
                account,
                id,
            } => h.selector(&crate::privacy::session_selector(
                source,
                account,
                &id.to_string(),
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "erase needs [privacy] hash_key (at least 32 bytes), even when every class is \"keep\": the erasure is remembered as keyed hashes of its selectors, never in clear. Set it (for example hash_key = \"${{SESSIONSYNC_HASH_KEY}}\") and run erase again"
    )]
    NoKey,
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// What an erase found and did.
#[derive(Debug, Default)]
pub struct Erased {
    /// Sessions matched, per source.
    pub sessions: BTreeMap<String, u64>,
    /// Rows changed (or, with `--dry-run`, to change) per table.
    pub tables: BTreeMap<String, u64>,
    pub dry_run: bool,
}

impl Erased {
    pub fn total_sessions(&self) -> u64 {
        self.sessions.values().sum()
    }
}

/// `sessionsync erase`: every session of every source and account that matches one of
/// `targets` (on values stored in clear or hashed) is erased, in one transaction, and the
/// selectors are recorded.
pub async fn erase(
    c: &mut tokio_postgres::Client,
    settings: &PrivacySettings,
    inventories: &[&'static crate::privacy::Inventory],
    targets: &[Target],
    dry_run: bool,
    reason: Option<&str>,
) -> Result<Erased, EraseError> {
    let key = settings.hash_key.as_ref().ok_or(EraseError::NoKey)?;
    let h = Hasher::new(key.expose().as_bytes());
    let key_id = crate::privacy::key_fingerprint(&h);
    // Values hashed under a previous key are found too (key rotation).
    let all_keys = crate::privacy::hashers(settings);
    super::keys::check_keys(&*c, settings, inventories).await?;
    let tx = c
        .transaction()
        .await
        .map_err(WarehouseError::query("starting the erase transaction"))?;
    // Waits for the writes under way; later ones see this erasure and read their records again.
    tx.execute(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"), &[])
        .await
        .map_err(WarehouseError::query("taking the erasure lock"))?;
    let mut out = Erased {
        dry_run,
        ..Erased::default()
    };
    let mut per_target: Vec<i64> = vec![0; targets.len()];
    for inv in inventories {
        let mut matched: BTreeMap<String, Vec<SessionId>> = BTreeMap::new();
        for (ti, t) in targets.iter().enumerate() {
            let found = find(&tx, inv, t, &all_keys).await?;
            per_target[ti] += found.len() as i64;
            for (account, id) in found {
                matched.entry(account).or_default().push(id);
            }
        }
        for (account, mut ids) in matched {
            ids.sort_unstable();
            ids.dedup();
            *out.sessions.entry(inv.source.to_string()).or_default() += ids.len() as u64;
            for (table, n) in erase_sessions(&tx, inv, &account, &ids, dry_run).await? {
                *out.tables.entry(table).or_default() += n;
            }
            if !dry_run {
                for id in &ids {
                    let selector = h.selector(&crate::privacy::session_selector(
                        inv.source,
                        &account,
                        &id.to_string(),
                    ));
                    record(&tx, "session", (&selector, &key_id), 1, reason).await?;
                }
            }
        }
    }
    if dry_run {
        return Ok(out);
    }
    for (t, n) in targets.iter().zip(per_target) {
        record(&tx, t.kind(), (&t.hash(&h), &key_id), n, reason).await?;
    }
    tx.commit()
        .await
        .map_err(WarehouseError::query("committing the erasure"))?;
    Ok(out)
}

/// The sessions (account, id) of `inv` that `t` matches.
async fn find(
    c: &impl GenericClient,
    inv: &Inventory,
    t: &Target,
    keys: &[Hasher],
) -> Result<Vec<(String, SessionId)>, WarehouseError> {
    let mut out = Vec::new();
    match t {
        Target::Session {
            source,
            account,
            id,
        } => {
            if source != inv.source {
                return Ok(out);
            }
            let n = c
                .query(
                    &format!(
                        "SELECT 1 FROM {} WHERE account = $1 AND {} = $2::bigint",
                        inv.sessions, inv.id_column
                    ),
                    &[account, id],
                )
                .await
                .map_err(WarehouseError::query("finding a session to erase"))?;
            if !n.is_empty() {
                out.push((account.clone(), *id));
            }
        }
        Target::Value(selector, value) => {
            for (sql, kind) in probes(inv, *selector) {
                let norm = fields::normalize(kind, value);
                if norm.is_empty() {
                    continue;
                }
                for h in keys {
                    let hashed = h.hex(&norm);
                    let rows = c
                        .query(&sql, &[&norm, &hashed])
                        .await
                        .map_err(WarehouseError::query("finding sessions to erase"))?;
                    out.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
                }
            }
        }
    }
    // A value stored in clear matches under every key.
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The statements that find the sessions of `inv` a `selector` matches (taking `$1` the
/// normalized value and `$2` its hash), each through the hash index of its column's normalized
/// expression (migration 0014), with the normalization each applies.
pub fn probes(inv: &Inventory, selector: Selector) -> Vec<(String, Kind)> {
    let mut exprs: Vec<(&str, String, Kind)> = inv
        .columns
        .iter()
        .filter(|c| c.selectors.contains(&selector))
        .map(|c| (c.table, c.column.to_string(), c.kind))
        .collect();
    for (s, expr) in inv.lookups {
        if *s == selector {
            exprs.push((inv.sessions, format!("({expr})"), Kind::Text));
        }
    }
    let sets = inv
        .set_lookups
        .iter()
        .filter(|(s, _)| *s == selector)
        .map(|(_, expr)| {
            (
                format!(
                    "SELECT DISTINCT account, {id}::bigint FROM {s} WHERE {expr} && ARRAY[$1::text, $2::text]",
                    id = inv.id_column,
                    s = inv.sessions
                ),
                selector.kind(),
            )
        })
        .collect::<Vec<_>>();
    exprs
        .into_iter()
        .map(|(table, expr, kind)| {
            let f = if kind == Kind::Phone {
                "sessionsync_norm_phone"
            } else {
                "sessionsync_norm_text"
            };
            let id = inv.session_column(table);
            (
                format!(
                    "SELECT DISTINCT account, {id}::bigint FROM {table} WHERE {f}({expr}) = $1::text OR {f}({expr}) = $2::text"
                ),
                kind,
            )
        })
        .chain(sets)
        .collect()
}
