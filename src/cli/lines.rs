//! On a terminal, a live line per account while a command works on it (`audit`, `renormalize`);
//! log lines and finished accounts' lines go above them.

/// A live line per account on a terminal; plain lines otherwise.
pub(super) struct Lines {
    pub(super) names: Vec<String>,
    bars: Vec<indicatif::ProgressBar>,
    shown: Vec<std::sync::atomic::AtomicBool>,
    multi: indicatif::MultiProgress,
    tty: bool,
}

impl Lines {
    pub(super) fn new(names: impl Iterator<Item = String>) -> Self {
        let names: Vec<String> = names.collect();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let style =
            indicatif::ProgressStyle::with_template("{spinner} {prefix:<32} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|n| {
                let bar = indicatif::ProgressBar::hidden();
                bar.set_style(style.clone());
                bar.set_prefix(n.clone());
                bar
            })
            .collect();
        let multi = indicatif::MultiProgress::new();
        if tty {
            crate::telemetry::terminal::attach(multi.clone());
        }
        Lines {
            shown: names.iter().map(|_| Default::default()).collect(),
            names,
            bars,
            multi,
            tty,
        }
    }

    pub(super) fn show(&self, i: usize, message: String) {
        let bar = &self.bars[i];
        bar.set_message(message);
        if self.tty && !self.shown[i].swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.multi.add(bar.clone());
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
    }

    pub(super) fn finish(&self, i: usize) {
        let bar = &self.bars[i];
        bar.finish_and_clear();
        if self.shown[i].load(std::sync::atomic::Ordering::Relaxed) {
            self.multi.remove(bar);
        }
    }

    pub(super) fn println(&self, line: &str) {
        if self.tty {
            self.multi.suspend(|| crate::outln!("{line}"));
        } else {
            crate::outln!("{line}");
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if self.tty {
            crate::telemetry::terminal::detach();
            let _ = self.multi.clear();
        }
    }
}
