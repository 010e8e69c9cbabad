//! The config file read with every registered source, as the binary reads it (these tests
//! live beside the sources: the config reader in the core knows none).

use sessionsync_core::config::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn a_near_miss_gets_a_suggestion_and_a_typo_comes_before_a_missing_variable() {
    let typo = "[warehouse]\nulr = \"${NOT_SET_ANYWHERE}\"\n";
    let e = load(typo).unwrap_err().to_string();
    assert!(
        e.contains("unknown field `ulr`") && e.ends_with("did you mean `url`?"),
        "{e}"
    );
    let e = load(&GOOD.replace("start =", "schedul = \"* * * * *\"\nstart ="))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("did you mean `schedule`?"), "{e}");
    let e = load(&GOOD.replace("start =", "zzzzz = 1\nstart ="))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("did you mean"), "{e}");
    // Only a variable unset: it is said.
    let e = load(&GOOD.replace("${TAKECONTROL_KEY}", "${NOT_SET_ANYWHERE}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOT_SET_ANYWHERE is not set"), "{e}");
}

const GOOD: &str = r#"
[warehouse]
url = "${DATABASE_URL}"
[[takecontrol]]
account = "acme-us"
base_url = "https://api.us0.swi-rc.com"
api_key = "${TAKECONTROL_KEY}"
start = "2024-01-01T00:00:00Z"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "DATABASE_URL" => Some("postgres://postgres@127.0.0.1/x".into()),
        "TAKECONTROL_KEY" => Some("very-secret-key".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Settings, ConfigError> {
    // The file reader with every registered source, as the binary runs it.
    Settings::from_toml(Path::new("t.toml"), text, &env, &crate::configs())
}

#[test]
fn good_config_loads_with_defaults_and_redacts() {
    let s = load(GOOD).unwrap();
    // The source's own defaults for the keys every entry takes (Take Control: 24h).
    let t = &s.accounts[0].stream;
    assert_eq!(t.lookback, Duration::from_secs(86400));
    assert_eq!(t.window, Duration::from_secs(86400));
    assert_eq!(s.accounts[0].http.requests_per_second, 5.0);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("very-secret-key"), "{dbg}");
    assert!(!dbg.contains("postgres://"), "{dbg}");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            GOOD.replace("account = \"acme-us\"\n", ""),
            "takecontrol[0]",
            "account",
        ),
        (
            GOOD.replace("start = ", "schedule = \"61 * * * *\"\nstart = "),
            "takecontrol[0].schedule",
            "cron",
        ),
        (
            GOOD.replace("start = ", "colour = \"red\"\nstart = "),
            "takecontrol[0]",
            "colour",
        ),
        (
            GOOD.replace("${TAKECONTROL_KEY}", "${NOPE_KEY}"),
            "takecontrol[0].api_key",
            "NOPE_KEY",
        ),
        (
            GOOD.replace("start = ", "lookback = \"a while\"\nstart = "),
            "takecontrol[0].lookback",
            "duration",
        ),
        (
            format!("{GOOD}[[zendesk]]\naccount = \"z\"\n"),
            "zendesk",
            "unknown section `zendesk`; the file knows warehouse, server, engine, webhooks, privacy, audit, takecontrol, mluvii, superoffice",
        ),
        (format!("mluvii = 5\n{GOOD}"), "mluvii", "[[mluvii]] entry"),
        (
            format!(
                "{GOOD}[[takecontrol]]\naccount = \"acme-us\"\nbase_url = \"https://x.example\"\napi_key = \"k\"\nstart = \"2024-01-01T00:00:00Z\"\n"
            ),
            "takecontrol[1].account",
            "appears twice",
        ),
    ];
    for (text, key, word) in cases {
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(word), "{e}");
        assert!(e.contains("t.toml"), "{e}");
    }
}

#[test]
fn webhook_settings_are_checked_and_never_shown() {
    const ML: &str = "[[mluvii]]\naccount = \"main\"\nclient_id = \"u\"\nclient_secret = \"s\"\nstart = \"2024-01-01T00:00:00Z\"\n";
    let s = load(&format!(
        "{GOOD}[webhooks]\n{ML}webhook_user = \"hook\"\nwebhook_password = \"hook-pw-1\"\n"
    ))
    .unwrap();
    assert_eq!(s.webhooks.as_ref().unwrap().listen.port(), 8080);
    assert!(!format!("{s:?}").contains("hook-pw-1"), "Debug redacts it");
    let cases = [
        (
            format!("{GOOD}{ML}webhook_user = \"hook\"\n"),
            "mluvii[0].webhook_password",
            "go together",
        ),
        (
            format!("{GOOD}{ML}webhook_password = \"pw\"\n"),
            "mluvii[0].webhook_user",
            "go together",
        ),
        (
            format!("{GOOD}{ML}webhook_user = \"a:b\"\nwebhook_password = \"pw\"\n"),
            "mluvii[0].webhook_user",
            "`:`",
        ),
        (
            format!(
                "{GOOD}[server]\nlisten = \"0.0.0.0:9000\"\n[webhooks]\nlisten = \"127.0.0.1:9000\"\n"
            ),
            "webhooks.listen",
            "its own port",
        ),
        (
            format!("{GOOD}[webhooks]\nlisten = \"everywhere\"\n"),
            "webhooks.listen",
            "address:port",
        ),
    ];
    for (text, key, word) in cases {
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(word), "{e}");
        assert!(!e.contains("hook-pw") && !e.contains("pw\""), "{e}");
    }
}

#[test]
fn syntax_error_does_not_echo_values() {
    let e = load("[warehouse]\nurl = \"postgres://u:pw@h/db\" junk\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains("pw@h"), "{e}");
}

#[test]
fn schedule_accepts_five_fields_and_optional_seconds() {
    assert!(Schedule::parse("*/5 * * * *").is_ok());
    assert!(Schedule::parse("0 */5 * * * *").is_ok());
    assert!(Schedule::parse("* * *").is_err());
    let s = Schedule::parse("0 * * * *").unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2024-01-01T10:15:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        s.next_after(t).unwrap().to_rfc3339(),
        "2024-01-01T11:00:00+00:00"
    );
}
