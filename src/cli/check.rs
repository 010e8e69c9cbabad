//! `sessionsync check`: the config, the warehouse (and whether stored rows follow the privacy
//! policy), each account's API with one quick call, and each account's webhook, one line each.

use std::sync::Arc;
use std::time::Duration;

use super::{Failure, load};
use crate::config::Settings;
use crate::engine::{Stream, WebhookState};
use crate::telemetry::Metrics;
use crate::warehouse::Warehouse;

/// The `OK`/`FAIL` lines, and whether any failed.
#[derive(Default)]
struct Lines {
    failed: bool,
}

impl Lines {
    fn say(&mut self, ok: bool, item: &str, text: &str) {
        self.failed |= !ok;
        crate::outln!("{:<5} {item:<28} {text}", if ok { "OK" } else { "FAIL" });
    }

    /// A source's answer: one line each; a line that begins `FAIL: ` fails, one that begins
    /// `WARN: ` is shown as a warning.
    fn say_lines(&mut self, item: &str, text: &str) {
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("FAIL: ") {
                self.say(false, item, t);
            } else if let Some(t) = line.strip_prefix("WARN: ") {
                crate::outln!("{:<5} {item:<28} {t}", "WARN");
            } else {
                self.say(true, item, line);
            }
        }
    }
}

pub(super) async fn check(path: Option<std::path::PathBuf>) -> Result<u8, Failure> {
    let mut settings = load(path)?;
    let enabled = settings.enabled().count();
    // Nothing to check is what `sync` says it is: a usage error, with what to add.
    if enabled == 0 {
        return Err(super::empty_selection(&settings, None, None));
    }
    let mut lines = Lines::default();
    lines.say(
        true,
        "config",
        &format!("{}: {enabled} enabled stream(s)", settings.file.display()),
    );
    warehouse(&settings, &mut lines).await;
    // One quick try each: a check should answer in seconds, not ride out an outage.
    for h in settings.accounts.iter_mut().map(|a| &mut a.http) {
        h.max_retries = 1;
        h.max_retry_wait = Duration::from_secs(2);
        h.timeout = h.timeout.min(Duration::from_secs(15));
    }
    let metrics = Arc::new(Metrics::new());
    let streams = crate::sources::build(&settings, &metrics, None, None);
    for s in &streams {
        let item = format!("{}/{}", s.key().source, s.key().account);
        match s.check().await {
            Ok(text) => lines.say_lines(&item, &text),
            // The item names the account; the error names the host, and says no more of runs.
            Err(e) => lines.say(false, &item, &e.to_string()),
        }
    }
    webhooks(&settings, &streams, &mut lines).await;
    Ok(if lines.failed { 1 } else { 0 })
}

/// The warehouse answers, and its stored rows follow the privacy policy.
async fn warehouse(settings: &Settings, lines: &mut Lines) {
    let wh = match Warehouse::new(&settings.warehouse) {
        Ok(wh) => wh,
        Err(e) => return lines.say(false, "warehouse", &e.to_string()),
    };
    let c = match wh.conn().await {
        Ok(c) => c,
        Err(e) => return lines.say(false, "warehouse", &e.to_string()),
    };
    let version = match c.query_one("SHOW server_version", &[]).await {
        Ok(r) => r.get::<_, String>(0),
        Err(e) => {
            let text = format!("connected, but a query failed: {e}");
            return lines.say(false, "warehouse", &text);
        }
    };
    let text = format!("PostgreSQL {version} reachable; schema `{}`", wh.schema());
    lines.say(true, "warehouse", &text);
    let want = crate::sources::expected_privacy(settings);
    // Before the first migration there is nothing stored to compare.
    let Ok(drift) = crate::privacy::apply::check(&**c, &want).await else {
        return;
    };
    match drift.total() {
        0 => {
            let policy = settings.privacy.policies.describe();
            lines.say(true, "privacy", &format!("stored rows follow the policy ({policy})"));
        }
        n => lines.say(
            false,
            "privacy",
            &format!(
                "{n} stored session(s) were written under another policy; run `sessionsync privacy apply`"
            ),
        ),
    }
}

/// The listener's settings against the accounts', then what each vendor says of its webhook.
async fn webhooks(settings: &Settings, streams: &[Arc<Stream>], lines: &mut Lines) {
    let endpoints = crate::webhooks::Endpoints::new(streams);
    match (&settings.webhooks, endpoints.len()) {
        (None, 0) => {}
        (None, n) => lines.say(
            false,
            "webhooks",
            &format!(
                "{n} account(s) have webhook settings, but there is no `[webhooks] listen`: their events are not received"
            ),
        ),
        (Some(w), n) => lines.say(
            true,
            "webhooks",
            &format!("listener on {} for {n} account(s)", w.listen),
        ),
    }
    for s in streams {
        let Some(hook) = s.webhook() else { continue };
        let item = format!("{}/{} webhook", s.key().source, s.key().account);
        match hook.state().await {
            Ok(WebhookState::Active(t) | WebhookState::Unknown(t)) => lines.say(true, &item, &t),
            Ok(WebhookState::Problem(t)) => lines.say(false, &item, &t),
            Err(e) => lines.say(false, &item, &e.to_string()),
        }
    }
}
