//! docs/operations.md against the config reader: every default its key table states is the
//! default the reader applies (the key set to the stated value reads the same as the key left
//! out). scripts/check-docs.py checks the command tables against `--help`.

use std::path::Path;

/// (section, key, stated default) of every row of the key table whose default is one value.
fn stated_defaults() -> Vec<(String, String, String)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let table = doc
        .split("| key | default | meaning |")
        .nth(1)
        .expect("docs/operations.md has its key table");
    let mut out = Vec::new();
    let mut section = String::new();
    for line in table.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let keys: Vec<String> = cells[0]
            .split([',', '/', '+'])
            .flat_map(|k| k.split(" or "))
            .filter_map(|k| {
                k.trim()
                    .strip_prefix('`')?
                    .strip_suffix('`')
                    .map(str::to_string)
            })
            .collect();
        let mut names = Vec::new();
        for k in keys {
            if let Some(rest) = k.strip_prefix('…') {
                names.push(rest.to_string());
            } else if let Some((s, rest)) = k.split_once("[].") {
                section = s.to_string();
                names.push(rest.to_string());
            } else if let Some((s, rest)) = k.split_once('.') {
                section = s.to_string();
                names.push(rest.to_string());
            }
        }
        let cell = cells[1];
        if cell.starts_with('—') || cell.contains("absent") {
            continue;
        }
        let values: Vec<String> = cell
            .split([',', '/'])
            .map(|v| v.trim().trim_matches('`').to_string())
            .collect();
        if values.len() != names.len() {
            continue;
        }
        for (k, v) in names.into_iter().zip(values) {
            out.push((section.clone(), k, v));
        }
    }
    out
}

fn literal(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

fn read(text: &str) -> String {
    let s = sessionsync::config::Settings::from_toml(
        Path::new("docs.toml"),
        text,
        &|_| None,
        &sessionsync::sources::configs(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    format!("{s:?}")
}

#[test]
fn every_default_docs_operations_states_is_the_readers() {
    let base = |section: &str, extra: &str| {
        let entry = match section {
            "takecontrol" => {
                "[[takecontrol]]\naccount = \"a\"\nbase_url = \"https://api.us0.swi-rc.com\"\napi_key = \"k\"\nstart = \"2024-01-01T00:00:00Z\"\n"
            }
            "superoffice" => {
                "[[superoffice]]\naccount = \"a\"\nbase_url = \"https://crm.example.com/SuperOffice\"\nticket = \"t\"\napp_token = \"a\"\nstart = \"2024-01-01T00:00:00Z\"\n"
            }
            "mluvii" => {
                "[[mluvii]]\naccount = \"a\"\nclient_id = \"u\"\nclient_secret = \"s\"\nstart = \"2024-01-01T00:00:00Z\"\n"
            }
            _ => "",
        };
        let head = "[warehouse]\nurl = \"postgres://u@db.example/w\"\n";
        match (section, entry.is_empty()) {
            ("warehouse", true) => {
                format!("[warehouse]\nurl = \"postgres://u@db.example/w\"\n{extra}")
            }
            (s, true) => format!("{head}[{s}]\n{extra}"),
            (_, false) => format!("{head}{entry}{extra}"),
        }
    };
    let stated = stated_defaults();
    assert!(stated.len() >= 25, "{stated:?}");
    let mut checked = 0;
    for (section, key, value) in stated {
        let without = read(&base(&section, ""));
        let with = read(&base(&section, &format!("{key} = {}\n", literal(&value))));
        assert_eq!(
            with, without,
            "docs/operations.md says `{section}.{key}` defaults to `{value}`; the reader's default differs"
        );
        checked += 1;
    }
    assert!(checked >= 25);
}
