//! What people read of runs: one line per run, the exit code of a set of runs, and live bars
//! per stream on a terminal (`sync`, `backfill`, `demo`).

use std::sync::Arc;

use crate::engine::{Outcome, Progress, RunReport, Source};

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
    if let Some(n) = t.nulled_summary() {
        s.push_str(&format!("; {n}"));
    }
    if r.outcome == Outcome::Skipped {
        s.push_str(" (another sessionsync process holds this stream)");
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("\n  error: {e}"));
    }
    s
}

/// On a terminal, one live bar per stream while it runs (windows, rows, rate, ETA), cleared
/// when it ends (the stream's line says how it went); otherwise nothing, or, for a backfill,
/// a progress log line per window.
pub struct StreamBars {
    tty: bool,
    bars: Vec<indicatif::ProgressBar>,
    /// Whether each bar is on the terminal yet (a stream's bar appears when it starts).
    shown: Vec<std::sync::atomic::AtomicBool>,
    keys: Vec<String>,
    multi: indicatif::MultiProgress,
}

impl StreamBars {
    pub fn new(sources: &[Arc<dyn Source>]) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:<32} [{bar:30}] {pos}/{len} windows, {msg} ({per_sec}, ETA {eta})",
        )
        .map(|s| s.progress_chars("#>-"))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let bars = sources
            .iter()
            .map(|s| {
                let bar = if tty {
                    indicatif::ProgressBar::new(0)
                } else {
                    indicatif::ProgressBar::hidden()
                };
                bar.set_style(style.clone());
                bar.set_prefix(s.key().to_string());
                bar
            })
            .collect();
        StreamBars {
            tty,
            bars,
            shown: sources.iter().map(|_| Default::default()).collect(),
            keys: sources.iter().map(|s| s.key().to_string()).collect(),
            multi,
        }
    }

    /// Stream `i` got this far; `log` also writes a progress line when there is no terminal.
    pub fn show(&self, i: usize, p: &Progress, log: bool) {
        let rows = p.written + p.unchanged;
        let bar = &self.bars[i];
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("{rows} rows"));
        if self.tty && !self.shown[i].swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.multi.add(bar.clone());
        }
        if log && !self.tty {
            let eta = (p.done > 0 && p.done < p.total)
                .then(|| p.elapsed.mul_f64((p.total - p.done) as f64 / p.done as f64));
            tracing::info!(stream = %self.keys[i], done = p.done, total = p.total, rows, eta_seconds = eta.map(|e| e.as_secs()), "backfill progress");
        }
    }

    pub fn finish(&self, i: usize) {
        self.bars[i].finish_and_clear();
    }
}
