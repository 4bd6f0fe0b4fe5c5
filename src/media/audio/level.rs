//! Audio levels in dBFS for microphone meters and active-speaker detection.

/// The floor reported for digital silence, so meters have a finite bottom.
pub const SILENCE_DBFS: f32 = -100.0;

/// Root mean square of `samples` (0.0 for an empty slice).
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f32 = samples.iter().map(|s| s * s).sum();
    (sum / samples.len() as f32).sqrt()
}

/// RMS level in dB relative to full scale; a full-scale square wave is 0 dBFS.
pub fn rms_dbfs(samples: &[f32]) -> f32 {
    to_dbfs(rms(samples))
}

/// Converts a linear amplitude to dBFS, clamped at [`SILENCE_DBFS`].
pub fn to_dbfs(linear: f32) -> f32 {
    if linear <= 0.0 {
        return SILENCE_DBFS;
    }
    (20.0 * linear.log10()).max(SILENCE_DBFS)
}

/// A meter for one stream: rises at once, falls slowly, so a UI bar does not flicker.
#[derive(Debug, Clone)]
pub struct LevelMeter {
    level_dbfs: f32,
    fall_db_per_frame: f32,
}

impl Default for LevelMeter {
    fn default() -> Self {
        // 1.5 dB per 20 ms: a loud word fades from the meter in about a second.
        Self::new(1.5)
    }
}

impl LevelMeter {
    /// A meter whose reading falls by at most `fall_db_per_frame` per frame.
    pub fn new(fall_db_per_frame: f32) -> Self {
        Self {
            level_dbfs: SILENCE_DBFS,
            fall_db_per_frame,
        }
    }

    /// Feeds one frame and returns the new reading in dBFS.
    pub fn update(&mut self, samples: &[f32]) -> f32 {
        let now = rms_dbfs(samples);
        self.level_dbfs = now.max(self.level_dbfs - self.fall_db_per_frame);
        self.level_dbfs
    }

    /// The current reading in dBFS.
    pub fn level_dbfs(&self) -> f32 {
        self.level_dbfs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_rises_at_once_and_falls_slowly() {
        let loud = [0.5_f32; 960]; // constant 0.5: -6.02 dBFS
        let quiet = [0.0_f32; 960];
        let mut meter = LevelMeter::new(1.5);
        assert!((meter.update(&loud) - -6.02).abs() < 0.01);
        assert!((meter.update(&quiet) - -7.52).abs() < 0.01);
        for _ in 0..100 {
            meter.update(&quiet);
        }
        assert_eq!(meter.level_dbfs(), SILENCE_DBFS);
        assert_eq!(rms_dbfs(&[]), SILENCE_DBFS);
        assert!((rms_dbfs(&[1.0, -1.0]) - 0.0).abs() < 1e-6);
    }
}
