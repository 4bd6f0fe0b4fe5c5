//! Limits against guessing and hoarding: a growing back-off on wrong passcodes, per room and
//! per client address, and caps on open sockets per address and in total. Time is passed in
//! so the schedule is testable without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A back-off schedule: the first `free` wrong passcodes answer at once; after that each
/// further check waits `base`, doubling with every failure, at most `max`. Failures are
/// forgotten after `forget` without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wrong passcodes answered without delay.
    pub free: u32,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Quiet time after which the failures are forgotten.
    pub forget: Duration,
}

impl Backoff {
    /// How long after the latest of `failures` wrong passcodes the next check may run.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Instants (from 0) at which a client that retries as soon as it may gets its passcode
    /// checked, up to `within`: the most checks this schedule allows one attacker.
    pub fn checks_within(&self, within: Duration) -> Vec<Duration> {
        let mut at = Vec::new();
        let mut t = Duration::ZERO;
        while t <= within {
            at.push(t);
            t += self.delay(at.len() as u32);
        }
        at
    }
}

/// The back-offs the server applies to wrong passcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasscodeLimits {
    /// Per client address (IPv6 by /64), over all rooms.
    pub per_address: Backoff,
    /// Per room, over all addresses. Looser than per address, so one address that is
    /// backing off cannot lock a room's rightful newcomers out.
    pub per_room: Backoff,
}

impl Default for PasscodeLimits {
    fn default() -> Self {
        Self {
            per_address: Backoff {
                free: 5,
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
                forget: Duration::from_secs(3600),
            },
            per_room: Backoff {
                free: 20,
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
                forget: Duration::from_secs(3600),
            },
        }
    }
}

/// Wrong passcodes from one address or against one room.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Failures {
    count: u32,
    last: Option<Instant>,
}

impl Failures {
    fn live(&self, now: Instant, b: &Backoff) -> Option<Instant> {
        self.last
            .filter(|&last| now.saturating_duration_since(last) < b.forget)
    }

    /// How long a passcode check must still wait, if at all.
    pub(crate) fn wait(&self, now: Instant, b: &Backoff) -> Option<Duration> {
        let last = self.live(now, b)?;
        let ready = last + b.delay(self.count);
        (now < ready).then(|| ready - now)
    }

    /// Counts one more wrong passcode.
    pub(crate) fn fail(&mut self, now: Instant, b: &Backoff) {
        if self.live(now, b).is_none() {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last = Some(now);
    }
}

/// The key an address is limited by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64,
/// since one host commonly holds a whole /64.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Wrong passcodes per address, pruned of forgotten entries as it grows.
#[derive(Debug)]
pub(crate) struct AddressFailures {
    map: Mutex<(HashMap<IpAddr, Failures>, usize)>,
}

const PRUNE_AT: usize = 4096;

impl Default for AddressFailures {
    fn default() -> Self {
        Self {
            map: Mutex::new((HashMap::new(), PRUNE_AT)),
        }
    }
}

impl AddressFailures {
    fn lock(&self) -> MutexGuard<'_, (HashMap<IpAddr, Failures>, usize)> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wait(&self, ip: IpAddr, now: Instant, b: &Backoff) -> Option<Duration> {
        self.lock().0.get(&ip).and_then(|f| f.wait(now, b))
    }

    pub(crate) fn fail(&self, ip: IpAddr, now: Instant, b: &Backoff) {
        let mut guard = self.lock();
        let (map, prune_at) = &mut *guard;
        map.entry(ip).or_default().fail(now, b);
        if map.len() >= *prune_at {
            map.retain(|_, f| f.live(now, b).is_some());
            *prune_at = PRUNE_AT.max(2 * map.len());
        }
    }
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketRefusal {
    /// The address already holds its share.
    PerAddress,
    /// The server holds as many as it will.
    Total,
}

/// Caps on open sockets: a semaphore for the total (as mini-redis limits connections, but
/// refusing rather than waiting), a count per address.
#[derive(Debug)]
pub(crate) struct SocketCaps {
    total: Arc<Semaphore>,
    per_address_max: usize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted socket's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Admission {
    caps: Arc<SocketCaps>,
    key: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl SocketCaps {
    pub(crate) fn new(total: usize, per_address: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_address_max: per_address,
            per_address: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a socket from `ip`, or says why there is none.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, SocketRefusal> {
        let key = address_key(ip);
        let mut counts = self.counts();
        let held = counts.get(&key).copied().unwrap_or(0);
        if held >= self.per_address_max {
            return Err(SocketRefusal::PerAddress);
        }
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| SocketRefusal::Total)?;
        counts.insert(key, held + 1);
        Ok(Admission {
            caps: Arc::clone(self),
            key,
            _permit: permit,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.caps.counts();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_schedule_is_free_then_doubling_then_capped() {
        let b = PasscodeLimits::default().per_address;
        let delays: Vec<u64> = (0..16).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
        assert_eq!(b.delay(u32::MAX), secs(300));
        let room = PasscodeLimits::default().per_room;
        assert_eq!(room.delay(19), Duration::ZERO);
        assert_eq!(room.delay(20), secs(1));
        assert_eq!(room.delay(26), secs(60));
    }

    #[test]
    fn one_address_gets_few_checks_in_ten_seconds_and_ten_minutes() {
        let b = PasscodeLimits::default().per_address;
        let ten_s = b.checks_within(secs(10));
        assert_eq!(
            ten_s,
            [0, 0, 0, 0, 0, 1, 3, 7].map(secs),
            "five at once, then at 1, 3 and 7 s"
        );
        let ten_min = b.checks_within(secs(600));
        // 0 ×5, 1, 3, 7, 15, 31, 63, 127, 255, 511; the next is at 811 s.
        assert_eq!(ten_min.len(), 14, "{ten_min:?}");
        // Of a 4-digit passcode's 10,000 codes, one address tries 0.14 % in 10 minutes,
        // and in a day (300 s apart once capped) about 300.
        let day = b.checks_within(secs(86_400));
        assert!(day.len() <= 300, "{}", day.len());
        // Fewer checks than the room's free allowance: one address alone never makes the
        // room back off for everyone else within ten minutes.
        assert!(ten_min.len() < PasscodeLimits::default().per_room.free as usize);
    }

    #[test]
    fn failures_wait_and_are_forgotten() {
        let b = PasscodeLimits::default().per_address;
        let t0 = Instant::now();
        let mut f = Failures::default();
        for _ in 0..5 {
            assert_eq!(f.wait(t0, &b), None);
            f.fail(t0, &b);
        }
        assert_eq!(f.wait(t0, &b), Some(secs(1)));
        assert_eq!(f.wait(t0 + secs(1), &b), None);
        f.fail(t0 + secs(1), &b);
        assert_eq!(f.wait(t0 + secs(2), &b), Some(secs(1)));
        // An hour without failures: the count starts again.
        let later = t0 + secs(3) + b.forget;
        assert_eq!(f.wait(later, &b), None);
        f.fail(later, &b);
        assert_eq!(f.wait(later, &b), None);
    }

    #[test]
    fn addresses_are_keyed_by_ipv4_or_ipv6_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn socket_caps_per_address_and_in_total() {
        let caps = Arc::new(SocketCaps::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), SocketRefusal::PerAddress);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), SocketRefusal::Total);
        drop(a1);
        let _a3 = caps.admit(a).unwrap();
        assert_eq!(caps.counts().get(&a), Some(&2));
    }
}
