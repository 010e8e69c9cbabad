//! Where personal data sits in a source's records, and how a policy is applied to it: to a
//! record as received (a JSON document, before anything reads a column from it) and to single
//! values (child rows). Each source lists its fields once, next to its own field list
//! (`sources/<name>/personal.rs`); docs/privacy.md is generated from those lists.

use serde_json::Value;

pub use super::hashing::{Hasher, Kind, looks_hashed, normalize, param_kind};
use super::policy::{Class, Policies, Policy};

/// What an erasure selector matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Email,
    Phone,
    Name,
}

impl Selector {
    pub fn name(self) -> &'static str {
        match self {
            Selector::Email => "email",
            Selector::Phone => "phone",
            Selector::Name => "customer_name",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Selector::Phone => Kind::Phone,
            _ => Kind::Text,
        }
    }
}

/// One personal field of a record as received.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Where: lower-case keys joined by `.`, a key ending in `[]` for every element of an
    /// array (`operators[].username`); a path starting with `[]` for a document that is an array.
    pub path: &'static str,
    /// Its class (several for a composite value: the strictest policy applies).
    pub classes: &'static [Class],
    pub kind: Kind,
    /// The selectors of `erase` that match on it.
    pub selectors: &'static [Selector],
    /// What it feeds, for docs/privacy.md (`table.column`, or "raw only").
    pub feeds: &'static str,
}

/// A personal column of a table, for `erase`, `privacy apply` and docs/privacy.md.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub table: &'static str,
    pub column: &'static str,
    pub classes: &'static [Class],
    pub kind: Kind,
    pub selectors: &'static [Selector],
}

/// Applies policies to documents and values.
pub struct Scrub<'a> {
    pub policies: Policies,
    /// `None` only when no policy hashes (settings check it).
    pub hasher: Option<&'a Hasher>,
    /// For values already stored under other policies (`privacy apply`): only what is
    /// stricter now is applied (a hashed value is never hashed again, nothing dropped returns).
    pub since: Option<Policies>,
}

impl Scrub<'_> {
    /// The scrubber of an erased record: every class dropped (no key needed).
    pub fn erasing() -> Scrub<'static> {
        Scrub {
            policies: Policies::all(Policy::Drop),
            hasher: None,
            since: None,
        }
    }

    /// The policy a value of `classes` gets: the strictest of its classes; for stored values,
    /// only when it is stricter than what they were written under.
    pub fn effective(&self, classes: &[Class]) -> Policy {
        let now = self.policies.strictest(classes);
        match self.since {
            Some(before) if now <= before.strictest(classes) => Policy::Keep,
            _ => now,
        }
    }

    /// Every field of `fields` in `doc`, in place: kept, hashed or removed.
    pub fn document(&self, doc: &mut Value, fields: &[Field]) {
        for f in fields {
            let policy = self.effective(f.classes);
            if policy == Policy::Keep {
                continue;
            }
            let mut segments = [""; 8];
            let mut n = 0;
            for p in f.path.split('.').take(segments.len()) {
                segments[n] = p;
                n += 1;
            }
            self.at(doc, &segments[..n], f.kind, policy);
        }
    }

    fn at(&self, v: &mut Value, path: &[&str], kind: Kind, policy: Policy) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let (key, each) = match first.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (*first, false),
        };
        if key.is_empty() {
            // The document itself is the array.
            for_each(v, |e| self.at(e, rest, kind, policy));
            return;
        }
        let Value::Object(o) = v else {
            return;
        };
        if rest.is_empty() && policy == Policy::Drop && kind != Kind::UrlQuery {
            o.retain(|k, _| !k.eq_ignore_ascii_case(key));
            return;
        }
        for (k, child) in o.iter_mut() {
            if !k.eq_ignore_ascii_case(key) {
                continue;
            }
            match (rest.is_empty(), each) {
                (true, false) => self.leaf(child, kind, policy),
                // Every element of a list of values.
                (true, true) => for_each(child, |e| self.leaf(e, kind, policy)),
                (false, true) => for_each(child, |e| self.at(e, rest, kind, policy)),
                (false, false) => self.at(child, rest, kind, policy),
            }
        }
    }

    /// One value under a policy that is not `keep`.
    fn leaf(&self, v: &mut Value, kind: Kind, policy: Policy) {
        if kind == Kind::Params {
            // Each parameter's value on its own.
            match v {
                Value::Object(o) => {
                    for val in o.values_mut() {
                        self.leaf(val, kind, policy);
                    }
                    return;
                }
                Value::Array(items) => {
                    items.iter_mut().for_each(|e| self.leaf(e, kind, policy));
                    return;
                }
                _ => {}
            }
        }
        if kind == Kind::Whole {
            if v.is_null() || is_blank(v) {
                return;
            }
            let new = match (policy, self.hasher) {
                (Policy::Hash, Some(h)) => {
                    let text = match &*v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Value::String(h.hex(&text))
                }
                _ => Value::Null,
            };
            *v = new;
            return;
        }
        match v {
            Value::Array(items) => items.iter_mut().for_each(|e| self.leaf(e, kind, policy)),
            Value::Object(_) => *v = Value::Null,
            Value::Null => {}
            _ => {
                let Some(text) = scalar_text(v) else {
                    return;
                };
                if text.trim().is_empty() {
                    return;
                }
                *v = match self.value(kind, policy, &text) {
                    Some(s) => Value::String(s),
                    None => Value::Null,
                };
            }
        }
    }

    /// One value of `classes` and `kind` as the policy stores it.
    pub fn text(&self, classes: &[Class], kind: Kind, v: Option<String>) -> Option<String> {
        let policy = self.effective(classes);
        match (policy, v) {
            (_, None) => None,
            (Policy::Keep, v) => v,
            (p, Some(s)) => self.value(kind, p, &s),
        }
    }

    fn value(&self, kind: Kind, policy: Policy, text: &str) -> Option<String> {
        match (policy, kind) {
            (Policy::Keep, _) => Some(text.to_string()),
            (Policy::Drop, Kind::UrlQuery) => Some(strip_query(text)),
            (Policy::Drop, _) => None,
            (Policy::Hash, _) => {
                let h = self.hasher?;
                Some(match kind {
                    Kind::UrlQuery => match text.split_once('?') {
                        Some((base, query)) => {
                            let query = query.split('#').next().unwrap_or_default();
                            format!("{base}?{}", h.hex(query))
                        }
                        None => text.to_string(),
                    },
                    Kind::Whole => h.hex(text),
                    k => h.value(k, text),
                })
            }
        }
    }
}

fn strip_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

fn for_each(v: &mut Value, mut f: impl FnMut(&mut Value)) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(f),
        Value::Object(_) => f(v),
        _ => {}
    }
}

/// The hashes of every selector value in `doc` (normalized, then HMAC'd), to check against
/// the recorded erasures.
pub fn selector_hashes(h: &Hasher, doc: &Value, fields: &[Field], out: &mut Vec<String>) {
    for f in fields.iter().filter(|f| !f.selectors.is_empty()) {
        let segments: Vec<&str> = f.path.split('.').collect();
        collect(doc, &segments, &mut |v| {
            if f.kind == Kind::Params {
                // A parameter matches the selector it looks like: a phone number `--phone`, an
                // e-mail address `--email`.
                params_leaves(v, &mut |text| {
                    let k = param_kind(text);
                    for s in f.selectors {
                        let fits = match s {
                            Selector::Phone => k == Kind::Phone,
                            Selector::Email => text.contains('@'),
                            Selector::Name => k == Kind::Text,
                        };
                        let n = normalize(k, text);
                        if fits && !n.is_empty() {
                            out.push(h.selector(&n));
                        }
                    }
                });
                return;
            }
            if let Some(text) = scalar_text(v) {
                for s in f.selectors {
                    let n = normalize(s.kind(), &text);
                    if !n.is_empty() {
                        out.push(h.selector(&n));
                    }
                }
            }
        });
    }
}

/// Every scalar value inside a parameters value (object values, list elements, nested).
fn params_leaves(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(o) => o.values().for_each(|e| params_leaves(e, f)),
        Value::Array(a) => a.iter().for_each(|e| params_leaves(e, f)),
        other => {
            if let Some(t) = scalar_text(other) {
                f(&t);
            }
        }
    }
}

fn collect(v: &Value, path: &[&str], f: &mut dyn FnMut(&Value)) {
    let Some((first, rest)) = path.split_first() else {
        match v {
            Value::Array(a) => a.iter().for_each(|e| collect(e, path, f)),
            Value::Null => {}
            other => f(other),
        }
        return;
    };
    let key = first.trim_end_matches("[]");
    if key.is_empty() {
        if let Value::Array(a) = v {
            a.iter().for_each(|e| collect(e, rest, f));
        }
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)) {
                let _ = k;
                match child {
                    Value::Array(a) if !rest.is_empty() => {
                        a.iter().for_each(|e| collect(e, rest, f))
                    }
                    other => collect(other, rest, f),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|e| collect(e, path, f)),
        _ => {}
    }
}

/// JSON null or a blank string.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A scalar as text (numbers and booleans too); objects and arrays as JSON.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.replace('\u{0}', "")),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[Field] = &[
        Field {
            path: "customeremail",
            classes: &[Class::CustomerIdentity],
            kind: Kind::Text,
            selectors: &[Selector::Email],
            feeds: "t.customer_email",
        },
        Field {
            path: "guest.ipaddress",
            classes: &[Class::Network],
            kind: Kind::Text,
            selectors: &[],
            feeds: "raw only",
        },
        Field {
            path: "operators[].username",
            classes: &[Class::AgentIdentity],
            kind: Kind::Text,
            selectors: &[],
            feeds: "t.user_name",
        },
        Field {
            path: "url",
            classes: &[Class::Network],
            kind: Kind::UrlQuery,
            selectors: &[],
            feeds: "t.url",
        },
        Field {
            path: "[].phonenumber",
            classes: &[Class::CustomerIdentity],
            kind: Kind::Phone,
            selectors: &[Selector::Phone],
            feeds: "r.phone_number",
        },
    ];

    #[test]
    fn normalized_as_the_contract_says() {
        assert_eq!(normalize(Kind::Text, "  Ann   LEE\t"), "ann lee");
        assert_eq!(normalize(Kind::Text, "Ann@Example.com "), "ann@example.com");
        assert_eq!(
            normalize(Kind::Phone, "+420 (777) 123-456"),
            "+420777123456"
        );
    }

    #[test]
    fn hash_is_hmac_sha256_of_the_normalized_value() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = Hasher::new(b"Jefe");
        assert_eq!(
            h.hex("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            h.value(Kind::Text, " Ann@Example.COM"),
            h.hex("ann@example.com")
        );
        assert!(looks_hashed(&h.hex("x")));
    }

    #[test]
    fn documents_are_scrubbed_by_path_case_insensitively() {
        let h = Hasher::new(b"k");
        let mut doc = json!({
            "CustomerEmail": "Ann@Example.com", "Guest": {"ipAddress": "10.0.0.1", "language": "cs"},
            "operators": [{"userName": "bob", "userId": 1}, {"UserName": "eve"}],
            "url": "https://shop.example/page?email=ann@example.com#x"
        });
        let mut p = Policies::default();
        p.set(Class::CustomerIdentity, Policy::Hash);
        p.set(Class::Network, Policy::Drop);
        p.set(Class::AgentIdentity, Policy::Drop);
        Scrub {
            policies: p,
            hasher: Some(&h),
            since: None,
        }
        .document(&mut doc, FIELDS);
        assert_eq!(
            doc,
            json!({
                "CustomerEmail": h.hex("ann@example.com"), "Guest": {"language": "cs"},
                "operators": [{"userId": 1}, {}],
                "url": "https://shop.example/page"
            })
        );
        let mut routing = json!([{"phoneNumber": "+420 777"}, {"phoneNumber": null}]);
        Scrub {
            policies: p,
            hasher: Some(&h),
            since: None,
        }
        .document(&mut routing, FIELDS);
        assert_eq!(
            routing,
            json!([{"phoneNumber": h.hex("+420777")}, {"phoneNumber": null}])
        );
        let mut hashes = Vec::new();
        selector_hashes(
            &h,
            &json!([{"phoneNumber": "+420 777"}]),
            FIELDS,
            &mut hashes,
        );
        // Call parameters: each value on its own, as what it looks like.
        assert_eq!(param_kind("+420 777 001 002"), Kind::Phone);
        assert_eq!(param_kind("(02) 1234-5678"), Kind::Phone);
        assert_eq!(param_kind("12345"), Kind::Text, "too few digits");
        assert_eq!(param_kind("Caller@Example.net"), Kind::Text);
        assert_eq!(param_kind("Guest 123456"), Kind::Text);
        assert_eq!(
            normalize(Kind::Params, " +420 777 001 002 "),
            "+420777001002"
        );
        assert_eq!(
            normalize(Kind::Params, "Caller@Example.NET"),
            "caller@example.net"
        );
        let mut doc = json!({"guest": {"callParams": {"phone": "+420 777 001 002", "email": "A@B.cz", "n": 7}}});
        Scrub {
            policies: Policies::all(Policy::Hash),
            hasher: Some(&h),
            since: None,
        }
        .document(
            &mut doc,
            &[Field {
                path: "guest.callparams",
                classes: &[Class::CustomerIdentity],
                kind: Kind::Params,
                selectors: &[Selector::Phone, Selector::Email],
                feeds: "",
            }],
        );
        assert_eq!(
            doc,
            json!({"guest": {"callParams": {"phone": h.hex("+420777001002"), "email": h.hex("a@b.cz"), "n": h.hex("7")}}})
        );
        // Selectors are derived apart from the policy's hash (the erasure list is no join key),
        // and from the policy's hash alone (rows recorded before migration 0017 convert).
        assert_eq!(hashes, [h.selector("+420777")]);
        assert_ne!(h.selector("+420777"), h.hex("+420777"));
        assert_eq!(h.selector_of(&h.hex("+420777")), h.selector("+420777"));
        assert_ne!(
            Hasher::new(b"other key").selector("+420777"),
            h.selector("+420777")
        );
    }
}
