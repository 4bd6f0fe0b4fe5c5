//! Our pacer, in webrtc-rs' pacer slot: audio first, stale video dropped, and a meter of
//! what the link reports back (loss, NACKs) for the policy.
//!
//! webrtc-rs' own pacer is one FIFO of up to 4,096 packets paced at the congestion
//! controller's estimate. Behind a slow link it held seconds of video, and every audio
//! packet waited behind it: a member on a 400 kbit/s link heard 6 % of the audio, seconds
//! late. Here audio never waits for video (it is a few percent of the rate and what people
//! notice first), and a video packet whose picture is older than [`MAX_VIDEO_AGE`] is
//! dropped rather than sent late; the receiver then gives the picture up and asks for a
//! keyframe, which the policy answers with a layer the link can carry.
//!
//! The congestion controller's estimate reaches this interceptor as an attribute on the read
//! leg (the controller is wire-side of us), exactly as it reached the pacer it replaces.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Pacer, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use super::probe::{ProbeController, ProbeLog};

/// Video older than this (by its RTP timestamp against the newest one sent) is not worth
/// sending: the receiver would show it late or have given it up already.
pub(crate) const MAX_VIDEO_AGE: Duration = Duration::from_millis(500);
/// Screen-share packets may wait this long: a share's keyframe at 1080p is many times a
/// camera's, and text shown a second late still reads, while a keyframe that never gets
/// through within [`MAX_VIDEO_AGE`] on a narrow link would leave the share blank for good.
const MAX_SCREEN_AGE: Duration = Duration::from_secs(5);
/// How much faster than the estimate we pace, so an encoder's burst (a keyframe is several
/// times an average frame) drains quickly; Chromium paces at 2.5x.
const PACING_FACTOR: f64 = 1.5;
/// Until the first estimate arrives.
const INITIAL_RATE_BPS: f64 = 1_000_000.0;
/// The most an estimate can be unless the connection says otherwise (`EngineConfig`'s
/// default `max_bitrate`).
const DEFAULT_MAX_BPS: f64 = 2_500_000.0;
/// Video packets held at most, a backstop behind the age limit.
const VIDEO_QUEUE_LIMIT: usize = 1024;
/// Least time between two resends of one packet when the round trip is not known or
/// shorter. webrtc-rs' NACK generator asks for a missing packet every 20 ms (ten times) and
/// its responder resends on every ask: behind a queue of a few hundred ms each lost packet
/// went out up to ten times, on exactly the link that was already too slow.
const MIN_RESEND_GAP: Duration = Duration::from_millis(100);
/// Resends remembered at most before old ones are forgotten (a bound on memory).
const RESENDS_REMEMBERED: usize = 512;
/// Our own dropped sequence numbers remembered at most, until a receiver report covers them.
const DROPS_REMEMBERED: usize = 4096;

/// What the link tells us, shared between the pacer and the peer task.
#[derive(Debug, Default)]
pub(crate) struct LinkMeter {
    /// Loss of our video the receiver reports, in 1/256 (RTCP's `fraction_lost`).
    pub(crate) video_loss: AtomicU32,
    /// Loss of our audio the receiver reports, in 1/256.
    pub(crate) audio_loss: AtomicU32,
    /// The part of [`Self::video_loss`] the path caused, in 1/256: their report less the
    /// packets this pacer dropped as stale (which they count as lost too, but which say
    /// nothing about the link beyond what the estimate already said).
    pub(crate) video_path_loss: AtomicU32,
    /// The round trip, ms (0: not known yet); spaces resends of one packet.
    pub(crate) rtt_ms: AtomicU32,
    /// Resends not sent because the same packet had just been resent.
    pub(crate) resends_suppressed: AtomicU64,
    /// Sequence numbers of theirs we asked for again.
    pub(crate) nacks_sent: AtomicU64,
    /// Sequence numbers of ours they asked for again.
    pub(crate) nacks_received: AtomicU64,
    /// Video packets dropped for being stale.
    pub(crate) video_dropped: AtomicU64,
    /// The congestion controller's latest estimate, bits per second (0: none yet).
    pub(crate) estimate_bps: AtomicU64,
    /// How long the oldest queued video packet has waited, ms.
    pub(crate) video_queue_ms: AtomicU32,
    /// Loss of everything we send them as transport feedback shows it (averaged), in 1/1000.
    pub(crate) send_loss_permille: AtomicU32,
    /// Receiver reports about our media received so far (the estimator acts once per report).
    pub(crate) reports: AtomicU64,
    /// The estimator's delay half and loss half, bits per second (for logs).
    pub(crate) delay_half_bps: AtomicU64,
    /// See `delay_half_bps`.
    pub(crate) loss_half_bps: AtomicU64,
    /// How long our packets wait in queues on the path, ms (from transport feedback).
    pub(crate) queue_delay_ms: AtomicU32,
    /// Video was dropped since the peer task last looked: their picture is broken until a
    /// keyframe, so one is asked for at once rather than after their NACKs (futile: the
    /// resends would be as stale) and their keyframe request.
    pub(crate) video_gap: AtomicBool,
    /// The same for our screen share.
    pub(crate) screen_gap: AtomicBool,
    /// Probe clusters sent, and their results (`probe.rs`).
    pub(crate) probes: ProbeLog,
}

impl LinkMeter {
    /// Reported loss of our video, as a fraction.
    pub(crate) fn video_loss(&self) -> f64 {
        f64::from(self.video_loss.load(Ordering::Relaxed)) / 256.0
    }

    /// Reported loss of our audio, as a fraction.
    pub(crate) fn audio_loss(&self) -> f64 {
        f64::from(self.audio_loss.load(Ordering::Relaxed)) / 256.0
    }

    /// Loss of our video the path caused, as a fraction (see [`Self::video_path_loss`]).
    pub(crate) fn video_path_loss(&self) -> f64 {
        f64::from(self.video_path_loss.load(Ordering::Relaxed)) / 256.0
    }
}

/// Audio-first pacer with a staleness bound for video; see the module docs.
pub(crate) struct AudioFirstPacer {
    bucket: Pacer,
    audio_ssrc: u32,
    video_ssrc: u32,
    /// Our screen share's SSRC, if the connection may carry one.
    screen_ssrc: Option<u32>,
    audio: VecDeque<TaggedPacket>,
    video: VecDeque<(Instant, TaggedPacket)>,
    /// The screen share's packets, new and resent: paced after the camera's. They have a
    /// sequence and clock of their own, so they stay out of the camera's tracking (a
    /// screen packet among the camera's would look like a resend or a stale picture).
    screen: VecDeque<(Instant, TaggedPacket)>,
    /// Retransmitted video (the NACK responder's resends), sent before new video.
    resends: VecDeque<(Instant, TaggedPacket)>,
    /// Newest video RTP timestamp written, extended past wraps.
    newest_video_ts: Option<i64>,
    /// Highest video sequence number written, extended past wraps.
    highest_video_seq: Option<i64>,
    /// When each recently resent sequence number was last queued for resending.
    resent: HashMap<u16, Instant>,
    /// Extended sequence numbers of new video we dropped, not yet covered by a report.
    dropped_seqs: VecDeque<i64>,
    /// The extended highest sequence number the last video receiver report covered.
    reported_seq: Option<i64>,
    released: VecDeque<TaggedPacket>,
    read: VecDeque<TaggedPacket>,
    meter: Arc<LinkMeter>,
    /// Sends a probe cluster when much more waits than the estimate lets out (`probe.rs`).
    probe: ProbeController,
    /// The most the estimate can be, bits per second (no probe beyond it).
    max_bps: f64,
}

impl AudioFirstPacer {
    /// A pacer for a connection whose outgoing audio and video use these SSRCs.
    pub(crate) fn new(audio_ssrc: u32, video_ssrc: u32, meter: Arc<LinkMeter>) -> Self {
        Self {
            bucket: Pacer::new(INITIAL_RATE_BPS * PACING_FACTOR),
            audio_ssrc,
            video_ssrc,
            screen_ssrc: None,
            audio: VecDeque::new(),
            video: VecDeque::new(),
            screen: VecDeque::new(),
            resends: VecDeque::new(),
            newest_video_ts: None,
            highest_video_seq: None,
            resent: HashMap::new(),
            dropped_seqs: VecDeque::new(),
            reported_seq: None,
            released: VecDeque::new(),
            read: VecDeque::new(),
            meter,
            probe: ProbeController::default(),
            max_bps: DEFAULT_MAX_BPS,
        }
    }

    /// The estimate never exceeds `bps`: probing for more is pointless.
    pub(crate) fn with_max_bitrate(mut self, bps: f64) -> Self {
        self.max_bps = bps;
        self
    }

    /// Bytes of video (camera, resends and screen) waiting.
    fn backlog_bytes(&self) -> usize {
        let size = |p: &TaggedPacket| match &p.message.packet {
            Packet::Rtp(rtp) => rtp.marshal_size(),
            _ => 0,
        };
        [&self.resends, &self.video, &self.screen]
            .iter()
            .flat_map(|q| q.iter())
            .map(|(_, p)| size(p))
            .sum()
    }

    /// The congestion controller's latest estimate (before the first, the initial rate).
    fn estimate_bps(&self) -> f64 {
        match self.meter.estimate_bps.load(Ordering::Relaxed) {
            0 => INITIAL_RATE_BPS,
            bps => bps as f64,
        }
    }

    /// Also paces a screen share sent with this SSRC.
    pub(crate) fn with_screen(mut self, ssrc: u32) -> Self {
        self.screen_ssrc = Some(ssrc);
        self
    }

    fn bits(packet: &TaggedPacket) -> f64 {
        match &packet.message.packet {
            Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
            _ => 0.0,
        }
    }

    fn note_reports(&mut self, reports: &[ReceptionReport]) {
        for r in reports {
            let loss = u32::from(r.fraction_lost);
            if r.ssrc == self.video_ssrc {
                self.meter.video_loss.store(loss, Ordering::Relaxed);
                let path = self.path_loss(r);
                self.meter.video_path_loss.store(path, Ordering::Relaxed);
            } else if r.ssrc == self.audio_ssrc {
                self.meter.audio_loss.store(loss, Ordering::Relaxed);
            } else {
                continue;
            }
            self.meter.reports.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The loss in a video receiver report less our own drops in the interval it covers
    /// (RFC 3550: since their previous report), in 1/256.
    fn path_loss(&mut self, report: &ReceptionReport) -> u32 {
        let reported = u32::from(report.fraction_lost);
        let Some(highest) = self.highest_video_seq else {
            return reported;
        };
        // Their extended number has their own cycle count; place its low 16 bits near ours.
        let low = report.last_sequence_number as u16;
        let end = highest + i64::from(low.wrapping_sub(highest as u16) as i16);
        let start = self.reported_seq.replace(end);
        let ours = self
            .dropped_seqs
            .iter()
            .filter(|&&s| start.is_some_and(|start| s > start) && s <= end)
            .count();
        while self.dropped_seqs.front().is_some_and(|&s| s <= end) {
            self.dropped_seqs.pop_front();
        }
        let Some(expected) = start.map(|start| end - start).filter(|&e| e > 0) else {
            return reported;
        };
        let lost = f64::from(reported) / 256.0 * expected as f64 - ours as f64;
        (lost.max(0.0) / expected as f64 * 256.0).round() as u32
    }

    /// Notes that new video with this extended sequence number was dropped, for
    /// [`Self::path_loss`].
    fn remember_drop(&mut self, ext: i64) {
        if self.dropped_seqs.len() >= DROPS_REMEMBERED {
            self.dropped_seqs.pop_front();
        }
        self.dropped_seqs.push_back(ext);
    }

    /// Whether a resend of `seq` is a repeat of one sent less than a round trip ago (whose
    /// answer cannot have come back yet); records it when it is not.
    fn repeated_resend(&mut self, seq: u16, now: Instant) -> bool {
        let rtt = Duration::from_millis(u64::from(self.meter.rtt_ms.load(Ordering::Relaxed)));
        let gap = rtt.max(MIN_RESEND_GAP);
        if self
            .resent
            .get(&seq)
            .is_some_and(|t| now.saturating_duration_since(*t) < gap)
        {
            return true;
        }
        if self.resent.len() >= RESENDS_REMEMBERED {
            self.resent
                .retain(|_, t| now.saturating_duration_since(*t) < gap);
        }
        self.resent.insert(seq, now);
        false
    }

    /// Whether a video packet with this RTP timestamp is too old to send; tracks the newest.
    fn stale(&mut self, ts: u32) -> bool {
        let (ext, _) = track_newest(&mut self.newest_video_ts, i64::from(ts), |newest| {
            i64::from(ts.wrapping_sub(newest as u32) as i32)
        });
        let newest = self.newest_video_ts.unwrap_or(ext);
        let max_ticks = (MAX_VIDEO_AGE.as_secs_f64() * 90_000.0) as i64;
        newest - ext > max_ticks
    }

    fn note_screen_dropped(&self) {
        self.meter.video_dropped.fetch_add(1, Ordering::Relaxed);
        self.meter.screen_gap.store(true, Ordering::Relaxed);
    }

    fn note_dropped(&self) {
        self.meter.video_dropped.fetch_add(1, Ordering::Relaxed);
        self.meter.video_gap.store(true, Ordering::Relaxed);
    }

    /// A video packet's extended sequence number, and whether it was written before (the
    /// NACK responder resends on the same SSRC with the same number); tracks the highest.
    fn sequence(&mut self, seq: u16) -> (i64, bool) {
        let (ext, highest) = track_newest(&mut self.highest_video_seq, i64::from(seq), |h| {
            i64::from(seq.wrapping_sub(h as u16) as i16)
        });
        (ext, highest.is_some_and(|h| ext <= h))
    }

    fn drop_stale_head(&mut self, now: Instant) {
        for _ in 0..drop_expired(&mut self.screen, now, MAX_SCREEN_AGE, |_| {}) {
            self.note_screen_dropped();
        }
        let resends = drop_expired(&mut self.resends, now, MAX_VIDEO_AGE, |_| {});
        let mut fresh = Vec::new();
        drop_expired(&mut self.video, now, MAX_VIDEO_AGE, |p| {
            if let Packet::Rtp(rtp) = &p.message.packet {
                fresh.push(rtp.header.sequence_number);
            }
        });
        for _ in 0..resends + fresh.len() {
            self.note_dropped();
        }
        for seq in fresh {
            let (ext, _) = self.sequence(seq);
            self.remember_drop(ext);
        }
        let age = self.video.front().map_or(0, |(q, _)| {
            u32::try_from(now.saturating_duration_since(*q).as_millis()).unwrap_or(u32::MAX)
        });
        self.meter.video_queue_ms.store(age, Ordering::Relaxed);
    }
}

/// Extends a wrapping counter's value (`value` as first seen; `distance` gives its signed
/// distance from the newest extended value) and records the newest. Returns the extended
/// value and the newest before it.
fn track_newest(
    newest: &mut Option<i64>,
    value: i64,
    distance: impl Fn(i64) -> i64,
) -> (i64, Option<i64>) {
    let before = *newest;
    let ext = before.map_or(value, |n| n + distance(n));
    *newest = Some(before.map_or(ext, |n| n.max(ext)));
    (ext, before)
}

/// Drops the packets at the head of `queue` that have waited longer than `max_age`;
/// returns how many.
fn drop_expired(
    queue: &mut VecDeque<(Instant, TaggedPacket)>,
    now: Instant,
    max_age: Duration,
    mut dropped: impl FnMut(&TaggedPacket),
) -> usize {
    let before = queue.len();
    while let Some((queued, p)) = queue.front() {
        if now.saturating_duration_since(*queued) <= max_age {
            break;
        }
        dropped(p);
        queue.pop_front();
    }
    before - queue.len()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for AudioFirstPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.bucket
                .set_target_bitrate(bits_per_second * PACING_FACTOR);
            self.meter
                .estimate_bps
                .store(*bits_per_second as u64, Ordering::Relaxed);
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    self.note_reports(&rr.reports);
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    self.note_reports(&sr.reports);
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    let n: usize = nack.nacks.iter().map(|p| p.packet_list().len()).sum();
                    self.meter
                        .nacks_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let rtp = match &msg.message.packet {
            Packet::Rtcp(packets) => {
                // Feedback is only useful fresh: never paced. Count the NACKs we send.
                let n: usize = packets
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                    .flat_map(|nack| nack.nacks.iter())
                    .map(|p| p.packet_list().len())
                    .sum();
                self.meter.nacks_sent.fetch_add(n as u64, Ordering::Relaxed);
                self.released.push_back(msg);
                return Ok(());
            }
            Packet::Rtp(rtp) => &rtp.header,
            _ => {
                self.released.push_back(msg);
                return Ok(());
            }
        };
        self.bucket.refill(msg.now);
        if rtp.ssrc == self.audio_ssrc {
            self.audio.push_back(msg);
            return Ok(());
        }
        if Some(rtp.ssrc) == self.screen_ssrc {
            if self.screen.len() >= VIDEO_QUEUE_LIMIT {
                self.note_screen_dropped();
            } else {
                self.screen.push_back((msg.now, msg));
            }
            return Ok(());
        }
        let seq = rtp.sequence_number;
        let (ext, resend) = self.sequence(seq);
        if self.stale(rtp.timestamp) || self.video.len() >= VIDEO_QUEUE_LIMIT {
            self.note_dropped();
            if !resend {
                self.remember_drop(ext);
            }
            return Ok(());
        }
        if resend && self.repeated_resend(seq, msg.now) {
            self.meter
                .resends_suppressed
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if resend {
            // Ahead of new video: the receiver holds its picture for this packet only a few
            // hundred ms (150 + 2 RTT), and behind a slow link the queue of new video alone
            // can take that long. (Behind the 400 kbit/s cap few resends arrive even so:
            // most NACKs there ask for packets this pacer dropped as stale, whose resends
            // are stale too. See issue 11's note.)
            self.resends.push_back((msg.now, msg));
        } else {
            self.video.push_back((msg.now, msg));
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.released.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.bucket.refill(now);
        // Audio goes at once, whatever the budget: it is small, and late audio is lost audio.
        while let Some(mut p) = self.audio.pop_front() {
            self.bucket.consume(Self::bits(&p));
            p.now = now;
            self.released.push_back(p);
        }
        self.drop_stale_head(now);
        self.probe.note_results(now, &self.meter.probes);
        if !self.probe.is_active() {
            let (estimate, pacing) = (self.estimate_bps(), self.bucket.target_bitrate());
            let backlog = self.backlog_bytes();
            self.probe
                .maybe_start(now, estimate, pacing, self.max_bps, backlog);
        }
        loop {
            // The camera before the share: when the link narrows, the share's frames wait
            // (and go stale, and are skipped) first, so its frame rate gives while its
            // size stays.
            let queue = if !self.resends.is_empty() {
                &mut self.resends
            } else if !self.video.is_empty() {
                &mut self.video
            } else {
                &mut self.screen
            };
            let Some((_, head)) = queue.front() else {
                break;
            };
            let bits = Self::bits(head);
            let probing = self.probe.is_active();
            // A probe cluster goes at its own rate, past the bucket: it is the measurement
            // that lets the estimate (and so the bucket) grow.
            if (probing && !self.probe.may_send(now))
                || (!probing && !self.bucket.can_release(bits))
            {
                break;
            }
            let Some((_, mut p)) = queue.pop_front() else {
                break;
            };
            if probing {
                self.probe
                    .on_sent(now, (bits / 8.0) as usize, &self.meter.probes);
            } else {
                self.bucket.consume(bits);
            }
            // The departure instant: the send history (TWCC) must not charge our queueing
            // to the network.
            p.now = now;
            self.released.push_back(p);
        }
        if self.resends.is_empty() && self.video.is_empty() && self.screen.is_empty() {
            // Nothing left to probe with: what was sent is the cluster.
            self.probe.finish(&self.meter.probes);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        if let Some(a) = self.audio.front() {
            return Some(a.now);
        }
        let (queued, head) = self
            .resends
            .front()
            .or_else(|| self.video.front())
            .or_else(|| self.screen.front())?;
        let release = match self.probe.next_send() {
            Some(at) => Some(at),
            None => self.bucket.releasable_at(Self::bits(head)),
        };
        // Wake for the age limit too, so a stalled queue is emptied on time (the screen's,
        // longer, is checked on these wakes too).
        let expiry = *queued + MAX_VIDEO_AGE + Duration::from_millis(1);
        Some(release.map_or(expiry, |r| r.min(expiry)))
    }
}

impl Interceptor for AudioFirstPacer {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtp;
    use rtc::shared::TransportContext;

    const AUDIO: u32 = 1;
    const VIDEO: u32 = 2;

    fn rtp_packet(ssrc: u32, seq: u16, ts: u32, len: usize, now: Instant) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    ssrc,
                    sequence_number: seq,
                    timestamp: ts,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0u8; len]),
            })),
        }
    }

    fn ssrc_of(p: &TaggedPacket) -> u32 {
        match &p.message.packet {
            Packet::Rtp(r) => r.header.ssrc,
            _ => 0,
        }
    }

    fn pacer() -> (AudioFirstPacer, Arc<LinkMeter>) {
        let meter = Arc::new(LinkMeter::default());
        (
            AudioFirstPacer::new(AUDIO, VIDEO, Arc::clone(&meter)),
            meter,
        )
    }

    fn drain(p: &mut AudioFirstPacer) -> Vec<u32> {
        std::iter::from_fn(|| p.poll_write())
            .map(|x| ssrc_of(&x))
            .collect()
    }

    #[test]
    fn audio_overtakes_queued_video() {
        let (mut p, _) = pacer();
        let t0 = Instant::now();
        // A keyframe's worth of video (80 kB) far beyond the burst, then one audio packet.
        for i in 0..70 {
            p.handle_write(rtp_packet(VIDEO, i, 0, 1150, t0)).unwrap();
        }
        p.handle_write(rtp_packet(AUDIO, 0, 0, 80, t0)).unwrap();
        p.handle_timeout(t0).unwrap();
        let out = drain(&mut p);
        assert_eq!(out.first(), Some(&AUDIO), "audio must leave first: {out:?}");
        assert!(out.len() < 71, "video is still paced");
    }

    #[test]
    fn video_is_paced_at_a_multiple_of_the_estimate() {
        let (mut p, meter) = pacer();
        let t0 = Instant::now();
        p.bucket.set_target_bitrate(400_000.0 * PACING_FACTOR);
        p.bucket.refill(t0);
        let mut sent = 0usize;
        let mut t = t0;
        for i in 0..200u16 {
            // 30 packets of 1,000 bytes every 100 ms: 2.4 Mbit/s offered.
            if i % 30 == 0 {
                t += Duration::from_millis(100);
            }
            p.handle_write(rtp_packet(VIDEO, i, u32::from(i / 30) * 9000, 1000, t))
                .unwrap();
            p.handle_timeout(t).unwrap();
            sent += drain(&mut p).len();
        }
        let secs = t.duration_since(t0).as_secs_f64();
        let bps = sent as f64 * 1012.0 * 8.0 / secs;
        assert!(
            bps < 400_000.0 * PACING_FACTOR * 1.3,
            "{bps} bit/s left, above the pacing rate"
        );
        assert!(meter.video_queue_ms.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_large_backlog_is_probed_faster_than_the_estimate_then_paced_again() {
        const SCREEN: u32 = 3;
        let meter = Arc::new(LinkMeter::default());
        let mut p = AudioFirstPacer::new(AUDIO, VIDEO, Arc::clone(&meter)).with_screen(SCREEN);
        let t0 = Instant::now();
        meter.estimate_bps.store(150_000, Ordering::Relaxed);
        p.bucket.set_target_bitrate(150_000.0 * PACING_FACTOR);
        p.bucket.refill(t0);
        // A share's first keyframe: 250 kB.
        for i in 0..210u16 {
            p.handle_write(rtp_packet(SCREEN, i, 0, 1188, t0)).unwrap();
        }
        // 400 ms of the pacer's timer.
        let mut sent = 0usize;
        let mut t = t0;
        while t < t0 + Duration::from_millis(400) {
            p.handle_timeout(t).unwrap();
            sent += drain(&mut p).len();
            t = p
                .poll_timeout()
                .unwrap()
                .max(t + Duration::from_micros(500));
        }
        // A cluster of about 30 kB at 2 Mbit/s went out (the bucket alone lets out 225
        // kbit/s: 11 kB in 400 ms, plus its burst)...
        let clusters = meter.probes.take_sent();
        assert_eq!(clusters.len(), 1, "{clusters:?}");
        let c = clusters[0];
        assert!(c.packets >= 25, "{c:?}");
        let spread = (c.last - c.first).as_secs_f64();
        let rate = (c.packets - 1) as f64 * 1200.0 * 8.0 / spread;
        assert!(
            (1_600_000.0..2_600_000.0).contains(&rate),
            "probe paced at {rate}"
        );
        // ...and then the bucket's pace again, until a result comes.
        assert!(
            sent <= c.packets + 12,
            "{sent} sent, {} in the cluster",
            c.packets
        );
    }

    #[test]
    fn a_resend_goes_ahead_of_queued_video() {
        let (mut p, _) = pacer();
        let t0 = Instant::now();
        p.bucket.set_target_bitrate(100_000.0);
        p.bucket.refill(t0);
        // A backlog of new video far beyond the budget, then a resend of packet 3.
        for i in 0..50 {
            p.handle_write(rtp_packet(VIDEO, i, 0, 1000, t0)).unwrap();
        }
        p.handle_timeout(t0).unwrap();
        let first = std::iter::from_fn(|| p.poll_write()).count();
        let t1 = t0 + Duration::from_millis(20);
        p.handle_write(rtp_packet(VIDEO, 3, 0, 1000, t1)).unwrap();
        // The next packet to leave is the resend, though 40-odd new ones queued before it.
        let mut t = t1;
        let next = loop {
            t += Duration::from_millis(10);
            p.handle_timeout(t).unwrap();
            if let Some(x) = p.poll_write() {
                break x;
            }
        };
        let seq = match &next.message.packet {
            Packet::Rtp(r) => r.header.sequence_number,
            _ => u16::MAX,
        };
        assert!(
            first < 49,
            "the backlog must be paced ({first} left at once)"
        );
        assert_eq!(seq, 3, "the resend must leave before the backlog");
    }

    #[test]
    fn stale_video_is_dropped_not_sent_late() {
        let (mut p, meter) = pacer();
        let t0 = Instant::now();
        p.bucket.set_target_bitrate(50_000.0);
        for i in 0..50u16 {
            p.handle_write(rtp_packet(VIDEO, i, 0, 1150, t0)).unwrap();
        }
        // A second later everything still queued is past the age limit.
        let later = t0 + Duration::from_secs(1);
        p.handle_timeout(later).unwrap();
        let sent = drain(&mut p).len();
        assert!(sent < 10, "{sent} stale packets were sent");
        assert!(p.video.is_empty());
        assert!(meter.video_dropped.load(Ordering::Relaxed) >= 40);
        // Their picture is broken now: the peer task is told to ask for a keyframe.
        assert!(meter.video_gap.swap(false, Ordering::Relaxed));
        // A retransmission of a picture long superseded is dropped on arrival.
        p.handle_write(rtp_packet(VIDEO, 60, 90_000, 100, later))
            .unwrap();
        p.handle_write(rtp_packet(VIDEO, 3, 0, 100, later)).unwrap();
        assert_eq!(p.video.len(), 1);
    }

    fn seq_of(p: &TaggedPacket) -> u16 {
        match &p.message.packet {
            Packet::Rtp(r) => r.header.sequence_number,
            _ => u16::MAX,
        }
    }

    #[test]
    fn a_packet_is_resent_once_a_round_trip_however_often_it_is_asked_for() {
        let (mut p, meter) = pacer();
        meter.rtt_ms.store(200, Ordering::Relaxed);
        let t0 = Instant::now();
        for i in 0..10 {
            p.handle_write(rtp_packet(VIDEO, i, 0, 500, t0)).unwrap();
        }
        p.handle_timeout(t0).unwrap();
        drain(&mut p);
        // The NACK generator asks for packet 4 every 20 ms; the responder resends each time.
        let mut resent = 0;
        for k in 1..=10u32 {
            let t = t0 + Duration::from_millis(20) * k;
            p.handle_write(rtp_packet(VIDEO, 4, 0, 500, t)).unwrap();
            p.handle_timeout(t).unwrap();
            resent += std::iter::from_fn(|| p.poll_write())
                .filter(|x| seq_of(x) == 4)
                .count();
        }
        assert_eq!(resent, 1, "one resend within a round trip");
        assert_eq!(meter.resends_suppressed.load(Ordering::Relaxed), 9);
        // A round trip after the first, the answer has had time to come: ask again, resend.
        let t = t0 + Duration::from_millis(20 + 200);
        p.handle_write(rtp_packet(VIDEO, 4, 0, 500, t)).unwrap();
        p.handle_timeout(t).unwrap();
        assert_eq!(
            std::iter::from_fn(|| p.poll_write())
                .filter(|x| seq_of(x) == 4)
                .count(),
            1
        );
    }

    fn video_report(fraction_lost: u8, last_seq: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc: VIDEO,
            fraction_lost,
            last_sequence_number: last_seq,
            ..Default::default()
        }
    }

    #[test]
    fn our_own_stale_drops_are_not_counted_as_path_loss() {
        let (mut p, meter) = pacer();
        let t0 = Instant::now();
        // Sequence numbers start near the wrap, as they may.
        let base: u16 = 65_500;
        p.handle_write(rtp_packet(VIDEO, base, 0, 100, t0)).unwrap();
        p.handle_timeout(t0).unwrap();
        drain(&mut p);
        // Their first report: nothing to subtract from yet.
        p.note_reports(&[video_report(0, (1 << 16) | u32::from(base))]);
        // 100 more packets; the last 20 wait in the queue past the age limit.
        let mut t = t0;
        for i in 1..=100u16 {
            t += Duration::from_millis(10);
            let ts = u32::from(i) * 900;
            p.handle_write(rtp_packet(VIDEO, base.wrapping_add(i), ts, 100, t))
                .unwrap();
            if i <= 80 {
                p.handle_timeout(t).unwrap();
                drain(&mut p);
            }
        }
        p.handle_timeout(t + Duration::from_secs(1)).unwrap();
        assert!(drain(&mut p).is_empty());
        assert_eq!(meter.video_dropped.load(Ordering::Relaxed), 20);
        // They report 25 % lost of those 100 (64/256): 20 were ours, 5 the path's.
        let last = u32::from(base.wrapping_add(100));
        p.note_reports(&[video_report(64, (2 << 16) | last)]);
        let path = meter.video_path_loss();
        assert!((meter.video_loss() - 0.25).abs() < 1e-9);
        assert!((path - 0.05).abs() < 0.01, "path loss {path}");
        assert!(p.dropped_seqs.is_empty(), "reported drops are forgotten");
    }

    #[test]
    fn the_estimate_and_reports_reach_the_meter() {
        let (mut p, meter) = pacer();
        let now = Instant::now();
        let mut msg = AttributedPacket::new(Packet::Rtcp(vec![Box::new(ReceiverReport {
            ssrc: 9,
            reports: vec![
                ReceptionReport {
                    ssrc: VIDEO,
                    fraction_lost: 13,
                    ..Default::default()
                },
                ReceptionReport {
                    ssrc: AUDIO,
                    fraction_lost: 26,
                    ..Default::default()
                },
            ],
            ..Default::default()
        })]));
        msg.add(Attribute::TargetBitrateChanged {
            bits_per_second: 300_000.0,
        });
        p.handle_read(TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: msg,
        })
        .unwrap();
        assert!(p.poll_read().is_some(), "RTCP passes on");
        assert_eq!(meter.estimate_bps.load(Ordering::Relaxed), 300_000);
        assert!((meter.video_loss() - 13.0 / 256.0).abs() < 1e-9);
        assert!((meter.audio_loss() - 26.0 / 256.0).abs() < 1e-9);
        assert!((p.bucket.target_bitrate() - 300_000.0 * PACING_FACTOR).abs() < 1.0);
    }
}
