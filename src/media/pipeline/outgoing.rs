//! Our outgoing media: a capture thread per source feeding ONE encoder each (per layer in
//! use), whose output the call's fan-out ([`MediaOutlet`]) sends to every peer. Encoder
//! runs equal captured frames at any number of peers; that is the point of the design, and
//! the counters here let tests prove it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{EchoReference, lock};
use crate::media::DeviceKind;
use crate::media::audio::AudioFrame;
use crate::media::audio::capture::Capture;
use crate::media::audio::codec::{DEFAULT_BITRATE, OpusEncoder};
use crate::media::audio::denoise::NoiseSuppressor;
use crate::media::audio::echo::EchoCanceller;
use crate::media::audio::level::rms;
use crate::media::audio::tone::{ToneConfig, TonePattern, ToneSource};
use crate::media::pipeline::MediaOutlet;
use crate::media::video::layers::half;
use crate::media::video::{
    CaptureConfig, EncoderSettings, H264Encoder, I420Frame, LayerOrder, LayerSpec, VideoCapture,
    VideoSource, ladder,
};

/// What to send as video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    /// The synthetic test pattern (moving content, the name, a time band).
    TestPattern,
    /// The test pattern, failing after this many frames as an unplugged camera would: a
    /// diagnostic for the failure path (`meshcall join --video test:fail-after=N`).
    FailingTestPattern(u64),
    /// A camera by index.
    Camera(u32),
    /// No video.
    None,
}

/// What to send as audio.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioChoice {
    /// A 440 Hz tone; with `beep_every`, short beeps at that period instead.
    Tone {
        /// Beep period, or continuous when `None`.
        beep_every: Option<Duration>,
    },
    /// A microphone (the default one when `None`).
    Mic(Option<String>),
    /// No audio.
    None,
}

/// Size and rate of the video we capture and send.
#[derive(Debug, Clone)]
pub struct VideoFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl Default for VideoFormat {
    fn default() -> Self {
        Self {
            width: 640,
            height: 360,
            fps: 30,
        }
    }
}

/// Counters and the self-view, shared with consumers.
#[derive(Default)]
pub struct OutgoingStats {
    /// Frames taken from the camera/pattern while the camera was on.
    pub captured_frames: AtomicU64,
    /// Captured frames that went through the encoders (one per captured frame while anyone
    /// receives video, however many peers and layers; a frame the rate control skips still
    /// counts, as an encoder run).
    pub encoded_frames: AtomicU64,
    /// Encoder runs per layer, smallest first: (`320x180`, runs).
    pub layer_encodes: Mutex<Vec<(String, u64)>>,
    /// Audio frames encoded.
    pub audio_frames: AtomicU64,
    /// The latest captured frame, for a self-preview.
    pub preview: Mutex<Option<Arc<I420Frame>>>,
    /// Microphone level of the last frame, linear RMS as f32 bits.
    mic_rms: AtomicU32,
}

impl OutgoingStats {
    /// Microphone level of the last frame (linear RMS, 0..1).
    pub fn mic_rms(&self) -> f32 {
        f32::from_bits(self.mic_rms.load(Ordering::Relaxed))
    }
}

/// The running capture/encode threads; dropping this stops and joins them.
pub struct LocalPipelines {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Counters and self-view.
    pub stats: Arc<OutgoingStats>,
    /// Why a source could not start (no camera, no sound server); the call goes on without it.
    pub problems: Vec<String>,
}

impl Drop for LocalPipelines {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl LocalPipelines {
    /// Starts the chosen sources. A source that cannot start is reported in `problems`.
    /// `echo_reference` is what the speaker plays (see `RemoteMedia::echo_reference`);
    /// with it, a microphone's echo of the call is cancelled.
    pub fn start(
        input: &impl MediaOutlet,
        name: &str,
        video: &VideoChoice,
        format: &VideoFormat,
        audio: &AudioChoice,
        echo_reference: Option<EchoReference>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(OutgoingStats::default());
        let mut threads = Vec::new();
        let mut problems = Vec::new();
        let source = match video {
            VideoChoice::TestPattern => Some(VideoSource::TestPattern {
                name: name.to_owned(),
            }),
            VideoChoice::FailingTestPattern(frames) => Some(VideoSource::FailingPattern {
                name: name.to_owned(),
                frames: *frames,
            }),
            VideoChoice::Camera(index) => Some(VideoSource::Camera { index: *index }),
            VideoChoice::None => None,
        };
        if let Some(source) = source {
            let config = CaptureConfig {
                source,
                width: format.width,
                height: format.height,
                fps: format.fps,
            };
            match VideoCapture::start(config) {
                Ok(capture) => {
                    let (input, stop, stats, fps) = (
                        input.clone(),
                        Arc::clone(&stop),
                        Arc::clone(&stats),
                        format.fps,
                    );
                    match std::thread::Builder::new()
                        .name("meshcall-video-encode".into())
                        .spawn(move || video_loop(&capture, fps, &input, &stop, &stats))
                    {
                        Ok(t) => threads.push(t),
                        Err(e) => problems.push(format!("cannot start the video thread: {e}")),
                    }
                }
                Err(e) => problems.push(format!("video: {e}")),
            }
        }
        let frames = match audio {
            AudioChoice::Tone { beep_every } => {
                let pattern = match beep_every {
                    Some(period) => TonePattern::Beeps {
                        period: *period,
                        length: Duration::from_millis(100),
                    },
                    None => TonePattern::Continuous,
                };
                ToneSource::start(
                    ToneConfig {
                        pattern,
                        ..Default::default()
                    },
                    8,
                )
                .map(|(src, rx)| (AudioSourceHandle::Tone(src), rx))
                .map_err(|e| format!("audio: {e}"))
            }
            AudioChoice::Mic(device) => Capture::open(device.as_deref(), 8)
                .map(|(cap, rx)| (AudioSourceHandle::Mic(cap), rx))
                .map_err(|e| format!("microphone: {e}")),
            AudioChoice::None => Err(String::new()),
        };
        match frames {
            Ok((handle, rx)) => {
                let (input, stop, stats) = (input.clone(), Arc::clone(&stop), Arc::clone(&stats));
                // Only a real microphone hears a room: synthetic tones need no cleaning.
                let is_mic = matches!(handle, AudioSourceHandle::Mic(_));
                match std::thread::Builder::new()
                    .name("meshcall-audio-encode".into())
                    .spawn(move || {
                        // Built here: the echo canceller cannot move between threads.
                        let cleanup = is_mic.then(|| MicCleanup::new(echo_reference));
                        audio_loop(handle, &rx, cleanup, &input, &stop, &stats);
                    }) {
                    Ok(t) => threads.push(t),
                    Err(e) => problems.push(format!("cannot start the audio thread: {e}")),
                }
            }
            Err(e) if !e.is_empty() => problems.push(e),
            Err(_) => {}
        }
        Self {
            stop,
            threads,
            stats,
            problems,
        }
    }

    /// Whether a source started; for a pipeline of one source, whether it runs (until it
    /// fails, which [`MediaOutlet::device_failed`] reports).
    pub fn is_running(&self) -> bool {
        !self.threads.is_empty()
    }
}

/// One layer's encoder and the bitrate it was last set to.
struct LayerEncoder {
    encoder: H264Encoder,
    bitrate: u32,
}

fn video_loop(
    capture: &VideoCapture,
    fps: u32,
    input: &impl MediaOutlet,
    stop: &AtomicBool,
    stats: &OutgoingStats,
) {
    let nominal_ticks = 90_000 / fps.max(1);
    let mut last: Option<Instant> = None;
    let mut layers: Vec<LayerSpec> = Vec::new();
    let mut encoders: Vec<Option<LayerEncoder>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = capture.recv_timeout(Duration::from_millis(100)) else {
            // Only a failure ends the capture before we drop it.
            if capture.has_ended() {
                let why = capture
                    .take_failure()
                    .map_or_else(|| "the video source ended".to_owned(), |e| e.to_string());
                tracing::warn!("video source stopped: {why}");
                input.device_failed(DeviceKind::Camera, why);
                return;
            }
            continue;
        };
        // RTP time follows capture time, so receivers see real gaps (and none when paced).
        let at = frame.timestamp().instant;
        let ticks = last.map_or(nominal_ticks, |l| {
            let t = (at.saturating_duration_since(l).as_secs_f64() * 90_000.0) as u32;
            t.clamp(1, 90_000)
        });
        last = Some(at);
        let frame = Arc::new(frame);
        *lock(&stats.preview) = Some(Arc::clone(&frame));
        // Off, or nobody to send to (the lobby's self-preview): capture only. A peer that
        // connects later asks for a keyframe, so nothing is lost by not encoding now.
        if !input.video_on() || input.video_peers() == 0 {
            input.skip_video(ticks);
            continue;
        }
        let ladder = ladder(frame.width(), frame.height());
        if ladder != layers {
            layers = ladder;
            input.set_video_layers(&layers);
            encoders = layers.iter().map(|_| None).collect();
            *lock(&stats.layer_encodes) = layers.iter().map(|l| (l.name(), 0)).collect();
        }
        stats.captured_frames.fetch_add(1, Ordering::Relaxed);
        let orders = input.video_orders();
        let ran = orders.iter().any(|o| o.active);
        let sent = encode_layers(&frame, &layers, &orders, fps, &mut encoders, input, stats);
        if ran {
            stats.encoded_frames.fetch_add(1, Ordering::Relaxed);
        }
        input.end_video_frame(ticks, sent);
    }
}

/// Encodes `frame` once for every layer someone receives, smallest from largest by
/// halving; frees the encoders of layers nobody receives (a layer that comes back starts
/// with a keyframe). True when some layer was encoded.
fn encode_layers(
    frame: &Arc<I420Frame>,
    layers: &[LayerSpec],
    orders: &[LayerOrder],
    fps: u32,
    encoders: &mut [Option<LayerEncoder>],
    input: &impl MediaOutlet,
    stats: &OutgoingStats,
) -> bool {
    let Some(smallest) = orders.iter().position(|o| o.active) else {
        encoders.iter_mut().for_each(|e| *e = None);
        return false;
    };
    // The pyramid, from the captured size down to the smallest layer wanted.
    let mut pictures: Vec<Arc<I420Frame>> = vec![Arc::clone(frame)];
    for _ in smallest..layers.len().saturating_sub(1) {
        let Some(bigger) = pictures.last() else { break };
        match half(bigger) {
            Ok(p) => pictures.push(Arc::new(p)),
            Err(e) => {
                tracing::warn!("cannot scale a frame for a smaller layer: {e}");
                break;
            }
        }
    }
    let mut encoded = false;
    for (i, order) in orders.iter().enumerate() {
        let slot = &mut encoders[i];
        if !order.active {
            *slot = None;
            continue;
        }
        let Some(picture) = pictures.get(layers.len() - 1 - i) else {
            continue;
        };
        if slot.is_none() {
            match H264Encoder::new(EncoderSettings {
                bitrate_bps: order.bitrate_bps,
                frame_rate: fps as f32,
            }) {
                Ok(encoder) => {
                    *slot = Some(LayerEncoder {
                        encoder,
                        bitrate: order.bitrate_bps,
                    });
                }
                Err(e) => {
                    tracing::warn!("no video for layer {i}: the encoder did not start: {e}");
                    continue;
                }
            }
        }
        let Some(layer) = slot.as_mut() else { continue };
        if order.keyframe {
            layer.encoder.request_keyframe();
        }
        // Small wobbles of the estimate are not worth a rate-control reset.
        if order.bitrate_bps.abs_diff(layer.bitrate) > layer.bitrate / 10 {
            match layer.encoder.set_bitrate(order.bitrate_bps) {
                Ok(()) => layer.bitrate = order.bitrate_bps,
                Err(e) => tracing::debug!("bitrate change refused: {e}"),
            }
        }
        if let Some((_, n)) = lock(&stats.layer_encodes).get_mut(i) {
            *n += 1;
        }
        match layer.encoder.encode(picture) {
            Ok(Some(out)) => {
                if out.keyframe {
                    tracing::debug!(
                        layer = i,
                        bytes = out.data.len(),
                        bitrate = layer.bitrate,
                        "keyframe"
                    );
                }
                input.send_video_layer(i, &Bytes::from(out.data), out.keyframe);
                encoded = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("encoding a frame failed: {e}"),
        }
    }
    encoded
}

/// Keeps an audio source alive while its frames are read; dropping it stops the source.
enum AudioSourceHandle {
    #[allow(dead_code)] // held for its Drop, never read
    Tone(ToneSource),
    Mic(Capture),
}

impl AudioSourceHandle {
    /// Why the source's frames ended by themselves.
    fn failure(&self) -> String {
        match self {
            Self::Mic(capture) => capture.take_failure().map(|e| e.to_string()),
            Self::Tone(_) => None,
        }
        .unwrap_or_else(|| "the audio source ended".to_owned())
    }
}

/// Echo cancellation (the far-end mix as reference) and noise suppression for a microphone.
struct MicCleanup {
    echo: Option<(EchoCanceller, EchoReference)>,
    noise: NoiseSuppressor,
}

/// Typical speaker-to-microphone delay to start the echo canceller's search from.
const ECHO_DELAY_MS: i32 = 60;

impl MicCleanup {
    fn new(reference: Option<EchoReference>) -> Self {
        let echo = reference.and_then(|r| match EchoCanceller::new(ECHO_DELAY_MS) {
            Ok(aec) => Some((aec, r)),
            Err(e) => {
                tracing::warn!("echo cancellation unavailable: {e}");
                None
            }
        });
        Self {
            echo,
            noise: NoiseSuppressor::new(),
        }
    }

    fn process(&mut self, frame: &mut AudioFrame) {
        if let Some((aec, reference)) = &mut self.echo {
            // Everything the speaker played since the last microphone frame goes in first.
            reference.drain(|far| {
                if let Err(e) = aec.render(&far.samples) {
                    tracing::debug!("echo reference refused: {e}");
                }
            });
            if let Err(e) = aec.process(&mut frame.samples) {
                tracing::debug!("echo cancellation failed on a frame: {e}");
            }
        }
        self.noise.process(&mut frame.samples);
    }
}

fn audio_loop(
    source: AudioSourceHandle,
    frames: &std::sync::mpsc::Receiver<AudioFrame>,
    mut cleanup: Option<MicCleanup>,
    input: &impl MediaOutlet,
    stop: &AtomicBool,
    stats: &OutgoingStats,
) {
    let mut expected_loss = input.expected_audio_loss();
    let mut encoder = match OpusEncoder::new(DEFAULT_BITRATE, expected_loss as i32) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("no audio: the Opus encoder did not start: {e}");
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let mut frame = match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // The source only ends by itself: we hold it until we return.
                let why = source.failure();
                tracing::warn!("audio source stopped: {why}");
                input.device_failed(DeviceKind::Microphone, why);
                return;
            }
        };
        if let Some(c) = &mut cleanup {
            c.process(&mut frame);
        }
        stats
            .mic_rms
            .store(rms(&frame.samples).to_bits(), Ordering::Relaxed);
        if !input.audio_on() {
            input.skip_audio();
            continue;
        }
        let wanted_loss = input.expected_audio_loss();
        if wanted_loss != expected_loss {
            match encoder.set_expected_loss(wanted_loss as i32) {
                Ok(()) => expected_loss = wanted_loss,
                Err(e) => tracing::debug!("expected loss refused: {e}"),
            }
        }
        match encoder.encode(&frame.samples) {
            Ok(packet) => {
                stats.audio_frames.fetch_add(1, Ordering::Relaxed);
                input.send_audio(&Bytes::copy_from_slice(packet));
            }
            Err(e) => tracing::warn!("encoding audio failed: {e}"),
        }
    }
}
