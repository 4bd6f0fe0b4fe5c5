//! The bandwidth estimate for one link: webrtc-rs' GCC for the delay half, our own loss half.
//!
//! GCC's loss half raises its estimate only while loss stays under 2 % and holds it between
//! 2 and 10 %. On a link with a few per cent of random loss (hotel Wi-Fi) one burst of
//! congestion at the start of a call pushes it down, and then it can never climb back:
//! measured, a member behind 400 kbit/s with 5 % loss had its video paused for the rest of
//! the call. Random loss is what NACK and Opus FEC are for. So here loss only counts as
//! congestion when it is heavy ([`HEAVY_LOSS`]), and below [`LIGHT_LOSS`] the loss half
//! climbs back. In our runs behind a capped link, webrtc-rs' delay half never saw the
//! queue and its transport feedback never reported a loss, so the loss half reads the
//! receiver reports (RTCP RR `fraction_lost`), which the pacer hands over in the meter, and
//! on heavy loss falls to what actually got through.
//!
//! webrtc-rs' GCC also climbs without bound while little is sent: with video paused and
//! only audio flowing, its estimate rose past 500 kbit/s on a 400 kbit/s link, video resumed
//! at that rate and the link collapsed again (measured: a pause every ten seconds). As the
//! GCC draft says, the estimate may not exceed 1.5 times what the far end is receiving; we
//! add a small headroom ([`PROBE_HEADROOM_BPS`]) so a paused link can try the smallest layer.
//! That ceiling holds only once the link has shown congestion: before that nothing says the
//! link cannot carry more, and a peer on the smallest layer (shared with a slow peer, so
//! sent at the slow peer's rate) could never show enough to move up — measured, a perfect
//! link stayed at 180p and 180 kbit/s for a whole call beside a member on a slow one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};

use super::pacer::LinkMeter;
use super::probe::{ProbeMeasurer, ProbeResult};
use super::queue_delay::QueueDelay;

/// Reported loss above which the loss half backs off: above what a lossy but uncongested
/// link shows (5 % random loss measured 3–6 % per report, less after retransmissions).
pub(crate) const HEAVY_LOSS: f64 = 0.15;
/// Average loss below which the loss half climbs.
pub(crate) const LIGHT_LOSS: f64 = 0.10;
/// Least time between two moves of the loss half.
const LOSS_INTERVAL: Duration = Duration::from_millis(200);
/// How fast the loss half climbs per move: 10 kbit/s (50 a second), or 2 % when that is
/// more.
const CLIMB: f64 = 1.02;
/// See [`CLIMB`].
const CLIMB_STEP_BPS: f64 = 10_000.0;
/// Where the loss half starts on a link not measured yet: two senders starting at 600 kbit/s
/// into a 400 kbit/s link (their smallest layer alone at 250) filled its queue within a second
/// and lost two thirds of everything, audio too, for the call's first three seconds.
/// Chromium starts at 300 kbit/s and probes; we start lower and climb fast (see
/// [`START_CLIMB`]), which costs a clean link nothing: GCC's delay half, starting at the
/// configured initial rate, is what limits its first seconds either way.
pub(crate) const CAUTIOUS_START_BPS: f64 = 150_000.0;
/// From a cautious start, until the link first shows congestion, the loss half climbs 8 % a
/// move (about 47 % a second; the ceiling, 1.5 times what gets through, bounds it too).
const START_CLIMB: f64 = 1.08;
/// Within this fraction of the rate at which the link last showed congestion, climb by
/// [`CAREFUL_STEP_BPS`] only: two senders sharing a 400 kbit/s link, each climbing 50 kbit/s
/// a second, overflowed its queue every three seconds (each time a burst of loss, a frozen
/// picture and a keyframe); near the rate that overflowed it last time, creep up instead.
const NEAR_CONGESTION: f64 = 0.9;
/// See [`NEAR_CONGESTION`]: 10 kbit/s a second.
const CAREFUL_STEP_BPS: f64 = 2_000.0;
/// Climbed this far above the rate of the last congestion, the link has more room than it
/// had: climb at full speed again.
const PAST_CONGESTION: f64 = 1.25;
/// A standing queue longer than this is congestion: back off. Above a real path's jitter
/// (Wi-Fi's is tens of ms), well below what makes a conversation awkward.
pub(crate) const QUEUE_HIGH_MS: f64 = 80.0;
/// Climb only while the queue is shorter than this.
const QUEUE_LOW_MS: f64 = 30.0;
/// After a back-off on the queue, wait this long before another, so the first has time to
/// show (the queue drains only after our lower rate reaches it).
const QUEUE_CUT_INTERVAL: Duration = Duration::from_millis(500);
/// A queue must stay above [`QUEUE_HIGH_MS`] this long to count: a receiver whose process
/// was not scheduled for a moment stamps a burst of arrivals late, which is no queue.
const QUEUE_PERSIST: Duration = Duration::from_millis(100);
/// The queue should drain within about this long after a back-off.
const DRAIN_TIME_MS: f64 = 1000.0;
/// Neither the queue nor one report of heavy loss takes the estimate below this: the audio
/// share plus the smallest layer's least (114 kbit/s at 320x180) and a margin, so a
/// congestion episode pauses nobody's video. Senders sharing a queue all back off together,
/// and one that had just resumed video (so had the least share) was cut below the pause
/// point again and again while the other kept the link; with a floor under the pause point
/// (it was 100 kbit/s) every overshoot paused video for the seconds a resume takes. Only
/// heavy loss that persists, the sign that even this is too much, goes lower.
pub(crate) const VIDEO_FLOOR_BPS: f64 = 125_000.0;
/// Heavy loss reported again within this long of the last cut for it may go under
/// [`VIDEO_FLOOR_BPS`] (receiver reports come about once a second).
const HEAVY_REPEAT: Duration = Duration::from_millis(2500);
/// The estimate may be at most this many times the rate the far end receives...
const RECEIVED_FACTOR: f64 = 1.5;
/// ...plus this, so a link carrying only audio may grow enough to try video.
pub(crate) const PROBE_HEADROOM_BPS: f64 = 60_000.0;
/// The window the received rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// GCC's delay half and a loss half tolerant of random loss; see the module docs.
pub(crate) struct LinkEstimator {
    gcc: Gcc,
    loss_target: f64,
    average_loss: Option<f64>,
    last_move: Option<Instant>,
    min: f64,
    max: f64,
    /// Bytes the far end received, by feedback time, over the last [`RATE_WINDOW`].
    received: VecDeque<(Instant, usize)>,
    /// The meter's report count when last looked at.
    reports_seen: u64,
    queue: QueueDelay,
    /// When the queue last made us back off, and how long it was then.
    last_queue_cut: Option<(Instant, f64)>,
    /// Since when the queue has been above [`QUEUE_HIGH_MS`].
    queue_high_since: Option<Instant>,
    /// When heavy loss last made us back off.
    last_heavy_cut: Option<Instant>,
    /// The rate at which the link last showed congestion (queue or heavy loss).
    congested_at: Option<f64>,
    /// Started cautiously: climbs fast until the link first shows congestion.
    cautious: bool,
    /// The link has shown congestion (queue or heavy loss) at least once in the call.
    seen_congestion: bool,
    /// Measures the pacer's probe clusters (`probe.rs`).
    probes: ProbeMeasurer,
    meter: Arc<LinkMeter>,
}

impl LinkEstimator {
    /// Starts at `initial` bits per second, held within `min..=max`.
    pub(crate) fn new(initial: f64, min: f64, max: f64, meter: Arc<LinkMeter>) -> Self {
        Self {
            gcc: Gcc::new(initial, min, max),
            loss_target: initial.clamp(min, max),
            average_loss: None,
            last_move: None,
            min,
            max,
            received: VecDeque::new(),
            reports_seen: 0,
            queue: QueueDelay::default(),
            last_queue_cut: None,
            queue_high_since: None,
            last_heavy_cut: None,
            congested_at: None,
            cautious: false,
            seen_congestion: false,
            probes: ProbeMeasurer::default(),
            meter,
        }
    }

    /// Starts the loss half at `start_bps` (below the initial rate) and climbs fast from there
    /// until the link first shows congestion; see [`CAUTIOUS_START_BPS`].
    pub(crate) fn with_cautious_start(mut self, start_bps: f64) -> Self {
        self.loss_target = self.loss_target.min(start_bps).clamp(self.min, self.max);
        self.cautious = true;
        self
    }

    /// What the far end received over the last window, bits per second; `None` until a
    /// window's worth of feedback has come.
    fn received_bps(&self) -> Option<f64> {
        let (first, _) = self.received.front()?;
        let (last, _) = self.received.back()?;
        let span = last.saturating_duration_since(*first);
        if span < RATE_WINDOW / 2 {
            return None;
        }
        let bytes: usize = self.received.iter().map(|(_, b)| b).sum();
        Some(bytes as f64 * 8.0 / span.max(RATE_WINDOW / 2).as_secs_f64())
    }

    /// The most the far end's receiving rate lets us ask for, once the link has shown
    /// congestion (see the module docs).
    fn ceiling(&self) -> f64 {
        if !self.seen_congestion {
            return f64::INFINITY;
        }
        self.received_bps()
            .map_or(f64::INFINITY, |r| r * RECEIVED_FACTOR + PROBE_HEADROOM_BPS)
    }

    fn note_received(&mut self, now: Instant, reports: &[PacketReport]) {
        let bytes = reports.iter().filter(|r| r.arrived).map(|r| r.size).sum();
        self.received.push_back((now, bytes));
        while self
            .received
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.received.pop_front();
        }
    }

    /// The loss-and-queue half, stepped on each feedback: down to what got through when the
    /// far end reports heavy loss or our packets queue, up slowly while neither happens.
    fn update_loss(&mut self, now: Instant, reported_loss: f64, fresh: bool) {
        let average = if fresh {
            let a = self
                .average_loss
                .map_or(reported_loss, |a| 0.5 * a + 0.5 * reported_loss);
            self.average_loss = Some(a);
            a
        } else {
            self.average_loss.unwrap_or(0.0)
        };
        self.meter
            .send_loss_permille
            .store((average * 1000.0) as u32, Ordering::Relaxed);
        let queue = self.queue.latest_ms().unwrap_or(0.0);
        let queue_high = if queue > QUEUE_HIGH_MS {
            let since = *self.queue_high_since.get_or_insert(now);
            now.saturating_duration_since(since) >= QUEUE_PERSIST
        } else {
            self.queue_high_since = None;
            false
        };
        if self
            .last_move
            .is_some_and(|t| now.saturating_duration_since(t) < LOSS_INTERVAL)
        {
            return;
        }
        if fresh && reported_loss > HEAVY_LOSS {
            // Under what got through, so the bottleneck's queue drains; but by half at
            // most, so a sender that has only just resumed (and so got little through)
            // keeps a share; and not under the video floor unless it persists: one
            // overflowing moment (a keyframe into a short queue) is no sign that the
            // smallest layer cannot be carried.
            let delivered = self.received_bps().unwrap_or(self.loss_target) * 0.9;
            self.congested_at = Some(self.loss_target.min(delivered / 0.9));
            self.seen_congestion = true;
            let cut = self.loss_target * (1.0 - 0.5 * reported_loss);
            let persists = self
                .last_heavy_cut
                .is_some_and(|t| now.saturating_duration_since(t) < HEAVY_REPEAT);
            let floor = if persists {
                self.loss_target * 0.5
            } else {
                (self.loss_target * 0.5).max(VIDEO_FLOOR_BPS.min(self.loss_target))
            };
            self.loss_target = cut.min(delivered).max(floor);
            self.last_heavy_cut = Some(now);
        } else if queue > QUEUE_HIGH_MS {
            if !queue_high || !self.may_cut_for_queue(now, queue) {
                return;
            }
            // Under what got through by as much as drains the queue in about a second.
            // Every sender behind the queue cuts by the same factor and all climb by the
            // same step, so their shares converge; the floor keeps one that has just
            // resumed video (so got little through yet) from being paused again.
            let factor = (1.0 - queue / DRAIN_TIME_MS).clamp(0.5, 0.85);
            let delivered = self.received_bps().unwrap_or(f64::INFINITY);
            self.seen_congestion = true;
            let before = self.loss_target.min(self.ceiling()).min(delivered);
            self.congested_at = Some(before);
            let cut = before * factor;
            self.loss_target = cut.max(VIDEO_FLOOR_BPS.min(self.loss_target));
            self.last_queue_cut = Some((now, queue));
        } else if average.min(reported_loss) < LIGHT_LOSS && queue < QUEUE_LOW_MS {
            // Additive while small: two senders sharing one slow link then converge to
            // equal shares (with multiplicative steps the one that started first keeps
            // the larger share for good, and the other's video stayed paused).
            // From what the ceiling lets through, not from above it: a target that climbed
            // on while video was paused or held back (so little was sent) let the next
            // layer start far above what the link had shown it carries.
            let from = self.loss_target.min(self.ceiling());
            if self
                .congested_at
                .is_some_and(|c| from > c * PAST_CONGESTION)
            {
                self.congested_at = None;
            }
            self.loss_target = match self.congested_at {
                Some(c) if from >= c * NEAR_CONGESTION => from + CAREFUL_STEP_BPS,
                _ if self.cautious && !self.seen_congestion => {
                    (from + CLIMB_STEP_BPS).max(from * START_CLIMB)
                }
                _ => (from + CLIMB_STEP_BPS).max(from * CLIMB),
            };
        } else {
            return;
        }
        // Never further above the delay half than it climbs in a second, so the loss half
        // does not run away while the delay half is what limits.
        self.loss_target = self
            .loss_target
            .min(self.gcc.delay_based_bitrate() * 1.5)
            .clamp(self.min, self.max);
        self.last_move = Some(now);
    }

    /// A probe cluster's result: a rate the link carried lifts the estimate to it at once,
    /// both halves (GCC's delay half starts afresh there: it has no way to be told a rate,
    /// and climbing 8 % a second it would hold a measured link down for many seconds). A
    /// probe never lowers the estimate; a saturated link's rate is also where the climb
    /// creeps from then on.
    fn apply_probe(&mut self, r: ProbeResult) {
        let Some(bps) = r.bps else {
            return;
        };
        let bps = bps.clamp(self.min, self.max);
        if r.saturated {
            self.congested_at = Some(self.congested_at.map_or(bps, |c| c.min(bps)));
        }
        let before = self.target_bitrate();
        if bps <= before {
            return;
        }
        tracing::debug!(
            before,
            after = bps,
            saturated = r.saturated,
            "probe raised the estimate"
        );
        self.loss_target = bps;
        self.gcc = Gcc::new(bps, self.min, self.max);
        self.meter
            .delay_half_bps
            .store(bps as u64, Ordering::Relaxed);
    }

    /// Whether the queue may make us back off again: not before the last back-off has had
    /// time to show, and then only if the queue is not already draining (or has stayed long
    /// for a while, so the last back-off was not enough).
    fn may_cut_for_queue(&self, now: Instant, queue: f64) -> bool {
        match self.last_queue_cut {
            None => true,
            Some((at, then)) => {
                let since = now.saturating_duration_since(at);
                since >= QUEUE_CUT_INTERVAL && (queue >= then || since >= 4 * QUEUE_CUT_INTERVAL)
            }
        }
    }
}

impl BandwidthEstimator for LinkEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.gcc.on_reports(now, reports);
        self.note_received(now, reports);
        if let Some(queue) = self.queue.on_reports(now, reports) {
            self.meter
                .queue_delay_ms
                .store(queue as u32, Ordering::Relaxed);
        }
        self.meter
            .delay_half_bps
            .store(self.gcc.delay_based_bitrate() as u64, Ordering::Relaxed);
        self.meter
            .loss_half_bps
            .store(self.loss_target as u64, Ordering::Relaxed);
        // Transport feedback from webrtc-rs never marked a packet lost in our runs (the
        // cap dropped a fifth of them), so loss comes from the receiver reports instead.
        // Our pacer's own stale drops are no news about the link: what the path lost.
        for r in self.probes.on_reports(now, reports, &self.meter.probes) {
            self.apply_probe(r);
        }
        let reported = self.meter.video_path_loss().max(self.meter.audio_loss());
        let reports = self.meter.reports.load(Ordering::Relaxed);
        let fresh = reports != self.reports_seen;
        self.reports_seen = reports;
        self.update_loss(now, reported, fresh);
    }

    fn target_bitrate(&self) -> f64 {
        self.gcc
            .delay_based_bitrate()
            .min(self.loss_target)
            .min(self.ceiling())
            .clamp(self.min, self.max)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::queue_delay::test_report;

    fn estimator() -> LinkEstimator {
        LinkEstimator::new(600_000.0, 30_000.0, 2_500_000.0, Arc::default())
    }

    /// Feeds the loss half `secs` seconds of reports (every 200 ms) of `loss`.
    fn run(e: &mut LinkEstimator, t: &mut Instant, secs: u32, loss: f64) {
        for _ in 0..secs * 5 {
            *t += Duration::from_millis(200);
            e.update_loss(*t, loss, true);
        }
    }

    #[test]
    fn random_loss_of_a_few_percent_does_not_hold_the_estimate_down() {
        let mut e = estimator();
        let mut t = Instant::now();
        // Congestion at the start: 40 % loss drives the loss half down.
        run(&mut e, &mut t, 3, 0.4);
        let low = e.loss_target;
        assert!(low < 300_000.0, "{low}");
        // Then 5 % random loss for six seconds: it climbs back (GCC's would hold).
        run(&mut e, &mut t, 6, 0.05);
        assert!(
            e.loss_target > low * 2.0,
            "{} stayed near {low}",
            e.loss_target
        );
    }

    /// A report on a packet of `size` bytes sent now that arrived (with no time) or not.
    fn report(size: usize, arrived: bool) -> PacketReport {
        let arrival = arrived.then_some(Duration::ZERO);
        PacketReport {
            arrival: None,
            ..test_report(Instant::now(), arrival, size)
        }
    }

    #[test]
    fn the_estimate_stays_near_what_the_far_end_receives() {
        let mut e = estimator();
        // A link that has shown congestion (it paused our video, say).
        e.seen_congestion = true;
        let mut t = Instant::now();
        // Only audio flows: 50 packets of 160 bytes a second, all arriving.
        for _ in 0..100 {
            t += Duration::from_millis(20);
            e.note_received(t, &[report(160, true)]);
        }
        let ceiling = 64_000.0 * RECEIVED_FACTOR + PROBE_HEADROOM_BPS;
        assert!(
            (e.target_bitrate() - ceiling).abs() < 5_000.0,
            "{} vs {ceiling}",
            e.target_bitrate()
        );
    }

    /// Feeds `secs` seconds of transport feedback, every 100 ms, for `bps` of 1000-byte
    /// packets, each waiting `queue_ms(t)` ms in a queue on the path (`t` in ms from `t0`).
    fn feed(
        e: &mut LinkEstimator,
        t0: Instant,
        from_ms: u64,
        secs: u64,
        bps: u64,
        queue_ms: impl Fn(u64) -> u64,
    ) {
        let per_batch = (bps / 8 / 1000 / 10).max(1);
        for b in 0..secs * 10 {
            let at = from_ms + b * 100;
            let reports: Vec<_> = (0..per_batch)
                .map(|i| {
                    let sent = at + i * 100 / per_batch;
                    test_report(
                        t0 + Duration::from_millis(sent),
                        Some(Duration::from_millis(10 + sent + queue_ms(sent))),
                        1000,
                    )
                })
                .collect();
            e.on_reports(t0 + Duration::from_millis(at + 100), &reports);
        }
    }

    #[test]
    fn a_standing_queue_backs_off_under_what_got_through() {
        let mut e = estimator();
        let t0 = Instant::now();
        feed(&mut e, t0, 0, 3, 800_000, |_| 0);
        let before = e.target_bitrate();
        assert!(before >= 600_000.0, "{before}");
        // The path's queue grows 100 ms a second for two seconds.
        feed(&mut e, t0, 3000, 2, 800_000, |t| (t - 3000) / 10);
        let after = e.target_bitrate();
        assert!(after < 800_000.0 * 0.85, "{before} -> {after}");
        assert!(after >= VIDEO_FLOOR_BPS, "{after}");
    }

    #[test]
    fn a_brief_stall_is_not_a_queue() {
        let mut e = estimator();
        let t0 = Instant::now();
        feed(&mut e, t0, 0, 3, 800_000, |_| 0);
        let before = e.target_bitrate();
        // The receiver was not scheduled for 90 ms: one batch arrives late, then none.
        feed(&mut e, t0, 3000, 2, 800_000, |t| {
            if (3000..3090).contains(&t) { 120 } else { 0 }
        });
        assert!(
            e.target_bitrate() >= before,
            "{before} -> {}",
            e.target_bitrate()
        );
    }

    #[test]
    fn a_queue_alone_never_pauses_video() {
        let mut e = LinkEstimator::new(130_000.0, 30_000.0, 2_500_000.0, Arc::default());
        let t0 = Instant::now();
        // Audio and a little video, then a queue that other senders keep long.
        feed(&mut e, t0, 0, 2, 100_000, |_| 0);
        feed(&mut e, t0, 2000, 5, 100_000, |_| 400);
        assert!(
            e.target_bitrate() >= VIDEO_FLOOR_BPS,
            "{}",
            e.target_bitrate()
        );
    }

    #[test]
    fn the_estimate_climbs_from_what_the_link_has_shown_not_above_it() {
        let mut e = estimator();
        e.seen_congestion = true;
        let t0 = Instant::now();
        // Only audio flows for ten seconds: the ceiling holds the estimate near it...
        feed(&mut e, t0, 0, 10, 64_000, |_| 0);
        let ceiling = e.ceiling();
        assert!(e.target_bitrate() <= ceiling + 1.0);
        // ...and the loss half has not run on above it, so when video starts the
        // estimate grows from there.
        assert!(
            e.loss_target <= ceiling + 2.0 * CLIMB_STEP_BPS,
            "{} vs ceiling {ceiling}",
            e.loss_target
        );
    }

    #[test]
    fn one_report_of_heavy_loss_does_not_pause_video_but_persisting_loss_does() {
        let mut e = LinkEstimator::new(140_000.0, 30_000.0, 2_500_000.0, Arc::default());
        let mut t = Instant::now();
        // One report of 30 %: down, but not under the floor.
        e.update_loss(t, 0.3, true);
        let once = e.loss_target;
        assert!((once - VIDEO_FLOOR_BPS).abs() < 1.0, "{once}");
        // A second a second later: the smallest layer is too much, go under.
        t += Duration::from_secs(1);
        e.update_loss(t, 0.3, true);
        assert!(e.loss_target < VIDEO_FLOOR_BPS, "{}", e.loss_target);
    }

    #[test]
    fn near_the_rate_that_last_congested_the_link_the_climb_creeps() {
        let mut e = LinkEstimator::new(300_000.0, 30_000.0, 2_500_000.0, Arc::default());
        let t0 = Instant::now();
        feed(&mut e, t0, 0, 2, 300_000, |_| 0);
        // A queue builds at about 300 kbit/s: back off.
        feed(&mut e, t0, 2000, 1, 300_000, |t| (t - 2000) / 5);
        let cut = e.loss_target;
        assert!(cut < 300_000.0 * 0.9, "{cut}");
        // The queue drains; the climb is fast up to near where it congested...
        feed(&mut e, t0, 3000, 2, 300_000, |_| 0);
        let near = e.loss_target;
        assert!(near >= 300_000.0 * 0.85, "{cut} -> {near}");
        // ...and a creep from there: 10 kbit/s a second rather than 50.
        feed(&mut e, t0, 5000, 2, 300_000, |_| 0);
        let crept = e.loss_target - near;
        assert!(crept <= 25_000.0, "{near} +{crept}");
        // Well past it the link has room again: full speed.
        e.loss_target = 300_000.0 * PAST_CONGESTION + 1.0;
        let before = e.loss_target;
        feed(&mut e, t0, 7000, 1, 600_000, |_| 0);
        assert!(
            e.loss_target - before > 30_000.0,
            "{before} -> {}",
            e.loss_target
        );
    }

    #[test]
    fn a_cautious_start_catches_up_with_the_delay_half_within_seconds_on_a_clean_link() {
        let mut e = estimator().with_cautious_start(CAUTIOUS_START_BPS);
        assert!(e.target_bitrate() <= CAUTIOUS_START_BPS);
        let t0 = Instant::now();
        // The sender sends what the estimate allows; nothing queues, nothing is lost.
        for half_second in 0..8 {
            let bps = e.target_bitrate() as u64;
            feed(&mut e, t0, half_second * 500, 1, bps, |_| 0);
        }
        let delay_half = e.gcc.delay_based_bitrate();
        assert!(
            e.target_bitrate() >= delay_half.min(e.ceiling()) * 0.95,
            "after 4 s: {} vs delay half {delay_half}",
            e.target_bitrate()
        );
        assert!(e.target_bitrate() >= 600_000.0, "{}", e.target_bitrate());
    }

    #[test]
    fn a_link_that_never_congested_is_not_held_to_what_it_was_sent() {
        // A peer on a layer shared with a slow peer is sent little; its own link is fine.
        let mut e = estimator().with_cautious_start(CAUTIOUS_START_BPS);
        let t0 = Instant::now();
        feed(&mut e, t0, 0, 6, 150_000, |_| 0);
        assert!(
            e.target_bitrate() > 150_000.0 * RECEIVED_FACTOR + PROBE_HEADROOM_BPS,
            "{}",
            e.target_bitrate()
        );
    }

    #[test]
    fn the_floor_is_above_the_point_where_video_pauses() {
        let smallest = crate::media::video::LayerSpec::sized(320, 180).min_bps;
        let pause = f64::from(crate::engine::policy::AUDIO_SHARE_BPS + smallest);
        assert!(
            VIDEO_FLOOR_BPS > pause * 1.05,
            "{VIDEO_FLOOR_BPS} vs {pause}"
        );
    }

    /// The pacer's probe controller sends one cluster of 1,200-byte packets at `t0` (the
    /// link's estimate 150 kbit/s, a share's keyframe waiting); they cross a link of
    /// `link_bps` behind a token bucket of `burst` bytes; the feedback comes every 100 ms.
    /// Returns the estimate after the feedback.
    fn probe_through(link_bps: f64, burst: f64) -> f64 {
        use crate::engine::probe::ProbeController;
        let meter = Arc::new(LinkMeter::default());
        let mut e = LinkEstimator::new(600_000.0, 30_000.0, 2_500_000.0, Arc::clone(&meter))
            .with_cautious_start(CAUTIOUS_START_BPS);
        let mut p = ProbeController::default();
        let t0 = Instant::now();
        assert!(p.maybe_start(t0, CAUTIOUS_START_BPS, 225_000.0, 2_500_000.0, 250_000));
        let mut sent = Vec::new();
        while let Some(at) = p.next_send() {
            p.on_sent(at, 1200, &meter.probes);
            sent.push(at);
        }
        // After the cluster, the pacer's own pace: a packet every 40 ms for a second.
        let last = *sent.last().unwrap();
        sent.extend((1..25).map(|i| last + Duration::from_millis(40 * i)));
        let (mut tokens, mut free) = (burst, 0.0f64);
        let reports: Vec<PacketReport> = sent
            .iter()
            .map(|&at| {
                let dep = at.duration_since(t0).as_secs_f64();
                let arr = if tokens >= 1200.0 {
                    tokens -= 1200.0;
                    dep
                } else {
                    free = free.max(dep) + 1200.0 * 8.0 / link_bps;
                    free
                };
                test_report(at, Some(Duration::from_secs_f64(0.01 + arr)), 1200)
            })
            .collect();
        for batch in 1..=14u64 {
            let now = t0 + Duration::from_millis(100 * batch);
            let due: Vec<_> = reports
                .iter()
                .filter(|r| {
                    let arrived = t0 + r.arrival.unwrap();
                    arrived <= now && arrived > now - Duration::from_millis(100)
                })
                .cloned()
                .collect();
            e.on_reports(now, &due);
        }
        e.target_bitrate()
    }

    #[test]
    fn a_probe_lifts_a_clean_link_s_estimate_at_once() {
        let bps = probe_through(100_000_000.0, 0.0);
        assert!(bps >= 1_900_000.0, "{bps}");
    }

    #[test]
    fn a_probe_into_a_capped_link_lifts_the_estimate_to_the_cap_not_above() {
        // 400 kbit/s behind htb's 15 kB burst (scripts/impair).
        let bps = probe_through(400_000.0, 15_000.0);
        assert!((300_000.0..=420_000.0).contains(&bps), "{bps}");
    }

    #[test]
    fn heavy_loss_still_backs_off() {
        let mut e = estimator();
        let mut t = Instant::now();
        run(&mut e, &mut t, 5, 0.5);
        assert!(e.target_bitrate() < 100_000.0, "{}", e.target_bitrate());
        assert!(e.target_bitrate() >= 30_000.0);
    }
}
