//! The hash keys a warehouse depends on (docs/privacy.md section 2, key rotation): the keys its
//! erasures were derived under and its rows were hashed under, checked against the configured
//! ones at start; and the conversion of erasures recorded before migration 0017.

use tokio_postgres::GenericClient;

use crate::warehouse::WarehouseError;

/// The keys the warehouse depends on: (key fingerprint, erasures derived under it, session rows
/// labelled with it), from `erasures.key_id` and the rows' `privacy_policy` labels. It reads the
/// label of every session row (once, at start; `privacy check` reads as much).
pub async fn keys_in_use(
    c: &impl GenericClient,
) -> Result<std::collections::BTreeMap<String, (i64, i64)>, WarehouseError> {
    let mut out: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for r in c
        .query(
            "SELECT key_id, count(*) FROM erasures WHERE key_id IS NOT NULL GROUP BY 1",
            &[],
        )
        .await
        .map_err(WarehouseError::query("reading the keys of the erasures"))?
    {
        out.entry(r.get(0)).or_default().0 += r.get::<_, i64>(1);
    }
    for inv in super::inventories() {
        for r in c
            .query(
                &format!(
                    "SELECT split_part(privacy_policy, ':', 2), count(*) FROM {}
                     WHERE privacy_policy LIKE '%:%' GROUP BY 1",
                    inv.sessions
                ),
                &[],
            )
            .await
            .map_err(WarehouseError::query("reading the keys of the stored rows"))?
        {
            out.entry(r.get(0)).or_default().1 += r.get::<_, i64>(1);
        }
    }
    Ok(out)
}

/// Refuses a configuration that dropped a key the warehouse still depends on (a rotation whose
/// old key left `previous_hash_keys` too early): erasures derived under it would no longer hold,
/// and values hashed under it no longer be found.
pub async fn check_keys(
    c: &impl GenericClient,
    settings: &crate::privacy::PrivacySettings,
) -> Result<(), WarehouseError> {
    let known: Vec<String> = crate::privacy::hashers(settings)
        .iter()
        .map(crate::privacy::key_fingerprint)
        .collect();
    for (fingerprint, (erasures, rows)) in keys_in_use(c).await? {
        if !known.contains(&fingerprint) {
            return Err(WarehouseError::KeyStillUsed {
                fingerprint,
                erasures,
                rows,
            });
        }
    }
    Ok(())
}

/// At start, with the configured keys: [`check_keys`], then [`separate_selectors`] with the
/// current key (said in the log when it converted anything).
pub async fn convert_erasures(
    warehouse: &crate::warehouse::Warehouse,
    settings: &crate::privacy::PrivacySettings,
) -> Result<(), WarehouseError> {
    let mut conn = warehouse.conn().await?;
    check_keys(&**conn, settings).await?;
    let Some(key) = &settings.hash_key else {
        return Ok(());
    };
    let h = crate::privacy::Hasher::new(key.expose().as_bytes());
    let n = crate::warehouse::privacy::separate_selectors(&mut conn, &h).await?;
    if n > 0 {
        tracing::info!(
            erasures = n,
            "erasures recorded before migration 0017 now have a selector hash of their own (the erasure list is no join key)"
        );
    }
    Ok(())
}
