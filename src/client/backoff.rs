//! Jittered exponential back-off for reconnects.

use std::time::Duration;

use rand::Rng;

/// Reconnect timing: the n-th wait is a random point in the upper half of
/// `min(max, base * 2^n)`, so a room's clients do not all return in the same instant.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay ceiling.
    pub base: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// The wait before reconnect attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        let half = ceiling / 2;
        half + ceiling
            .saturating_sub(half)
            .mul_f64(rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let b = Backoff::default();
        for attempt in 0..30 {
            let ceiling = (b.base * 2u32.pow(attempt.min(16))).min(b.max);
            let d = b.delay(attempt);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| b.delay(5)).collect();
        assert!(spread.len() > 10, "no jitter");
    }
}
