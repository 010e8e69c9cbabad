//! The tenant's state (sources.md §2, the state API): which host serves it now, and whether it
//! runs; and the environments' hosts, where the state API and authentication live.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::sources::lenient::Fields;

/// A state without a readable `ValidUntil` is kept this long.
const STATE_DEFAULT_AGE: TimeDelta = TimeDelta::minutes(5);

/// The host SuperOffice names by an environment: `sod`, `stage`, `online`, or a URL (a
/// private endpoint, a simulator).
pub fn environment_url(environment: &str) -> Result<reqwest::Url, String> {
    let e = environment.trim();
    let url = match e {
        "sod" | "stage" | "online" => format!("https://{e}.superoffice.com"),
        _ if e.starts_with("https://") || e.starts_with("http://") => e.to_string(),
        _ => {
            return Err(format!(
                "`{e}` is not an environment: give \"sod\" (development), \"stage\", \"online\" (production), or a URL"
            ));
        }
    };
    reqwest::Url::parse(&url).map_err(|err| format!("`{e}` is not a URL ({err})"))
}

/// What the state API says of the tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantState {
    /// `Running`, `OnlineMaintenance`, `OfflineMaintenance`, … (a number is named).
    pub state: String,
    pub running: bool,
    /// The tenant's root (`https://sod2.superoffice.com/Cust12345`), under which `/api/v1/…` lie.
    pub endpoint: Option<reqwest::Url>,
    pub valid_until: Option<DateTime<Utc>>,
    /// When it was read.
    pub read_at: DateTime<Utc>,
}

impl TenantState {
    /// Whether it may be used without asking again: a running tenant's state until its
    /// `ValidUntil`; a state that says the tenant is not running never (each run asks the state
    /// API, one request to the environment's host and none to the tenant, whether it runs again).
    pub(super) fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.running && now < self.valid_until.unwrap_or(self.read_at + STATE_DEFAULT_AGE)
    }
}

/// SuperOffice's tenant states by number (sources.md §2).
fn state_name(v: &Value) -> String {
    match v.as_i64() {
        Some(n) => match n {
            0 => "Unknown",
            1 => "Provisioning",
            2 => "Running",
            3 => "Deleted",
            4 => "Suspended",
            5 => "OnlineMaintenance",
            6 => "OfflineMaintenance",
            8 => "ProvisioningFailed",
            10 => "Deleting",
            11 => "DeleteFailed",
            12 => "MigrationPending",
            _ => return format!("state {n}"),
        }
        .to_string(),
        None => v.as_str().unwrap_or("Unknown").to_string(),
    }
}

/// A state API answer.
pub fn parse_state(body: &[u8], now: DateTime<Utc>) -> Result<TenantState, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("not JSON ({e}): an HTML page or a cut body?"))?;
    let o = v
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let f = Fields::new(o);
    let state = f
        .get("state")
        .map(state_name)
        .unwrap_or_else(|| "Unknown".into());
    let running = match f.get("isrunning").and_then(Value::as_bool) {
        Some(b) => b,
        None => matches!(state.as_str(), "Running" | "OnlineMaintenance"),
    };
    let endpoint = match f.text("endpoint") {
        Some(e) => Some(e),
        // `Api` is the endpoint plus `/api`.
        None => f
            .text("api")
            .map(|a| a.trim_end_matches('/').trim_end_matches("/api").to_string()),
    };
    let endpoint = match endpoint {
        Some(e) => Some(
            reqwest::Url::parse(e.trim_end_matches('/'))
                .map_err(|err| format!("Endpoint `{e}` is not a URL ({err})"))?,
        ),
        None => None,
    };
    let valid_until = f
        .text("validuntil")
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(TenantState {
        state,
        running,
        endpoint,
        valid_until,
        read_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments() {
        assert_eq!(
            environment_url("online").unwrap().as_str(),
            "https://online.superoffice.com/"
        );
        assert_eq!(
            environment_url("http://127.0.0.1:9/").unwrap().as_str(),
            "http://127.0.0.1:9/"
        );
        assert!(
            environment_url("production")
                .unwrap_err()
                .contains("\"sod\"")
        );
    }

    #[test]
    fn state_answers() {
        let now = Utc::now();
        let s = parse_state(
            br#"{"ContextIdentifier":"Cust1","Endpoint":"https://sod2.superoffice.com/Cust1","State":"Running","IsRunning":true,"ValidUntil":"2099-01-01T00:00:00Z","Api":"https://sod2.superoffice.com/Cust1/api"}"#,
            now,
        )
        .unwrap();
        assert!(s.running && s.fresh(now));
        assert_eq!(
            s.endpoint.unwrap().as_str(),
            "https://sod2.superoffice.com/Cust1"
        );
        let s = parse_state(
            br#"{"State":6,"Api":"https://sod3.superoffice.com/Cust1/api/"}"#,
            now,
        )
        .unwrap();
        assert_eq!(s.state, "OfflineMaintenance");
        assert!(!s.running);
        assert_eq!(
            s.endpoint.unwrap().as_str(),
            "https://sod3.superoffice.com/Cust1"
        );
        // A down tenant is asked again within minutes, whatever ValidUntil says.
        let down = parse_state(br#"{"State":"OfflineMaintenance","IsRunning":false,"ValidUntil":"2099-01-01T00:00:00Z"}"#, now).unwrap();
        assert!(!down.fresh(now));
        assert!(parse_state(b"<html>", now).is_err());
    }
}
