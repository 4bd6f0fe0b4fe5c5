//! Cost of the audio hot path per 20 ms frame: Opus encode, Opus decode, jitter-buffer
//! push + pull, a 4-peer receive tick, echo cancellation, noise suppression. Plain timing loops (no harness): `cargo bench --bench audio_codecs`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use meshcall::media::audio::FRAME_SAMPLES;
use meshcall::media::audio::codec::{
    DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS_PERCENT, OpusDecoder, OpusEncoder,
};
use meshcall::media::audio::denoise::NoiseSuppressor;
use meshcall::media::audio::echo::EchoCanceller;
use meshcall::media::audio::jitter::{JitterBuffer, JitterConfig};
use meshcall::media::audio::remote::RemoteAudio;
use meshcall::media::audio::tone::{ToneConfig, ToneGenerator};

const FRAMES: usize = 5_000; // 100 s of audio

fn per_frame(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let t0 = Instant::now();
    let mut tone = ToneGenerator::new(ToneConfig::default());
    let frames: Vec<_> = (0..FRAMES).map(|_| tone.next_frame(t0).samples).collect();

    let mut encoder = OpusEncoder::new(DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS_PERCENT).unwrap();
    let start = Instant::now();
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| black_box(encoder.encode(f).unwrap().to_vec()))
        .collect();
    let encode = per_frame(start.elapsed(), FRAMES);

    // The same without FEC: shows what the loss protection costs.
    let mut plain = OpusEncoder::new(DEFAULT_BITRATE, 0).unwrap();
    let start = Instant::now();
    for f in &frames {
        black_box(plain.encode(f).unwrap().len());
    }
    let encode_plain = per_frame(start.elapsed(), FRAMES);

    let mut decoder = OpusDecoder::new().unwrap();
    let mut out = [0.0_f32; FRAME_SAMPLES];
    let start = Instant::now();
    for p in &packets {
        decoder.decode(black_box(p), &mut out).unwrap();
        black_box(&out);
    }
    let decode = per_frame(start.elapsed(), FRAMES);

    let mut jitter = JitterBuffer::new(JitterConfig::default());
    let n = 200_000;
    let start = Instant::now();
    for i in 0..n {
        let seq = i as u16;
        let at = t0 + Duration::from_millis(20 * i as u64);
        jitter.push(
            seq,
            (i as u32).wrapping_mul(960),
            packets[i % FRAMES].clone(),
            at,
        );
        black_box(jitter.pull(at));
    }
    let jitter_cost = per_frame(start.elapsed(), n);

    // A whole receive tick for four peers: jitter buffer, decode, mix.
    let mut remote = RemoteAudio::new(JitterConfig::default());
    let peers = ["a", "b", "c", "d"];
    let ticks = 2_000;
    let start = Instant::now();
    for i in 0..ticks {
        let at = t0 + Duration::from_millis(20 * i as u64);
        for peer in &peers {
            let seq = i as u16;
            remote
                .push(peer, seq, (i as u32) * 960, packets[i % FRAMES].clone(), at)
                .unwrap();
        }
        remote.next_frame(at, &mut out);
        black_box(&out);
    }
    let tick4 = per_frame(start.elapsed(), ticks);

    // Microphone processing: echo cancellation (with a far-end frame) and noise suppression.
    let mut aec = EchoCanceller::new(100).unwrap();
    let n_proc = 1_000;
    let start = Instant::now();
    for i in 0..n_proc {
        aec.render(&frames[(i + 7) % FRAMES]).unwrap();
        let mut near = frames[i % FRAMES];
        aec.process(&mut near).unwrap();
        black_box(&near);
    }
    let aec_cost = per_frame(start.elapsed(), n_proc);
    let mut ns = NoiseSuppressor::new();
    let start = Instant::now();
    for i in 0..n_proc {
        let mut f = frames[i % FRAMES];
        black_box(ns.process(&mut f));
    }
    let ns_cost = per_frame(start.elapsed(), n_proc);

    let avg_bytes = packets.iter().map(Vec::len).sum::<usize>() as f64 / FRAMES as f64;
    println!("opus encode (48 kHz mono, VoIP, 32 kb/s, FEC): {encode:8.1} µs/frame");
    println!("opus encode, no loss expected (FEC idle):      {encode_plain:8.1} µs/frame");
    println!("opus decode:                                   {decode:8.1} µs/frame");
    println!("jitter buffer push + pull:                     {jitter_cost:8.2} µs/frame");
    println!("4-peer receive tick (jitter+decode+mix):       {tick4:8.1} µs/tick");
    println!("echo cancellation (aec3, render + capture):    {aec_cost:8.1} µs/frame");
    println!("noise suppression (nnnoiseless):               {ns_cost:8.1} µs/frame");
    println!("average packet: {avg_bytes:.0} bytes; budget per frame: 20000 µs");
}
