//! Personal data in SuperOffice's records and tables (docs/privacy.md, generated from this
//! list): the class of every personal field, next to the source's field list (`normalize.rs`).

use crate::privacy::conversions::Conversion;
use crate::privacy::{Class::*, Column, Field, Inventory, Kind, Selector};

const CUSTOMER: &[crate::privacy::Class] = &[CustomerIdentity];

/// The fields of a ChatSessionEntity (`raw`, `rejected_records.payload`).
pub const ENTITY: &[Field] = &[
    Field {
        path: "customeralias",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Name],
        feeds: "superoffice_chat_sessions.customer_alias",
    },
    Field {
        path: "customername",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Name],
        feeds: "superoffice_chat_sessions.customer_name",
    },
    Field {
        path: "customeremail",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Email],
        feeds: "superoffice_chat_sessions.customer_email",
    },
    Field {
        path: "customerphone",
        classes: CUSTOMER,
        kind: Kind::Phone,
        selectors: &[Selector::Phone],
        feeds: "superoffice_chat_sessions.customer_phone",
    },
    Field {
        path: "customercompanyname",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_sessions.customer_company_name",
    },
    Field {
        path: "customerhost",
        classes: &[Network],
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_sessions.customer_host",
    },
    Field {
        path: "firstmessage",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_sessions.first_message",
    },
    Field {
        path: "lastmessage",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_sessions.last_message",
    },
    Field {
        path: "user.name",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (the agent's name)",
    },
    Field {
        path: "transferto.name",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (the agent's name)",
    },
];

/// The fields of a ChatMessage (`rejected_records.payload`; messages keep no raw).
pub const MESSAGE: &[Field] = &[
    Field {
        path: "message",
        classes: &[Transcripts],
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_messages.message",
    },
    Field {
        path: "author",
        classes: AUTHOR,
        kind: Kind::Text,
        selectors: &[],
        feeds: "superoffice_chat_messages.author",
    },
];

/// A message's author is the customer or an agent.
pub const AUTHOR: &[crate::privacy::Class] = &[CustomerIdentity, AgentIdentity];

/// The class of a message's author by its `Type`: `ToCustomer` is an agent writing, `ToUser`
/// the customer; both for anything else.
pub fn author_class(kind: Option<&str>) -> &'static [crate::privacy::Class] {
    match kind.map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("ToCustomer") => &[AgentIdentity],
        Some(t) if t.eq_ignore_ascii_case("ToUser") => &[CustomerIdentity],
        _ => AUTHOR,
    }
}

pub static INVENTORY: Inventory = Inventory {
    source: "superoffice",
    stream: "chat_sessions",
    sessions: "superoffice_chat_sessions",
    id_column: "chat_session_id",
    start_column: "requested_at",
    documents: &[("raw", ENTITY)],
    columns: &[
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_alias",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[Selector::Name],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_name",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[Selector::Name],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_email",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[Selector::Email],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_phone",
            classes: CUSTOMER,
            kind: Kind::Phone,
            selectors: &[Selector::Phone],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_company_name",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "customer_host",
            classes: &[Network],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "first_message",
            classes: &[FreeText],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "superoffice_chat_sessions",
            column: "last_message",
            classes: &[FreeText],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "superoffice_chat_messages",
            column: "author",
            classes: AUTHOR,
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "superoffice_chat_messages",
            column: "message",
            classes: &[Transcripts],
            kind: Kind::Text,
            selectors: &[],
        },
    ],
    non_personal: &[
        "superoffice_chat_sessions.account",
        "superoffice_chat_sessions.status",
        "superoffice_chat_sessions.flags",
        "superoffice_chat_sessions.content_hash",
        "superoffice_chat_sessions.privacy_policy",
        "superoffice_chat_sessions.closed_by",
        "superoffice_chat_topics.account",
        "superoffice_chat_topics.name",
        "superoffice_chat_messages.account",
        "superoffice_chat_messages.type",
        "superoffice_chat_messages.special_type",
        "superoffice_chat_messages.special_param",
    ],
    lookups: &[],
    set_lookups: &[],
    classed_by: &[("superoffice_chat_messages", "author", "type", author_class)],
    children: &[("superoffice_chat_messages", "chat_session_id")],
    transcript_keys: &[],
    transcripts: &[("superoffice_chat_messages", "chat_session_id")],
    // `CustomerCompanyName` was made `customer_identity` by migration 0018.
    conversions: &[Conversion {
        name: "superoffice_company_name",
        table: "superoffice_chat_sessions",
        id_column: "chat_session_id",
        column: "customer_company_name",
        raw_key: "CustomerCompanyName",
    }],
};
