//! Microphone noise suppression with `nnnoiseless`, a pure-Rust port of RNNoise.
//!
//! It removes steady background noise (fans, hum, hiss) from the local microphone before
//! encoding. It does not cancel echo: it has no far-end reference input.

use nnnoiseless::DenoiseState;

use super::frame::FRAME_SAMPLES;

/// RNNoise works on 10 ms blocks at 48 kHz and on samples in the i16 range.
const BLOCK: usize = DenoiseState::FRAME_SIZE;
const SCALE: f32 = 32_768.0;

/// Removes background noise from 20 ms frames of one stream (keep one per microphone).
pub struct NoiseSuppressor {
    state: Box<DenoiseState<'static>>,
    input: [f32; BLOCK],
    output: [f32; BLOCK],
}

impl Default for NoiseSuppressor {
    fn default() -> Self {
        Self::new()
    }
}

impl NoiseSuppressor {
    /// A suppressor with the built-in model.
    pub fn new() -> Self {
        Self {
            state: DenoiseState::new(),
            input: [0.0; BLOCK],
            output: [0.0; BLOCK],
        }
    }

    /// Denoises `frame` in place; returns the probability (0–1) that it holds speech.
    pub fn process(&mut self, frame: &mut [f32; FRAME_SAMPLES]) -> f32 {
        let mut voice = 0.0_f32;
        for block in frame.chunks_exact_mut(BLOCK) {
            for (i, s) in block.iter().enumerate() {
                self.input[i] = s * SCALE;
            }
            voice = voice.max(self.state.process_frame(&mut self.output, &self.input));
            for (s, o) in block.iter_mut().zip(self.output.iter()) {
                *s = (o / SCALE).clamp(-1.0, 1.0);
            }
        }
        voice
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::media::audio::level::rms_dbfs;

    #[test]
    fn steady_noise_is_strongly_reduced() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut ns = NoiseSuppressor::new();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        // Hiss at about -35 dBFS, like a fan in a quiet room, for 6 s; judge the last 2 s.
        for i in 0..300 {
            let mut frame: [f32; FRAME_SAMPLES] =
                std::array::from_fn(|_| rng.random_range(-0.03..0.03));
            let original = frame;
            ns.process(&mut frame);
            if i >= 200 {
                before.extend_from_slice(&original);
                after.extend_from_slice(&frame);
            }
        }
        let (b, a) = (rms_dbfs(&before), rms_dbfs(&after));
        assert!(a < b - 20.0, "noise {b:.1} dBFS -> {a:.1} dBFS");
    }
}
