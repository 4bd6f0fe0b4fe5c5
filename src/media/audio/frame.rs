//! The unit everything in audio passes around: 20 ms of 48 kHz mono.
//!
//! Samples are `f32` in [-1.0, 1.0]: cpal delivers float on most hosts, Opus has a float API,
//! the resampler works in float, and summing peers in float cannot overflow before the mixer
//! decides how to limit. i16 would halve memory, which at 3.75 KiB a frame does not matter.

use std::time::{Duration, Instant};

/// Samples per second everywhere inside meshcall (Opus's native rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame.
pub const FRAME_SAMPLES: usize = 960;
/// Length of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// One 20 ms mono frame with the moment its first sample was captured (or synthesised).
#[derive(Clone, PartialEq)]
pub struct AudioFrame {
    /// The samples, in [-1.0, 1.0].
    pub samples: [f32; FRAME_SAMPLES],
    /// When the first sample was captured; used for latency measurement and A/V sync.
    pub captured_at: Instant,
}

impl AudioFrame {
    /// A frame of silence stamped `captured_at`.
    pub fn silence(captured_at: Instant) -> Self {
        Self {
            samples: [0.0; FRAME_SAMPLES],
            captured_at,
        }
    }

    /// A frame from exactly [`FRAME_SAMPLES`] samples; `None` when the length is wrong.
    pub fn from_slice(samples: &[f32], captured_at: Instant) -> Option<Self> {
        let samples: [f32; FRAME_SAMPLES] = samples.try_into().ok()?;
        Some(Self {
            samples,
            captured_at,
        })
    }
}

impl std::fmt::Debug for AudioFrame {
    // Printing 960 floats helps nobody; the level and stamp do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("captured_at", &self.captured_at)
            .field(
                "rms_dbfs",
                &crate::media::audio::level::rms_dbfs(&self.samples),
            )
            .finish()
    }
}
