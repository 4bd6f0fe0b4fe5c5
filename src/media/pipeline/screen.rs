//! Our screen share's pipeline, beside the camera's: the share's capture thread feeding ONE
//! screen-content encoder, whose output the call sends to every peer (one encode per
//! captured frame, whatever the number of peers). The size is the capture's (at most
//! 1920x1080, `ScreenConfig`); the bitrate follows the call's order, and the encoder's
//! rate control skips frames rather than blur text when the order drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{MediaOutlet, lock};
use crate::media::video::screen::{ScreenCapture, ScreenConfig, ScreenError};
use crate::media::video::{EncoderSettings, H264Encoder};

/// Counters of one share, shared with its owner.
#[derive(Default)]
pub struct ScreenStats {
    /// Frames taken from the capture.
    pub captured_frames: AtomicU64,
    /// Encoder runs (one per captured frame while anyone receives the share).
    pub encoded_frames: AtomicU64,
    /// Frames the encoder produced and the call sent.
    pub sent_frames: AtomicU64,
    /// Why the share stopped by itself (the window closed, the display went away).
    failure: std::sync::Mutex<Option<String>>,
}

impl ScreenStats {
    /// Why the share stopped by itself, once it has.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

/// A running share: capture and encode threads. Dropping it stops and joins them.
pub struct ScreenPipeline {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Counters, and the failure if the source ended by itself.
    pub stats: Arc<ScreenStats>,
}

impl ScreenPipeline {
    /// Starts capturing `config` and encoding into `outlet`. No display, a window already
    /// gone or bad settings fail here. Blocks while the source opens: call it off any UI
    /// thread.
    pub fn start(outlet: &impl MediaOutlet, config: ScreenConfig) -> Result<Self, ScreenError> {
        let fps = config.fps;
        let capture = ScreenCapture::start(config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ScreenStats::default());
        let (outlet, s, st) = (outlet.clone(), Arc::clone(&stop), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("meshcall-screen-encode".into())
            .spawn(move || screen_loop(&capture, fps, &outlet, &s, &st))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Whether the share still runs (false once its source ended by itself).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for ScreenPipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn screen_loop(
    capture: &ScreenCapture,
    fps: u32,
    outlet: &impl MediaOutlet,
    stop: &AtomicBool,
    stats: &ScreenStats,
) {
    let nominal_ticks = 90_000 / fps.max(1);
    let mut last: Option<Instant> = None;
    let mut encoder: Option<(H264Encoder, u32)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = capture.recv_timeout(Duration::from_millis(100)) else {
            if capture.has_ended() {
                let why = capture
                    .take_failure()
                    .map_or_else(|| "the shared screen ended".to_owned(), |e| e.to_string());
                tracing::warn!("screen share stopped: {why}");
                *lock(&stats.failure) = Some(why);
                return;
            }
            continue;
        };
        stats.captured_frames.fetch_add(1, Ordering::Relaxed);
        // RTP time follows capture time, as for the camera.
        let at = frame.timestamp().instant;
        let ticks = last.map_or(nominal_ticks, |l| {
            let t = (at.saturating_duration_since(l).as_secs_f64() * 90_000.0) as u32;
            t.clamp(1, 90_000)
        });
        last = Some(at);
        if !outlet.screen_on() || outlet.screen_peers() == 0 {
            // Nobody to send to: a peer that comes gets a keyframe when its leg starts.
            outlet.skip_screen(ticks);
            continue;
        }
        let order = outlet.screen_order();
        if encoder.is_none() {
            match H264Encoder::for_screen(EncoderSettings {
                bitrate_bps: order.bitrate_bps,
                frame_rate: fps as f32,
            }) {
                Ok(e) => encoder = Some((e, order.bitrate_bps)),
                Err(e) => {
                    tracing::warn!("no screen share: the encoder did not start: {e}");
                    *lock(&stats.failure) = Some(format!("the encoder did not start: {e}"));
                    return;
                }
            }
        }
        let Some((enc, bitrate)) = encoder.as_mut() else {
            continue;
        };
        if order.keyframe {
            enc.request_keyframe();
        }
        // Small wobbles of the estimate are not worth a rate-control reset.
        if order.bitrate_bps.abs_diff(*bitrate) > *bitrate / 10 {
            match enc.set_bitrate(order.bitrate_bps) {
                Ok(()) => *bitrate = order.bitrate_bps,
                Err(e) => tracing::debug!("screen bitrate change refused: {e}"),
            }
        }
        stats.encoded_frames.fetch_add(1, Ordering::Relaxed);
        match enc.encode(&frame) {
            Ok(Some(out)) => {
                tracing::debug!(
                    bytes = out.data.len(),
                    bitrate = *bitrate,
                    keyframe = out.keyframe,
                    "screen frame"
                );
                stats.sent_frames.fetch_add(1, Ordering::Relaxed);
                outlet.send_screen(&Bytes::from(out.data), ticks);
            }
            Ok(None) => outlet.skip_screen(ticks),
            Err(e) => {
                tracing::warn!("encoding a screen frame failed: {e}");
                outlet.skip_screen(ticks);
            }
        }
    }
}
