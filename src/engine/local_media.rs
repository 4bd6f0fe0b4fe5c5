//! Our own outgoing media: the fan-outs, whether mic and camera are on, and the handle the
//! capture/encode side uses to hand in encoded frames and learn what to encode.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::api::DeviceKind;
use super::fanout::AudioFanout;
use super::video_fanout::VideoFanout;
use crate::media::audio::codec::DEFAULT_EXPECTED_LOSS_PERCENT;
use crate::media::pipeline::MediaOutlet;
use crate::media::video::{LayerOrder, LayerSpec, has_idr};

/// Opus frames are 20 ms: 960 ticks of the 48 kHz RTP clock.
pub const OPUS_FRAME_TICKS: u32 = 960;

/// Failures waiting for the actor; more than a few at once are repeats of one.
pub(crate) const FAILURES_QUEUED: usize = 8;

/// A local source that stopped by itself, on its way to the actor.
#[derive(Debug)]
pub(crate) struct DeviceFailure {
    pub(crate) kind: DeviceKind,
    pub(crate) message: String,
}

/// Both local sources.
pub(crate) struct LocalMedia {
    pub(crate) video: VideoFanout,
    pub(crate) audio: AudioFanout,
    /// Our screen share: one layer at the captured size (content keeps its resolution;
    /// when the link narrows its bitrate, and so its frame rate, gives instead).
    pub(crate) screen: VideoFanout,
    audio_on: AtomicBool,
    video_on: AtomicBool,
    screen_on: AtomicBool,
    /// The loss the audio encoder should protect against (the worst a peer reports), %.
    expected_audio_loss: AtomicU32,
    /// Capture threads report their source's failure here; the actor acts on it.
    failures: mpsc::Sender<DeviceFailure>,
}

impl LocalMedia {
    pub(crate) fn new(failures: mpsc::Sender<DeviceFailure>) -> Self {
        Self {
            video: VideoFanout::new(),
            audio: AudioFanout::new(),
            screen: screen_fanout(),
            audio_on: AtomicBool::new(false),
            video_on: AtomicBool::new(false),
            screen_on: AtomicBool::new(false),
            // Until a receiver reports, plan for the codec's default loss.
            expected_audio_loss: AtomicU32::new(DEFAULT_EXPECTED_LOSS_PERCENT.unsigned_abs()),
            failures,
        }
    }

    /// Turns a source off; true if it was on.
    pub(crate) fn turn_off(&self, kind: DeviceKind) -> bool {
        match kind {
            DeviceKind::Camera => self.video_on.swap(false, Ordering::Relaxed),
            DeviceKind::Microphone => self.audio_on.swap(false, Ordering::Relaxed),
        }
    }

    pub(crate) fn set_audio(&self, on: bool) {
        self.audio_on.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_video(&self, on: bool) {
        let was = self.video_on.swap(on, Ordering::Relaxed);
        if on && !was {
            // Whoever watches must be able to start decoding at once.
            self.video.request_keyframes();
        }
    }

    /// Starts or stops our share; true if that changed anything. A share that starts
    /// begins with a keyframe for everyone.
    pub(crate) fn set_screen(&self, on: bool) -> bool {
        let was = self.screen_on.swap(on, Ordering::Relaxed);
        if on && !was {
            self.screen.request_keyframes();
        }
        was != on
    }

    /// Whether we share our screen.
    pub(crate) fn screen_on(&self) -> bool {
        self.screen_on.load(Ordering::Relaxed)
    }

    pub(crate) fn set_expected_audio_loss(&self, percent: u32) {
        self.expected_audio_loss.store(percent, Ordering::Relaxed);
    }
}

/// The share's bitrate range, bits per second: 2.5 Mbit/s keeps 1080p text sharp at 10
/// fps. The floor is high because a 1080p keyframe of fine text is ~240 KB whatever the
/// rate (measured on the test screen): openh264's rate control then skips frames until
/// that debt is paid, ~12 s of frames at 150 kbit/s, ~4 s at 500 (the pacer holds the
/// share's packets up to 5 s, so a narrower link still gets frames, only fewer).
pub(crate) const SCREEN_MIN_BPS: u32 = 500_000;
/// See [`SCREEN_MIN_BPS`].
pub(crate) const SCREEN_MAX_BPS: u32 = 2_500_000;

/// The screen's fan-out: a single layer of any size (the size is the capture's, scaled
/// down to 1080p by the capture itself).
fn screen_fanout() -> VideoFanout {
    // A 1080p keyframe is tens of kilobytes: on a link still climbing from its cautious
    // start it takes a second or more to get through, and one made on every request
    // would only queue behind the last.
    let fanout = VideoFanout::new().with_keyframe_interval(Duration::from_secs(5));
    fanout.set_layers(&[LayerSpec {
        width: 1920,
        height: 1080,
        min_bps: SCREEN_MIN_BPS,
        max_bps: SCREEN_MAX_BPS,
    }]);
    fanout
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

    /// Reports that a local source stopped by itself (camera unplugged, microphone stream
    /// killed) or could not be restarted. The engine turns that track off, sends `state`
    /// to the room and emits [`Event::DeviceFailed`](super::Event::DeviceFailed). Never
    /// blocks: callable from capture threads.
    pub fn device_failed(&self, kind: DeviceKind, message: impl Into<String>) {
        let failure = DeviceFailure {
            kind,
            message: message.into(),
        };
        // Full: the actor is far behind with earlier failures, which already say this.
        if let Err(e) = self.0.failures.try_send(failure) {
            tracing::warn!("a device failure was not passed on: {e}");
        }
    }

    /// Declares the layers the video encoder makes, smallest first (see
    /// [`crate::media::video::ladder`]). Without it there is one layer of any size.
    pub fn set_video_layers(&self, layers: &[LayerSpec]) {
        self.0.video.set_layers(layers);
    }

    /// What to encode for the next captured frame, one order per declared layer: whether
    /// anyone receives the layer, at what bitrate, and whether to make a keyframe.
    pub fn video_orders(&self) -> Vec<LayerOrder> {
        self.0.video.orders(Instant::now())
    }

    /// Sends `layer`'s encoding (an Annex-B access unit) of the current frame to the peers
    /// on that layer. Call [`Self::end_video_frame`] once all layers of a frame are in.
    pub fn send_video_layer(&self, layer: usize, access_unit: &Bytes, keyframe: bool) {
        if self.video_on() {
            self.0.video.send(layer, access_unit, keyframe);
        }
    }

    /// Ends the current frame, which lasted `ticks` of the 90 kHz clock; `sent`: something
    /// of it was encoded and sent.
    pub fn end_video_frame(&self, ticks: u32, sent: bool) {
        self.0.video.advance(ticks, sent && self.video_on());
    }

    /// Sends one access unit of a single-layer source (layer 0) lasting `ticks`.
    pub fn send_video(&self, access_unit: &Bytes, ticks: u32) {
        self.send_video_layer(0, access_unit, has_idr(access_unit));
        self.end_video_frame(ticks, true);
    }

    /// Advances the video clock over a frame not sent (camera off).
    pub fn skip_video(&self, ticks: u32) {
        self.end_video_frame(ticks, false);
    }

    /// For a single-layer source: whether its next frame should be a keyframe.
    pub fn take_keyframe_request(&self) -> bool {
        self.video_orders().first().is_some_and(|o| o.keyframe)
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

    /// The loss (percent) the audio encoder should plan in-band FEC for: the worst any
    /// peer reports, with a floor.
    pub fn expected_audio_loss(&self) -> u32 {
        self.0.expected_audio_loss.load(Ordering::Relaxed)
    }

    /// Video frames sent so far (one per captured frame encoded while the camera is on).
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

    /// Whether we share our screen ([`super::Command::SetScreen`]); when not, skip encoding.
    pub fn screen_on(&self) -> bool {
        self.0.screen_on()
    }

    /// Peers our share goes to (screen legs).
    pub fn screen_peers(&self) -> usize {
        self.0.screen.legs()
    }

    /// What to encode for the next screen frame: the bitrate, and whether to make a
    /// keyframe (a share starting, a peer joining or asking).
    pub fn screen_order(&self) -> LayerOrder {
        self.0
            .screen
            .orders(Instant::now())
            .into_iter()
            .next()
            .unwrap_or(LayerOrder {
                active: false,
                bitrate_bps: SCREEN_MAX_BPS,
                keyframe: false,
            })
    }

    /// Sends one encoded screen frame (an Annex-B access unit) lasting `ticks` of the 90
    /// kHz clock to every peer, packetized once; dropped while not sharing.
    pub fn send_screen(&self, access_unit: &Bytes, ticks: u32) {
        let on = self.screen_on();
        if on {
            self.0.screen.send(0, access_unit, has_idr(access_unit));
        }
        self.0.screen.advance(ticks, on);
    }

    /// Advances the screen's clock over a frame not sent (nothing encoded, or not sharing).
    pub fn skip_screen(&self, ticks: u32) {
        self.0.screen.advance(ticks, false);
    }

    /// For the screen encoder: whether its next frame should be a keyframe.
    pub fn take_screen_keyframe_request(&self) -> bool {
        self.screen_order().keyframe
    }

    /// Screen frames sent so far.
    pub fn screen_frames_sent(&self) -> u64 {
        self.0.screen.frames()
    }
}

/// The capture/encode pipelines (`media::pipeline`) reach the call through this.
impl MediaOutlet for MediaInput {
    fn video_on(&self) -> bool {
        MediaInput::video_on(self)
    }
    fn audio_on(&self) -> bool {
        MediaInput::audio_on(self)
    }
    fn video_peers(&self) -> usize {
        MediaInput::video_peers(self)
    }
    fn set_video_layers(&self, layers: &[LayerSpec]) {
        MediaInput::set_video_layers(self, layers);
    }
    fn video_orders(&self) -> Vec<LayerOrder> {
        MediaInput::video_orders(self)
    }
    fn send_video_layer(&self, layer: usize, access_unit: &Bytes, keyframe: bool) {
        MediaInput::send_video_layer(self, layer, access_unit, keyframe);
    }
    fn end_video_frame(&self, ticks: u32, sent: bool) {
        MediaInput::end_video_frame(self, ticks, sent);
    }
    fn skip_video(&self, ticks: u32) {
        MediaInput::skip_video(self, ticks);
    }
    fn send_audio(&self, packet: &Bytes) {
        MediaInput::send_audio(self, packet);
    }
    fn skip_audio(&self) {
        MediaInput::skip_audio(self);
    }
    fn expected_audio_loss(&self) -> u32 {
        MediaInput::expected_audio_loss(self)
    }
    fn device_failed(&self, kind: DeviceKind, message: String) {
        MediaInput::device_failed(self, kind, message);
    }
    fn screen_on(&self) -> bool {
        MediaInput::screen_on(self)
    }
    fn screen_peers(&self) -> usize {
        MediaInput::screen_peers(self)
    }
    fn screen_order(&self) -> LayerOrder {
        MediaInput::screen_order(self)
    }
    fn send_screen(&self, access_unit: &Bytes, ticks: u32) {
        MediaInput::send_screen(self, access_unit, ticks);
    }
    fn skip_screen(&self, ticks: u32) {
        MediaInput::skip_screen(self, ticks);
    }
}
