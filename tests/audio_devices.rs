//! Real sound devices through a PulseAudio server with virtual `mic` and `speaker` sinks
//! (see `scripts/lib/pulse.sh`). Without a reachable server each test is skipped, saying why
//! (a failure under CI; see `common::skip`).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use meshcall::media::audio::analysis::{goertzel_amplitude, zero_crossing_frequency};
use meshcall::media::audio::capture::Capture;
use meshcall::media::audio::codec::{DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS_PERCENT, OpusEncoder};
use meshcall::media::audio::devices;
use meshcall::media::audio::echo::EchoCanceller;
use meshcall::media::audio::level::rms_dbfs;
use meshcall::media::audio::playback::Playback;
use meshcall::media::audio::{AudioError, FRAME_SAMPLES};

mod common;

use common::pulse::{load_module, load_null_sink, skip_reason};

macro_rules! require_pulse {
    () => {
        if let Some(reason) = skip_reason() {
            common::skip::skip_or_fail(&reason);
            return;
        }
    };
}

/// Kills and reaps a helper process however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tone_s16(freq: f32, seconds: f32) -> Vec<u8> {
    let n = (48_000.0 * seconds) as usize;
    (0..n)
        .flat_map(|i| {
            let s = 0.5 * (std::f32::consts::TAU * freq * i as f32 / 48_000.0).sin();
            ((s * 32767.0) as i16).to_le_bytes()
        })
        .collect()
}

/// Median of the zero-crossing frequency over 100 ms pieces: one dropout (a scheduling hiccup
/// on a loaded machine) spoils one piece, not the whole measurement.
fn median_frequency(samples: &[f32]) -> f32 {
    let mut f: Vec<f32> = samples
        .chunks_exact(4800)
        .filter_map(|c| zero_crossing_frequency(c, 48_000))
        .collect();
    assert!(!f.is_empty(), "no periodic signal found");
    f.sort_by(f32::total_cmp);
    f[f.len() / 2]
}

fn s16_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

#[test]
fn lists_the_virtual_devices_and_names_a_missing_one() {
    require_pulse!();
    let list = devices::list().unwrap();
    let mic_ids: Vec<_> = list.microphones.iter().map(|d| d.id.as_str()).collect();
    let speaker_ids: Vec<_> = list.speakers.iter().map(|d| d.id.as_str()).collect();
    assert!(mic_ids.contains(&"mic.monitor"), "{list:?}");
    assert!(speaker_ids.contains(&"speaker"), "{list:?}");
    let default_speaker = list.speakers.iter().find(|d| d.is_default).unwrap();
    assert_eq!(default_speaker.id, "speaker");
    let default_mic = list.microphones.iter().find(|d| d.is_default).unwrap();
    assert_eq!(default_mic.id, "mic.monitor");

    let err = Capture::open(Some("no-such-microphone"), 4).err().unwrap();
    assert!(matches!(err, AudioError::DeviceNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-microphone"));
    let err = Playback::open(Some("no-such-speaker")).err().unwrap();
    assert!(matches!(err, AudioError::DeviceNotFound { .. }), "{err}");
}

#[test]
fn tone_into_virtual_mic_is_captured_coded_played_and_heard_on_the_speaker() {
    require_pulse!();
    let dir = std::env::temp_dir().join(format!("meshcall-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tone_file = dir.join("tone.raw");
    std::fs::File::create(&tone_file)
        .unwrap()
        .write_all(&tone_s16(440.0, 6.0))
        .unwrap();

    // The app's side: default microphone (mic.monitor) and default speaker (speaker).
    let (capture, frames) = Capture::open(None, 50).unwrap();
    let playback = Playback::open(None).unwrap();
    eprintln!(
        "mic: {}, speaker: {}",
        capture.device_name(),
        playback.device_name()
    );

    let mut recorder = Reaped(
        Command::new("parecord")
            .args([
                "--device=speaker.monitor",
                "--raw",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=100",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut recorded_out = recorder.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = recorded_out.read_to_end(&mut bytes);
        bytes
    });
    let _player = Reaped(
        Command::new("pacat")
            .args([
                "-p",
                "--latency-msec=100",
                "--device=mic",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
            ])
            .arg(&tone_file)
            .spawn()
            .unwrap(),
    );

    // Microphone -> Opus -> (as if over the network) -> jitter buffer -> mixer -> speaker.
    let mut encoder = OpusEncoder::new(DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS_PERCENT).unwrap();
    let started = Instant::now();
    let mut seq: u16 = 1000;
    let mut ts: u32 = 5000;
    let mut loud_frames = 0;
    while started.elapsed() < Duration::from_secs(5) {
        match frames.recv_timeout(Duration::from_millis(500)) {
            Ok(frame) => {
                if frame.samples.iter().any(|s| s.abs() > 0.1) {
                    loud_frames += 1;
                }
                let packet = encoder.encode(&frame.samples).unwrap().to_vec();
                playback
                    .push("alice", seq, ts, packet, Instant::now())
                    .unwrap();
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(FRAME_SAMPLES as u32);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("capture stopped"),
        }
    }
    let levels = playback.levels();
    let underruns = playback.underruns();
    drop(recorder);
    let recorded = s16_to_f32(&reader.join().unwrap());
    drop(capture);
    drop(playback);
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        loud_frames > 50,
        "the microphone heard the tone in only {loud_frames} frames"
    );
    let (_, alice_db) = levels.iter().find(|(p, _)| p == "alice").unwrap();
    assert!(*alice_db > -20.0, "alice's level {alice_db} dBFS");

    // Skip the silence before audio made it through (0.4–1.7 s is normal here).
    let onset = recorded
        .iter()
        .position(|s| s.abs() > 0.1)
        .unwrap_or_else(|| panic!("speaker stayed silent: {} samples recorded", recorded.len()));
    let start = onset + 4800; // past any fade-in
    assert!(
        recorded.len() >= start + 48_000,
        "only {:.2} s of tone recorded after the onset at {:.2} s",
        (recorded.len().saturating_sub(start)) as f32 / 48_000.0,
        onset as f32 / 48_000.0
    );
    let window = &recorded[start..start + 48_000];
    let freq = median_frequency(window);
    assert!((freq - 440.0).abs() < 5.0, "speaker played {freq} Hz");
    let at_440 = goertzel_amplitude(window, 48_000, 440.0);
    let at_1k = goertzel_amplitude(window, 48_000, 1000.0);
    assert!(
        at_440 > 0.2 && at_440 > 20.0 * at_1k,
        "440 Hz: {at_440}, 1 kHz: {at_1k}"
    );
    eprintln!(
        "onset {:.2} s, measured {freq:.1} Hz, amplitude {at_440:.2}, speaker underruns {underruns}",
        onset as f32 / 48_000.0
    );
}

#[test]
fn named_44k1_stereo_microphone_is_resampled_to_48k_mono_frames() {
    require_pulse!();
    let sink = format!("mic44k{}", std::process::id());
    let _module = load_module(
        "module-null-sink",
        &[&format!("sink_name={sink}"), "rate=44100", "channels=2"],
    );

    let (capture, frames) = Capture::open(Some(&format!("{sink}.monitor")), 100).unwrap();
    // Otherwise this test would not exercise the resampler at all.
    assert_eq!(capture.device_rate(), 44_100);
    // 1 kHz at 44.1 kHz, stereo: whatever comes out must be 48 kHz mono to read 1 kHz.
    let tone: Vec<u8> = (0..44_100 * 4)
        .flat_map(|i| {
            let s = 0.4 * (std::f32::consts::TAU * 1000.0 * i as f32 / 44_100.0).sin();
            let b = ((s * 32767.0) as i16).to_le_bytes();
            [b[0], b[1], b[0], b[1]]
        })
        .collect();
    let mut player = Reaped(
        Command::new("pacat")
            .args([
                "-p",
                "--latency-msec=100",
                &format!("--device={sink}"),
                "--format=s16le",
                "--rate=44100",
                "--channels=2",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = player.0.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&tone);
    });

    let mut heard = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) && heard.len() < 48_000 {
        if let Ok(frame) = frames.recv_timeout(Duration::from_millis(500)) {
            // Skip the leading silence before the tone reaches the monitor.
            if !heard.is_empty() || frame.samples.iter().any(|s| s.abs() > 0.1) {
                heard.extend_from_slice(&frame.samples);
            }
        }
    }
    drop(capture);
    drop(player);
    let _ = feeder.join();
    assert!(
        heard.len() >= 24_000,
        "only {} samples of tone captured",
        heard.len()
    );
    let window = &heard[4800..];
    let freq = median_frequency(window);
    assert!((freq - 1000.0).abs() < 10.0, "captured {freq} Hz");
    let amp = goertzel_amplitude(window, 48_000, 1000.0);
    assert!((amp - 0.4).abs() < 0.08, "amplitude {amp}");
}

#[test]
fn speaker_echo_picked_up_by_the_microphone_is_cancelled() {
    require_pulse!();
    // A room of our own: what plays on `spk` is heard by `room` (whose monitor is the mic)
    // about 40 ms later. Private sinks keep the other tests' default devices untouched.
    let id = std::process::id();
    let (spk, room) = (format!("aecspk{id}"), format!("aecroom{id}"));
    let _spk = load_null_sink(&spk);
    let _room = load_null_sink(&room);
    let _loopback = load_module(
        "module-loopback",
        &[
            &format!("source={spk}.monitor"),
            &format!("sink={room}"),
            "latency_msec=40",
        ],
    );

    let mut playback = Playback::open(Some(&spk)).unwrap();
    let far_end = playback.take_far_end().unwrap();
    assert!(playback.take_far_end().is_none());
    let (capture, mic) = Capture::open(Some(&format!("{room}.monitor")), 50).unwrap();
    let mut aec = EchoCanceller::new(150).unwrap();
    let mut encoder = OpusEncoder::new(64_000, 0).unwrap();

    // The remote peer talks in bursts (noise syllables, 200 ms on, 100 ms off).
    let mut seed: u32 = 12345;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.6 - 0.3
    };
    let (mut raw, mut cleaned) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n: u32 = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let Ok(mut frame) = mic.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        // One far-end packet per captured frame keeps both sides at the same pace.
        let talking = (n / 10) % 3 != 2;
        let far: [f32; FRAME_SAMPLES] =
            std::array::from_fn(|_| if talking { noise() } else { 0.0 });
        let packet = encoder.encode(&far).unwrap().to_vec();
        playback
            .push("bob", n as u16, n * 960, packet, Instant::now())
            .unwrap();
        n += 1;

        while let Ok(reference) = far_end.try_recv() {
            aec.render(&reference.samples).unwrap();
        }
        let before = frame.samples;
        aec.process(&mut frame.samples).unwrap();
        if started.elapsed() > Duration::from_secs(6) {
            raw.extend_from_slice(&before);
            cleaned.extend_from_slice(&frame.samples);
        }
    }
    drop(capture);
    drop(playback);
    let (echo, residual) = (rms_dbfs(&raw), rms_dbfs(&cleaned));
    eprintln!("echo at the microphone {echo:.1} dBFS, after AEC {residual:.1} dBFS");
    // The loopback really carried the far end to the microphone...
    assert!(echo > -30.0, "microphone heard only {echo:.1} dBFS of echo");
    // ...and the canceller removed most of it: 10 dB is 90 % of the echo's energy. Idle runs
    // reach about 19 dB; real-time dropouts on a loaded machine have given 14.6.
    assert!(
        residual < echo - 10.0,
        "echo {echo:.1} dBFS -> {residual:.1} dBFS"
    );
}

/// Frames the speaker hands to `reference` from now: counted until `enough` came or
/// `within` passed (a device takes a moment to start pulling).
fn played_frames(
    reference: &meshcall::media::pipeline::EchoReference,
    enough: usize,
    within: Duration,
) -> usize {
    reference.drain(|_| {});
    let mut n = 0;
    let deadline = Instant::now() + within;
    while n < enough && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        reference.drain(|_| n += 1);
    }
    n
}

#[test]
fn a_call_moves_between_speakers_and_the_echo_reference_follows() {
    use meshcall::media::pipeline::{RemoteMedia, Speaker};
    require_pulse!();
    let remote = RemoteMedia::new(&Speaker::Named("speaker".into()));
    assert_eq!(remote.problem(), None);
    // Taken once, as a running microphone does; it must keep working across switches.
    let reference = remote.echo_reference();
    let within = Duration::from_secs(3);
    let first = played_frames(&reference, 25, within);
    assert!(
        first >= 25,
        "{first} reference frames from the first speaker"
    );
    remote.set_speaker(&Speaker::None).unwrap();
    let none = played_frames(&reference, 1, Duration::from_millis(500));
    assert_eq!(none, 0, "no device plays now");
    remote.set_speaker(&Speaker::Named("mic".into())).unwrap();
    let second = played_frames(&reference, 25, within);
    assert!(
        second >= 25,
        "{second} reference frames from the new speaker"
    );
    // A speaker that is not there: a clear error, kept for the window to show.
    let err = remote
        .set_speaker(&Speaker::Named("no-such-speaker".into()))
        .unwrap_err();
    assert!(err.contains("no-such-speaker"), "{err}");
    assert_eq!(remote.problem(), Some(err));
}
