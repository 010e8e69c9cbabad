//! mluvii sessions with their operators, routing history and state durations (sources.md §3).
//!
//! A window `[start, end)` lists sessions by `created` (asked one second wider on each side,
//! then cut exactly, so the API's unknown inclusiveness cannot lose or double a boundary
//! session), page by page. **The list rows are SessionModels** (mluvii's own sample client reads
//! them as such): a row that carries what the normalizer needs is the session, and only its
//! routing history is read; a row that lacks it (an abridged list) costs a read of the detail
//! too, counted as a fallback read. A listed session already stored final with the same row
//! costs no request. Requests go `concurrency` at a time under the account's rate ceiling.
//!
//! **Windows sized by what they hold** ([`Windowing::Paged`](crate::engine::Windowing)): the
//! first window is as wide as `window` (a year unless set), so an empty stretch costs nothing;
//! one that holds more than [`TARGET_RECORDS`](crate::engine::TARGET_RECORDS) sessions is
//! split, and memory stays bounded by that, not by the range.
//!
//! **Final values.** A session keeps changing after it ends: ACW lasts until every operator
//! concluded. The stream remembers, in `sync_state.state`, the ids of sessions it wrote that
//! were not yet final (`open`), and re-polls them by id in the first window of every run until
//! they are CLOSED or BLACKLISTED (or have been waited for longer than `max_open_age`). It also
//! remembers the final sessions within the lookback (`closed`, with the fingerprint of their
//! list row in `listed`), so the lookback re-lists them without reading them again. Both sets
//! commit in the same transaction as the rows.

mod auth;
pub mod config;
pub mod durations;
pub mod normalize;
pub mod personal;
mod read;
mod source;
pub mod store;
pub mod webhook;

pub use auth::{AuthError, TOKEN_PATH};
pub use config::{MluviiSettings, SOURCE};
pub use read::{DETAIL_PATH, LIST_PATH, Mluvii, ROUTING_PATH};
