//! Streaming mono sample-rate conversion between a device's rate and 48 kHz.
//!
//! rubato's polynomial `Async` resampler: cheap enough to run every 10 ms on a voice stream,
//! and the aliasing it allows is inaudible for speech. Equal rates pass straight through.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};

use super::error::AudioError;

/// Converts a continuous mono stream from one rate to another, in whatever pieces it comes.
pub struct StreamResampler {
    inner: Option<Async<f32>>,
    pending: Vec<f32>,
    scratch: Vec<f32>,
}

impl StreamResampler {
    /// A converter from `from_rate` to `to_rate` (Hz).
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, AudioError> {
        if from_rate == 0 || to_rate == 0 {
            return Err(AudioError::Resample(format!(
                "invalid rates {from_rate} -> {to_rate}"
            )));
        }
        let inner = if from_rate == to_rate {
            None
        } else {
            // 10 ms chunks at the input rate: small latency, few calls.
            let chunk = (from_rate / 100) as usize;
            let ratio = f64::from(to_rate) / f64::from(from_rate);
            let r = Async::new_poly(
                ratio,
                1.1,
                PolynomialDegree::Cubic,
                chunk,
                1,
                FixedAsync::Input,
            )
            .map_err(|e| AudioError::Resample(e.to_string()))?;
            Some(r)
        };
        let scratch = vec![0.0; inner.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(Self {
            inner,
            pending: Vec::new(),
            scratch,
        })
    }

    /// Converts `input` and appends every output sample that is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let mut used = 0;
        while self.pending.len() - used >= inner.input_frames_next() {
            let need = inner.input_frames_next();
            let src = &self.pending[used..used + need];
            let input = InterleavedSlice::new(src, 1, need)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            let frames = self.scratch.len();
            let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, frames)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            let (read, written) = inner
                .process_into_buffer(&input, &mut output, None)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            used += read;
            out.extend_from_slice(&self.scratch[..written]);
        }
        self.pending.drain(..used);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::analysis::zero_crossing_frequency;

    fn sine(rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn converts_44k1_to_48k_keeping_pitch_and_length() {
        let input = sine(44_100, 44_100);
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let mut out = Vec::new();
        // Odd-sized pieces, as device callbacks deliver them.
        for piece in input.chunks(333) {
            r.process(piece, &mut out).unwrap();
        }
        assert!(
            (out.len() as i64 - 48_000).abs() < 1000,
            "{} samples",
            out.len()
        );
        let f = zero_crossing_frequency(&out[4800..], 48_000).unwrap();
        assert!((f - 440.0).abs() < 2.0, "{f}");
    }

    #[test]
    fn equal_rates_pass_through() {
        let input = sine(48_000, 1000);
        let mut r = StreamResampler::new(48_000, 48_000).unwrap();
        let mut out = Vec::new();
        r.process(&input, &mut out).unwrap();
        assert_eq!(out, input);
    }
}
