//! The state durations of seed 002 (sources.md §3), written once as pure functions.
//!
//! Every result is in seconds. A state the session never went through is `None`; a result
//! that comes out negative is `None` too and named in [`Durations::negative`], so that the
//! caller counts it (`reason="negative_duration"`). BCW is the seed's "only if positive": a
//! non-positive BCW is `None` and not counted, since the seed expects it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub const ROUTING_REQUEST_CREATED: &str = "RoutingRequestCreated";
pub const ASSIGNED_TO_OPERATOR: &str = "AssignedToOperator";
pub const ACCEPTED_BY_OPERATOR: &str = "AcceptedByOperator";

/// One routingHistory entry, as far as the formulas need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub activity_type: Option<&'a str>,
    pub at: Option<DateTime<Utc>>,
    pub operator_user_id: Option<i64>,
}

/// One entry of `operators`, as far as the formulas need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatorTimes {
    pub user_id: i64,
    pub left: Option<DateTime<Utc>>,
    pub concluded: Option<DateTime<Utc>>,
}

/// What the formulas read from one session.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    pub created: Option<DateTime<Utc>>,
    pub guest_joined: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    /// `length`, already read from its ISO 8601 form.
    pub length: Option<f64>,
    /// `waited`, already read from its ISO 8601 form.
    pub waited: Option<f64>,
    /// `source` (Campaign sessions have no ring time).
    pub source: Option<&'a str>,
    pub operators: Vec<OperatorTimes>,
    /// In routingHistory order.
    pub events: Vec<Event<'a>>,
}

/// The session's durations (`mluvii_session_durations`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    pub created: Option<f64>,
    pub in_queue: Option<f64>,
    pub waiting: Option<f64>,
    pub bcw: Option<f64>,
    pub active: Option<f64>,
    pub acw: Option<f64>,
    pub ring: Option<f64>,
    pub pbx_wait: Option<f64>,
    /// Per operator `userId`: (queue, ACW).
    pub operators: BTreeMap<i64, (Option<f64>, Option<f64>)>,
    /// The names of the results that came out negative and were nulled.
    pub negative: Vec<String>,
}

/// `later − earlier` in seconds, exact to the microsecond.
pub fn seconds_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    let d = later - earlier;
    match d.num_microseconds() {
        Some(us) => us as f64 / 1e6,
        None => d.num_milliseconds() as f64 / 1e3,
    }
}

fn first_of<'e>(events: &'e [Event<'_>], activity: &str) -> Option<&'e Event<'e>> {
    events.iter().find(|e| {
        e.activity_type
            .is_some_and(|t| t.eq_ignore_ascii_case(activity))
    })
}

fn first_time(events: &[Event<'_>], activity: &str) -> Option<DateTime<Utc>> {
    first_of(events, activity).and_then(|e| e.at)
}

impl Durations {
    pub fn compute(i: &Inputs<'_>) -> Durations {
        let mut d = Durations::default();
        let rrc = first_time(&i.events, ROUTING_REQUEST_CREATED);
        let assigned = first_time(&i.events, ASSIGNED_TO_OPERATOR);
        let accepted = first_time(&i.events, ACCEPTED_BY_OPERATOR);
        d.created = d.diff("created", i.created, rrc);
        d.in_queue = d.diff("in_queue", rrc, assigned);
        d.waiting = d.diff("waiting", assigned, accepted);
        d.bcw = match (i.started, i.guest_joined) {
            (Some(a), Some(b)) => Some(seconds_between(a, b)).filter(|s| *s > 0.0),
            _ => None,
        };
        d.active = d.nonneg("active", i.length);
        d.acw = d.session_acw(&i.operators);
        let campaign = i
            .source
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("Campaign"));
        d.ring = if campaign {
            None
        } else {
            d.diff("ring", i.created, i.guest_joined)
        };
        d.pbx_wait = d.nonneg("pbx_wait", i.waited);
        for op in &i.operators {
            let first_assigned = i
                .events
                .iter()
                .find(|e| {
                    e.operator_user_id == Some(op.user_id)
                        && e.activity_type
                            .is_some_and(|t| t.eq_ignore_ascii_case(ASSIGNED_TO_OPERATOR))
                })
                .and_then(|e| e.at);
            let queue = d.diff(
                &format!("operator {} queue", op.user_id),
                first_assigned,
                accepted,
            );
            let acw = d.diff(
                &format!("operator {} acw", op.user_id),
                op.left,
                op.concluded,
            );
            d.operators.insert(op.user_id, (queue, acw));
        }
        d
    }

    /// `later − earlier`; `None` when either is missing or the result is negative (recorded).
    fn diff(
        &mut self,
        name: &str,
        earlier: Option<DateTime<Utc>>,
        later: Option<DateTime<Utc>>,
    ) -> Option<f64> {
        let s = seconds_between(earlier?, later?);
        self.nonneg(name, Some(s))
    }

    fn nonneg(&mut self, name: &str, v: Option<f64>) -> Option<f64> {
        match v {
            Some(s) if s < 0.0 => {
                self.negative.push(name.to_string());
                None
            }
            other => other,
        }
    }

    /// max(concluded) − max(left). While any operator who left has not concluded, the session
    /// is still in ACW and the result is `None` (it arrives at a later sync).
    fn session_acw(&mut self, ops: &[OperatorTimes]) -> Option<f64> {
        if ops
            .iter()
            .any(|o| o.left.is_some() && o.concluded.is_none())
        {
            return None;
        }
        let concluded = ops.iter().filter_map(|o| o.concluded).max();
        let left = ops.iter().filter_map(|o| o.left).max();
        self.diff("acw", left, concluded)
    }
}

/// Reads an ISO 8601 duration (`PT1M23.5S`, `PT0S`, `P1DT2H`, `P2W`, `-PT5S`) into seconds,
/// exactly (the decimal fraction is summed as an integer count of nanoseconds). Years and
/// months have no fixed length and are refused. For leniency, .NET's `[-][d.]hh:mm:ss[.fffffff]`
/// and a plain number of seconds are read too.
pub fn parse_iso_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let bad = |why: &str| format!("`{t}` is not an ISO 8601 duration ({why})");
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(n) = t.parse::<f64>() {
        return if n.is_finite() {
            Ok(n)
        } else {
            Err(bad("not finite"))
        };
    }
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let nanos = if let Some(body) = rest.strip_prefix(['P', 'p']) {
        iso_nanos(body).map_err(|w| bad(&w))?
    } else if rest.contains(':') {
        clock_nanos(rest).map_err(|w| bad(&w))?
    } else {
        return Err(bad("it does not start with P"));
    };
    let secs = nanos as f64 / 1e9;
    Ok(if negative { -secs } else { secs })
}

/// A decimal number (`,` or `.` as separator) as nanoseconds times `unit` seconds.
fn decimal_nanos(num: &str, unit_secs: i128) -> Result<i128, String> {
    let num = num.replace(',', ".");
    let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || int.len() > 12
    {
        return Err(format!("`{num}` is not a number"));
    }
    let whole: i128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "number too large")?
    };
    let mut frac_nanos: i128 = 0;
    let mut scale: i128 = 100_000_000;
    for c in frac.chars().take(9) {
        frac_nanos += i128::from(c as u8 - b'0') * scale;
        scale /= 10;
    }
    Ok((whole * 1_000_000_000 + frac_nanos) * unit_secs)
}

fn iso_nanos(body: &str) -> Result<i128, String> {
    let mut total: i128 = 0;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in body.chars() {
        match c.to_ascii_uppercase() {
            'T' if !in_time && num.is_empty() => in_time = true,
            d if d.is_ascii_digit() || d == '.' || d == ',' => num.push(d),
            unit => {
                let secs: i128 = match (in_time, unit) {
                    (false, 'W') => 7 * 86_400,
                    (false, 'D') => 86_400,
                    (true, 'H') => 3_600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    (false, 'Y') | (false, 'M') => {
                        return Err("years and months have no fixed length".into());
                    }
                    _ => return Err(format!("unexpected `{c}`")),
                };
                if num.is_empty() {
                    return Err(format!("no number before `{c}`"));
                }
                total += decimal_nanos(&num, secs)?;
                num.clear();
                any = true;
            }
        }
    }
    if !num.is_empty() {
        return Err("a number without a unit".into());
    }
    if !any {
        return Err("no components".into());
    }
    Ok(total)
}

fn clock_nanos(s: &str) -> Result<i128, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err("expected hh:mm:ss".into());
    }
    let (days, hours) = match parts[0].split_once('.') {
        Some((d, h)) => (decimal_nanos(d, 86_400)?, decimal_nanos(h, 3_600)?),
        None => (0, decimal_nanos(parts[0], 3_600)?),
    };
    Ok(days + hours + decimal_nanos(parts[1], 60)? + decimal_nanos(parts[2], 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn ev(kind: &str, at: i64, op: Option<i64>) -> Event<'_> {
        Event {
            activity_type: Some(kind),
            at: Some(t(at)),
            operator_user_id: op,
        }
    }

    #[test]
    fn iso_durations_are_exact() {
        assert_eq!(parse_iso_duration("PT1M23.5S"), Ok(83.5));
        assert_eq!(parse_iso_duration("PT0S"), Ok(0.0));
        assert_eq!(parse_iso_duration("P1DT2H3M4S"), Ok(93_784.0));
        assert_eq!(parse_iso_duration("P2W"), Ok(1_209_600.0));
        assert_eq!(parse_iso_duration("PT0.1S"), Ok(0.1));
        assert_eq!(parse_iso_duration("PT1.0000001S"), Ok(1.0000001));
        assert_eq!(parse_iso_duration("-PT5S"), Ok(-5.0));
        assert_eq!(parse_iso_duration("pt2m"), Ok(120.0));
        assert_eq!(parse_iso_duration("00:01:23.5000000"), Ok(83.5));
        assert_eq!(parse_iso_duration("1.02:00:00"), Ok(93_600.0));
        assert_eq!(parse_iso_duration("12.25"), Ok(12.25));
        for bad in [
            "",
            "P",
            "PT",
            "P1Y",
            "P1M",
            "PT5",
            "5 minutes",
            "PTxS",
            "P1H",
        ] {
            assert!(parse_iso_duration(bad).is_err(), "{bad}");
        }
    }

    /// A chat answered by one operator, then ACW.
    #[test]
    fn every_formula_on_a_full_session() {
        let events = vec![
            ev(ROUTING_REQUEST_CREATED, 5, None),
            ev("EnteredGroupQueue", 6, None),
            ev(ASSIGNED_TO_OPERATOR, 20, Some(7)),
            ev(ACCEPTED_BY_OPERATOR, 27, Some(7)),
        ];
        let i = Inputs {
            created: Some(t(0)),
            guest_joined: Some(t(30)),
            started: Some(t(27)),
            length: Some(300.0),
            waited: Some(25.0),
            source: Some("Default"),
            operators: vec![OperatorTimes {
                user_id: 7,
                left: Some(t(330)),
                concluded: Some(t(390)),
            }],
            events,
        };
        let d = Durations::compute(&i);
        assert_eq!(d.created, Some(5.0));
        assert_eq!(d.in_queue, Some(15.0));
        assert_eq!(d.waiting, Some(7.0));
        assert_eq!(d.bcw, Some(3.0));
        assert_eq!(d.active, Some(300.0));
        assert_eq!(d.acw, Some(60.0));
        assert_eq!(d.ring, Some(30.0));
        assert_eq!(d.pbx_wait, Some(25.0));
        assert_eq!(d.operators[&7], (Some(7.0), Some(60.0)));
        assert!(d.negative.is_empty());
    }

    #[test]
    fn missing_states_are_null_and_negatives_are_nulled_and_named() {
        let i = Inputs {
            created: Some(t(10)),
            guest_joined: Some(t(5)),
            started: Some(t(8)),
            source: Some("campaign"),
            events: vec![ev(ROUTING_REQUEST_CREATED, 4, None)],
            ..Inputs::default()
        };
        let d = Durations::compute(&i);
        assert_eq!(d.created, None);
        assert_eq!(d.negative, vec!["created".to_string()]);
        assert_eq!(d.in_queue, None);
        assert_eq!(d.bcw, None, "only if positive, and not counted");
        assert_eq!(d.ring, None, "no ring time for Campaign");
        assert_eq!(d.acw, None);
    }

    #[test]
    fn acw_waits_for_every_operator_and_uses_the_maxima() {
        let mut ops = vec![
            OperatorTimes {
                user_id: 1,
                left: Some(t(100)),
                concluded: Some(t(130)),
            },
            OperatorTimes {
                user_id: 2,
                left: Some(t(200)),
                concluded: None,
            },
        ];
        let i = Inputs {
            operators: ops.clone(),
            ..Inputs::default()
        };
        assert_eq!(
            Durations::compute(&i).acw,
            None,
            "operator 2 is still in ACW"
        );
        ops[1].concluded = Some(t(290));
        let d = Durations::compute(&Inputs {
            operators: ops,
            ..Inputs::default()
        });
        assert_eq!(d.acw, Some(90.0));
        assert_eq!(d.operators[&1].1, Some(30.0));
        assert_eq!(d.operators[&2].1, Some(90.0));
    }

    #[test]
    fn operator_queue_uses_the_first_acceptance_of_the_session() {
        // Forwarded: operator 2 is assigned after the first acceptance, so the seed's formula
        // comes out negative for them and is nulled.
        let events = vec![
            ev(ROUTING_REQUEST_CREATED, 0, None),
            ev(ASSIGNED_TO_OPERATOR, 10, Some(1)),
            ev(ACCEPTED_BY_OPERATOR, 15, Some(1)),
            ev("ForwardedToUser", 100, Some(1)),
            ev(ASSIGNED_TO_OPERATOR, 101, Some(2)),
            ev(ACCEPTED_BY_OPERATOR, 104, Some(2)),
        ];
        let ops = [1, 2].map(|u| OperatorTimes {
            user_id: u,
            left: None,
            concluded: None,
        });
        let d = Durations::compute(&Inputs {
            operators: ops.to_vec(),
            events,
            ..Inputs::default()
        });
        assert_eq!(d.operators[&1].0, Some(5.0));
        assert_eq!(d.operators[&2].0, None);
        assert_eq!(d.negative, vec!["operator 2 queue".to_string()]);
    }

    #[test]
    fn unknown_activity_types_are_ignored_by_the_formulas() {
        let events = vec![
            ev("SomethingNew", 1, None),
            ev(ROUTING_REQUEST_CREATED, 2, None),
        ];
        let d = Durations::compute(&Inputs {
            created: Some(t(0)),
            events,
            ..Inputs::default()
        });
        assert_eq!(d.created, Some(2.0));
    }

    fn opt_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
        proptest::option::of(
            (-5_000i64..5_000, 0u32..1_000_000)
                .prop_map(|(s, us)| t(s) + TimeDelta::microseconds(i64::from(us))),
        )
    }

    fn kind() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(ROUTING_REQUEST_CREATED),
            Just(ASSIGNED_TO_OPERATOR),
            Just(ACCEPTED_BY_OPERATOR),
            Just("ForwardedToUser"),
            Just("Brand new"),
        ]
    }

    proptest! {
        #[test]
        fn no_duration_is_ever_negative(
            created in opt_time(), joined in opt_time(), started in opt_time(),
            length in proptest::option::of(-1e5f64..1e5), waited in proptest::option::of(-1e5f64..1e5),
            events in proptest::collection::vec((kind(), opt_time(), proptest::option::of(1i64..4)), 0..8),
            ops in proptest::collection::vec((1i64..4, opt_time(), opt_time()), 0..4),
        ) {
            let i = Inputs {
                created, guest_joined: joined, started, length, waited, source: None,
                operators: ops.iter().map(|&(u, l, c)| OperatorTimes { user_id: u, left: l, concluded: c }).collect(),
                events: events.iter().map(|&(k, at, op)| Event { activity_type: Some(k), at, operator_user_id: op }).collect(),
            };
            let d = Durations::compute(&i);
            let all = [d.created, d.in_queue, d.waiting, d.bcw, d.active, d.acw, d.ring, d.pbx_wait];
            for v in all.into_iter().flatten().chain(d.operators.values().flat_map(|&(q, a)| [q, a]).flatten()) {
                prop_assert!(v >= 0.0);
            }
        }

        #[test]
        fn queue_plus_waiting_is_acceptance_minus_routing_start(
            a in 0i64..10_000, b in 0i64..10_000, c in 0i64..10_000, us in 0i64..1_000_000,
        ) {
            let mut v = [a, b, c];
            v.sort();
            let rrc = t(v[0]);
            let assigned = t(v[1]) + TimeDelta::microseconds(us);
            let accepted = t(v[2]) + TimeDelta::microseconds(us);
            let i = Inputs {
                events: vec![
                    Event { activity_type: Some(ROUTING_REQUEST_CREATED), at: Some(rrc), operator_user_id: None },
                    Event { activity_type: Some(ASSIGNED_TO_OPERATOR), at: Some(assigned), operator_user_id: Some(1) },
                    Event { activity_type: Some(ACCEPTED_BY_OPERATOR), at: Some(accepted), operator_user_id: Some(1) },
                ],
                ..Inputs::default()
            };
            let d = Durations::compute(&i);
            let sum = d.in_queue.unwrap() + d.waiting.unwrap();
            prop_assert!((sum - seconds_between(rrc, accepted)).abs() < 1e-6);
        }

        #[test]
        fn iso_seconds_round_trip(ms in 0u64..1_000_000_000u64) {
            let (s, frac) = (ms / 1000, ms % 1000);
            let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
            let text = format!("PT{h}H{m}M{sec}.{frac:03}S");
            prop_assert_eq!(parse_iso_duration(&text).unwrap(), ms as f64 / 1000.0);
        }
    }
}
