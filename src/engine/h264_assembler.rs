//! Turns a video track's RTP packets back into H.264 access units (Annex-B).
//!
//! The sender marks the last packet of each access unit, so a unit is complete when the
//! marker arrives with no sequence gap since the unit began. Emitting on the marker (rather
//! than when the next frame starts, as `SampleBuilder` does) saves a frame of latency. A
//! gap spoils the unit it falls in; the caller then counts a loss and, until a keyframe
//! arrives, asks for one. A gap just before a unit's first packet spoils only the unit
//! before it: the new unit is kept (marked as following a loss), because it may be the very
//! keyframe that was asked for.

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

/// A finished access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessUnit {
    /// Annex-B bytes (4-byte start codes).
    pub(crate) data: Bytes,
    /// RTP timestamp (90 kHz).
    pub(crate) timestamp: u32,
    /// Whether it holds an IDR slice.
    pub(crate) keyframe: bool,
    /// Whether packets were lost just before it (so a delta unit may not be decodable).
    pub(crate) follows_loss: bool,
}

/// What one packet did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Assembled {
    /// Nothing finished yet.
    Pending,
    /// A unit is complete.
    Unit(AccessUnit),
    /// Packets were lost, so a unit was dropped (the one in progress, or the one before).
    Lost,
}

/// Keeps assembly state for one incoming video stream.
#[derive(Default)]
pub(crate) struct H264Assembler {
    depacketizer: H264Packet,
    buf: BytesMut,
    timestamp: Option<u32>,
    next_seq: Option<u16>,
    /// Set after a gap until the next unit starts cleanly.
    spoiled: bool,
    /// Set when the unit in progress began right after a gap.
    follows_loss: bool,
}

const NAL_IDR: u8 = 5;

fn has_idr(annex_b: &[u8]) -> bool {
    // Every NAL the depacketizer emits follows a 00 00 00 01 start code.
    annex_b
        .windows(5)
        .any(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == NAL_IDR)
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

impl H264Assembler {
    /// Feeds one RTP packet (in arrival order).
    pub(crate) fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &Bytes,
    ) -> Assembled {
        let mut lost = false;
        if let Some(expected) = self.next_seq {
            let ahead = seq.wrapping_sub(expected);
            if ahead >= 0x8000 {
                // Older than expected: a late duplicate or retransmission we no longer need.
                return Assembled::Pending;
            }
            if ahead != 0 {
                lost = true;
            }
        }
        self.next_seq = Some(seq.wrapping_add(1));
        // Whether this packet's unit is spoiled (as opposed to a loss merely being reported).
        let mut spoil = lost;
        if self.timestamp != Some(timestamp) {
            // A new unit began; whatever was in progress without its marker is incomplete.
            lost |= !self.buf.is_empty() && !self.spoiled;
            self.buf.clear();
            self.depacketizer = H264Packet::default();
            self.timestamp = Some(timestamp);
            self.spoiled = false;
            // The lost packets may all have belonged to the unit before; if this packet
            // starts a NAL, keep assembling and let the caller judge the unit.
            self.follows_loss = lost;
            spoil &= !starts_nal(payload);
        }
        if spoil {
            self.spoiled = true;
            self.buf.clear();
        }
        if !self.spoiled {
            match self.depacketizer.depacketize(payload) {
                Ok(nals) => self.buf.extend_from_slice(&nals),
                Err(_) => {
                    self.spoiled = true;
                    lost = true;
                    self.buf.clear();
                }
            }
        }
        if marker && !self.spoiled && !self.buf.is_empty() {
            let data = self.buf.split().freeze();
            self.timestamp = None;
            let keyframe = has_idr(&data);
            return Assembled::Unit(AccessUnit {
                data,
                timestamp,
                keyframe,
                follows_loss: std::mem::take(&mut self.follows_loss),
            });
        }
        if lost {
            Assembled::Lost
        } else {
            Assembled::Pending
        }
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

    #[test]
    fn reassembles_fragmented_and_single_units() {
        let mut a = H264Assembler::default();
        let mut seq = 100u16;
        for (ts, au) in [
            (0u32, keyframe_au()),
            (3000, delta_au(1)),
            (6000, delta_au(2)),
        ] {
            let pkts = packets(&au);
            let last = pkts.len() - 1;
            let mut out = None;
            for (i, p) in pkts.iter().enumerate() {
                match a.push(seq, ts, i == last, p) {
                    Assembled::Unit(u) => out = Some(u),
                    Assembled::Pending => {}
                    Assembled::Lost => panic!("lost at {seq}"),
                }
                seq = seq.wrapping_add(1);
            }
            let unit = out.expect("no unit");
            assert_eq!(unit.timestamp, ts);
            assert_eq!(unit.keyframe, ts == 0);
            // The payloader moves SPS/PPS into a STAP-A; the NAL units come back intact.
            let nals = |b: &[u8]| b.len() - b.windows(4).filter(|w| *w == [0, 0, 0, 1]).count() * 4;
            assert_eq!(nals(&unit.data), nals(&au), "payload bytes differ");
        }
    }

    #[test]
    fn a_gap_spoils_only_its_unit_and_wraparound_is_fine() {
        let mut a = H264Assembler::default();
        let au = keyframe_au();
        let pkts = packets(&au);
        assert!(pkts.len() >= 4);
        let mut seq = 65530u16;
        let mut results = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            if i == 2 {
                seq = seq.wrapping_add(1); // packet 2 lost
                continue;
            }
            results.push(a.push(seq, 90_000, i == pkts.len() - 1, p));
            seq = seq.wrapping_add(1);
        }
        assert!(results.contains(&Assembled::Lost));
        assert!(!results.iter().any(|r| matches!(r, Assembled::Unit(_))));
        // The next unit, across the sequence wrap, is whole again.
        let next = delta_au(9);
        let p = &packets(&next)[0];
        assert!(matches!(a.push(seq, 93_000, true, p), Assembled::Unit(u) if !u.keyframe));
    }

    /// Feeds `pkts` with consecutive sequence numbers from `seq`, returning the outcomes.
    fn feed(a: &mut H264Assembler, seq: &mut u16, ts: u32, pkts: &[Bytes]) -> Vec<Assembled> {
        let last = pkts.len() - 1;
        let out = pkts
            .iter()
            .enumerate()
            .map(|(i, p)| a.push(seq.wrapping_add(i as u16), ts, i == last, p))
            .collect();
        *seq = seq.wrapping_add(pkts.len() as u16);
        out
    }

    #[test]
    fn a_keyframe_right_after_a_lost_tail_is_kept() {
        let mut a = H264Assembler::default();
        let mut seq = 7u16;
        feed(&mut a, &mut seq, 0, &packets(&keyframe_au()));
        // The next keyframe's packets arrive, but the one before (a delta's only packet,
        // with its marker) is lost.
        seq = seq.wrapping_add(1);
        let key = packets(&keyframe_au());
        assert!(key.len() >= 3, "the keyframe should span several packets");
        let results = feed(&mut a, &mut seq, 6000, &key);
        assert_eq!(results[0], Assembled::Lost, "the loss is reported at once");
        match results.last() {
            Some(Assembled::Unit(u)) => assert!(u.keyframe && u.follows_loss),
            other => panic!("keyframe not assembled: {other:?}"),
        }
        // A clean unit after it is not marked.
        let next = feed(&mut a, &mut seq, 9000, &packets(&delta_au(3)));
        assert!(matches!(&next[0], Assembled::Unit(u) if !u.follows_loss));
    }

    #[test]
    fn a_single_packet_unit_after_a_gap_is_marked() {
        let mut a = H264Assembler::default();
        let p = &packets(&delta_au(1))[0];
        assert!(matches!(a.push(1, 0, true, p), Assembled::Unit(u) if !u.follows_loss));
        // Sequence 2 (timestamp 3000) was lost.
        assert!(matches!(a.push(3, 6000, true, p), Assembled::Unit(u) if u.follows_loss));
    }

    #[test]
    fn a_unit_whose_first_packets_were_lost_is_dropped() {
        // The keyframe's first two packets (its STAP-A and the FU-A start) are lost: the
        // first packet seen continues a fragment, so nothing of this unit can be trusted.
        let key = packets(&keyframe_au());
        let mut a = H264Assembler::default();
        let mut seq = 50u16;
        feed(&mut a, &mut seq, 0, &packets(&delta_au(1)));
        seq = seq.wrapping_add(2);
        let results = feed(&mut a, &mut seq, 3000, &key[2..]);
        assert_eq!(results[0], Assembled::Lost);
        assert!(!results.iter().any(|r| matches!(r, Assembled::Unit(_))));
    }

    #[test]
    fn late_duplicates_are_ignored() {
        let mut a = H264Assembler::default();
        let p = &packets(&delta_au(1))[0];
        assert!(matches!(a.push(10, 0, true, p), Assembled::Unit(_)));
        assert_eq!(a.push(10, 0, true, p), Assembled::Pending);
        assert_eq!(a.push(9, 0, true, p), Assembled::Pending);
        assert!(matches!(a.push(11, 3000, true, p), Assembled::Unit(_)));
    }
}
