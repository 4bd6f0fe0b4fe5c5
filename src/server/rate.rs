//! Per-socket message rate limit: a token bucket, plus the flood rule that closes a socket
//! after sustained excess. Time is passed in so the rules are testable without sleeping.

use std::time::{Duration, Instant};

/// The limits protocol.md sets; configurable so tests and deployments can tune them.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: f64,
    /// Continuous excess for this long closes the socket (1008).
    pub flood_close_after: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 100.0,
            flood_close_after: Duration::from_secs(10),
        }
    }
}

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Process it.
    Allow,
    /// Drop it unprocessed; answer `rate-limited` when `notify` is set.
    Drop { notify: bool },
    /// The flood went on too long: close with 1008.
    Close,
}

/// How long excess must be absent before a flood counts as over.
const EXCESS_RESET: Duration = Duration::from_secs(1);
/// At most one `rate-limited` error per this period.
const NOTIFY_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    tokens: f64,
    refilled_at: Instant,
    excess_since: Option<Instant>,
    last_excess: Option<Instant>,
    last_notified: Option<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits, now: Instant) -> Self {
        Self {
            limits,
            tokens: limits.burst,
            refilled_at: now,
            excess_since: None,
            last_excess: None,
            last_notified: None,
        }
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limits.per_second).min(self.limits.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        let continues = self
            .last_excess
            .is_some_and(|t| now.saturating_duration_since(t) <= EXCESS_RESET);
        if !continues {
            self.excess_since = Some(now);
        }
        self.last_excess = Some(now);
        let since = self.excess_since.unwrap_or(now);
        if now.saturating_duration_since(since) >= self.limits.flood_close_after {
            return Verdict::Close;
        }
        let notify = self
            .last_notified
            .is_none_or(|t| now.saturating_duration_since(t) >= NOTIFY_PERIOD);
        if notify {
            self.last_notified = Some(now);
        }
        Verdict::Drop { notify }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(v: &[Verdict], want: Verdict) -> usize {
        v.iter().filter(|&&x| x == want).count()
    }

    #[test]
    fn burst_of_100_then_50_per_second() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(RateLimits::default(), t0);
        let burst: Vec<_> = (0..150).map(|_| rl.check(t0)).collect();
        assert_eq!(count(&burst, Verdict::Allow), 100);
        assert_eq!(count(&burst, Verdict::Drop { notify: true }), 1);
        assert_eq!(count(&burst, Verdict::Drop { notify: false }), 49);
        // One second later 50 tokens are back, not more.
        let t1 = t0 + Duration::from_secs(1);
        let next: Vec<_> = (0..60).map(|_| rl.check(t1)).collect();
        assert_eq!(count(&next, Verdict::Allow), 50);
        assert_eq!(count(&next, Verdict::Drop { notify: true }), 1);
    }

    #[test]
    fn ten_seconds_of_continuous_excess_closes() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(RateLimits::default(), t0);
        let mut closed_at = None;
        // 100 messages a second, twice the rate, every 10 ms.
        for i in 0..2000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            if rl.check(now) == Verdict::Close {
                closed_at = Some(now - t0);
                break;
            }
        }
        let closed_at = closed_at.expect("flood never closed");
        assert!(closed_at >= Duration::from_secs(10), "{closed_at:?}");
        assert!(closed_at <= Duration::from_secs(13), "{closed_at:?}");
    }

    #[test]
    fn a_quiet_second_resets_the_flood_count() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(RateLimits::default(), t0);
        let mut now = t0;
        // Excess bursts for 9 s, then 1.5 s of silence, then 9 s more: never closed.
        for phase in 0..2 {
            for _ in 0..900 {
                now += Duration::from_millis(10);
                for _ in 0..2 {
                    assert_ne!(rl.check(now), Verdict::Close, "phase {phase}");
                }
            }
            now += Duration::from_millis(1500);
        }
    }
}
