//! The hash keys a warehouse depends on (docs/privacy.md section 2, key rotation): the keys its
//! erasures were derived under and its rows were hashed under, checked against the configured
//! ones at start; and the conversion of erasures recorded before migration 0017.

use tokio_postgres::GenericClient;

use crate::warehouse::WarehouseError;

/// How much depends on the key with fingerprint `key_id`: (erasures derived under it, session rows
/// hashed under it). Reads the label of every session row: only for a key the configuration no
/// longer has.
pub async fn dependents(
    c: &impl GenericClient,
    inventories: &[&'static crate::privacy::Inventory],
    key_id: &str,
) -> Result<(i64, i64), WarehouseError> {
    let erasures: i64 = c
        .query_one(
            "SELECT count(*) FROM erasures WHERE key_id = $1",
            &[&key_id],
        )
        .await
        .map_err(WarehouseError::query("counting the erasures of a key"))?
        .get(0);
    let mut rows = 0;
    for inv in inventories {
        rows += c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE privacy_policy LIKE '%:' || $1",
                    inv.sessions
                ),
                &[&key_id],
            )
            .await
            .map_err(WarehouseError::query("counting the rows of a key"))?
            .get::<_, i64>(0);
    }
    Ok((erasures, rows))
}

/// Refuses a configuration that dropped a key the warehouse still depends on (a rotation whose
/// old key left `previous_hash_keys` too early): erasures derived under it would no longer hold,
/// and values hashed under it no longer be found. The keys in use are read from `hash_keys` and
/// `erasures` (small tables); only a key the configuration does not have is counted, and one
/// nothing depends on any more is forgotten.
pub async fn check_keys(
    c: &impl GenericClient,
    settings: &crate::privacy::PrivacySettings,
    inventories: &[&'static crate::privacy::Inventory],
) -> Result<(), WarehouseError> {
    let known: Vec<String> = crate::privacy::hashers(settings)
        .iter()
        .map(crate::privacy::key_fingerprint)
        .collect();
    let used: Vec<String> = c
        .query(
            "SELECT key_id FROM hash_keys
             UNION SELECT key_id FROM erasures WHERE key_id IS NOT NULL",
            &[],
        )
        .await
        .map_err(WarehouseError::query("reading the keys in use"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for fingerprint in used.into_iter().filter(|k| !known.contains(k)) {
        let (erasures, rows) = dependents(c, inventories, &fingerprint).await?;
        if erasures == 0 && rows == 0 {
            c.execute("DELETE FROM hash_keys WHERE key_id = $1", &[&fingerprint])
                .await
                .map_err(WarehouseError::query("forgetting an unused key"))?;
            continue;
        }
        return Err(WarehouseError::KeyStillUsed {
            fingerprint,
            erasures,
            rows,
        });
    }
    Ok(())
}

/// At start, with the configured keys: [`check_keys`], the pending conversions of stored rows
/// (`conversions`), then [`separate_selectors`](super::warehouse::separate_selectors) with the current key (each said in the log when
/// it changed anything).
pub async fn at_start(
    warehouse: &crate::warehouse::Warehouse,
    settings: &crate::privacy::PrivacySettings,
    inventories: &[&'static crate::privacy::Inventory],
) -> Result<(), WarehouseError> {
    let mut conn = warehouse.conn().await?;
    check_keys(&**conn, settings, inventories).await?;
    let converted = super::conversions::run_pending(&mut conn, settings, inventories).await?;
    if converted > 0 {
        tracing::info!(
            rows = converted,
            "stored rows brought under their labels (a field given a class after they were stored)"
        );
    }
    let Some(key) = &settings.hash_key else {
        return Ok(());
    };
    let h = crate::privacy::Hasher::new(key.expose().as_bytes());
    let n = crate::privacy::warehouse::separate_selectors(&mut conn, &h).await?;
    if n > 0 {
        tracing::info!(
            erasures = n,
            "erasures recorded before migration 0017 now have a selector hash of their own (the erasure list is no join key)"
        );
    }
    Ok(())
}
