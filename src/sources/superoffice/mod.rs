//! SuperOffice CRM chat sessions and messages (sources.md §2), in two modes:
//!
//! - `archive` (default): one window per run, `[watermark − lookback, now)`, starting at T. Each
//!   archive column takes only the operators of its restriction type (sources.md §2), so the
//!   ChatSession archive is asked two lists, merged by id: new chats to the second
//!   (`whenRequested afterTime T`, a datetime column) and changed ones by whole UTC days
//!   (`updatedDate after '<the day before T>'`, a date column). Both are ordered by
//!   `chatSessionId` with keyset paging (`chatSessionId gt LAST`; an `odata.nextLink` is followed
//!   when the server gives one) and `$select` the columns that show a change ([`LIST_COLUMNS`]).
//!   The stream keeps a fingerprint of each listed row; only rows that are new or whose columns
//!   changed are read by id, `concurrency` at a time. Chats not yet final are re-read by id at
//!   every run until they are (for [`OPEN_CHAT_AGE`]), so nothing depends on when SuperOffice
//!   bumps `updatedDate`.
//! - `for_user`: `ChatSessionsForUser` returns every session of the API user at once, with no
//!   filter. A fingerprint per session (kept in `sync_state.state`) tells which changed; only
//!   those are written and have their messages read, so an unchanged list costs one request.
//!   It is the same fingerprint the row stores as `content_hash` (the one "unchanged" check of
//!   every source); the copy in the state is there because it saves the message requests of
//!   unchanged sessions, which a check at write time would come too late for.
//!
//! Messages (`messages = true`) are read for changed sessions only, `after` the last message
//! id already stored. `SessionKey` is removed from every entity as soon as it is parsed.
//!
//! **Where requests go** (`client.rs`): on-site, to `base_url` with its ticket or bearer token;
//! SuperOffice Online (`environment`), to the host the state API names now (`tenant.rs`), with the
//! ticket of the system user flow (`system_user.rs`; the key and the signed token in
//! `signing.rs`), renewed once on a 401 and waited out while the tenant is down (sources.md §2).
//!
//! **Time zones.** Every request asks for UTC with offsets (`SO-TimeZone: UTC, includeTZOffset`),
//! and filter values are sent so that they are right in that zone. A tenant with time-zone
//! support switched off ignores the header and writes its base zone's wall clock without an
//! offset: the account's `timezone` names that zone (`sessionsync check` tells which case a
//! tenant is).

mod client;
pub mod config;
pub mod normalize;
pub mod personal;
mod read;
mod signing;
mod source;
mod store;
pub mod system_user;
mod tenant;
pub mod webhook;

pub use client::{TIMEZONE_ASKED, TIMEZONE_HEADER};
pub use config::{SOURCE, SuperOfficeAuth, SuperOfficeMode, SuperOfficeSettings};
pub use read::{
    ENTITY_PATH, FOR_USER_PATH, LIST_COLUMNS, LIST_PATH, MESSAGES_PATH, OPEN_CHAT_AGE, SuperOffice,
};
