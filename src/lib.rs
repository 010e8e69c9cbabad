//! sessionsync keeps a PostgreSQL warehouse in step with support-session systems.
//!
//! # Layout
//! The layers are crates of one workspace, so the compiler keeps them apart: nothing below
//! reaches up, and only the sources crate names a vendor.
//! - **`sessionsync-core`** (`crates/core`): [`model`] (stream key, session id, window,
//!   outcome), [`secret`], [`settings`], [`config`] (the file, each source's
//!   [`config::SourceKind`] and settings), [`privacy`] (policies, the inventory types each
//!   source fills in, erasures, and the warehouse administration of `erase`, `privacy`,
//!   `retention`), [`engine`] (the seam: [`engine::Source`], [`engine::SourceContext`] whose
//!   `personal` returns the [`engine::Vetted`] proof every row requires; windows, claims, one
//!   transaction per window with its watermark, the scheduler, the audit, `renormalize`),
//!   [`http`], [`warehouse`] (pool, migrations of `sql/`), [`telemetry`] and [`events`],
//!   [`out`], [`shutdown`]. It depends on no source.
//! - **`sessionsync-sources`** (`crates/sources`), re-exported as [`sources`]: one folder per
//!   system (`takecontrol/`, `superoffice/`, `mluvii/`), each with the same files, the list
//!   [`sources::SOURCES`] and the glue that builds configured accounts into streams.
//! - **this crate**, the binary: [`cli`] (the command line; `main.rs` only calls it),
//!   [`startup`] (settings → prepared warehouse → streams, for the one-shot commands),
//!   [`daemon`] (the daemon assembled once: server, webhooks, migration, scheduler, storage
//!   limits, one shutdown order), [`server`] (`/metrics`, `/healthz`, `/readyz`), [`webhooks`]
//!   (the listener, its inbox and worker; the per-vendor part is each source's `webhook.rs`),
//!   [`report`] (run lines, exit codes, live bars). With the default feature `demo` only:
//!   `demo`, `pgctl` (a private PostgreSQL for the demo) and `simulate`, over the simulators.
//! - **`sessionsync-sim`** (`sim/`): the simulators of the three APIs, written from the
//!   contract alone; a dependency of the `demo` feature and of the tests, never of production.

// The core's modules and the sources, under the paths the binary, the tests and the examples
// use (`sessionsync::engine::…`, `sessionsync::sources::…`).
pub use sessionsync_core::{
    config, engine, events, http, model, out, outln, privacy, secret, settings, shutdown,
    telemetry, warehouse,
};
pub use sessionsync_sources as sources;

pub mod cli;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod pgctl;
pub mod report;
pub mod server;
#[cfg(feature = "demo")]
pub mod simulate;
pub mod startup;
pub mod webhooks;
