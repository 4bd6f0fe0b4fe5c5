//! Our audio, encoded once, packetized once, sent to every peer.
//!
//! webrtc-rs binds a local track to one peer connection only, so each peer gets its own
//! track, fed from a bounded queue by a writer task of its own. Each Opus packet is
//! packetized here once and the packets (cheap `Bytes` clones) go into every queue; a peer
//! whose queue is full misses that packet rather than stalling the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::opus::OpusPayloader;
use rtc::rtp::packetizer::{Packetizer, new_packetizer};
use rtc::rtp::sequence::new_random_sequencer;
use tokio::sync::mpsc;

use super::peer_factory::OPUS_PT;

/// Packets one peer's queue holds: five seconds of 20 ms frames.
const LEG_QUEUE: usize = 256;
/// webrtc-rs' outbound MTU.
const MTU: usize = 1200;

struct Leg {
    peer: String,
    tx: mpsc::Sender<rtp::Packet>,
}

struct Inner {
    packetizer: Box<dyn Packetizer>,
    legs: Vec<Leg>,
}

/// Our audio's packets, copied to every connected peer.
pub(crate) struct AudioFanout {
    ssrc: u32,
    inner: Mutex<Inner>,
    /// Packets handed in (one encoder run each).
    #[cfg_attr(not(test), allow(dead_code))]
    frames: AtomicU64,
}

impl AudioFanout {
    pub(crate) fn new() -> Self {
        let ssrc = rand::random::<u32>();
        let packetizer = new_packetizer(
            Instant::now(),
            MTU,
            OPUS_PT,
            ssrc,
            Box::new(OpusPayloader),
            Box::new(new_random_sequencer()),
            48_000,
        );
        Self {
            ssrc,
            inner: Mutex::new(Inner {
                packetizer: Box::new(packetizer),
                legs: Vec::new(),
            }),
            frames: AtomicU64::new(0),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing in this file panics while holding the lock; survive a poisoned one anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SSRC every leg's track is declared with.
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Adds a peer; its writer reads the returned queue.
    pub(crate) fn add_leg(&self, peer: &str) -> mpsc::Receiver<rtp::Packet> {
        let (tx, rx) = mpsc::channel(LEG_QUEUE);
        let mut inner = self.inner();
        inner.legs.retain(|l| l.peer != peer);
        inner.legs.push(Leg {
            peer: peer.to_owned(),
            tx,
        });
        rx
    }

    /// Removes a peer; its queue closes, so its writer task ends.
    pub(crate) fn remove_leg(&self, peer: &str) {
        self.inner().legs.retain(|l| l.peer != peer);
    }

    /// Number of peers being fed.
    #[cfg(test)]
    pub(crate) fn legs(&self) -> usize {
        self.inner().legs.len()
    }

    /// Packets sent through this fan-out so far.
    #[cfg(test)]
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Packetizes one Opus packet lasting `samples` ticks of 48 kHz and queues it for every
    /// peer. Never blocks.
    pub(crate) fn send(&self, frame: &Bytes, samples: u32) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner();
        let packets = match inner.packetizer.packetize(Instant::now(), frame, samples) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot packetize an audio frame: {e}");
                return;
            }
        };
        for leg in &inner.legs {
            for p in &packets {
                let _ = leg.tx.try_send(p.clone());
            }
        }
    }

    /// Advances the RTP clock over a pause (mute), so the receiver's timeline stays true.
    pub(crate) fn skip(&self, samples: u32) {
        self.inner().packetizer.skip_samples(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leg_gets_the_same_packets_and_the_clock_skips_over_mute() {
        let f = AudioFanout::new();
        let mut a = f.add_leg("a");
        let mut b = f.add_leg("b");
        f.send(&Bytes::from_static(&[1, 2, 3]), 960);
        f.skip(960);
        f.send(&Bytes::from_static(&[4, 5, 6]), 960);
        let pa: Vec<_> = std::iter::from_fn(|| a.try_recv().ok()).collect();
        let pb: Vec<_> = std::iter::from_fn(|| b.try_recv().ok()).collect();
        assert_eq!(pa.len(), 2);
        assert_eq!(pa, pb);
        assert!(pa.iter().all(|p| p.header.ssrc == f.ssrc()));
        assert_eq!(
            pa[1].header.timestamp.wrapping_sub(pa[0].header.timestamp),
            1920
        );
        assert_eq!(
            pa[1].header.sequence_number,
            pa[0].header.sequence_number.wrapping_add(1)
        );
        assert_eq!(f.frames(), 2);
    }

    #[test]
    fn removing_a_leg_closes_its_queue() {
        let f = AudioFanout::new();
        let mut rx = f.add_leg("x");
        assert_eq!(f.legs(), 1);
        f.remove_leg("x");
        assert_eq!(f.legs(), 0);
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
    }
}
