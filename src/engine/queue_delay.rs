//! How long our packets wait in queues along the path, read from transport feedback.
//!
//! A bottleneck (a capped downlink, a busy Wi-Fi) shows first as a queue: packets arrive
//! later and later before any is dropped. Two senders sharing one slow downlink (the mesh's
//! usual case: everyone sends to the member on hotel Wi-Fi) both see the same queue, so
//! both backing off when it grows is what lets them share the link. webrtc-rs' GCC delay
//! half did not react to a 400 kbit/s cap's queue in our runs (latency rose to a second and
//! the queue overflowed, dropping audio), so this reads the queue directly.
//!
//! Each packet's one-way delay is its arrival on the receiver's clock minus its departure on
//! ours; the two clocks have an unknown offset, so only the delay above the lowest seen
//! recently (the path's floor) means anything: that excess is the queue. Per feedback batch
//! the least delay counts, so a keyframe's own burst (its packets queue behind each other
//! for a moment) does not read as a standing queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

/// How long the path's floor is remembered: long enough to outlast a congested spell,
/// short enough to follow a route change.
const FLOOR_WINDOW: Duration = Duration::from_secs(20);
/// The floor is kept as one minimum per bucket of this length.
const BUCKET: Duration = Duration::from_secs(1);

/// The queueing delay our packets see; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct QueueDelay {
    /// Departures are measured from here (any fixed instant will do).
    epoch: Option<Instant>,
    /// (bucket start, least one-way delay in it), oldest first.
    floor: VecDeque<(Instant, f64)>,
    /// The latest batch's queueing delay, ms.
    latest_ms: Option<f64>,
}

impl QueueDelay {
    /// Takes one feedback batch received at `now`; returns its queueing delay in ms, if any
    /// packet in it arrived with a time.
    pub(crate) fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) -> Option<f64> {
        let epoch = *self
            .epoch
            .get_or_insert_with(|| reports.iter().map(|r| r.departure).min().unwrap_or(now));
        let least = reports
            .iter()
            .filter_map(|r| {
                let arrival = r.arrival?;
                let departure = r.departure.checked_duration_since(epoch)?;
                Some((arrival.as_secs_f64() - departure.as_secs_f64()) * 1000.0)
            })
            .reduce(f64::min)?;
        self.note_floor(now, least);
        let floor = self
            .floor
            .iter()
            .map(|(_, d)| *d)
            .fold(f64::INFINITY, f64::min);
        let queue = (least - floor).max(0.0);
        self.latest_ms = Some(queue);
        Some(queue)
    }

    /// The latest queueing delay, ms (`None` before the first feedback with arrival times).
    pub(crate) fn latest_ms(&self) -> Option<f64> {
        self.latest_ms
    }

    fn note_floor(&mut self, now: Instant, delay: f64) {
        match self.floor.back_mut() {
            Some((start, least)) if now.saturating_duration_since(*start) < BUCKET => {
                *least = least.min(delay);
            }
            _ => self.floor.push_back((now, delay)),
        }
        while self
            .floor
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) > FLOOR_WINDOW)
        {
            self.floor.pop_front();
        }
    }
}

/// A feedback report on one packet of `size` bytes that left at `departure` and arrived at
/// `arrival` on the receiver's clock (`None`: lost), for the tests here and the estimator's.
#[cfg(test)]
pub(crate) fn test_report(
    departure: Instant,
    arrival: Option<Duration>,
    size: usize,
) -> PacketReport {
    PacketReport {
        ssrc: 1,
        id: 0,
        rtp_sequence_number: 0,
        is_twcc: true,
        twcc_sequence_number: 0,
        size,
        arrived: arrival.is_some(),
        departure,
        arrival,
        ecn: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet sent at `sent` after `t0` that arrived `delay_ms` later (receiver's clock
    /// offset by 5 s, which must not matter).
    fn packet(t0: Instant, sent: Duration, delay_ms: Option<u64>) -> PacketReport {
        let arrival = delay_ms.map(|d| Duration::from_secs(5) + sent + Duration::from_millis(d));
        test_report(t0 + sent, arrival, 1000)
    }

    /// Feeds batches every 100 ms of ten packets whose delay is `delay(batch)` ms.
    fn feed(
        q: &mut QueueDelay,
        t0: Instant,
        batches: std::ops::Range<u64>,
        delay: impl Fn(u64) -> u64,
    ) -> Option<f64> {
        let mut last = None;
        for b in batches {
            let reports: Vec<_> = (0..10)
                .map(|i| {
                    packet(
                        t0,
                        Duration::from_millis(b * 100 + i * 10),
                        Some(delay(b) + i % 3),
                    )
                })
                .collect();
            last = q.on_reports(t0 + Duration::from_millis(b * 100 + 120), &reports);
        }
        last
    }

    #[test]
    fn a_growing_queue_reads_as_its_excess_over_the_floor() {
        let mut q = QueueDelay::default();
        let t0 = Instant::now();
        // Two seconds at a 20 ms path, then the queue grows 30 ms per batch.
        assert_eq!(feed(&mut q, t0, 0..20, |_| 20), Some(0.0));
        let queue = feed(&mut q, t0, 20..30, |b| 20 + (b - 19) * 30).unwrap();
        assert!((queue - 300.0).abs() < 1.0, "{queue}");
        // It drains.
        let queue = feed(&mut q, t0, 30..35, |_| 22).unwrap();
        assert!((queue - 2.0).abs() < 0.01, "{queue}");
    }

    #[test]
    fn one_late_packet_in_a_batch_is_not_a_queue() {
        let mut q = QueueDelay::default();
        let t0 = Instant::now();
        feed(&mut q, t0, 0..10, |_| 20);
        // A keyframe burst: the batch's last packets wait 150 ms, its first do not.
        let reports: Vec<_> = (0..10)
            .map(|i| packet(t0, Duration::from_millis(1000 + i * 10), Some(20 + i * 15)))
            .collect();
        let queue = q.on_reports(t0 + Duration::from_millis(1120), &reports);
        assert_eq!(queue, Some(0.0));
    }

    #[test]
    fn lost_packets_carry_no_delay() {
        let mut q = QueueDelay::default();
        let t0 = Instant::now();
        let lost = [packet(t0, Duration::ZERO, None)];
        assert_eq!(q.on_reports(t0, &lost), None);
        assert_eq!(q.latest_ms(), None);
    }

    #[test]
    fn the_floor_forgets_after_its_window() {
        let mut q = QueueDelay::default();
        let t0 = Instant::now();
        feed(&mut q, t0, 0..10, |_| 20);
        // The path itself gets 50 ms longer (a route change) and stays so.
        let queue = feed(&mut q, t0, 10..240, |_| 70).unwrap();
        assert!(queue < 1.0, "{queue}");
    }
}
