//! Per-peer adaptive jitter buffer for 20 ms Opus packets.
//!
//! Written here rather than taken from a crate: `neteq` (the closest, from videocall-rs) calls
//! itself an early preview and drives its own decoder, while meshcall wants the caller to run
//! Opus PLC/FEC and to pass time in so tests are deterministic.
//!
//! The buffer orders packets by RTP sequence number (extended past the u16 wrap), holds a
//! target number of frames chosen from the measured arrival jitter, and answers every 20 ms
//! playout tick with what the decoder should do. Drift between sender and receiver clocks is
//! steered out by dropping one frame when the queue stays above target and stretching by one
//! concealed frame when it stays below.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{FRAME_DURATION, SAMPLE_RATE};

const FRAME_MS: f64 = 20.0;
/// How far back the least packet delay is looked for: the delay with no queue on the path.
const DELAY_BASE_WINDOW: Duration = Duration::from_secs(10);
/// How fast the delay peak the target covers is forgotten, ms per second of arrivals.
const PEAK_DECAY_MS_PER_S: f64 = 20.0;

/// Limits of one jitter buffer.
#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// Smallest target delay; below two frames any reordering becomes loss.
    pub min_delay: Duration,
    /// Largest target delay; beyond this conversation starts to feel laggy.
    pub max_delay: Duration,
    /// Most packets held at once; older ones are dropped first.
    pub capacity: usize,
    /// Frames concealed in a row while starved before going silent and re-buffering.
    pub max_starved_frames: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(40),
            // A queue on a slow link (a few hundred ms that builds and drains every few
            // seconds) starved a 120 ms buffer and then overfilled it: 3-6 % of the audio
            // was played as silence or dropped. 200 ms one way is still a conversation.
            max_delay: Duration::from_millis(200),
            // One second: enough for any burst we would still want to play.
            capacity: 50,
            max_starved_frames: 5,
        }
    }
}

/// What the decoder should do for this 20 ms tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Packet(Vec<u8>),
    /// The frame was lost; decode it from the FEC data in this (the following) packet.
    Fec(Vec<u8>),
    /// Nothing to decode: run packet-loss concealment.
    Conceal,
    /// Not playing (buffering or the peer went quiet): output silence, do not touch the decoder.
    Silence,
}

/// Counters for tests, logs and a call-statistics panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub received: u64,
    /// Packets handed out for normal decoding.
    pub played: u64,
    /// Missing frames recovered from FEC.
    pub fec: u64,
    /// Missing frames concealed because no later packet was there.
    pub concealed: u64,
    /// Ticks with nothing buffered at all (sender late or gone).
    pub starved: u64,
    /// Of those, the ticks that played concealment (the rest were silence).
    pub starved_concealed: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets dropped because the buffer was full or far over its target.
    pub overflow: u64,
    /// Frames dropped to pull the delay down to target (fast sender, burst).
    pub drift_drops: u64,
    /// Frames inserted to push the delay up to target (slow sender).
    pub drift_inserts: u64,
    /// Times the buffer restarted because the stream jumped.
    pub resets: u64,
}

struct Buffered {
    payload: Vec<u8>,
    arrival: Instant,
}

/// An adaptive jitter buffer for one remote peer's audio.
pub struct JitterBuffer {
    config: JitterConfig,
    packets: BTreeMap<i64, Buffered>,
    highest: Option<i64>,
    next: Option<i64>,
    playing: bool,
    starved_in_row: u32,
    /// RFC 3550 style interarrival jitter, in milliseconds.
    jitter_ms: f64,
    last_arrival: Option<(Instant, u32)>,
    /// Exponential average of the queue length in frames, observed at each tick.
    smoothed_level: f64,
    /// The first arrival, as the origin of packet delays.
    anchor: Option<(Instant, i64)>,
    /// Candidates for the least packet delay over [`DELAY_BASE_WINDOW`] (a monotonic
    /// queue: arrival, delay in ms), so a packet's delay above it is what the path queued.
    delay_base: VecDeque<(Instant, f64)>,
    /// The largest delay above the base seen lately, decaying: what the target covers.
    peak_ms: f64,
    last_peak_at: Option<Instant>,
    last_buffer_delay: Option<Duration>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer with `config`.
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            playing: false,
            starved_in_row: 0,
            jitter_ms: 0.0,
            last_arrival: None,
            smoothed_level: 0.0,
            anchor: None,
            delay_base: VecDeque::new(),
            peak_ms: 0.0,
            last_peak_at: None,
            last_buffer_delay: None,
            stats: JitterStats::default(),
        }
    }

    /// Adds a received packet. `arrival` is when the network handed it over.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Vec<u8>, arrival: Instant) {
        let ext = self.extend(seq);
        if let Some(next) = self.next {
            // Far behind or far ahead means the sender restarted or we missed over a second:
            // holding on to the old position would drop or stall everything that follows.
            let far_behind = next - ext > 1000;
            let far_ahead = ext - next > self.config.capacity as i64 * 2;
            if far_behind || far_ahead {
                tracing::debug!(seq, "jitter buffer: stream jumped, restarting");
                self.reset();
                return self.push(seq, timestamp, payload, arrival);
            }
            if ext < next {
                self.stats.late += 1;
                return;
            }
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.update_jitter(timestamp, arrival);
        self.update_delay_peak(ext, arrival);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.packets.insert(ext, Buffered { payload, arrival });
        self.stats.received += 1;
        while self.packets.len() > self.config.capacity {
            if let Some((oldest, _)) = self.packets.pop_first() {
                self.stats.overflow += 1;
                if let Some(next) = self.next.as_mut() {
                    *next = (*next).max(oldest + 1);
                }
            }
        }
    }

    /// Called once per 20 ms playout tick at `now`: what to feed the decoder.
    pub fn pull(&mut self, now: Instant) -> Playout {
        let target = self.target_frames();
        if !self.playing {
            let Some(&first) = self.packets.keys().next() else {
                return Playout::Silence;
            };
            // Never started: begin at the oldest packet. Re-buffering: keep the old playout point.
            let start = self.next.unwrap_or(first);
            if self.span_from(start) < target {
                return Playout::Silence;
            }
            self.playing = true;
            self.next = Some(self.next.unwrap_or(first));
            self.smoothed_level = self.level() as f64;
        }
        let level = self.level();
        self.smoothed_level += (level as f64 - self.smoothed_level) / 16.0;

        let max_frames = frames_for(self.config.max_delay);
        if level > max_frames + 2 {
            // A released stall or burst: waiting for the average to notice would play seconds
            // of stale speech. Cut straight back to target.
            while self.level() > target {
                if self.skip_one() {
                    self.stats.overflow += 1;
                }
            }
            self.smoothed_level = self.level() as f64;
        } else if self.smoothed_level > target as f64 + 2.0 && level > target {
            // Sender clock faster than ours (or delay left over from a burst).
            if self.skip_one() {
                self.stats.drift_drops += 1;
            }
            self.smoothed_level -= 1.0;
        } else if self.smoothed_level < target as f64 - 1.0
            && level > 0
            && level < target
            && self.next_is_buffered()
        {
            // Sender clock slower than ours: stretch now rather than starve later.
            self.stats.drift_inserts += 1;
            self.smoothed_level += 1.0;
            return Playout::Conceal;
        }
        self.play_next(now)
    }

    /// The delay the buffer is steering toward.
    pub fn target_delay(&self) -> Duration {
        FRAME_DURATION * self.target_frames() as u32
    }

    /// Frames queued between the playout point and the newest packet (holes included).
    pub fn level(&self) -> usize {
        match (self.next, self.highest) {
            (Some(next), Some(high)) if high >= next => (high - next + 1) as usize,
            (None, Some(_)) => self.packets.len(),
            _ => 0,
        }
    }

    /// Packets held right now; never above the configured capacity.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when no packet is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Measured interarrival jitter.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter_ms / 1000.0)
    }

    /// How long the last normally played packet waited in the buffer.
    pub fn last_buffer_delay(&self) -> Option<Duration> {
        self.last_buffer_delay
    }

    /// Counters since creation.
    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    fn play_next(&mut self, now: Instant) -> Playout {
        let Some(next) = self.next else {
            return Playout::Silence;
        };
        if let Some(packet) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            self.starved_in_row = 0;
            self.stats.played += 1;
            self.last_buffer_delay = Some(now.saturating_duration_since(packet.arrival));
            return Playout::Packet(packet.payload);
        }
        if self.level() == 0 {
            // Nothing at all: the packet may only be late, so keep the playout point and
            // stretch. If the sender stays away, fall silent and buffer up again.
            self.stats.starved += 1;
            self.starved_in_row += 1;
            if self.starved_in_row > self.config.max_starved_frames {
                self.playing = false;
                return Playout::Silence;
            }
            self.stats.starved_concealed += 1;
            return Playout::Conceal;
        }
        // A hole with newer packets behind it: the frame is lost.
        self.next = Some(next + 1);
        self.starved_in_row = 0;
        match self.packets.get(&(next + 1)) {
            Some(following) => {
                self.stats.fec += 1;
                Playout::Fec(following.payload.clone())
            }
            None => {
                self.stats.concealed += 1;
                Playout::Conceal
            }
        }
    }

    /// Moves the playout point one frame on; true when a packet was thrown away.
    fn skip_one(&mut self) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        self.next = Some(next + 1);
        self.packets.remove(&next).is_some()
    }

    fn next_is_buffered(&self) -> bool {
        self.next.is_some_and(|n| self.packets.contains_key(&n))
    }

    fn span_from(&self, start: i64) -> usize {
        match self.highest {
            Some(high) if high >= start => (high - start + 1) as usize,
            _ => 0,
        }
    }

    fn target_frames(&self) -> usize {
        // One frame of packetisation plus three times the mean deviation covers most arrivals;
        // a queue that builds slowly shows little deviation from packet to packet, so the
        // recent peak of delay above the base is covered too (as NetEq's delay histogram
        // does).
        let ms = (FRAME_MS + 3.0 * self.jitter_ms)
            .max(FRAME_MS + self.peak_ms)
            .clamp(
                self.config.min_delay.as_secs_f64() * 1000.0,
                self.config.max_delay.as_secs_f64() * 1000.0,
            );
        (ms / FRAME_MS).ceil() as usize
    }

    fn extend(&self, seq: u16) -> i64 {
        match self.highest {
            None => i64::from(seq),
            Some(high) => {
                // The difference as i16 picks the nearest of the candidates around the wrap.
                let delta = seq.wrapping_sub(high as u16) as i16;
                high + i64::from(delta)
            }
        }
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        if let Some((prev_arrival, prev_ts)) = self.last_arrival {
            let arrival_ms = signed_ms(arrival, prev_arrival);
            let media_ms =
                f64::from(timestamp.wrapping_sub(prev_ts) as i32) * 1000.0 / f64::from(SAMPLE_RATE);
            let d = (arrival_ms - media_ms).abs();
            // A timestamp jump (sender restart) or an outage of over a second is not jitter:
            // covering it would keep the delay at its maximum long after the network healed.
            if media_ms.abs() < 1000.0 && d < 1000.0 {
                // Rise fast so a bursty network is covered at once, fall slowly so one quiet
                // second does not shrink the buffer just before the next spike.
                let gain = if d > self.jitter_ms { 0.25 } else { 1.0 / 64.0 };
                self.jitter_ms += (d - self.jitter_ms) * gain;
            }
        }
        self.last_arrival = Some((arrival, timestamp));
    }

    /// Tracks each packet's delay above the least lately (sequence numbers are 20 ms apart,
    /// so `ext` is the media clock) and the decaying peak of it.
    fn update_delay_peak(&mut self, ext: i64, arrival: Instant) {
        let (t0, seq0) = *self.anchor.get_or_insert((arrival, ext));
        let delay = signed_ms(arrival, t0) - (ext - seq0) as f64 * FRAME_MS;
        while self.delay_base.back().is_some_and(|(_, d)| *d >= delay) {
            self.delay_base.pop_back();
        }
        self.delay_base.push_back((arrival, delay));
        while self
            .delay_base
            .front()
            .is_some_and(|(t, _)| arrival.saturating_duration_since(*t) > DELAY_BASE_WINDOW)
        {
            self.delay_base.pop_front();
        }
        let base = self.delay_base.front().map_or(delay, |(_, d)| *d);
        // Beyond the largest target a peak only makes it last longer: cap it there.
        let cap = self.config.max_delay.as_secs_f64() * 1000.0;
        let above = (delay - base).clamp(0.0, cap);
        let elapsed = self
            .last_peak_at
            .map_or(0.0, |t| arrival.saturating_duration_since(t).as_secs_f64());
        self.last_peak_at = Some(arrival);
        self.peak_ms = (self.peak_ms - PEAK_DECAY_MS_PER_S * elapsed).max(above);
    }

    fn reset(&mut self) {
        self.anchor = None;
        self.delay_base.clear();
        self.peak_ms = 0.0;
        self.last_peak_at = None;
        self.packets.clear();
        self.highest = None;
        self.next = None;
        self.playing = false;
        self.starved_in_row = 0;
        self.last_arrival = None;
        self.stats.resets += 1;
    }
}

fn frames_for(delay: Duration) -> usize {
    (delay.as_secs_f64() * 1000.0 / FRAME_MS).ceil() as usize
}

fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1000.0
    } else {
        -((b - a).as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
