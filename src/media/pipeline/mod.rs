//! The pipelines between devices and the call: capture and encode on the way out, decode
//! and play on the way in, each on threads of its own. The call is on the other side of
//! two small contracts, so nothing here knows of connections or RTP:
//! [`MediaOutlet`] (what the encoders hand over, and what they are asked to make) and
//! `RemoteMediaSink` (what the receive path hands in, per member).

use std::sync::{Mutex, MutexGuard};

mod incoming;
mod outgoing;
mod outlet;
mod remote_member;
mod screen;
mod sink;

pub use incoming::{EchoReference, RemoteMedia, Speaker};
pub use outgoing::{AudioChoice, LocalPipelines, OutgoingStats, VideoChoice, VideoFormat};
pub use outlet::MediaOutlet;
pub use remote_member::{RemoteMember, VideoQuality};
pub use screen::{ScreenPipeline, ScreenStats};
pub(crate) use sink::{RemoteMediaSink, SinkFactory};

/// Locks `m`, taking over a poisoned lock: these hold counters and the latest frame, which
/// stay usable after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
