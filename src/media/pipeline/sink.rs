//! Where a member's incoming media goes: the sink the call hands each complete access unit
//! and Opus packet to, and the factory it makes one per member with. The engine calls
//! these; media implements them (decoding, `incoming.rs`) and so does the engine's
//! counting sink for tests.

use std::sync::Arc;

use bytes::Bytes;

use super::VideoQuality;
use crate::media::video::AccessUnit;

/// Where one member's incoming media goes (decoders, or counters in tests).
pub(crate) trait RemoteMediaSink: Send + Sync + 'static {
    /// A complete, decodable H.264 access unit.
    fn video(&self, au: AccessUnit);
    /// A complete access unit of their screen share (the second video m-section).
    fn screen(&self, au: AccessUnit);
    /// Whether the share's decoder failed since the last call and needs a keyframe.
    fn take_screen_decoder_failure(&self) -> bool;
    /// One Opus packet with its RTP sequence number and timestamp.
    fn audio(&self, seq: u16, timestamp: u32, payload: Bytes);
    /// Whether the decoder failed since the last call and needs a keyframe.
    fn take_decoder_failure(&self) -> bool;
    /// Video frames and audio packets delivered so far.
    fn counts(&self) -> (u64, u64);
    /// How their video looks once decoded: frame rate over the last 10 s, size, freezes.
    /// None from a sink that does not decode.
    fn video_quality(&self) -> Option<VideoQuality>;
    /// Their audio frames made up by concealment because nothing came in time.
    fn audio_concealed(&self) -> u64;
}

/// Makes the sink for a new member's media.
pub(crate) type SinkFactory = Arc<dyn Fn(&str) -> Arc<dyn RemoteMediaSink> + Send + Sync>;
