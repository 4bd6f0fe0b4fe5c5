//! A synthetic microphone: a sine tone, optionally as short beeps at known times, so calls,
//! tests and latency measurements run without any device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::AudioError;
use super::frame::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};

/// How the tone is switched on and off.
#[derive(Debug, Clone, PartialEq)]
pub enum TonePattern {
    /// Sounds all the time.
    Continuous,
    /// Sounds for `length` at the start of every `period`; silent otherwise.
    Beeps {
        /// Time from one beep's start to the next.
        period: Duration,
        /// How long each beep lasts.
        length: Duration,
    },
}

/// What the tone sounds like.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneConfig {
    /// Frequency in Hz.
    pub frequency: f32,
    /// Peak amplitude in [0, 1].
    pub amplitude: f32,
    /// Continuous or beeping.
    pub pattern: TonePattern,
}

impl Default for ToneConfig {
    fn default() -> Self {
        Self {
            frequency: 440.0,
            amplitude: 0.5,
            pattern: TonePattern::Continuous,
        }
    }
}

/// Produces tone frames on demand; the synchronous half, used directly by tests.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    config: ToneConfig,
    sample_index: u64,
}

impl ToneGenerator {
    /// A generator positioned at sample 0.
    pub fn new(config: ToneConfig) -> Self {
        Self {
            config,
            sample_index: 0,
        }
    }

    /// The next 20 ms, stamped `captured_at`.
    pub fn next_frame(&mut self, captured_at: Instant) -> AudioFrame {
        let mut frame = AudioFrame::silence(captured_at);
        let rate = f64::from(SAMPLE_RATE);
        let step = std::f64::consts::TAU * f64::from(self.config.frequency) / rate;
        for (i, s) in frame.samples.iter_mut().enumerate() {
            let n = self.sample_index + i as u64;
            if self.is_sounding(n) {
                // Phase from the absolute index: no drift however long the tone runs.
                let phase = (step * n as f64) % std::f64::consts::TAU;
                *s = self.config.amplitude * phase.sin() as f32;
            }
        }
        self.sample_index += FRAME_SAMPLES as u64;
        frame
    }

    /// Samples produced so far.
    pub fn sample_index(&self) -> u64 {
        self.sample_index
    }

    fn is_sounding(&self, n: u64) -> bool {
        match &self.config.pattern {
            TonePattern::Continuous => true,
            TonePattern::Beeps { period, length } => {
                let period = duration_samples(*period).max(1);
                n % period < duration_samples(*length)
            }
        }
    }
}

fn duration_samples(d: Duration) -> u64 {
    (d.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64
}

/// A tone delivered in real time, one frame every 20 ms, on a thread it owns.
/// Dropping it stops and joins the thread.
pub struct ToneSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ToneSource {
    /// Starts the thread; frames arrive on the returned channel, which holds `capacity` frames.
    /// When the consumer falls behind, new frames are dropped rather than queued forever.
    pub fn start(
        config: ToneConfig,
        capacity: usize,
    ) -> Result<(Self, Receiver<AudioFrame>), AudioError> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("meshcall-tone".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || run(ToneGenerator::new(config), &tx, &stop)
            })
            .map_err(|e| AudioError::Thread(e.to_string()))?;
        Ok((
            Self {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }
}

impl Drop for ToneSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The loop sleeps at most one frame, so this returns within ~20 ms.
            let _ = thread.join();
        }
    }
}

fn run(mut generator: ToneGenerator, tx: &SyncSender<AudioFrame>, stop: &AtomicBool) {
    let start = Instant::now();
    let mut frames: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Deadlines from the start, not "sleep 20 ms", so scheduling delays do not accumulate.
        let due = start + FRAME_DURATION * frames;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match tx.try_send(generator.next_frame(due)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::trace!("tone: consumer behind, frame dropped"),
            Err(TrySendError::Disconnected(_)) => return,
        }
        frames = frames.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_sound_only_inside_their_window() {
        let mut tone = ToneGenerator::new(ToneConfig {
            pattern: TonePattern::Beeps {
                period: Duration::from_millis(100),
                length: Duration::from_millis(20),
            },
            ..ToneConfig::default()
        });
        let t = Instant::now();
        let frames: Vec<_> = (0..10).map(|_| tone.next_frame(t)).collect();
        let loud = |f: &AudioFrame| f.samples.iter().any(|s| s.abs() > 0.1);
        // Frames 0 and 5 hold the beeps at 0 ms and 100 ms; the rest is silent.
        let pattern: Vec<bool> = frames.iter().map(loud).collect();
        assert_eq!(
            pattern,
            [
                true, false, false, false, false, true, false, false, false, false
            ]
        );
    }

    #[test]
    fn real_time_source_delivers_paced_frames_and_stops_on_drop() {
        let started = Instant::now();
        let (source, rx) = ToneSource::start(ToneConfig::default(), 16).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        let mut last = first.clone();
        for _ in 0..9 {
            last = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        }
        // Ten frames are stamped 9 × 20 ms apart: paced by the clock, not as fast as possible.
        assert_eq!(last.captured_at - first.captured_at, FRAME_DURATION * 9);
        assert!(
            started.elapsed() >= Duration::from_millis(170),
            "{:?}",
            started.elapsed()
        );
        drop(source);
        // After the drop the thread is gone, so the channel drains and then disconnects.
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(50)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
