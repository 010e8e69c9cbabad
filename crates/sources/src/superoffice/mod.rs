//! SuperOffice CRM chat sessions and messages (sources.md §2): the two modes of reading a window
//! are told in `source.rs`, where requests go (on-site, or SuperOffice Online's tenant host with
//! the system user flow) and the time zones they ask for in `client.rs`.

mod audit;
mod check;
mod client;
pub mod config;
pub mod normalize;
pub mod personal;
mod rebuild;
mod signing;
mod source;
pub mod store;
pub mod system_user;
mod tenant;
pub mod webhook;

use crate::config::SourceKind;
pub use audit::AUDIT_COLUMNS;
pub use client::{
    ENTITY_PATH, FOR_USER_PATH, LIST_COLUMNS, LIST_PATH, MESSAGES_PATH, TIMEZONE_ASKED,
    TIMEZONE_HEADER,
};
pub use config::{SOURCE, SuperOfficeAuth, SuperOfficeMode, SuperOfficeSettings};
pub use source::{OPEN_CHAT_AGE, SuperOffice};

/// SuperOffice in the list of sources (`sources::SOURCES`); its stream is `chat_sessions`.
pub const KIND: SourceKind = SourceKind::new::<SuperOfficeSettings>(SOURCE)
    .stream("chat_sessions")
    .inventory(&personal::INVENTORY)
    .webhooks("`webhook_secret`");
