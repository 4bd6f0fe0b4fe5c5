//! Microphone capture: whatever the device delivers becomes 48 kHz mono 20 ms frames.
//!
//! The cpal callback only downmixes and pushes into a lock-free ring; a worker thread owned by
//! [`Capture`] resamples, cuts frames and sends them on a bounded channel. Dropping
//! [`Capture`] stops the stream and joins the thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
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

/// A running microphone. Frames arrive on the receiver returned by [`Capture::open`].
pub struct Capture {
    device_name: String,
    device_rate: u32,
    stop: Arc<AtomicBool>,
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
        let wanted = device.map(str::to_owned);
        // The stream is created and dropped on the worker thread: cpal streams are not Send on
        // every platform, and this way the thread owns everything it touches.
        let thread = std::thread::Builder::new()
            .name("meshcall-mic".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || run(wanted.as_deref(), &frames_tx, &ready_tx, &stop)
            })
            .map_err(|e| AudioError::Thread(e.to_string()))?;
        let mut capture = Self {
            device_name: String::new(),
            device_rate: 0,
            stop,
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

fn run(wanted: Option<&str>, frames: &SyncSender<AudioFrame>, ready: &Ready, stop: &AtomicBool) {
    let opened = open_stream(wanted);
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
    let _ = ready.send(Ok((name, rate)));

    let mut raw = vec![0.0_f32; rate as usize / 10];
    let mut at_48k: Vec<f32> = Vec::with_capacity(SAMPLE_RATE as usize / 10);
    let mut dropped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = ring.pop_slice(&mut raw);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
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
}

type Opened = (cpal::Stream, ringbuf::HeapCons<f32>, u32, String);

fn open_stream(wanted: Option<&str>) -> Result<Opened, AudioError> {
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
    let stream = match format {
        SampleFormat::F32 => build::<f32>(&device, config, channels, prod),
        SampleFormat::I16 => build::<i16>(&device, config, channels, prod),
        SampleFormat::I32 => build::<i32>(&device, config, channels, prod),
        SampleFormat::U8 => build::<u8>(&device, config, channels, prod),
        SampleFormat::U16 => build::<u16>(&device, config, channels, prod),
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

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    channels: usize,
    mut ring: ringbuf::HeapProd<f32>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
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
        |e| tracing::warn!("microphone stream error: {e}"),
        Some(OPEN_TIMEOUT),
    )
}
