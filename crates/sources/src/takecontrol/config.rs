//! The `[[takecontrol]]` entries of the config file: their keys, defaults and checks (operations.md).

use chrono_tz::Tz;
use serde::Deserialize;

use crate::config::{self, KeyProblem, Secret};

pub const SOURCE: &str = "takecontrol";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeControlApi {
    Rest,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Xml,
    Json,
}

#[derive(Debug, Clone)]
pub struct TakeControlSettings {
    pub api: TakeControlApi,
    pub base_url: reqwest::Url,
    pub api_key: Secret,
    pub timezone: Tz,
    /// Legacy API only: ask for XML (default) or JSON output.
    pub output_format: OutputFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTakeControl {
    api: Option<TakeControlApi>,
    base_url: String,
    api_key: Secret,
    timezone: Option<String>,
    output_format: Option<OutputFormat>,
}

/// Reads and checks this source's own keys of one entry.
pub(super) fn read(entry: toml::Value, prefix: &str) -> Result<TakeControlSettings, KeyProblem> {
    let t: RawTakeControl = config::entry(entry, prefix)?;
    let k = |name: &str| format!("{prefix}.{name}");
    let base_url = config::parse_base_url(&k("base_url"), &t.base_url)?;
    if t.api_key.is_empty() {
        return Err((k("api_key"), "is empty".into()));
    }
    let tz_s = t.timezone.unwrap_or_else(|| "UTC".into());
    let timezone: Tz = tz_s.parse().map_err(|_| {
        (
            k("timezone"),
            format!("`{tz_s}` is not an IANA time zone such as \"UTC\" or \"Europe/Prague\""),
        )
    })?;
    Ok(TakeControlSettings {
        api: t.api.unwrap_or(TakeControlApi::Rest),
        base_url,
        api_key: t.api_key,
        timezone,
        output_format: t.output_format.unwrap_or(OutputFormat::Xml),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "account = \"acme-us\"\nbase_url = \"https://api.us0.swi-rc.com\"\napi_key = \"very-secret-key\"\nstart = \"2024-01-01T00:00:00Z\"\n";

    #[test]
    fn defaults_and_checks() {
        let (entry, (stream, _)) = config::test_entry(&super::super::KIND, ENTRY);
        let t = read(entry, "takecontrol[0]").unwrap();
        assert_eq!(t.api, TakeControlApi::Rest);
        assert_eq!(t.output_format, OutputFormat::Xml);
        assert_eq!(t.timezone, chrono_tz::UTC);
        assert_eq!(stream.lookback, std::time::Duration::from_secs(86400));
        assert_eq!(t.api_key.expose(), "very-secret-key");
        assert!(!format!("{t:?}").contains("very-secret-key"));
        for (extra, key, word) in [
            (
                "timezone = \"Mars/Olympus\"\n",
                "takecontrol[0].timezone",
                "IANA",
            ),
            (
                "colour = \"red\"\n",
                "takecontrol[0].colour",
                "unknown field",
            ),
        ] {
            let (entry, _) = config::test_entry(&super::super::KIND, &format!("{ENTRY}{extra}"));
            let (k, problem) = read(entry, "takecontrol[0]").unwrap_err();
            assert!(k == key && problem.contains(word), "{k}: {problem}");
        }
        let (entry, _) =
            config::test_entry(&super::super::KIND, &ENTRY.replace("very-secret-key", ""));
        let (k, _) = read(entry, "takecontrol[0]").unwrap_err();
        assert_eq!(k, "takecontrol[0].api_key");
    }
}
