//! How one link gets back from ICE failure: a sans-IO core (connection states and the time
//! in, what to report and when to restart ICE out), so its timing is tested in simulated
//! milliseconds and the peer task only carries it out.
//!
//! ICE restart works in webrtc-rs 0.21 even after the agent reached Failed (checked by
//! `ice_restart_recovers_a_failed_connection` in the engine tests: connected again and RTP
//! flowing), so the connection is kept and only ICE is restarted; nothing is torn down and
//! no track or transceiver changes.
//!
//! Only the impolite side (the smaller id) offers restarts. Perfect negotiation would
//! resolve a collision, but the impolite side's offer wins every collision anyway, so a
//! polite restart could only be rolled back; with one side acting there is no glare at
//! all. Consent checks run both ways, so both sides see the failure. The polite side
//! waits, as long as the impolite side's attempts can take, then reports Failed. The
//! first attempt comes already [`RESTART_AFTER_DISCONNECTED`] into a disconnection.

use std::time::{Duration, Instant};

use webrtc::peer_connection::RTCPeerConnectionState;

use super::api::LinkState;

/// ICE restarts the impolite side offers for one failure before it reports Failed.
pub(crate) const RESTART_ATTEMPTS: u32 = 3;

/// How long a link may stay Disconnected before the impolite side restarts ICE without
/// waiting for Failed (which comes only after the failed timeout, 25 s by default): a
/// network change leaves the old candidate pair dead for good, and only a restart finds
/// the new one. A blip shorter than this recovers by consent alone.
pub(crate) const RESTART_AFTER_DISCONNECTED: Duration = Duration::from_secs(2);

/// Wait after Failed before restart attempt `n` (0-based): 250 ms doubling. The first
/// comes quickly, since Failed already means tens of seconds without consent; later ones
/// leave the network time to come back.
fn restart_delay(n: u32) -> Duration {
    Duration::from_millis(250u64 << n.min(6))
}

/// What the peer task should do when [`LinkRecovery::poll_timeout`] is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryAction {
    /// Offer an ICE restart (attempt number, from 1).
    RestartIce(u32),
    /// Give up: report the link Failed.
    GiveUp,
}

/// One link's recovery state; see the module docs.
#[derive(Debug)]
pub(crate) struct LinkRecovery {
    impolite: bool,
    /// How long one restart attempt gets to connect (the time ICE takes to call it failed).
    attempt_timeout: Duration,
    /// Restarts offered since the link was last connected.
    attempts: u32,
    /// Impolite: when the next restart is due. Polite: when to give up.
    due: Option<Instant>,
    /// Out of attempts; the link shows Failed until it connects again.
    gave_up: bool,
    /// The link was lost since it last connected (so connecting again is reconnecting).
    interrupted: bool,
}

impl LinkRecovery {
    /// Recovery for a link on which we are the `impolite` side (we offer restarts).
    pub(crate) fn new(impolite: bool, attempt_timeout: Duration) -> Self {
        Self {
            impolite,
            attempt_timeout,
            attempts: 0,
            due: None,
            gave_up: false,
            interrupted: false,
        }
    }

    fn active(&self) -> bool {
        self.interrupted || self.due.is_some() || self.attempts > 0
    }

    /// How long the polite side waits for the impolite side's restarts before giving up.
    fn polite_patience(&self) -> Duration {
        (0..RESTART_ATTEMPTS)
            .map(|n| restart_delay(n) + self.attempt_timeout)
            .sum::<Duration>()
            + self.attempt_timeout
    }

    /// The connection changed state at `now`; returns the link state to report, if any.
    pub(crate) fn handle_state(
        &mut self,
        now: Instant,
        state: RTCPeerConnectionState,
    ) -> Option<LinkState> {
        match state {
            RTCPeerConnectionState::Connected => {
                *self = Self::new(self.impolite, self.attempt_timeout);
                Some(LinkState::Connected)
            }
            RTCPeerConnectionState::Failed => {
                self.interrupted = true;
                if self.gave_up {
                    Some(LinkState::Failed)
                } else if !self.impolite {
                    self.due.get_or_insert(now + self.polite_patience());
                    Some(LinkState::Reconnecting)
                } else if self.attempts < RESTART_ATTEMPTS {
                    let next = now + restart_delay(self.attempts);
                    self.due = Some(self.due.map_or(next, |d| d.min(next)));
                    Some(LinkState::Reconnecting)
                } else {
                    self.gave_up = true;
                    self.due = None;
                    Some(LinkState::Failed)
                }
            }
            RTCPeerConnectionState::Disconnected => {
                if self.impolite && !self.active() && !self.gave_up {
                    self.due = Some(now + RESTART_AFTER_DISCONNECTED);
                }
                self.interrupted = true;
                Some(LinkState::Reconnecting)
            }
            RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting => {
                // A restart passes through connecting; it is still the same link.
                Some(if self.gave_up {
                    LinkState::Failed
                } else if self.active() {
                    LinkState::Reconnecting
                } else {
                    LinkState::Connecting
                })
            }
            _ => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// The due time was reached at `now`: restart ICE or give up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> RecoveryAction {
        self.due = None;
        if !self.impolite || self.attempts >= RESTART_ATTEMPTS {
            // Polite: no restart came in time. Impolite: the last attempt's time ran out
            // without a Failed event.
            self.gave_up = true;
            return RecoveryAction::GiveUp;
        }
        self.attempts += 1;
        // If this attempt never even fails (no answer, say), try again anyway.
        self.due = Some(now + self.attempt_timeout);
        RecoveryAction::RestartIce(self.attempts)
    }

    /// Restarts offered since the link was last connected.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RTCPeerConnectionState as S;

    const ATTEMPT: Duration = Duration::from_secs(10);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_blip_shorter_than_two_seconds_needs_no_restart() {
        let t0 = Instant::now();
        let mut r = LinkRecovery::new(true, ATTEMPT);
        assert_eq!(r.handle_state(t0, S::Connected), Some(LinkState::Connected));
        assert_eq!(
            r.handle_state(ms(t0, 100), S::Disconnected),
            Some(LinkState::Reconnecting)
        );
        assert_eq!(r.poll_timeout(), Some(ms(t0, 2100)));
        assert_eq!(
            r.handle_state(ms(t0, 1500), S::Connected),
            Some(LinkState::Connected)
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.attempts(), 0);
    }

    #[test]
    fn the_impolite_side_restarts_with_backoff_then_gives_up() {
        let t0 = Instant::now();
        let mut r = LinkRecovery::new(true, ATTEMPT);
        r.handle_state(t0, S::Connected);
        r.handle_state(t0, S::Disconnected);
        // Two seconds into the disconnection: the first restart.
        let due = r.poll_timeout().unwrap();
        assert_eq!(due, ms(t0, 2000));
        assert_eq!(r.handle_timeout(due), RecoveryAction::RestartIce(1));
        // That attempt fails: the next after 500 ms (250 doubling), then 1 s.
        let failed = ms(t0, 5000);
        assert_eq!(
            r.handle_state(failed, S::Failed),
            Some(LinkState::Reconnecting)
        );
        assert_eq!(r.poll_timeout(), Some(failed + Duration::from_millis(500)));
        assert_eq!(
            r.handle_timeout(r.poll_timeout().unwrap()),
            RecoveryAction::RestartIce(2)
        );
        let failed = ms(t0, 9000);
        r.handle_state(failed, S::Failed);
        assert_eq!(r.poll_timeout(), Some(failed + Duration::from_secs(1)));
        assert_eq!(
            r.handle_timeout(r.poll_timeout().unwrap()),
            RecoveryAction::RestartIce(3)
        );
        // The third fails too: Failed, and nothing more is scheduled.
        assert_eq!(
            r.handle_state(ms(t0, 15_000), S::Failed),
            Some(LinkState::Failed)
        );
        assert_eq!(r.poll_timeout(), None);
        // A late Connecting while given up still shows Failed; Connected starts afresh.
        assert_eq!(
            r.handle_state(ms(t0, 16_000), S::Connecting),
            Some(LinkState::Failed)
        );
        assert_eq!(
            r.handle_state(ms(t0, 17_000), S::Connected),
            Some(LinkState::Connected)
        );
        assert_eq!(r.attempts(), 0);
    }

    #[test]
    fn an_attempt_that_never_fails_is_retried_after_its_timeout() {
        let t0 = Instant::now();
        let mut r = LinkRecovery::new(true, ATTEMPT);
        r.handle_state(t0, S::Failed);
        assert_eq!(r.handle_timeout(ms(t0, 250)), RecoveryAction::RestartIce(1));
        // No answer, no Failed: the attempt's time runs out and the next one goes.
        assert_eq!(r.poll_timeout(), Some(ms(t0, 250) + ATTEMPT));
        assert_eq!(
            r.handle_timeout(ms(t0, 250) + ATTEMPT),
            RecoveryAction::RestartIce(2)
        );
    }

    #[test]
    fn the_polite_side_waits_for_all_attempts_then_gives_up() {
        let t0 = Instant::now();
        let mut r = LinkRecovery::new(false, ATTEMPT);
        r.handle_state(t0, S::Connected);
        r.handle_state(t0, S::Disconnected);
        // It never restarts on its own.
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_state(t0, S::Failed), Some(LinkState::Reconnecting));
        // Patience: 3 attempts (250 + 500 + 1000 ms of back-off, 10 s each) and one more.
        let patience = Duration::from_millis(1750) + 4 * ATTEMPT;
        assert_eq!(r.poll_timeout(), Some(t0 + patience));
        // A second Failed does not push the deadline back.
        r.handle_state(ms(t0, 5000), S::Failed);
        assert_eq!(r.poll_timeout(), Some(t0 + patience));
        assert_eq!(r.handle_timeout(t0 + patience), RecoveryAction::GiveUp);
        assert_eq!(
            r.handle_state(t0 + patience, S::Connecting),
            Some(LinkState::Failed)
        );
    }
}
