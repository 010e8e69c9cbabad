//! Personal data in Take Control's records and tables (docs/privacy.md, generated from this
//! list): the class of every personal field, next to the source's field list (`normalize.rs`).

use crate::privacy::{Class::*, Column, Field, Inventory, Kind, Selector};

const CUSTOMER: &[crate::privacy::Class] = &[CustomerIdentity];
/// A transcript mixes what both sides wrote, under their names.
const TRANSCRIPT: &[crate::privacy::Class] = &[Transcripts, CustomerIdentity, AgentIdentity];
/// A chat line's author is the customer or a technician.
const AUTHOR: &[crate::privacy::Class] = &[CustomerIdentity, AgentIdentity];

/// The fields of a history record (`raw`, `rejected_records.payload`); keys as the API writes
/// them, compared without case.
pub const RECORD: &[Field] = &[
    Field {
        path: "customer_name",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Name],
        feeds: "takecontrol_sessions.customer_name",
    },
    Field {
        path: "customer_email",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Email],
        feeds: "takecontrol_sessions.customer_email",
    },
    Field {
        path: "customer_number",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.customer_number",
    },
    Field {
        path: "computer_name",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.computer_name",
    },
    Field {
        path: "custom_field_value",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.custom_fields (the values)",
    },
    Field {
        path: "computer_domain",
        classes: &[Network],
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.computer_domain",
    },
    Field {
        path: "problem_description",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.problem_description",
    },
    Field {
        path: "notes",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.notes",
    },
    Field {
        path: "tech_username",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.tech_username",
    },
    Field {
        path: "tech_name",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "takecontrol_sessions.tech_name",
    },
    Field {
        path: "chat_info",
        classes: TRANSCRIPT,
        kind: Kind::Whole,
        selectors: &[],
        feeds: "takecontrol_chat_messages (author, message)",
    },
    Field {
        path: "video_links",
        classes: &[Transcripts],
        kind: Kind::Whole,
        selectors: &[],
        feeds: "takecontrol_video_links.url",
    },
    Field {
        path: "_malformed_xml",
        classes: &[
            CustomerIdentity,
            Network,
            FreeText,
            Transcripts,
            AgentIdentity,
        ],
        kind: Kind::Whole,
        selectors: &[],
        feeds: "rejected_records.payload (the text of a record that is not XML)",
    },
];

/// A chat line's text (`takecontrol_chat_messages.message`).
pub const MESSAGE_TEXT: &[crate::privacy::Class] = &[Transcripts];

/// The class of a chat line's author (docs/privacy.md section 1): a technician's name when a
/// technician wrote it (`type` tech), the customer's otherwise; both when the type is missing.
pub fn author_class(author_type: Option<&str>) -> &'static [crate::privacy::Class] {
    match author_type.map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("tech") || t.eq_ignore_ascii_case("technician") => {
            &[AgentIdentity]
        }
        Some(t) if t.eq_ignore_ascii_case("customer") => &[CustomerIdentity],
        _ => AUTHOR,
    }
}

pub static INVENTORY: Inventory = Inventory {
    source: "takecontrol",
    stream: "sessions",
    sessions: "takecontrol_sessions",
    id_column: "session_id",
    start_column: "started_at",
    documents: &[("raw", RECORD)],
    columns: &[
        Column {
            table: "takecontrol_sessions",
            column: "customer_name",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[Selector::Name],
        },
        Column {
            table: "takecontrol_sessions",
            column: "customer_email",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[Selector::Email],
        },
        Column {
            table: "takecontrol_sessions",
            column: "customer_number",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "computer_name",
            classes: CUSTOMER,
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "custom_fields",
            classes: CUSTOMER,
            kind: Kind::Whole,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "computer_domain",
            classes: &[Network],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "problem_description",
            classes: &[FreeText],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "notes",
            classes: &[FreeText],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "tech_username",
            classes: &[AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_sessions",
            column: "tech_name",
            classes: &[AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_chat_messages",
            column: "author",
            classes: AUTHOR,
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_chat_messages",
            column: "message",
            classes: &[Transcripts],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "takecontrol_video_links",
            column: "url",
            classes: &[Transcripts],
            kind: Kind::Text,
            selectors: &[],
        },
    ],
    non_personal: &[
        "takecontrol_sessions.account",
        "takecontrol_sessions.computer_os",
        "takecontrol_sessions.content_hash",
        "takecontrol_sessions.privacy_policy",
        "takecontrol_chat_messages.account",
        "takecontrol_chat_messages.author_type",
        "takecontrol_video_links.account",
    ],
    lookups: &[],
    set_lookups: &[],
    classed_by: &[(
        "takecontrol_chat_messages",
        "author",
        "author_type",
        author_class,
    )],
    children: &[
        ("takecontrol_chat_messages", "session_id"),
        ("takecontrol_video_links", "session_id"),
    ],
    transcript_keys: &["chat_info", "CHAT_INFO", "video_links", "VIDEO_LINKS"],
    transcripts: &[
        ("takecontrol_chat_messages", "session_id"),
        ("takecontrol_video_links", "session_id"),
    ],
    conversions: &[],
};
