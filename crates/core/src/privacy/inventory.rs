//! docs/privacy.md's inventory, generated from the sources' field lists (`personal.rs`), so
//! that a field cannot be classed in one place and stored in another: the test
//! `privacy_inventory_matches_the_code` fails when the file differs from [`markdown`], and
//! `sessionsync privacy inventory` prints it.

use super::fields::{Kind, Selector};
use super::{Class, Inventory};

fn classes(c: &[Class]) -> String {
    c.iter()
        .map(|c| format!("`{}`", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Text => "text",
        Kind::Phone => "phone",
        Kind::UrlQuery => "URL (its query string)",
        Kind::Whole => "whole value",
        Kind::Params => "each value, as a phone number or as text",
    }
}

fn selectors(s: &[Selector]) -> String {
    if s.is_empty() {
        "".into()
    } else {
        s.iter()
            .map(|s| format!("`--{}`", s.name().replace('_', "-")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The inventory section of docs/privacy.md.
pub fn markdown(invs: &[&Inventory]) -> String {
    let mut out = String::from(
        "<!-- Generated from crates/sources/src/*/personal.rs by `sessionsync privacy inventory`; a test fails when it differs. -->\n",
    );
    for inv in invs {
        out.push_str(&format!("\n### {}\n\n", inv.source));
        out.push_str("Fields of the records as received (`raw`");
        if inv.documents.len() > 1 {
            for (d, _) in &inv.documents[1..] {
                out.push_str(&format!(", `{d}`"));
            }
        }
        out.push_str(", `rejected_records.payload`):\n\n");
        out.push_str("| field (path, any case) | document | class | normalized as | erase matches | feeds |\n| --- | --- | --- | --- | --- | --- |\n");
        for (doc, fields) in inv.documents {
            for f in *fields {
                out.push_str(&format!(
                    "| `{}` | `{doc}` | {} | {} | {} | {} |\n",
                    f.path,
                    classes(f.classes),
                    kind(f.kind),
                    selectors(f.selectors),
                    f.feeds
                ));
            }
        }
        out.push_str("\nColumns:\n\n| table | column | class | normalized as | erase matches |\n| --- | --- | --- | --- | --- |\n");
        for c in inv.columns {
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} |\n",
                c.table,
                c.column,
                classes(c.classes),
                kind(c.kind),
                selectors(c.selectors)
            ));
        }
        let set_lookups = inv.set_lookups.iter().map(|l| {
            (
                l,
                "the values of a field, no column of their own",
                Kind::Params,
            )
        });
        let lookups = inv
            .lookups
            .iter()
            .map(|l| (l, "no column of its own", Kind::Text));
        for ((s, expr), what, k) in set_lookups.chain(lookups) {
            out.push_str(&format!(
                "| `{}` | `{}` ({what}) | | {} | `--{}` |\n",
                inv.sessions,
                expr,
                kind(k),
                s.name().replace('_', "-")
            ));
        }
        for (table, col, by, _) in inv.classed_by {
            out.push_str(&format!(
                "\n`{table}.{col}` is `customer_identity` or `agent_identity` by `{by}` (who wrote it); the stricter of the two when `{by}` says neither.\n"
            ));
        }
        out.push_str(&format!(
            "\nA session's age is its `{}`; its children: {}.\n",
            inv.start_column,
            inv.children
                .iter()
                .map(|(t, _)| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}
