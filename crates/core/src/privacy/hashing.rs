//! The keyed hashes of personal data: a value as a policy stores it (HMAC-SHA256 of its
//! normalized form) and an erasure's selector (under a key derived for selectors, so that the
//! erasure list joins to no hashed extract).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a value is normalized before it is hashed (docs/privacy.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Trimmed, inner white space collapsed, lower-cased (names, e-mail addresses, texts).
    Text,
    /// Reduced to `+` and digits.
    Phone,
    /// A URL whose query string is the personal part: drop removes the query (and fragment),
    /// hash replaces the query with its hash.
    UrlQuery,
    /// A composite value (an embedded transcript document, a list of links): dropped, or
    /// hashed as a whole.
    Whole,
    /// A map (or list) of parameters, each value personal on its own (mluvii's
    /// `guest.callParams`): dropped as a whole, or each value hashed apart, normalized as a phone
    /// number or as text by what it looks like ([`param_kind`]), so that `erase --phone` and
    /// `--email` still find it.
    Params,
}

/// How a value of a [`Kind::Params`] field is normalized: a hash stays as it is, an e-mail
/// address (it has an `@`) and anything else as text, a phone number (only `+`, digits, spaces,
/// `().-/`, and at least six digits) as a phone. `sessionsync_call_params` (migration 0019) does
/// the same in SQL.
pub fn param_kind(value: &str) -> Kind {
    let v = value.trim();
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let phone_chars = v
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+ ().-/".contains(&b));
    if !looks_hashed(v) && !v.contains('@') && phone_chars && digits >= 6 {
        Kind::Phone
    } else {
        Kind::Text
    }
}

/// HMAC-SHA256 with the configured key, already keyed (cloned for each value).
#[derive(Clone)]
pub struct Hasher {
    mac: Hmac<Sha256>,
    /// Keyed with the selector key: HMAC(key, [`SELECTOR_DOMAIN`]).
    selectors: Hmac<Sha256>,
}

/// What the key of the erasure selectors is derived from (with the hash key).
const SELECTOR_DOMAIN: &str = "sessionsync erasure selectors v1";

impl Hasher {
    pub fn new(key: &[u8]) -> Hasher {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        let mut derive = mac.clone();
        derive.update(SELECTOR_DOMAIN.as_bytes());
        let selector_key = derive.finalize().into_bytes();
        Hasher {
            mac,
            selectors: Hmac::<Sha256>::new_from_slice(&selector_key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// The erasure selector of `text` (as given, normalized by the caller): HMAC under the
    /// selector key of the hash a policy would store. Never equal to that hash, so the erasure
    /// list joins to no hashed extract (privacy.md section 3).
    pub fn selector(&self, text: &str) -> String {
        self.selector_of(&self.hex(text))
    }

    /// The erasure selector of a value whose policy hash is `policy_hash` (how rows recorded
    /// before migration 0017, which hold that hash, are brought to the selector derivation).
    pub fn selector_of(&self, policy_hash: &str) -> String {
        let mut mac = self.selectors.clone();
        mac.update(policy_hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Lower-case hex of HMAC-SHA256(key, `text` as given).
    pub fn hex(&self, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The hash a policy stores for `value` of `kind`: of its normalized form.
    pub fn value(&self, kind: Kind, value: &str) -> String {
        self.hex(&normalize(kind, value))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A value normalized for hashing and matching: trimmed, inner white space collapsed and
/// lower-cased; a phone number reduced to `+` and digits.
pub fn normalize(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Params => normalize(param_kind(value), value),
        Kind::Phone => value
            .chars()
            .filter(|c| *c == '+' || c.is_ascii_digit())
            .collect(),
        _ => {
            // The common case: ASCII, single spaces, nothing to trim.
            let b = value.as_bytes();
            if b.is_ascii()
                && b.first().is_some_and(|c| !c.is_ascii_whitespace())
                && b.last().is_some_and(|c| !c.is_ascii_whitespace())
                && !b
                    .windows(2)
                    .any(|w| w[0].is_ascii_whitespace() && w[1].is_ascii_whitespace())
                && !b.iter().any(|c| c.is_ascii_whitespace() && *c != b' ')
            {
                return value.to_ascii_lowercase();
            }
            let mut out = String::with_capacity(value.len());
            for word in value.split_whitespace() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.extend(word.chars().flat_map(char::to_lowercase));
            }
            out
        }
    }
}

/// Whether a stored text is a hash this policy wrote (64 lower-case hex digits).
pub fn looks_hashed(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
