//! Sums the peers' decoded frames into one output frame and keeps a level per peer.

use std::collections::HashMap;
use std::hash::Hash;

use super::frame::FRAME_SAMPLES;
use super::level::LevelMeter;

/// Below this the mix passes untouched; above it a soft knee keeps it under full scale.
const KNEE: f32 = 0.8;

/// Mixes per-peer frames; `K` identifies a peer (the engine's peer id).
pub struct Mixer<K> {
    meters: HashMap<K, LevelMeter>,
}

impl<K: Hash + Eq + Clone> Default for Mixer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> Mixer<K> {
    /// A mixer with no peers.
    pub fn new() -> Self {
        Self {
            meters: HashMap::new(),
        }
    }

    /// Sums `inputs` into `out` (overwritten), soft-limits it and updates each peer's level.
    pub fn mix<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = (&'a K, &'a [f32; FRAME_SAMPLES])>,
        out: &mut [f32; FRAME_SAMPLES],
    ) where
        K: 'a,
    {
        out.fill(0.0);
        for (peer, frame) in inputs {
            self.meters.entry(peer.clone()).or_default().update(frame);
            for (o, s) in out.iter_mut().zip(frame.iter()) {
                *o += s;
            }
        }
        for s in out.iter_mut() {
            *s = soft_clip(*s);
        }
    }

    /// The peer's current level in dBFS, if it has been mixed.
    pub fn level_dbfs(&self, peer: &K) -> Option<f32> {
        self.meters.get(peer).map(LevelMeter::level_dbfs)
    }

    /// Every peer's level in dBFS.
    pub fn levels(&self) -> Vec<(K, f32)> {
        self.meters
            .iter()
            .map(|(k, m)| (k.clone(), m.level_dbfs()))
            .collect()
    }

    /// The loudest peer above `threshold_dbfs`: the active speaker.
    pub fn active_speaker(&self, threshold_dbfs: f32) -> Option<K> {
        self.meters
            .iter()
            .filter(|(_, m)| m.level_dbfs() > threshold_dbfs)
            .max_by(|a, b| a.1.level_dbfs().total_cmp(&b.1.level_dbfs()))
            .map(|(k, _)| k.clone())
    }

    /// Forgets a peer that left.
    pub fn remove(&mut self, peer: &K) {
        self.meters.remove(peer);
    }
}

/// Transparent below [`KNEE`]; above it bends smoothly toward, and never past, full scale.
/// Hard clipping of a sum of voices buzzes; a knee only rounds the loudest peaks.
pub fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a <= KNEE {
        return x;
    }
    let headroom = 1.0 - KNEE;
    (KNEE + headroom * ((a - KNEE) / headroom).tanh()).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::level::rms_dbfs;

    fn sine(freq: f32, amp: f32) -> [f32; FRAME_SAMPLES] {
        std::array::from_fn(|i| {
            amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 48_000.0).sin()
        })
    }

    #[test]
    fn two_peers_are_summed_sample_by_sample() {
        let a = sine(440.0, 0.2);
        let b = sine(1000.0, 0.3);
        let mut mixer = Mixer::new();
        let mut out = [0.0; FRAME_SAMPLES];
        mixer.mix([(&"a", &a), (&"b", &b)], &mut out);
        for i in 0..FRAME_SAMPLES {
            assert!((out[i] - (a[i] + b[i])).abs() < 1e-6, "sample {i}");
        }
    }

    #[test]
    fn loud_sum_is_limited_below_full_scale_and_keeps_its_sign() {
        let a = sine(440.0, 0.9);
        let b = sine(440.0, 0.9); // in phase: the naive sum peaks at 1.8
        let mut mixer = Mixer::new();
        let mut out = [0.0; FRAME_SAMPLES];
        mixer.mix([(&1, &a), (&2, &b)], &mut out);
        let peak = out.iter().fold(0.0_f32, |m, s| m.max(s.abs()));
        assert!(peak <= 1.0, "peak {peak}");
        assert!(peak > 0.95, "limiter too strong: peak {peak}");
        for i in 0..FRAME_SAMPLES {
            assert_eq!(out[i].signum(), (a[i] + b[i]).signum(), "sample {i}");
        }
        // Quiet material is not touched.
        assert_eq!(soft_clip(0.5), 0.5);
        assert_eq!(soft_clip(-0.8), -0.8);
    }

    #[test]
    fn levels_are_reported_per_peer_in_dbfs() {
        // A sine of amplitude A has RMS A/sqrt(2): 0.5 -> -9.03 dBFS, 0.05 -> -29.03 dBFS.
        let loud = sine(1000.0, 0.5);
        let quiet = sine(1000.0, 0.05);
        let silent = [0.0; FRAME_SAMPLES];
        let mut mixer = Mixer::new();
        let mut out = [0.0; FRAME_SAMPLES];
        mixer.mix(
            [(&"loud", &loud), (&"quiet", &quiet), (&"mute", &silent)],
            &mut out,
        );
        let loud_db = mixer.level_dbfs(&"loud").unwrap();
        let quiet_db = mixer.level_dbfs(&"quiet").unwrap();
        assert!((loud_db - -9.03).abs() < 0.1, "loud {loud_db}");
        assert!((quiet_db - -29.03).abs() < 0.1, "quiet {quiet_db}");
        assert!(mixer.level_dbfs(&"mute").unwrap() <= -99.0);
        assert_eq!(mixer.active_speaker(-50.0), Some("loud"));
        assert!((rms_dbfs(&loud) - loud_db).abs() < 1e-3);
        mixer.remove(&"loud");
        assert_eq!(mixer.active_speaker(-50.0), Some("quiet"));
    }
}
