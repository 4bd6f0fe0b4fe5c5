//! Start-up milestones logged once each (`meshcall::timing` at info), so a benchmark can
//! time the real window from the outside: first frame drawn, self-preview shown, joined,
//! first remote video shown.

use std::time::Instant;

/// When things first happened.
#[derive(Debug)]
pub struct Milestones {
    started: Instant,
    join_sent: Option<Instant>,
    logged: Vec<&'static str>,
}

impl Default for Milestones {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            join_sent: None,
            logged: Vec::new(),
        }
    }
}

impl Milestones {
    /// Logs `what` the first time, in ms since the window started (and since the join
    /// was sent, once it was).
    pub fn reached(&mut self, what: &'static str) {
        if self.logged.contains(&what) {
            return;
        }
        self.logged.push(what);
        let since_start = self.started.elapsed().as_secs_f64() * 1000.0;
        let since_join = self.join_sent.map_or_else(String::new, |t| {
            format!(", {:.0} ms after join", t.elapsed().as_secs_f64() * 1000.0)
        });
        tracing::info!(target: "meshcall::timing", "{what}: {since_start:.0} ms after start{since_join}");
    }

    /// The join went out now (only the first join of a run counts).
    pub fn join_sent(&mut self) {
        self.join_sent.get_or_insert_with(Instant::now);
    }
}
