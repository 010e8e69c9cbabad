//! The proof a row carries that its record went through the privacy seam.

/// Proof that a record went through the privacy seam ([`SourceContext::personal`](super::SourceContext::personal)): every row
/// a source writes for a session holds the one of its record, and only the engine makes them
/// (`personal`, and the rebuild of rows from documents stored under the policy), so a row built
/// from a record that skipped the seam does not compile:
///
/// ```
/// use sessionsync_core::engine::{SourceContext, Vetted};
/// use sessionsync_core::privacy::Privacy;
/// // The one way: through the seam.
/// let cx = SourceContext::offline("fake", "a", Privacy::keep_all());
/// let vetted: Vetted = cx.personal("1", false, &mut []).vetted;
/// ```
/// ```compile_fail
/// use sessionsync_core::engine::Vetted;
/// // A source cannot make one itself...
/// let forged = Vetted(());
/// ```
/// ```compile_fail
/// use sessionsync_core::engine::Vetted;
/// // ...nor have one made up.
/// let forged = Vetted::default();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vetted(());

impl Vetted {
    /// The record went through [`SourceContext::personal`](super::SourceContext::personal).
    pub(super) fn passed() -> Vetted {
        Vetted(())
    }

    /// A record read back from the warehouse, where it is stored as the policy of its row left
    /// it (`renormalize`).
    pub(super) fn stored() -> Vetted {
        Vetted(())
    }
}
