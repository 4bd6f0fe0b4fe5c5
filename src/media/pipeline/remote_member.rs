//! One member's received media as consumers see it: the latest decoded frame, and the
//! numbers the report and the tile's tooltip show (frame rate, size, freezes, latency,
//! audio decoded and concealed). The decoder thread and the audio clock of `incoming.rs`
//! fill it in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::media::video::I420Frame;

/// Latency samples kept per member.
const MAX_LATENCY_SAMPLES: usize = 20_000;

/// When frames were shown, for frame rate and freezes as people see them.
#[derive(Default)]
pub(super) struct VideoTimeline {
    /// Decode instants within the last [`FPS_WINDOW`].
    pub(super) recent: VecDeque<Instant>,
    last: Option<Instant>,
    /// Mean inter-frame interval (exponential, over roughly the last 30 frames), seconds.
    mean_interval: Option<f64>,
    freezes: u64,
    freeze_time: Duration,
    /// The longest time between two decoded frames (a move between paths must not show).
    max_gap: Duration,
    width: u32,
    height: u32,
    /// The frame rate when their video ended ([`Self::close`]), reported from then on.
    fps_at_close: Option<f64>,
}

/// The window `fps` is measured over.
const FPS_WINDOW: Duration = Duration::from_secs(10);

impl VideoTimeline {
    /// A frame was decoded at `now`. A gap longer than max(3 x the mean interval, 150 ms)
    /// is a freeze, as WebRTC's `freezeCount` defines it.
    pub(super) fn frame(&mut self, now: Instant, width: u32, height: u32) {
        (self.width, self.height) = (width, height);
        if let Some(last) = self.last {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
            let gap = now.saturating_duration_since(last).as_secs_f64();
            if let Some(mean) = self.mean_interval
                && gap > (3.0 * mean).max(0.150)
            {
                self.freezes += 1;
                self.freeze_time += Duration::from_secs_f64(gap);
            }
            // A freeze is not a frame rate: keep it out of the mean, or one long pause
            // would hide the next.
            if self
                .mean_interval
                .is_none_or(|m| gap <= (3.0 * m).max(0.150))
            {
                self.mean_interval = Some(match self.mean_interval {
                    None => gap,
                    Some(m) => m + (gap - m) / 30.0,
                });
            }
        }
        self.last = Some(now);
        self.fps_at_close = None;
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > FPS_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Their video ended: the frame rate is kept as it was then, and the window of decode
    /// instants (up to 10 s of them) is freed.
    fn close(&mut self, now: Instant) {
        if !self.recent.is_empty() {
            self.fps_at_close = Some(self.fps(now));
        }
        self.recent = VecDeque::new();
    }

    fn fps(&self, now: Instant) -> f64 {
        if let Some(fps) = self.fps_at_close {
            return fps;
        }
        let n = self
            .recent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= FPS_WINDOW)
            .count();
        n as f64 / FPS_WINDOW.as_secs_f64()
    }
}

/// Glass-to-glass latency samples while their video comes; once it has ended, only their
/// percentiles.
#[derive(Default)]
pub(super) struct Latencies {
    pub(super) samples: Vec<u32>,
    /// (p50, p95) of the samples when their video ended ([`RemoteMember::close`]).
    at_close: Option<(u32, u32)>,
}

impl Latencies {
    pub(super) fn push(&mut self, ms: u32) {
        if self.samples.len() < MAX_LATENCY_SAMPLES {
            self.samples.push(ms);
        }
    }

    /// (p50, p95) in ms; after [`Self::close`], those of the samples it freed.
    fn percentiles(&self) -> Option<(u32, u32)> {
        if self.samples.is_empty() {
            return self.at_close;
        }
        let mut v = self.samples.clone();
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some((at(0.50), at(0.95)))
    }

    fn close(&mut self) {
        self.at_close = self.percentiles();
        self.samples = Vec::new();
    }
}

/// How their video looked to us: frame rate, size and freezes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoQuality {
    /// Frames decoded per second over the last 10 s.
    pub fps: f64,
    /// Size of the last decoded frame (0 x 0 before any).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Inter-frame gaps longer than max(3 x the mean interval, 150 ms).
    pub freezes: u64,
    /// Their total length.
    pub freeze_time: Duration,
}

#[derive(Default)]
pub(super) struct AudioTally {
    pub(super) frames: u64,
    /// Frames that had to be made up (packet-loss concealment) instead of decoded.
    pub(super) concealed: u64,
    pub(super) last_concealed: u64,
    pub(super) rms_sum: f64,
    pub(super) last: Option<Instant>,
    pub(super) last_played: u64,
    /// Level of what was played in the last clock tick, decaying while nothing plays.
    pub(super) level: f64,
}

/// One member's screen share as received: a frame, counters and timeline of its own,
/// beside the camera's.
#[derive(Default)]
pub(super) struct ScreenFeed {
    pub(super) latest: Mutex<Option<Arc<I420Frame>>>,
    pub(super) fresh: AtomicBool,
    pub(super) frames: AtomicU64,
    pub(super) decode_failures: AtomicU64,
    pub(super) timeline: Mutex<VideoTimeline>,
    pub(super) latencies_ms: Mutex<Latencies>,
}

/// One member's received media as consumers see it.
#[derive(Default)]
pub struct RemoteMember {
    pub(super) screen: ScreenFeed,
    pub(super) latest: Mutex<Option<Arc<I420Frame>>>,
    pub(super) latest_at: Mutex<Option<Instant>>,
    pub(super) fresh: AtomicBool,
    pub(super) video_frames: AtomicU64,
    pub(super) decode_failures: AtomicU64,
    pub(super) latencies_ms: Mutex<Latencies>,
    pub(super) timeline: Mutex<VideoTimeline>,
    pub(super) audio_packets: AtomicU64,
    pub(super) audio: Mutex<AudioTally>,
}

impl RemoteMember {
    /// The newest decoded frame if it arrived since the last call (for texture updates).
    pub fn take_new_frame(&self) -> Option<Arc<I420Frame>> {
        if self.fresh.swap(false, Ordering::Relaxed) {
            lock(&self.latest).clone()
        } else {
            None
        }
    }

    /// The newest decoded frame.
    pub fn latest_frame(&self) -> Option<Arc<I420Frame>> {
        lock(&self.latest).clone()
    }

    /// Time since their last decoded video frame.
    pub fn since_last_video(&self) -> Option<Duration> {
        lock(&self.latest_at).map(|t| t.elapsed())
    }

    /// Frames decoded.
    pub fn video_frames(&self) -> u64 {
        self.video_frames.load(Ordering::Relaxed)
    }

    /// Frame rate, size and freezes of their video so far.
    pub fn video_quality(&self) -> VideoQuality {
        let t = lock(&self.timeline);
        VideoQuality {
            fps: t.fps(Instant::now()),
            width: t.width,
            height: t.height,
            freezes: t.freezes,
            freeze_time: t.freeze_time,
        }
    }

    /// Their newest decoded screen-share frame if it arrived since the last call.
    pub fn take_new_screen_frame(&self) -> Option<Arc<I420Frame>> {
        if self.screen.fresh.swap(false, Ordering::Relaxed) {
            lock(&self.screen.latest).clone()
        } else {
            None
        }
    }

    /// Their newest decoded screen-share frame (kept until their media ends; whether a
    /// share is on is their announced `screen` state).
    pub fn latest_screen_frame(&self) -> Option<Arc<I420Frame>> {
        lock(&self.screen.latest).clone()
    }

    /// Screen-share frames decoded.
    pub fn screen_frames(&self) -> u64 {
        self.screen.frames.load(Ordering::Relaxed)
    }

    /// Frame rate, size and freezes of their screen share so far.
    pub fn screen_quality(&self) -> VideoQuality {
        let t = lock(&self.screen.timeline);
        VideoQuality {
            fps: t.fps(Instant::now()),
            width: t.width,
            height: t.height,
            freezes: t.freezes,
            freeze_time: t.freeze_time,
        }
    }

    /// Glass-to-glass latency of their share from its time band: (p50, p95) in ms.
    pub fn screen_latency_ms(&self) -> Option<(u32, u32)> {
        lock(&self.screen.latencies_ms).percentiles()
    }

    /// Screen-share access units the decoder refused.
    pub fn screen_decode_failures(&self) -> u64 {
        self.screen.decode_failures.load(Ordering::Relaxed)
    }

    /// The longest time between two of their decoded frames so far.
    pub fn max_video_gap(&self) -> Duration {
        lock(&self.timeline).max_gap
    }

    /// Audio frames of theirs that were concealed (made up) because nothing came in time.
    pub fn audio_concealed(&self) -> u64 {
        lock(&self.audio).concealed
    }

    /// Access units the decoder refused.
    pub fn decode_failures(&self) -> u64 {
        self.decode_failures.load(Ordering::Relaxed)
    }

    /// Glass-to-glass latency read from the sender's time band: (p50, p95) in ms.
    pub fn latency_ms(&self) -> Option<(u32, u32)> {
        lock(&self.latencies_ms).percentiles()
    }

    /// Audio frames decoded from their packets (FEC-recovered ones included).
    pub fn audio_frames(&self) -> u64 {
        lock(&self.audio).frames
    }

    /// Mean RMS of their decoded audio (linear, 0 when nothing was heard).
    pub fn audio_rms(&self) -> f64 {
        let a = lock(&self.audio);
        if a.frames == 0 {
            0.0
        } else {
            a.rms_sum / a.frames as f64
        }
    }

    /// How loud they are right now (linear RMS of the last 20 ms played, 0..1), for
    /// showing who is speaking.
    pub fn audio_level(&self) -> f32 {
        lock(&self.audio).level as f32
    }

    /// Time since their last decoded audio frame.
    pub fn since_last_audio(&self) -> Option<Duration> {
        lock(&self.audio).last.map(|t| t.elapsed())
    }

    /// Their media ended (the connection is gone, its decoder thread too). Frees what only
    /// live media needs: the last decoded frame (337 KiB at 640x360, which every departed
    /// member used to keep for the rest of the call), the latency samples, the frame-rate
    /// window. The counters stay, a few hundred bytes, for the final report and for a
    /// member who comes back under the same id (a fresh rejoin).
    pub(super) fn close(&self) {
        *lock(&self.latest) = None;
        self.fresh.store(false, Ordering::Relaxed);
        lock(&self.latencies_ms).close();
        lock(&self.timeline).close(Instant::now());
        *lock(&self.screen.latest) = None;
        self.screen.fresh.store(false, Ordering::Relaxed);
        lock(&self.screen.latencies_ms).close();
        lock(&self.screen.timeline).close(Instant::now());
    }
}
