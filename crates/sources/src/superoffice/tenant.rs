//! The tenant's state (sources.md §2, the state API): which host serves it now, and whether it
//! runs; and the environments' hosts, where the state API and authentication live.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::lenient::Fields;

/// A state without a readable `ValidUntil` is kept this long.
const STATE_DEFAULT_AGE: TimeDelta = TimeDelta::minutes(5);

/// The host SuperOffice names by an environment: `sod` (development), `stage` (its login,
/// JWKS and state host is `qaonline.superoffice.com`; SuperOffice's own system user client,
/// SuperOffice.WebApi's `SystemUserClient`, takes "sod", "qaonline" or "online", and the docs'
/// "Environments" page names qaonline the stage host), `qaonline` (the same), `online`
/// (production), or a URL (a private endpoint, a simulator): `https`, or `http` on a loopback
/// host only (the ticket and the client secret travel to it).
pub fn environment_url(environment: &str) -> Result<reqwest::Url, String> {
    let e = environment.trim();
    let url = match e {
        "sod" | "online" | "qaonline" => format!("https://{e}.superoffice.com"),
        "stage" => "https://qaonline.superoffice.com".to_string(),
        _ if e.starts_with("https://") || e.starts_with("http://") => e.to_string(),
        _ => {
            return Err(format!(
                "`{e}` is not an environment: give \"sod\" (development), \"stage\" (or \"qaonline\"), \"online\" (production), or a URL"
            ));
        }
    };
    let url = reqwest::Url::parse(&url).map_err(|err| format!("`{e}` is not a URL ({err})"))?;
    if url.scheme() == "http" && !loopback(&url) {
        return Err(format!(
            "`{e}` is plain http to a host that is not this machine: the system user token, the client secret and every ticket would cross the network unencrypted; use https (http is accepted for a loopback address only: a simulator, a local proxy)"
        ));
    }
    Ok(url)
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, ::1).
pub fn loopback(url: &reqwest::Url) -> bool {
    match ip_of(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
    }
}

/// The host as an IP address, when it is one.
fn ip_of(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    let h = url.host_str()?;
    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Where SuperOffice may send the tenant's requests (a ticket and the client secret go with each):
/// the domain a named environment's hosts share, or a URL environment's own host's domain.
fn domain_of(environment: &reqwest::Url) -> String {
    let host = environment.host_str().unwrap_or("").to_ascii_lowercase();
    if host.ends_with(".superoffice.com") || host == "superoffice.com" {
        return "superoffice.com".into();
    }
    // An IP address is its own domain; a name of three labels or more stands for the domain
    // below its first label (login.example.com: example.com).
    let is_ip = ip_of(environment).is_some();
    let labels: Vec<&str> = host.split('.').collect();
    if is_ip || labels.len() < 3 {
        host
    } else {
        labels[1..].join(".")
    }
}

/// Whether a tenant root the state API or the JWT named (`Endpoint`, `Api`, `webapi_url`) may
/// receive the ticket: `https` (or `http` on a loopback host, where the environment itself is
/// http) on a host under the environment's domain. Anything else is refused before a request
/// carries a credential there (sources.md §2, "Where the ticket may go").
pub fn allowed_root(environment: &reqwest::Url, root: &reqwest::Url) -> Result<(), String> {
    let host = root.host_str().unwrap_or("").to_ascii_lowercase();
    let shown = crate::http::origin(root);
    let scheme_ok = match root.scheme() {
        "https" => true,
        "http" => loopback(root) && environment.scheme() == "http",
        _ => false,
    };
    if !scheme_ok {
        return Err(format!(
            "{shown} is not https: the ticket and the client secret are sent only over TLS (plain http only to this machine, with a URL environment that is)"
        ));
    }
    let domain = domain_of(environment);
    if host != domain && !host.ends_with(&format!(".{domain}")) {
        return Err(format!(
            "{shown} is not under {domain}, the environment's domain: the ticket and the client secret are sent nowhere else (a proxy, a private endpoint or a fault at the vendor may have named it)"
        ));
    }
    Ok(())
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

/// What a tenant's state means for a run (sources.md §2; SuperOffice's "Tenant status" page and
/// its state API's `TenantState` enum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outlook {
    /// Running, or OnlineMaintenance (the API is up).
    Runs,
    /// OfflineMaintenance, Provisioning or MigrationPending: expected, and it passes (usually
    /// minutes; a migration can take weeks): the run ends `unavailable`.
    Wait,
    /// Any other state: a failure, with what to do.
    Fail(String),
}

impl TenantState {
    /// What the state means for a run.
    pub fn outlook(&self) -> Outlook {
        if self.running {
            return Outlook::Runs;
        }
        let todo = match self.state.as_str() {
            "OfflineMaintenance" | "Provisioning" | "MigrationPending" => return Outlook::Wait,
            "Running" | "OnlineMaintenance" => return Outlook::Runs,
            "Deleted" => {
                "the tenant was deleted at SuperOffice (its docs: \"forget all about it\"): disable or remove this account"
            }
            "Deleting" => "the tenant is being deleted: disable or remove this account",
            "DeleteFailed" => {
                "a deletion of the tenant failed: its owner and SuperOffice support must settle it; disable this account meanwhile"
            }
            "Suspended" => {
                "the tenant is suspended (in termination): its owner must reactivate it with SuperOffice"
            }
            "ProvisioningFailed" => {
                "the tenant's provisioning failed: its owner or SuperOffice support must act"
            }
            "Unknown" => {
                "SuperOffice reports an incident, or does not know this context identifier: check `context_identifier` and SuperOffice's status page"
            }
            _ => {
                "a state sessionsync does not know: check the tenant's status page; the next run asks again"
            }
        };
        Outlook::Fail(todo.to_string())
    }

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
    fn the_ticket_goes_only_to_the_environments_domain_over_tls() {
        let online = environment_url("online").unwrap();
        let ok = |u: &str| allowed_root(&online, &reqwest::Url::parse(u).unwrap());
        assert!(ok("https://sod2.superoffice.com/Cust1").is_ok());
        assert!(ok("https://online3.superoffice.com/Cust1").is_ok());
        for bad in [
            "http://sod2.superoffice.com/Cust1",
            "https://sod2.superoffice.com.evil.example/Cust1",
            "https://evilsuperoffice.com/Cust1",
            "https://127.0.0.1/Cust1",
            "http://127.0.0.1:9/Cust1",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        // A simulator on this machine: its own host, http allowed.
        let sim = environment_url("http://127.0.0.1:4000").unwrap();
        let ok = |u: &str| allowed_root(&sim, &reqwest::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:4001/Cust1").is_ok());
        assert!(ok("http://127.0.0.2:4001/Cust1").is_err());
        assert!(ok("https://sod2.superoffice.com/Cust1").is_err());
        // A private endpoint: its domain.
        let private = environment_url("https://login.example.com").unwrap();
        let ok = |u: &str| allowed_root(&private, &reqwest::Url::parse(u).unwrap());
        assert!(ok("https://crm7.example.com/Cust1").is_ok());
        assert!(ok("https://crm7.example.org/Cust1").is_err());
        assert!(
            environment_url("http://login.example.com")
                .unwrap_err()
                .contains("plain http")
        );
    }

    #[test]
    fn environments() {
        assert_eq!(
            environment_url("online").unwrap().as_str(),
            "https://online.superoffice.com/"
        );
        for name in ["stage", "qaonline"] {
            assert_eq!(
                environment_url(name).unwrap().as_str(),
                "https://qaonline.superoffice.com/"
            );
        }
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
