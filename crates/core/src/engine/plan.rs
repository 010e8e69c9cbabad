//! The plan of one run: which range it covers ([`Range`]), cut into windows as the source's
//! [`Windowing`] asks, with the storage limit applied.

use chrono::{DateTime, TimeDelta, Utc};

use super::source::Stream;
use super::windows::{AdaptiveWindows, Windowing};
use crate::model::{StreamState, Window};

/// Which range a run covers.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// The regular cycle: from the watermark (minus lookback) to now.
    Regular,
    /// A backfill of `[from, to)`; the watermark never moves backwards.
    Backfill {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// The windows of one run: as planned by the source, or sized as the run goes.
pub(super) enum Plan {
    Fixed(std::collections::VecDeque<Window>),
    Adaptive(AdaptiveWindows),
}

impl Plan {
    /// The windows of a run of `source` over `range`, and where the run starts and ends.
    pub(super) fn for_run(
        source: &Stream,
        range: Range,
        state: &StreamState,
    ) -> (Plan, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let windowing = source.windowing();
        let planned = match range {
            Range::Regular => windowing.plan(source.settings(), state.watermark, Utc::now()),
            Range::Backfill { from, to } => {
                windowing.plan_range(source.settings(), from, to.min(Utc::now()))
            }
        };
        let planned = within_retention(source, planned);
        let start = planned.first().map(|w| w.start);
        let end = planned.last().map(|w| w.end);
        // Start where the last run left the window size (kept in sync_state).
        let remembered = state
            .window_seconds
            .map(|s| TimeDelta::seconds(i64::from(s)));
        (Plan::new(planned, source, remembered), start, end)
    }

    fn new(planned: Vec<Window>, source: &Stream, step: Option<TimeDelta>) -> Self {
        match (planned.first(), planned.last()) {
            (Some(first), Some(last))
                if matches!(source.windowing(), Windowing::Adaptive | Windowing::Paged) =>
            {
                let max =
                    TimeDelta::from_std(source.settings().window).unwrap_or(TimeDelta::days(1));
                let mut a = AdaptiveWindows::new(first.start, last.end, max);
                match (step, source.windowing()) {
                    (Some(step), _) => a.set_step(step),
                    (None, Windowing::Paged) => a.set_step(max),
                    _ => {}
                }
                Plan::Adaptive(a)
            }
            _ => Plan::Fixed(planned.into()),
        }
    }

    pub(super) fn step(&self) -> Option<TimeDelta> {
        match self {
            Plan::Fixed(_) => None,
            Plan::Adaptive(a) => Some(a.step()),
        }
    }

    pub(super) fn next_window(&mut self) -> Option<Window> {
        match self {
            Plan::Fixed(q) => q.pop_front(),
            Plan::Adaptive(a) => a.next_window(),
        }
    }

    pub(super) fn feedback(&mut self, records: usize) {
        if let Plan::Adaptive(a) = self {
            a.feedback(records);
        }
    }

    pub(super) fn retry_smaller(&mut self, w: &Window) -> bool {
        match self {
            Plan::Fixed(_) => false,
            Plan::Adaptive(a) => a.retry_smaller(w),
        }
    }

    pub(super) fn remaining(&self) -> usize {
        match self {
            Plan::Fixed(q) => q.len(),
            Plan::Adaptive(a) => a.remaining(),
        }
    }
}

/// The windows of a plan from the storage limit on (`retain_sessions`): a `start` or a backfill
/// from before it is moved up to it, and says so; what lies before it is not read (a session
/// written anyway, by a lookback, is removed again in its transaction).
fn within_retention(source: &Stream, planned: Vec<Window>) -> Vec<Window> {
    let Some(d) = source.privacy().and_then(|p| p.privacy.retain_sessions) else {
        return planned;
    };
    let cut = crate::privacy::cutoff(d, Utc::now());
    let Some(first) = planned.first().map(|w| w.start) else {
        return planned;
    };
    if first >= cut {
        return planned;
    }
    let k = source.key();
    tracing::info!(source = k.source, account = %k.account, stream = k.stream, from = %first, to = %cut, "the range starts before the storage limit (retain_sessions): moved up to it");
    planned
        .into_iter()
        .filter(|w| w.end > cut)
        .map(|mut w| {
            w.start = w.start.max(cut);
            w
        })
        .collect()
}
