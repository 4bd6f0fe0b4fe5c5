//! What we receive: per member, H.264 decoded on a thread of its own with only the latest
//! frame kept for consumers, and Opus through that member's jitter buffer into the mixer,
//! played on a speaker or, headless, on a 20 ms clock of our own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::audio::jitter::JitterConfig;
use crate::media::audio::playback::Playback;
use crate::media::audio::remote::RemoteAudio;
use crate::media::audio::{AudioFrame, FRAME_SAMPLES};
use crate::media::pipeline::{RemoteMediaSink, SinkFactory};
use crate::media::video::{AccessUnit, H264Decoder, I420Frame, read_time_band, unix_now_ms};

/// Access units waiting for one member's decoder. H.264 frames depend on each other, so
/// none may be skipped; if the decoder falls this far behind, drop and ask for a keyframe.
const DECODE_QUEUE: usize = 30;
/// Latency samples kept per member.
const MAX_LATENCY_SAMPLES: usize = 20_000;

/// Locks `m`, taking over a poisoned lock: these hold counters and the latest frame, which
/// stay usable after a panic elsewhere.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// When frames were shown, for frame rate and freezes as people see them.
#[derive(Default)]
struct VideoTimeline {
    /// Decode instants within the last [`FPS_WINDOW`].
    recent: std::collections::VecDeque<Instant>,
    last: Option<Instant>,
    /// Mean inter-frame interval (exponential, over roughly the last 30 frames), seconds.
    mean_interval: Option<f64>,
    freezes: u64,
    freeze_time: Duration,
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
    fn frame(&mut self, now: Instant, width: u32, height: u32) {
        (self.width, self.height) = (width, height);
        if let Some(last) = self.last {
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
        self.recent = std::collections::VecDeque::new();
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
struct Latencies {
    samples: Vec<u32>,
    /// (p50, p95) of the samples when their video ended ([`RemoteMember::close`]).
    at_close: Option<(u32, u32)>,
}

impl Latencies {
    fn push(&mut self, ms: u32) {
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
struct AudioTally {
    frames: u64,
    /// Frames that had to be made up (packet-loss concealment) instead of decoded.
    concealed: u64,
    last_concealed: u64,
    rms_sum: f64,
    last: Option<Instant>,
    last_played: u64,
    /// Level of what was played in the last clock tick, decaying while nothing plays.
    level: f64,
}

/// One member's received media as consumers see it.
#[derive(Default)]
pub struct RemoteMember {
    latest: Mutex<Option<Arc<I420Frame>>>,
    latest_at: Mutex<Option<Instant>>,
    fresh: AtomicBool,
    video_frames: AtomicU64,
    decode_failures: AtomicU64,
    latencies_ms: Mutex<Latencies>,
    timeline: Mutex<VideoTimeline>,
    audio_packets: AtomicU64,
    audio: Mutex<AudioTally>,
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
    fn close(&self) {
        *lock(&self.latest) = None;
        self.fresh.store(false, Ordering::Relaxed);
        lock(&self.latencies_ms).close();
        lock(&self.timeline).close(Instant::now());
    }
}

/// Where decoded audio is played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaker {
    /// Nowhere: decode and measure on our own 20 ms clock (headless participants).
    None,
    /// The default output device.
    Default,
    /// An output device by name.
    Named(String),
}

/// Where received audio goes: one mix (every member's jitter buffer), played by a device
/// when there is one. The device can change mid-call while the mix, and so everyone's
/// buffered audio and counters, carries on.
struct Output {
    mix: Arc<Mutex<RemoteAudio<String>>>,
    /// In a mutex because it is swapped, and because `Playback` is not `Sync`.
    device: Mutex<Option<Playback>>,
}

impl Output {
    fn push(&self, peer: &str, seq: u16, ts: u32, payload: Vec<u8>) {
        let result = lock(&self.mix).push(&peer.to_owned(), seq, ts, payload, Instant::now());
        if let Err(e) = result {
            tracing::debug!("audio from {peer} dropped: {e}");
        }
    }

    fn remove(&self, peer: &str) {
        lock(&self.mix).remove_peer(&peer.to_owned());
    }

    /// (frames decoded so far, frames concealed so far, level in dBFS) per peer.
    fn tallies(&self) -> Vec<(String, u64, u64, f32)> {
        let mix = lock(&self.mix);
        mix.levels()
            .into_iter()
            .map(|(k, db)| {
                let (played, concealed) = mix.stats(&k).map_or((0, 0), |s| {
                    (s.played + s.fec, s.concealed + s.starved_concealed)
                });
                (k, played, concealed, db)
            })
            .collect()
    }

    /// Opens `speaker` playing the mix; `Ok(None)` when no device is wanted.
    fn open(&self, speaker: &Speaker) -> Result<Option<Playback>, String> {
        let name = match speaker {
            Speaker::None => return Ok(None),
            Speaker::Default => None,
            Speaker::Named(n) => Some(n.as_str()),
        };
        Playback::open_mix(name, Arc::clone(&self.mix))
            .map(Some)
            .map_err(|e| format!("speaker: {e}"))
    }
}

/// What the speaker plays, as the echo canceller's reference. It follows the speaker
/// (nothing while none plays on a device). Meant for one microphone at a time: two readers
/// would split the frames between them.
#[derive(Clone, Default)]
pub struct EchoReference(Arc<Mutex<Option<Receiver<AudioFrame>>>>);

impl EchoReference {
    /// Hands `f` every frame played since the last call.
    pub fn drain(&self, mut f: impl FnMut(AudioFrame)) {
        if let Some(frames) = lock(&self.0).as_ref() {
            while let Ok(frame) = frames.try_recv() {
                f(frame);
            }
        }
    }

    fn follow(&self, frames: Option<Receiver<AudioFrame>>) {
        *lock(&self.0) = frames;
    }
}

/// All members' received media; cheap to clone.
#[derive(Clone)]
pub struct RemoteMedia {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    members: Mutex<HashMap<String, Arc<RemoteMember>>>,
    output: Output,
    stop: Arc<AtomicBool>,
    clock: Mutex<Option<JoinHandle<()>>>,
    /// Called when a new frame is ready (the UI asks egui to repaint).
    on_frame: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Why audio could not be played on a device, if so.
    problem: Mutex<Option<String>>,
    /// The mix as sent to the speaker, for the echo canceller.
    echo_reference: EchoReference,
}

impl Drop for RemoteInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.clock).take()
            // The clock briefly holds a strong reference; if it was the last, it is the one
            // dropping us and ends by itself right after.
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl RemoteMedia {
    /// Starts the audio output (falling back to headless playout if the device fails).
    pub fn new(speaker: &Speaker) -> Self {
        let output = Output {
            mix: Arc::new(Mutex::new(RemoteAudio::new(JitterConfig::default()))),
            device: Mutex::new(None),
        };
        let inner = Arc::new(RemoteInner {
            members: Mutex::new(HashMap::new()),
            output,
            stop: Arc::new(AtomicBool::new(false)),
            clock: Mutex::new(None),
            on_frame: Mutex::new(None),
            problem: Mutex::new(None),
            echo_reference: EchoReference::default(),
        });
        let media = Self { inner };
        // A speaker that fails leaves the call headless, not silent to itself: the
        // problem is kept for the caller to show.
        let _ = media.set_speaker(speaker);
        // One 20 ms clock: drives headless playout, and tallies what each member played.
        let weak = Arc::downgrade(&media.inner);
        let stop = Arc::clone(&media.inner.stop);
        let clock = std::thread::Builder::new()
            .name("meshcall-audio-clock".into())
            .spawn(move || audio_clock(&weak, &stop))
            .ok();
        *lock(&media.inner.clock) = clock;
        media
    }

    /// Plays the call on `speaker` from now on, keeping every member's buffered audio. On
    /// failure the call goes on headless and the error is also kept as [`Self::problem`].
    /// Blocks while the device opens (up to a few seconds): call it off any UI thread.
    pub fn set_speaker(&self, speaker: &Speaker) -> Result<(), String> {
        // The old device stops first, so two devices never pull from one mix.
        let old = lock(&self.inner.output.device).take();
        drop(old);
        let opened = self.inner.output.open(speaker);
        let result = match opened {
            Ok(mut device) => {
                let far_end = device.as_mut().and_then(Playback::take_far_end);
                self.inner.echo_reference.follow(far_end);
                *lock(&self.inner.output.device) = device;
                Ok(())
            }
            Err(e) => {
                self.inner.echo_reference.follow(None);
                Err(e)
            }
        };
        *lock(&self.inner.problem) = result.as_ref().err().cloned();
        result
    }

    /// Why the speaker could not be used (audio is then decoded but not played).
    pub fn problem(&self) -> Option<String> {
        lock(&self.inner.problem).clone()
    }

    /// What the speaker plays, for cancelling its echo from a microphone. It follows
    /// [`Self::set_speaker`], so a running microphone need not restart for a new speaker.
    pub fn echo_reference(&self) -> EchoReference {
        self.inner.echo_reference.clone()
    }

    /// Calls `f` whenever any member has a new frame.
    pub fn set_on_frame(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.inner.on_frame) = Some(f);
    }

    /// Member `id`'s media, once anything was expected from them.
    pub fn member(&self, id: &str) -> Option<Arc<RemoteMember>> {
        lock(&self.inner.members).get(id).cloned()
    }

    /// Every member met so far (a departed one only as its counters: see
    /// `RemoteMember::close`).
    pub fn members(&self) -> Vec<(String, Arc<RemoteMember>)> {
        lock(&self.inner.members)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    pub(crate) fn factory(&self) -> SinkFactory {
        let media = self.clone();
        Arc::new(move |id: &str| Arc::new(media.sink(id)) as Arc<dyn RemoteMediaSink>)
    }

    fn sink(&self, id: &str) -> DecodingSink {
        let member = Arc::clone(lock(&self.inner.members).entry(id.to_owned()).or_default());
        let failed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(DECODE_QUEUE);
        let thread = {
            let (member, failed, media) = (Arc::clone(&member), Arc::clone(&failed), self.clone());
            std::thread::Builder::new()
                .name(format!("meshcall-decode-{id}"))
                .spawn(move || decode_loop(&rx, &member, &failed, &media))
                .ok()
        };
        DecodingSink {
            id: id.to_owned(),
            member,
            queue: Some(tx),
            thread,
            failed,
            media: self.clone(),
        }
    }

    fn notify_frame(&self) {
        let f = lock(&self.inner.on_frame).clone();
        if let Some(f) = f {
            f();
        }
    }
}

fn audio_clock(inner: &std::sync::Weak<RemoteInner>, stop: &AtomicBool) {
    let mut out = [0.0f32; FRAME_SAMPLES];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        next += Duration::from_millis(20);
        let Some(inner) = inner.upgrade() else { return };
        // Without a device nothing else pulls from the mix: play it out into nowhere.
        if lock(&inner.output.device).is_none() {
            lock(&inner.output.mix).next_frame(Instant::now(), &mut out);
        }
        for (peer, played, concealed, db) in inner.output.tallies() {
            let Some(m) = lock(&inner.members).get(&peer).cloned() else {
                continue;
            };
            let mut a = lock(&m.audio);
            a.concealed += concealed.saturating_sub(a.last_concealed);
            a.last_concealed = concealed;
            if played > a.last_played {
                let n = played - a.last_played;
                a.last_played = played;
                a.frames += n;
                let linear = if db.is_finite() {
                    10f64.powf(f64::from(db) / 20.0)
                } else {
                    0.0
                };
                a.rms_sum += linear * n as f64;
                a.last = Some(Instant::now());
                a.level = linear;
            } else {
                // Silence after speech fades rather than snapping, so a border does not flicker.
                a.level *= 0.7;
            }
        }
        drop(inner);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn decode_loop(
    queue: &Receiver<AccessUnit>,
    member: &RemoteMember,
    failed: &AtomicBool,
    media: &RemoteMedia,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("no H.264 decoder: {e}");
            return;
        }
    };
    // Ends when the sink (and so the sender) is dropped.
    while let Ok(au) = queue.recv() {
        match decoder.decode(&au.data) {
            Ok(Some(frame)) => {
                member.video_frames.fetch_add(1, Ordering::Relaxed);
                lock(&member.timeline).frame(Instant::now(), frame.width(), frame.height());
                if let Some(sent_ms) = read_time_band(&frame) {
                    let latency = unix_now_ms()
                        .saturating_sub(sent_ms)
                        .min(u64::from(u32::MAX));
                    lock(&member.latencies_ms).push(latency as u32);
                }
                *lock(&member.latest) = Some(Arc::new(frame));
                *lock(&member.latest_at) = Some(Instant::now());
                member.fresh.store(true, Ordering::Relaxed);
                media.notify_frame();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("decode failed: {e}");
                member.decode_failures.fetch_add(1, Ordering::Relaxed);
                failed.store(true, Ordering::Relaxed);
            }
        }
    }
}

struct DecodingSink {
    id: String,
    member: Arc<RemoteMember>,
    queue: Option<SyncSender<AccessUnit>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    media: RemoteMedia,
}

impl RemoteMediaSink for DecodingSink {
    fn video(&self, au: AccessUnit) {
        if let Some(q) = &self.queue
            && let Err(TrySendError::Full(_)) = q.try_send(au)
        {
            // Skipping a unit breaks the references of the ones after it.
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    fn audio(&self, seq: u16, timestamp: u32, payload: Bytes) {
        self.member.audio_packets.fetch_add(1, Ordering::Relaxed);
        self.media
            .inner
            .output
            .push(&self.id, seq, timestamp, payload.to_vec());
    }

    fn take_decoder_failure(&self) -> bool {
        self.failed.swap(false, Ordering::Relaxed)
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.member.video_frames(),
            self.member.audio_packets.load(Ordering::Relaxed),
        )
    }

    fn video_quality(&self) -> Option<VideoQuality> {
        Some(self.member.video_quality())
    }

    fn audio_concealed(&self) -> u64 {
        self.member.audio_concealed()
    }
}

impl Drop for DecodingSink {
    fn drop(&mut self) {
        // Closing the queue ends the decoder thread after at most one access unit.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.media.inner.output.remove(&self.id);
        self.member.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::FrameTime;

    /// A member whose connection ended keeps its counters for the report, but not the
    /// buffers of live media: with the last frame kept, every visitor cost 337 KiB for the
    /// rest of the call.
    #[test]
    fn a_departed_member_keeps_its_numbers_but_not_its_frame() {
        let media = RemoteMedia::new(&Speaker::None);
        let sink = media.sink("a");
        let member = media.member("a").expect("the sink registers the member");
        let frame =
            I420Frame::filled(640, 360, (16, 128, 128), FrameTime::now()).expect("a valid size");
        *lock(&member.latest) = Some(Arc::new(frame));
        let start = Instant::now();
        for (i, ms) in [40u32, 50, 60, 70, 200].into_iter().enumerate() {
            lock(&member.latencies_ms).push(ms);
            lock(&member.timeline).frame(start + Duration::from_millis(33 * i as u64), 640, 360);
        }
        let fps = member.video_quality().fps;
        assert!(member.latest_frame().is_some());

        drop(sink);

        assert!(
            member.latest_frame().is_none(),
            "the last frame outlived the member"
        );
        assert_eq!(member.latency_ms(), Some((60, 200)));
        assert!(lock(&member.latencies_ms).samples.capacity() == 0);
        assert!(lock(&member.timeline).recent.capacity() == 0);
        let quality = member.video_quality();
        assert_eq!(
            (quality.fps, quality.width, quality.height),
            (fps, 640, 360)
        );
    }
}
