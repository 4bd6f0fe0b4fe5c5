//! What the engine's consumers (the desktop app, the headless participant) see: commands
//! in, events out. Nothing here names a webrtc type.

use std::net::IpAddr;
use std::time::Duration;

use crate::client::ConnectionState;
pub use crate::media::DeviceKind;
use crate::media::pipeline::VideoQuality;
use crate::proto::ChatMessage;

/// How the engine joins and behaves.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Signaling server URL (`ws://host:port`, `http://…` and bare `host:port` work too).
    pub server: String,
    /// Room to join; `None` creates one.
    pub room: Option<String>,
    /// Display name.
    pub name: String,
    /// Passcode for the room (or for the room this join creates).
    pub passcode: Option<String>,
    /// Whether the microphone starts on.
    pub audio: bool,
    /// Whether the camera starts on.
    pub video: bool,
    /// Relay only for this call (the app's Advanced setting), as
    /// [`EngineConfig::relay_only`] is for every call.
    pub relay_only: bool,
}

/// Settings that hold for every call the engine makes.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local addresses ICE may use for host candidates. Empty: every interface.
    /// Tests pin this to 127.0.0.1 so no traffic leaves loopback.
    pub ice_ips: Vec<IpAddr>,
    /// Video bitrate range for the congestion controller, bits per second.
    pub min_bitrate: u32,
    /// See `min_bitrate`.
    pub max_bitrate: u32,
    /// How often per-member stats are reported.
    pub stats_interval: Duration,
    /// ICE consent lost this long: the link shows Reconnecting.
    pub ice_disconnected_timeout: Duration,
    /// Consent lost this much longer: the connection has failed and is rebuilt.
    pub ice_failed_timeout: Duration,
    /// Use only relay (TURN) candidates (`iceTransportPolicy: relay`): no host or
    /// server-reflexive candidates are gathered, so every connection goes through the
    /// TURN server the signaling server hands out, and none forms without one.
    pub relay_only: bool,
}

/// The environment variable that pins ICE host candidates (comma-separated IPs).
pub const ICE_IP_ENV: &str = "MESHCALL_ICE_IP";

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ice_ips: Vec::new(),
            // The congestion controller may go this low, so a link that cannot carry even
            // the smallest video layer shows as such (the policy then pauses video to it).
            min_bitrate: 30_000,
            max_bitrate: 2_500_000,
            stats_interval: Duration::from_secs(1),
            // webrtc-rs's own defaults.
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(25),
            relay_only: false,
        }
    }
}

impl EngineConfig {
    /// Defaults, with `ice_ips` from `MESHCALL_ICE_IP` when set.
    pub fn from_env() -> Result<Self, String> {
        let mut config = Self::default();
        if let Ok(value) = std::env::var(ICE_IP_ENV) {
            config.ice_ips = parse_ips(&value)?;
        }
        Ok(config)
    }
}

/// Parses `127.0.0.1` or `127.0.0.1,::1`.
pub fn parse_ips(value: &str) -> Result<Vec<IpAddr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("'{s}' is not an IP address")))
        .collect()
}

/// What a consumer asks of the engine.
#[derive(Debug, Clone)]
pub enum Command {
    /// Join (or create) a room. Answered by [`Event::Joined`] or [`Event::JoinFailed`].
    Join(JoinParams),
    /// Turn the microphone on or off (no renegotiation).
    SetMic(bool),
    /// Turn the camera on or off (no renegotiation).
    SetCamera(bool),
    /// Start or stop sharing the screen. The frames come in through
    /// [`crate::engine::MediaInput`]'s screen input; the first share on a connection adds
    /// its second video m-section (protocol.md) and renegotiates, later ones reuse it.
    SetScreen(bool),
    /// Change the display name.
    SetName(String),
    /// Send a chat message.
    Chat(String),
    /// Leave the room; the engine then reports [`Event::Left`].
    Leave,
}

/// A room member as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Peer id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Microphone on (as they announced).
    pub audio: bool,
    /// Camera on (as they announced).
    pub video: bool,
    /// Sharing their screen (as they announced).
    pub screen: bool,
    /// Media link to them.
    pub link: LinkState,
}

/// The state of the media connection to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Negotiating.
    Connecting,
    /// Media can flow.
    Connected,
    /// The connection was lost; trying to get it back.
    Reconnecting,
    /// Gave up on this connection.
    Failed,
}

/// Numbers about one member, about once a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberStats {
    /// Round-trip time of the ICE candidate pair, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Bits per second received from them.
    pub bitrate_in: f64,
    /// Bits per second sent to them.
    pub bitrate_out: f64,
    /// RTP packets from them that never arrived.
    pub packets_lost: i64,
    /// RTP packets from them that arrived (with `packets_lost`, the loss fraction).
    pub packets_received: u64,
    /// Video frames from them assembled (and, once decoding is wired, decoded).
    pub video_frames: u64,
    /// Video frames per second from them.
    pub fps: f64,
    /// Audio packets from them.
    pub audio_packets: u64,
    /// Inter-arrival jitter of their video, milliseconds.
    pub jitter_ms: f64,
    /// The congestion controller's estimate for what we send them, bits per second.
    pub target_bitrate: Option<f64>,
    /// Their video bits per second (payload and headers of their video stream).
    pub video_bitrate_in: f64,
    /// Loss of their packets over the last interval, percent (before retransmissions).
    pub loss_pct: f64,
    /// Sequence numbers of their video we asked for again (NACK).
    pub nacks_sent: u64,
    /// Sequence numbers of our video they asked for again.
    pub nacks_received: u64,
    /// Their video packets that came late (retransmissions answering our NACKs).
    pub retransmissions_received: u64,
    /// Of those, the ones that completed a picture we then showed.
    pub retransmissions_used: u64,
    /// Times we gave up waiting for missing video packets of theirs.
    pub video_losses: u64,
    /// Keyframe requests (PLI) we sent them.
    pub keyframe_requests_sent: u64,
    /// Loss of our video that they report (RTCP receiver reports), as a fraction.
    pub loss_reported_by_them: f64,
    /// Our video packets to them dropped for being too old to be worth sending.
    pub video_dropped_stale: u64,
    /// Loss of our audio that they report, as a fraction.
    pub audio_loss_reported_by_them: f64,
    /// The video layer we send them (`640x360`, or `paused`).
    pub layer: Option<String>,
    /// Their video as decoded here: frames per second over the last 10 s, size, freezes
    /// (as the participant report counts them). None when the engine only counts what
    /// arrives (`Engine::spawn` with `CountingSinks`).
    pub decoded: Option<VideoQuality>,
    /// Their audio frames made up by concealment because nothing came in time.
    pub audio_concealed: u64,
    /// The type of our candidate in the selected (nominated) ICE pair; None before a pair
    /// is selected.
    pub candidate: Option<CandidateKind>,
    /// The type of their candidate in that pair, as we learnt it.
    pub remote_candidate: Option<CandidateKind>,
}

/// An ICE candidate's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind {
    /// A local interface's address.
    Host,
    /// Our address as a STUN server saw it.
    Srflx,
    /// An address learnt from a connectivity check.
    Prflx,
    /// An address on a TURN server, which relays everything.
    Relay,
}

impl CandidateKind {
    /// As WebRTC's stats name it: `host`, `srflx`, `prflx`, `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// What the engine tells its consumers.
#[derive(Debug, Clone)]
pub enum Event {
    /// We are in the room.
    Joined {
        /// Room code.
        room: String,
        /// Our peer id.
        self_id: String,
        /// The others already there.
        members: Vec<Member>,
        /// The room's recent chat.
        chat: Vec<ChatMessage>,
    },
    /// The join was refused or the server unreachable.
    JoinFailed {
        /// The protocol error code, when the server refused.
        code: Option<crate::proto::ErrorCode>,
        /// For people.
        message: String,
    },
    /// The server did not resume us and we joined the room afresh under a new id (after a
    /// server restart, say). Everyone was reported gone just before; they come back as
    /// [`Event::MemberUpdated`]. Messages marked with the old id are no longer ours.
    Rejoined {
        /// Our new peer id.
        self_id: String,
    },
    /// Someone joined, changed, or their link changed state.
    MemberUpdated(Member),
    /// Someone left.
    MemberLeft {
        /// Peer id.
        id: String,
    },
    /// A chat message.
    Chat(ChatMessage),
    /// Per-member numbers.
    Stats {
        /// Peer id.
        id: String,
        /// The numbers.
        stats: MemberStats,
    },
    /// The signaling link changed state (media keeps flowing meanwhile).
    Signaling(ConnectionState),
    /// Something went wrong that the user should know about; the call goes on.
    Warning(String),
    /// A capture device stopped by itself (see [`crate::engine::MediaInput::device_failed`]).
    /// The engine has already turned that track off and told the room; the rest of the
    /// call goes on. Turning it back on ([`Command::SetCamera`], [`Command::SetMic`]) after
    /// restarting the capture is the retry.
    DeviceFailed {
        /// Which device.
        kind: DeviceKind,
        /// What happened, for people.
        message: String,
    },
    /// We left the room (or were removed); the engine is idle again.
    Left {
        /// Why, for people.
        reason: String,
    },
}
