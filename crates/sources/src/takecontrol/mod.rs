//! N-able Take Control session history (sources.md §1), REST and legacy flavours: one request
//! per window (`client.rs`), JSON or XML bodies (`body.rs`) normalized into sessions with their
//! chat lines and links (`normalize.rs`, `transcript.rs`).

mod audit;
mod body;
mod client;
pub mod config;
pub mod normalize;
pub mod personal;
mod rebuild;
mod source;
pub mod store;
mod transcript;

use crate::config::SourceKind;
pub use client::{LEGACY_PATH, REST_PATH, VARS, format_in_zone};
pub use config::{OutputFormat, SOURCE, TakeControlApi, TakeControlSettings};
pub use source::TakeControl;

/// Take Control in the list of sources (`sources::SOURCES`): a day's lookback (sessions are
/// listed by start and end late).
pub const KIND: SourceKind = SourceKind::new::<TakeControlSettings>(SOURCE)
    .defaults("24h", "1d")
    .inventory(&personal::INVENTORY);
