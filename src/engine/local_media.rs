//! Our own outgoing media: the two fan-outs, whether mic and camera are on, and the
//! handle the capture/encode side uses to hand in encoded frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;

use super::fanout::{Fanout, Kind};

/// Opus frames are 20 ms: 960 ticks of the 48 kHz RTP clock.
pub const OPUS_FRAME_TICKS: u32 = 960;

/// Both local sources.
pub(crate) struct LocalMedia {
    pub(crate) video: Fanout,
    pub(crate) audio: Fanout,
    audio_on: AtomicBool,
    video_on: AtomicBool,
    /// What the shared video encoder should aim for, bits per second.
    target_bitrate: AtomicU32,
}

impl LocalMedia {
    pub(crate) fn new() -> Self {
        Self {
            video: Fanout::new(Kind::Video),
            audio: Fanout::new(Kind::Audio),
            audio_on: AtomicBool::new(false),
            video_on: AtomicBool::new(false),
            target_bitrate: AtomicU32::new(super::peer_factory::BitrateRange::default().initial),
        }
    }

    pub(crate) fn set_target_bitrate(&self, bps: u32) {
        self.target_bitrate.store(bps, Ordering::Relaxed);
    }

    pub(crate) fn set_audio(&self, on: bool) {
        self.audio_on.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_video(&self, on: bool) {
        let was = self.video_on.swap(on, Ordering::Relaxed);
        if on && !was {
            // Whoever watches must be able to start decoding at once.
            self.video.request_keyframe();
        }
    }
}

/// Where encoded local media goes in. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct MediaInput(pub(crate) Arc<LocalMedia>);

impl MediaInput {
    /// Whether the camera is on; when off, skip capturing and encoding altogether.
    pub fn video_on(&self) -> bool {
        self.0.video_on.load(Ordering::Relaxed)
    }

    /// Whether the microphone is on.
    pub fn audio_on(&self) -> bool {
        self.0.audio_on.load(Ordering::Relaxed)
    }

    /// Whether a peer asked for a keyframe since the last call; the encoder should make
    /// its next frame one.
    pub fn take_keyframe_request(&self) -> bool {
        self.0.video.take_keyframe_request()
    }

    /// Sends one H.264 access unit (Annex-B) lasting `ticks` of the 90 kHz clock to every
    /// connected peer. Dropped (with the clock advanced) while the camera is off.
    pub fn send_video(&self, access_unit: &Bytes, ticks: u32) {
        if self.video_on() {
            self.0.video.send(access_unit, ticks);
        } else {
            self.0.video.skip(ticks);
        }
    }

    /// Advances the video clock over a frame not sent (camera off).
    pub fn skip_video(&self, ticks: u32) {
        self.0.video.skip(ticks);
    }

    /// Advances the audio clock over a 20 ms frame not sent (muted).
    pub fn skip_audio(&self) {
        self.0.audio.skip(OPUS_FRAME_TICKS);
    }

    /// Sends one 20 ms Opus packet to every connected peer; dropped while muted.
    pub fn send_audio(&self, packet: &Bytes) {
        if self.audio_on() {
            self.0.audio.send(packet, OPUS_FRAME_TICKS);
        } else {
            self.0.audio.skip(OPUS_FRAME_TICKS);
        }
    }

    /// The bitrate the video encoder should use now: the lowest congestion-control
    /// estimate among the peers (one encoder serves them all), within the configured range.
    pub fn target_bitrate(&self) -> u32 {
        self.0.target_bitrate.load(Ordering::Relaxed)
    }

    /// Video frames sent so far (one per encoder run while the camera is on).
    pub fn video_frames_sent(&self) -> u64 {
        self.0.video.frames()
    }

    /// Video frames skipped for some peer whose queue was full.
    pub fn video_frames_dropped(&self) -> u64 {
        self.0.video.frames_dropped()
    }

    /// Peers currently fed (video legs).
    pub fn video_peers(&self) -> usize {
        self.0.video.legs()
    }
}
