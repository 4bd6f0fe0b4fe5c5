//! Acoustic echo cancellation: removes what the speaker played from what the microphone hears.
//!
//! Uses `aec3`, a pure-Rust port of WebRTC's AEC3. The far end (the mix sent to the speaker)
//! goes in through [`EchoCanceller::render`] (take it from
//! [`Playback::take_far_end`](super::playback::Playback::take_far_end)), the microphone
//! through [`EchoCanceller::process`]: before each microphone frame, render every far-end
//! frame that has arrived since. Its own noise suppression and gain control are off: noise is
//! handled by [`super::denoise`], and levels must stay where the user set them.

use aec3::nodes::audio::AudioFormat;
use aec3::pipelines::linear::{self, LinearPipeline};

use super::error::AudioError;
use super::frame::{FRAME_SAMPLES, SAMPLE_RATE};

/// AEC3 works on 10 ms blocks.
const BLOCK: usize = FRAME_SAMPLES / 2;

/// One echo canceller per microphone.
pub struct EchoCanceller {
    pipeline: LinearPipeline,
    out: [f32; BLOCK],
}

impl EchoCanceller {
    /// A canceller expecting roughly `delay_ms` between playing a sound and hearing it back.
    /// AEC3 searches around this itself; it only speeds up the first convergence.
    pub fn new(delay_ms: i32) -> Result<Self, AudioError> {
        let format = AudioFormat::ten_ms(SAMPLE_RATE, 1);
        let pipeline = linear::builder(format, format)
            .initial_delay_ms(delay_ms)
            .enable_noise_suppression(false)
            .enable_gain_controller2(false)
            .build()
            .map_err(|e| AudioError::Processing(e.to_string()))?;
        Ok(Self {
            pipeline,
            out: [0.0; BLOCK],
        })
    }

    /// Feeds 20 ms of what is being sent to the speaker (the echo reference).
    pub fn render(&mut self, far_end: &[f32; FRAME_SAMPLES]) -> Result<(), AudioError> {
        for block in far_end.chunks_exact(BLOCK) {
            self.pipeline
                .handle_render_frame(block)
                .map_err(|e| AudioError::Processing(e.to_string()))?;
        }
        Ok(())
    }

    /// Removes the echo from 20 ms of microphone audio, in place.
    pub fn process(&mut self, near_end: &mut [f32; FRAME_SAMPLES]) -> Result<(), AudioError> {
        for block in near_end.chunks_exact_mut(BLOCK) {
            let produced = self
                .pipeline
                .process_capture_frame(block, &mut self.out)
                .map_err(|e| AudioError::Processing(e.to_string()))?;
            if produced {
                block.copy_from_slice(&self.out);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::media::audio::analysis::goertzel_amplitude;
    use crate::media::audio::level::rms_dbfs;

    /// Far end: noise bursts like speech syllables. Near end: that, 40 ms later at half
    /// level (the room), plus optionally a local talker (a 300 Hz tone).
    fn simulate(local_talker: bool) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(9);
        let delay = 1920; // 40 ms
        let frames = 400; // 8 s
        let far: Vec<f32> = (0..frames * FRAME_SAMPLES)
            .map(|i| {
                let on = (i / 9600) % 3 != 2; // 200 ms on, 100 ms off
                if on { rng.random_range(-0.2..0.2) } else { 0.0 }
            })
            .collect();
        let mut aec = EchoCanceller::new(40).unwrap();
        let (mut near_all, mut out_all) = (Vec::new(), Vec::new());
        for f in 0..frames {
            let far_frame: [f32; FRAME_SAMPLES] = far[f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES]
                .try_into()
                .unwrap();
            let mut near: [f32; FRAME_SAMPLES] = std::array::from_fn(|i| {
                let n = f * FRAME_SAMPLES + i;
                let echo = if n >= delay {
                    0.5 * far[n - delay]
                } else {
                    0.0
                };
                let talk = if local_talker {
                    0.1 * (std::f32::consts::TAU * 300.0 * n as f32 / 48_000.0).sin()
                } else {
                    0.0
                };
                echo + talk
            });
            let original = near;
            aec.render(&far_frame).unwrap();
            aec.process(&mut near).unwrap();
            if f >= 250 {
                near_all.extend_from_slice(&original);
                out_all.extend_from_slice(&near);
            }
        }
        (near_all, out_all)
    }

    #[test]
    fn echo_of_the_far_end_is_removed() {
        let (near, out) = simulate(false);
        let (before, after) = (rms_dbfs(&near), rms_dbfs(&out));
        assert!(
            after < before - 20.0,
            "echo {before:.1} dBFS -> {after:.1} dBFS"
        );
    }

    #[test]
    fn local_talker_survives_while_the_echo_goes() {
        let (near, out) = simulate(true);
        let talk_before = goertzel_amplitude(&near, SAMPLE_RATE, 300.0);
        let talk_after = goertzel_amplitude(&out, SAMPLE_RATE, 300.0);
        assert!(
            talk_after > 0.5 * talk_before,
            "talker {talk_before} -> {talk_after}"
        );
    }
}
