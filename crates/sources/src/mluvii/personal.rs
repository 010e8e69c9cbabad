//! Personal data in mluvii's records and tables (docs/privacy.md, generated from this list):
//! the class of every personal field, next to the source's field list (`normalize.rs`).

use crate::privacy::{Class::*, Column, Field, Inventory, Kind, Selector};

const CUSTOMER: &[crate::privacy::Class] = &[CustomerIdentity];

/// The fields of a SessionModel (`raw`, `rejected_records.payload`).
pub const SESSION: &[Field] = &[
    Field {
        path: "phonecallbacknumber",
        classes: CUSTOMER,
        kind: Kind::Phone,
        selectors: &[Selector::Phone],
        feeds: "mluvii_sessions.phone_callback_number",
    },
    Field {
        path: "directcallnumber",
        classes: CUSTOMER,
        kind: Kind::Phone,
        selectors: &[Selector::Phone],
        feeds: "mluvii_sessions.direct_call_number",
    },
    Field {
        path: "guest.identity",
        classes: CUSTOMER,
        kind: Kind::Text,
        selectors: &[Selector::Email, Selector::Name],
        feeds: "raw only (guest.identity)",
    },
    Field {
        path: "guest.callparams",
        classes: CUSTOMER,
        kind: Kind::Params,
        selectors: &[Selector::Phone, Selector::Email],
        feeds: "raw only (guest.callParams)",
    },
    Field {
        path: "guest.ipaddress",
        classes: &[Network],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (guest.ipAddress)",
    },
    Field {
        path: "url",
        classes: &[Network],
        kind: Kind::UrlQuery,
        selectors: &[],
        feeds: "mluvii_sessions.url (its query string)",
    },
    Field {
        path: "guestfeedbacktext",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (guestFeedbackText)",
    },
    Field {
        path: "operators[].note",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "mluvii_session_operators.note",
    },
    Field {
        path: "reviews[].note",
        classes: &[FreeText],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (reviewers' notes)",
    },
    Field {
        path: "activities[].text",
        classes: &[Transcripts],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (the chat's texts)",
    },
    Field {
        path: "activities[].file.downloadurl",
        classes: &[Transcripts],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (files sent in the chat)",
    },
    Field {
        path: "recordings[].downloadurl",
        classes: &[Transcripts],
        kind: Kind::Text,
        selectors: &[],
        feeds: "raw only (recordings)",
    },
    Field {
        path: "operators[].username",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "mluvii_session_operators.user_name",
    },
    Field {
        path: "operators[].firstname",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "mluvii_session_operators.first_name",
    },
    Field {
        path: "operators[].lastname",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "mluvii_session_operators.last_name",
    },
];

/// The fields of a routing history (`routing_raw`, an array of RoutingTimeLine).
pub const ROUTING: &[Field] = &[
    Field {
        path: "[].phonenumber",
        classes: CUSTOMER,
        kind: Kind::Phone,
        selectors: &[Selector::Phone],
        feeds: "mluvii_routing_events.phone_number",
    },
    Field {
        path: "[].operator.firstname",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "routing_raw only (operator names)",
    },
    Field {
        path: "[].operator.lastname",
        classes: &[AgentIdentity],
        kind: Kind::Text,
        selectors: &[],
        feeds: "routing_raw only (operator names)",
    },
];

pub static INVENTORY: Inventory = Inventory {
    source: "mluvii",
    stream: "sessions",
    sessions: "mluvii_sessions",
    id_column: "session_id",
    start_column: "created_at",
    documents: &[("raw", SESSION), ("routing_raw", ROUTING)],
    columns: &[
        Column {
            table: "mluvii_sessions",
            column: "phone_callback_number",
            classes: CUSTOMER,
            kind: Kind::Phone,
            selectors: &[Selector::Phone],
        },
        Column {
            table: "mluvii_sessions",
            column: "direct_call_number",
            classes: CUSTOMER,
            kind: Kind::Phone,
            selectors: &[Selector::Phone],
        },
        Column {
            table: "mluvii_sessions",
            column: "url",
            classes: &[Network],
            kind: Kind::UrlQuery,
            selectors: &[],
        },
        Column {
            table: "mluvii_routing_events",
            column: "phone_number",
            classes: CUSTOMER,
            kind: Kind::Phone,
            selectors: &[Selector::Phone],
        },
        Column {
            table: "mluvii_session_operators",
            column: "user_name",
            classes: &[AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "mluvii_session_operators",
            column: "first_name",
            classes: &[AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "mluvii_session_operators",
            column: "last_name",
            classes: &[AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
        },
        Column {
            table: "mluvii_session_operators",
            column: "note",
            classes: &[FreeText],
            kind: Kind::Text,
            selectors: &[],
        },
    ],
    non_personal: &[
        "mluvii_sessions.account",
        "mluvii_sessions.channel",
        "mluvii_sessions.source",
        "mluvii_sessions.status",
        "mluvii_sessions.widget",
        "mluvii_sessions.tags",
        "mluvii_sessions.content_hash",
        "mluvii_sessions.privacy_policy",
        "mluvii_sessions.guest_feedback_scale",
        "mluvii_sessions.termination_reason",
        "mluvii_session_operators.account",
        "mluvii_routing_events.account",
        "mluvii_routing_events.activity_type",
        "mluvii_routing_events.group_name",
        "mluvii_session_durations.account",
    ],
    lookups: &[
        (Selector::Email, "raw -> 'guest' ->> 'identity'"),
        (Selector::Name, "raw -> 'guest' ->> 'identity'"),
    ],
    set_lookups: &[
        (Selector::Phone, "sessionsync_call_params(raw)"),
        (Selector::Email, "sessionsync_call_params(raw)"),
    ],
    classed_by: &[],
    children: &[
        ("mluvii_session_operators", "session_id"),
        ("mluvii_routing_events", "session_id"),
        ("mluvii_session_durations", "session_id"),
    ],
    transcript_keys: &["activities", "recordings"],
    transcripts: &[],
    conversions: &[],
};
