//! The call engine: one tokio actor owning the signaling client and one peer connection
//! per remote member (full mesh), encode-once fan-out, keyframes, bandwidth and stats.
//! The only module that imports webrtc; it never touches egui. Consumers (the desktop app,
//! the headless participant) send [`Command`]s and read [`Event`]s.

mod actor;
mod api;
mod census;
mod estimator;
mod fanout;
mod janus_member;
mod keyframe_requests;
mod link_recovery;
mod link_shaper;
mod local_media;
mod negotiation;
mod pacer;
mod peer;
mod peer_factory;
mod policy;
mod probe;
mod queue_delay;
mod sfu_call;
mod sink_handover;
mod sinks;
mod stats;
mod turn_tcp;
mod video_fanout;
mod video_receive;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use api::{
    CandidateKind, Command, DeviceKind, EngineConfig, Event, ICE_IP_ENV, JoinParams, LinkState,
    Member, MemberStats, parse_ips,
};
pub use janus_member::{
    FeedCounts, JanusMember, JanusMemberConfig, JanusMemberError, SentCounts, create_janus_room,
};
#[cfg(test)]
pub(crate) use link_shaper::LinkConditions;
pub(crate) use link_shaper::LinkShaper;
pub use local_media::{MediaInput, OPUS_FRAME_TICKS};
pub use sinks::CountingSinks;

use crate::media::pipeline::{RemoteMedia, SinkFactory};
use actor::Actor;
use census::Census;
use local_media::{FAILURES_QUEUED, LocalMedia};

/// A running engine. Dropping it (or [`Engine::shutdown`]) leaves any call cleanly.
pub struct Engine {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    input: MediaInput,
    census: Arc<Census>,
    link: LinkShaper,
    task: JoinHandle<()>,
}

impl Engine {
    /// Starts an idle engine whose remote media goes to `sinks`. Must run inside a tokio runtime.
    pub fn spawn(config: EngineConfig, sinks: &CountingSinks) -> Self {
        Self::spawn_with(config, sinks.factory())
    }

    /// Starts an idle engine that decodes what it receives into `remote` (frames for
    /// display, audio to the speaker). Must run inside a tokio runtime.
    pub fn spawn_decoding(config: EngineConfig, remote: &RemoteMedia) -> Self {
        Self::spawn_with(config, remote.factory())
    }

    fn spawn_with(config: EngineConfig, sinks: SinkFactory) -> Self {
        let (commands, command_rx) = mpsc::channel(64);
        let (event_tx, events) = mpsc::channel(1024);
        let (failures_tx, failures) = mpsc::channel(FAILURES_QUEUED);
        let media = Arc::new(LocalMedia::new(failures_tx));
        let census = Arc::new(Census::default());
        let link = LinkShaper::default();
        let actor = Actor::new(
            config,
            Arc::clone(&media),
            sinks,
            event_tx,
            Arc::clone(&census),
            link.clone(),
            failures,
        );
        let task = tokio::spawn(actor.run(command_rx));
        Self {
            commands,
            events,
            input: MediaInput(media),
            census,
            link,
            task,
        }
    }

    /// Sends a command; false once the engine has stopped.
    pub async fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).await.is_ok()
    }

    /// Sends a command without waiting (for UI threads); false if the queue is full or closed.
    pub fn try_send(&self, cmd: Command) -> bool {
        self.commands.try_send(cmd).is_ok()
    }

    /// The next event.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// An event if one is waiting (never blocks).
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Where encoded local media goes in.
    pub fn media_input(&self) -> MediaInput {
        self.input.clone()
    }

    /// Peer tasks still alive (each owns one connection and its media tasks).
    pub fn live_peer_tasks(&self) -> usize {
        self.census.peer_tasks.load(Ordering::Relaxed)
    }

    /// ICE restarts this engine has offered to recover failed links (for tests).
    #[doc(hidden)]
    pub fn ice_restarts(&self) -> usize {
        self.census.ice_restarts.load(Ordering::Relaxed)
    }

    /// The most video m-sections any connection's description has had (for tests: a
    /// share adds the second, and later shares reuse it).
    #[doc(hidden)]
    pub fn video_sections_seen(&self) -> usize {
        self.census.video_sections.load(Ordering::Relaxed)
    }

    /// Test hook: while `blocked`, every UDP datagram this engine's peer connections send
    /// or receive is dropped, as on a dead network; signaling is untouched.
    #[doc(hidden)]
    pub fn set_media_blocked(&self, blocked: bool) {
        self.link.set_blocked(blocked);
    }

    /// Test hook: the network this engine's datagrams go through (see `LinkShaper`).
    #[cfg(test)]
    pub(crate) fn link(&self) -> LinkShaper {
        self.link.clone()
    }

    /// Leaves any call and waits until every task has ended.
    pub async fn shutdown(self) {
        drop(self.commands);
        let mut events = self.events;
        // Keep reading so the actor never blocks on a full event queue while leaving.
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        let _ = self.task.await;
        let _ = drain.await;
    }
}
