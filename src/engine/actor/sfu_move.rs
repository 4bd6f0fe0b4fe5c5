//! The actor's side of a room on Janus (issue 14, docs/protocol-sfu.md): starting the SFU
//! task for `joined.sfu` or `move-to-sfu`, the make-before-break move (a mesh link to X
//! closes once X's media comes through Janus), `sfu-ready` / `sfu-failed`, and what the
//! SFU task reports.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{Actor, apply_plan, handle_estimate};
use crate::engine::api::{Event, LinkState};
use crate::engine::estimator::CAUTIOUS_START_BPS;
use crate::engine::sfu_call::{self, SFU_LEG, SfuEvent, SfuHandle, SfuInput, SfuSetup};
use crate::proto::{ClientMessage, SFU_KIND_JANUS, SfuRoom};

/// How long a move waits for a member's media through Janus before closing its mesh link
/// anyway, when not all of it came (they send nothing, or not everything they announce).
const NOTHING_ARRIVED: Duration = Duration::from_secs(5);
/// How long a mesh link stays after its member's media came through Janus. Closing it
/// cuts both directions, and the member may not have our media through Janus yet (its
/// subscriber waits for a keyframe of ours): closing at once left a 1 s gap in one run.
const LINGER: Duration = Duration::from_millis(1500);

/// The call's media through the SFU.
pub(super) struct SfuState {
    handle: SfuHandle,
    /// A mesh room on its way to the SFU: mesh links close as media arrives.
    moving: bool,
    /// Our feed id, once Janus says we publish.
    feed: Option<u64>,
    published_at: Option<Instant>,
    /// Per member, which kinds arrived through Janus: (video, audio).
    arrived: HashMap<String, (bool, bool)>,
    /// Members whose screen share arrived through Janus.
    screens: HashSet<String>,
    /// When everything a member sends first came through Janus.
    complete: HashMap<String, Instant>,
}

/// Our share started: the SFU task, if any, adds its stream to our publisher (a
/// renegotiation with Janus the first time).
pub(super) async fn screen_on(call: &super::Call) {
    if let Some(sfu) = &call.sfu {
        let _ = sfu.handle.input.send(SfuInput::ScreenOn).await;
    }
}

impl Actor {
    /// Starts publishing and subscribing on `room`. `moving`: we are in a mesh room that
    /// moves (make-before-break); else the room is on the SFU already.
    pub(super) async fn start_sfu(&mut self, room: SfuRoom, moving: bool) {
        let mut factory = self.factory();
        let Some(call) = &mut self.call else { return };
        if call.sfu.is_some() {
            return;
        }
        if room.kind != SFU_KIND_JANUS {
            let reason = format!("unknown media server kind {:?}", room.kind);
            call.sender.send(ClientMessage::SfuFailed { reason }).await;
            return;
        }
        factory.relay_only |= call.relay_only;
        call.policy.set_layers(self.media.video.layers());
        call.policy
            .add_unmeasured_peer(SFU_LEG, CAUTIOUS_START_BPS as u32);
        tracing::info!(room = room.room, moving, "starting media through the SFU");
        let handle = sfu_call::spawn(SfuSetup {
            self_id: call.self_id.clone(),
            room,
            factory,
            ice_servers: call.ice_servers.clone(),
            media: std::sync::Arc::clone(&self.media),
            book: call.book.clone(),
            events: self.sfu_events_tx.clone(),
            stats_interval: self.config.stats_interval,
            initial_layer: call.policy.layer_of(SFU_LEG),
        });
        call.sfu = Some(SfuState {
            handle,
            moving,
            feed: None,
            published_at: None,
            arrived: HashMap::new(),
            screens: HashSet::new(),
            complete: HashMap::new(),
        });
    }

    /// Ends the SFU task (it leaves Janus by itself); returns it to be awaited.
    /// `release`: media goes back to the mesh links (a cancelled move).
    pub(super) fn stop_sfu(&mut self, release: bool) -> Option<JoinHandle<()>> {
        let call = self.call.as_mut()?;
        let sfu = call.sfu.take()?;
        call.policy.remove_peer(SFU_LEG);
        call.estimates.remove(SFU_LEG);
        if release {
            for h in call.book.all() {
                h.release();
            }
        }
        drop(sfu.handle.stop);
        Some(sfu.handle.task)
    }

    /// `move-cancelled`, or our own failure during a move: Janus goes, the mesh stays.
    pub(super) fn cancel_move(&mut self) {
        if let Some(task) = self.stop_sfu(true)
            && let Some(call) = &mut self.call
        {
            call.retiring.push(task);
        }
    }

    pub(super) async fn on_sfu_event(&mut self, ev: SfuEvent) {
        let Some(call) = &mut self.call else { return };
        let Some(sfu) = &mut call.sfu else { return };
        match ev {
            SfuEvent::Published(feed) => {
                tracing::info!(feed, "publishing through the SFU");
                sfu.feed = Some(feed);
                sfu.published_at = Some(Instant::now());
                self.check_move().await;
            }
            SfuEvent::Arrived { peer, video } => {
                tracing::info!(peer = %peer, video, "media arrives through the SFU");
                let a = sfu.arrived.entry(peer.clone()).or_default();
                if video {
                    a.0 = true;
                } else {
                    a.1 = true;
                }
                if !call.peers.contains_key(&peer)
                    && let Some(m) = call.members.get_mut(&peer)
                    && m.link != LinkState::Connected
                {
                    m.link = LinkState::Connected;
                    let m = m.clone();
                    self.emit(Event::MemberUpdated(m)).await;
                }
                self.check_move().await;
            }
            SfuEvent::ScreenArrived(peer) => {
                sfu.screens.insert(peer);
                self.check_move().await;
            }
            SfuEvent::Estimate(bps) => {
                handle_estimate(&self.media, call, SFU_LEG, bps);
                apply_plan(&self.media, call);
            }
            SfuEvent::Stats(id, stats) => {
                // While the mesh link still runs, its own numbers are the member's.
                if !call.peers.contains_key(&id) {
                    self.emit(Event::Stats { id, stats: *stats }).await;
                }
            }
            SfuEvent::Failed(reason) => {
                let moving = sfu.moving;
                if moving {
                    let sender = call.sender.clone();
                    self.cancel_move();
                    sender
                        .send(ClientMessage::SfuFailed {
                            reason: reason.clone(),
                        })
                        .await;
                } else if let Some(task) = self.stop_sfu(false)
                    && let Some(call) = &mut self.call
                {
                    call.retiring.push(task);
                }
                self.emit(Event::Warning(format!("the media server failed: {reason}")))
                    .await;
            }
        }
    }

    /// Closes the mesh links whose member's media now comes through Janus; once none is
    /// left (and we publish), tells the server `sfu-ready`.
    pub(super) async fn check_move(&mut self) {
        let Some(call) = &mut self.call else { return };
        let Some(sfu) = &mut call.sfu else { return };
        let (true, Some(feed), Some(published_at)) = (sfu.moving, sfu.feed, sfu.published_at)
        else {
            return;
        };
        let waited = published_at.elapsed() >= NOTHING_ARRIVED;
        let now = Instant::now();
        let mut done = Vec::new();
        for id in call.peers.keys() {
            let (video, audio) = sfu.arrived.get(id).copied().unwrap_or_default();
            let (wants_video, wants_audio, shares) = call
                .members
                .get(id)
                .map_or((false, false, false), |m| (m.video, m.audio, m.screen));
            // A member's share is waited for too (closing its link first left a gap of a
            // 1080p keyframe's time), but not past `NOTHING_ARRIVED`.
            let screen = !shares || waited || sfu.screens.contains(id);
            if (video || !wants_video) && (audio || !wants_audio) && screen {
                let since = *sfu.complete.entry(id.clone()).or_insert(now);
                if now.duration_since(since) >= LINGER {
                    done.push(id.clone());
                }
            } else if waited {
                // Nothing (or not everything) of theirs came through Janus in that time: a
                // member may announce a kind it has no device for (a window's microphone
                // "on" on a machine without sound), which never comes by either path;
                // waiting on would only let the server call the move off.
                done.push(id.clone());
            }
        }
        for id in done {
            tracing::info!(peer = %id, "closing the mesh link: media comes through the SFU");
            if let Some(task) = self.stop_peer(&id)
                && let Some(call) = &mut self.call
            {
                call.retiring.push(task);
            }
        }
        let Some(call) = &mut self.call else { return };
        let Some(sfu) = &mut call.sfu else { return };
        if call.peers.is_empty() {
            sfu.moving = false;
            tracing::info!(feed, "moved onto the SFU");
            call.sender.send(ClientMessage::SfuReady { feed }).await;
        }
    }
}
