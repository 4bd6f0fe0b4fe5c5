//! Where a member's incoming media goes: the sink a peer task hands it to, the factory the
//! actor makes one per member with, and a sink that counts what arrives (the headless
//! participant's measure, and what tests check). Decoding sinks come with the media
//! pipeline (`media_in.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::video_receive::AccessUnit;

/// Where one member's incoming media goes (decoders, or counters in tests).
pub(crate) trait RemoteMediaSink: Send + Sync + 'static {
    /// A complete, decodable H.264 access unit.
    fn video(&self, au: AccessUnit);
    /// One Opus packet with its RTP sequence number and timestamp.
    fn audio(&self, seq: u16, timestamp: u32, payload: Bytes);
    /// Whether the decoder failed since the last call and needs a keyframe.
    fn take_decoder_failure(&self) -> bool {
        false
    }
    /// Video frames and audio packets delivered so far.
    fn counts(&self) -> (u64, u64);
}

/// Makes the sink for a new member's media.
pub(crate) type SinkFactory = Arc<dyn Fn(&str) -> Arc<dyn RemoteMediaSink> + Send + Sync>;

/// Per-member counters.
#[derive(Default)]
pub struct Counter {
    video: AtomicU64,
    keyframes: AtomicU64,
    audio: AtomicU64,
}

impl Counter {
    /// Complete video access units received.
    pub fn video_frames(&self) -> u64 {
        self.video.load(Ordering::Relaxed)
    }
    /// Of which keyframes.
    pub fn keyframes(&self) -> u64 {
        self.keyframes.load(Ordering::Relaxed)
    }
    /// Audio packets received.
    pub fn audio_packets(&self) -> u64 {
        self.audio.load(Ordering::Relaxed)
    }
}

struct CountingSink(Arc<Counter>);

impl RemoteMediaSink for CountingSink {
    fn video(&self, au: AccessUnit) {
        self.0.video.fetch_add(1, Ordering::Relaxed);
        if au.keyframe {
            self.0.keyframes.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn audio(&self, _seq: u16, _timestamp: u32, _payload: Bytes) {
        self.0.audio.fetch_add(1, Ordering::Relaxed);
    }
    fn counts(&self) -> (u64, u64) {
        (self.0.video_frames(), self.0.audio_packets())
    }
}

/// Counters for every member the engine has met, by peer id.
#[derive(Clone, Default)]
pub struct CountingSinks(Arc<Mutex<HashMap<String, Arc<Counter>>>>);

impl CountingSinks {
    /// The counter for member `id`, if media from them was ever expected.
    pub fn get(&self, id: &str) -> Option<Arc<Counter>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn factory(&self) -> SinkFactory {
        let map = Arc::clone(&self.0);
        Arc::new(move |id: &str| {
            let counter = Arc::clone(
                map.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(id.to_owned())
                    .or_default(),
            );
            Arc::new(CountingSink(counter)) as Arc<dyn RemoteMediaSink>
        })
    }
}
