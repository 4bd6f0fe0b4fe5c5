//! The signaling protocol v1 (`shared/protocol.md`): message types and the rules for codes
//! and names. Pure data: no sockets, no tokio, no webrtc.

mod codes;
mod errors;
mod messages;
mod parse;
mod payload;

pub use codes::{
    MAX_NAME_CHARS, MAX_ROOM_CODE_CHARS, MIN_ROOM_CODE_CHARS, generate_room_code,
    normalize_room_code, validate_name,
};
pub use errors::ErrorCode;
pub use messages::{
    ChatMessage, ClientMessage, FEATURE_SFU_JANUS, IceServer, JoinRequest, Peer, ResumeTicket,
    SFU_KIND_JANUS, ServerMessage, SfuRoom, StateUpdate,
};
pub use parse::{ParseError, parse_client_message, parse_server_message};
pub use payload::{IceCandidateInit, PeerPayload, SessionDescription, SignalPayload};

/// The WebSocket path the server listens on.
pub const WS_PATH: &str = "/ws";
/// Largest frame payload a peer may send, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest serialized `signal` payload, in bytes.
pub const MAX_SIGNAL_PAYLOAD_BYTES: usize = 32 * 1024;
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;
/// How many chat messages a room keeps for newcomers.
pub const CHAT_HISTORY: usize = 50;
