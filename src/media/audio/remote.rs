//! The receive side for all remote peers: a jitter buffer and an Opus decoder per peer, mixed
//! into one frame per playout tick. Pure logic; the playback thread drives it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use super::codec::OpusDecoder;
use super::error::AudioError;
use super::frame::FRAME_SAMPLES;
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::mixer::Mixer;

struct Peer {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    frame: [f32; FRAME_SAMPLES],
}

/// Every remote peer's audio, keyed by `K` (the engine's peer id).
pub struct RemoteAudio<K> {
    peers: HashMap<K, Peer>,
    mixer: Mixer<K>,
    jitter_config: JitterConfig,
}

impl<K: Hash + Eq + Clone> RemoteAudio<K> {
    /// No peers yet; each new peer gets a jitter buffer with `jitter_config`.
    pub fn new(jitter_config: JitterConfig) -> Self {
        Self {
            peers: HashMap::new(),
            mixer: Mixer::new(),
            jitter_config,
        }
    }

    /// Prepares a peer (also done implicitly by the first [`push`](Self::push)).
    pub fn add_peer(&mut self, peer: K) -> Result<(), AudioError> {
        if !self.peers.contains_key(&peer) {
            let state = Peer {
                jitter: JitterBuffer::new(self.jitter_config.clone()),
                decoder: OpusDecoder::new()?,
                frame: [0.0; FRAME_SAMPLES],
            };
            self.peers.insert(peer, state);
        }
        Ok(())
    }

    /// Forgets a peer that left; its buffered audio is discarded.
    pub fn remove_peer(&mut self, peer: &K) {
        self.peers.remove(peer);
        self.mixer.remove(peer);
    }

    /// Hands over one received RTP packet of `peer`.
    pub fn push(
        &mut self,
        peer: &K,
        seq: u16,
        timestamp: u32,
        payload: Vec<u8>,
        arrival: Instant,
    ) -> Result<(), AudioError> {
        if !self.peers.contains_key(peer) {
            self.add_peer(peer.clone())?;
        }
        if let Some(state) = self.peers.get_mut(peer) {
            state.jitter.push(seq, timestamp, payload, arrival);
        }
        Ok(())
    }

    /// Produces the next 20 ms of everyone's audio mixed into `out`.
    pub fn next_frame(&mut self, now: Instant, out: &mut [f32; FRAME_SAMPLES]) {
        for state in self.peers.values_mut() {
            let result = match state.jitter.pull(now) {
                Playout::Packet(p) => state.decoder.decode(&p, &mut state.frame),
                Playout::Fec(next) => state.decoder.decode_fec(&next, &mut state.frame),
                Playout::Conceal => state.decoder.conceal(&mut state.frame),
                Playout::Silence => {
                    state.frame.fill(0.0);
                    Ok(())
                }
            };
            if let Err(e) = result {
                // One corrupt packet must not silence the call: play a gap and carry on.
                tracing::debug!("audio decode failed: {e}");
                state.frame.fill(0.0);
            }
        }
        self.mixer
            .mix(self.peers.iter().map(|(k, s)| (k, &s.frame)), out);
    }

    /// Each peer's level in dBFS, for meters and the active-speaker highlight.
    pub fn levels(&self) -> Vec<(K, f32)> {
        self.mixer.levels()
    }

    /// The loudest peer above `threshold_dbfs`.
    pub fn active_speaker(&self, threshold_dbfs: f32) -> Option<K> {
        self.mixer.active_speaker(threshold_dbfs)
    }

    /// A peer's jitter-buffer counters.
    pub fn stats(&self, peer: &K) -> Option<JitterStats> {
        self.peers.get(peer).map(|s| s.jitter.stats().clone())
    }

    /// Peers currently known.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::audio::analysis::goertzel_amplitude;
    use crate::media::audio::codec::OpusEncoder;
    use crate::media::audio::tone::{ToneConfig, ToneGenerator};

    fn packets(freq: f32, amplitude: f32, n: usize) -> Vec<Vec<u8>> {
        let mut tone = ToneGenerator::new(ToneConfig {
            frequency: freq,
            amplitude,
            ..ToneConfig::default()
        });
        let mut enc = OpusEncoder::new(32_000, 10).unwrap();
        (0..n)
            .map(|_| {
                enc.encode(&tone.next_frame(Instant::now()).samples)
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn peers_are_decoded_mixed_and_can_leave() {
        let a = packets(440.0, 0.3, 100);
        let b = packets(1000.0, 0.1, 100);
        let mut remote = RemoteAudio::new(JitterConfig::default());
        let t0 = Instant::now();
        let mut out = [0.0; FRAME_SAMPLES];
        let mut mixed = Vec::new();
        for i in 0..100usize {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let (seq, ts) = (i as u16, i as u32 * 960);
            remote.push(&"a", seq, ts, a[i].clone(), now).unwrap();
            // b starts at another sequence number, as a separate RTP stream would.
            remote
                .push(&"b", seq.wrapping_add(40_000), ts, b[i].clone(), now)
                .unwrap();
            remote.next_frame(now, &mut out);
            if i >= 60 {
                mixed.extend_from_slice(&out);
            }
        }
        // Both tones are in the mix at their own levels.
        let at_440 = goertzel_amplitude(&mixed, 48_000, 440.0);
        let at_1k = goertzel_amplitude(&mixed, 48_000, 1000.0);
        assert!((at_440 - 0.3).abs() < 0.05, "440 Hz at {at_440}");
        assert!((at_1k - 0.1).abs() < 0.03, "1 kHz at {at_1k}");
        assert_eq!(remote.active_speaker(-60.0), Some("a"));
        let levels: HashMap<_, _> = remote.levels().into_iter().collect();
        assert!((levels[&"a"] - -13.5).abs() < 1.5, "{levels:?}"); // 0.3/sqrt(2) = -13.5 dBFS
        assert!((levels[&"b"] - -23.0).abs() < 1.5, "{levels:?}"); // 0.1/sqrt(2) = -23.0 dBFS

        remote.remove_peer(&"a");
        assert_eq!(remote.peer_count(), 1);
        let now = t0 + Duration::from_secs(3);
        remote.next_frame(now, &mut out);
        remote.next_frame(now, &mut out);
        assert!(goertzel_amplitude(&out, 48_000, 440.0) < 0.01);
        assert_eq!(remote.levels().len(), 1);
    }

    #[test]
    fn garbage_payload_plays_a_gap_not_a_panic() {
        let mut remote = RemoteAudio::new(JitterConfig::default());
        let t0 = Instant::now();
        let mut out = [1.0; FRAME_SAMPLES];
        for i in 0..10u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            remote
                .push(&7u32, i, u32::from(i) * 960, vec![0xff; 3], now)
                .unwrap();
            remote.next_frame(now, &mut out);
            assert!(out.iter().all(|s| s.abs() <= 1.0));
        }
        assert_eq!(remote.stats(&7).unwrap().received, 10);
    }
}
