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
