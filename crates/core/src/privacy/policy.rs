//! The classes of personal data and what a policy does with each (docs/privacy.md sections 1–2).

use serde::Deserialize;

/// A class of personal data. Every personal field of every source has exactly one (or, for a
/// field that mixes several, such as a whole transcript, a list: the strictest policy wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    CustomerIdentity,
    Network,
    FreeText,
    Transcripts,
    AgentIdentity,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::CustomerIdentity,
        Class::Network,
        Class::FreeText,
        Class::Transcripts,
        Class::AgentIdentity,
    ];

    /// The name in `[privacy]` and in docs/privacy.md.
    pub fn name(self) -> &'static str {
        match self {
            Class::CustomerIdentity => "customer_identity",
            Class::Network => "network",
            Class::FreeText => "free_text",
            Class::Transcripts => "transcripts",
            Class::AgentIdentity => "agent_identity",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is stored of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The value as received.
    Keep,
    /// HMAC-SHA256(hash_key, normalized value), lower-case hex.
    Hash,
    /// NULL, and the field removed from `raw`.
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Keep => "keep",
            Policy::Hash => "hash",
            Policy::Drop => "drop",
        }
    }

    fn letter(self) -> char {
        match self {
            Policy::Keep => 'k',
            Policy::Hash => 'h',
            Policy::Drop => 'd',
        }
    }

    fn from_letter(c: char) -> Option<Policy> {
        match c {
            'k' => Some(Policy::Keep),
            'h' => Some(Policy::Hash),
            'd' => Some(Policy::Drop),
            _ => None,
        }
    }
}

/// A policy for each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policies([Policy; 5]);

impl Default for Policies {
    fn default() -> Self {
        Policies([Policy::Keep; 5])
    }
}

impl Policies {
    pub fn all(p: Policy) -> Self {
        Policies([p; 5])
    }

    pub fn of(&self, c: Class) -> Policy {
        self.0[c.index()]
    }

    pub fn set(&mut self, c: Class, p: Policy) {
        self.0[c.index()] = p;
    }

    /// The strictest policy of `classes` (drop over hash over keep).
    pub fn strictest(&self, classes: &[Class]) -> Policy {
        classes
            .iter()
            .map(|c| self.of(*c))
            .max()
            .unwrap_or(Policy::Keep)
    }

    pub fn needs_key(&self) -> bool {
        self.0.contains(&Policy::Hash)
    }

    pub fn keeps_everything(&self) -> bool {
        self.0.iter().all(|p| *p == Policy::Keep)
    }

    /// These policies with a source entry's overrides.
    pub fn with(mut self, o: &Overrides) -> Self {
        for c in Class::ALL {
            if let Some(p) = o.of(c) {
                self.set(c, p);
            }
        }
        self
    }

    /// The short form stored with every session row (`privacy_policy`): one letter per class in
    /// the order of [`Class::ALL`] (k, h or d), e.g. `hdkkk`.
    pub fn letters(&self) -> String {
        self.0.iter().map(|p| p.letter()).collect()
    }

    pub fn from_letters(s: &str) -> Option<Policies> {
        let v: Vec<Policy> = s.chars().map(Policy::from_letter).collect::<Option<_>>()?;
        <[Policy; 5]>::try_from(v).ok().map(Policies)
    }

    /// "customer_identity=hash, network=drop, …" for messages.
    pub fn describe(&self) -> String {
        Class::ALL
            .iter()
            .map(|c| format!("{}={}", c.name(), self.of(*c).name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A source entry's `privacy = { class = "policy", … }`: the classes it sets for itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub customer_identity: Option<Policy>,
    pub network: Option<Policy>,
    pub free_text: Option<Policy>,
    pub transcripts: Option<Policy>,
    pub agent_identity: Option<Policy>,
}

impl Overrides {
    pub fn of(&self, c: Class) -> Option<Policy> {
        match c {
            Class::CustomerIdentity => self.customer_identity,
            Class::Network => self.network,
            Class::FreeText => self.free_text,
            Class::Transcripts => self.transcripts,
            Class::AgentIdentity => self.agent_identity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_and_overrides_win() {
        let mut p = Policies::default();
        p.set(Class::CustomerIdentity, Policy::Hash);
        p.set(Class::Network, Policy::Drop);
        assert_eq!(p.letters(), "hdkkk");
        assert_eq!(Policies::from_letters("hdkkk"), Some(p));
        assert_eq!(Policies::from_letters("hdkk"), None);
        let o = Overrides {
            transcripts: Some(Policy::Drop),
            ..Overrides::default()
        };
        assert_eq!(p.with(&o).letters(), "hdkdk");
        assert_eq!(
            p.strictest(&[Class::CustomerIdentity, Class::Transcripts]),
            Policy::Hash
        );
        assert_eq!(
            p.strictest(&[Class::Network, Class::FreeText]),
            Policy::Drop
        );
    }
}
