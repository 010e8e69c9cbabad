//! What people read of runs: one line per run, the exit code of a set of runs, and live bars
//! per stream on a terminal (`sync`, `backfill`, `demo`).

use std::sync::Arc;

use crate::engine::{AuditReport, Outcome, Progress, RunReport, Stream};

/// 1 if any stream failed, else 3 if any was partial, else 0.
pub fn exit_code(reports: &[RunReport]) -> u8 {
    if reports.iter().any(|r| r.outcome == Outcome::Failed) {
        1
    } else if reports.iter().any(|r| r.outcome == Outcome::Partial) {
        3
    } else {
        0
    }
}

/// One line about a run, for people.
pub fn describe(r: &RunReport) -> String {
    let t = &r.totals;
    let mut s = format!(
        "{}: {} — {} written, {} unchanged, {} rejected; {} requests ({} retried)",
        r.key,
        r.outcome.as_str(),
        t.written,
        t.unchanged,
        t.rejected,
        t.requests,
        t.retries
    );
    if let Some(w) = r.watermark {
        s.push_str(&format!("; watermark {}", w.format("%Y-%m-%d %H:%M:%SZ")));
    }
    if t.fallbacks > 0 {
        s.push_str(&format!(
            "; {} read by id (listed rows incomplete)",
            t.fallbacks
        ));
    }
    if let Some(n) = t.nulled_summary() {
        s.push_str(&format!("; {n}"));
    }
    if r.outcome == Outcome::Skipped {
        s.push_str(" (another sessionsync process holds this stream)");
    }
    if r.outcome == Outcome::Unavailable {
        s.push_str(" (the vendor reports the tenant not running: not a failure, nothing lost)");
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("\n  error: {e}"));
    }
    s
}

/// One line about an account's audit, for people.
pub fn describe_audit(r: &AuditReport) -> String {
    let name = format!("{}/{}", r.key.source, r.key.account);
    if r.outcome == Outcome::Skipped {
        return format!(
            "{name}: skipped — {}",
            r.error
                .as_deref()
                .unwrap_or("another sessionsync process is auditing this account")
        );
    }
    let Some(days) = r.days else {
        return format!(
            "{name}: nothing to audit — every day asked for is before the account's `start` or its storage limit (retain_sessions)"
        );
    };
    let verb = if r.dry_run { "would store" } else { "stored" };
    let flag = if r.dry_run { "would flag" } else { "flagged" };
    let mut s = format!(
        "{name}: {} day{} ({days}) — listed {}, stored {}, missing {} ({verb}), gone {} ({flag} deleted at the source)",
        days.len(),
        if days.len() == 1 { "" } else { "s" },
        r.listed(),
        r.stored(),
        r.missing(),
        r.gone()
    );
    let incomplete: Vec<_> = r.per_day.iter().filter(|d| !d.complete).collect();
    if let Some(e) = &r.error {
        s.push_str(&format!("\n  error: {e}"));
    } else if incomplete.is_empty() {
        s.push_str(if r.dry_run {
            "; every day listed completely"
        } else {
            "; every day listed completely: the warehouse matches the vendor's list"
        });
    } else {
        s.push_str(&format!(
            "; {} day{} could not be listed completely (nothing flagged for {}):",
            incomplete.len(),
            if incomplete.len() == 1 { "" } else { "s" },
            if incomplete.len() == 1 { "it" } else { "them" }
        ));
        for d in incomplete {
            s.push_str(&format!(
                "\n  {}: {}",
                d.day,
                d.error.as_deref().unwrap_or("listing failed")
            ));
        }
    }
    if r.totals.rejected > 0 {
        s.push_str(&format!(
            "\n  {} listed session(s) could not be stored: set aside in rejected_records",
            r.totals.rejected
        ));
    }
    s.push_str(&format!(
        "\n  {} requests ({} retried)",
        r.totals.requests, r.totals.retries
    ));
    s
}

/// On a terminal, one live bar per stream while it runs (the part of its time range covered,
/// rows, rate), removed when it ends, leaving only the stream's line; otherwise nothing, or,
/// for a backfill, a progress log line per window. While the bars are up, log lines and the
/// streams' lines go through them ([`StreamBars::println`], [`crate::telemetry::terminal`]), so
/// nothing is written across a bar.
pub struct StreamBars {
    tty: bool,
    bars: Vec<indicatif::ProgressBar>,
    /// Whether each bar is on the terminal yet (a stream's bar appears when it starts).
    shown: Vec<std::sync::atomic::AtomicBool>,
    keys: Vec<String>,
    multi: indicatif::MultiProgress,
    /// Off a terminal: when each stream started (and its request count then), and its rows so
    /// far, for a progress line every [`PROGRESS_EVERY`] ([`StreamBars::progress_lines`]).
    started: Vec<std::sync::Mutex<Option<(std::time::Instant, u64)>>>,
    rows: Vec<std::sync::atomic::AtomicU64>,
    ended: Vec<std::sync::atomic::AtomicBool>,
}

/// How often `sync` and `backfill` say where each running stream is when not on a terminal (a
/// log or a CI job), so that a long run never looks hung.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl StreamBars {
    pub fn new(sources: &[Arc<Stream>]) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{prefix:<32} [{bar:30}] {msg}")
            .map(|s| s.progress_chars("#>-"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let bars = sources
            .iter()
            .map(|s| {
                let bar = indicatif::ProgressBar::hidden();
                bar.set_style(style.clone());
                bar.set_prefix(s.key().to_string());
                bar
            })
            .collect();
        if tty {
            crate::telemetry::terminal::attach(multi.clone());
        }
        StreamBars {
            tty,
            bars,
            shown: sources.iter().map(|_| Default::default()).collect(),
            keys: sources.iter().map(|s| s.key().to_string()).collect(),
            multi,
            started: sources.iter().map(|_| Default::default()).collect(),
            rows: sources.iter().map(|_| Default::default()).collect(),
            ended: sources.iter().map(|_| Default::default()).collect(),
        }
    }

    /// Whether the bars are drawn (both outputs are a terminal).
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// Stream `i` got its slot and starts now, with `requests` sent by its account so far.
    pub fn start(&self, i: usize, requests: u64) {
        *self.started[i].lock().expect("started") = Some((std::time::Instant::now(), requests));
    }

    /// One line per stream running now: how long, requests and rows so far (`requests(i)`: the
    /// account's requests sent so far).
    pub fn progress_lines(&self, requests: impl Fn(usize) -> u64) -> Vec<String> {
        use std::sync::atomic::Ordering::Relaxed;
        (0..self.keys.len())
            .filter(|i| !self.ended[*i].load(Relaxed))
            .filter_map(|i| {
                let (at, before) = (*self.started[i].lock().expect("started"))?;
                Some(format!(
                    "{}: running for {} s — {} requests, {} rows so far",
                    self.keys[i],
                    at.elapsed().as_secs(),
                    requests(i).saturating_sub(before),
                    self.rows[i].load(Relaxed)
                ))
            })
            .collect()
    }

    /// Stream `i` got this far; `log` also writes a progress line when there is no terminal.
    pub fn show(&self, i: usize, p: &Progress, log: bool) {
        let rows = p.written + p.unchanged;
        self.rows[i].store(rows, std::sync::atomic::Ordering::Relaxed);
        let bar = &self.bars[i];
        let secs = |d: chrono::TimeDelta| d.num_seconds().max(0) as u64;
        bar.set_length(secs(p.span).max(1));
        bar.set_position(secs(p.covered));
        let rate = rows as f64 / p.elapsed.as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{}, {rows} rows ({rate:.0}/s)",
            covered_of(p.covered, p.span)
        ));
        if self.tty && !self.shown[i].swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.multi.add(bar.clone());
        }
        if log && !self.tty {
            tracing::info!(stream = %self.keys[i], done = p.done, total = p.total, covered_seconds = secs(p.covered), span_seconds = secs(p.span), rows, "backfill progress");
        }
    }

    /// Stream `i` ended: its bar leaves the terminal.
    pub fn finish(&self, i: usize) {
        self.ended[i].store(true, std::sync::atomic::Ordering::Relaxed);
        let bar = &self.bars[i];
        bar.finish_and_clear();
        if self.shown[i].load(std::sync::atomic::Ordering::Relaxed) {
            self.multi.remove(bar);
        }
    }

    /// Prints `line` on standard output, above the bars (they are redrawn below it).
    pub fn println(&self, line: &str) {
        if self.tty {
            self.multi.suspend(|| crate::outln!("{line}"));
        } else {
            crate::outln!("{line}");
        }
    }
}

impl Drop for StreamBars {
    fn drop(&mut self) {
        if self.tty {
            crate::telemetry::terminal::detach();
            let _ = self.multi.clear();
        }
    }
}

/// "12 of 30 days", "3 of 6 hours", "40 of 90 minutes": what a bar has covered of its range.
fn covered_of(covered: chrono::TimeDelta, span: chrono::TimeDelta) -> String {
    let s = span.num_seconds().max(0) as f64;
    let c = covered.num_seconds().clamp(0, span.num_seconds().max(0)) as f64;
    let (unit, size) = if s >= 2.0 * 86400.0 {
        ("days", 86400.0)
    } else if s >= 2.0 * 3600.0 {
        ("hours", 3600.0)
    } else if s >= 120.0 {
        ("minutes", 60.0)
    } else {
        ("seconds", 1.0)
    };
    let fmt = |v: f64| {
        let v = v / size;
        if v >= 10.0 || (v - v.round()).abs() < 0.05 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    format!("{} of {} {unit}", fmt(c), fmt(s))
}

#[cfg(test)]
mod tests {
    use super::covered_of;
    use chrono::TimeDelta;

    #[test]
    fn a_bar_says_how_much_of_its_range_is_covered() {
        assert_eq!(
            covered_of(TimeDelta::days(12), TimeDelta::days(30)),
            "12 of 30 days"
        );
        assert_eq!(
            covered_of(TimeDelta::hours(36), TimeDelta::hours(48)),
            "1.5 of 2 days"
        );
        assert_eq!(
            covered_of(TimeDelta::minutes(90), TimeDelta::hours(3)),
            "1.5 of 3 hours"
        );
        assert_eq!(
            covered_of(TimeDelta::seconds(30), TimeDelta::seconds(60)),
            "30 of 60 seconds"
        );
    }
}
