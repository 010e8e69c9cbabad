//! mluvii sessions with their operators, routing history and state durations (sources.md §3).
//! How a window is read, and what the stream remembers so that a session is read until its
//! values are final, is told in `source.rs`; the requests are in `client.rs`.

mod audit;
mod client;
pub mod config;
pub mod durations;
pub mod list;
pub mod normalize;
pub mod personal;
mod rebuild;
mod source;
pub mod store;
pub mod webhook;

use crate::config::SourceKind;
pub use client::{AuthError, DETAIL_PATH, LIST_PATH, ROUTING_PATH, TOKEN_PATH};
pub use config::{MluviiSettings, SOURCE};
pub use source::Mluvii;

/// mluvii in the list of sources (`sources::SOURCES`). Windows are sized by what they hold
/// (paged lists): `window` is only the widest, a year unless given.
pub const KIND: SourceKind = SourceKind::new::<MluviiSettings>(SOURCE)
    .defaults("1h", "365d")
    .inventory(&personal::INVENTORY)
    .webhooks("`webhook_user` and `webhook_password`");
