//! Measuring what a signal contains: used by tests and by diagnostics ("is my mic working?").

/// Estimates the frequency of a roughly sinusoidal signal from its rising zero crossings.
/// `None` when fewer than two crossings are present.
pub fn zero_crossing_frequency(samples: &[f32], sample_rate: u32) -> Option<f32> {
    let mut first = None;
    let mut last = 0;
    let mut count = 0usize;
    for i in 1..samples.len() {
        if samples[i - 1] < 0.0 && samples[i] >= 0.0 {
            if first.is_none() {
                first = Some(i);
            }
            last = i;
            count += 1;
        }
    }
    let first = first?;
    if count < 2 {
        return None;
    }
    let periods = (count - 1) as f32;
    Some(periods * sample_rate as f32 / (last - first) as f32)
}

/// Amplitude of the `frequency` component (Goertzel filter), normalised so a sine of peak
/// amplitude A at exactly that frequency reads about A.
pub fn goertzel_amplitude(samples: &[f32], sample_rate: u32, frequency: f32) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = std::f32::consts::TAU * frequency / sample_rate as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0_f32, 0.0_f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_known_sine() {
        let s: Vec<f32> = (0..4800)
            .map(|i| 0.4 * (std::f32::consts::TAU * 440.0 * i as f32 / 48_000.0).sin())
            .collect();
        let f = zero_crossing_frequency(&s, 48_000).unwrap();
        assert!((f - 440.0).abs() < 1.0, "{f}");
        let a = goertzel_amplitude(&s, 48_000, 440.0);
        assert!((a - 0.4).abs() < 0.02, "{a}");
        assert!(goertzel_amplitude(&s, 48_000, 1000.0) < 0.02);
    }
}
