//! The JSON report `meshcall join` writes at the end.

use std::collections::BTreeMap;

use serde::Serialize;

/// Glass-to-glass latency percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median, milliseconds.
    pub p50: u32,
    /// 95th percentile, milliseconds.
    pub p95: u32,
}

/// A member's last announced media state.
#[derive(Debug, Clone, Serialize)]
pub struct MediaState {
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
}

/// What we got from one member.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// Display name.
    pub name: String,
    /// Video frames decoded.
    pub video_frames: u64,
    /// Audio frames decoded.
    pub audio_frames: u64,
    /// Mean RMS of their decoded audio (0 when silent).
    pub audio_rms: f64,
    /// Time since their last audio frame at exit, ms (null if none ever came).
    pub last_audio_ms: Option<u64>,
    /// Time since their last decoded video frame at exit, ms (null if none ever came).
    pub last_video_ms: Option<u64>,
    /// From their test pattern's time band; null if they do not send the pattern.
    pub latency_ms: Option<Latency>,
    /// Last measured round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Their last announced audio/video flags.
    pub state: MediaState,
    /// Whether they left before we did.
    pub left: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Room code.
    pub room: String,
    /// Our peer id.
    #[serde(rename = "self")]
    pub self_id: String,
    /// From sending `join` to the first decoded remote video frame, ms (null if none came).
    pub join_ms: Option<u64>,
    /// Frames captured while the camera was on.
    pub captured_frames: u64,
    /// Encoder runs; equal to `captured_frames` however many peers there are.
    pub encoded_frames: u64,
    /// Audio frames we encoded and sent.
    pub sent_audio_frames: u64,
    /// What each member sent us, by peer id.
    pub peers: BTreeMap<String, PeerReport>,
    /// Sources or devices that could not be used.
    pub problems: Vec<String>,
}
