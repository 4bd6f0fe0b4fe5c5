//! Encode and decode speed of the H.264 path on the moving test pattern.
//!
//! Run: `cargo bench --bench video_codecs`. Prints frames per second for each size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use meshcall::media::video::{
    EncoderSettings, FrameTime, H264Decoder, H264Encoder, I420Frame, TestPattern, VideoError,
    i420_to_rgba,
};

/// Distinct frames per run; the pattern moves, so every frame costs real coding work.
const FRAMES: usize = 300;

fn main() -> Result<(), VideoError> {
    println!("H.264 (openh264, 1 thread), {FRAMES} pattern frames per run, 30 fps settings");
    println!(
        "{:<10} {:>9} {:>12} {:>12} {:>12} {:>10}",
        "size", "kbps", "encode fps", "decode fps", "to-RGBA fps", "avg bytes"
    );
    for (width, height, bitrate_bps) in [(640, 360, 800_000), (1280, 720, 2_500_000)] {
        bench_size(width, height, bitrate_bps)?;
    }
    Ok(())
}

fn bench_size(width: u32, height: u32, bitrate_bps: u32) -> Result<(), VideoError> {
    let mut pattern = TestPattern::new("Bench", width, height)?;
    let frames: Vec<I420Frame> = (0..FRAMES)
        .map(|_| pattern.render(FrameTime::now()))
        .collect();

    let mut encoder = H264Encoder::new(EncoderSettings {
        bitrate_bps,
        frame_rate: 30.0,
    })?;
    let started = Instant::now();
    let mut encoded = Vec::with_capacity(FRAMES);
    for frame in &frames {
        if let Some(au) = encoder.encode(frame)? {
            encoded.push(au);
        }
    }
    let encode_fps = rate(FRAMES, started.elapsed());

    let mut decoder = H264Decoder::new()?;
    let started = Instant::now();
    let mut decoded = Vec::with_capacity(encoded.len());
    for au in &encoded {
        if let Some(frame) = decoder.decode(&au.data)? {
            decoded.push(frame);
        }
    }
    let decode_fps = rate(encoded.len(), started.elapsed());

    let started = Instant::now();
    for frame in &decoded {
        black_box(i420_to_rgba(frame)?);
    }
    let rgba_fps = rate(decoded.len(), started.elapsed());

    let avg_bytes = encoded.iter().map(|e| e.data.len()).sum::<usize>() / encoded.len().max(1);
    println!(
        "{:<10} {:>9} {:>12.0} {:>12.0} {:>12.0} {:>10}",
        format!("{width}x{height}"),
        bitrate_bps / 1000,
        encode_fps,
        decode_fps,
        rgba_fps,
        avg_bytes
    );
    Ok(())
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}
