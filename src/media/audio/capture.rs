//! Microphone capture: whatever the device delivers becomes 48 kHz mono 20 ms frames.
//!
//! The cpal callback only downmixes and pushes into a lock-free ring; a worker thread owned by
//! [`Capture`] resamples, cuts frames and sends them on a bounded channel. Dropping
//! [`Capture`] stops the stream and joins the thread.
//!
//! A microphone that fails mid-call ends the channel, and [`Capture::take_failure`] says
//! why: the backend reported a fatal stream error, or the device went silent — not a
//! sample for [`STALL`] — which is the only sign some failures give (a suspended source).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Producer, Split};

use super::devices::{self, Kind};
use super::error::AudioError;
use super::frame::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
use super::resample::StreamResampler;

/// How long to wait for a sound server to open a stream before giving up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// No samples for this long from a running stream means the device is gone. A working
/// device delivers every few milliseconds, silence included; this leaves room for a
/// loaded machine's scheduling hiccups.
pub const STALL: Duration = Duration::from_secs(2);

/// Why the microphone stopped, written by the stream's error callback or the worker.
type FailureSlot = Arc<Mutex<Option<AudioError>>>;

/// A running microphone. Frames arrive on the receiver returned by [`Capture::open`].
pub struct Capture {
    device_name: String,
    device_rate: u32,
    stop: Arc<AtomicBool>,
    failure: FailureSlot,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Opens the default microphone, or the one whose id or name is `device`. The channel
    /// holds `capacity` frames; when the consumer falls behind, new frames are dropped.
    pub fn open(
        device: Option<&str>,
        capacity: usize,
    ) -> Result<(Self, Receiver<AudioFrame>), AudioError> {
        let (frames_tx, frames_rx) = mpsc::sync_channel(capacity.max(1));
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let failure = FailureSlot::default();
        let wanted = device.map(str::to_owned);
        // The stream is created and dropped on the worker thread: cpal streams are not Send on
        // every platform, and this way the thread owns everything it touches.
        let thread = std::thread::Builder::new()
            .name("meshcall-mic".into())
            .spawn({
                let (stop, failure) = (Arc::clone(&stop), Arc::clone(&failure));
                move || {
                    let shared = Shared {
                        stop: &stop,
                        failure: &failure,
                    };
                    run(wanted.as_deref(), &frames_tx, &ready_tx, &shared);
                }
            })
            .map_err(|e| AudioError::Thread(e.to_string()))?;
        let mut capture = Self {
            device_name: String::new(),
            device_rate: 0,
            stop,
            failure,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok((name, rate))) => {
                capture.device_name = name;
                capture.device_rate = rate;
                Ok((capture, frames_rx))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AudioError::NoSoundSystem {
                detail: "the microphone did not start within 5 s".into(),
            }),
        }
    }

    /// The name of the device in use.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The device's own sample rate, before conversion to 48 kHz.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Why the microphone stopped on its own (unplugged, stream killed, gone silent), once
    /// its frame channel has ended; reported once.
    pub fn take_failure(&self) -> Option<AudioError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Ready = SyncSender<Result<(String, u32), AudioError>>;

/// What the worker shares with the handle.
struct Shared<'a> {
    stop: &'a AtomicBool,
    failure: &'a FailureSlot,
}

impl Shared<'_> {
    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Records why the device stopped, unless an earlier reason is already there.
    fn fail(&self, error: AudioError) {
        record(self.failure, error);
    }
}

fn record(slot: &Mutex<Option<AudioError>>, error: AudioError) {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(error);
    }
}

/// Whether a stream error means the stream is dead: glitches and reroutes are not.
fn is_fatal(kind: cpal::ErrorKind) -> bool {
    !matches!(
        kind,
        cpal::ErrorKind::Xrun | cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied
    )
}

fn run(wanted: Option<&str>, frames: &SyncSender<AudioFrame>, ready: &Ready, shared: &Shared<'_>) {
    let opened = open_stream(wanted, shared.failure);
    let (stream, mut ring, rate, name) = match opened {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut resampler = match StreamResampler::new(rate, SAMPLE_RATE) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    tracing::info!(device = %name, rate, "microphone started");
    let _ = ready.send(Ok((name.clone(), rate)));

    let mut raw = vec![0.0_f32; rate as usize / 10];
    let mut at_48k: Vec<f32> = Vec::with_capacity(SAMPLE_RATE as usize / 10);
    let mut dropped = 0u64;
    let mut last_samples = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.failed() {
            break;
        }
        let n = ring.pop_slice(&mut raw);
        if n == 0 {
            if last_samples.elapsed() > STALL {
                tracing::warn!(device = %name, "microphone delivered nothing for {STALL:?}");
                shared.fail(AudioError::DeviceLost {
                    kind: "microphone",
                    name: name.clone(),
                    detail: format!("no sound from it for {} s", STALL.as_secs()),
                });
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        last_samples = Instant::now();
        if let Err(e) = resampler.process(&raw[..n], &mut at_48k) {
            tracing::warn!("microphone resampling failed: {e}");
            break;
        }
        let now = Instant::now();
        let mut start = 0;
        while at_48k.len() - start >= FRAME_SAMPLES {
            // The newest sample is roughly "now"; older ones are as old as what follows them.
            let behind = (at_48k.len() - start) as u32;
            let age = FRAME_DURATION * behind / FRAME_SAMPLES as u32;
            let captured_at = now.checked_sub(age).unwrap_or(now);
            let frame = AudioFrame::from_slice(&at_48k[start..start + FRAME_SAMPLES], captured_at)
                .expect("slice is exactly one frame long");
            start += FRAME_SAMPLES;
            match frames.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        tracing::debug!(dropped, "microphone consumer behind; frames dropped");
                    }
                }
                Err(TrySendError::Disconnected(_)) => return drop(stream),
            }
        }
        at_48k.drain(..start);
    }
    drop(stream);
    // `frames` ends when this returns: the reason, if any, is in the slot by then.
}

type Opened = (cpal::Stream, ringbuf::HeapCons<f32>, u32, String);

fn open_stream(wanted: Option<&str>, failure: &FailureSlot) -> Result<Opened, AudioError> {
    let chosen = devices::host()?;
    let device = devices::find(&chosen, Kind::Microphone, wanted)?;
    let name = devices::device_name(&device);
    let stream_error = |detail: String| devices::stream_error(&chosen, "microphone", &name, detail);
    let supported = device
        .default_input_config()
        .map_err(|e| stream_error(e.to_string()))?;
    let rate = supported.sample_rate();
    let channels = usize::from(supported.channels()).max(1);
    let format = supported.sample_format();
    let config = devices::low_latency_config(&supported);
    // One second of mono audio: the worker drains it every few ms, so this only fills if the
    // worker stalls, and then the newest audio is dropped, never blocking the callback.
    let (prod, cons) = HeapRb::<f32>::new(rate as usize).split();
    let on_error = {
        let (failure, name) = (Arc::clone(failure), name.clone());
        move |e: cpal::Error| {
            tracing::warn!("microphone stream error: {e}");
            if is_fatal(e.kind()) {
                record(
                    &failure,
                    AudioError::DeviceLost {
                        kind: "microphone",
                        name: name.clone(),
                        detail: e.to_string(),
                    },
                );
            }
        }
    };
    let stream = match format {
        SampleFormat::F32 => build::<f32, _>(&device, config, channels, prod, on_error),
        SampleFormat::I16 => build::<i16, _>(&device, config, channels, prod, on_error),
        SampleFormat::I32 => build::<i32, _>(&device, config, channels, prod, on_error),
        SampleFormat::U8 => build::<u8, _>(&device, config, channels, prod, on_error),
        SampleFormat::U16 => build::<u16, _>(&device, config, channels, prod, on_error),
        other => {
            return Err(AudioError::UnsupportedFormat {
                kind: "microphone",
                name,
                detail: format!("sample format {other}"),
            });
        }
    }
    .map_err(|e| stream_error(e.to_string()))?;
    stream.play().map_err(|e| stream_error(e.to_string()))?;
    Ok((stream, cons, rate, name))
}

fn build<T, E>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    channels: usize,
    mut ring: ringbuf::HeapProd<f32>,
    on_error: E,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
    E: FnMut(cpal::Error) + Send + 'static,
{
    let scale = 1.0 / channels as f32;
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            // Downmix by averaging; no allocation, no lock. A full ring drops samples.
            for frame in data.chunks_exact(channels) {
                let sum: f32 = frame.iter().map(|s| f32::from_sample(*s)).sum();
                let _ = ring.try_push(sum * scale);
            }
        },
        on_error,
        Some(OPEN_TIMEOUT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_kill_the_stream_are_failures() {
        assert!(!is_fatal(cpal::ErrorKind::Xrun));
        assert!(!is_fatal(cpal::ErrorKind::DeviceChanged));
        assert!(is_fatal(cpal::ErrorKind::DeviceNotAvailable));
        assert!(is_fatal(cpal::ErrorKind::StreamInvalidated));
    }

    #[test]
    fn the_first_reason_is_kept() {
        let slot = FailureSlot::default();
        let lost = |detail: &str| AudioError::DeviceLost {
            kind: "microphone",
            name: "m".into(),
            detail: detail.into(),
        };
        record(&slot, lost("first"));
        record(&slot, lost("second"));
        let kept = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        assert!(kept.is_some_and(|e| e.to_string().contains("first")));
    }
}
