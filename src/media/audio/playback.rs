//! Speaker output: one cpal stream playing the mix of every remote peer.
//!
//! The engine pushes RTP payloads per peer ([`Playback::push`]); a playout thread owned by
//! [`Playback`] pulls 20 ms from the jitter buffers whenever the device has used up enough,
//! decodes, mixes, resamples to the device rate and fills a lock-free ring. The cpal callback
//! only copies from that ring, and plays silence when it runs dry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};

use super::devices::{self, Kind};
use super::error::AudioError;
use super::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use super::jitter::{JitterConfig, JitterStats};
use super::remote::RemoteAudio;
use super::resample::StreamResampler;

const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Audio kept queued for the device: enough to ride out scheduler hiccups, little enough
/// not to add noticeable delay on top of the jitter buffer.
const QUEUED: Duration = Duration::from_millis(40);

/// A running speaker. Dropping it stops the stream and joins the playout thread.
pub struct Playback {
    remote: Arc<Mutex<RemoteAudio<String>>>,
    underruns: Arc<AtomicU64>,
    far_end: Option<Receiver<AudioFrame>>,
    device_name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Playback {
    /// Opens the default speaker, or the one whose id or name is `device`.
    pub fn open(device: Option<&str>) -> Result<Self, AudioError> {
        Self::open_mix(
            device,
            Arc::new(Mutex::new(RemoteAudio::new(JitterConfig::default()))),
        )
    }

    /// Like [`Playback::open`], but plays `remote`, whose peers and buffers may already be
    /// live: switching speakers mid-call keeps everyone's audio and counters.
    pub fn open_mix(
        device: Option<&str>,
        remote: Arc<Mutex<RemoteAudio<String>>>,
    ) -> Result<Self, AudioError> {
        let underruns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        // Half a second of reference; unread frames are dropped, never queued without bound.
        let (far_tx, far_rx) = mpsc::sync_channel(25);
        let wanted = device.map(str::to_owned);
        let thread = std::thread::Builder::new()
            .name("meshcall-speaker".into())
            .spawn({
                let (remote, underruns, stop) = (remote.clone(), underruns.clone(), stop.clone());
                move || {
                    let shared = Shared {
                        remote: &remote,
                        far_end: &far_tx,
                        stop: &stop,
                    };
                    run(wanted.as_deref(), &shared, underruns, &ready_tx)
                }
            })
            .map_err(|e| AudioError::Thread(e.to_string()))?;
        let mut playback = Self {
            remote,
            underruns,
            far_end: Some(far_rx),
            device_name: String::new(),
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(name)) => {
                playback.device_name = name;
                Ok(playback)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AudioError::NoSoundSystem {
                detail: "the speaker did not start within 5 s".into(),
            }),
        }
    }

    /// The name of the device in use.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Hands over one received RTP packet (sequence, timestamp, Opus payload) from `peer`.
    pub fn push(
        &self,
        peer: &str,
        seq: u16,
        timestamp: u32,
        payload: Vec<u8>,
        arrival: Instant,
    ) -> Result<(), AudioError> {
        self.remote()
            .push(&peer.to_owned(), seq, timestamp, payload, arrival)
    }

    /// Prepares a peer that joined (pushing also does this).
    pub fn add_peer(&self, peer: &str) -> Result<(), AudioError> {
        self.remote().add_peer(peer.to_owned())
    }

    /// Removes a peer that left, with its buffered audio.
    pub fn remove_peer(&self, peer: &str) {
        self.remote().remove_peer(&peer.to_owned());
    }

    /// Each peer's level in dBFS.
    pub fn levels(&self) -> Vec<(String, f32)> {
        self.remote().levels()
    }

    /// The loudest peer above `threshold_dbfs`.
    pub fn active_speaker(&self, threshold_dbfs: f32) -> Option<String> {
        self.remote().active_speaker(threshold_dbfs)
    }

    /// A peer's jitter-buffer counters.
    pub fn stats(&self, peer: &str) -> Option<JitterStats> {
        self.remote().stats(&peer.to_owned())
    }

    /// The mixed frames as they are handed to the device: the echo canceller's reference.
    /// There is one receiver; later calls return `None`.
    pub fn take_far_end(&mut self) -> Option<Receiver<AudioFrame>> {
        self.far_end.take()
    }

    /// Device callbacks that found too little audio queued and padded with silence.
    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }

    fn remote(&self) -> MutexGuard<'_, RemoteAudio<String>> {
        // A panic elsewhere must not take the speaker down with it: the state is plain data.
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Ready = SyncSender<Result<String, AudioError>>;

/// What the playout thread shares with the handle.
struct Shared<'a> {
    remote: &'a Mutex<RemoteAudio<String>>,
    far_end: &'a SyncSender<AudioFrame>,
    stop: &'a AtomicBool,
}

fn run(wanted: Option<&str>, shared: &Shared<'_>, underruns: Arc<AtomicU64>, ready: &Ready) {
    let (stream, mut ring, rate, name) = match open_stream(wanted, underruns) {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut resampler = match StreamResampler::new(SAMPLE_RATE, rate) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    tracing::info!(device = %name, rate, "speaker started");
    let _ = ready.send(Ok(name));

    let queued = (QUEUED.as_secs_f64() * f64::from(rate)) as usize;
    let mut mix = [0.0_f32; FRAME_SAMPLES];
    let mut out = Vec::with_capacity(rate as usize / 10);
    while !shared.stop.load(Ordering::Relaxed) {
        // The device's consumption paces the jitter buffers: one frame out per 20 ms it played.
        while ring.occupied_len() < queued {
            let now = Instant::now();
            shared
                .remote
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_frame(now, &mut mix);
            let _ = shared.far_end.try_send(AudioFrame {
                samples: mix,
                captured_at: now,
            });
            out.clear();
            if let Err(e) = resampler.process(&mix, &mut out) {
                tracing::warn!("speaker resampling failed: {e}");
                return drop(stream);
            }
            ring.push_slice(&out);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(stream);
}

type Opened = (cpal::Stream, ringbuf::HeapProd<f32>, u32, String);

fn open_stream(wanted: Option<&str>, underruns: Arc<AtomicU64>) -> Result<Opened, AudioError> {
    let chosen = devices::host()?;
    let device = devices::find(&chosen, Kind::Speaker, wanted)?;
    let name = devices::device_name(&device);
    let stream_error = |detail: String| devices::stream_error(&chosen, "speaker", &name, detail);
    let supported = device
        .default_output_config()
        .map_err(|e| stream_error(e.to_string()))?;
    let rate = supported.sample_rate();
    let channels = usize::from(supported.channels()).max(1);
    let format = supported.sample_format();
    let config = devices::low_latency_config(&supported);
    // Room for a quarter second; the playout thread keeps only QUEUED in it.
    let (prod, cons) = HeapRb::<f32>::new(rate as usize / 4).split();
    let stream = match format {
        SampleFormat::F32 => build::<f32>(&device, config, channels, cons, underruns),
        SampleFormat::I16 => build::<i16>(&device, config, channels, cons, underruns),
        SampleFormat::I32 => build::<i32>(&device, config, channels, cons, underruns),
        SampleFormat::U8 => build::<u8>(&device, config, channels, cons, underruns),
        SampleFormat::U16 => build::<u16>(&device, config, channels, cons, underruns),
        other => {
            return Err(AudioError::UnsupportedFormat {
                kind: "speaker",
                name,
                detail: format!("sample format {other}"),
            });
        }
    }
    .map_err(|e| stream_error(e.to_string()))?;
    stream.play().map_err(|e| stream_error(e.to_string()))?;
    Ok((stream, prod, rate, name))
}

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    channels: usize,
    mut ring: ringbuf::HeapCons<f32>,
    underruns: Arc<AtomicU64>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    device.build_output_stream(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let mut short = false;
            for frame in data.chunks_exact_mut(channels) {
                // Silence for whatever is missing: an underrun is a gap, never a loop of old audio.
                let s = ring.try_pop().unwrap_or_else(|| {
                    short = true;
                    0.0
                });
                frame.fill(T::from_sample(s));
            }
            if short {
                underruns.fetch_add(1, Ordering::Relaxed);
            }
        },
        |e| tracing::warn!("speaker stream error: {e}"),
        Some(OPEN_TIMEOUT),
    )
}
