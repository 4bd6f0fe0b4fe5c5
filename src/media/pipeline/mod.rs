//! The pipelines between devices and the call: capture and encode on the way out, decode
//! and play on the way in, each on threads of its own. The call is on the other side of
//! two small contracts, so nothing here knows of connections or RTP:
//! [`MediaOutlet`] (what the encoders hand over, and what they are asked to make) and
//! `RemoteMediaSink` (what the receive path hands in, per member).

mod incoming;
mod outgoing;
mod outlet;
mod sink;

pub use incoming::{EchoReference, RemoteMedia, RemoteMember, Speaker, VideoQuality};
pub use outgoing::{AudioChoice, LocalPipelines, OutgoingStats, VideoChoice, VideoFormat};
pub use outlet::MediaOutlet;
pub(crate) use sink::{RemoteMediaSink, SinkFactory};
