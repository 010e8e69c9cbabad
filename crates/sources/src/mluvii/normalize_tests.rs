//! Tests of `normalize.rs` (a child module of it, kept in its own file).
use super::*;

/// A record through the seam, as a source's read passes it.
fn vetted() -> Vetted {
    crate::engine::SourceContext::offline("mluvii", "a", crate::privacy::Privacy::keep_all())
        .personal("1", false, &mut [])
        .vetted
}
use crate::mluvii::list::is_whole_session;

#[test]
fn closed_and_blacklisted_are_final_and_whole_rows_are_told_apart() {
    for (status, fin) in [
        ("CLOSED", true),
        ("BLACKLISTED", true),
        ("blacklisted", true),
        ("ACW", false),
        ("SOMETHING_NEW", false),
    ] {
        assert_eq!(is_final_status(status), fin, "{status}");
    }
    let whole = json!({"id": 1, "created": "2024-01-05T10:00:00+01:00", "status": "CLOSED", "operators": []});
    assert!(is_whole_session(&whole));
    for abridged in [
        json!({"id": 1, "created": "2024-01-05T10:00:00+01:00", "status": "CLOSED"}),
        json!({"id": 1, "created": "2024-01-05T10:00:00+01:00", "status": "CLOSED", "operators": null}),
        json!({"id": 1, "status": "CLOSED", "operators": []}),
        json!([1]),
    ] {
        assert!(!is_whole_session(&abridged), "{abridged}");
    }
}
use serde_json::json;

#[test]
fn a_full_session_normalizes() {
    let detail = json!({
        "id": 42, "companyId": "3", "departmentId": 9, "channel": "Chat", "source": "Default",
        "status": "CLOSED", "created": "2024-03-01T10:00:00+01:00",
        "guestJoined": "2024-03-01T09:00:30Z", "started": "2024-03-01T09:00:27.5Z",
        "ended": "2024-03-01T09:05:30Z", "waited": "PT25S", "length": "PT5M",
        "guestFeedbackStars": 4, "tags": [{"id": 1, "name": "vip"}],
        "operators": [{"userId": 7, "userName": "ann", "firstName": "Ann", "lastName": "Lee",
            "joined": "2024-03-01T09:00:27.5Z", "left": "2024-03-01T09:05:30Z",
            "concluded": "2024-03-01T09:06:30Z"}]
    });
    let routing = json!([
        {"routingRequestId": 1, "timestamp": "2024-03-01T09:00:05Z", "activityType": "RoutingRequestCreated"},
        {"routingRequestId": 1, "timestamp": "2024-03-01T09:00:20Z", "activityType": "AssignedToOperator",
         "group": {"id": 2, "name": "Sales"}, "operator": {"userId": 7}},
        {"routingRequestId": 1, "timestamp": "2024-03-01T09:00:27.5Z", "activityType": "AcceptedByOperator",
         "operator": {"userId": "7"}},
        {"timestamp": "2024-03-01T09:00:28Z", "activityType": "TeleportedToMars"}
    ]);
    let Normalized::Session(s, nulled) = normalize(detail, routing, vetted(), "x") else {
        panic!("rejected")
    };
    assert!(nulled.is_empty());
    assert_eq!(s.company_id, Some(3));
    assert_eq!(s.durations.created, Some(5.0));
    assert_eq!(s.durations.in_queue, Some(15.0));
    assert_eq!(s.durations.waiting, Some(7.5));
    assert_eq!(s.durations.bcw, Some(2.5));
    assert_eq!(s.durations.acw, Some(60.0));
    assert_eq!(s.operators[0].queue_seconds, Some(7.5));
    assert_eq!(s.events[1].group_name.as_deref(), Some("Sales"));
    assert_eq!(
        s.events[3].activity_type.as_deref(),
        Some("TeleportedToMars")
    );
    assert!(s.is_final());
}

#[test]
fn the_fields_bi_asks_for_are_read_and_an_unexpected_shape_is_null_not_a_rejection() {
    let session = |extra: serde_json::Value| {
        let mut d = json!({
            "id": 44, "status": "CLOSED", "created": "2024-03-01T10:00:00Z",
            "guestFeedbackStars": 9,
            "operators": [{"userId": 7, "note": "Called back about the invoice"}]
        });
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        match normalize(d, json!([]), vetted(), "x") {
            Normalized::Session(s, nulled) => (s, nulled),
            Normalized::Rejected(r) => panic!("rejected: {}", r.reason),
        }
    };
    let (s, nulled) = session(json!({
        "guestFeedbackScale": "NPS", "terminationReason": "GuestLeft",
        "guestLeft": true, "chatbot": false
    }));
    assert!(nulled.is_empty());
    assert_eq!(s.guest_feedback_scale.as_deref(), Some("nps"));
    assert_eq!(s.termination_reason.as_deref(), Some("GuestLeft"));
    assert_eq!((s.guest_left, s.chatbot), (Some(true), Some(false)));
    assert_eq!(
        s.operators[0].note.as_deref(),
        Some("Called back about the invoice")
    );
    let (s, _) = session(json!({"guestFeedbackScale": "Likert", "chatbotInvolved": 1}));
    assert_eq!(s.guest_feedback_scale.as_deref(), Some("likert"));
    assert_eq!(s.chatbot, Some(true));
    // Absent: unknown. Another shape than assumed: unknown too, counted, the session kept.
    let (s, nulled) = session(json!({}));
    assert_eq!(
        (s.guest_left, s.chatbot, s.guest_feedback_scale),
        (None, None, None)
    );
    assert!(nulled.is_empty());
    let (s, nulled) = session(json!({
        "guestLeft": "2024-03-01T10:05:00Z", "chatbot": {"id": 3, "name": "Bob"}
    }));
    assert_eq!((s.guest_left, s.chatbot), (None, None));
    let reasons: Vec<&str> = nulled.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("unreadable_value: ")),
        "{reasons:?}"
    );
}

#[test]
fn not_set_dates_and_empty_durations_of_states_that_never_happened_are_null_and_counted() {
    let detail = json!({
        "id": 43, "status": "CLOSED", "created": "2024-03-01T10:00:00+01:00",
        "guestJoined": "0001-01-01T00:00:00", "started": "0001-01-01T00:00:00+00:00",
        "ended": "2024-03-01T09:01:00Z", "waited": "PT0S", "length": "PT0S",
        "operators": [{"userId": 7, "joined": "0001-01-01T00:00:00", "left": null}]
    });
    let routing = json!([
        {"timestamp": "9999-12-31T23:59:59.9999999", "activityType": "RoutingRequestCreated"}
    ]);
    let Normalized::Session(s, nulled) = normalize(detail, routing, vetted(), "x") else {
        panic!("rejected")
    };
    assert_eq!((s.guest_joined_at, s.started_at), (None, None));
    assert_eq!(s.operators[0].joined_at, None);
    assert_eq!(s.events[0].occurred_at, None);
    assert_eq!((s.durations.active, s.durations.pbx_wait), (None, None));
    let mut reasons: Vec<&str> = nulled
        .iter()
        .map(|r| r.reason.split(':').next().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "empty_duration",
            "empty_duration",
            "null_date",
            "null_date",
            "null_date",
            "null_date"
        ]
    );
    // A session that started and was joined keeps a real 0 s.
    let detail = json!({"id": 44, "created": "2024-03-01T09:00:00Z",
        "guestJoined": "2024-03-01T09:00:00Z", "started": "2024-03-01T09:00:00Z",
        "waited": "PT0S", "length": "PT0S"});
    let Normalized::Session(s, nulled) = normalize(detail, json!([]), vetted(), "x") else {
        panic!("rejected")
    };
    assert_eq!(
        (s.durations.active, s.durations.pbx_wait),
        (Some(0.0), Some(0.0))
    );
    assert!(nulled.is_empty());
}

#[test]
fn bad_values_set_the_record_aside_with_a_reason() {
    let r = normalize(
        json!({"id": 1, "length": "five minutes"}),
        json!([]),
        vetted(),
        "x",
    );
    let Normalized::Rejected(r) = r else { panic!() };
    assert_eq!(r.record_key, "1");
    assert!(r.reason.starts_with("invalid_length:"), "{}", r.reason);
    let Normalized::Rejected(r) =
        normalize(json!({"channel": "Chat"}), json!([]), vetted(), "pos#3")
    else {
        panic!()
    };
    assert_eq!(r.record_key, "pos#3");
}

#[test]
fn negative_length_is_nulled_and_counted() {
    let Normalized::Session(s, nulled) = normalize(
        json!({"id": 1, "length": "-PT3S"}),
        json!(null),
        vetted(),
        "x",
    ) else {
        panic!()
    };
    assert_eq!(s.length_seconds, None);
    assert_eq!(nulled.len(), 1);
    assert!(nulled[0].reason.starts_with("negative_duration"));
}
