//! A sink that counts what arrives from each member (the headless participant's measure,
//! and what tests check). The sink contract itself, and the decoding sinks, are media's
//! (`media/pipeline/sink.rs`, `media/pipeline/incoming.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::media::pipeline::{RemoteMediaSink, SinkFactory, VideoQuality};
use crate::media::video::AccessUnit;

/// Per-member counters.
#[derive(Default)]
pub struct Counter {
    video: AtomicU64,
    keyframes: AtomicU64,
    audio: AtomicU64,
    screen: AtomicU64,
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
    /// Complete screen-share access units received.
    pub fn screen_frames(&self) -> u64 {
        self.screen.load(Ordering::Relaxed)
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
    fn screen(&self, _au: AccessUnit) {
        self.0.screen.fetch_add(1, Ordering::Relaxed);
    }
    fn audio(&self, _seq: u16, _timestamp: u32, _payload: Bytes) {
        self.0.audio.fetch_add(1, Ordering::Relaxed);
    }
    fn counts(&self) -> (u64, u64) {
        (self.0.video_frames(), self.0.audio_packets())
    }
    // Nothing is decoded here, so nothing can fail or be measured.
    fn take_decoder_failure(&self) -> bool {
        false
    }
    fn take_screen_decoder_failure(&self) -> bool {
        false
    }
    fn video_quality(&self) -> Option<VideoQuality> {
        None
    }
    fn audio_concealed(&self) -> u64 {
        0
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
