//! What we receive: per member, H.264 decoded on a thread of its own with only the latest
//! frame kept for consumers, and Opus through that member's jitter buffer into the mixer,
//! played on a speaker or, headless, on a 20 ms clock of our own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::remote_member::{Latencies, RemoteMember, VideoQuality, VideoTimeline};
use super::{RemoteMediaSink, SinkFactory, lock};
use crate::media::audio::jitter::JitterConfig;
use crate::media::audio::playback::Playback;
use crate::media::audio::remote::RemoteAudio;
use crate::media::audio::{AudioFrame, FRAME_SAMPLES};
use crate::media::video::{AccessUnit, H264Decoder, read_time_band, unix_now_ms};

/// Access units waiting for one member's decoder. H.264 frames depend on each other, so
/// none may be skipped; if the decoder falls this far behind, drop and ask for a keyframe.
const DECODE_QUEUE: usize = 30;

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
    /// Count complete access units as frames instead of decoding them (load tests).
    count_only: AtomicBool,
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
            count_only: AtomicBool::new(false),
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

    /// Counts every complete access unit as a frame instead of decoding it (`meshcall join
    /// --count-only`: many members on few cores). No pictures, sizes or latencies then.
    pub fn set_count_only(&self, on: bool) {
        self.inner.count_only.store(on, Ordering::Relaxed);
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
                .spawn(move || decode_loop(&rx, &Target::camera(&member), &failed, &media))
                .ok()
        };
        DecodingSink {
            id: id.to_owned(),
            member,
            queue: Some(tx),
            thread,
            failed,
            media: self.clone(),
            screen: Mutex::new(None),
            screen_failed: Arc::new(AtomicBool::new(false)),
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

/// Where one decoder thread puts its frames and numbers: a member's camera or screen.
struct Target<'a> {
    frames: &'a std::sync::atomic::AtomicU64,
    failures: &'a std::sync::atomic::AtomicU64,
    timeline: &'a Mutex<VideoTimeline>,
    latencies: &'a Mutex<Latencies>,
    latest: &'a Mutex<Option<Arc<crate::media::video::I420Frame>>>,
    fresh: &'a AtomicBool,
    /// The camera's only: when their last video frame came.
    latest_at: Option<&'a Mutex<Option<Instant>>>,
}

impl<'a> Target<'a> {
    fn camera(m: &'a RemoteMember) -> Self {
        Self {
            frames: &m.video_frames,
            failures: &m.decode_failures,
            timeline: &m.timeline,
            latencies: &m.latencies_ms,
            latest: &m.latest,
            fresh: &m.fresh,
            latest_at: Some(&m.latest_at),
        }
    }

    fn screen(m: &'a RemoteMember) -> Self {
        Self {
            frames: &m.screen.frames,
            failures: &m.screen.decode_failures,
            timeline: &m.screen.timeline,
            latencies: &m.screen.latencies_ms,
            latest: &m.screen.latest,
            fresh: &m.screen.fresh,
            latest_at: None,
        }
    }
}

fn decode_loop(
    queue: &Receiver<AccessUnit>,
    member: &Target<'_>,
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
        if media.inner.count_only.load(Ordering::Relaxed) {
            member.frames.fetch_add(1, Ordering::Relaxed);
            lock(member.timeline).frame(Instant::now(), 0, 0);
            continue;
        }
        match decoder.decode(&au.data) {
            Ok(Some(frame)) => {
                member.frames.fetch_add(1, Ordering::Relaxed);
                lock(member.timeline).frame(Instant::now(), frame.width(), frame.height());
                if let Some(sent_ms) = read_time_band(&frame) {
                    let latency = unix_now_ms()
                        .saturating_sub(sent_ms)
                        .min(u64::from(u32::MAX));
                    lock(member.latencies).push(latency as u32);
                }
                *lock(member.latest) = Some(Arc::new(frame));
                if let Some(at) = member.latest_at {
                    *lock(at) = Some(Instant::now());
                }
                member.fresh.store(true, Ordering::Relaxed);
                media.notify_frame();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("decode failed: {e}");
                member.failures.fetch_add(1, Ordering::Relaxed);
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
    /// Their share's decoder, started by its first access unit (most members never share).
    screen: Mutex<Option<ScreenDecoder>>,
    screen_failed: Arc<AtomicBool>,
}

/// A member's screen-share decoder thread and its queue.
struct ScreenDecoder {
    queue: SyncSender<AccessUnit>,
    thread: JoinHandle<()>,
}

impl DecodingSink {
    fn start_screen_decoder(&self) -> Option<ScreenDecoder> {
        let (queue, rx) = sync_channel(DECODE_QUEUE);
        let (member, failed, media) = (
            Arc::clone(&self.member),
            Arc::clone(&self.screen_failed),
            self.media.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("meshcall-screen-{}", self.id))
            .spawn(move || decode_loop(&rx, &Target::screen(&member), &failed, &media));
        match thread {
            Ok(thread) => Some(ScreenDecoder { queue, thread }),
            Err(e) => {
                tracing::warn!("cannot start the screen decoder: {e}");
                None
            }
        }
    }
}

impl RemoteMediaSink for DecodingSink {
    fn screen(&self, au: AccessUnit) {
        let mut screen = lock(&self.screen);
        if screen.is_none() {
            *screen = self.start_screen_decoder();
        }
        if let Some(d) = screen.as_ref()
            && let Err(TrySendError::Full(_)) = d.queue.try_send(au)
        {
            self.screen_failed.store(true, Ordering::Relaxed);
        }
    }

    fn take_screen_decoder_failure(&self) -> bool {
        self.screen_failed.swap(false, Ordering::Relaxed)
    }

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
        if let Some(ScreenDecoder { queue, thread }) = lock(&self.screen).take() {
            drop(queue);
            let _ = thread.join();
        }
        self.media.inner.output.remove(&self.id);
        self.member.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::{FrameTime, I420Frame};

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
