//! From validated settings to a pipeline ready to run: the warehouse pool with its schema
//! migrated, the engine, and the streams it runs. `sync`, `backfill`, `demo`, the benchmarks and
//! the tests' harness start this way; `run` retries the migration until the warehouse answers
//! (it serves health meanwhile), so it takes the same steps one by one.

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
    warehouse.migrate().await?;
    crate::privacy::keys::at_start(
        &warehouse,
        &settings.privacy,
        &crate::sources::inventories(),
    )
    .await?;
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
