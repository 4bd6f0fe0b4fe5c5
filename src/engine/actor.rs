//! The engine's one task: owns the signaling client and a peer task per remote member,
//! turns commands into protocol messages and signaling into peer connections.

mod sfu_move;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::{Command, DeviceKind, EngineConfig, Event, JoinParams, LinkState, Member};
use super::census::Census;
use super::estimator::CAUTIOUS_START_BPS;
use super::link_shaper::LinkShaper;
use super::local_media::{DeviceFailure, LocalMedia, SCREEN_MAX_BPS, SCREEN_MIN_BPS};
use super::peer::{self, PeerEvent, PeerHandle, PeerInput, PeerSetup};
use super::peer_factory::{BitrateRange, PeerFactory};
use super::policy::{SCREEN_SHARE_PART, VideoPolicy, expected_audio_loss};
use super::sfu_call::SfuEvent;
use super::sink_handover::SinkBook;
use super::turn_tcp::{TurnTcpBridges, loopback_for};
use crate::client::{
    ClientConfig, ClientError, ClientEvent, ConnectionState, SignalClient, SignalSender,
};
use crate::media::pipeline::SinkFactory;
use crate::proto::{
    ClientMessage, FEATURE_SFU_JANUS, IceServer, JoinRequest, Peer, PeerPayload, ServerMessage,
    SfuRoom, StateUpdate,
};

/// How long a fresh join waits for the old connections to finish closing.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands the policy a peer's new estimate (logged when it moves the peer's layer).
fn handle_estimate(media: &LocalMedia, call: &mut Call, id: &str, estimate: u32) {
    call.estimates.insert(id.to_owned(), estimate);
    call.policy.set_layers(media.video.layers());
    // While we share, the camera plans with what the share leaves (`screen_bitrate`).
    let estimate = if media.screen_on() {
        call.policy.beside_share(id, estimate)
    } else {
        estimate
    };
    let before = call.policy.layer_of(id);
    call.policy.handle_estimate(Instant::now(), id, estimate);
    let after = call.policy.layer_of(id);
    tracing::debug!(peer = %id, estimate, ?after, "video policy");
    if after != before {
        tracing::info!(peer = %id, estimate, "video layer {before:?} -> {after:?}");
    }
}

/// Carries out the policy's plan: each peer's layer, each layer's bitrate, and the loss the
/// audio encoder plans FEC for.
fn apply_plan(media: &LocalMedia, call: &Call) {
    let plan = call.policy.plan();
    for (peer, layer) in &plan.peers {
        media.video.set_layer(peer, *layer);
    }
    for (layer, bps) in plan.bitrates.iter().enumerate() {
        if let Some(bps) = bps {
            media.video.set_bitrate(layer, *bps);
        }
    }
    media.set_expected_audio_loss(expected_audio_loss(call.audio_loss.values().copied()));
    if media.screen_on() {
        media
            .screen
            .set_bitrate(0, screen_bitrate(call.estimates.values().copied()));
    }
}

/// The share's bitrate: one encoding for every peer, so the slowest link sets it. Of a
/// link's estimate the share takes 60 % (the camera and audio keep the rest; the pacer
/// sends the camera first, so a share over its part would only go stale in the queue),
/// within 500 kbit/s–2.5 Mbit/s. The size never changes with it: at a lower rate the
/// encoder skips frames instead, so the frame rate gives first and text stays sharp.
fn screen_bitrate(estimates: impl Iterator<Item = u32>) -> u32 {
    let slowest = estimates.min().unwrap_or(SCREEN_MAX_BPS);
    (f64::from(slowest) * SCREEN_SHARE_PART)
        .clamp(f64::from(SCREEN_MIN_BPS), f64::from(SCREEN_MAX_BPS)) as u32
}

struct Call {
    /// Relay candidates only (the engine's setting or this join's).
    relay_only: bool,
    client: SignalClient,
    sender: SignalSender,
    self_id: String,
    /// As webrtc-rs sees them: TURN over TCP points at `turn_tcp`'s local bridges.
    ice_servers: Vec<IceServer>,
    /// Bridges webrtc-rs' TURN over UDP to TCP servers; they end with the call.
    turn_tcp: TurnTcpBridges,
    members: BTreeMap<String, Member>,
    peers: HashMap<String, PeerHandle>,
    /// The latest link state each peer task reported, kept even for a task whose member
    /// we have not been told about yet, so the member entry starts with the true state.
    links: HashMap<String, LinkState>,
    /// Which video layer each peer gets, and at what bitrate each layer is encoded.
    policy: VideoPolicy,
    /// The audio loss each peer reports, as a fraction (for the encoder's FEC).
    audio_loss: HashMap<String, f64>,
    /// Each peer's latest bandwidth estimate, bits per second (for the share's bitrate).
    estimates: HashMap<String, u32>,
    /// Each member's sink, shared by its mesh link and the SFU (handed over in a move).
    book: SinkBook,
    /// Media through Janus, when the room is on (or moving onto) the SFU.
    sfu: Option<sfu_move::SfuState>,
    /// Tasks of closed links and SFU sessions still ending; awaited when the call ends.
    retiring: Vec<JoinHandle<()>>,
}

impl Call {
    /// What we know of the link to `id`: the member's state, else its task's last report.
    fn link_of(&self, id: &str) -> LinkState {
        self.members
            .get(id)
            .map(|m| m.link)
            .or_else(|| self.links.get(id).copied())
            .unwrap_or(LinkState::Connecting)
    }
}

pub(crate) struct Actor {
    pub(crate) config: EngineConfig,
    pub(crate) media: Arc<LocalMedia>,
    pub(crate) sinks: SinkFactory,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) census: Arc<Census>,
    pub(crate) link: LinkShaper,
    pub(crate) peer_events_tx: mpsc::Sender<PeerEvent>,
    pub(crate) peer_events: mpsc::Receiver<PeerEvent>,
    sfu_events_tx: mpsc::Sender<SfuEvent>,
    sfu_events: mpsc::Receiver<SfuEvent>,
    /// Local sources that stopped by themselves (see `MediaInput::device_failed`).
    device_failures: mpsc::Receiver<DeviceFailure>,
    call: Option<Call>,
}

fn member(p: &Peer) -> Member {
    Member {
        id: p.id.clone(),
        name: p.name.clone(),
        audio: p.audio,
        video: p.video,
        screen: p.screen,
        link: LinkState::Connecting,
    }
}

async fn next_client_event(call: &mut Option<Call>) -> Option<ClientEvent> {
    match call {
        Some(c) => c.client.next_event().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub(crate) fn new(
        config: EngineConfig,
        media: Arc<LocalMedia>,
        sinks: SinkFactory,
        events: mpsc::Sender<Event>,
        census: Arc<Census>,
        link: LinkShaper,
        device_failures: mpsc::Receiver<DeviceFailure>,
    ) -> Self {
        let (peer_events_tx, peer_events) = mpsc::channel(1024);
        let (sfu_events_tx, sfu_events) = mpsc::channel(1024);
        Self {
            config,
            media,
            sinks,
            events,
            census,
            link,
            peer_events_tx,
            peer_events,
            sfu_events_tx,
            sfu_events,
            device_failures,
            call: None,
        }
    }

    async fn emit(&self, ev: Event) {
        let _ = self.events.send(ev).await;
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // A move closes mesh links after a wait even when no event comes.
        let mut move_check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        // Every handle is gone: leave cleanly and stop.
                        self.end_call("the app closed").await;
                        return;
                    }
                },
                ev = next_client_event(&mut self.call) => match ev {
                    Some(ev) => self.on_client_event(ev).await,
                    None => self.end_call("the signaling connection ended").await,
                },
                Some(ev) = self.peer_events.recv() => self.on_peer_event(ev).await,
                Some(ev) = self.sfu_events.recv() => self.on_sfu_event(ev).await,
                _ = move_check.tick() => self.check_move().await,
                Some(failure) = self.device_failures.recv() => {
                    self.on_device_failure(failure).await;
                }
            }
        }
    }

    fn factory(&self) -> PeerFactory {
        PeerFactory {
            ice_ips: self.config.ice_ips.clone(),
            bitrate: BitrateRange {
                initial: 600_000.clamp(self.config.min_bitrate, self.config.max_bitrate),
                min: self.config.min_bitrate,
                max: self.config.max_bitrate,
            },
            ice_disconnected: self.config.ice_disconnected_timeout,
            ice_failed: self.config.ice_failed_timeout,
            link: self.link.clone(),
            relay_only: self.config.relay_only,
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join(params) => self.join(params).await,
            Command::SetMic(on) => {
                self.media.set_audio(on);
                self.send_state(StateUpdate {
                    audio: Some(on),
                    ..Default::default()
                })
                .await;
            }
            Command::SetCamera(on) => {
                self.media.set_video(on);
                self.send_state(StateUpdate {
                    video: Some(on),
                    ..Default::default()
                })
                .await;
            }
            Command::SetScreen(on) => {
                // Every connection gets its screen track if it has none yet (which
                // renegotiates once); after that, starting and stopping only starts and
                // stops what is written to it, and `state.screen` tells the room.
                if self.media.set_screen(on)
                    && on
                    && let Some(call) = &self.call
                {
                    for handle in call.peers.values() {
                        let _ = handle.input.send(PeerInput::ScreenOn).await;
                    }
                    sfu_move::screen_on(call).await;
                    apply_plan(&self.media, call);
                }
                self.send_state(StateUpdate {
                    screen: Some(on),
                    ..Default::default()
                })
                .await;
            }
            Command::SetName(name) => {
                self.send_state(StateUpdate {
                    name: Some(name),
                    ..Default::default()
                })
                .await;
            }
            Command::Chat(text) => {
                if let Some(call) = &self.call {
                    call.sender.send(ClientMessage::Chat { text }).await;
                }
            }
            Command::Leave => self.end_call("you left").await,
        }
    }

    /// A local source stopped: its track goes off (the call goes on with the rest), the
    /// room is told as if it had been turned off, and consumers show it and offer a retry.
    async fn on_device_failure(&mut self, failure: DeviceFailure) {
        let DeviceFailure { kind, message } = failure;
        tracing::warn!(%kind, "local {kind} failed: {message}");
        // A failure of a source already off (a retry that could not start it) changes
        // nothing the room knows.
        if self.media.turn_off(kind) {
            let off = Some(false);
            let update = match kind {
                DeviceKind::Camera => StateUpdate {
                    video: off,
                    ..Default::default()
                },
                DeviceKind::Microphone => StateUpdate {
                    audio: off,
                    ..Default::default()
                },
            };
            self.send_state(update).await;
        }
        self.emit(Event::DeviceFailed { kind, message }).await;
    }

    async fn send_state(&self, update: StateUpdate) {
        if let Some(call) = &self.call {
            call.sender.send(ClientMessage::State(update)).await;
        }
    }

    async fn join(&mut self, params: JoinParams) {
        if self.call.is_some() {
            self.emit(Event::Warning("already in a call; leave it first".into()))
                .await;
            return;
        }
        self.media.set_audio(params.audio);
        self.media.set_video(params.video);
        let config = ClientConfig::new(
            params.server.clone(),
            JoinRequest {
                room: params.room.clone(),
                name: params.name.clone(),
                passcode: params.passcode.clone(),
                audio: params.audio,
                video: params.video,
                resume: None,
                features: vec![FEATURE_SFU_JANUS.to_owned()],
            },
        );
        let (client, joined) = match SignalClient::connect(config).await {
            Ok(ok) => ok,
            Err(e) => {
                let code = match &e {
                    ClientError::Refused { code, .. } => Some(*code),
                    _ => None,
                };
                self.emit(Event::JoinFailed {
                    code,
                    message: e.to_string(),
                })
                .await;
                return;
            }
        };
        let ServerMessage::Joined {
            room,
            self_id,
            peers,
            ice_servers,
            chat,
            sfu,
            ..
        } = joined.message
        else {
            unreachable!("connect returns joined");
        };
        let relay_only = self.config.relay_only || params.relay_only;
        if relay_only && !has_turn(&ice_servers) {
            self.emit(Event::Warning(
                "relay-only is on but the server hands out no TURN server: no media link can form"
                    .into(),
            ))
            .await;
        }
        // webrtc-rs 0.21 only does TURN over UDP; `?transport=tcp` goes through a bridge.
        let (ice_servers, turn_tcp) =
            TurnTcpBridges::start(&ice_servers, loopback_for(&self.config.ice_ips)).await;
        let sender = client.sender();
        self.call = Some(Call {
            relay_only,
            client,
            sender,
            self_id: self_id.clone(),
            ice_servers,
            turn_tcp,
            members: BTreeMap::new(),
            peers: HashMap::new(),
            links: HashMap::new(),
            policy: VideoPolicy::new(self.media.video.layers(), self.config.max_bitrate),
            audio_loss: HashMap::new(),
            estimates: HashMap::new(),
            book: SinkBook::new(Arc::clone(&self.sinks)),
            sfu: None,
            retiring: Vec::new(),
        });
        let members: Vec<Member> = peers.iter().map(member).collect();
        self.emit(Event::Joined {
            room,
            self_id,
            members: members.clone(),
            chat,
        })
        .await;
        for m in &members {
            self.add_member(m.clone());
        }
        // A room on the SFU: no mesh links at all (docs/protocol-sfu.md).
        if let Some(sfu) = sfu {
            self.start_sfu(*sfu, false).await;
            return;
        }
        // We are the newcomer: we offer to everyone already here.
        for m in members {
            self.start_peer(&m.id, true);
        }
    }

    fn add_member(&mut self, m: Member) {
        if let Some(call) = &mut self.call {
            call.members.insert(m.id.clone(), m);
        }
    }

    fn start_peer(&mut self, id: &str, initiator: bool) {
        let mut factory = self.factory();
        let Some(call) = &mut self.call else { return };
        factory.relay_only |= call.relay_only;
        if call.peers.contains_key(id) {
            return;
        }
        call.policy.set_layers(self.media.video.layers());
        call.policy
            .add_unmeasured_peer(id, CAUTIOUS_START_BPS as u32);
        let census = Arc::clone(&self.census);
        census.peer_tasks.fetch_add(1, Ordering::Relaxed);
        let handle = peer::spawn(PeerSetup {
            self_id: call.self_id.clone(),
            remote_id: id.to_owned(),
            initiator,
            factory,
            ice_servers: call.ice_servers.clone(),
            signal: call.sender.clone(),
            media: Arc::clone(&self.media),
            sink: call.book.mesh(id),
            events: self.peer_events_tx.clone(),
            stats_interval: self.config.stats_interval,
            census: Arc::clone(&census),
            initial_layer: call.policy.layer_of(id),
        });
        // The census ticks down when the task (and everything it awaited) has ended.
        let PeerHandle { input, task } = handle;
        let watched = tokio::spawn(async move {
            let _ = task.await;
            census.peer_tasks.fetch_sub(1, Ordering::Relaxed);
        });
        call.peers.insert(
            id.to_owned(),
            PeerHandle {
                input,
                task: watched,
            },
        );
    }

    /// Forgets a member who left: their connection goes and consumers are told.
    async fn remove_member(&mut self, id: String) {
        // Detached: the census watches it end.
        let _ = self.stop_peer(&id);
        if let Some(call) = &mut self.call {
            call.members.remove(&id);
            call.book.forget(&id);
        }
        self.emit(Event::MemberLeft { id }).await;
        // A move waits for nobody who left.
        self.check_move().await;
    }

    /// Drops a member's peer task; it closes the connection and frees its tasks by itself.
    /// The returned handle ends when it has.
    fn stop_peer(&mut self, id: &str) -> Option<JoinHandle<()>> {
        let call = self.call.as_mut()?;
        let handle = call.peers.remove(id)?;
        call.links.remove(id);
        call.policy.remove_peer(id);
        call.audio_loss.remove(id);
        call.estimates.remove(id);
        drop(handle.input);
        Some(handle.task)
    }

    async fn end_call(&mut self, reason: &str) {
        let sfu = self.stop_sfu(false);
        let Some(mut call) = self.call.take() else {
            return;
        };
        // A share belongs to the call: the next one starts without.
        self.media.set_screen(false);
        call.retiring.extend(sfu);
        let handles: Vec<PeerHandle> = call.peers.drain().map(|(_, h)| h).collect();
        let mut tasks = Vec::new();
        for h in handles {
            drop(h.input);
            tasks.push(h.task);
        }
        call.client.leave().await;
        for t in tasks.into_iter().chain(call.retiring.drain(..)) {
            let _ = t.await;
        }
        // After the connections: their deallocations went out through the bridges.
        call.turn_tcp.close().await;
        self.emit(Event::Left {
            reason: reason.to_owned(),
        })
        .await;
    }

    async fn on_client_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::State(state) => {
                let closed = match &state {
                    ConnectionState::Closed { reason } => Some(reason.clone()),
                    _ => None,
                };
                self.emit(Event::Signaling(state)).await;
                if let Some(reason) = closed {
                    self.end_call(&reason).await;
                }
            }
            ClientEvent::Message(msg) => self.on_server_message(msg).await,
        }
    }

    async fn on_server_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::Joined {
                self_id,
                peers,
                resumed,
                sfu,
                ..
            } => {
                self.on_rejoined(self_id, peers, resumed, sfu.map(|s| *s))
                    .await;
            }
            ServerMessage::PeerJoined { peer } => {
                // They will offer to us; the connection starts with their offer.
                let Some(call) = &self.call else { return };
                let m = Member {
                    link: call.link_of(&peer.id),
                    ..member(&peer)
                };
                self.add_member(m.clone());
                self.emit(Event::MemberUpdated(m)).await;
            }
            ServerMessage::PeerUpdated { peer } => {
                let Some(call) = &mut self.call else { return };
                let m = Member {
                    link: call.link_of(&peer.id),
                    ..member(&peer)
                };
                call.members.insert(m.id.clone(), m.clone());
                self.emit(Event::MemberUpdated(m)).await;
            }
            ServerMessage::PeerLeft { id } => self.remove_member(id).await,
            ServerMessage::Signal { from, payload } => {
                let Some(typed) = PeerPayload::from_payload(&payload) else {
                    tracing::debug!(peer = %from, "ignoring an unknown payload");
                    return;
                };
                let Some(call) = &self.call else { return };
                if !call.peers.contains_key(&from) {
                    // Only an offer opens a connection; anything else for an unknown peer
                    // is left over from one already gone.
                    if !matches!(&typed, PeerPayload::Sdp(d) if d.kind == "offer") {
                        return;
                    }
                    // The server tells us of every member before their offer can arrive
                    // (peer-joined, or the peers of a resumed joined). An offer from someone
                    // not in the room is one queued for us while our socket was down by a
                    // member who has left since; no peer-left will ever come for them, so a
                    // connection made for it would never be freed.
                    if !call.members.contains_key(&from) {
                        tracing::debug!(peer = %from, "ignoring an offer from a non-member");
                        return;
                    }
                    // In a room on the SFU nobody makes mesh links.
                    if call.sfu.is_some() {
                        tracing::debug!(peer = %from, "ignoring a mesh offer in an SFU room");
                        return;
                    }
                    self.start_peer(&from, false);
                }
                if let Some(call) = &self.call
                    && let Some(handle) = call.peers.get(&from)
                {
                    let _ = handle.input.send(PeerInput::Signal(typed)).await;
                }
            }
            ServerMessage::Chat(chat) => self.emit(Event::Chat(chat)).await,
            ServerMessage::MoveToSfu { sfu, .. } => self.start_sfu(sfu, true).await,
            ServerMessage::MoveCancelled => {
                tracing::info!("the move onto the SFU was cancelled; the mesh stays");
                self.cancel_move();
            }
            ServerMessage::Error { code, message } => {
                self.emit(Event::Warning(format!(
                    "the server refused a message ({code}): {message}"
                )))
                .await;
            }
        }
    }

    /// After a signaling reconnect. A resume keeps every connection; a fresh join means a
    /// new identity, so every connection is rebuilt with us as the newcomer.
    async fn on_rejoined(
        &mut self,
        self_id: String,
        peers: Vec<Peer>,
        resumed: bool,
        sfu: Option<SfuRoom>,
    ) {
        if resumed {
            let Some(call) = &self.call else { return };
            let present: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
            let gone: Vec<String> = call
                .members
                .keys()
                .filter(|id| !present.contains(id))
                .cloned()
                .collect();
            for id in gone {
                self.remove_member(id).await;
            }
            // While our socket was down the server told us nothing, so `peers` is the only
            // news of who joined or changed meanwhile. Newcomers offer to us (their offer
            // was queued for us and follows this `joined`), so we only record them here; the
            // peer task starts with that offer, and `start_peer` never makes a second one.
            for p in &peers {
                let Some(call) = &mut self.call else { return };
                let link = call.link_of(&p.id);
                let m = Member { link, ..member(p) };
                if call.members.get(&p.id) != Some(&m) {
                    call.members.insert(m.id.clone(), m.clone());
                    self.emit(Event::MemberUpdated(m)).await;
                }
            }
            return;
        }
        let ids: Vec<String> = self
            .call
            .as_ref()
            .map(|c| c.members.keys().cloned().collect())
            .unwrap_or_default();
        let mut retiring: Vec<JoinHandle<()>> = self.stop_sfu(false).into_iter().collect();
        for id in ids {
            retiring.extend(self.stop_peer(&id));
            if let Some(call) = &self.call {
                call.book.forget(&id);
            }
            self.emit(Event::MemberLeft { id }).await;
        }
        // The new connections reuse the members' ids (and after a server restart the
        // server may hand out old ids again), and an old task's teardown removes its media
        // by id: it must be over before a new task adds the same id.
        if tokio::time::timeout(RETIRE_TIMEOUT, futures_util::future::join_all(retiring))
            .await
            .is_err()
        {
            tracing::warn!("old connections still closing after {RETIRE_TIMEOUT:?}");
        }
        if let Some(call) = &mut self.call {
            call.self_id = self_id.clone();
            call.members.clear();
        }
        self.emit(Event::Rejoined { self_id }).await;
        for p in &peers {
            let m = member(p);
            self.add_member(m.clone());
            self.emit(Event::MemberUpdated(m)).await;
            if sfu.is_none() {
                self.start_peer(&p.id, true);
            }
        }
        if let Some(sfu) = sfu {
            self.start_sfu(sfu, false).await;
        }
    }

    async fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Link(id, link) => {
                let Some(call) = &mut self.call else { return };
                if call.peers.contains_key(&id) {
                    call.links.insert(id.clone(), link);
                }
                let Some(m) = call.members.get_mut(&id) else {
                    return;
                };
                if m.link != link {
                    m.link = link;
                    let m = m.clone();
                    self.emit(Event::MemberUpdated(m)).await;
                }
            }
            PeerEvent::Estimate(id, estimate) => {
                if let Some(call) = &mut self.call
                    && call.peers.contains_key(&id)
                {
                    handle_estimate(&self.media, call, &id, estimate);
                    apply_plan(&self.media, call);
                }
            }
            PeerEvent::Stats(id, mut stats) => {
                if let Some(call) = &mut self.call
                    && call.peers.contains_key(&id)
                {
                    if let Some(estimate) = stats.target_bitrate {
                        handle_estimate(&self.media, call, &id, estimate as u32);
                    }
                    call.audio_loss
                        .insert(id.clone(), stats.audio_loss_reported_by_them);
                    apply_plan(&self.media, call);
                }
                stats.layer = Some(
                    self.media
                        .video
                        .layer_of(&id)
                        .map_or_else(|| "paused".to_owned(), |l| l.name()),
                );
                self.emit(Event::Stats { id, stats: *stats }).await;
            }
        }
    }
}

/// Whether any of `servers` is a TURN server (relay-only needs one).
fn has_turn(servers: &[IceServer]) -> bool {
    servers
        .iter()
        .flat_map(|s| &s.urls)
        .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
}
