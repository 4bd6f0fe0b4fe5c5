//! The pipelines between devices and the call: capture and encode on the way out, decode
//! and play on the way in, each on threads of its own. The call is on the other side of
//! two small contracts, so nothing here knows of connections or RTP:
//! [`MediaOutlet`] (what the encoders hand over, and what they are asked to make) and
//! [`RemoteMediaSink`] (what the receive path hands in, per member).

mod outlet;
mod sink;

pub use outlet::MediaOutlet;
pub(crate) use sink::{RemoteMediaSink, SinkFactory};
