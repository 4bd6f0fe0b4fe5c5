//! A video stream's receive buffer: RTP packets in (any order), H.264 access units out, in
//! order, each complete. Sans-IO: the caller hands in every packet and the time, and asks
//! when to wake up.
//!
//! A sequence gap is not a loss yet: the NACK generator asks the sender again within a few
//! tens of milliseconds and the retransmission (same SSRC, the old sequence number) fills
//! the hole. So a unit with a hole waits, up to [`FrameBuffer::wait`], for the missing
//! packets; only then is it given up, and the buffer moves on to the next unit that starts
//! cleanly. Waiting is bounded, so a dead sender or a lost retransmission costs at most that
//! much delay, never a growing queue.
//!
//! The sender marks the last packet of each access unit, so a unit is complete when every
//! packet from the one after the previous unit's marker up to its own marker is here.
//! Emitting on the marker (rather than when the next unit starts, as `SampleBuilder` does)
//! saves a frame of latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

use crate::media::video::{AccessUnit, has_idr};

/// How long a unit with a hole waits for retransmissions when the round trip is negligible:
/// several NACK rounds (every 20 ms) and their answers.
pub(crate) const BASE_WAIT: Duration = Duration::from_millis(150);
/// The longest a hole is waited for, however long the round trip: beyond this a frozen
/// picture is worse than asking for a keyframe.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(400);
/// Packets held at most (about 1.5 s of 720p): a bound on memory if a sender goes mad.
const MAX_PACKETS: usize = 1500;

/// What the buffer has for the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Assembled {
    /// A unit is complete.
    Unit(AccessUnit),
    /// Packets stayed missing past the wait, so at least one unit was given up.
    Lost,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReceiveCounters {
    /// Packets that arrived after a later one: retransmissions (webrtc-rs resends on the
    /// same SSRC, so reordering on the path would count here too).
    pub(crate) late_packets: u64,
    /// Late packets that completed a unit which was then delivered.
    pub(crate) recovered_packets: u64,
    /// Times the buffer gave up on missing packets.
    pub(crate) losses: u64,
}

struct Packet {
    timestamp: u32,
    marker: bool,
    payload: Bytes,
    late: bool,
}

/// Receive buffer for one incoming H.264 stream.
pub(crate) struct FrameBuffer {
    packets: BTreeMap<u64, Packet>,
    /// Extended number of the newest packet seen.
    highest: Option<u64>,
    /// Where the next unit starts; `None` before the first packet.
    next: Option<u64>,
    /// Nothing delivered or given up yet, so an earlier packet may still move the start.
    started: bool,
    follows_loss: bool,
    /// When the hole at the head was first seen.
    hole_since: Option<Instant>,
    wait: Duration,
    counters: ReceiveCounters,
}

impl Default for FrameBuffer {
    fn default() -> Self {
        Self {
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            started: false,
            follows_loss: false,
            hole_since: None,
            wait: BASE_WAIT,
            counters: ReceiveCounters::default(),
        }
    }
}

/// Whether an RTP payload begins a NAL unit (RFC 6184): a single NAL, a STAP-A, or the
/// first fragment of an FU-A. Anything else continues a NAL whose start we did not see.
fn starts_nal(payload: &[u8]) -> bool {
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    match payload.first().map(|b| b & 0x1f) {
        Some(1..=23 | STAP_A) => true,
        Some(FU_A) => payload.get(1).is_some_and(|fu| fu & 0x80 != 0),
        _ => false,
    }
}

/// Where the head unit stands.
enum Head {
    /// Packets `next..=end` make a whole unit.
    Complete(u64),
    /// The packet at this number is missing and later ones are here.
    Hole(u64),
    /// Nothing to do until more packets come.
    Waiting,
}

impl FrameBuffer {
    /// How long a hole is waited for now.
    #[cfg(test)]
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Adapts the wait to the round trip: a retransmission takes at least one.
    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.wait = (BASE_WAIT + rtt * 2).min(MAX_WAIT);
    }

    /// Counters so far.
    pub(crate) fn counters(&self) -> ReceiveCounters {
        self.counters
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            // Far from zero so early reordering cannot underflow; the low 16 bits are `seq`.
            None => (1 << 32) | u64::from(seq),
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                h.saturating_add_signed(delta)
            }
        }
    }

    /// Takes one RTP packet of the stream.
    pub(crate) fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: Bytes) {
        let ext = self.extend(seq);
        let late = self.highest.is_some_and(|h| ext < h);
        if late {
            self.counters.late_packets += 1;
        }
        match self.next {
            Some(next) if ext < next && self.started => return, // given up or delivered
            Some(next) if ext < next => self.next = Some(ext),
            None => self.next = Some(ext),
            _ => {}
        }
        if self.packets.contains_key(&ext) {
            return;
        }
        self.packets.insert(
            ext,
            Packet {
                timestamp,
                marker,
                payload,
                late,
            },
        );
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
    }

    /// When [`Self::poll`] should next be called even if no packet arrives.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.hole_since.map(|t| t + self.wait)
    }

    /// The next finished unit or loss, if any; call until `None` after every push and at
    /// [`Self::poll_timeout`].
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Assembled> {
        let next = self.next?;
        match self.head(next) {
            Head::Waiting => {
                self.hole_since = None;
                None
            }
            Head::Complete(end) => {
                self.hole_since = None;
                self.started = true;
                self.next = Some(end + 1);
                if let Some(unit) = self.take_unit(next, end) {
                    return Some(Assembled::Unit(unit));
                }
                // Undecodable packets: the unit is as good as lost.
                self.follows_loss = true;
                self.counters.losses += 1;
                Some(Assembled::Lost)
            }
            Head::Hole(missing) => {
                let since = *self.hole_since.get_or_insert(now);
                let overfull = self.packets.len() > MAX_PACKETS;
                if now.saturating_duration_since(since) < self.wait && !overfull {
                    return None;
                }
                self.give_up(next, missing);
                Some(Assembled::Lost)
            }
        }
    }

    fn head(&self, next: u64) -> Head {
        let Some(first) = self.packets.get(&next) else {
            return match self.highest {
                Some(h) if h > next => Head::Hole(next),
                _ => Head::Waiting,
            };
        };
        let mut seq = next;
        loop {
            let Some(p) = self.packets.get(&seq) else {
                return match self.highest {
                    Some(h) if h > seq => Head::Hole(seq),
                    _ => Head::Waiting,
                };
            };
            if p.timestamp != first.timestamp {
                // A new unit began without the last one's marker (some senders omit it).
                return Head::Complete(seq - 1);
            }
            if p.marker {
                return Head::Complete(seq);
            }
            seq += 1;
        }
    }

    fn take_unit(&mut self, start: u64, end: u64) -> Option<AccessUnit> {
        let mut depacketizer = H264Packet::default();
        let mut data = BytesMut::new();
        let mut timestamp = 0;
        let mut recovered = 0;
        let mut ok = true;
        for seq in start..=end {
            let Some(p) = self.packets.remove(&seq) else {
                ok = false;
                continue;
            };
            timestamp = p.timestamp;
            recovered += u64::from(p.late);
            if ok {
                match depacketizer.depacketize(&p.payload) {
                    Ok(nals) => data.extend_from_slice(&nals),
                    Err(_) => ok = false,
                }
            }
        }
        if !ok || data.is_empty() {
            return None;
        }
        self.counters.recovered_packets += recovered;
        let data = data.freeze();
        Some(AccessUnit {
            keyframe: has_idr(&data),
            data,
            timestamp,
            follows_loss: std::mem::take(&mut self.follows_loss),
        })
    }

    /// Drops the unit with the hole at `missing` and moves to the first later unit that can
    /// be decoded on its own terms: one whose previous packet ended a unit, or failing that
    /// one that at least begins a NAL under a new timestamp.
    fn give_up(&mut self, next: u64, missing: u64) {
        self.counters.losses += 1;
        self.started = true;
        self.follows_loss = true;
        self.hole_since = None;
        let broken_ts = self.packets.get(&next).map(|p| p.timestamp);
        let after: Vec<u64> = self.packets.range(missing + 1..).map(|(k, _)| *k).collect();
        let clean = after.iter().copied().find(|&k| {
            let (Some(prev), Some(p)) = (self.packets.get(&(k - 1)), self.packets.get(&k)) else {
                return false;
            };
            prev.marker || prev.timestamp != p.timestamp
        });
        let fallback = || {
            after.iter().copied().find(|&k| {
                self.packets
                    .get(&k)
                    .is_some_and(|p| Some(p.timestamp) != broken_ts && starts_nal(&p.payload))
            })
        };
        let start = clean
            .or_else(fallback)
            .unwrap_or_else(|| self.highest.map_or(missing + 1, |h| h + 1));
        self.packets = self.packets.split_off(&start);
        self.next = Some(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::codec::h264::H264Payloader;
    use rtc::rtp::packetizer::Payloader;

    /// An access unit: SPS, PPS and a big IDR slice (forces FU-A fragmentation).
    fn keyframe_au() -> Bytes {
        let mut au = Vec::new();
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8c]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend((0..5000u32).map(|i| (i % 251) as u8 | 1));
        Bytes::from(au)
    }

    fn delta_au(n: u8) -> Bytes {
        Bytes::from(vec![0, 0, 0, 1, 0x41, 0x9a, n, 1, 2, 3])
    }

    fn packets(au: &Bytes) -> Vec<Bytes> {
        H264Payloader::default().payload(1188, au).unwrap()
    }

    /// One unit's packets as (seq, ts, marker, payload), numbered from `seq`.
    fn unit(seq: &mut u16, ts: u32, au: &Bytes) -> Vec<(u16, u32, bool, Bytes)> {
        let pkts = packets(au);
        let last = pkts.len() - 1;
        let out = pkts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (seq.wrapping_add(i as u16), ts, i == last, p))
            .collect::<Vec<_>>();
        *seq = seq.wrapping_add(out.len() as u16);
        out
    }

    fn feed(b: &mut FrameBuffer, pkts: &[(u16, u32, bool, Bytes)], now: Instant) -> Vec<Assembled> {
        let mut out = Vec::new();
        for (s, ts, m, p) in pkts {
            b.push(*s, *ts, *m, p.clone());
            while let Some(a) = b.poll(now) {
                out.push(a);
            }
        }
        out
    }

    fn units(out: &[Assembled]) -> Vec<u32> {
        out.iter()
            .filter_map(|a| match a {
                Assembled::Unit(u) => Some(u.timestamp),
                Assembled::Lost => None,
            })
            .collect()
    }

    #[test]
    fn reassembles_fragmented_and_single_units_across_the_wrap() {
        let mut b = FrameBuffer::default();
        let mut seq = 65530u16;
        let now = Instant::now();
        let mut all = Vec::new();
        for (ts, au) in [
            (0u32, keyframe_au()),
            (3000, delta_au(1)),
            (6000, delta_au(2)),
        ] {
            let out = feed(&mut b, &unit(&mut seq, ts, &au), now);
            let [Assembled::Unit(u)] = out.as_slice() else {
                panic!("expected one unit, got {out:?}");
            };
            assert_eq!(u.keyframe, ts == 0);
            assert!(!u.follows_loss);
            // The payloader moves SPS/PPS into a STAP-A; the NAL units come back intact.
            let nals = |b: &[u8]| b.len() - b.windows(4).filter(|w| *w == [0, 0, 0, 1]).count() * 4;
            assert_eq!(nals(&u.data), nals(&au), "payload bytes differ");
            all.push(ts);
        }
        assert_eq!(all, [0, 3000, 6000]);
    }

    #[test]
    fn a_retransmission_inside_the_wait_completes_the_unit() {
        let mut b = FrameBuffer::default();
        let t0 = Instant::now();
        let mut seq = 10u16;
        let key = unit(&mut seq, 0, &keyframe_au());
        let next = unit(&mut seq, 3000, &delta_au(1));
        // Packet 2 of the keyframe is lost; the rest and the next unit arrive.
        let mut out = feed(&mut b, &key[..2], t0);
        out.extend(feed(&mut b, &key[3..], t0));
        out.extend(feed(&mut b, &next, t0));
        assert!(out.is_empty(), "nothing may leave past the hole: {out:?}");
        assert_eq!(b.poll_timeout(), Some(t0 + BASE_WAIT));
        // Its retransmission comes 30 ms later: both units leave, in order, whole.
        let out = feed(&mut b, &key[2..3], t0 + Duration::from_millis(30));
        assert_eq!(units(&out), [0, 3000]);
        assert!(matches!(&out[0], Assembled::Unit(u) if u.keyframe && !u.follows_loss));
        let c = b.counters();
        assert_eq!((c.late_packets, c.recovered_packets, c.losses), (1, 1, 0));
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn a_hole_is_given_up_after_the_wait_and_the_next_clean_unit_follows() {
        let mut b = FrameBuffer::default();
        let t0 = Instant::now();
        let mut seq = 100u16;
        let key = unit(&mut seq, 0, &keyframe_au());
        let d1 = unit(&mut seq, 3000, &delta_au(1));
        let d2 = unit(&mut seq, 6000, &delta_au(2));
        feed(&mut b, &key, t0);
        // d1 (one packet) is lost for good; d2 arrives.
        let out = feed(&mut b, &d2, t0);
        assert!(out.is_empty());
        assert_eq!(b.poll(t0 + BASE_WAIT - Duration::from_millis(1)), None);
        let at = t0 + BASE_WAIT;
        assert_eq!(b.poll(at), Some(Assembled::Lost));
        match b.poll(at) {
            Some(Assembled::Unit(u)) => assert!(u.timestamp == 6000 && u.follows_loss),
            other => panic!("d2 not delivered: {other:?}"),
        }
        // The lost packet turning up now changes nothing.
        assert!(feed(&mut b, &d1, at).is_empty());
        assert_eq!(b.counters().losses, 1);
    }

    #[test]
    fn a_unit_whose_first_packets_never_come_is_skipped() {
        let mut b = FrameBuffer::default();
        let t0 = Instant::now();
        let mut seq = 50u16;
        feed(&mut b, &unit(&mut seq, 0, &delta_au(1)), t0);
        let key = unit(&mut seq, 3000, &keyframe_au());
        let d = unit(&mut seq, 6000, &delta_au(2));
        // The keyframe's first two packets are lost.
        let mut out = feed(&mut b, &key[2..], t0);
        out.extend(feed(&mut b, &d, t0));
        assert!(out.is_empty());
        let later = t0 + BASE_WAIT;
        assert_eq!(b.poll(later), Some(Assembled::Lost));
        assert!(matches!(b.poll(later), Some(Assembled::Unit(u)) if u.timestamp == 6000));
    }

    #[test]
    fn late_duplicates_and_reordering_at_the_start_are_handled() {
        let mut b = FrameBuffer::default();
        let t0 = Instant::now();
        let p = packets(&delta_au(1)).remove(0);
        let p2 = packets(&delta_au(2)).remove(0);
        // Unit 11 arrives before unit 10, at the very start.
        b.push(11, 3000, true, p2.clone());
        b.push(10, 0, true, p.clone());
        assert!(matches!(b.poll(t0), Some(Assembled::Unit(u)) if u.timestamp == 0));
        assert!(matches!(b.poll(t0), Some(Assembled::Unit(u)) if u.timestamp == 3000));
        // Duplicates of delivered packets are ignored.
        b.push(10, 0, true, p.clone());
        b.push(11, 3000, true, p2);
        assert_eq!(b.poll(t0), None);
        b.push(12, 6000, true, p);
        assert!(matches!(b.poll(t0), Some(Assembled::Unit(u)) if u.timestamp == 6000));
    }

    #[test]
    fn the_wait_grows_with_the_round_trip_up_to_a_bound() {
        let mut b = FrameBuffer::default();
        b.set_rtt(Duration::from_millis(50));
        assert_eq!(b.wait(), BASE_WAIT + Duration::from_millis(100));
        b.set_rtt(Duration::from_secs(2));
        assert_eq!(b.wait(), MAX_WAIT);
    }

    #[test]
    fn memory_is_bounded_when_a_hole_never_fills() {
        let mut b = FrameBuffer::default();
        let t0 = Instant::now();
        let p = packets(&delta_au(1)).remove(0);
        b.push(0, 0, true, p.clone());
        assert!(b.poll(t0).is_some());
        // Sequence 1 never comes; a flood follows within the wait.
        let mut lost = 0;
        for s in 2..3000u16 {
            b.push(s, u32::from(s) * 3000, true, p.clone());
            while let Some(a) = b.poll(t0) {
                lost += usize::from(a == Assembled::Lost);
            }
        }
        assert!(lost >= 1);
        assert!(b.packets.len() <= MAX_PACKETS + 1);
    }
}
