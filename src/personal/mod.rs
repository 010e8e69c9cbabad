//! What `sessionsync erase`, `privacy check|apply` and `retention` do to a stored warehouse
//! (docs/privacy.md sections 2, 3 and 5), over every registered source's inventory; the daemon's
//! daily storage limits; the hash keys the warehouse depends on (`keys`, checked at start). The policies themselves are `privacy`, the SQL shared with every write
//! `warehouse::privacy`.

pub mod apply;
pub mod conversions;
pub mod erase;
pub mod keys;
pub mod retention;

/// The inventories of every registered source.
pub fn inventories() -> Vec<&'static crate::privacy::Inventory> {
    crate::sources::SOURCES
        .iter()
        .filter_map(|k| k.inventory())
        .collect()
}
