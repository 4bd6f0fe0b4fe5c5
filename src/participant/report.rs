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
    /// Sharing their screen.
    pub screen: bool,
}

/// A member's announced flags from some moment on.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    /// When we heard it, ms after we joined (0: as we found them).
    pub at_ms: u64,
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
}

/// One of our own devices that stopped during the call.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceFailureReport {
    /// `camera` or `microphone`.
    pub kind: String,
    /// What happened, as the engine reported it.
    pub message: String,
    /// When, ms after we joined.
    pub at_ms: u64,
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
    /// Their video bitrate, kbit/s, mean of the last 10 s.
    pub video_kbps: f64,
    /// Their frames decoded per second over the last 10 s.
    pub fps: f64,
    /// Size of their last decoded frame, e.g. `640x360` (null if none came).
    pub resolution: Option<String>,
    /// Inter-frame gaps longer than max(3 x the mean interval, 150 ms), as WebRTC counts.
    pub freezes: u64,
    /// The total length of those gaps, ms.
    pub freeze_ms: u64,
    /// The longest time between two of their decoded frames, ms (0 before two came).
    pub max_gap_ms: u64,
    /// Audio frames of theirs made up by concealment because nothing came in time.
    pub audio_concealed: u64,
    /// Their video packets we asked for again (NACKed sequence numbers).
    pub nack_sent: u64,
    /// Their video packets that came late, answering our NACKs (retransmissions).
    pub rtx_received: u64,
    /// Of those, the ones that completed a picture we then showed.
    pub rtx_used: u64,
    /// Keyframe requests (PLI) we sent them.
    pub keyframe_requests: u64,
    /// Their packets lost on the way, percent, before retransmission.
    pub loss_pct: f64,
    /// The video layer we send them at the end (`640x360`, or `paused`; null without video).
    pub layer: Option<String>,
    /// Their last announced audio/video flags.
    pub state: MediaState,
    /// Every change of those flags, oldest first.
    pub state_changes: Vec<StateChange>,
    /// Whether they left before we did.
    pub left: bool,
    /// Our candidate's type in the selected ICE pair at the end (`host`, `srflx`, `prflx`,
    /// `relay`): `relay` means the media went through a TURN server. Null if none was.
    pub candidate: Option<String>,
    /// Their candidate's type in that pair.
    pub remote_candidate: Option<String>,
    /// Frames of their screen share decoded.
    pub screen_frames: u64,
    /// From our join (or their share's start, if later, as we heard of it) to the first
    /// decoded frame of their share, ms (null if none came).
    pub screen_first_ms: Option<u64>,
    /// Size of the last decoded frame of their share, [width, height] (null if none).
    pub screen_size: Option<[u32; 2]>,
    /// Glass-to-glass latency of their share from its time band (null without one).
    pub screen_latency_ms: Option<Latency>,
    /// Their share's decoded frames per second over the last 10 s.
    pub screen_fps: f64,
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
    /// Frames of our screen share captured, and encoded (one run per captured frame
    /// while anyone receives it, however many peers).
    pub screen_captured_frames: u64,
    /// See `screen_captured_frames`.
    pub screen_encoded_frames: u64,
    /// The most video m-sections any of our connections negotiated (2 with a share: the
    /// camera's and the screen's; a share started again adds none).
    pub video_m_sections: usize,
    /// Encoder runs per layer, smallest first (`320x180` → n); a layer nobody receives is
    /// not encoded.
    pub layer_encodes: BTreeMap<String, u64>,
    /// What each member sent us, by peer id.
    pub peers: BTreeMap<String, PeerReport>,
    /// Sources or devices that could not be used.
    pub problems: Vec<String>,
    /// Our devices that stopped mid-call (a retry that could not start one adds another).
    pub device_failures: Vec<DeviceFailureReport>,
}
