//! From validated settings to a pipeline ready to run: the warehouse pool, [`prepare`]d (its
//! schema migrated, the hash keys checked), the engine, and the streams it runs. `sync`,
//! `backfill`, `demo`, the benchmarks and the tests' harness start with [`start`]; the daemon
//! (`run`) serves health first and repeats [`prepare`] until the warehouse answers, then builds
//! its engine the same way.

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::{Engine, Stream};
use crate::telemetry::Metrics;
use crate::warehouse::{Warehouse, WarehouseError};

/// A migrated warehouse, the engine over it, and the streams to run.
pub struct Pipeline {
    pub metrics: Arc<Metrics>,
    pub warehouse: Warehouse,
    pub engine: Arc<Engine>,
    pub sources: Vec<Arc<Stream>>,
}

/// The pool, the schema migrated, and the engine, for `sources` (built with `metrics`, e.g. by
/// [`crate::sources::build`]).
pub async fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    sources: Vec<Arc<Stream>>,
) -> Result<Pipeline, WarehouseError> {
    let warehouse = Warehouse::new(&settings.warehouse)?;
    prepare(&warehouse, settings).await?;
    let engine = Arc::new(Engine::new(warehouse.clone(), metrics.clone()));
    Ok(Pipeline {
        metrics,
        warehouse,
        engine,
        sources,
    })
}

/// Every enabled stream of `settings`, over a migrated warehouse.
pub async fn start_all(settings: &Settings) -> Result<Pipeline, WarehouseError> {
    let metrics = Arc::new(Metrics::new());
    let sources = crate::sources::build(settings, &metrics, None, None);
    start(settings, metrics, sources).await
}

/// What must hold before any stream runs: the schema migrated (the migrations applied now are
/// returned), and the configured hash keys checked against the warehouse (stored rows and
/// erasures converted once after an upgrade). An error that [`WarehouseError::is_config`] is
/// the configuration's to fix; any other may pass when the warehouse answers again.
pub async fn prepare(
    warehouse: &Warehouse,
    settings: &Settings,
) -> Result<Vec<&'static str>, WarehouseError> {
    let applied = warehouse.migrate().await?;
    crate::privacy::keys::at_start(warehouse, &settings.privacy, &crate::sources::inventories())
        .await?;
    let conn = warehouse.conn().await?;
    for due in crate::warehouse::renormalize_due(&**conn).await? {
        tracing::warn!(source = %due.source, "renormalize due: {}", due.describe());
    }
    Ok(applied)
}
