//! Our video, encoded once per layer, sent to each peer in the layer chosen for it.
//!
//! Each captured frame is encoded at up to three sizes (`media::video::layers`); each
//! encoding is split into RTP payloads here once, and every peer's queue gets the frames of
//! the one layer it is on. Sequence numbers are the leg's own (its writer stamps them), so
//! moving a peer to another layer leaves no gap its receiver would take for loss; the RTP
//! timestamp is the capture clock shared by every layer. A peer changes layer only at a
//! keyframe of the new one, which is asked for when the change is decided; until it comes
//! the peer stays on the old layer (or, paused, gets nothing). A PLI makes a keyframe only
//! in the layer that peer receives, and a layer nobody receives is not encoded at all.
//!
//! webrtc-rs binds a local track to one peer connection only, so each peer has its own
//! track and a writer task draining its queue. A peer whose queue is full misses whole
//! frames, then waits for a keyframe of its layer, so one slow peer never stalls the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use tokio::sync::mpsc;

use crate::media::video::{LayerOrder, LayerSpec};

/// Frames one peer's queue holds (about half a second at 30 fps).
const LEG_QUEUE: usize = 16;
/// RTP payload size: webrtc-rs' outbound MTU (1200) less the RTP header and extensions.
const PAYLOAD_MTU: usize = 1188;
/// Least time between two keyframes a layer makes on request: a keyframe is several
/// ordinary frames' worth of bits, and on a lossy link receivers ask again and again.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);

/// One layer's encoding of one captured frame, ready for any leg.
#[derive(Debug)]
pub(crate) struct LayerFrame {
    /// Which layer (0: smallest); for tests and logs.
    #[allow(dead_code)]
    pub(crate) layer: usize,
    /// RTP timestamp, 90 kHz, the same in every layer.
    pub(crate) timestamp: u32,
    /// An IDR picture, where a receiver can start or change layer; for tests and logs.
    #[allow(dead_code)]
    pub(crate) keyframe: bool,
    /// RTP payloads (FU-A / STAP-A / single NAL); the last one carries the marker.
    pub(crate) payloads: Vec<Bytes>,
}

struct Layer {
    spec: LayerSpec,
    payloader: H264Payloader,
    bitrate_bps: u32,
    keyframe_wanted: bool,
    last_keyframe: Option<Instant>,
}

impl Layer {
    fn new(spec: LayerSpec) -> Self {
        Self {
            spec,
            payloader: H264Payloader::default(),
            bitrate_bps: spec.min_bps.max((spec.min_bps + spec.max_bps) / 2),
            keyframe_wanted: true,
            last_keyframe: None,
        }
    }
}

struct Leg {
    peer: String,
    tx: mpsc::Sender<Arc<LayerFrame>>,
    /// The layer whose frames it gets now.
    current: Option<usize>,
    /// The layer the policy chose; taken at its next keyframe.
    wanted: Option<usize>,
    /// Missed a frame of `current`: nothing more until its next keyframe.
    broken: bool,
}

impl Leg {
    fn on(&self, layer: usize) -> bool {
        self.current == Some(layer) || self.wanted == Some(layer)
    }
}

struct Inner {
    layers: Vec<Layer>,
    legs: Vec<Leg>,
    timestamp: u32,
}

/// Our video for every peer; see the module docs.
pub(crate) struct VideoFanout {
    ssrc: u32,
    /// Least time between two keyframes a layer makes on request.
    keyframe_interval: Duration,
    inner: Mutex<Inner>,
    /// Captured frames sent (the clock advanced with something encoded).
    frames: AtomicU64,
    /// Frames a full queue made us skip for some peer.
    frames_dropped: AtomicU64,
}

impl VideoFanout {
    /// A fan-out with one layer of unknown size until the capture side declares its ladder.
    pub(crate) fn new() -> Self {
        Self {
            ssrc: rand::random::<u32>(),
            keyframe_interval: KEYFRAME_INTERVAL,
            inner: Mutex::new(Inner {
                layers: vec![Layer::new(LayerSpec {
                    width: 0,
                    height: 0,
                    min_bps: 0,
                    max_bps: 2_500_000,
                })],
                legs: Vec::new(),
                timestamp: rand::random::<u32>(),
            }),
            frames: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
        }
    }

    /// Spaces keyframes made on request by at least `interval` (a screen's are large).
    pub(crate) fn with_keyframe_interval(mut self, interval: Duration) -> Self {
        self.keyframe_interval = interval;
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing in this file panics while holding the lock; survive a poisoned one anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SSRC every leg's track is declared with.
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Declares the layers the encoder makes, smallest first. Legs keep their layer when it
    /// still exists and otherwise restart on the largest (the policy moves them next).
    pub(crate) fn set_layers(&self, specs: &[LayerSpec]) {
        let mut inner = self.inner();
        if inner
            .layers
            .iter()
            .map(|l| l.spec)
            .eq(specs.iter().copied())
            || specs.is_empty()
        {
            return;
        }
        inner.layers = specs.iter().map(|s| Layer::new(*s)).collect();
        let top = specs.len() - 1;
        for leg in &mut inner.legs {
            let clamp = |l: Option<usize>| l.map(|l| l.min(top));
            leg.current = None;
            leg.wanted = clamp(leg.wanted).or(Some(top));
            leg.broken = false;
        }
    }

    /// The layers declared, smallest first.
    pub(crate) fn layers(&self) -> Vec<LayerSpec> {
        self.inner().layers.iter().map(|l| l.spec).collect()
    }

    /// Adds a peer on `layer` (from its first keyframe); its writer reads the returned queue.
    pub(crate) fn add_leg(
        &self,
        peer: &str,
        layer: Option<usize>,
    ) -> mpsc::Receiver<Arc<LayerFrame>> {
        let (tx, rx) = mpsc::channel(LEG_QUEUE);
        let mut inner = self.inner();
        inner.legs.retain(|l| l.peer != peer);
        let layer = layer.map(|l| l.min(inner.layers.len() - 1));
        inner.legs.push(Leg {
            peer: peer.to_owned(),
            tx,
            current: None,
            wanted: layer,
            broken: false,
        });
        if let Some(l) = layer {
            inner.layers[l].keyframe_wanted = true;
        }
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

    /// Moves `peer` to `layer` (`None`: pause its video) from the next keyframe of it.
    pub(crate) fn set_layer(&self, peer: &str, layer: Option<usize>) {
        let mut inner = self.inner();
        let top = inner.layers.len() - 1;
        let layer = layer.map(|l| l.min(top));
        let Some(leg) = inner.legs.iter_mut().find(|l| l.peer == peer) else {
            return;
        };
        if leg.wanted == layer {
            return;
        }
        leg.wanted = layer;
        match layer {
            // Pausing needs no keyframe: stop at once.
            None => leg.current = None,
            Some(l) if leg.current != Some(l) => inner.layers[l].keyframe_wanted = true,
            Some(_) => {}
        }
    }

    /// The layer `peer` receives now (`None`: paused, or waiting for its first keyframe).
    pub(crate) fn layer_of(&self, peer: &str) -> Option<LayerSpec> {
        let inner = self.inner();
        let leg = inner.legs.iter().find(|l| l.peer == peer)?;
        leg.current.map(|l| inner.layers[l].spec)
    }

    /// Whether `peer`'s video is paused by choice (as opposed to waiting for a keyframe).
    #[cfg(test)]
    pub(crate) fn paused(&self, peer: &str) -> bool {
        self.inner()
            .legs
            .iter()
            .any(|l| l.peer == peer && l.wanted.is_none())
    }

    /// `peer` asked for a keyframe (PLI/FIR): only the layer it gets makes one.
    pub(crate) fn request_keyframe_for(&self, peer: &str) {
        let mut inner = self.inner();
        let Some(leg) = inner.legs.iter().find(|l| l.peer == peer) else {
            return;
        };
        if let Some(l) = leg.wanted.or(leg.current) {
            inner.layers[l].keyframe_wanted = true;
        }
    }

    /// Every layer makes a keyframe next (the camera came back on).
    pub(crate) fn request_keyframes(&self) {
        for l in &mut self.inner().layers {
            l.keyframe_wanted = true;
        }
    }

    /// Sets the bitrate `layer` is encoded at.
    pub(crate) fn set_bitrate(&self, layer: usize, bps: u32) {
        if let Some(l) = self.inner().layers.get_mut(layer) {
            l.bitrate_bps = bps;
        }
    }

    /// What to encode for the next frame, per layer; takes the keyframe requests that are
    /// due (at most one keyframe per layer per [`KEYFRAME_INTERVAL`]).
    pub(crate) fn orders(&self, now: Instant) -> Vec<LayerOrder> {
        let mut inner = self.inner();
        let Inner { layers, legs, .. } = &mut *inner;
        layers
            .iter_mut()
            .enumerate()
            .map(|(i, l)| {
                let active = legs.iter().any(|leg| leg.on(i));
                let due = l
                    .last_keyframe
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.keyframe_interval);
                let keyframe = active && l.keyframe_wanted && due;
                if keyframe {
                    l.keyframe_wanted = false;
                    l.last_keyframe = Some(now);
                }
                LayerOrder {
                    active,
                    bitrate_bps: l.bitrate_bps,
                    keyframe,
                }
            })
            .collect()
    }

    /// Frames sent so far (one per captured frame that something was encoded for).
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Frames skipped for a slow peer so far.
    pub(crate) fn frames_dropped(&self) -> u64 {
        self.frames_dropped.load(Ordering::Relaxed)
    }

    /// Queues `layer`'s encoding of the current frame (an H.264 access unit) for every
    /// peer on that layer. Never blocks.
    pub(crate) fn send(&self, layer: usize, access_unit: &Bytes, keyframe: bool) {
        let mut inner = self.inner();
        let Inner {
            layers,
            legs,
            timestamp,
        } = &mut *inner;
        let Some(l) = layers.get_mut(layer) else {
            return;
        };
        let payloads = match l.payloader.payload(PAYLOAD_MTU, access_unit) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("cannot packetize a video frame: {e}");
                return;
            }
        };
        let frame = Arc::new(LayerFrame {
            layer,
            timestamp: *timestamp,
            keyframe,
            payloads,
        });
        let mut dropped = false;
        for leg in legs.iter_mut() {
            if keyframe && leg.wanted == Some(layer) {
                // The change of layer (or the recovery) happens here.
                leg.current = Some(layer);
                leg.broken = false;
            }
            if leg.current != Some(layer) || leg.broken {
                continue;
            }
            if leg.tx.try_send(Arc::clone(&frame)).is_err() {
                // Later frames refer to this one: skip to the next keyframe.
                leg.broken = true;
                dropped = true;
            }
        }
        if dropped {
            l.keyframe_wanted = true;
            self.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the current frame: the shared clock advances by `ticks` (90 kHz).
    pub(crate) fn advance(&self, ticks: u32, sent: bool) {
        let mut inner = self.inner();
        inner.timestamp = inner.timestamp.wrapping_add(ticks);
        if sent {
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::ladder;

    fn au(len: usize, key: bool) -> Bytes {
        let mut v = vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }];
        v.resize(len, 7);
        Bytes::from(v)
    }

    fn drain(rx: &mut mpsc::Receiver<Arc<LayerFrame>>) -> Vec<Arc<LayerFrame>> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn fanout() -> VideoFanout {
        let f = VideoFanout::new();
        f.set_layers(&ladder(640, 360));
        f
    }

    #[test]
    fn each_peer_gets_its_layer_from_a_keyframe_with_one_timestamp_per_frame() {
        let f = fanout();
        let mut small = f.add_leg("small", Some(0));
        let mut big = f.add_leg("big", Some(1));
        let orders = f.orders(Instant::now());
        assert!(orders.iter().all(|o| o.active && o.keyframe));
        f.send(0, &au(3000, true), true);
        f.send(1, &au(9000, true), true);
        f.advance(3000, true);
        f.send(0, &au(500, false), false);
        f.send(1, &au(1500, false), false);
        f.advance(3000, true);
        let (s, b) = (drain(&mut small), drain(&mut big));
        assert_eq!(s.iter().map(|x| x.layer).collect::<Vec<_>>(), [0, 0]);
        assert_eq!(b.iter().map(|x| x.layer).collect::<Vec<_>>(), [1, 1]);
        assert_eq!(s[0].timestamp, b[0].timestamp);
        assert_eq!(s[1].timestamp, s[0].timestamp.wrapping_add(3000));
        assert_eq!(b[0].payloads.len(), 8, "9,000 bytes in 1,188-byte FU-As");
        assert_eq!(f.frames(), 2);
    }

    #[test]
    fn a_layer_change_waits_for_a_keyframe_of_the_new_layer() {
        let f = fanout();
        let mut rx = f.add_leg("p", Some(1));
        f.orders(Instant::now());
        f.send(1, &au(900, true), true);
        f.advance(3000, true);
        f.set_layer("p", Some(0));
        // Layer 0 is now wanted, so it is encoded and asked for a keyframe.
        let orders = f.orders(Instant::now());
        assert!(orders[0].active && orders[0].keyframe);
        // Its delta frames do not switch the peer; it stays on layer 1 meanwhile.
        f.send(0, &au(300, false), false);
        f.send(1, &au(600, false), false);
        f.advance(3000, true);
        f.send(0, &au(300, true), true);
        f.send(1, &au(600, false), false);
        f.advance(3000, true);
        let got: Vec<(usize, bool)> = drain(&mut rx)
            .iter()
            .map(|x| (x.layer, x.keyframe))
            .collect();
        assert_eq!(got, [(1, true), (1, false), (0, true)]);
        assert_eq!(f.layer_of("p").map(|s| s.width), Some(320));
        // Layer 1 has nobody left: it is not encoded.
        assert!(!f.orders(Instant::now())[1].active);
    }

    #[test]
    fn pausing_stops_at_once_and_a_pli_asks_only_that_layer() {
        let f = fanout();
        let mut rx = f.add_leg("p", Some(0));
        let _q = f.add_leg("q", Some(1));
        let t0 = Instant::now();
        f.orders(t0);
        f.send(0, &au(300, true), true);
        f.advance(3000, true);
        f.request_keyframe_for("p");
        let later = t0 + KEYFRAME_INTERVAL;
        let o = f.orders(later);
        assert!(o[0].keyframe && !o[1].keyframe);
        f.set_layer("p", None);
        assert!(f.paused("p"));
        f.send(0, &au(300, false), false);
        assert_eq!(drain(&mut rx).len(), 1, "nothing after the pause");
        assert!(!f.orders(later)[0].active, "nobody receives layer 0");
    }

    #[test]
    fn keyframes_on_request_are_spaced() {
        let f = fanout();
        let _rx = f.add_leg("p", Some(1));
        let t0 = Instant::now();
        assert!(f.orders(t0)[1].keyframe);
        f.request_keyframe_for("p");
        assert!(!f.orders(t0 + Duration::from_millis(100))[1].keyframe);
        // The request is kept, not forgotten.
        assert!(f.orders(t0 + KEYFRAME_INTERVAL)[1].keyframe);
    }

    #[test]
    fn a_full_queue_skips_whole_frames_until_the_next_keyframe() {
        let f = fanout();
        let mut slow = f.add_leg("slow", Some(1));
        let mut fast = f.add_leg("fast", Some(1));
        f.send(1, &au(900, true), true);
        let mut fast_frames = 1 + drain(&mut fast).len() - 1;
        for _ in 0..40 {
            f.send(1, &au(900, false), false);
            f.advance(3000, true);
            fast_frames += drain(&mut fast).len();
        }
        assert_eq!(fast_frames, 41);
        assert_eq!(drain(&mut slow).len(), LEG_QUEUE);
        assert!(f.frames_dropped() > 0);
        // Room again, but the slow leg waits for a keyframe.
        f.send(1, &au(900, false), false);
        assert!(drain(&mut slow).is_empty());
        assert!(f.orders(Instant::now() + KEYFRAME_INTERVAL)[1].keyframe);
        f.send(1, &au(900, true), true);
        assert_eq!(drain(&mut slow).len(), 1);
    }

    #[test]
    fn removing_a_leg_closes_its_queue() {
        let f = fanout();
        let mut rx = f.add_leg("x", Some(0));
        assert_eq!(f.legs(), 1);
        f.remove_leg("x");
        assert_eq!(f.legs(), 0);
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
    }
}
