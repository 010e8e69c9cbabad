//! Set-based writes of a batch's rows: [`Unnest`] pairs each column with its SQL type and its
//! values, and writes the `INSERT … SELECT $1, u.* FROM unnest(…)` statement from them, so that
//! a column, its type and its parameter cannot drift apart (a source's `store.rs` names each
//! column once).

use tokio_postgres::types::ToSql;

/// The columns of one set-based insert for one account, in order: `(name, SQL type of one
/// value, the values)`. Every column holds one value per row.
#[derive(Default)]
pub struct Unnest<'a> {
    columns: Vec<(
        &'static str,
        &'static str,
        Box<dyn ToSql + Sync + Send + 'a>,
    )>,
}

impl<'a> Unnest<'a> {
    pub fn new() -> Self {
        Unnest::default()
    }

    /// Adds column `name` of SQL type `sql_type` (`bigint`, `text`, `timestamptz` …) with
    /// its values, one per row.
    pub fn column<T>(mut self, name: &'static str, sql_type: &'static str, values: Vec<T>) -> Self
    where
        Vec<T>: ToSql + Sync + Send + 'a,
    {
        self.columns.push((name, sql_type, Box::new(values)));
        self
    }

    /// `INSERT INTO {table} AS t (account, …) SELECT $1, u.* FROM unnest($2::type[], …) AS u`,
    /// followed by `tail` (an `ON CONFLICT …` clause, a `RETURNING` …).
    pub fn insert(&self, table: &str, tail: &str) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 2, c.1))
            .collect();
        format!(
            "INSERT INTO {table} AS t (account, {}) SELECT $1, u.* FROM unnest({}) AS u {tail}",
            names.join(", "),
            arrays.join(", ")
        )
    }

    /// `col = EXCLUDED.col` for every column but `keys`, joined by commas (an upsert's
    /// `DO UPDATE SET`).
    pub fn set_excluded(&self, keys: &[&str]) -> String {
        self.columns
            .iter()
            .filter(|c| !keys.contains(&c.0))
            .map(|c| format!("{0} = EXCLUDED.{0}", c.0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(t.col, …) IS DISTINCT FROM (EXCLUDED.col, …)` over every column but `keys`: an
    /// upsert's condition for rows without a fingerprint (rewritten only when a column changed).
    pub fn changed(&self, keys: &[&str]) -> String {
        let cols: Vec<&str> = self
            .columns
            .iter()
            .map(|c| c.0)
            .filter(|c| !keys.contains(c))
            .collect();
        let of = |side: &str| {
            cols.iter()
                .map(|c| format!("{side}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("({}) IS DISTINCT FROM ({})", of("t"), of("EXCLUDED"))
    }

    /// The statement's parameters: `account`, then each column's values.
    pub fn params<'s>(&'s self, account: &'s (dyn ToSql + Sync)) -> Vec<&'s (dyn ToSql + Sync)> {
        std::iter::once(account)
            .chain(self.columns.iter().map(|c| &*c.2 as &(dyn ToSql + Sync)))
            .collect()
    }
}

/// The values of one column over `rows`.
pub fn values<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

/// One text column over `rows`.
pub fn texts<'a, R>(
    rows: &'a [R],
    f: impl Fn(&'a R) -> &'a Option<String>,
) -> Vec<Option<&'a str>> {
    rows.iter().map(|r| f(r).as_deref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_is_named_typed_and_numbered_once() {
        let u = Unnest::new()
            .column("session_id", "bigint", vec![1i64, 2])
            .column("channel", "text", vec![Some("chat"), None])
            .column("content_hash", "text", vec!["a", "b"]);
        assert_eq!(
            u.insert("x", "ON CONFLICT DO NOTHING"),
            "INSERT INTO x AS t (account, session_id, channel, content_hash) SELECT $1, u.* FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            u.set_excluded(&["session_id"]),
            "channel = EXCLUDED.channel, content_hash = EXCLUDED.content_hash"
        );
        assert_eq!(
            u.changed(&["session_id"]),
            "(t.channel, t.content_hash) IS DISTINCT FROM (EXCLUDED.channel, EXCLUDED.content_hash)"
        );
        assert_eq!(u.params(&"acme").len(), 4);
    }
}
