//! The warehouse's own settings (`[warehouse]` of the config file, validated there): its URL,
//! schema, pool, and the rules they follow.

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    /// Connection URL; a secret because it may carry a password.
    pub url: Secret,
    /// Schema holding every table; validated as `[a-z_][a-z0-9_]*`.
    pub schema: String,
    pub pool_size: usize,
    /// Wait for each window's commit to reach disk (default false: docs/operations.md, "Configuration in detail").
    pub synchronous_commit: bool,
}

/// libpq's `sslmode` values (`warehouse::tls` gives each its meaning).
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Schema names go into SQL as identifiers, so they are held to a strict shape.
pub fn validate_identifier(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` must be 1–63 characters of a–z, 0–9 and '_', not starting with a digit"
        ))
    }
}
