//! Bandwidth probing, after libwebrtc's ProbeController and ProbeBitrateEstimator: when far
//! more waits to be sent than the estimate lets out, the pacer sends a short cluster at a
//! multiple of the estimate, the estimator measures from the transport feedback what the far
//! end received of it, and, if the cluster went through, the estimate jumps to that rate.
//!
//! Why: a screen share's first 1080p keyframe is 240–310 KB whatever the bitrate, and a
//! link's estimate starts cautiously at 150 kbit/s (`estimator::CAUTIOUS_START_BPS`) and
//! climbs some 50 % a second; the first share frame took 2.5 s after the share started and
//! 4.7 s after a late join. Probing finds a clean link's rate in a few round trips.
//!
//! The probe is the queued media itself, paced faster than the estimate (read in webrtc-rs'
//! source, not tried): we negotiate no RTX, the stream padding would go on (webrtc-rs'
//! receiver drops a padding-only RTX packet after the TWCC receiver has counted it); a
//! padding packet on the media SSRC would need a sequence number of the media's own (a gap
//! to the receiver); a duplicate would meet SRTP's replay check before the feedback. So a
//! probe needs a backlog: a share's keyframe, or a camera's large one.
//!
//! On a capped link a probe must not raise the estimate above the cap. A router's token
//! bucket (htb's `burst 15k` in `scripts/impair`) lets the first kilobytes of a burst
//! through at line rate, so a cluster is at least [`PROBE_MIN_BYTES`] and the receive rate
//! is taken over the cluster's later half too: behind the bucket that half arrives at the
//! cap's rate. A probe that shows the link saturated sets the estimate to 95 % of what got
//! through at most, and no further probe follows for [`HOLD_SATURATED`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

/// A probe's rate is this multiple of the estimate...
const PROBE_FACTOR: f64 = 4.0;
/// ...and at least this: a link's start estimate is so low (150 kbit/s) that a cluster at a
/// multiple of it would take as long as the climb it saves. (Into a slower link this costs
/// nothing more than a slower probe: the cluster's size is the same, and what got through
/// is what counts.) Measured at 1 Mbit/s, a clean link needed two clusters and 470 ms to
/// reach 2.5 Mbit/s.
const PROBE_LEAST_BPS: f64 = 2_000_000.0;
/// A probe is only worth sending if it may raise the estimate by this factor at least.
const WORTH_PROBING: f64 = 1.2;
/// A cluster lasts about this long at its rate...
const PROBE_DURATION: Duration = Duration::from_millis(50);
/// ...and carries at least this much: twice the burst a token-bucket shaper may let through
/// at line rate, so the cluster's later half measures the cap.
pub(crate) const PROBE_MIN_BYTES: usize = 30_000;
/// Probe only while at least this much media waits...
pub(crate) const BACKLOG_MIN_BYTES: usize = 60_000;
/// ...and it would take longer than this to drain at the pacing rate.
const BACKLOG_MIN_TIME: Duration = Duration::from_millis(300);
/// The feedback on a cluster is complete this long after it was sent, whatever came:
/// behind a 400 kbit/s cap a 30 kB cluster takes 600 ms to arrive.
const FEEDBACK_WAIT: Duration = Duration::from_millis(1500);
/// A cluster's result is waited for at most this long; none by then (no transport
/// feedback on this link?) counts as a failed probe.
const RESULT_WAIT: Duration = Duration::from_millis(2000);
/// Clusters handed over and not yet taken, at most (a bound if nothing takes them).
const SENT_MAX: usize = 8;
/// After a probe that showed the link saturated (or lost), no probe for this long: the link
/// has told us its rate, and every probe into a capped link is a burst in its queue.
const HOLD_SATURATED: Duration = Duration::from_secs(20);
/// The far end must have received at least this fraction of a cluster to measure it.
const MIN_RECEIVED: f64 = 0.9;
/// A receive rate under this fraction of the send rate means the cluster queued: the link
/// is saturated at the receive rate.
const SATURATED_RATIO: f64 = 0.9;
/// Of a saturated link's receive rate, the estimate takes this much.
const SATURATED_SHARE: f64 = 0.95;
/// Clusters with fewer packets than this say nothing.
const MIN_PACKETS: usize = 8;

/// A cluster the pacer sent: every packet that left between `first` and `last` (audio
/// included, since it shared the wire) belongs to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SentCluster {
    /// Numbers the clusters of one link, from 1.
    pub(crate) id: u32,
    /// The rate it was paced at, bits per second.
    pub(crate) target_bps: f64,
    /// Departure of its first packet.
    pub(crate) first: Instant,
    /// Departure of its last packet.
    pub(crate) last: Instant,
    /// Media packets the pacer sent in it.
    pub(crate) packets: usize,
}

/// What a cluster's feedback said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProbeResult {
    /// Which cluster.
    pub(crate) id: u32,
    /// The rate the link carried, bits per second (`None`: too little feedback to say).
    pub(crate) bps: Option<f64>,
    /// The cluster queued or was lost: the link carries no more than `bps`.
    pub(crate) saturated: bool,
}

/// The hand-over between the pacer (which sends clusters) and the estimator (which measures
/// them); both live in one connection's interceptor chain, on its driver task.
#[derive(Debug, Default)]
pub(crate) struct ProbeLog {
    sent: Mutex<VecDeque<SentCluster>>,
    results: Mutex<VecDeque<ProbeResult>>,
}

impl ProbeLog {
    fn push_sent(&self, c: SentCluster) {
        if let Ok(mut q) = self.sent.lock() {
            if q.len() >= SENT_MAX {
                q.pop_front();
            }
            q.push_back(c);
        }
    }

    pub(crate) fn take_sent(&self) -> Vec<SentCluster> {
        self.sent
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn push_result(&self, r: ProbeResult) {
        if let Ok(mut q) = self.results.lock() {
            if q.len() >= SENT_MAX {
                q.pop_front();
            }
            q.push_back(r);
        }
    }

    fn take_results(&self) -> Vec<ProbeResult> {
        self.results
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// The cluster being sent.
#[derive(Debug, Clone, Copy)]
struct Active {
    id: u32,
    target_bps: f64,
    bytes_goal: usize,
    bytes_sent: usize,
    packets: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    next_send: Instant,
}

/// The pacer's half: when to probe, at what rate, and the spacing of a cluster's packets.
#[derive(Debug, Default)]
pub(crate) struct ProbeController {
    active: Option<Active>,
    next_id: u32,
    /// A sent cluster whose result has not come yet, and when it was sent.
    waiting: Option<(u32, Instant)>,
    /// No probe before this.
    hold_until: Option<Instant>,
}

impl ProbeController {
    /// Whether a cluster is being sent.
    pub(crate) fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Takes the estimator's results: a saturated or failed probe holds probing off.
    pub(crate) fn note_results(&mut self, now: Instant, log: &ProbeLog) {
        for r in log.take_results() {
            if self.waiting.is_some_and(|(id, _)| id == r.id) {
                self.waiting = None;
            }
            if r.saturated || r.bps.is_none() {
                tracing::debug!(?r, "probe: the link is saturated; holding off");
                self.hold_until = Some(now + HOLD_SATURATED);
            } else {
                tracing::debug!(?r, "probe went through");
            }
        }
    }

    /// Starts a cluster if `backlog_bytes` wait and would take long at `pacing_bps`, and the
    /// estimate may grow; `max_bps` is the most the estimate can be.
    pub(crate) fn maybe_start(
        &mut self,
        now: Instant,
        estimate_bps: f64,
        pacing_bps: f64,
        max_bps: f64,
        backlog_bytes: usize,
    ) -> bool {
        if self.active.is_some() || self.hold_until.is_some_and(|t| now < t) {
            return false;
        }
        if let Some((id, at)) = self.waiting {
            if now.saturating_duration_since(at) < RESULT_WAIT {
                return false;
            }
            tracing::debug!(id, "probe: no result; holding off");
            self.waiting = None;
            self.hold_until = Some(now + HOLD_SATURATED);
            return false;
        }
        let drain = backlog_bytes as f64 * 8.0 / pacing_bps.max(1.0);
        if backlog_bytes < BACKLOG_MIN_BYTES || drain < BACKLOG_MIN_TIME.as_secs_f64() {
            return false;
        }
        let target = (estimate_bps * PROBE_FACTOR)
            .max(PROBE_LEAST_BPS)
            .min(max_bps);
        if target < estimate_bps * WORTH_PROBING {
            return false;
        }
        self.next_id += 1;
        let goal = ((target * PROBE_DURATION.as_secs_f64() / 8.0) as usize).max(PROBE_MIN_BYTES);
        self.active = Some(Active {
            id: self.next_id,
            target_bps: target,
            bytes_goal: goal,
            bytes_sent: 0,
            packets: 0,
            first: None,
            last: None,
            next_send: now,
        });
        tracing::debug!(
            id = self.next_id,
            target,
            goal,
            backlog_bytes,
            "probe cluster"
        );
        true
    }

    /// When the active cluster's next packet may leave.
    pub(crate) fn next_send(&self) -> Option<Instant> {
        self.active.map(|a| a.next_send)
    }

    /// Whether the active cluster's next packet may leave at `now`.
    pub(crate) fn may_send(&self, now: Instant) -> bool {
        self.active.is_some_and(|a| now >= a.next_send)
    }

    /// A packet of `bytes` left in the cluster at `now`; ends the cluster once it has carried
    /// its goal.
    pub(crate) fn on_sent(&mut self, now: Instant, bytes: usize, log: &ProbeLog) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        a.first.get_or_insert(now);
        a.last = Some(now);
        a.bytes_sent += bytes;
        a.packets += 1;
        // Spaced from the schedule, not from `now`: a late timer does not lower the rate.
        let gap = Duration::from_secs_f64(bytes as f64 * 8.0 / a.target_bps);
        let catch_up = now
            .checked_sub(gap.min(Duration::from_millis(5)))
            .unwrap_or(now);
        a.next_send = a.next_send.max(catch_up) + gap;
        if a.bytes_sent >= a.bytes_goal {
            self.finish(log);
        }
    }

    /// Ends the active cluster (its goal reached, or nothing left to send).
    pub(crate) fn finish(&mut self, log: &ProbeLog) {
        let Some(a) = self.active.take() else {
            return;
        };
        let (Some(first), Some(last)) = (a.first, a.last) else {
            return;
        };
        self.waiting = Some((a.id, last));
        log.push_sent(SentCluster {
            id: a.id,
            target_bps: a.target_bps,
            first,
            last,
            packets: a.packets,
        });
    }
}

/// One packet of a cluster as the feedback reported it.
#[derive(Debug, Clone, Copy)]
struct Fate {
    departure: Instant,
    arrival: Option<Duration>,
    size: usize,
}

/// Feedback is kept this long for a cluster the pacer has not finished yet...
const RECENT: Duration = Duration::from_secs(2);
/// ...and for this many packets at most.
const RECENT_MAX: usize = 8192;

/// The estimator's half: gathers each cluster's feedback and measures it.
#[derive(Debug, Default)]
pub(crate) struct ProbeMeasurer {
    pending: VecDeque<(SentCluster, Vec<Fate>)>,
    /// Recent feedback: a cluster is handed over when the pacer has sent all of it, and
    /// feedback on its first packets (it comes every 100 ms) may have come before.
    recent: VecDeque<Fate>,
}

impl ProbeMeasurer {
    /// Feeds transport feedback; returns the results of the clusters it completed.
    pub(crate) fn on_reports(
        &mut self,
        now: Instant,
        reports: &[PacketReport],
        log: &ProbeLog,
    ) -> Vec<ProbeResult> {
        let batch: Vec<Fate> = reports
            .iter()
            .map(|r| Fate {
                departure: r.departure,
                arrival: r.arrival.filter(|_| r.arrived),
                size: r.size,
            })
            .collect();
        // A cluster new here first takes the feedback that came before it was handed over.
        for c in log.take_sent() {
            let fates = self
                .recent
                .iter()
                .filter(|f| f.departure >= c.first && f.departure <= c.last)
                .copied()
                .collect();
            self.pending.push_back((c, fates));
        }
        let mut done: Vec<bool> = self
            .pending
            .iter()
            .map(|(c, _)| self.recent.iter().any(|f| f.departure > c.last))
            .collect();
        for (i, (c, fates)) in self.pending.iter_mut().enumerate() {
            for f in &batch {
                if f.departure >= c.first && f.departure <= c.last {
                    fates.push(*f);
                } else if f.departure > c.last {
                    // Feedback comes in send order: everything of the cluster is in.
                    done[i] = true;
                }
            }
        }
        self.recent.extend(batch);
        while self.recent.len() > RECENT_MAX
            || self
                .recent
                .front()
                .is_some_and(|f| now.saturating_duration_since(f.departure) > RECENT)
        {
            self.recent.pop_front();
        }
        let mut results = Vec::new();
        let mut i = 0;
        self.pending.retain(|(c, fates)| {
            let complete = done[i] || now.saturating_duration_since(c.last) > FEEDBACK_WAIT;
            i += 1;
            if complete {
                let r = measure(c, fates);
                log.push_result(r);
                results.push(r);
            }
            !complete
        });
        results
    }
}

/// What one cluster's feedback says the link carries.
fn measure(c: &SentCluster, fates: &[Fate]) -> ProbeResult {
    let failed = ProbeResult {
        id: c.id,
        bps: None,
        saturated: true,
    };
    if fates.len() < MIN_PACKETS.max((c.packets as f64 * MIN_RECEIVED) as usize) {
        tracing::debug!(?c, reported = fates.len(), "probe: too little feedback");
        return failed;
    }
    let mut sent: Vec<&Fate> = fates.iter().collect();
    sent.sort_by_key(|f| f.departure);
    let mut arrived: Vec<(Duration, usize)> = fates
        .iter()
        .filter_map(|f| Some((f.arrival?, f.size)))
        .collect();
    arrived.sort_by_key(|(a, _)| *a);
    if arrived.len() < MIN_PACKETS {
        return failed;
    }
    // Rates between first and last, each less the packet at the far end of the interval.
    let rate = |bytes: usize, span: Duration| {
        if span < Duration::from_millis(1) {
            f64::INFINITY
        } else {
            bytes as f64 * 8.0 / span.as_secs_f64()
        }
    };
    let (first, last) = (sent[0], sent[sent.len() - 1]);
    let sent_bytes: usize = sent.iter().map(|f| f.size).sum::<usize>() - last.size;
    let send_rate = rate(
        sent_bytes,
        last.departure.saturating_duration_since(first.departure),
    );
    let receive_rate_from = |from: usize| {
        let bytes: usize = arrived[from + 1..].iter().map(|(_, s)| s).sum();
        rate(
            bytes,
            arrived[arrived.len() - 1].0.saturating_sub(arrived[from].0),
        )
    };
    // The whole cluster, and its later half (behind a token bucket, the part that queued).
    let receive_rate = receive_rate_from(0).min(receive_rate_from(arrived.len() / 2));
    let offered = send_rate.min(c.target_bps);
    let lost = 1.0 - arrived.len() as f64 / fates.len() as f64;
    tracing::debug!(
        id = c.id,
        target = c.target_bps,
        send_rate,
        receive_rate,
        lost,
        packets = fates.len(),
        "probe measured"
    );
    if receive_rate < offered * SATURATED_RATIO || lost > 1.0 - MIN_RECEIVED {
        let bps = receive_rate.min(offered) * SATURATED_SHARE;
        return ProbeResult {
            id: c.id,
            bps: bps.is_finite().then_some(bps),
            saturated: true,
        };
    }
    ProbeResult {
        id: c.id,
        bps: Some(receive_rate.min(offered)),
        saturated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::queue_delay::test_report;

    /// A cluster of `n` packets of 1,200 bytes sent at `send_bps` from `t0`, and the
    /// feedback on it through a link of `link_bps` whose token bucket lets `burst` bytes
    /// through at once (arrival on the receiver's clock, from zero).
    fn through_link(
        t0: Instant,
        n: usize,
        send_bps: f64,
        link_bps: f64,
        burst: usize,
    ) -> (SentCluster, Vec<PacketReport>) {
        let gap = 1200.0 * 8.0 / send_bps;
        let mut link_free = 0.0f64;
        let mut tokens = burst as f64;
        let reports: Vec<PacketReport> = (0..n)
            .map(|i| {
                let sent = i as f64 * gap;
                let arrival = if tokens >= 1200.0 {
                    tokens -= 1200.0;
                    sent
                } else {
                    link_free = link_free.max(sent) + 1200.0 * 8.0 / link_bps;
                    link_free
                };
                test_report(
                    t0 + Duration::from_secs_f64(sent),
                    Some(Duration::from_secs_f64(arrival)),
                    1200,
                )
            })
            .collect();
        let cluster = SentCluster {
            id: 1,
            target_bps: send_bps,
            first: t0,
            last: t0 + Duration::from_secs_f64((n - 1) as f64 * gap),
            packets: n,
        };
        (cluster, reports)
    }

    fn measure_through(send_bps: f64, link_bps: f64, burst: usize) -> ProbeResult {
        let log = ProbeLog::default();
        let mut m = ProbeMeasurer::default();
        let t0 = Instant::now();
        let n = PROBE_MIN_BYTES / 1200;
        let (cluster, mut reports) = through_link(t0, n, send_bps, link_bps, burst);
        log.push_sent(cluster);
        // A packet sent after the cluster closes it.
        reports.push(test_report(
            cluster.last + Duration::from_millis(10),
            Some(Duration::from_secs(5)),
            100,
        ));
        let results = m.on_reports(cluster.last + Duration::from_millis(100), &reports, &log);
        assert_eq!(results.len(), 1);
        assert_eq!(log.take_results(), results, "the pacer hears of it too");
        results[0]
    }

    #[test]
    fn a_clean_link_carries_the_probe_rate() {
        let r = measure_through(2_000_000.0, 100_000_000.0, 0);
        assert!(!r.saturated, "{r:?}");
        let bps = r.bps.unwrap();
        assert!((1_800_000.0..=2_000_001.0).contains(&bps), "{bps}");
    }

    #[test]
    fn a_probe_into_a_capped_link_gives_no_more_than_the_cap() {
        // 400 kbit/s behind htb's 15 kB burst, as scripts/impair shapes it.
        let r = measure_through(1_000_000.0, 400_000.0, 15_000);
        assert!(r.saturated, "{r:?}");
        let bps = r.bps.unwrap();
        assert!((250_000.0..=420_000.0).contains(&bps), "{bps}");
    }

    #[test]
    fn feedback_that_came_before_the_cluster_was_handed_over_counts() {
        let log = ProbeLog::default();
        let mut m = ProbeMeasurer::default();
        let t0 = Instant::now();
        let (cluster, reports) = through_link(t0, 25, 1_000_000.0, 1e9, 0);
        // Feedback on the first 15 packets comes while the pacer is still sending.
        let (early, late) = reports.split_at(15);
        assert!(
            m.on_reports(t0 + Duration::from_millis(100), early, &log)
                .is_empty()
        );
        log.push_sent(cluster);
        let mut late = late.to_vec();
        late.push(test_report(
            cluster.last + Duration::from_millis(5),
            None,
            100,
        ));
        let r = m.on_reports(cluster.last + Duration::from_millis(50), &late, &log);
        assert_eq!(r.len(), 1);
        assert!(!r[0].saturated, "{r:?}");
        assert!(r[0].bps.unwrap() > 900_000.0, "{r:?}");
    }

    #[test]
    fn a_cluster_mostly_lost_raises_nothing() {
        let log = ProbeLog::default();
        let mut m = ProbeMeasurer::default();
        let t0 = Instant::now();
        let (cluster, mut reports) = through_link(t0, 25, 2_000_000.0, 1e9, 0);
        for r in reports.iter_mut().skip(5) {
            r.arrived = false;
            r.arrival = None;
        }
        log.push_sent(cluster);
        let later = cluster.last + FEEDBACK_WAIT + Duration::from_millis(1);
        let r = m.on_reports(later, &reports, &log);
        assert_eq!(r.len(), 1);
        assert!(r[0].saturated && r[0].bps.is_none(), "{r:?}");
    }

    #[test]
    fn a_probe_starts_only_for_a_backlog_and_paces_its_cluster() {
        let log = ProbeLog::default();
        let mut p = ProbeController::default();
        let t0 = Instant::now();
        // A camera frame's worth waiting: no probe.
        assert!(!p.maybe_start(t0, 150_000.0, 225_000.0, 2_500_000.0, 10_000));
        // A share's keyframe: a probe at the least probe rate (4x 150k is less).
        assert!(p.maybe_start(t0, 150_000.0, 225_000.0, 2_500_000.0, 250_000));
        let mut t = t0;
        let mut sent = 0;
        while p.is_active() {
            t = t.max(p.next_send().unwrap());
            assert!(p.may_send(t));
            p.on_sent(t, 1200, &log);
            sent += 1;
        }
        assert!(sent * 1200 >= PROBE_MIN_BYTES && sent < 40, "{sent}");
        let c = log.take_sent();
        assert_eq!(c.len(), 1);
        let rate = (sent - 1) as f64 * 1200.0 * 8.0 / (c[0].last - c[0].first).as_secs_f64();
        assert!((rate - PROBE_LEAST_BPS).abs() < 50_000.0, "paced at {rate}");
        // The next waits for the result (or its time-out)...
        assert!(!p.maybe_start(t, 1_000_000.0, 1_500_000.0, 2_500_000.0, 250_000));
        // ...and after a saturated one, probing holds off.
        log.push_result(ProbeResult {
            id: c[0].id,
            bps: Some(380_000.0),
            saturated: true,
        });
        p.note_results(t, &log);
        let later = t + RESULT_WAIT * 2;
        assert!(!p.maybe_start(later, 380_000.0, 570_000.0, 2_500_000.0, 250_000));
        assert!(p.maybe_start(
            later + HOLD_SATURATED,
            380_000.0,
            570_000.0,
            2_500_000.0,
            250_000
        ));
    }

    #[test]
    fn a_probe_with_no_result_holds_probing_off() {
        let log = ProbeLog::default();
        let mut p = ProbeController::default();
        let t0 = Instant::now();
        assert!(p.maybe_start(t0, 150_000.0, 225_000.0, 2_500_000.0, 250_000));
        while let Some(at) = p.next_send() {
            p.on_sent(at, 1200, &log);
        }
        // No feedback at all (nothing takes the cluster, no result comes).
        let t = t0 + RESULT_WAIT + Duration::from_millis(300);
        assert!(!p.maybe_start(t, 150_000.0, 225_000.0, 2_500_000.0, 250_000));
        assert!(!p.maybe_start(
            t + Duration::from_secs(1),
            150_000.0,
            225_000.0,
            2_500_000.0,
            250_000
        ));
        assert!(p.maybe_start(
            t + HOLD_SATURATED,
            150_000.0,
            225_000.0,
            2_500_000.0,
            250_000
        ));
    }

    #[test]
    fn no_probe_when_the_estimate_is_at_the_top() {
        let mut p = ProbeController::default();
        let t0 = Instant::now();
        assert!(!p.maybe_start(t0, 2_400_000.0, 3_600_000.0, 2_500_000.0, 500_000));
    }
}
