use serde::{Deserialize, Deserializer, Serialize};

use super::errors::ErrorCode;
use super::payload::SignalPayload;

/// A message a client sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    /// Join (or create) a room.
    Join(JoinRequest),
    /// Relay `payload` to peer `to`.
    Signal {
        /// The receiving peer's id.
        to: String,
        /// Opaque to the server; relayed as sent.
        payload: SignalPayload,
    },
    /// New display name or media state.
    State(StateUpdate),
    /// A chat message to the room.
    Chat {
        /// 1 to 2000 characters.
        text: String,
    },
    /// Leave the room now, without grace period.
    Leave,
    /// Publishing on the SFU works and every other member's media arrives through it
    /// (`docs/protocol-sfu.md`).
    SfuReady {
        /// The sender's Janus feed id.
        feed: u64,
    },
    /// The sender could not reach or use the SFU; the move is cancelled.
    SfuFailed {
        /// A sentence for logs.
        reason: String,
    },
}

/// The `features` value a client sends when it can take part in a room on Janus.
pub const FEATURE_SFU_JANUS: &str = "sfu-janus";

/// The fields of a `join`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The room to join; `None` (or `""` on the wire) asks the server to create one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The display name.
    pub name: String,
    /// The room's passcode, or the passcode for the room this join creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
    /// Whether the sender's microphone is on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub audio: bool,
    /// Whether the sender's camera is on.
    #[serde(default, deserialize_with = "null_as_default")]
    pub video: bool,
    /// Take back a place held during the resume grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeTicket>,
    /// Protocol additions the client supports (`docs/protocol-sfu.md`), e.g.
    /// [`FEATURE_SFU_JANUS`].
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub features: Vec<String>,
}

/// What a client needs to resume its membership after its socket dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTicket {
    /// The peer id from `joined.self`.
    pub id: String,
    /// The latest `joined.token`.
    pub token: String,
}

/// The fields of a `state` message; absent fields stay as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Microphone on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    /// Camera on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<bool>,
    /// Screen share on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<bool>,
}

/// A message the server sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// The client is in the room.
    Joined {
        /// The room code.
        room: String,
        /// The client's own peer id.
        #[serde(rename = "self")]
        self_id: String,
        /// The resume token; only the latest one works.
        token: String,
        /// Every other member, including those inside a resume grace period.
        peers: Vec<Peer>,
        /// STUN/TURN servers for the peer connections.
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServer>,
        /// The room's last chat messages, oldest first.
        chat: Vec<ChatMessage>,
        /// Whether this join resumed an earlier membership.
        resumed: bool,
        /// The room runs on this SFU: publish and subscribe there, open no mesh links
        /// (`docs/protocol-sfu.md`; only ever sent to clients that declared the feature).
        /// Boxed: it is rare, and `joined` is the largest message already.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sfu: Option<Box<SfuRoom>>,
    },
    /// Someone joined.
    PeerJoined {
        /// The newcomer.
        peer: Peer,
    },
    /// Someone's name or media state changed.
    PeerUpdated {
        /// The member as it is now.
        peer: Peer,
    },
    /// Someone left or was gone past the grace period.
    PeerLeft {
        /// The member's id.
        id: String,
    },
    /// A payload relayed from another peer.
    Signal {
        /// The sender, stamped by the server.
        from: String,
        /// As the sender sent it.
        payload: SignalPayload,
    },
    /// A chat message (also echoed to its sender).
    Chat(ChatMessage),
    /// The room moves onto an SFU: publish there, subscribe to everyone, then close the
    /// mesh links (`docs/protocol-sfu.md`). Only sent to clients that declared the feature.
    MoveToSfu {
        /// Where the room's media goes.
        sfu: SfuRoom,
        /// STUN/TURN servers for the connections to the SFU.
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServer>,
    },
    /// The move was called off: close the SFU connections and keep the mesh.
    MoveCancelled,
    /// Something the client sent was refused.
    Error {
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// A room on an SFU, as `move-to-sfu` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfuRoom {
    /// Which SFU API: [`SFU_KIND_JANUS`] is the only one today.
    pub kind: String,
    /// The SFU's WebSocket API as members reach it.
    pub url: String,
    /// The SFU's room number.
    pub room: u64,
    /// The room's pin, needed to join it.
    pub pin: String,
}

/// [`SfuRoom::kind`] for Janus' VideoRoom plugin.
pub const SFU_KIND_JANUS: &str = "janus-videoroom";

/// A room member as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The server-assigned peer id.
    pub id: String,
    /// The display name.
    pub name: String,
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
    /// Screen share on.
    pub screen: bool,
}

/// One chat message, as broadcast and as kept in the room's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The sender's peer id.
    pub from: String,
    /// The sender's display name when it was sent.
    pub name: String,
    /// The text.
    pub text: String,
    /// When the server received it, Unix milliseconds.
    pub ts: u64,
}

/// An RTCIceServer as browsers and webrtc stacks take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// One or more `stun:`/`turn:` URLs (a single string is accepted when reading).
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The protocol says an optional field sent as `null` counts as absent.
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}
