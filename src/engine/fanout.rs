//! Encode once, packetize once, send to every peer.
//!
//! webrtc-rs binds a local track to one peer connection only, so each peer gets its own
//! track, fed from a bounded queue by a writer task of its own. The shared encoder's output
//! is packetized here once and the packets (cheap `Bytes` clones) go into every queue. A
//! peer whose queue is full misses whole frames rather than stalling the others, and the
//! encoder is asked for a keyframe so that peer recovers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::opus::OpusPayloader;
use rtc::rtp::packetizer::{Packetizer, new_packetizer};
use rtc::rtp::sequence::new_random_sequencer;
use tokio::sync::mpsc;

use super::peer_factory::{H264_PT, OPUS_PT};

/// Packets one peer's queue holds: about a second of 720p video, or five of audio.
const LEG_QUEUE: usize = 256;
/// webrtc-rs' outbound MTU.
const MTU: usize = 1200;

/// Which encoder this fan-out serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Video,
    Audio,
}

struct Leg {
    peer: String,
    tx: mpsc::Sender<rtp::Packet>,
}

struct Inner {
    packetizer: Box<dyn Packetizer>,
    legs: Vec<Leg>,
}

/// One local source's packets, copied to every connected peer.
pub(crate) struct Fanout {
    kind: Kind,
    ssrc: u32,
    inner: Mutex<Inner>,
    keyframe_wanted: AtomicBool,
    /// Frames handed in (one encoder run each).
    frames: AtomicU64,
    /// Frames a full queue made us skip for some peer.
    frames_dropped: AtomicU64,
}

impl Fanout {
    pub(crate) fn new(kind: Kind) -> Self {
        let ssrc = rand::random::<u32>();
        let (payloader, pt, clock): (Box<dyn rtc::rtp::packetizer::Payloader>, u8, u32) = match kind
        {
            Kind::Video => (Box::<H264Payloader>::default(), H264_PT, 90_000),
            Kind::Audio => (Box::new(OpusPayloader), OPUS_PT, 48_000),
        };
        let packetizer = new_packetizer(
            Instant::now(),
            MTU,
            pt,
            ssrc,
            payloader,
            Box::new(new_random_sequencer()),
            clock,
        );
        Self {
            kind,
            ssrc,
            inner: Mutex::new(Inner {
                packetizer: Box::new(packetizer),
                legs: Vec::new(),
            }),
            keyframe_wanted: AtomicBool::new(kind == Kind::Video),
            frames: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
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

    /// Adds a peer; its writer reads the returned queue. A new viewer needs a keyframe.
    pub(crate) fn add_leg(&self, peer: &str) -> mpsc::Receiver<rtp::Packet> {
        let (tx, rx) = mpsc::channel(LEG_QUEUE);
        let mut inner = self.inner();
        inner.legs.retain(|l| l.peer != peer);
        inner.legs.push(Leg {
            peer: peer.to_owned(),
            tx,
        });
        self.request_keyframe();
        rx
    }

    /// Removes a peer; its queue closes, so its writer task ends.
    pub(crate) fn remove_leg(&self, peer: &str) {
        self.inner().legs.retain(|l| l.peer != peer);
    }

    /// Number of peers being fed.
    pub(crate) fn legs(&self) -> usize {
        self.inner().legs.len()
    }

    /// Asks the encoder for a keyframe (a new peer, a PLI, a dropped frame).
    pub(crate) fn request_keyframe(&self) {
        if self.kind == Kind::Video {
            self.keyframe_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a keyframe was asked for since the last call (the encoder calls this).
    pub(crate) fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// Frames sent through this fan-out so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Frames skipped for a slow peer so far.
    pub(crate) fn frames_dropped(&self) -> u64 {
        self.frames_dropped.load(Ordering::Relaxed)
    }

    /// Packetizes one encoded frame (an H.264 access unit or an Opus packet) that lasts
    /// `samples` clock ticks, and queues it for every peer. Never blocks.
    pub(crate) fn send(&self, frame: &Bytes, samples: u32) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner();
        let packets = match inner.packetizer.packetize(Instant::now(), frame, samples) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot packetize a {:?} frame: {e}", self.kind);
                return;
            }
        };
        let mut dropped = false;
        for leg in &inner.legs {
            // All of a frame or none of it: half a frame only makes the receiver wait.
            if leg.tx.capacity() < packets.len() {
                dropped = true;
                continue;
            }
            for p in &packets {
                let _ = leg.tx.try_send(p.clone());
            }
        }
        drop(inner);
        if dropped {
            self.frames_dropped.fetch_add(1, Ordering::Relaxed);
            self.request_keyframe();
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

    fn au(len: usize) -> Bytes {
        let mut v = vec![0, 0, 0, 1, 0x41];
        v.resize(len, 7);
        Bytes::from(v)
    }

    #[test]
    fn every_leg_gets_the_same_packets_once_packetized() {
        let f = Fanout::new(Kind::Video);
        let mut a = f.add_leg("a");
        let mut b = f.add_leg("b");
        assert!(f.take_keyframe_request());
        f.send(&au(3000), 3000);
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        while let Ok(p) = a.try_recv() {
            pa.push(p);
        }
        while let Ok(p) = b.try_recv() {
            pb.push(p);
        }
        assert_eq!(pa.len(), 3, "3000 bytes in 1200-byte packets");
        assert_eq!(pa, pb);
        assert!(pa.iter().all(|p| p.header.ssrc == f.ssrc()));
        assert!(pa.last().unwrap().header.marker);
        assert_eq!(f.frames(), 1);
    }

    #[test]
    fn a_full_queue_skips_whole_frames_for_that_leg_only_and_wants_a_keyframe() {
        let f = Fanout::new(Kind::Video);
        let mut slow = f.add_leg("slow");
        let mut fast = f.add_leg("fast");
        f.take_keyframe_request();
        let mut fast_packets = 0;
        for _ in 0..200 {
            f.send(&au(3000), 3000);
            while fast.try_recv().is_ok() {
                fast_packets += 1;
            }
        }
        assert_eq!(fast_packets, 600);
        let mut slow_packets = 0;
        while slow.try_recv().is_ok() {
            slow_packets += 1;
        }
        assert_eq!(slow_packets % 3, 0, "a frame was split");
        assert!(slow_packets <= LEG_QUEUE);
        assert!(f.frames_dropped() > 0);
        assert!(f.take_keyframe_request());
    }

    #[test]
    fn removing_a_leg_closes_its_queue() {
        let f = Fanout::new(Kind::Audio);
        let mut rx = f.add_leg("x");
        assert_eq!(f.legs(), 1);
        f.remove_leg("x");
        assert_eq!(f.legs(), 0);
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
        // Audio never asks for keyframes.
        assert!(!f.take_keyframe_request());
    }
}
