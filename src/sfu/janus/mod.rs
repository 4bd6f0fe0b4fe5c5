//! A small client for the Janus API over WebSocket (subprotocol `janus-protocol`) and the
//! VideoRoom plugin's requests: sessions, handles, transactions, keepalives, trickle.
//!
//! Our own rather than `jarust`: the API we use is a dozen JSON messages, and this keeps
//! the one tokio-tungstenite and rustls the app already has (docs/sfu.md says more).

mod error;
mod transport;
mod videoroom;

pub use error::JanusError;
pub use transport::{HandleEvent, Janus, Jsep, JsepKind, PluginHandle, Session, Trickler};
pub use videoroom::{
    PublisherInfo, PublisherJoined, RoomConfig, StreamInfo, SubscriberOffer, VideoRoom,
    VideoRoomEvent,
};
